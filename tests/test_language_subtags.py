"""One definition of a code's primary language (:func:`xalign.primary_language`), used by every
option that takes a language: XNLI, UD POS, XQuAD/MLQA, align, Tatoeba, BUCC, Moses rules,
``--languages`` (issue 20.5).

Each task reads a code's data by its primary language (``de-DE`` reads ``test-de.tsv``) and
reports under the code given; a string that is not a language code is refused before the
model loads, naming the task and the option.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import xalign_align_eval
import xalign_bucc
import xalign_mlqa
import xalign_tatoeba
import xalign_udpos
import xalign_xnli
import xalign_xquad
from test_task_mlqa import squad_json
from test_task_udpos import treebank_text, write_treebanks
from typer.testing import CliRunner
from xalign_bucc.data import find_local
from xalign_tatoeba.data import tatoeba_code
from xalign_udpos.data import load_ud
from xalign_udpos.probe import PosProbe
from xalign_xnli.data import load_xnli
from xalign_xnli.probe import XnliProbe
from xalign_xquad.data import load_xquad

import xalign
from xalign.cli import app
from xalign.data.text import moses_language
from xalign.errors import XalignError
from xalign.evaluation.runs import EvaluationError, check_languages
from xalign.languages import LanguageCodeError, language_in, language_key, primary_language

ROOT = Path(__file__).resolve().parents[1]

#: (code a user types, its primary language)
CODES = [
    ("de-DE", "de"),
    ("de_DE", "de"),
    ("zh-Hans", "zh"),
    ("zh-Hant-TW", "zh"),
    ("pt-BR", "pt"),
    ("sr-Latn", "sr"),
    ("EN-us", "en"),
    ("es-419", "es"),
    (" fr ", "fr"),
    ("deu_Latn", "deu"),
]
NOT_CODES = ["", "d", "deutsch", "de DE", "de--DE", "de-", "de-toolongsubtag", "1de", "de/en"]


@pytest.mark.parametrize(("code", "primary"), CODES)
def test_primary_language_of_bcp47_codes(code: str, primary: str) -> None:
    assert xalign.primary_language(code) == primary
    assert language_in(code, ["fr", primary, "en-GB"]) == primary


@pytest.mark.parametrize("code", NOT_CODES)
def test_a_string_that_is_not_a_code_is_refused(code: str) -> None:
    with pytest.raises(LanguageCodeError, match=rf"xnli: languages: {re.escape(repr(code))}"):
        primary_language(code, where="xnli: languages")
    assert issubclass(LanguageCodeError, XalignError) and issubclass(LanguageCodeError, ValueError)


def test_language_in_prefers_the_same_code_and_refuses_ambiguity() -> None:
    assert language_in("pt_br", ["pt-PT", "pt-BR"]) == "pt-BR"  # same code, _ and case ignored
    assert language_in("pt", ["pt-PT", "pt-BR"]) is None  # two Portuguese entries
    assert language_in("de", ["de-CH", "fr"]) == "de-CH"
    assert language_in("ja-JP", ["de", "fr"]) is None


def test_one_definition_in_the_code() -> None:
    """No module re-derives the primary subtag itself (the kind: three copies had drifted)."""
    pattern = re.compile(r"""split\(\s*r?["']\[-_\]|partition\(\s*["'][-_]["']""")
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for folder in ("xalign", "plugins")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if path.name != "languages.py"
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if pattern.search(line)
    ]
    assert offenders == []


@pytest.mark.parametrize(("code", "primary"), CODES[:7])
def test_moses_tatoeba_bucc_follow_the_primary_language(tmp_path, code, primary) -> None:
    assert moses_language(code) == primary
    if primary in xalign_tatoeba.data.TATOEBA_ISO3:
        assert tatoeba_code(code) == xalign_tatoeba.data.TATOEBA_ISO3[primary]
    for name in (f"{primary}-en.test.{primary}", f"{primary}-en.test.en"):
        (tmp_path / name).write_text("x\ty\n", encoding="utf-8")
    found, _ = find_local(code, "test", tmp_path)
    assert found is not None and found[0] == tmp_path / f"{primary}-en.test.{primary}"


# ------------------------------------------------------------------ loaders read the primary


def nli_rows(tag: str, n: int) -> str:
    labels = ("entailment", "neutral", "contradiction")
    return "".join(f"{tag} premise {i}\t{tag} hypothesis {i}\t{labels[i % 3]}\n" for i in range(n))


def write_xnli(root: Path, langs: list[str], n: int = 6) -> Path:
    folder = root / "xnli"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dev-en.tsv").write_text(nli_rows("dev-en", 24), encoding="utf-8")
    for lang in langs:
        (folder / f"test-{lang}.tsv").write_text(nli_rows(f"test-{lang}", n), encoding="utf-8")
    return root


@pytest.mark.parametrize(("code", "primary"), CODES[:7])
def test_xnli_ud_xquad_read_the_primary_languages_files(tmp_path, code, primary) -> None:
    write_xnli(tmp_path, [primary])
    rows = load_xnli(code, "test", tmp_path)
    assert rows[0]["premise"] == f"test-{primary} premise 0" and len(rows) == 6
    ud = tmp_path / "ud"
    ud.mkdir()
    (ud / f"{primary}_toy-ud-test.conllu").write_text(treebank_text("en", 3), encoding="utf-8")
    split = load_ud(code, "test", tmp_path)
    assert split.sources == [str(ud / f"{primary}_toy-ud-test.conllu")] and split.total == 3
    (tmp_path / "xquad").mkdir()
    squad = json.dumps(squad_json([("Ada", "Paris", "1815")]))
    (tmp_path / "xquad" / f"xquad.{primary}.json").write_text(squad, encoding="utf-8")
    assert [e["id"] for e in load_xquad(code, tmp_path)] == ["en-0-where", "en-0-when"]


@pytest.mark.parametrize("code", ["de-DE", "de_DE", "zh-Hans-CN", "EN-us"])
def test_mlqa_reads_and_scores_by_the_primary_language(tmp_path, code) -> None:
    primary = primary_language(code)
    folder = tmp_path / "MLQA_V1" / "test"
    folder.mkdir(parents=True)
    name = xalign_mlqa.mlqa_file_name("test", primary, primary)
    (folder / name).write_text(json.dumps(squad_json([("Ada", "Paris", "1815")], lang=primary)))
    assert len(xalign_mlqa.load_mlqa(code, "test", tmp_path)) == 2
    assert xalign_mlqa.MlqaConfig(languages=[code]).languages == [code]
    with pytest.raises(ValueError, match="MLQA has no language ja-JP"):
        xalign_mlqa.MlqaConfig(languages=["ja-JP"])


def test_align_selects_gold_sets_by_primary_language() -> None:
    gold = xalign.GoldSet("bicici-deen", "de", "en", [["a"]], [["b"]], [set()], [set()])
    wanted = xalign_align_eval._wanted
    assert all(wanted(gold, [code]) for code in ("de", "de-DE", "de_AT", "DE"))
    assert not any(wanted(gold, [code]) for code in ("fr-FR", "en", "xlwa-bg-test"))
    assert wanted(gold, ["bicici-deen"])


# ------------------------------------------------------------------ options and --languages


class _Entry:
    def where(self) -> str:
        return "task 'xnli-mini' (plugin 'xnli')"


def test_dash_dash_languages_selects_by_primary_language_and_keeps_the_code() -> None:
    task = xalign_xnli.Xnli.from_options({})
    asked = ["de-DE", "zh-Hant-TW", "EN-us", "bg_BG"]
    assert check_languages(task, _Entry(), asked) == asked
    with pytest.raises(EvaluationError, match="--languages ja-JP: task 'xnli-mini'"):
        check_languages(task, _Entry(), ["de-DE", "ja-JP"])
    with pytest.raises(LanguageCodeError, match="--languages: task 'xnli-mini'.*'de DE'"):
        check_languages(task, _Entry(), ["de DE"])
    for twins in (["de", "DE"], ["de-DE", "de_de"], ["en", "zh-hant", "zh-Hant"]):
        with pytest.raises(EvaluationError, match="^--languages: .* are the same language"):
            check_languages(task, _Entry(), twins)
    assert check_languages(task, _Entry(), ["de", "de"]) == ["de"]  # written twice: once


TASKS = [
    (xalign_xnli.Xnli, "xnli"),
    (xalign_xnli.XnliMini, "xnli-mini"),
    (XnliProbe, "xnli-probe"),
    (xalign_udpos.Udpos, "udpos"),
    (xalign_udpos.PosMini, "pos-mini"),
    (PosProbe, "pos-probe"),
    (xalign_xquad.Xquad, "xquad"),
    (xalign_xquad.QaMini, "qa-mini"),
    (xalign_mlqa.Mlqa, "mlqa"),
    (xalign_tatoeba.TatoebaTask, "tatoeba"),
    (xalign_bucc.BuccTask, "bucc"),
]


@pytest.mark.parametrize(("cls", "name"), TASKS)
def test_every_task_takes_subtagged_codes_and_refuses_non_codes(cls, name) -> None:
    assert cls.name == name
    codes = ["de-DE", "zh_Hans"]
    assert cls.from_options({"languages": codes}).config.languages == codes
    with pytest.raises(ValueError, match=r"languages.*'de DE' is not a language code"):
        cls.from_options({"languages": ["de-DE", "de DE"]})


# ------------------------------------------------------------------ end to end (CLI)


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setattr("xalign.evaluation.data._hub_reachable", lambda timeout=2.0: False)


def eval_cli(*args: str):
    return CliRunner().invoke(app, ["eval", *args, "--json"])


XNLI_TINY = ["train_limit=12", "test_limit=6", "epochs=1", "max_length=24", "batch_size=6"]


def test_eval_xnli_mini_and_pos_mini_with_region_codes(
    tiny_model, tmp_path, tracking_uri, offline
) -> None:
    data = write_xnli(tmp_path / "data", ["de", "zh", "en"])
    opts = [a for kv in XNLI_TINY for a in ("--option", f"xnli-mini.{kv}")]
    args = (str(tiny_model), "-t", "xnli-mini", "--data-dir", str(data), *opts)
    result = eval_cli(
        *args, "--option", "xnli-mini.languages=[en,de,zh]",
        "--languages", "de-DE,zh-Hant-TW,EN-us", "--tracking-uri", tracking_uri,
    )  # fmt: skip
    assert result.exit_code == 0, result.output + repr(result.exception)
    run = json.loads(result.stdout)["runs"][0]
    assert list(run["scores"]) == ["de-DE", "zh-Hant-TW", "EN-us"]  # the codes given
    # the same languages through the task's option
    opt = eval_cli(*args, "--option", "xnli-mini.languages=[de_DE]", "--tracking-uri", tracking_uri)
    assert opt.exit_code == 0, opt.output + repr(opt.exception)
    assert list(json.loads(opt.stdout)["runs"][0]["scores"]) == ["de_DE"]

    ud = write_treebanks(tmp_path / "ud-release")
    tiny = {"train_limit": 8, "dev_limit": 4, "test_limit": 4, "epochs": 1, "max_length": 24}
    pos_opts = [a for k, v in tiny.items() for a in ("--option", f"pos-mini.{k}={v}")]
    pos = eval_cli(
        str(tiny_model), "-t", "pos-mini", "--data-dir", str(ud), *pos_opts,
        "--languages", "de_DE,fr-CA", "--tracking-uri", tracking_uri,
    )  # fmt: skip
    assert pos.exit_code == 0, pos.output + repr(pos.exception)
    pos_run = json.loads(pos.stdout)["runs"][0]
    assert list(pos_run["scores"]) == ["de_DE", "fr-CA"]
    assert pos_run["scores"]["de_DE"]["accuracy"] >= 0


@pytest.mark.parametrize(
    ("task", "how"),
    [
        ("xnli-mini", ["--languages", "de DE"]),
        ("pos-mini", ["--languages", "zh--Hant"]),
        ("xnli-probe", ["--option", "xnli-probe.languages=[de-DE,deutsch]"]),
        ("qa-mini", ["--option", "qa-mini.languages=[EN us]"]),
        ("tatoeba", ["--option", "tatoeba.languages=[sr-Latn_]"]),
    ],
)
def test_a_bad_code_is_refused_before_the_model_loads(
    tiny_model, tmp_path, tracking_uri, monkeypatch, task, how
) -> None:
    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded")

    for module in (xalign_xnli, xalign_udpos, xalign_xquad, xalign_tatoeba):
        for attr in ("load_for_finetuning", "load_encoder"):
            if hasattr(module, attr):
                monkeypatch.setattr(module, attr, no_model)
    monkeypatch.setattr(xalign, "load_encoder", no_model)
    result = eval_cli(str(tiny_model), "-t", task, *how, "--tracking-uri", tracking_uri)
    text = " ".join(result.output.split())
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "is not a language code" in text and "the model was loaded" not in text
    assert task in text and "languages" in text


def test_script_subtag() -> None:
    from xalign.languages import script_subtag

    assert [script_subtag(c) for c in ("sr-Latn", "zh_hant_TW", "de-DE", "zh", "hi-LATN")] == [
        "Latn",
        "Hant",
        None,
        None,
        "Latn",
    ]
    with pytest.raises(LanguageCodeError):
        script_subtag("de DE")


def test_compare_seen_languages_by_primary_language() -> None:
    """Training on de-DE / zh_Hant makes XNLI's de and zh seen (and bicici-deen by its
    language); a set name is seen only by name."""
    from xalign.compare.statistics import task_info
    from xalign.task import TaskResult

    def result(keys, languages=None):
        scores = {k: {"accuracy": 50.0} for k in keys}
        res = TaskResult("t", "accuracy", scores, languages=languages or {})
        res.metrics = (xalign.Metric("accuracy", higher_is_better=True),)
        return res

    xnli = {"base": {0: result(["en", "de", "zh", "fr"])}}
    info = task_info("xnli", xnli, ["de-DE", "zh_Hant"])
    assert info.seen == ["de", "zh"]
    align = {"base": {0: result(["bicici-deen", "awesome-roen"], {"bicici-deen": "de"})}}
    assert task_info("align", align, ["DE"]).seen == ["bicici-deen"]
    assert task_info("align", align, ["awesome-roen"]).seen == ["awesome-roen"]
    assert primary_language("de-DE") == "de"


def test_test_files_serve_codes_of_their_primary_language(tmp_path) -> None:
    from xalign.evaluation import DataUnavailableError

    own = tmp_path / "own.tsv"
    own.write_text("p\th\tentailment\n", encoding="utf-8")
    pick = xalign.chosen_test_file
    assert pick({"de": str(own)}, "de-DE", ["de-DE", "fr"], "xnli") == own
    assert pick({"de_DE": str(own)}, "de", ["de"], "xnli") == own
    assert pick({"de": str(own)}, "fr-CA", ["de-DE", "fr-CA"], "xnli") is None
    with pytest.raises(DataUnavailableError, match="test_files names ja, not among"):
        pick({"ja": str(own)}, "de-DE", ["de-DE"], "xnli")


def test_a_test_file_no_language_reads_is_refused_and_regions_keep_their_own(tmp_path) -> None:
    """Every test_files key must be the one some task language reads: a de-AT key beside de in
    a task of [en, de] is never read (refused); in a task of [de-DE, de-AT], test_files.de-AT
    is de-AT's own and does not serve de-DE."""
    from xalign.evaluation import DataUnavailableError

    own = tmp_path / "own.tsv"
    own.write_text("p\th\tentailment\n", encoding="utf-8")
    pick = xalign.chosen_test_file
    with pytest.raises(
        DataUnavailableError,
        match=r"test_files names de-AT, not among the task's languages \(en, de\); add it to "
        r"them \(--option xnli.languages=\[en,de,de-AT\]\)",
    ):
        pick({"de": str(own), "de-AT": str(tmp_path / "gone.tsv")}, "de", ["en", "de"], "xnli")
    assert pick({"de-AT": str(own)}, "de-AT", ["de-DE", "de-AT"], "xnli") == own
    assert pick({"de-AT": str(tmp_path / "x")}, "de-DE", ["de-DE", "de-AT"], "xnli") is None
    assert pick({"de_at": str(own)}, "DE-at", ["de-DE", "DE-AT"], "xnli") == own
    # a key of the primary language still serves every region of it
    assert pick({"de": str(own)}, "de-DE", ["de-DE", "de-AT"], "xnli") == own
    assert pick({"de": str(own)}, "de-AT", ["de-DE", "de-AT"], "xnli") == own
    # and the same rule picks treebanks
    assert language_key("de-DE", {"de-AT": "x"}, languages=["de-DE", "de-AT"]) is None
    assert language_key("de-DE", {"de-AT": "x"}) == "de-AT"  # no task languages given


@pytest.mark.parametrize(
    "languages", [["en", "de", "DE"], "en,de-DE,de_de", ["zh-Hant", "ZH-HANT"]]
)
def test_the_same_language_twice_is_refused(languages) -> None:
    """de and DE are one tag: evaluated twice, German would count twice in every average."""
    from xalign.evaluation.finetune import parse_languages

    with pytest.raises(ValueError, match=r"languages: \S+ and \S+ are the same language"):
        parse_languages(languages)
    assert parse_languages(["de", "de-DE", "de-AT"]) == ["de", "de-DE", "de-AT"]  # distinct tags
