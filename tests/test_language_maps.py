"""Per-language option maps of the built-in tasks (``treebanks`` of udpos/pos-mini/pos-probe,
``test_files`` of those and of xnli/xnli-mini/xnli-probe) follow one rule
(:func:`xalign.language_key`): the key written as the language (case and ``-``/``_``
ignored), else the one key of its primary language; two keys that could both serve a language
and a key that is not a language code are errors naming the task and the option."""

from __future__ import annotations

from pathlib import Path

import pytest
import xalign_udpos
import xalign_xnli
from test_task_udpos import treebank_text
from typer.testing import CliRunner
from xalign_udpos.probe import PosProbe
from xalign_xnli.probe import XnliProbe

import xalign
from xalign.cli import app
from xalign.errors import XalignError
from xalign.languages import LanguageCodeError, LanguageMapError
from xalign.task import TaskContext

#: (the key or language a user writes, its primary language)
CODES = [
    ("de-DE", "de"),
    ("de_DE", "de"),
    ("zh-Hant-TW", "zh"),
    ("sr-Latn", "sr"),
    ("pt-BR", "pt"),
    ("EN-us", "en"),
]
UD_TASKS = [xalign_udpos.Udpos, xalign_udpos.PosMini, PosProbe]
NLI_TASKS = [xalign_xnli.Xnli, xalign_xnli.XnliMini, XnliProbe]
NOT_CODES = ["deutsch", "de DE", "de--DE", "xlwa-bg-test", "1de"]


def test_language_key_rule() -> None:
    key = xalign.language_key
    assert key("de-DE", ["de", "fr"]) == "de"  # the primary language's key
    assert key("de", ["de_DE", "fr"]) == "de_DE"  # the one key of the language
    assert key("DE_de", ["de-AT", "de-DE"]) == "de-DE"  # the same code: case, - and _
    assert key("de", ["de", "de-AT"]) == "de"  # written as the language
    assert key("ja-JP", ["de", "fr"]) is None
    with pytest.raises(LanguageMapError, match=r"^t: o: de, de-AT could all serve language de-CH"):
        key("de-CH", ["de", "de-AT"], where="t: o")
    with pytest.raises(LanguageCodeError, match="t: o: 'deutsch' is not a language code"):
        key("de", ["deutsch"], where="t: o")
    assert issubclass(LanguageMapError, XalignError) and issubclass(LanguageMapError, ValueError)


# ------------------------------------------------------------------ treebanks


def write_two_treebanks(root: Path, primaries: set[str]) -> Path:
    """Two test treebanks (``xx_aaa``, ``xx_bbb``) of each language, and English train/dev."""
    files = {
        "UD_English-EWT/en_ewt-ud-train.conllu": treebank_text("en", 4),
        "UD_English-EWT/en_ewt-ud-dev.conllu": treebank_text("en", 2),
    }
    for lang in primaries:
        for name in ("aaa", "bbb"):
            files[f"UD_{lang}-{name}/{lang}_{name}-ud-test.conllu"] = treebank_text("en", 2)
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return root


def ud_tests(task: xalign.Task, context: TaskContext) -> list[str]:
    return sorted(p.name for p in task.inputs(context) if p.name.endswith("-ud-test.conllu"))


@pytest.fixture(scope="module")
def ud_root(tmp_path_factory) -> Path:
    return write_two_treebanks(tmp_path_factory.mktemp("ud"), {p for _, p in CODES})


@pytest.mark.parametrize("cls", UD_TASKS)
@pytest.mark.parametrize(("code", "primary"), CODES)
def test_treebanks_keyed_by_a_subtagged_code_serve_its_language(cls, code, primary, ud_root):
    wanted = [f"{primary}_bbb-ud-test.conllu"]
    # key de-DE serves the task language de, and --languages de-DE
    task = cls.from_options({"languages": [primary], "treebanks": {code: f"{primary}_bbb"}})
    assert ud_tests(task, TaskContext(data_dir=ud_root)) == wanted
    assert ud_tests(task, TaskContext(data_dir=ud_root, languages=[code])) == wanted
    # key de serves the task language de-DE
    task = cls.from_options({"languages": [code], "treebanks": {primary: f"{primary}_bbb"}})
    assert ud_tests(task, TaskContext(data_dir=ud_root)) == wanted
    # no key of the language: every treebank of it, pooled
    task = cls.from_options({"languages": [code], "treebanks": {"fr": "fr_gsd"}})
    assert ud_tests(task, TaskContext(data_dir=ud_root)) == [
        f"{primary}_aaa-ud-test.conllu",
        wanted[0],
    ]


@pytest.mark.parametrize("cls", UD_TASKS)
def test_two_treebank_keys_for_one_language_are_an_error(cls, ud_root) -> None:
    name = cls.name
    both = {"de": "de_aaa", "de-AT": "de_bbb"}
    with pytest.raises(LanguageMapError, match=rf"^{name}: treebanks: de, de-AT could all"):
        cls.from_options({"languages": ["de-DE"], "treebanks": both})
    task = cls.from_options({"languages": ["de"], "treebanks": both})  # de: written as such
    assert ud_tests(task, TaskContext(data_dir=ud_root)) == ["de_aaa-ud-test.conllu"]
    with pytest.raises(LanguageMapError, match=rf"^{name}: treebanks: de, de-AT could all"):
        task.inputs(TaskContext(data_dir=ud_root, languages=["de_CH"]))  # --languages de_CH
    with pytest.raises(LanguageMapError, match=rf"^{name}: treebanks: de-DE and de_de are"):
        cls.from_options({"languages": ["de"], "treebanks": {"de-DE": "x", "de_de": "y"}})


