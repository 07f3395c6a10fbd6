"""Reuse keys cover content: editing a gold file, a --data-dir file, a corpus or a model folder
gives a new run, never a stale reused number (issue 9.1)."""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
from conftest import build_tiny_encoder
from test_evaluate import CosineTask, fake_plugins, fresh_store, log_train_run  # noqa: F401
from typer.testing import CliRunner

import xalign
from xalign import provenance
from xalign.alignment import alignment_scores, load_gold
from xalign.cli import app
from xalign.plugins import get_registry
from xalign.task import Task, TaskContext, TaskResult

# The worked example (awesome-align format, 1-based links, German first):
#   pair 1  Das Haus ist klein . ||| The house is small .   gold 1-1 2-2 3-3 4-4 5-5
#   pair 2  Ja ||| Yes                                        gold 1-1
# The task predicts the diagonal: A = {1-1 .. 5-5} + {1-1}, |A| = 6, |S| = |P| = 6.
#   gold as is:              |A∩S| = |A∩P| = 6  -> AER = 1 - 12/12 = 0
#   1-1 2-2 -> 1-2 2-1:      |A∩S| = |A∩P| = 3 + 1 = 4 -> AER = 1 - (4 + 4)/(6 + 6) = 1/3
TEXT = "Das Haus ist klein . ||| The house is small .\nJa ||| Yes\n"
GOLD = "1-1 2-2 3-3 4-4 5-5\n1-1\n"
SWAPPED = "1-2 2-1 3-3 4-4 5-5\n1-1\n"  # same size: only the content changes
AER_SWAPPED = 1 - (4 + 4) / (6 + 6)


@dataclass
class DiagonalConfig:
    gold: str = ""  # an awesome-format .src-tgt path; empty = <data_dir>/align/deen.src-tgt


class DiagonalAER(Task):
    """AER of diagonal links (word i - word i) on one gold set (the model is not read)."""

    name = "diag-aer"
    Config = DiagonalConfig
    metrics = (xalign.Metric("aer", higher_is_better=False),)
    data_folders = ("align",)
    calls: ClassVar[int] = 0

    def run(self, model: str, context: TaskContext) -> TaskResult:
        type(self).calls += 1
        path = self.config.gold or str(Path(context.data_dir) / "align" / "deen.src-tgt")
        gold = load_gold(path)
        pred = [
            {(i, i) for i in range(min(len(s), len(t)))}
            for s, t in zip(gold.src_sents, gold.tgt_sents, strict=True)
        ]
        scores = alignment_scores(pred, gold.sure, gold.possible)
        return TaskResult(
            self.name,
            "aer",
            {"deen": {"aer": scores["aer"]}},
            {"deen": [scores["aer"]]},
        )


class DiagonalPlugin:
    @xalign.hookimpl
    def register_tasks(self, register) -> None:
        register(DiagonalAER)


