"""The ``bucc`` task's ``split: dev``: the dev split scored, what the threshold means then,
the files read (the reuse key) and the errors naming the options.

The hand example of test_task_bucc.py: with k = 2 and max retrieval the candidates are
(x2,y2) 1.016449, (x0,y0) 1.011538, (x1,y1) 1.002232, i.e. with the ids of ``_vector_task``
(de-3,en-3), (de-1,en-1), (de-2,en-2). Here the dev gold is {(de-3,en-3), (de-2,en-1)}: one
candidate is right, and (de-2,en-1) is never mined. The test gold is all three candidates.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from test_task_bucc import MARGIN, _NoEncoder, _vector_task, _write_bucc
from typer.testing import CliRunner
from xalign_bucc import BuccConfig, BuccTask
from xalign_bucc.build import main as build_main
from xalign_bucc.data import load_bucc

from xalign import TaskContext
from xalign.cli import app
from xalign.errors import ConfigError
from xalign.evaluation.runs import eval_key

M22, M00, M11 = (float(MARGIN[i, i]) for i in (2, 0, 1))
DEV_GOLD = [("de-3", "en-3"), ("de-2", "en-1")]


def _dev_task(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> TaskContext:
    """The hand vectors in both splits, the dev gold above, no Hub to fall back on."""
    data_dir = _vector_task(monkeypatch, tmp_path)
    (tmp_path / "bucc2018" / "de-en.dev.gold").write_text(
        "".join(f"{a}\t{b}\n" for a, b in DEV_GOLD), encoding="utf-8"
    )

    def no_hub(lang: str, split: str) -> None:
        raise ConnectionError(f"no Hub in tests ({lang} {split})")

    monkeypatch.setattr("xalign_bucc.data._load_hub_rows", no_hub)
    return TaskContext(data_dir=data_dir, show_progress=False)


def _run(context: TaskContext, **options) -> tuple[dict, dict]:
    result = BuccTask(BuccConfig(languages=["de"], k=2, **options)).evaluate(_NoEncoder(), context)
    assert np.mean(result.per_example["de"]) == pytest.approx(result.scores["de"]["f1"])
    return result.scores["de"], result


def test_dev_split_with_a_fixed_threshold_reads_only_dev(monkeypatch, tmp_path) -> None:
    context = _dev_task(monkeypatch, tmp_path)
    for ext in ("de", "en", "gold"):  # no test split at all: it must not be needed
        (tmp_path / "bucc2018" / f"de-en.test.{ext}").unlink()
    # 1.005 keeps (de-3,en-3) right and (de-1,en-1) wrong; gold (de-2,en-1) missed:
    # P = 1/2, R = 1/2, F1 = 2·1/(2+2) = 50.
    scores, result = _run(context, split="dev", threshold=1.005)
    assert (scores["precision"], scores["recall"], scores["f1"]) == (50.0, 50.0, 50.0)
    assert (scores["n_gold"], scores["n_predicted"], scores["threshold"]) == (2, 2, 1.005)
    assert "dev_f1" not in scores and "test_f1" not in scores
    # per dev sentence in file order de-3, de-1, de-2: matched 2, 0, 0; total 2, 1, 1
    assert vars(result.counts["de"]) == {"matched": [2, 0, 0], "total": [2, 1, 1]}
    assert result.meta["split"] == "dev"
    assert result.meta["threshold"] == {
        "setting": 1.005,
        "chosen_on": None,
        "oracle": False,
        "how": "fixed at 1.005 (option threshold)",
    }
    data = result.meta["data"]["de"]
    assert data["dev"].endswith("de-en.dev.de") and "test" not in data
    assert data["threshold_from"] == "option"
    assert "dev pool" in result.meta["per_example"]


def test_dev_split_oracle_is_flagged(monkeypatch, tmp_path) -> None:
    context = _dev_task(monkeypatch, tmp_path)
    # cuts on dev: keep 1 -> 2·1/(1+2) = 66.7 (best); keep 2 -> 2/4 = 50; keep 3 -> 2/5 = 40;
    # the threshold lies halfway between the first two margins.
    scores, result = _run(context, split="dev", threshold="oracle")
    assert scores["f1"] == pytest.approx(200 / 3) and scores["dev_f1"] == scores["f1"]
    assert (scores["precision"], scores["recall"]) == (100.0, 50.0)
    assert scores["threshold"] == pytest.approx((M22 + M00) / 2)
    assert vars(result.counts["de"]) == {"matched": [2, 0, 0], "total": [2, 0, 1]}
    meta = result.meta["threshold"]
    assert (meta["setting"], meta["chosen_on"], meta["oracle"]) == ("oracle", "dev", True)
    assert "oracle upper bound" in meta["how"]
    assert result.meta["data"]["de"]["threshold_from"].endswith("de-en.dev.de")


def test_dev_split_with_the_threshold_chosen_on_test(monkeypatch, tmp_path) -> None:
    context = _dev_task(monkeypatch, tmp_path)
    # On test every candidate is gold: threshold = the last margin, test F1 100. On dev all
    # 3 kept, 1 right: P = 1/3, R = 1/2, F1 = 2·1/(3+2) = 40.
    scores, result = _run(context, split="dev", threshold="test")
    assert scores["threshold"] == pytest.approx(M11) and scores["test_f1"] == 100.0
    assert scores["f1"] == pytest.approx(40.0) and scores["precision"] == pytest.approx(100 / 3)
    assert result.meta["threshold"]["chosen_on"] == "test"
    assert result.meta["threshold"]["oracle"] is False
    assert (
        result.meta["threshold"]["how"] == "F1-optimal on the test split, applied to the dev split"
    )
    assert result.meta["data"]["de"]["threshold_from"].endswith("de-en.test.de")


def test_test_split_is_unchanged_and_differs_from_dev(monkeypatch, tmp_path) -> None:
    context = _dev_task(monkeypatch, tmp_path)
    # default: threshold from dev ((M22 + M00)/2, dev F1 66.7) keeps only (de-3,en-3) on
    # test: P 100, R 1/3, F1 = 2·1/(1+3) = 50.
    scores, result = _run(context)
    assert scores["f1"] == pytest.approx(50.0) and scores["dev_f1"] == pytest.approx(200 / 3)
    assert result.meta["split"] == "test" and result.meta["threshold"]["oracle"] is False
    assert result.meta["data"]["de"]["test"].endswith("de-en.test.de")
    # threshold: test and oracle are the same oracle on the test split
    for setting in ("test", "oracle"):
        oracle, result = _run(context, threshold=setting)
        assert oracle["f1"] == 100.0 and oracle["test_f1"] == 100.0
        assert result.meta["threshold"]["oracle"] is True


def test_split_and_threshold_errors_name_the_options() -> None:
    with pytest.raises(ValueError, match=r"bucc: split must be 'test' or 'dev' .*'sample'"):
        BuccConfig(split="sample")
    with pytest.raises(ValueError, match=r"threshold must be 'dev', 'test', 'oracle' or a number"):
        BuccConfig(split="dev", threshold="best")
    # the default threshold (dev) chosen on the split it scores: refused, not an oracle
    for options in ({"split": "dev"}, {"split": "dev", "threshold": "dev"}):
        with pytest.raises(
            ConfigError,
            match=r"task 'bucc': bucc: split: dev with threshold: dev .* threshold: oracle",
        ):
            BuccTask.from_options(options)
    assert BuccTask.from_options({"split": "dev", "threshold": "0.9"}).config.threshold == 0.9
    # compare refuses it before any training, naming the plugin and the options
    from xalign.compare.orchestrate import _check_inputs
    from xalign.plugins import PluginError, get_registry

    with pytest.raises(PluginError, match=r"plugin 'bucc'.*bad options.*split: dev with threshold"):
        _check_inputs(["sinkhorn"], ["bucc"], 1, {"bucc": {"split": "dev"}}, get_registry())
    ok = {"bucc": {"split": "dev", "threshold": "oracle"}}
    assert _check_inputs(["sinkhorn"], ["bucc"], 1, ok, get_registry()) == ok


@pytest.mark.parametrize("value", ["nan", float("nan"), "inf", "-inf", float("inf")])
def test_a_fixed_threshold_must_be_a_finite_number(value) -> None:
    """NaN kept no pair (F1 0, threshold nan) and inf likewise, without an error."""
    with pytest.raises(ValueError, match=r"or a number, got .* \(a finite one: NaN or infinity"):
        BuccConfig(split="dev", threshold=value)


@pytest.mark.parametrize("value", [True, None, [1.0]])
def test_a_threshold_that_is_no_number_is_refused(value) -> None:
    with pytest.raises(ValueError, match=r"threshold must be 'dev', 'test', 'oracle' or a number"):
        BuccConfig(split="dev", threshold=value)


@pytest.mark.parametrize(("value", "number"), [("1.05", 1.05), (1, 1.0), ("-0.5", -0.5)])
def test_a_fixed_threshold_is_read_as_a_float(value, number) -> None:
    assert BuccConfig(split="dev", threshold=value).threshold == number


def test_a_relative_data_dir_is_recorded_by_its_absolute_path(tmp_path, monkeypatch) -> None:
    """meta["data"][xx][split] (the source read) names the file wherever the result is read."""
    _write_bucc(tmp_path / "d" / "bucc2018", "de", "dev", [("de-1", "x")], [("en-1", "y")],
                [("de-1", "en-1")])  # fmt: skip
    monkeypatch.chdir(tmp_path)
    data = load_bucc("de", "dev", "d")
    assert data.source == f"local:{tmp_path.absolute() / 'd' / 'bucc2018' / 'de-en.dev.de'}"


def test_inputs_are_the_files_of_the_splits_read(monkeypatch, tmp_path) -> None:
    context = _dev_task(monkeypatch, tmp_path)
    _write_bucc(tmp_path / "bucc2018", "fr", "dev", [("fr-1", "x0")], [("en-1", "y0")], [])
    folder = tmp_path / "bucc2018"

    def files(*splits: str, langs: tuple[str, ...] = ("de",)) -> list[Path]:
        exts = lambda x: (x, "en", "gold")  # noqa: E731
        return sorted(folder / f"{x}-en.{s}.{e}" for x in langs for s in splits for e in exts(x))

    def inputs(**options) -> list[Path]:
        return BuccTask(BuccConfig(languages=["de"], **options)).inputs(context)

    assert inputs(split="dev", threshold=1.0) == files("dev")
    assert inputs(split="dev", threshold="oracle") == files("dev")
    assert inputs(split="dev", threshold="test") == files("dev", "test")
    assert inputs(threshold="oracle") == inputs(threshold="test") == files("test")
    assert inputs() == files("dev", "test")
    two = BuccTask(BuccConfig(languages=["de", "fr"], split="dev", threshold=1.0))
    assert two.inputs(context) == files("dev", langs=("de", "fr"))
    # the split is an option, so it is in the evaluation's key: dev and test never share one
    keys = {
        eval_key("m", "bucc", dataclasses.asdict(BuccConfig(split=s, threshold=1.0)), None)
        for s in ("dev", "test")
    }
    assert len(keys) == 2


def test_cli_scores_the_dev_split_of_a_built_set(tiny_model, tmp_path, tracking_uri) -> None:
    """``python -m xalign_bucc.build`` then ``xalign eval --option bucc.split=dev``: dev is
    scored, test and dev results are separate evaluations, a repeat is reused."""
    words = "the house tree water river city book table green small old new road".split()
    lines = [" ".join(words[(n + j) % len(words)] for j in range(n % 5 + 3)) for n in range(40)]
    src = tmp_path / "src.txt"
    src.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    out = tmp_path / "set"
    build_main([str(src), str(src), "--lang", "de", "--out", str(out), "--gold", "8",
                "--src-only", "4", "--en-only", "6"])  # fmt: skip

    def run(*options: str) -> dict:
        args = ["eval", str(tiny_model), "--task", "bucc", "--data-dir", str(out)]
        args += ["--option", "bucc.languages=[de]", "--tracking-uri", tracking_uri, "--json"]
        for option in options:
            args += ["--option", f"bucc.{option}"]
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 0, res.output
        return json.loads(res.stdout.strip().splitlines()[-1])["runs"][0]

    dev = run("split=dev", "threshold=oracle")
    assert not dev["reused"]
    scores = dev["scores"]["de"]
    assert (scores["n_gold"], scores["n_src"], scores["n_en"]) == (8, 12, 14)
    assert scores["f1"] == pytest.approx(scores["dev_f1"])
    test = run("split=test", "threshold=oracle")
    assert not test["reused"] and test["eval_key"] != dev["eval_key"]
    again = run("split=dev", "threshold=oracle")
    assert again["reused"] and again["eval_key"] == dev["eval_key"]
    refused = CliRunner().invoke(
        app,
        [
            "eval",
            str(tiny_model),
            "--task",
            "bucc",
            "--data-dir",
            str(out),
            "--option",
            "bucc.split=dev",
            "--tracking-uri",
            tracking_uri,
        ],  # fmt: skip
    )
    assert refused.exit_code != 0 and "threshold: oracle" in refused.output
