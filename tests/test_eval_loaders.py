"""The task plugins' dataset loaders (xalign_xnli.data, xalign_xquad.data, xalign_tatoeba.data)
and xalign's SQuAD-format reader: the shared data files, synthetic quirks, Hub fallback."""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from xalign_tatoeba.data import TATOEBA_ISO3, load_tatoeba, tatoeba_code
from xalign_xnli.data import UNLABELED, load_mnli_train, load_xnli
from xalign_xquad.data import load_tydiqa_goldp, load_xquad

from xalign import DataUnavailableError
from xalign import read_squad_json as load_squad_json
from xalign.errors import XalignError
from xalign.evaluation import data as data_mod
from xalign.paths import data_root

SHARED = Path(
    os.environ.get("XALIGN_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data"
)


@pytest.fixture
def shared() -> Path:
    """The shared real-data folder, or skip."""
    if not SHARED.is_dir():
        pytest.skip(f"shared data folder {SHARED} not found (set XALIGN_SHARED_DATA)")
    return SHARED


# ------------------------------------------------------------------------------------------
# XNLI (real files)
# ------------------------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("lang", ["en", "de", "zh"])
def test_xnli_dev(shared: Path, lang: str) -> None:
    rows = load_xnli(lang, "dev", data_dir=shared)
    assert len(rows) == 2490
    assert set(rows[0]) == {"premise", "hypothesis", "label"}
    assert Counter(r["label"] for r in rows) == {0: 830, 1: 830, 2: 830}
    assert all(r["premise"] and r["hypothesis"] for r in rows)


@pytest.mark.integration
def test_xnli_label_mapping_and_parallel_dev(shared: Path) -> None:
    en = load_xnli("en", "dev", data_dir=shared)
    # dev-en.tsv starts with neutral, contradiction, entailment (HF ids 1, 2, 0)
    assert [r["label"] for r in en[:3]] == [1, 2, 0]
    assert en[0]["premise"] == "And he said, Mama, I'm home."
    for lang in ("de", "ar", "sw"):
        assert [r["label"] for r in load_xnli(lang, "dev", data_dir=shared)] == [
            r["label"] for r in en
        ]


@pytest.mark.integration
@pytest.mark.parametrize("lang", ["de", "el", "sw"])
def test_xnli_test_with_derived_labels(shared: Path, lang: str) -> None:
    rows = load_xnli(lang, "test", data_dir=shared)
    assert len(rows) == 5010
    assert Counter(r["label"] for r in rows) == {0: 1670, 1: 1670, 2: 1670}


@pytest.mark.integration
def test_xnli_el_test_keeps_control_characters(shared: Path) -> None:
    # test-el.tsv holds U+001D inside sentences; str.splitlines() would yield 5015 lines.
    rows = load_xnli("el", "test", data_dir=shared)
    assert len(rows) == 5010
    assert any("\x1d" in r["premise"] + r["hypothesis"] for r in rows)


@pytest.mark.integration
def test_xnli_data_dir_variants_and_limit(shared: Path) -> None:
    full = load_xnli("fr", "validation", data_dir=shared / "xnli")
    assert load_xnli("fr", "dev", data_dir=shared, limit=7) == full[:7]
    assert load_xnli("fr", "dev", data_dir=shared, limit=0) == []
    with pytest.raises(ValueError):
        load_xnli("fr", "dev", data_dir=shared, limit=-1)
    with pytest.raises(ValueError):
        load_xnli("fr", "val", data_dir=shared)


@pytest.mark.integration
def test_shared_data_dir_default_finds_shared(
    shared: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XALIGN_SHARED_DATA", str(shared))
    assert data_root() == shared
    assert len(load_xnli("en", "dev", limit=3)) == 3  # no data_dir: shared folder is used


# ------------------------------------------------------------------------------------------
# XNLI / MNLI (synthetic files: formats and quirks)
# ------------------------------------------------------------------------------------------


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_xnli_test_without_labels_file(tmp_path: Path) -> None:
    _write(tmp_path / "test-xx.tsv", "p1\th1\np2\th2\n")
    rows = load_xnli("xx", "test", data_dir=tmp_path)
    assert [r["label"] for r in rows] == [UNLABELED, UNLABELED]
    labels = _write(tmp_path / "other" / "labels.txt", "contradiction\nentailment\n")
    assert [r["label"] for r in load_xnli("xx", "test", tmp_path, test_labels=labels)] == [2, 0]
    _write(tmp_path / "DERIVED_test-labels.txt", "neutral\n")
    with pytest.raises(ValueError, match="1 labels for 2 examples"):
        load_xnli("xx", "test", data_dir=tmp_path)


def test_xnli_bom_crlf_and_bad_rows(tmp_path: Path) -> None:
    _write(tmp_path / "xnli" / "dev-xx.tsv", "\ufeffp1\th1\tentailment\r\np2\th2\tneutral\r\n")
    rows = load_xnli("xx", "dev", data_dir=tmp_path)
    assert rows == [
        {"premise": "p1", "hypothesis": "h1", "label": 0},
        {"premise": "p2", "hypothesis": "h2", "label": 1},
    ]
    _write(tmp_path / "dev-yy.tsv", "p\th\tentailment\np\th\tmaybe\n")
    with pytest.raises(ValueError, match="unknown label"):
        load_xnli("yy", "dev", data_dir=tmp_path)


def test_mnli_train_xtreme_format(tmp_path: Path) -> None:
    text = "premise\thypo\tlabel\nA\tB\tcontradictory\nC\tD\tentailment\nE\tF\tneutral\n"
    _write(tmp_path / "multinli.train.en.tsv", text)
    rows = load_mnli_train(data_dir=tmp_path)
    assert [r["label"] for r in rows] == [2, 0, 1]
    assert rows[0] == {"premise": "A", "hypothesis": "B", "label": 2}
    assert load_mnli_train(data_dir=tmp_path, limit=1) == rows[:1]
    assert load_xnli("en", "train", data_dir=tmp_path) == rows


# ------------------------------------------------------------------------------------------
# SQuAD-format QA
# ------------------------------------------------------------------------------------------


def _check_squad_examples(examples: list[dict[str, Any]]) -> None:
    assert len({ex["id"] for ex in examples}) == len(examples)
    for ex in examples:
        assert {"id", "context", "question", "answers"} <= set(ex)
        texts, starts = ex["answers"]["text"], ex["answers"]["answer_start"]
        assert texts and len(texts) == len(starts)
        for text, start in zip(texts, starts, strict=True):
            assert ex["context"][start : start + len(text)] == text


@pytest.mark.integration
@pytest.mark.parametrize("lang", ["de", "zh"])
def test_xquad(shared: Path, lang: str) -> None:
    examples = load_xquad(lang, data_dir=shared)
    assert len(examples) == 1190
    _check_squad_examples(examples)
    assert len({ex["context"] for ex in examples}) == 240
    assert load_xquad(lang, data_dir=shared / "xquad", limit=5) == examples[:5]


@pytest.mark.integration
def test_tydiqa_goldp(shared: Path) -> None:
    train = load_tydiqa_goldp("train", "en", data_dir=shared)
    assert len(train) == 3696
    _check_squad_examples(train)  # includes: ids made unique (the file reuses "0", "1", ...)
    assert sum(ex["id"] == "0" for ex in train) == 1
    dev = load_tydiqa_goldp("dev", "sw", data_dir=shared)
    assert len(dev) == 499
    _check_squad_examples(dev)
    assert load_tydiqa_goldp("validation", "sw", data_dir=shared, limit=3) == dev[:3]


def test_load_squad_json_duplicate_ids(tmp_path: Path) -> None:
    qa = [{"id": i, "question": "q?", "answers": [{"text": "b", "answer_start": 1}]} for i in "aa"]
    payload = {"version": "1.1", "data": [{"paragraphs": [{"context": "abc", "qas": qa}]}]}
    path = _write(tmp_path / "x.json", json.dumps(payload))
    examples = load_squad_json(path)
    assert [ex["id"] for ex in examples] == ["a", "a_1"]
    assert examples[0] == {
        "id": "a",
        "title": "",
        "context": "abc",
        "question": "q?",
        "answers": {"text": ["b"], "answer_start": [1]},
    }
    assert load_squad_json(path, limit=1) == examples[:1]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"data": [\n,]}', r"x.json:2: not JSON \(Expecting value, column 1\)"),
        ('{"version": "1.1"}', r"x.json: top level: not SQuAD v1.1 JSON \(missing key 'data'"),
        (
            '{"data": [{"paragraphs": [{"context": "abc"}]}]}',
            r"x.json: data\[0\].paragraphs\[0\]: not SQuAD v1.1 JSON \(missing key 'qas'",
        ),
        (
            '{"data": [{"paragraphs": [{"context": "abc", "qas": [{"id": "1", "answers": []}]}]}]}',
            r"data\[0\].paragraphs\[0\].qas\[0\]: not SQuAD v1.1 JSON \(missing key 'question'",
        ),
        (
            '{"data": [{"paragraphs": [{"context": "abc", "qas": [{"id": "7", "question": "q",'
            ' "answers": [{"text": "bc", "answer_start": 2}]}]}]}]}',
            r"qas\[0\] \(id 7\): answer 'bc' at answer_start 2 is outside its context "
            r"\(3 characters\)",
        ),
        (
            '{"data": [{"paragraphs": [{"context": "Berlin is big", "qas": [{"id": "8", '
            '"question": "q", "answers": [{"text": "Berlin", "answer_start": 3}]}]}]}]}',
            r"\(id 8\): answer 'Berlin' does not match the context at answer_start 3 "
            r"\('lin is'\)",
        ),
        (
            '{"data": [{"paragraphs": [{"context": "abc", "qas": [{"id": "9", "question": "q",'
            ' "answers": []}]}]}]}',
            r"qas\[0\] \(id 9\): no answers",
        ),
        ('{"data": []}', r"x.json: no questions"),
    ],
    ids=[
        "not-json",
        "no-data",
        "no-qas",
        "no-question",
        "span-outside",
        "span-mismatch",
        "no-answers",
        "empty",
    ],
)
def test_squad_json_errors_name_the_file_and_place(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = _write(tmp_path / "x.json", text)
    with pytest.raises(ValueError, match=expected):
        load_squad_json(path)


def _one_question(**fields: object) -> dict:
    """A SQuAD v1.1 file of one question whose fields are replaced by ``fields``."""
    context = fields.pop("context", "Anna lebt in Berlin.")
    answer = {"text": "Berlin", "answer_start": 13}
    answer.update({k: fields.pop(k) for k in ("text", "answer_start") if k in fields})
    qa = {"id": "q1", "question": "Wo?", "answers": [answer], **fields}
    return {"data": [{"title": "t", "paragraphs": [{"context": context, "qas": [qa]}]}]}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"question": None}, "question None is not a string"),
        ({"question": 5}, "question 5 is not a string"),
        ({"context": 7}, "context 7 is not a string"),
        ({"id": None}, "id None is not a string"),
        ({"id": True}, "id True is not a string"),
        ({"text": 1901}, "answer text 1901 is not a string"),
        ({"answer_start": "x"}, "answer_start 'x' is not an integer"),
        ({"answer_start": "²"}, "answer_start '²' is not an integer"),
        ({"answer_start": "13.0"}, "answer_start '13.0' is not an integer"),
        ({"answer_start": 13.7}, "answer_start 13.7 is not an integer"),
        ({"answer_start": None}, "answer_start None is not an integer"),
        ({"answer_start": True}, "answer_start True is not an integer"),
        ({"answer_start": float("nan")}, "answer_start nan is not an integer"),
    ],
)
def test_squad_json_field_types_are_checked_with_the_place(
    tmp_path: Path, fields: dict, expected: str
) -> None:
    """A field of the wrong type is refused when the file is read, naming the file and the
    question (not later, in the tokenizer, after training)."""
    path = _write(tmp_path / "x.json", json.dumps(_one_question(**fields)))
    with pytest.raises(ValueError) as info:
        load_squad_json(path)
    message = str(info.value)
    assert message.startswith(f"{path}: data[0].paragraphs[0].qas[0]: not SQuAD v1.1 JSON (")
    assert expected in message


