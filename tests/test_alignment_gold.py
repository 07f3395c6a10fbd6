"""Gold word-alignment loaders: synthetic quirks, then every shared gold set."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from xalign.alignment import GoldAlignmentWarning, GoldSet, available_gold_sets, load_gold

ALL_SETS = [
    "awesome-enfr",
    "awesome-roen",
    "bicici-deen",
    "xlwa-bg-test",
    "xlwa-bg-dev",
    "xlwa-es-test",
    "xlwa-es-dev",
]


def _load_quiet(name: str | Path, root: Path | None = None) -> GoldSet:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GoldAlignmentWarning)
        return load_gold(name, root)


# ---------------------------------------------------------------- synthetic files


def test_awesome_layout_swaps_english_to_target(tmp_path: Path) -> None:
    # English ||| French, 1-based, BOM at file start, one link past the French sentence.
    (tmp_path / "enfr.src-tgt").write_text(
        "\ufeffthe cat ||| le chat\nyes ||| oui   \n", encoding="utf-8"
    )
    (tmp_path / "enfr.gold").write_text("1-1 2p2\n1-1 1-3\n", encoding="utf-8")
    with pytest.warns(GoldAlignmentWarning, match="1 gold link"):
        gold = load_gold(tmp_path / "enfr.src-tgt")
    assert (gold.src_lang, gold.tgt_lang) == ("fr", "en")
    assert gold.src_sents == [["le", "chat"], ["oui"]]
    assert gold.tgt_sents == [["the", "cat"], ["yes"]]
    assert gold.sure == [{(0, 0)}, {(0, 0)}]
    assert gold.possible == [{(0, 0), (1, 1)}, {(0, 0)}]
    assert gold.out_of_range == [(1, (2, 0))]  # French index 2 in a 1-word sentence


def test_xlwa_layout(tmp_path: Path) -> None:
    folder = tmp_path / "es"
    folder.mkdir()
    (folder / "dev.tsv").write_text("the house .\tla casa .\t0-0 1-1 2-2\t\t\n", encoding="utf-8")
    gold = load_gold(folder / "dev.tsv")
    assert (gold.name, gold.src_lang, gold.tgt_lang) == ("xlwa-es-dev", "es", "en")
    assert gold.src_sents == [["la", "casa", "."]] and gold.tgt_sents == [["the", "house", "."]]
    assert gold.sure == gold.possible == [{(0, 0), (1, 1), (2, 2)}]


def test_bicici_layout(tmp_path: Path) -> None:
    (tmp_path / "test.de").write_text("\ufeffdas haus\n", encoding="utf-8")
    (tmp_path / "test.en").write_text("the house\n", encoding="utf-8")
    (tmp_path / "de-en.wa").write_text("1-1 0-0\n", encoding="utf-8")
    gold = load_gold(tmp_path)
    assert (gold.src_lang, gold.tgt_lang) == ("de", "en")
    assert gold.src_sents == [["das", "haus"]] and gold.sure == [{(0, 0), (1, 1)}]


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no gold"):
        load_gold("awesome-deen", tmp_path)
    with pytest.raises(ValueError, match="unknown gold set"):
        load_gold("nope")
    (tmp_path / "enfr.src-tgt").write_text("a ||| b\nc ||| d\n", encoding="utf-8")
    (tmp_path / "enfr.gold").write_text("1-1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="different line counts"):
        load_gold(tmp_path / "enfr.gold")
    with pytest.raises(FileNotFoundError, match="missing"):
        load_gold("awesome-enfr", tmp_path)
    assert available_gold_sets(tmp_path) == []


# ---------------------------------------------------------------- shared data

# name: (pairs, sure links in range, possible links incl. sure, source word, English word)
EXPECTED = {
    "awesome-enfr": (447, 4038, 4038 + 13400, "monsieur", "Speaker"),
    "awesome-roen": (248, 6198, 6198, "care", "the"),  # no diacritics in this file
    "bicici-deen": (100, 1233 - 1, 1233 - 1, "und", "the"),
    "xlwa-bg-test": (245, 4179, 4179, "на", "the"),
    "xlwa-bg-dev": (105, 1719, 1719, "на", "the"),
    "xlwa-es-test": (245, 4722, 4722, "de", "the"),
    "xlwa-es-dev": (105, 1961, 1961, "de", "the"),
}

# One hand-checked gold link per set: (sentence, source word, English word).
KNOWN_LINKS = {
    "awesome-enfr": (5, "Orateur", "Speaker"),
    "awesome-roen": (5, "lucru", "thing"),
    "bicici-deen": (0, "herr", "mr"),
    "xlwa-bg-dev": (5, "Флавий", "Flavius"),
    "xlwa-es-dev": (5, "Comisión", "Commission"),
}


def test_available_gold_sets(shared_data: Path) -> None:
    assert available_gold_sets(shared_data) == ALL_SETS
    assert available_gold_sets(shared_data / "align") == ALL_SETS


@pytest.mark.parametrize("name", ALL_SETS)
def test_shared_gold_set(shared_data: Path, name: str) -> None:
    n_pairs, n_sure, n_possible, src_word, en_word = EXPECTED[name]
    gold = _load_quiet(name, shared_data)
    assert gold.name == name and gold.tgt_lang == "en" and gold.src_lang != "en"
    assert len(gold) == len(gold.tgt_sents) == len(gold.sure) == len(gold.possible) == n_pairs
    assert sum(map(len, gold.sure)) == n_sure
    assert sum(map(len, gold.possible)) == n_possible
    for src, tgt, sure, possible in zip(
        gold.src_sents, gold.tgt_sents, gold.sure, gold.possible, strict=True
    ):
        assert sure <= possible
        assert all(0 <= i < len(src) and 0 <= j < len(tgt) for i, j in possible)
        assert not any("\ufeff" in word for word in src + tgt)
    assert any(src_word in s for s in gold.src_sents)
    assert any(en_word in t for t in gold.tgt_sents)  # English is the target side


@pytest.mark.parametrize("name", sorted(KNOWN_LINKS))
def test_known_link_orientation(shared_data: Path, name: str) -> None:
    k, src_word, en_word = KNOWN_LINKS[name]
    gold = _load_quiet(name, shared_data)
    i, j = gold.src_sents[k].index(src_word), gold.tgt_sents[k].index(en_word)
    assert (i, j) in gold.sure[k]


def test_bicici_quirks_reported(shared_data: Path, monkeypatch) -> None:
    import xalign.alignment.gold as gold_module

    monkeypatch.setattr(gold_module, "_WARNED", set())  # as in a fresh process
    with pytest.warns(GoldAlignmentWarning, match="out of range"):
        gold = load_gold("bicici-deen", shared_data)
    assert gold.src_sents[0][0] == "herr"  # BOM stripped
    # Line 63 of de-en.wa has 12-16 but the English sentence has only 13 words.
    assert gold.out_of_range == [(62, (12, 16))]
    assert len(gold.tgt_sents[62]) == 13


def test_a_gold_set_is_described_once_per_process(tmp_path: Path, monkeypatch) -> None:
    """Every evaluation of a comparison reloads the same set: its notes are said once, even
    when other code resets the warning filters in between (as catch_warnings does)."""
    import warnings

    import xalign.alignment.gold as gold_module

    monkeypatch.setattr(gold_module, "_WARNED", set())
    (tmp_path / "a.src").write_text("ein haus\nzwei\n")
    (tmp_path / "a.tgt").write_text("a house\ntwo\n")
    (tmp_path / "a.talp").write_text("0-0 1-1 5-5\n\n")  # out of range; one unannotated
    other = tmp_path / "b"
    other.mkdir()
    for name in ("a.src", "a.tgt", "a.talp"):
        (other / name).write_bytes((tmp_path / name).read_bytes())
    seen = []
    for folder in (tmp_path, tmp_path, other, other):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")  # what a reset of the filters does at worst
            load_gold(
                format="pharaoh",
                src_file=folder / "a.src",
                tgt_file=folder / "a.tgt",
                links_file=folder / "a.talp",
                src_lang="de",
                tgt_lang="en",
            )
        seen.append([str(w.message) for w in caught if w.category is GoldAlignmentWarning])
    assert [len(s) for s in seen] == [1, 0, 1, 0]  # once per set, each set once
    assert "out of range" in seen[0][0] and "no gold link" in seen[0][0]


def test_load_by_path_matches_name(shared_data: Path) -> None:
    by_name = _load_quiet("awesome-enfr", shared_data)
    by_path = _load_quiet(shared_data / "align" / "awesome" / "enfr.src-tgt")
    assert (by_path.src_lang, by_path.src_sents, by_path.sure) == (
        by_name.src_lang,
        by_name.src_sents,
        by_name.sure,
    )
    xlwa = _load_quiet(shared_data / "align" / "xlwa" / "bg" / "test.tsv")
    assert xlwa.name == "xlwa-bg-test"
    assert xlwa.sure == _load_quiet("xlwa-bg-test", shared_data).sure


# ---------------------------------------------------------------- error types and Unicode


def test_bad_inputs_are_xalign_errors(tmp_path: Path) -> None:
    from xalign.alignment import GoldFileNotFoundError, GoldFormatError
    from xalign.errors import XalignError

    with pytest.raises(GoldFormatError) as unknown:
        load_gold("nope")
    with pytest.raises(GoldFileNotFoundError) as missing:
        load_gold("awesome-enfr", tmp_path)
    assert isinstance(unknown.value, XalignError) and isinstance(missing.value, XalignError)
    (tmp_path / "enfr.src-tgt").write_text("a ||| b\n", encoding="utf-8")
    (tmp_path / "enfr.gold").write_text("1-1 1x1\n", encoding="utf-8")
    with pytest.raises(GoldFormatError, match=r"enfr\.gold line 1: malformed link '1x1'") as bad:
        load_gold(tmp_path / "enfr.gold")
    assert (bad.value.path, bad.value.line) == (tmp_path / "enfr.gold", 1)


@pytest.mark.parametrize(
    ("name", "relative", "column"),
    [
        ("awesome-enfr", "awesome/enfr.src-tgt", None),
        ("xlwa-bg-test", "xlwa/bg/test.tsv", 1),
        ("bicici-deen", "deen_bicici100/test.de", None),
    ],
)
def test_shared_words_are_the_files_tokens_in_nfc(
    shared_data: Path, name: str, relative: str, column: int | None
) -> None:
    import unicodedata

    gold = _load_quiet(name, shared_data)
    lines = (shared_data / "align" / relative).read_text(encoding="utf-8-sig").split("\n")
    lines = [line for line in lines if line.strip()]
    if name.startswith("awesome"):  # English ||| French: French is the source
        lines = [line.split("|||")[1] for line in lines]
    elif column is not None:
        lines = [line.split("\t")[column] for line in lines]
    assert len(lines) == len(gold)
    for words, line in zip(gold.src_sents, lines, strict=True):
        tokens = line.lstrip("\ufeff").split()
        assert words == [unicodedata.normalize("NFC", t) for t in tokens]
