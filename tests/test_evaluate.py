"""Model references, eval runs in MLflow, and reuse of finished identical evaluations.

The fake task plugins here are also used by ``test_compare.py``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from conftest import migrated_sqlite_uri
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

import xalign
from xalign.cli import app
from xalign.evaluation.runs import EvaluationError, evaluate_runs, resolve_model, task_results
from xalign.objective import Objective
from xalign.plugins import PluginError, get_registry, reset_registry
from xalign.task import Task, TaskContext, TaskResult

WORD_PAIRS = {
    "de": [("Zug", "train"), ("Hotel", "hotel"), ("Bus", "bus"), ("Hafen", "harbour")],
    "fr": [("train", "train"), ("hôtel", "hotel"), ("bus", "bus"), ("port", "harbour")],
    "el": [("τρένο", "train"), ("ξενοδοχείο", "hotel"), ("λεωφορείο", "bus")],
}


@dataclass
class CosineConfig:
    pooling: str = "mean"


class CosineTask(Task):
    """Per-example cosine of fixed word translations under the model (higher is better)."""

    name = "fake"
    Config = CosineConfig
    metrics = (xalign.Metric("cos", higher_is_better=True),)
    calls: ClassVar[int] = 0

    def run(self, model: str, context: TaskContext) -> TaskResult:
        import torch

        type(self).calls += 1
        enc = xalign.load_encoder(model)
        result = TaskResult(self.name, "cos", {}, {})
        with torch.no_grad():
            for lang, pairs in WORD_PAIRS.items():
                src, _ = enc.encode([[s] for s, _ in pairs], [lang] * len(pairs)).words_vectors(
                    self.config.pooling
                )
                tgt, _ = enc.encode([[t] for _, t in pairs], ["en"] * len(pairs)).words_vectors(
                    self.config.pooling
                )
                cos = torch.nn.functional.cosine_similarity(src[:, 0], tgt[:, 0], dim=-1)
                result.per_example[lang] = [float(c) for c in cos]
                result.scores[lang] = {"cos": float(cos.mean())}
        return result


class SeedlessCosineTask(CosineTask):
    """The same computation, declared independent of the seed (as align/tatoeba/bucc are)."""

    name = "fake-seedless"
    uses_seed = False


@dataclass
class PresetConfig:
    file: str = "preset.json"


class PresetTask(Task):
    """Reads per-example scores from ``<model>/preset.json``: {task: {seed: {lang: [...]}}}."""

    name = "preset"
    Config = PresetConfig
    metric: ClassVar[str] = "acc"
    higher_is_better: ClassVar[bool] = True
    metrics = (xalign.Metric("acc", higher_is_better=True),)  # checked before run()

    def run(self, model: str, context: TaskContext) -> TaskResult:
        data = json.loads((Path(model) / self.config.file).read_text())[self.name]
        per = data[str(context.seed)]
        return TaskResult(
            self.name,
            self.metric,
            {lang: {self.metric: float(np.mean(v))} for lang, v in per.items()},
            per,
            metrics=(xalign.Metric(self.metric, higher_is_better=self.higher_is_better),),
        )


class PresetAER(PresetTask):
    name = "preset-aer"
    metric = "aer"
    higher_is_better = False
    metrics = (xalign.Metric("aer", higher_is_better=False),)


class OtherObjective(Objective):
    """A second objective name for comparisons (never trained in the tests)."""

    name = "other"


class FakePlugin:
    @xalign.hookimpl
    def register_tasks(self, register) -> None:
        for cls in (CosineTask, SeedlessCosineTask, PresetTask, PresetAER):
            register(cls)

    @xalign.hookimpl
    def register_objectives(self, register) -> None:
        register(OtherObjective)


@pytest.fixture(autouse=True)
def fake_plugins(monkeypatch, tmp_path):
    """Only the built-in sinkhorn plus the fakes; MLflow's ./mlruns lands in tmp_path."""
    monkeypatch.setenv("XALIGN_LOAD_PLUGINS", "sinkhorn")
    monkeypatch.chdir(tmp_path)
    reset_registry()
    get_registry().add(FakePlugin(), name="fake-tests", distribution="xalign-tests", version="9.9")
    CosineTask.calls = 0
    yield
    reset_registry()