@pytest.mark.parametrize(
    ("fields", "start"), [({}, 13), ({"answer_start": "13"}, 13), ({"answer_start": 13.0}, 13)]
)
def test_squad_json_integral_answer_starts_are_read(
    tmp_path: Path, fields: dict, start: int
) -> None:
    path = _write(tmp_path / "x.json", json.dumps(_one_question(**fields)))
    [example] = load_squad_json(path)
    assert example["answers"] == {"text": ["Berlin"], "answer_start": [start]}
    assert isinstance(example["answers"]["answer_start"][0], int)


def test_squad_json_names_an_unanswerable_squad2_question(tmp_path: Path) -> None:
    data = _one_question(is_impossible=True)
    data["data"][0]["paragraphs"][0]["qas"][0]["answers"] = []
    path = _write(tmp_path / "x.json", json.dumps(data))
    expected = r"x.json: data\[0\].paragraphs\[0\].qas\[0\] \(id q1\): an unanswerable SQuAD 2.0"
    with pytest.raises(ValueError, match=expected):
        load_squad_json(path)
    # is_impossible: false (SQuAD 2.0's answerable questions) is read as SQuAD v1.1
    path = _write(tmp_path / "y.json", json.dumps(_one_question(is_impossible=False)))
    assert load_squad_json(path)[0]["answers"]["text"] == ["Berlin"]


