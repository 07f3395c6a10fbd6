"""``compare --mode sequential,joint``: joint realignment rows next to the sequential ones,
labelled, on tiny random models; and the alignment-vs-transfer report of a compare."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient
from test_compare import write_config
from test_evaluate import CosineTask, fake_plugins, fresh_store  # noqa: F401
from typer.testing import CliRunner

import xalign
from xalign.cli import app
from xalign.config import ConfigError
from xalign.evaluation.finetune import (
    FinetuneSettings,
    finetune,
    load_for_finetuning,
    seed_everything,
)
from xalign.plugins import get_registry
from xalign.task import Task, TaskContext, TaskResult


@dataclass
class ToyConfig(FinetuneSettings):
    batch_size: int = 4
    epochs: int = 1
    learning_rate: float = 1e-3


class ToyTransfer(Task):
    """Fine-tunes a 2-class head on fixed random token ids (the same for every language's
    vocabulary slice); the score is the mean probability of the gold class per language."""

    name = "toy-ft"
    Config = ToyConfig
    metrics = (xalign.Metric("p", higher_is_better=True),)

    def run(self, model: str, context: TaskContext) -> TaskResult:
        from transformers import AutoModelForSequenceClassification

        seed_everything(context.seed)
        net, tok, _ = load_for_finetuning(model, AutoModelForSequenceClassification, num_labels=2)
        g = torch.Generator().manual_seed(0)
        feats = [
            {"input_ids": torch.randint(5, 40, (6,), generator=g).tolist(), "labels": i % 2}
            for i in range(8)
        ]
        settings = FinetuneSettings.from_options(self.config)
        finetune(net, feats, settings, pad_id=tok.pad_token_id, seed=context.seed)
        result = TaskResult(self.name, "p", {})
        with torch.no_grad():
            for k, lang in enumerate(("de", "fr", "el")):
                ids = torch.tensor([f["input_ids"] for f in feats]) + k
                probs = net(input_ids=ids).logits.softmax(-1)
                p = [float(probs[i, f["labels"]]) for i, f in enumerate(feats)]
                result.per_example[lang] = p
                result.scores[lang] = {"p": sum(p) / len(p)}
        return result


class ToyAlign(CosineTask):
    name = "toy-align"
    kind = "alignment"


class JointPlugin:
    @xalign.hookimpl
    def register_tasks(self, register) -> None:
        register(ToyTransfer)
        register(ToyAlign)


@pytest.fixture
def toy_tasks(fake_plugins):  # noqa: F811
    get_registry().add(JointPlugin(), name="joint-tests", distribution="xalign-tests")


def test_sequential_and_joint_rows_side_by_side(tiny_model, tmp_path, toy_tasks, one_thread):
    uri = fresh_store(tmp_path)
    cfg = write_config(tmp_path / "cfg.yaml", tiny_model, uri, tmp_path / "out", limit=12)
    args = [
        "compare", "sinkhorn", "--config", str(cfg), "--set", "train.batch_size=4",
        "--set", "train.lr=1e-3", "--tasks", "toy-ft,toy-align",
        "--mode", "sequential,joint", "--joint-option", "weight=5", "--joint-option",
        "schedule=linear",
    ]  # fmt: skip
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output + repr(first.exception)
    shown = first.stdout
    assert "joint:sinkhorn" in shown and "joint:NAME rows: the base encoder" in shown
    assert "alignment vs transfer: toy-align vs toy-ft" in shown and "Spearman ρ" in shown
    (report,) = (tmp_path / "out" / "compare").glob("*/compare.json")
    out = json.loads(report.read_text())
    assert out["objectives"] == ["base", "sinkhorn", "joint:sinkhorn"]
    cells = {(r["task"], r["language"], r["objective"]): r for r in out["rows"]}
    base, joint = cells["toy-ft", "de", "base"], cells["toy-ft", "de", "joint:sinkhorn"]
    assert joint["mean"] is not None and joint["mean"] != base["mean"]
    assert cells["toy-align", "de", "joint:sinkhorn"]["mean"] is None  # does not fine-tune
    assert cells["toy-align", "de", "sinkhorn"]["mean"] is not None
    (corr,) = out["alignment_vs_transfer"]["correlations"]
    assert {p["objective"] for p in corr["points"]} == {"sinkhorn"}  # joint: no alignment Δ

    client = MlflowClient(uri)
    joint_runs = [r for r in out["runs"]["eval"] if r["objective"] == "joint:sinkhorn"]
    assert [r["task"] for r in joint_runs] == ["toy-ft"]
    run = client.get_run(joint_runs[0]["run_id"])
    assert run.data.tags["xalign.objective"] == "joint:sinkhorn"
    logged = json.loads(run.data.params["task.joint"])
    assert (logged["objective"], logged["schedule"], logged["weight"]) == ("sinkhorn", "linear", 5)
    assert logged["config"] == str(cfg)
    names = {a.path for a in client.list_artifacts(out["parent_run_id"])}
    assert {"compare_correlation.md", "compare_correlation.csv"} <= names
    md = Path(out["artifacts"]["markdown"]).read_text()
    assert "## Alignment vs transfer" in md and "| joint:sinkhorn |" in md


def test_joint_only_trains_nothing_and_bad_modes_fail_early(
    tiny_model, tmp_path, toy_tasks, one_thread, monkeypatch
):
    from xalign.compare import compare

    def no_training(*_a, **_k):
        raise AssertionError("joint rows train no alignment run")

    monkeypatch.setattr("xalign.recipe.run_training", no_training)
    uri = fresh_store(tmp_path)
    cfg = write_config(tmp_path / "cfg.yaml", tiny_model, uri, tmp_path / "out", limit=12)
    report = compare(["sinkhorn"], config_path=cfg, tasks=["toy-ft"], modes=["joint"])
    assert report.summary.objectives == ["base", "joint:sinkhorn"]
    assert report.correlation is None  # no alignment task
    for modes, joint, match in (
        (["both"], None, "--mode: expected one or more of sequential, joint"),
        (["sequential"], {"weight": 2}, "--joint-option needs --mode joint"),
        (["joint"], {"schedule": "cosine"}, "joint.schedule must be one of"),
        (["joint"], {"colour": 1}, "unexpected keyword argument 'colour'"),
    ):
        with pytest.raises(ConfigError, match=match):
            compare(["sinkhorn"], config_path=cfg, tasks=["toy-ft"], modes=modes, joint=joint)
    with pytest.raises(ConfigError, match="none of the tasks"):
        compare(["sinkhorn"], config_path=cfg, tasks=["toy-align"], modes=["joint"])