def fresh_store(tmp_path: Path) -> str:
    return migrated_sqlite_uri(tmp_path / "mlflow.db")


def log_train_run(
    uri: str,
    model_dir: Path | None,
    *,
    fingerprint: str = "f" * 16,
    objective: str = "sinkhorn",
    experiment: str = "xalign",
    components: dict | None = None,
    symmetrizations: str = "",
) -> str:
    """A FINISHED training run as the trainer tags it (without training).

    ``components`` (:func:`xalign.compare.expected_components`): the content identity the
    trainer would record (tag ``xalign.identity`` and the params it is checked against).
    """
    from mlflow.entities import Param

    from xalign.provenance import identity_params, training_identity

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
    tags = {
        "xalign.kind": "train",
        "xalign.objective": objective,
        "xalign.fingerprint": fingerprint,
    }
    if model_dir is not None:
        tags["xalign.model_dir"] = str(Path(model_dir).resolve())
    if components is not None:
        tags["xalign.identity"] = training_identity(components)
        tags["xalign.link_symmetrizations"] = symmetrizations
    run_id = client.create_run(exp_id, tags=tags).info.run_id
    if components is not None:
        client.log_batch(
            run_id, params=[Param(k, v) for k, v in identity_params(components).items()]
        )
    client.set_terminated(run_id)
    return run_id


def test_resolve_model_references(tiny_model, tmp_path):
    uri = fresh_store(tmp_path)
    assert resolve_model("bert-base-multilingual-cased", tracking_uri=uri) == (
        "bert-base-multilingual-cased",
        None,
    )
    assert resolve_model("packaged:multilingual-e5-small", tracking_uri=uri) == (
        "packaged:multilingual-e5-small",
        None,
    )
    assert resolve_model("base", base_model=str(tiny_model)) == (str(tiny_model), None)
    assert resolve_model(str(tiny_model), tracking_uri=uri) == (str(tiny_model), None)
    trained = log_train_run(uri, tiny_model)
    assert resolve_model(trained, tracking_uri=uri) == (str(tiny_model.resolve()), trained)
    # a model directory written by a training run is recognised as that run
    run_id = log_train_run(uri, None)
    model_dir = tmp_path / "out" / run_id / "model"
    shutil.copytree(tiny_model, model_dir)
    MlflowClient(uri).set_tag(run_id, "xalign.model_dir", str(model_dir.resolve()))
    assert resolve_model(str(model_dir), tracking_uri=uri) == (str(model_dir), run_id)
    no_model = log_train_run(uri, None)
    with pytest.raises(EvaluationError, match=f"run {no_model} has no saved model") as caught:
        resolve_model(no_model, tracking_uri=uri)
    assert "train again with `--set train.save_model=true`" in str(caught.value)  # the fix
    with pytest.raises(EvaluationError, match="neither a local path nor an MLflow run"):
        resolve_model("0" * 32, tracking_uri=uri)