def test_squad_json_empty_gold_answer_is_kept(tmp_path: Path) -> None:
    """TyDiQA-GoldP dev has questions whose gold answer is the empty string at 0."""
    path = _write(tmp_path / "x.json", json.dumps(_one_question(text="", answer_start=0)))
    assert load_squad_json(path)[0]["answers"] == {"text": [""], "answer_start": [0]}


@pytest.mark.parametrize("encoding", ["latin-1", "utf-16"])
def test_squad_json_not_utf8_names_the_file_and_line(tmp_path: Path, encoding: str) -> None:
    text = json.dumps(_one_question(question="Wo wohnt Jürgen?"), indent=0, ensure_ascii=False)
    path = tmp_path / "x.json"
    path.write_bytes(text.encode(encoding))
    # latin-1: the first byte UTF-8 cannot read is the ü; UTF-16: its byte order mark
    line = text[: text.index("ü")].count("\n") + 1 if encoding == "latin-1" else 1
    assert encoding == "utf-16" or line > 1
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}:{line}: not UTF-8 text"):
        load_squad_json(path)


# ------------------------------------------------------------------------------------------
# Tatoeba
# ------------------------------------------------------------------------------------------


@pytest.mark.integration
def test_tatoeba_deu(shared: Path) -> None:
    deu, eng = load_tatoeba("deu", data_dir=shared)
    assert len(deu) == len(eng) == 1000
    assert all(deu) and all(eng)
    assert load_tatoeba("de", data_dir=shared / "tatoeba") == (deu, eng)
    assert load_tatoeba("de", data_dir=shared, limit=10) == (deu[:10], eng[:10])


