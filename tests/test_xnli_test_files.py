"""``test_files`` of the XNLI tasks (xnli, xnli-mini, xnli-probe): the user's own labeled
``premise<TAB>hypothesis<TAB>label`` file replaces a language's XNLI test set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xalign_xnli as xnli
from xalign_xnli.data import XnliDataError, read_nli_file
from xalign_xnli.probe import XnliProbe, XnliProbeConfig

from xalign import DataUnavailableError, TaskContext, XalignError

TASKS = [xnli.Xnli, xnli.XnliMini, XnliProbe]
ROWS = "Ein Hund.\tEin Tier.\tentailment\nEs regnet.\tDie Sonne scheint.\tcontradiction\n"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_read_nli_file_by_hand(tmp_path: Path) -> None:
    path = write(tmp_path / "de.tsv", "premise\thypothesis\tlabel\n" + ROWS + "A\tB\tneutral\n")
    rows = read_nli_file(path)
    assert [r["label"] for r in rows] == [0, 2, 1]  # facebook/xnli ids; header skipped
    assert rows[0] == {"premise": "Ein Hund.", "hypothesis": "Ein Tier.", "label": 0}
    assert read_nli_file(path, limit=2) == rows[:2]


@pytest.mark.parametrize(
    "text, where, what",
    [
        (ROWS + "Nur eine Spalte\n", ":3:", "expected 2 or 3 tab-separated fields, got 1"),
        (ROWS + "A\tB\n", ":3:", "no label"),
        ("A\tB\tentailment\nA\tB\tmaybe\n", ":2:", "unknown label 'maybe'"),
        ("A\tB\tneutral\tx\n", ":1:", "got 4"),
        ("", "", "no rows"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path: Path, text: str, where: str, what: str) -> None:
    path = write(tmp_path / "mine.tsv", text)
    with pytest.raises(XnliDataError) as info:
        read_nli_file(path)
    assert f"{path}{where}" in str(info.value) and what in str(info.value)
    assert isinstance(info.value, XalignError)


@pytest.mark.parametrize("cls", TASKS)
@pytest.mark.parametrize("bad", [["de.tsv"], {"de": ""}, {"de": 3}])
def test_option_is_checked_at_config_load(cls, bad) -> None:
    with pytest.raises(ValueError, match=f"^{cls.name}: test_files"):  # names its own task
        cls.Config(test_files=bad)


@pytest.mark.parametrize("cls", TASKS)
def test_every_xnli_task_has_the_option(cls) -> None:
    assert cls.options()["test_files"] == {}


def mini_data(tmp_path: Path, test_files: dict, languages: list[str] | None = None):
    task = xnli.XnliMini.from_options({"languages": ["en", "de"], "test_files": test_files})
    context = TaskContext(data_dir=tmp_path, languages=languages, show_progress=False)
    return task, task.data_class(task.config, context, task.name), context


def test_fine_tuned_tasks_read_the_file_and_hash_it(tmp_path: Path) -> None:
    mine = write(tmp_path / "mine-de.tsv", ROWS)
    task, data, context = mini_data(tmp_path, {"de": str(mine)})
    assert data.test("de") == read_nli_file(mine)
    assert mine in task.inputs(context)  # part of the reuse key: editing it re-evaluates
    assert data.test_file("en") is None  # English still reads XNLI test


def test_file_for_a_language_not_evaluated_or_missing(tmp_path: Path) -> None:
    mine = write(tmp_path / "mine-sw.tsv", ROWS)
    _, data, _ = mini_data(tmp_path, {"sw": str(mine)})
    with pytest.raises(DataUnavailableError, match="test_files names sw, not among"):
        data.test("de")
    _, data, _ = mini_data(tmp_path, {"de": str(tmp_path / "nope.tsv")})
    with pytest.raises(DataUnavailableError, match=r"test_files.de: no such file: .*nope.tsv"):
        data.test("de")
    with pytest.raises(DataUnavailableError, match=r"--option xnli-mini.languages=\[en,de,sw\]"):
        mini_data(tmp_path, {"sw": str(mine)})[1].test("en")


@pytest.mark.parametrize("cls", [xnli.XnliMini, XnliProbe])
def test_languages_flag_picks_among_the_task_languages(tmp_path: Path, cls) -> None:
    """--languages en on a task whose languages [en, de] have a de test file: the de file
    (present or not) is neither read nor hashed, and English evaluates as usual."""
    (tmp_path / "own").mkdir()
    mine = write(tmp_path / "own" / "mine-de.tsv", ROWS)  # outside the data folder
    (tmp_path / "data").mkdir()
    options = {"languages": ["en", "de"], "test_files": {"de": str(mine)}}
    task = cls.from_options(options)
    narrowed = TaskContext(data_dir=tmp_path / "data", languages=["en"], show_progress=False)
    full = TaskContext(data_dir=tmp_path / "data", show_progress=False)
    assert mine in task.inputs(full) and mine not in task.inputs(narrowed)
    gone = {"languages": ["en", "de"], "test_files": {"de": str(tmp_path / "nope.tsv")}}
    absent = cls.from_options(gone)
    assert not any("nope" in str(p) for p in absent.inputs(narrowed))
    with pytest.raises(DataUnavailableError, match=r"test_files.de: no such file"):
        absent.inputs(full)


def test_xnli_probe_scores_the_users_file(tiny_model, shared_data, tmp_path, one_thread):
    rows = (shared_data / "xnli" / "dev-de.tsv").read_text(encoding="utf-8").splitlines()[1:8]
    mine = write(tmp_path / "mine-de.tsv", "\n".join(rows) + "\n")
    task = XnliProbe(XnliProbeConfig(train_limit=90, test_limit=40, test_files={"de": str(mine)}))
    context = TaskContext(data_dir=shared_data, languages=["en", "de"], show_progress=False)
    result = task.run(str(tiny_model), context)
    assert result.meta["n_test"] == {"en": 40, "de": len(read_nli_file(mine))}
    flags = result.per_example["de"]
    assert result.scores["de"]["accuracy"] == pytest.approx(100 * np.mean(flags))
    assert mine in task.inputs(context)