def test_evaluate_logs_runs_and_reuses_them(tiny_model, tmp_path, monkeypatch):
    uri = fresh_store(tmp_path)
    ctx = TaskContext(output_dir=tmp_path / "eval", show_progress=False)
    runs = evaluate_runs(str(tiny_model), "fake", seeds=2, context=ctx, tracking_uri=uri)
    assert CosineTask.calls == 2 and [r.seed for r in runs] == [0, 1]
    client = MlflowClient(uri)
    run = client.get_run(runs[1].run_id)
    assert run.info.status == "FINISHED"
    tags = run.data.tags
    assert tags["xalign.kind"] == "eval" and tags["xalign.task"] == "fake"
    assert tags["xalign.seed"] == "1" and tags["xalign.objective"] == "base"
    assert tags["xalign.model_ref"] == str(tiny_model) and tags["xalign.train_run_id"] == ""
    assert tags["xalign.eval_key"] == runs[1].eval_key != runs[0].eval_key
    assert run.data.params["task.pooling"] == "mean"
    assert run.data.params["plugin.distribution"] == "xalign-tests"
    assert run.data.params["plugin.version"] == "9.9"
    assert run.data.metrics["de/cos"] == pytest.approx(runs[1].result.scores["de"]["cos"])
    stored = json.loads(
        Path(client.download_artifacts(run.info.run_id, "result.json", str(tmp_path))).read_text()
    )
    assert stored["per_example"]["el"] == pytest.approx(runs[1].result.per_example["el"])

    again = task_results(str(tiny_model), "fake", seeds=2, context=ctx, tracking_uri=uri)
    assert CosineTask.calls == 2, "finished identical runs are loaded, not recomputed"
    assert [r.scores for r in again] == [r.result.scores for r in runs]
    assert again[0].per_example == runs[0].result.per_example
    opts = {"pooling": "first"}
    task_results(str(tiny_model), "fake", options=opts, context=ctx, tracking_uri=uri)
    assert CosineTask.calls == 3, "other options -> another evaluation"
    task_results(str(tiny_model), "fake", context=ctx, tracking_uri=uri, reuse=False)
    assert CosineTask.calls == 4
    # a task whose results changed meaning (Task.result_version) is not served old ones
    monkeypatch.setattr(CosineTask, "result_version", "2")
    task_results(str(tiny_model), "fake", context=ctx, tracking_uri=uri)
    assert CosineTask.calls == 5, "another result_version -> another evaluation"
    task_results(str(tiny_model), "fake", context=ctx, tracking_uri=uri)
    assert CosineTask.calls == 5, "the same result_version -> reused"