@pytest.mark.integration
def test_tatoeba_mapped_languages_present(shared: Path) -> None:
    for iso1, iso3 in TATOEBA_ISO3.items():
        src, eng = load_tatoeba(iso1, data_dir=shared)
        assert len(src) == len(eng) >= 100, iso3


def test_tatoeba_code() -> None:
    xtreme = (
        "af ar bg bn de el es et eu fa fi fr he hi hu id it ja jv ka kk ko ml mr nl pt ru sw ta "
        "te th tl tr ur vi zh"
    )
    assert set(xtreme.split()) <= set(TATOEBA_ISO3)  # XTREME's 36, and the other LASER sets
    assert [tatoeba_code(c) for c in ("sr-Latn", "sr", "uk-UA", "nb", "no", "ms")] == [
        "srp", "srp", "ukr", "nob", "nob", "zsm",
    ]  # fmt: skip
    assert [tatoeba_code(c) for c in ("de", "zh", "sw", "fa", "tl")] == [
        "deu", "cmn", "swh", "pes", "tgl",
    ]  # fmt: skip
    assert tatoeba_code("DEU") == "deu"
    subtagged = ("de-DE", "de_DE", "zh-Hant-TW", "pt_BR", "deu_Latn", " fr-CA ")
    assert [tatoeba_code(c) for c in subtagged] == ["deu", "deu", "cmn", "por", "deu", "fra"]
    for bad in ("xx", "xx-DE"):
        with pytest.raises(XalignError, match=f"tatoeba: languages: no Tatoeba code for {bad!r}"):
            tatoeba_code(bad)
    for bad in ("", "12-DE", "english"):  # not language codes (xalign.primary_language)
        with pytest.raises(XalignError, match=f"tatoeba: languages: {bad!r} is not a language"):
            tatoeba_code(bad)


def test_tatoeba_mismatched_sides(tmp_path: Path) -> None:
    _write(tmp_path / "tatoeba.abc-eng.abc", "x\ny\n")
    _write(tmp_path / "tatoeba.abc-eng.eng", "x\n")
    with pytest.raises(ValueError, match="differ"):
        load_tatoeba("abc", data_dir=tmp_path)


# ------------------------------------------------------------------------------------------
# data_root (the one data-folder finder) and the Hub fallback
# ------------------------------------------------------------------------------------------


def test_shared_data_dir_env_and_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XALIGN_SHARED_DATA", str(tmp_path))
    assert data_root() == tmp_path
    monkeypatch.setenv("XALIGN_SHARED_DATA", str(tmp_path / "missing"))
    assert data_root() is None
    monkeypatch.delenv("XALIGN_SHARED_DATA")
    (tmp_path / "shared" / "data").mkdir(parents=True)
    (tmp_path / "project").mkdir()
    monkeypatch.chdir(tmp_path / "project")
    assert data_root() == tmp_path / "shared" / "data"