@pytest.fixture(autouse=True)
def diagonal_task(fake_plugins, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("XALIGN_CACHE_DIR", str(tmp_path / "cache"))
    get_registry().add(DiagonalPlugin(), name="diag", distribution="xalign-tests", version="1.0")
    DiagonalAER.calls = 0


def write_gold(folder: Path, links: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "deen.src-tgt").write_text(TEXT, encoding="utf-8")
    (folder / "deen.gold").write_text(links, encoding="utf-8")
    return folder / "deen.src-tgt"


def eval_json(args: list[str]) -> dict:
    result = CliRunner().invoke(app, ["eval", *args, "--json"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return json.loads(result.stdout)


def first_run(out: dict) -> tuple[float, bool]:
    run = out["runs"][0]
    return run["scores"]["deen"]["aer"], run["reused"]


def test_editing_the_gold_file_is_a_new_evaluation(tiny_model, tmp_path):
    uri = fresh_store(tmp_path)
    src_tgt = write_gold(tmp_path / "gold", GOLD)
    args = [
        str(tiny_model),
        "-t",
        "diag-aer",
        "--option",
        f"diag-aer.gold={src_tgt}",
        "--tracking-uri",
        uri,
    ]
    assert first_run(eval_json(args)) == (0.0, False)
    (tmp_path / "gold" / "deen.gold").write_text(SWAPPED, encoding="utf-8")
    aer, reused = first_run(eval_json(args))
    assert not reused and aer == pytest.approx(AER_SWAPPED) and aer == pytest.approx(1 / 3)
    again = eval_json(args)
    assert first_run(again) == (pytest.approx(1 / 3), True) and DiagonalAER.calls == 2
    fresh = eval_json([*args, "--no-reuse"])
    assert first_run(fresh) == (pytest.approx(1 / 3), False) and DiagonalAER.calls == 3
    # the run records what it hashed: both gold files, with their sha256
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    stored = json.loads(
        Path(
            client.download_artifacts(again["runs"][0]["run_id"], "inputs.json", str(tmp_path))
        ).read_text()
    )
    gold_file = str((tmp_path / "gold" / "deen.gold").resolve())
    assert stored[gold_file] == provenance._sha256_file(tmp_path / "gold" / "deen.gold")
    assert str(src_tgt.resolve()) in stored


def test_an_eval_run_whose_artifacts_are_gone_is_evaluated_again(tiny_model, tmp_path):
    """The store lists a FINISHED run with the same key but its artifact folder was deleted
    (e.g. a sqlite store whose ./mlruns went with an old checkout): a warning naming the run,
    a new evaluation, and no traceback."""
    from mlflow.tracking import MlflowClient

    uri = fresh_store(tmp_path)
    src_tgt = write_gold(tmp_path / "gold", SWAPPED)
    args = [str(tiny_model), "-t", "diag-aer", "--option", f"diag-aer.gold={src_tgt}"]
    args += ["--tracking-uri", uri]
    first = eval_json(args)["runs"][0]
    artifacts = MlflowClient(uri).get_run(first["run_id"]).info.artifact_uri
    shutil.rmtree(artifacts.removeprefix("file://"))
    result = CliRunner().invoke(app, ["eval", *args, "--json"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    again = json.loads(result.stdout)["runs"][0]
    assert not again["reused"] and again["run_id"] != first["run_id"]
    assert again["scores"]["deen"]["aer"] == pytest.approx(1 / 3) and DiagonalAER.calls == 2
    assert f"not reusing eval run {first['run_id']}" in result.stderr
    assert "has no artifact 'result.json'" in result.stderr
    assert "Traceback" not in result.output
    # the new run is complete, so the next call reuses it
    assert eval_json(args)["runs"][0]["run_id"] == again["run_id"]


def test_editing_a_data_dir_file_is_a_new_evaluation(tiny_model, tmp_path):
    uri = fresh_store(tmp_path)
    data = tmp_path / "data"
    write_gold(data / "align", GOLD)
    (data / "xnli").mkdir()
    (data / "xnli" / "dev-en.tsv").write_text("a\tb\tneutral\n", encoding="utf-8")
    args = [str(tiny_model), "-t", "diag-aer", "--data-dir", str(data), "--tracking-uri", uri]
    assert first_run(eval_json(args)) == (0.0, False)
    # a file outside the task's data folders does not matter to it
    (data / "xnli" / "dev-en.tsv").write_text("a\tb\tentailment\n", encoding="utf-8")
    assert first_run(eval_json(args)) == (0.0, True)
    (data / "align" / "deen.gold").write_text(SWAPPED, encoding="utf-8")
    assert first_run(eval_json(args)) == (pytest.approx(1 / 3), False)
    assert DiagonalAER.calls == 2


def test_a_model_retrained_into_the_same_folder_is_not_reused(tmp_path):
    """The same run id and folder, new weights: the evaluation is computed again."""
    uri = fresh_store(tmp_path)
    model = build_tiny_encoder(tmp_path / "out" / "model", seed=0)
    trained = log_train_run(uri, model, objective="sinkhorn", fingerprint="same")
    args = [trained, "-t", "fake", "--tracking-uri", uri]
    first = eval_json(args)
    assert eval_json(args)["runs"][0]["reused"] and CosineTask.calls == 1
    shutil.rmtree(model)
    build_tiny_encoder(model, seed=1)  # "retrained": same folder, same run tag, other weights
    second = eval_json(args)
    assert not second["runs"][0]["reused"] and CosineTask.calls == 2
    assert second["runs"][0]["scores"]["de"] != first["runs"][0]["scores"]["de"]
    # by path, too
    assert eval_json([str(model), "-t", "fake", "--tracking-uri", uri])["runs"][0]["reused"]


def test_file_digests_are_cached_by_path_size_and_mtime(tmp_path, monkeypatch):
    monkeypatch.setenv("XALIGN_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "corpus.txt"
    path.write_text("Das Haus ist klein .\n", encoding="utf-8")
    old = time.time() - 60
    os.utime(path, (old, old))  # settled: older than RACY_SECONDS
    digest = provenance.file_digest(path)
    assert digest == provenance._sha256_file(path)
    assert list((tmp_path / "cache" / "hashes").rglob("*.json"))  # on disk for other processes
    provenance._MEMO.clear()  # a new process: only the disk cache is left

    def no_hashing(_path):
        raise AssertionError("an unchanged file must not be read again")

    monkeypatch.setattr(provenance, "_sha256_file", no_hashing)
    assert provenance.file_digest(path) == digest
    monkeypatch.undo()
    monkeypatch.setenv("XALIGN_CACHE_DIR", str(tmp_path / "cache"))
    path.write_text("Das Haus ist groß .\n", encoding="utf-8")  # same size, new mtime
    assert provenance.file_digest(path) == provenance._sha256_file(path) != digest
    # a file changed just now is hashed again every time (its mtime may not move on a quick
    # second edit): nothing of it is kept
    before = len(list((tmp_path / "cache" / "hashes").rglob("*.json")))
    path.write_text("Das Haus ist grün .\n", encoding="utf-8")
    provenance.file_digest(path)
    assert len(list((tmp_path / "cache" / "hashes").rglob("*.json"))) == before


def test_task_inputs_defaults(tmp_path, monkeypatch):
    data = tmp_path / "data"
    write_gold(data / "align", GOLD)
    (data / "xnli").mkdir()
    (data / "xnli" / "test-de.tsv").write_text("x\n", encoding="utf-8")
    (data / "SOURCES.md").write_text("where from\n", encoding="utf-8")
    (data / "align" / ".hidden").write_text("editor swap\n", encoding="utf-8")
    ctx = TaskContext(data_dir=data)
    names = {p.relative_to(data).as_posix() for p in CosineTask().inputs(ctx)}
    assert names == {"align/deen.src-tgt", "align/deen.gold", "xnli/test-de.tsv", "SOURCES.md"}
    names = {p.relative_to(data).as_posix() for p in DiagonalAER().inputs(ctx)}
    assert names == {"align/deen.src-tgt", "align/deen.gold", "SOURCES.md"}
    # --data-dir pointing at the task folder itself
    assert {p.name for p in DiagonalAER().inputs(TaskContext(data_dir=data / "align"))} == {
        "deen.src-tgt",
        "deen.gold",
    }
    # a path-valued option counts with its same-stem siblings
    other = write_gold(tmp_path / "elsewhere", SWAPPED)
    task = DiagonalAER(DiagonalConfig(gold=str(other)))
    extra = {p.name for p in task.inputs(TaskContext(data_dir=tmp_path / "none"))}
    assert extra == {"deen.src-tgt", "deen.gold"}
    # the built-in tasks declare their folders
    from xalign_align_eval import AlignTask
    from xalign_tatoeba import TatoebaTask
    from xalign_xnli import Xnli, XnliMini
    from xalign_xquad import QaMini, Xquad

    assert AlignTask.data_folders == ("align",) and TatoebaTask.data_folders == ("tatoeba",)
    assert "xnli" in Xnli.data_folders and XnliMini.data_folders == Xnli.data_folders
    assert {"xquad", "squad", "tydiqa"} <= set(Xquad.data_folders) and QaMini.data_folders
    align = {p.relative_to(data).as_posix() for p in AlignTask().inputs(ctx)}
    assert align == {"align/deen.src-tgt", "align/deen.gold", "SOURCES.md"}


def test_compare_retrains_when_the_corpus_changes(tiny_model, tmp_path):
    """Same config, same fingerprint, edited corpus file: a new training run, and the log
    says why the old one was not reused."""
    uri = fresh_store(tmp_path)
    from xalign.data.corpus import read_parallel

    pairs = read_parallel("demo", "de", "en", limit=16)
    corpus = tmp_path / "de-en.tsv"
    corpus.write_text("".join(f"{p[0]}\t{p[1]}\n" for p in pairs), encoding="utf-8")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        json.dumps(
            {
                "model": {"name": str(tiny_model)},
                "data": {"languages": ["de"], "corpus": str(tmp_path / "{src}-{tgt}.tsv")},
                "train": {"output_dir": str(tmp_path / "out"), "batch_size": 8, "max_steps": 1},
                "tracking": {"uri": uri},
                "objectives": {"sinkhorn": {}},
            }
        )
    )
    args = ["compare", "sinkhorn", "--config", str(cfg), "--tasks", "fake", "--json"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output + repr(first.exception)
    assert [r["reused"] for r in json.loads(first.stdout)["runs"]["train"]] == [False]
    again = CliRunner().invoke(app, args)
    assert [r["reused"] for r in json.loads(again.stdout)["runs"]["train"]] == [True]
    text = corpus.read_text(encoding="utf-8").replace("\t", "\t(edited) ", 1)
    corpus.write_text(text, encoding="utf-8")
    edited = CliRunner().invoke(app, args)
    assert edited.exit_code == 0, edited.output + repr(edited.exception)
    out = json.loads(edited.stdout)
    assert [r["reused"] for r in out["runs"]["train"]] == [False]
    log = " ".join(edited.stderr.split())  # rich wraps long lines
    assert "trained on other inputs: corpus de-en (sha256" in log, log
    assert (
        len(
            {r["fingerprint"] for r in out["runs"]["train"]}
            | {r["fingerprint"] for r in json.loads(first.stdout)["runs"]["train"]}
        )
        == 1
    )