@pytest.mark.parametrize("cls", UD_TASKS)
@pytest.mark.parametrize("bad", NOT_CODES)
def test_a_treebank_key_that_is_not_a_code_is_refused(cls, bad) -> None:
    with pytest.raises(LanguageCodeError, match=rf"^{cls.name}: treebanks: '{bad}' is not a"):
        cls.from_options({"languages": ["de"], "treebanks": {bad: "de_gsd"}})
    with pytest.raises(LanguageMapError, match=rf"^{cls.name}: treebanks.de: expected a UD"):
        cls.from_options({"languages": ["de"], "treebanks": {"de": ""}})


# ------------------------------------------------------------------ test_files


def nli_file(path: Path) -> Path:
    """A one-row test file outside the data folder (``tmp_path/data``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("p\th\tentailment\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("cls", NLI_TASKS + UD_TASKS)
@pytest.mark.parametrize(("code", "primary"), CODES)
def test_test_files_keyed_by_a_subtagged_code_serve_its_language(cls, code, primary, tmp_path):
    mine = nli_file(tmp_path / "own" / "mine.txt")

    def chosen(languages: list[str], files: dict[str, str], asked=None) -> list[Path]:
        task = cls.from_options({"languages": languages, "test_files": files})
        return [
            p
            for p in task.inputs(TaskContext(data_dir=tmp_path / "data", languages=asked))
            if p == mine
        ]

    assert chosen([primary], {code: str(mine)}) == [mine]
    assert chosen([primary], {code: str(mine)}, asked=[code]) == [mine]
    assert chosen([code], {primary: str(mine)}) == [mine]
    assert chosen([code], {code.swapcase(): str(mine)}) == [mine]


@pytest.mark.parametrize("cls", NLI_TASKS + UD_TASKS)
def test_test_files_ambiguity_and_non_codes_name_task_and_option(cls, tmp_path) -> None:
    name = cls.name
    mine, other = (nli_file(tmp_path / "own" / f"{n}.txt") for n in ("pt", "br"))
    both = {"pt-PT": str(mine), "pt_BR": str(other)}
    with pytest.raises(LanguageMapError, match=rf"^{name}: test_files: pt-PT, pt_BR could all"):
        cls.from_options({"languages": ["pt"], "test_files": both})
    task = cls.from_options({"languages": ["pt-br", "pt-PT"], "test_files": both})
    inputs = task.inputs(TaskContext(data_dir=tmp_path / "data"))
    assert mine in inputs and other in inputs
    with pytest.raises(LanguageMapError, match=rf"^{name}: test_files: pt-PT, pt_BR could all"):
        task.inputs(TaskContext(data_dir=tmp_path / "data", languages=["pt-AO"]))
    with pytest.raises(LanguageCodeError, match=rf"^{name}: test_files: 'deutsch' is not a"):
        cls.from_options({"languages": ["de"], "test_files": {"deutsch": str(mine)}})


# ------------------------------------------------------------------ CLI: before the model loads


@pytest.mark.parametrize(
    ("task", "option", "says"),
    [
        ("pos-mini", "pos-mini.treebanks={deutsch: de_gsd}", "'deutsch' is not a language code"),
        (
            "pos-probe",
            "pos-probe.treebanks={de: de_gsd, de-AT: de_hdt}",
            "de, de-AT could all serve",
        ),
        ("xnli-mini", "xnli-mini.test_files={de DE: x.tsv}", "'de DE' is not a language code"),
        ("udpos", "udpos.test_files={zh-Hant: a, zh_Hans: b}", "zh-Hant, zh_Hans could all"),
    ],
)
def test_cli_refuses_bad_maps_before_the_model_loads(
    tiny_model, tracking_uri, monkeypatch, task, option, says
) -> None:
    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(xalign, "load_encoder", no_model)
    args = ["eval", str(tiny_model), "-t", task, "--option", option, "--json"]
    if task == "pos-probe":
        args += ["--languages", "de-CH"]
    result = CliRunner().invoke(app, [*args, "--tracking-uri", tracking_uri])
    text = " ".join(result.output.split())
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert says in text and task in text and option.split(".")[1].split("=")[0] in text


def test_pos_probe_run_reads_the_treebank_of_a_region_key(tiny_model, ud_root, one_thread) -> None:
    options = {
        "languages": ["de", "zh-Hant-TW"],
        "treebanks": {"EN_us": "en_ewt", "de-DE": "de_bbb", "zh": "zh_aaa"},
        "train_limit": 4,
        "test_limit": 2,
    }
    task = PosProbe.from_options(options)
    result = task.run(str(tiny_model), TaskContext(data_dir=ud_root, show_progress=False))
    sources = {k: [Path(s).name for s in v] for k, v in result.meta["sources"].items()}
    assert sources == {
        "en/train": ["en_ewt-ud-train.conllu"],
        "de/test": ["de_bbb-ud-test.conllu"],
        "zh/test": ["zh_aaa-ud-test.conllu"],
    }
    assert list(result.scores) == ["de", "zh-Hant-TW"]