class _FakeHub:
    """Stand-in for ``datasets.load_dataset`` recording its calls."""

    def __init__(self, rows: list[dict[str, Any]] | None = None) -> None:
        self.rows = rows
        self.calls: list[tuple[Any, ...]] = []

    def __call__(self, path: str, name: str | None = None, split: str | None = None) -> Any:
        self.calls.append((path, name, split))
        if self.rows is None:
            raise ConnectionError("no network")
        return self.rows


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch) -> _FakeHub:
    """Hub reported reachable, ``datasets.load_dataset`` replaced by a failing fake."""
    datasets = pytest.importorskip("datasets")
    fake = _FakeHub()
    monkeypatch.setattr(datasets, "load_dataset", fake)
    monkeypatch.setattr(data_mod, "_hub_reachable", lambda timeout=2.0: True)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    return fake


LOADERS = [
    (lambda d: load_xnli("de", "dev", data_dir=d), "facebook/xnli", "dev-de.tsv"),
    (lambda d: load_xnli("de", "test", data_dir=d), "facebook/xnli", "test-L.tsv"),
    (lambda d: load_mnli_train(data_dir=d), "nyu-mll/multi_nli", "multinli.train.en.tsv"),
    (lambda d: load_xquad("de", data_dir=d), "google/xquad", "xquad.de.json"),
    (
        lambda d: load_tydiqa_goldp("train", "en", data_dir=d),
        "google-research-datasets/tydiqa",
        "tydiqa.goldp.en.train.json",
    ),
    (lambda d: load_tatoeba("de", data_dir=d), "google/xtreme", "tatoeba.deu-eng.deu"),
]


@pytest.mark.parametrize(("load", "hub_id", "local_name"), LOADERS)
def test_clear_error_without_local_data_or_hub(
    tmp_path: Path, fake_hub: _FakeHub, load: Any, hub_id: str, local_name: str
) -> None:
    with pytest.raises(DataUnavailableError) as info:
        load(tmp_path)
    message = str(info.value)
    assert "--data-dir FOLDER" in message
    assert local_name in message
    assert repr(hub_id) in message
    assert "ConnectionError" in message
    assert str(tmp_path) in message
    assert len(fake_hub.calls) == 1 and fake_hub.calls[0][0] == hub_id


def test_error_names_both_options_without_shared_dir(
    tmp_path: Path, fake_hub: _FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XALIGN_SHARED_DATA", str(tmp_path / "missing"))
    with pytest.raises(DataUnavailableError, match="no data_dir given"):
        load_xnli("de", "dev")


def test_unreachable_hub_fails_fast(
    tmp_path: Path, fake_hub: _FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(data_mod, "_hub_reachable", lambda timeout=2.0: False)
    with pytest.raises(DataUnavailableError, match="cannot reach the Hugging Face Hub"):
        load_xquad("de", data_dir=tmp_path)
    assert fake_hub.calls == []  # datasets is never asked, so no retry loop
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # offline mode: datasets may serve its cache
    with pytest.raises(DataUnavailableError):
        load_xquad("de", data_dir=tmp_path)
    assert len(fake_hub.calls) == 1


def test_hub_rows_are_converted(tmp_path: Path, fake_hub: _FakeHub) -> None:
    fake_hub.rows = [{"premise": "p", "hypothesis": "h", "label": 2, "extra": 0}]
    assert load_xnli("fr", "dev", data_dir=tmp_path, limit=5) == [
        {"premise": "p", "hypothesis": "h", "label": 2}
    ]
    assert fake_hub.calls[-1] == ("facebook/xnli", "fr", "validation[:5]")

    answers = {"text": ["b"], "answer_start": [1]}
    qa = {"title": "t", "context": "abc", "question": "q?", "answers": answers}
    fake_hub.rows = [{"id": "english-1", **qa}, {"id": "swahili-2", **qa}]
    swahili = load_tydiqa_goldp("dev", "sw", data_dir=tmp_path)
    assert [ex["id"] for ex in swahili] == ["swahili-2"]
    assert swahili[0]["answers"] == answers
    assert fake_hub.calls[-1] == ("google-research-datasets/tydiqa", "secondary_task", "validation")

    fake_hub.rows = [{"source_sentence": "Hallo\n", "target_sentence": "Hello\n"}]
    assert load_tatoeba("de", data_dir=tmp_path) == (["Hallo"], ["Hello"])
    assert fake_hub.calls[-1] == ("google/xtreme", "tatoeba.deu", "validation")