def test_eval_cli_on_a_training_run(tiny_model, tmp_path):
    uri = fresh_store(tmp_path)
    trained = log_train_run(uri, tiny_model, objective="sinkhorn", fingerprint="abc")
    args = [
        "eval",
        trained,
        "--task",
        "fake",
        "--seeds",
        "2",
        "--option",
        "fake.pooling=last",
        "--tracking-uri",
        uri,
        "--json",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    out = json.loads(result.stdout)
    assert out["train_run_id"] == trained and out["objective"] == "sinkhorn"
    assert [r["reused"] for r in out["runs"]] == [False, False]
    assert set(out["summary"]["fake"]) == {"de", "fr", "el"}
    assert out["summary"]["fake"]["de"]["cos"]["n_seeds"] == 2
    assert out["task_options"] == {"fake": {"pooling": "last"}}
    tags = MlflowClient(uri).get_run(out["runs"][0]["run_id"]).data.tags
    assert tags["xalign.train_run_id"] == trained and tags["xalign.objective"] == "sinkhorn"
    # the same run id -> the same identity (its training fingerprint) -> reused
    again = json.loads(CliRunner().invoke(app, args).stdout)
    assert [r["reused"] for r in again["runs"]] == [True, True] and CosineTask.calls == 2
    human = CliRunner().invoke(
        app, ["eval", trained, "-t", "fake", "--option", "fake.pooling=last", "--tracking-uri", uri]
    )
    assert human.exit_code == 0 and "fake" in human.stdout and "de" in human.stdout
    assert "│ 0." in human.stdout and "±" not in human.stdout  # one seed: no spread
    assert "Task options: pooling=last" in human.stdout
    plain = CliRunner().invoke(app, ["eval", trained, "-t", "fake", "--tracking-uri", uri])
    assert plain.exit_code == 0 and "Task options" not in plain.stdout
    bad = CliRunner().invoke(
        app, ["eval", trained, "-t", "fake", "--option", "xnli.k=1", "--tracking-uri", uri]
    )
    assert bad.exit_code == 1 and "task 'xnli' is not among" in bad.output
    # --model is the same as the positional MODEL (reused again); neither or two is an error
    as_option = CliRunner().invoke(app, ["eval", "--model", trained, *args[2:]])
    assert as_option.exit_code == 0, as_option.output
    assert [r["reused"] for r in json.loads(as_option.stdout)["runs"]] == [True, True]
    none = CliRunner().invoke(app, ["eval", "-t", "fake", "--tracking-uri", uri])
    assert none.exit_code == 1 and "no model" in none.output
    two = CliRunner().invoke(app, ["eval", trained, "-m", "other", "-t", "fake"])
    assert two.exit_code == 1 and "two models" in two.output


def test_eval_key_covers_model_content_inputs_and_versions():
    from xalign.evaluation.runs import eval_key

    def key(**changes):
        args = {
            "identity": "files:aa",
            "task": "fake",
            "options": {"pooling": "mean"},
            "seed": 0,
            "languages": None,
            "inputs": {"/d/a.tsv": "1", "/d/b.tsv": "2"},
            "software": {"plugin": "xalign-tests 9.9", "xalign": "0.1.0"},
        }
        args.update(changes)
        return eval_key(
            args.pop("identity"),
            args.pop("task"),
            args.pop("options"),
            args.pop("seed"),
            args.pop("languages"),
            **args,
        )

    base = key()
    assert base == key(inputs={"/d/b.tsv": "2", "/d/a.tsv": "1"})  # order does not matter
    others = [
        key(identity="files:bb"),
        key(inputs={"/d/a.tsv": "1", "/d/b.tsv": "3"}),
        key(inputs={"/d/a.tsv": "1"}),
        key(software={"plugin": "xalign-tests 9.10", "xalign": "0.1.0"}),
        key(seed=1),
        key(languages=["de"]),
        key(options={"pooling": "first"}),
    ]
    assert len({base, *others}) == 1 + len(others)


def test_a_failing_inputs_hook_names_the_plugin(tiny_model, tmp_path):
    from xalign.plugins import PluginError

    class BrokenInputs(CosineTask):
        name = "broken-inputs"

        def inputs(self, context):
            raise RuntimeError("boom")

    class Plugin:
        @xalign.hookimpl
        def register_tasks(self, register) -> None:
            register(BrokenInputs)

    get_registry().add(Plugin(), name="broken", distribution="xalign-broken", version="0.0.1")
    ctx = TaskContext(output_dir=tmp_path / "eval", show_progress=False)
    with pytest.raises(
        PluginError,
        match=r"xalign-broken 0\.0\.1.*failed in inputs\(\): "
        r"RuntimeError: boom",
    ):
        evaluate_runs(
            str(tiny_model), "broken-inputs", context=ctx, tracking_uri=fresh_store(tmp_path)
        )
    assert CosineTask.calls == 0


@pytest.mark.parametrize(
    ("raised", "status", "error"),
    [
        (KeyboardInterrupt("SIGTERM"), "KILLED", KeyboardInterrupt),
        (ZeroDivisionError("bug"), "FAILED", PluginError),
    ],
)
def test_interrupted_or_crashed_eval_runs_end_in_a_terminal_state(
    tiny_model, tmp_path, monkeypatch, raised, status, error
):
    """Ctrl-C/SIGTERM (the CLI turns SIGTERM into KeyboardInterrupt) marks the eval run KILLED;
    a plugin bug marks it FAILED and comes back as a PluginError naming the task."""
    uri = fresh_store(tmp_path)

    def boom(self, model, context):
        raise raised

    monkeypatch.setattr(CosineTask, "run", boom)
    ctx = TaskContext(output_dir=tmp_path / "eval", show_progress=False)
    with pytest.raises(error) as info:
        evaluate_runs(str(tiny_model), "fake", context=ctx, tracking_uri=uri)
    if error is PluginError:
        assert "'fake'" in str(info.value) and "ZeroDivisionError: bug" in str(info.value)
    client = MlflowClient(uri)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert run.info.status == status


@pytest.mark.parametrize("reuse", [True, False])
def test_a_task_that_ignores_the_seed_is_evaluated_once_for_all_seeds(reuse, tiny_model, tmp_path):
    """``uses_seed = False``: 3 seeds -> one evaluation (one MLflow run) standing for all three,
    also with --no-reuse; a task that uses the seed still runs once per seed."""
    SeedlessCosineTask.calls = 0
    uri = fresh_store(tmp_path)
    ctx = TaskContext(output_dir=tmp_path / "eval", show_progress=False)
    kw = {"seeds": 3, "context": ctx, "tracking_uri": uri, "reuse": reuse}
    runs = evaluate_runs(str(tiny_model), "fake-seedless", **kw)
    assert SeedlessCosineTask.calls == 1
    assert [r.seed for r in runs] == [0, 1, 2] and [r.reused for r in runs] == [False, True, True]
    assert len({r.run_id for r in runs}) == 1 and len({r.eval_key for r in runs}) == 1
    assert runs[0].result.scores == runs[2].result.scores
    assert len(MlflowClient(uri).search_runs(["1"])) == 1
    seeded = evaluate_runs(str(tiny_model), "fake", **kw)
    assert CosineTask.calls == 3 and len({r.run_id for r in seeded}) == 3


def test_eval_table_cells():
    from xalign.cli.eval import _fmt

    assert _fmt(0.5, 0.0, 1) == "0.500"
    assert _fmt(61.25, 0.5, 2) == "61.25 ± 0.50"
    assert _fmt(-0.25, 0.0125, 3) == "-0.250 ± 0.013"


@pytest.mark.parametrize(
    ("mean", "std", "n_seeds", "metric", "cell"),
    [
        (4383.0, 0.0, 1, "n_pred", "4383"),  # a count, not 4383.00
        (0.0, 0.0, 1, "n_pred_sure", "0"),
        (1.0, 0.0, 1, "n_sure", "1"),
        (4383.0, 2.0, 3, "n_pred", "4383 ± 2"),
        (4383.0, 1.5, 2, "n_pred", "4383 ± 1.50"),
        (4383.5, 0.71, 2, "n_pred", "4383.50 ± 0.71"),  # a mean of counts need not be whole
        (1.0, 0.0, 1, "accuracy", "1.000"),  # a score in [0, 1] keeps its decimals
        (0.0, 0.0, 1, "aer", "0.000"),
        (35.0, 0.0, 1, "bleu", "35"),
        (float("nan"), 0.0, 1, "n_pred", "nan"),
    ],
)
def test_eval_table_prints_whole_numbers_as_integers(mean, std, n_seeds, metric, cell):
    from xalign.cli.eval import _fmt

    assert _fmt(mean, std, n_seeds, metric) == cell


@pytest.mark.parametrize("kind", ["unavailable", "config", "oserror"])
def test_an_inputs_error_keeps_its_own_message(tmp_path, kind):
    """An xalign error from inputs() (data not found, a bad option) reaches the user as the
    task raised it; only a raw OSError while hashing gets the "cannot hash" context."""
    from xalign.errors import ConfigError
    from xalign.evaluation import DataUnavailableError
    from xalign.evaluation.runs import EvaluationError, task_inputs

    raised = {
        "unavailable": DataUnavailableError("xnli: no local file under /data/xnli"),
        "config": ConfigError("xnli.languages: 'zz' is not a language"),
        "oserror": PermissionError(13, "Permission denied", str(tmp_path / "x.tsv")),
    }[kind]

    class Task:
        def inputs(self, context):
            raise raised

    class Entry:
        def where(self) -> str:
            return "task 'xnli' (plugin 'xnli')"

    with pytest.raises(Exception) as info:
        task_inputs(Task(), Entry(), TaskContext(output_dir=tmp_path, show_progress=False))
    if kind == "oserror":
        assert isinstance(info.value, EvaluationError)
        assert str(info.value).startswith("task 'xnli' (plugin 'xnli'): cannot hash its input")
        assert str(tmp_path / "x.tsv") in str(info.value)
    else:
        assert info.value is raised
        assert "cannot hash" not in str(info.value)
