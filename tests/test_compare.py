"""``compare``: exact report numbers on logged runs, and end-to-end through the CLI."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient
from rich.console import Console
from test_evaluate import CosineTask, fake_plugins, fresh_store, log_train_run  # noqa: F401
from typer.testing import CliRunner

from xalign.cli import app
from xalign.cli.eval import parse_task_options, split_names
from xalign.compare import compare, expected_components, print_report, training_config
from xalign.config import ConfigError

PNG = b"\x89PNG\r\n\x1a\n"


def ones(k: int, n: int = 20) -> list[float]:
    return [1.0] * k + [0.0] * (n - k)


# per model: task -> seed -> language -> per-example scores (the task's score is their mean)
ACC = {  # "preset": accuracy, higher is better; seen = de, fr
    "base": {
        0: {"de": ones(10), "fr": ones(14), "en": ones(15)},
        1: {"de": ones(12), "fr": ones(14), "en": ones(15)},
    },
    "sinkhorn": {
        0: {"de": ones(18), "fr": ones(14), "en": ones(5)},
        1: {"de": ones(16), "fr": ones(14), "en": ones(5)},
    },
    "other": {
        0: {"de": ones(11), "fr": ones(20), "en": ones(15)},
        1: {"de": ones(13), "fr": ones(20), "en": ones(15)},
    },
}
AER = {  # "preset-aer": lower is better; el is not a training language
    "base": {s: {"de": [0.4] * 10, "el": [0.3] * 10} for s in (0, 1)},
    "sinkhorn": {s: {"de": [0.2] * 10, "el": [0.3] * 10} for s in (0, 1)},
    "other": {s: {"de": [0.3] * 10, "el": [0.5] * 10} for s in (0, 1)},
}


def write_preset(model_dir: Path, name: str, seeds: list[int]) -> Path:
    model_dir.mkdir(parents=True, exist_ok=True)
    data = {
        "preset": {str(s): ACC[name][s] for s in seeds},
        "preset-aer": {str(s): AER[name][s] for s in seeds},
    }
    (model_dir / "preset.json").write_text(json.dumps(data))
    return model_dir


def write_config(path: Path, model: Path, uri: str, out: Path, **extra) -> Path:
    raw = {
        "model": {"name": str(model)},
        "data": {"languages": ["de", "fr"], **extra},
        "train": {"output_dir": str(out)},
        "tracking": {"uri": uri},
        "objectives": {"sinkhorn": {}},
    }
    path.write_text(yaml.safe_dump(raw))
    return path


def test_report_numbers_on_logged_runs(tmp_path, monkeypatch):
    uri = fresh_store(tmp_path)
    cfg_path = write_config(
        tmp_path / "cfg.yaml",
        write_preset(tmp_path / "base", "base", [0, 1]),
        uri,
        tmp_path / "out",
    )
    for obj in ("sinkhorn", "other"):
        for seed in (0, 1):
            cfg = training_config(cfg_path, [], obj, seed)
            log_train_run(
                uri,
                write_preset(tmp_path / f"{obj}-{seed}", obj, [seed]),
                fingerprint=cfg.fingerprint(),
                objective=obj,
                components=expected_components(cfg)[0],
            )

    def no_training(*_a, **_k):
        raise AssertionError("matching training runs must be reused")

    monkeypatch.setattr("xalign.recipe.run_training", no_training)
    report = compare(
        ["sinkhorn", "other"],
        config_path=cfg_path,
        tasks=["preset", "preset-aer"],
        seeds=2,
        show_progress=False,
        task_options={"preset": {"file": "preset.json"}},  # as --option preset.file=...
    )
    md = report.markdown.splitlines()
    assert md[md.index("## preset (acc, higher is better)") + 2] == "Task options: file=preset.json"
    assert "| objective | de | fr | en | avg seen | avg all |" in md
    assert (
        "| base | 0.550 ± 0.071 | 0.700 ± 0.000 | **0.750 ± 0.000** | 0.625 ± 0.035 | "
        "0.667 ± 0.024 |"
    ) in md
    assert (
        "| sinkhorn | **0.850 ± 0.071** (+0.300)* | 0.700 ± 0.000 (+0.000) | "
        "0.250 ± 0.000 (-0.500)* | 0.775 ± 0.035 (+0.150)* | 0.600 ± 0.024 (-0.067) |"
    ) in md
    assert (
        "| other | 0.600 ± 0.071 (+0.050) | **1.000 ± 0.000** (+0.300)* | "
        "**0.750 ± 0.000** (+0.000) | **0.800 ± 0.035** (+0.175)* | "
        "**0.783 ± 0.024** (+0.117)* |"
    ) in md
    assert "## preset-aer (aer, lower is better)" in md
    assert "| objective | de | el | avg seen | avg all |" in md
    assert (
        "| sinkhorn | **0.200 ± 0.000** (-0.200)* | **0.300 ± 0.000** (+0.000) | "
        "**0.200 ± 0.000** (-0.200)* | **0.250 ± 0.000** (-0.100)* |"
    ) in md
    assert (
        "| other | 0.300 ± 0.000 (-0.100)* | 0.500 ± 0.000 (+0.200)* | "
        "0.300 ± 0.000 (-0.100)* | 0.400 ± 0.000 (+0.050)* |" in md
    )
    # best vs runner-up, de: per-seed item differences +1 on 7 of 20 (seed 0) and 3 of 20
    # (seed 1). Δ* <= 0 needs the seed draw (1, 1) (prob 1/4) and no +1 item among seed 1's
    # 20 draws ((17/20)^20 = 0.0388), or seed 0 the same way ((13/20)^20, negligible):
    # two-sided p = 2 * (0.25 * 0.0388 + ...) = 0.019 (the pooled test said < 0.001).
    (line,) = [ln for ln in md if ln.startswith("| de | sinkhorn | other | +0.250 | ")]
    p = float(line.split("|")[5].strip().rstrip("*"))
    assert 0.008 <= p <= 0.035 and line.endswith("* |"), line
    assert "| en | other | sinkhorn | +0.500 | <0.001* |" in md
    # the averages' best vs runner-up: avg all (de, fr, en) other − sinkhorn = (-0.25 + 0.3 +
    # 0.5) / 3 = +0.183; avg seen (de, fr) = +0.025 with de's seed spread: not significant
    (line,) = [ln for ln in md if ln.startswith("| avg all | other | sinkhorn | +0.183 | ")]
    assert line.endswith("* |"), line
    (line,) = [ln for ln in md if ln.startswith("| avg seen | other | sinkhorn | +0.025 | ")]
    assert not line.endswith("* |"), line
    assert any("two-level paired bootstrap" in line and "then the seeds" in line for line in md)

    buf = io.StringIO()
    print_report(report.summary, Console(file=buf, width=250))
    human = buf.getvalue()
    assert "preset-aer: aer (lower is better)" in human and "avg seen" in human
    assert "0.850 ± 0.071 (+0.300)*" in human and "two-level paired bootstrap" in human

    out = report.to_dict()
    assert out["objectives"] == ["base", "sinkhorn", "other"]
    assert out["seen_languages"] == ["de", "fr"]
    assert out["tasks"]["preset"]["seen"] == ["de", "fr"]
    assert out["tasks"]["preset-aer"]["higher_is_better"] is False
    assert out["tasks"]["preset"]["options"] == {"file": "preset.json"}
    assert out["tasks"]["preset-aer"]["options"] == {}
    row = {(r["task"], r["language"], r["objective"]): r for r in out["rows"]}
    de = row["preset", "de", "sinkhorn"]
    assert de["values"] == [0.9, 0.8] and de["n_seeds"] == 2 and de["best"]
    assert de["mean"] == pytest.approx(0.85) and de["std"] == pytest.approx(0.1 / np.sqrt(2))
    assert de["delta_vs_base"] == pytest.approx(0.30) and de["significant"]
    # +1 on 8 of 20 items (seed 0) and 4 of 20 (seed 1): Δ* <= 0 about only with the seed
    # draw (1, 1) and no +1 item drawn: p ~ 2 * 0.25 * (16/20)^20 = 0.006
    assert 0.0 < de["p_value"] < 0.02
    # other: +1 on 1 of 20 items per seed: Δ* = 0 whenever that item is missed (0.36)
    assert row["preset", "de", "other"]["p_value"] > 0.05
    assert row["preset", "fr", "sinkhorn"]["p_value"] == 1.0
    assert row["preset", "de", "base"]["p_value"] is None
    assert (
        row["preset-aer", "de", "sinkhorn"]["best"]
        and row["preset-aer", "de", "sinkhorn"]["p_value"] == 0.0
    )
    avg = {(a["task"], a["scope"], a["objective"]): a for a in out["averages"]}
    assert avg["preset", "all", "other"]["mean"] == pytest.approx((2.3 / 3 + 2.4 / 3) / 2)
    assert avg["preset", "seen", "sinkhorn"]["delta_vs_base"] == pytest.approx(0.15)
    assert avg["preset-aer", "seen", "base"]["languages"] == ["de"]
    assert out["significance"]["resamples"] == 1000
    assert out["significance"]["alternative"] == "two-sided"

    lines = list(csv.DictReader(io.StringIO(Path(out["artifacts"]["csv"]).read_text())))
    assert len(lines) == 3 * (3 + 2) + 3 * (2 + 2)  # 3 rows x (languages + 2 averages)
    hit = next(
        r
        for r in lines
        if (r["task"], r["language"], r["objective"]) == ("preset", "avg_seen", "other")
    )
    assert float(hit["mean"]) == pytest.approx(0.8) and hit["n_seeds"] == "2"
    assert Path(out["artifacts"]["png"]).read_bytes()[:8] == PNG
    assert (
        Path(out["artifacts"]["output_dir"])
        == (tmp_path / "out" / "compare" / report.parent_run_id).resolve()
    )

    client = MlflowClient(uri)
    parent = client.get_run(report.parent_run_id)
    assert parent.data.tags["xalign.kind"] == "compare" and parent.info.status == "FINISHED"
    names = {a.path for a in client.list_artifacts(report.parent_run_id)}
    assert {"compare.md", "compare.csv", "compare.png", "compare.json"} <= names
    assert all(r["reused"] for r in out["runs"]["train"]) and len(out["runs"]["eval"]) == 12
    for ev in out["runs"]["eval"]:
        tags = client.get_run(ev["run_id"]).data.tags
        assert tags["mlflow.parentRunId"] == report.parent_run_id
        assert (tags["xalign.objective"], tags["xalign.task"], tags["xalign.seed"]) == (
            ev["objective"],
            ev["task"],
            str(ev["seed"]),
        )


def test_compare_cli_end_to_end_and_reuse(tiny_model, tmp_path):
    uri = fresh_store(tmp_path)
    cfg = write_config(tmp_path / "cfg.yaml", tiny_model, uri, tmp_path / "out", limit=24)
    args = [
        "compare",
        "sinkhorn",
        "--config",
        str(cfg),
        "--set",
        "train.batch_size=8",
        "--set",
        "train.lr=1e-3",
        "--tasks",
        "fake",
        "--seeds",
        "2",
        "--json",
    ]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output + repr(first.exception)
    out = json.loads(first.stdout)
    assert out["objectives"] == ["base", "sinkhorn"]
    base = {r["language"]: r for r in out["rows"] if r["objective"] == "base"}
    aligned = {r["language"]: r for r in out["rows"] if r["objective"] == "sinkhorn"}
    assert set(base) == set(aligned) == {"de", "fr", "el"}
    assert aligned["de"]["mean"] != base["de"]["mean"] and aligned["de"]["n_seeds"] == 2
    parent = out["parent_run_id"]
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("xalign").experiment_id
    children = client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{parent}'")
    kinds = sorted(r.data.tags["xalign.kind"] for r in children)
    assert kinds == ["eval"] * 4 + ["train"] * 2
    trains = [r for r in children if r.data.tags["xalign.kind"] == "train"]
    assert sorted(r.data.tags["xalign.seed"] for r in trains) == ["0", "1"]
    assert {r.data.params["train.seed"] for r in trains} == {"0", "1"}
    assert CosineTask.calls == 4
    for r in out["runs"]["eval"]:  # one line per evaluation, none says it is reused
        assert f"evaluating {r['objective']} on {r['task']}, seed {r['seed']}" in first.stderr
    assert first.stderr.count("evaluating ") == 4 and "reusing evaluation" not in first.stderr

    second = CliRunner().invoke(app, args)
    assert second.exit_code == 0, second.output + repr(second.exception)
    again = json.loads(second.stdout)
    assert again["parent_run_id"] != parent
    assert all(r["reused"] for r in again["runs"]["train"] + again["runs"]["eval"])
    for r in again["runs"]["eval"]:  # each reused evaluation is announced, as training is
        who = f"{r['objective']} on {r['task']}, seed {r['seed']}"
        assert f"reusing evaluation run {r['run_id']} ({who})" in second.stderr
    assert second.stderr.count("reusing evaluation run") == len(again["runs"]["eval"]) == 4
    assert "evaluating " not in second.stderr  # reused cells are not announced as evaluated
    assert {r["run_id"] for r in again["runs"]["train"]} == {r.info.run_id for r in trains}
    assert again["rows"] == out["rows"] and CosineTask.calls == 4
    all_train = client.search_runs([exp], "tags.`xalign.kind` = 'train'")
    assert len(all_train) == 2, "no new training runs"
    assert Path(again["artifacts"]["png"]).read_bytes()[:8] == PNG


def test_option_parsing_and_errors(tmp_path):
    assert split_names(["xnli,xquad", "xnli", " align "]) == ["xnli", "xquad", "align"]
    assert parse_task_options(
        ["xnli.epochs=2", "xnli.train.lr=1e-4", "align.sets=[a,b]"], ["xnli", "align"]
    ) == {"xnli": {"epochs": 2, "train": {"lr": 1e-4}}, "align": {"sets": ["a", "b"]}}
    with pytest.raises(ConfigError, match="TASK.KEY=VALUE"):
        parse_task_options(["epochs=2"], ["xnli"])
    result = CliRunner().invoke(app, ["compare", "nope", "--tasks", "fake"])
    assert result.exit_code == 1 and "unknown objective 'nope'" in result.output
    result = CliRunner().invoke(app, ["compare", "sinkhorn", "--tasks", "nope"])
    assert result.exit_code == 1 and "unknown task 'nope'" in result.output
    # without --tasks: the CPU-sized mini protocols
    from xalign.cli.eval import DEFAULT_COMPARE_TASKS

    assert DEFAULT_COMPARE_TASKS == ("align", "xnli-mini")


# ------------------------------------------------------------------------------ content identity
def with_l2(monkeypatch) -> None:
    from xalign.plugins import reset_registry

    monkeypatch.setenv("XALIGN_LOAD_PLUGINS", "sinkhorn,l2")
    reset_registry()


def test_training_runs_are_reused_only_with_the_same_links_file(tiny_model, tmp_path, monkeypatch):
    from xalign.compare import find_training_run
    from xalign.config import load_config
    from xalign.links import links_digest
    from xalign.tracking import Tracker

    with_l2(monkeypatch)
    uri = fresh_store(tmp_path)
    links = tmp_path / "de-en.intersection.txt"
    links.write_text("0-0\n" * 24, encoding="utf-8")
    cfg = load_config(
        None,
        [
            f"model.name={tiny_model}",
            "data.languages=[de]",
            "data.limit=24",
            f"data.links={tmp_path}/{{src}}-{{tgt}}.{{symmetrization}}.txt",
        ],
        objectives=["l2"],
    )
    components, why = expected_components(cfg, ["intersection"])
    before = links_digest([{(0, 0)}] * 24)
    assert why == "" and components["links"] == {"de-en": before}
    run_id = log_train_run(
        uri,
        tiny_model,
        fingerprint=cfg.fingerprint(),
        objective="l2",
        components=components,
        symmetrizations="intersection",
    )
    tracker = Tracker(uri, "xalign")
    found, reasons = find_training_run(tracker, cfg)
    assert found.info.run_id == run_id and reasons == []
    links.write_text("0-0\n" * 23 + "1-1\n", encoding="utf-8")  # one link moved
    after = links_digest([{(0, 0)}] * 23 + [{(1, 1)}])
    found, reasons = find_training_run(tracker, cfg)
    assert found is None
    assert reasons == [
        f"run {run_id} trained on other inputs: links de-en (sha256 {before[:12]} now {after[:12]})"
    ]
    legacy = log_train_run(uri, tiny_model, fingerprint=cfg.fingerprint(), objective="l2")
    assert find_training_run(tracker, cfg)[1][0] == (
        f"run {legacy} recorded no content identity (trained by an older xalign)"
    )


def test_a_trained_runs_identity_is_found_again_only_while_its_links_are_cached(
    tiny_model, tmp_path, monkeypatch
):
    """The trainer's xalign.identity equals compare's expected identity (eflomal links found
    through the cache index, without tokenising); with a cold cache nothing can be reused."""
    from conftest import run_json

    from xalign.compare import find_training_run
    from xalign.config import load_config
    from xalign.tracking import Tracker

    with_l2(monkeypatch)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XALIGN_CACHE_DIR", str(tmp_path / "cache"))
    uri = fresh_store(tmp_path)
    overrides = [
        f"model.name={tiny_model}",
        "data.languages=[de]",
        "data.limit=24",
        "train.batch_size=8",
        "train.max_steps=1",
        f"tracking.uri={uri}",
        f"train.output_dir={tmp_path / 'out'}",
    ]
    out = run_json(["-o", "l2", *(a for o in overrides for a in ("--set", o))])
    cfg = load_config(None, overrides, objectives=["l2"])
    tracker = Tracker(uri, "xalign")
    found, reasons = find_training_run(tracker, cfg)
    assert found is not None and found.info.run_id == out["run_id"], reasons
    monkeypatch.setenv("XALIGN_CACHE_DIR", str(tmp_path / "cold"))
    found, reasons = find_training_run(tracker, cfg)
    assert found is None and len(reasons) == 1
    assert "intersection word links of de-en are not in the cache" in reasons[0]
