"""Gold word-alignment formats: WPT, explicit options, errors with file and line, Unicode, fuzz."""

from __future__ import annotations

import tempfile
import unicodedata
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from xalign.alignment import (
    GOLD_FORMATS,
    GoldAlignmentWarning,
    GoldFileNotFoundError,
    GoldFormatError,
    GoldSet,
    load_gold,
)
from xalign.errors import XalignError


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


# ---------------------------------------------------------------- WPT (NAACL 2003 / ACL 2005)

WPT_E = "<s snum=0001> the house is small </s>\n<s snum=0002> yes . </s>\n"
WPT_F = "<s snum=0001> la maison est petite </s>\n<s snum=0002> oui . </s>\n"
# snum position_L1(English) position_L2(French) [S|P] [confidence]; links in any order,
# two NULL links (position 0), one P link with a confidence, one link without S|P (= S).
WPT_WA = """2 1 1 S
1 1 1 S
1 1 2 P 0.5
1 2 2 S
1 3 3
1 4 4 S 0.9
1 0 3 P
2 2 2 P
2 2 0
"""


def _wpt_folder(folder: Path, wa: str = WPT_WA, e: str = WPT_E, f: str = WPT_F) -> Path:
    _write(folder / "test.e", e)
    _write(folder / "test.f", f)
    _write(folder / "FilePairs.test", "test.e test.f\n")
    _write(folder / "test.wa.nullalign", wa)
    return folder


def _check_wpt(gold: GoldSet) -> None:
    # English (L1) moves to the target side: links are (French, English), 0-based.
    assert (gold.src_lang, gold.tgt_lang) == ("fr", "en")
    assert gold.src_sents == [["la", "maison", "est", "petite"], ["oui", "."]]
    assert gold.tgt_sents == [["the", "house", "is", "small"], ["yes", "."]]
    assert gold.sure == [{(0, 0), (1, 1), (2, 2), (3, 3)}, {(0, 0)}]
    # "1 1 2 P": English 'the' (1) ~ French 'maison' (2) -> (1, 0); possible includes sure.
    assert gold.possible == [{(0, 0), (1, 0), (1, 1), (2, 2), (3, 3)}, {(0, 0), (1, 1)}]
    assert gold.skipped == {"null_links": 2} and gold.out_of_range == []


def test_wpt_folder_with_filepairs(tmp_path: Path) -> None:
    folder = _wpt_folder(tmp_path / "enfr")
    with pytest.warns(GoldAlignmentWarning, match=r"dropped 2 NULL link\(s\)"):
        gold = load_gold(folder)
    assert gold.name == "wpt-enfr"
    _check_wpt(gold)


def test_wpt_explicit_files_and_nonull_file_agree(tmp_path: Path) -> None:
    folder = _wpt_folder(tmp_path)
    no_null = "\n".join(line for line in WPT_WA.splitlines() if " 0 " not in f" {line} ") + "\n"
    links = _write(tmp_path / "answers" / "gold.wa.nonullalign", no_null)
    gold = load_gold(
        links, format="wpt", src_file=folder / "test.e", tgt_file=folder / "test.f", name="hansards"
    )
    assert gold.name == "hansards"
    assert gold.sure == [{(0, 0), (1, 1), (2, 2), (3, 3)}, {(0, 0)}]
    assert gold.skipped == {}  # nothing to drop in the no-NULL file
    with pytest.warns(GoldAlignmentWarning):
        assert load_gold(folder / "test.wa.nullalign").possible == gold.possible


def test_wpt_romanian_english_l1_is_not_english(tmp_path: Path) -> None:
    # Romanian-English: L1 = Romanian, so the file orientation is kept; unpadded snums.
    ro = _write(tmp_path / "test.ro", "<s snum=7> casa este mică </s>\n")
    en = _write(tmp_path / "test.en", "<s snum=7> the house is small </s>\n")
    wa = _write(tmp_path / "test.wa", "7 1 2 S\n7 2 3 S\n7 3 4\n7 1 1 P\n")
    gold = load_gold(wa, format="wpt", src_file=ro, tgt_file=en)
    assert (gold.src_lang, gold.tgt_lang, gold.name) == ("ro", "en", "wpt-roen")
    assert gold.sure == [{(0, 1), (1, 2), (2, 3)}] and gold.possible[0] == gold.sure[0] | {(0, 0)}


def test_wpt_latin1_files(tmp_path: Path) -> None:
    # The WPT Hansards are ISO-8859-1: UTF-8 decoding fails on the line with 'é'.
    folder = _wpt_folder(
        tmp_path,
        e="<s snum=1> he was </s>\n<s snum=2> here </s>\n",
        f="<s snum=1> il </s>\n<s snum=2> était là </s>\n",
        wa="1 1 1\n2 1 2\n",
    )
    (folder / "test.f").write_bytes((folder / "test.f").read_text().encode("latin-1"))
    with pytest.raises(
        GoldFormatError,
        match=r"test\.f line 2: not valid utf-8.*0xE9.*"
        r"encoding='latin-1'",
    ) as err:
        load_gold(folder)
    assert err.value.line == 2 and err.value.path == folder / "test.f"
    gold = load_gold(folder, encoding="latin-1")
    assert gold.src_sents == [["il"], ["était", "là"]] and gold.sure == [{(0, 0)}, {(1, 0)}]


@pytest.mark.parametrize(
    ("e", "f", "wa", "bad_file", "line", "message"),
    [
        # snum out of order in the English file
        (
            "<s snum=2> a </s>\n<s snum=1> b </s>\n",
            "<s snum=1> x </s>\n<s snum=2> y </s>\n",
            "1 1 1\n",
            "test.e",
            2,
            r"snum=1 out of order \(after snum=2",
        ),
        # sentence 2 missing from the French file
        (
            "<s snum=1> a </s>\n<s snum=2> b </s>\n",
            "<s snum=1> x </s>\n",
            "1 1 1\n",
            "test.e",
            2,
            r"snum=2 has no counterpart in .*test\.f",
        ),
        # duplicate snum
        (
            "<s snum=1> a </s>\n<s snum=1> b </s>\n",
            "<s snum=1> x </s>\n",
            "1 1 1\n",
            "test.e",
            2,
            r"duplicate snum=1 \(also .*test\.e line 1\)",
        ),
        # a link to a sentence that does not exist
        (
            "<s snum=1> a </s>\n",
            "<s snum=1> x </s>\n",
            "1 1 1\n3 1 1 S\n",
            "test.wa.nullalign",
            2,
            r"snum=3 is not in the sentence files",
        ),
        # malformed link lines
        (
            "<s snum=1> a </s>\n",
            "<s snum=1> x </s>\n",
            "1 1 1 X\n",
            "test.wa.nullalign",
            1,
            r"expected S, P and/or a confidence",
        ),
        (
            "<s snum=1> a </s>\n",
            "<s snum=1> x </s>\n",
            "1 1\n",
            "test.wa.nullalign",
            1,
            r"expected 'snum position_L1 position_L2",
        ),
        (
            "<s snum=1> a </s>\n",
            "<s snum=1> x </s>\n",
            "1 one 1\n",
            "test.wa.nullalign",
            1,
            r"'one' is not a sentence number",
        ),
        # a sentence line without the <s snum=N> markup
        (
            "the house\n",
            "<s snum=1> x </s>\n",
            "1 1 1\n",
            "test.e",
            1,
            r"expected '<s snum=N> words </s>'",
        ),
    ],
)
def test_wpt_errors_name_file_and_line(
    tmp_path: Path, e: str, f: str, wa: str, bad_file: str, line: int, message: str
) -> None:
    folder = _wpt_folder(tmp_path, wa=wa, e=e, f=f)
    with pytest.raises(GoldFormatError, match=message) as err:
        load_gold(folder)
    assert err.value.path == folder / bad_file and err.value.line == line
    assert f"{folder / bad_file} line {line}" in str(err.value)
    assert isinstance(err.value, XalignError) and isinstance(err.value, ValueError)


def test_wpt_folder_needs_unambiguous_files(tmp_path: Path) -> None:
    folder = _wpt_folder(tmp_path)
    _write(folder / "trial.wa.nullalign", "1 1 1\n")
    with pytest.raises(GoldFormatError, match="need exactly one WPT links file"):
        load_gold(folder)
    with pytest.warns(GoldAlignmentWarning, match="NULL"):
        gold = load_gold(
            folder, links_file="test.wa.nullalign", src_file="test.e", tgt_file="test.f"
        )  # relative to the folder
    assert gold.sure[1] == {(0, 0)}
    (folder / "FilePairs.test").unlink()
    with pytest.raises(GoldFormatError, match="cannot tell the WPT sentence files"):
        load_gold(folder / "test.wa.nullalign")
    with pytest.raises(GoldFormatError, match="needs both src_file and tgt_file"):
        load_gold(folder / "test.wa.nullalign", src_file=folder / "test.e")


# ---------------------------------------------------------------- explicit options, other formats


@pytest.mark.parametrize(
    ("src_name", "tgt_name", "langs"),
    [
        ("de.txt", "en.txt", ("de", "en")),  # a 2-letter stem
        ("en.txt", "de.txt", ("de", "en")),  # English recognised, so moved to the target
        ("test.de", "test.en", ("de", "en")),
        ("test.de.txt", "test.en.tok", ("de", "en")),  # format suffixes are skipped
        ("corpus.ro", "corpus.e", ("ro", "en")),  # WPT's one-letter English
        ("eng.txt", "deu.txt", ("deu", "eng")),  # 3-letter stems need the options ...
        ("en.lc.txt", "de.lc.txt", ("de", "en")),  # the part in which the names differ
        ("test.bpe.de", "test.bpe.en", ("de", "en")),
    ],
)
def test_pharaoh_languages_from_file_names(tmp_path, src_name, tgt_name, langs):
    src = _write(tmp_path / src_name, "a b\n")
    tgt = _write(tmp_path / tgt_name, "c d\n")
    links = _write(tmp_path / "l.links", "0-0 1-1\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if src_name == "eng.txt":  # ... so they need the options
            gold = load_gold(
                format="pharaoh", src_file=src, tgt_file=tgt, links_file=links,
                src_lang="eng", tgt_lang="deu",
            )  # fmt: skip
        else:
            gold = load_gold(format="pharaoh", src_file=src, tgt_file=tgt, links_file=links)
    assert not caught, [str(w.message) for w in caught]
    assert (gold.src_lang, gold.tgt_lang) == langs
    assert gold.name in (f"pharaoh-{langs[0]}{langs[1]}", f"pharaoh-{langs[1]}{langs[0]}")


def test_file_names_without_a_language_are_warned_not_taken_as_one(tmp_path):
    src = _write(tmp_path / "a.txt", "a b\n")
    tgt = _write(tmp_path / "b.txt", "c d\n")
    links = _write(tmp_path / "l.links", "0-0\n")
    with pytest.warns(GoldAlignmentWarning, match=r"a\.txt: the file name tells no language"):
        gold = load_gold(format="pharaoh", src_file=src, tgt_file=tgt, links_file=links)
    assert (gold.src_lang, gold.tgt_lang) == ("src", "tgt")  # never "txt"


@pytest.mark.parametrize(
    ("src_name", "tgt_name", "warned"),
    [("de.fr.txt", "b.txt", "de, fr"), ("in.txt", "b.txt", "no language")],
)
def test_ambiguous_file_names_are_warned(tmp_path, src_name, tgt_name, warned):
    src = _write(tmp_path / src_name, "a b\n")
    tgt = _write(tmp_path / tgt_name, "c d\n")
    links = _write(tmp_path / "l.links", "0-0\n")
    with pytest.warns(GoldAlignmentWarning) as record:
        gold = load_gold(format="pharaoh", src_file=src, tgt_file=tgt, links_file=links)
    assert any(warned in str(w.message) for w in record), [str(w.message) for w in record]
    assert gold.src_lang == "src"


@pytest.mark.parametrize(
    ("stem", "langs", "warned"),
    [
        ("deen", ("de", "en"), False),
        ("enfr", ("fr", "en"), False),  # English moved to the target
        ("de-en", ("de", "en"), False),
        ("ro_en", ("ro", "en"), False),
        ("test", ("src", "tgt"), True),  # not te-st
        ("data", ("src", "tgt"), True),
    ],
)
def test_awesome_language_pair_from_the_stem(tmp_path, stem, langs, warned):
    text = _write(tmp_path / f"{stem}.src-tgt", "a b ||| c d\n")
    _write(tmp_path / f"{stem}.gold", "1-1 2-2\n")  # awesome gold files are 1-based
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gold = load_gold(text)
    names = [str(w.message) for w in caught if issubclass(w.category, GoldAlignmentWarning)]
    assert bool(names) == warned and all("tells no language pair" in n for n in names), names
    assert (gold.src_lang, gold.tgt_lang) == langs
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the options silence the guess
        gold = load_gold(text, src_lang="cs", tgt_lang="en")
    assert (gold.src_lang, gold.tgt_lang) == ("cs", "en")


def test_pharaoh_files_under_any_names(tmp_path: Path) -> None:
    # English first, 1-based, links written target-first ("j-i": English index first).
    en = _write(tmp_path / "a.txt", "the small house\nyes\n")
    cs = _write(tmp_path / "b.txt", "malý dům\nano\n")
    links = _write(tmp_path / "gold.links", "1-1 2p1 3-2\n1-1\n")
    gold = load_gold(
        format="pharaoh",
        src_file=cs,
        tgt_file=en,
        links_file=links,
        src_lang="cs",
        tgt_lang="en",
        index_base=1,
        first="tgt",
    )
    assert (gold.name, gold.src_lang, gold.tgt_lang) == ("pharaoh-csen", "cs", "en")
    assert gold.src_sents == [["malý", "dům"], ["ano"]]
    assert gold.sure == [{(0, 0), (1, 2)}, {(0, 0)}]
    assert gold.possible == [{(0, 0), (0, 1), (1, 2)}, {(0, 0)}]
    # The same set with English as src_file: english is detected and moved to the target.
    links0 = _write(tmp_path / "gold0.links", "0-0 1p0 2-1\n0-0\n")
    swapped = load_gold(
        links0, format="pharaoh", src_file=en, tgt_file=cs, src_lang="en", tgt_lang="cs"
    )
    assert (swapped.src_lang, swapped.sure, swapped.possible) == ("cs", gold.sure, gold.possible)


def test_english_option_and_neither_side(tmp_path: Path) -> None:
    src = _write(tmp_path / "x.de", "das haus\n")
    tgt = _write(tmp_path / "x.fr", "la maison\n")
    links = _write(tmp_path / "x.wa", "0-0 1-1\n")
    kept = load_gold(links, format="pharaoh", src_file=src, tgt_file=tgt)
    assert (kept.src_lang, kept.tgt_lang) == ("de", "fr")  # no English side: file order
    moved = load_gold(
        links,
        format="pharaoh",
        src_file=src,
        tgt_file=tgt,
        english="src",
        src_lang="xx",
        tgt_lang="yy",
    )
    assert (moved.src_lang, moved.src_sents) == ("yy", [["la", "maison"]])


def test_awesome_and_xlwa_explicit(tmp_path: Path) -> None:
    text = _write(tmp_path / "pairs.txt", "das Haus ||| the house\n")
    links = _write(tmp_path / "pairs.align", "1-1 2-2\n")
    gold = load_gold(
        format="awesome", text_file=text, links_file=links, src_lang="de", tgt_lang="en"
    )
    assert (gold.name, gold.src_lang, gold.sure) == ("pairs", "de", [{(0, 0), (1, 1)}])
    tsv = _write(tmp_path / "any" / "name.tsv", "\nthe house\tla casa\t0-0 1-1\n\n")
    with pytest.warns(GoldAlignmentWarning, match=r"skipped 2 blank line\(s\)"):
        xlwa = load_gold(tsv, tgt_lang="es")
    assert (xlwa.name, xlwa.src_lang, xlwa.skipped) == ("xlwa-es", "es", {"blank_lines": 2})


def test_mapping_spec_as_in_a_yaml_list(tmp_path: Path) -> None:
    folder = _wpt_folder(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GoldAlignmentWarning)
        _check_wpt(load_gold({"path": str(folder), "format": "wpt", "name": "h"}))
    with pytest.raises(GoldFormatError, match=r"unknown option\(s\) \['bogus'\]"):
        load_gold({"path": str(folder), "bogus": 1})


def test_bad_options(tmp_path: Path) -> None:
    folder = _wpt_folder(tmp_path)
    for kwargs, message in [
        ({"format": "giza"}, "unknown gold format 'giza'"),
        ({"index_base": 2}, "index_base must be 0 or 1"),
        ({"first": "left"}, "first must be 'src' or 'tgt'"),
        ({"english": "both"}, "english must be"),
        ({"encoding": "utf-99"}, "unknown encoding"),
    ]:
        with pytest.raises(GoldFormatError, match=message):
            load_gold(folder, **kwargs)
    with pytest.raises(GoldFormatError, match="format 'pharaoh' needs src_file"):
        load_gold(format="pharaoh", links_file=folder / "test.wa.nullalign")
    with pytest.raises(GoldFormatError, match="named gold set"):
        load_gold("awesome-enfr", format="awesome")
    with pytest.raises(GoldFileNotFoundError, match=r"nowhere\.wa: gold file or folder not found"):
        load_gold(tmp_path / "nowhere.wa", format="wpt")


# ---------------------------------------------------------------- errors name file and line


def test_zero_index_in_one_based_file(tmp_path: Path) -> None:
    (tmp_path / "enfr.src-tgt").write_text("a b ||| c d\ne ||| f\n", encoding="utf-8")
    gold_file = _write(tmp_path / "enfr.gold", "1-1 2-2\n0-0\n")
    with pytest.raises(GoldFormatError) as err:
        load_gold(tmp_path / "enfr.src-tgt")
    assert str(err.value) == (
        f"{gold_file} line 2: link '0-0' has index 0, but the file is read as 1-based "
        "(index_base=1); pass index_base=0 if it is 0-based"
    )
    with pytest.warns(GoldAlignmentWarning, match="sentence 0 link 2-2"):
        assert load_gold(tmp_path / "enfr.src-tgt", index_base=0).sure[1] == {(0, 0)}


def _pharaoh_set(tmp_path: Path, links: str, n: int = 12) -> dict:
    """n sentence pairs of 4 words each, beside a Pharaoh links file."""
    src = _write(tmp_path / "s.de", "a b c d\n" * n)
    tgt = _write(tmp_path / "t.en", "w x y z\n" * n)
    return {
        "format": "pharaoh",
        "src_file": src,
        "tgt_file": tgt,
        "links_file": _write(tmp_path / "l.txt", links),
    }


def test_a_one_based_file_read_as_zero_based_is_flagged(tmp_path: Path) -> None:
    # 1-based links that never touch the last word: nothing is out of range, every link is
    # shifted by one word. No link uses word 0 on either side in 12 sentences: warned.
    spec = _pharaoh_set(tmp_path, "1-1 2-2 3-3\n" * 12)
    with pytest.warns(GoldAlignmentWarning, match=r"none of its 36 links .* pass index_base: 1"):
        shifted = load_gold(**spec)
    assert shifted.sure[0] == {(1, 1), (2, 2), (3, 3)} and shifted.out_of_range == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_gold(**spec, index_base=1).sure[0] == {(0, 0), (1, 1), (2, 2)}
        # a 0-based file using word 0 somewhere is not flagged; neither is a small file
        assert load_gold(**_pharaoh_set(tmp_path, "1-1 2-2\n" * 11 + "0-0\n")).sure[11] == {(0, 0)}
        load_gold(**_pharaoh_set(tmp_path, "1-1 2-2\n" * 4, n=4))


def test_out_of_range_links_of_a_described_set_point_at_index_base_and_first(
    tmp_path: Path,
) -> None:
    spec = _pharaoh_set(tmp_path, "1-1 4-4\n" + "0-0\n" * 11)
    with pytest.warns(GoldAlignmentWarning, match=r"sentence 0 link 4-4 .*index_base and first"):
        load_gold(**spec)


@pytest.mark.parametrize(
    "links", ["", "\n\n", "0-9 9-0\n\n"], ids=["empty", "blank-lines", "all-out-of-range"]
)
def test_a_set_without_links_is_refused_not_scored_aer_1(tmp_path: Path, links: str) -> None:
    spec = _pharaoh_set(tmp_path, links or "\n" * 2, n=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(GoldFormatError, match=r"pharaoh-deen: no gold links in its 2 "):
            load_gold(**spec)


def test_pairs_without_links_are_warned(tmp_path: Path) -> None:
    spec = _pharaoh_set(tmp_path, "0-0 1-1\n\n2-2 3-3\n", n=3)
    with pytest.warns(GoldAlignmentWarning, match=r"1 sentence pair\(s\) have no gold link"):
        assert load_gold(**spec).possible[1] == set()


def test_wpt_null_to_null_link_means_a_zero_based_file(tmp_path: Path) -> None:
    folder = _wpt_folder(tmp_path / "w", wa="1 0 0 S\n1 1 1 S\n2 0 0 S\n")
    with pytest.raises(
        GoldFormatError, match=r"line 1: link '1 0 0 S' aligns NULL to NULL.*index_base: 0"
    ):
        load_gold(folder)
    gold = load_gold(folder, index_base=0)
    assert gold.sure == [{(0, 0), (1, 1)}, {(0, 0)}]


def test_a_missing_path_is_not_called_an_unknown_set_name(tmp_path: Path) -> None:
    with pytest.raises(
        GoldFileNotFoundError, match="nope/deen.src-tgt: gold file or folder not found"
    ):
        load_gold(tmp_path / "nope" / "deen.src-tgt")
    with pytest.raises(GoldFormatError, match="unknown gold set 'awesome-xxyy'"):
        load_gold("awesome-xxyy")


@pytest.mark.parametrize("token", ["1:2", "1-", "a-b", "1--2", "1-٢", "1-2-3", "x"])
def test_malformed_link_tokens(tmp_path: Path, token: str) -> None:
    src, tgt = _write(tmp_path / "s.de", "a b\nc\n"), _write(tmp_path / "t.en", "x y\nz\n")
    links = _write(tmp_path / "l.wa", f"0-0\n0-0 {token}\n")
    with pytest.raises(GoldFormatError, match=r"l\.wa line 2: malformed link") as err:
        load_gold(links, format="pharaoh", src_file=src, tgt_file=tgt)
    assert err.value.line == 2


def test_line_count_mismatch_names_both_files(tmp_path: Path) -> None:
    src, tgt = _write(tmp_path / "s.de", "a\nb\nc\n"), _write(tmp_path / "t.en", "x\ny\nz\n")
    links = _write(tmp_path / "l.wa", "0-0\n0-0\n")
    with pytest.raises(GoldFormatError) as err:
        load_gold(links, format="pharaoh", src_file=src, tgt_file=tgt)
    assert str(err.value) == (
        f"parallel gold files have different line counts: {src} has 3, {tgt} has 3, {links} "
        f"has 2 lines (line 3 of {src} has no counterpart)"
    )


def test_invalid_utf8_and_missing_files(tmp_path: Path) -> None:
    text = tmp_path / "deen.src-tgt"
    text.write_bytes(b"ok ||| ok\nbad \xff ||| x\n")
    _write(tmp_path / "deen.gold", "1-1\n1-1\n")
    with pytest.raises(
        GoldFormatError,
        match=r"deen\.src-tgt line 2: not valid utf-8: byte "
        r"0xFF at column 5",
    ):
        load_gold(text)
    (tmp_path / "deen.gold").unlink()
    text.write_text("ok ||| ok\n", encoding="utf-8")
    with pytest.raises(GoldFileNotFoundError, match=r"deen\.gold: gold file not found"):
        load_gold(text)


def test_splits_lines_on_newline_only(tmp_path: Path) -> None:
    # U+2028 and U+001D are not line breaks in a gold file (str.splitlines would split there).
    src = _write(tmp_path / "s.de", "a\u2028b c\nd\n")
    tgt, links = _write(tmp_path / "t.en", "x\ny\n"), _write(tmp_path / "l.wa", "0-0\n0-0\n")
    gold = load_gold(links, format="pharaoh", src_file=src, tgt_file=tgt)
    assert gold.src_sents == [["a", "b", "c"], ["d"]]  # U+2028 is whitespace inside the line


# ---------------------------------------------------------------- Unicode


def test_words_are_nfc_and_keep_the_file_tokenisation(tmp_path: Path) -> None:
    vi = "Tiếng Việt rất hay ."
    thai_nfc = "\u0e1b\u0e39\u0e48 \u0e44\u0e1b \u0e15\u0e25\u0e32\u0e14"  # ปู่ ไป ตลาด
    thai_odd = "\u0e1b\u0e48\u0e39 \u0e44\u0e1b \u0e15\u0e25\u0e32\u0e14"  # tone mark first
    assert unicodedata.normalize("NFD", vi) != vi and thai_odd != thai_nfc
    loaded = []
    for k, (vi_text, th_text) in enumerate(
        [(unicodedata.normalize("NFD", vi), thai_odd), (vi, thai_nfc)]
    ):
        src = _write(tmp_path / f"{k}.vi", f"{vi_text}\n{th_text}\n")
        tgt = _write(tmp_path / f"{k}.en", "Vietnamese is nice .\ngrandfather goes market\n")
        links = _write(tmp_path / f"{k}.wa", "0-0 4-3\n2-2\n")
        loaded.append(
            load_gold(
                links, format="pharaoh", src_file=src, tgt_file=tgt, src_lang="vi", tgt_lang="en"
            )
        )
        # One word per whitespace token of the file, never re-tokenised.
        assert (
            [len(s) for s in loaded[-1].src_sents]
            == [len(vi_text.split()), len(th_text.split())]
            == [5, 3]
        )
    nfd, nfc = loaded
    assert nfd.src_sents == nfc.src_sents
    assert nfd.src_sents[0] == vi.split() and nfd.src_sents[1][0] == "\u0e1b\u0e39\u0e48"
    assert all(unicodedata.is_normalized("NFC", w) for s in nfd.src_sents for w in s)
    assert nfd.sure == [{(0, 0), (4, 3)}, {(2, 2)}]


# ---------------------------------------------------------------- fuzz: every reader

# Pieces that reach deep into the readers, mixed with arbitrary text and bytes.
_PIECES = [
    "0-0",
    "1-1",
    "1p2",
    "2?1",
    "0-9",
    " ",
    "\t",
    "\n",
    "|||",
    "a",
    "é",
    "\u0e48",
    "<s snum=1>",
    "<s snum=2>",
    "</s>",
    "1 1 1 S",
    "2 1 0 P 0.5",
    "1 2 1",
    "\r",
    "\ufeff",
    "\u2028",
    "\x1d",
    "99999999999",
    "-",
    "0",
    "S",
    "P",
]
_TEXT = st.lists(st.sampled_from(_PIECES), max_size=25).map("".join)
_BYTES = st.one_of(
    st.binary(max_size=120),
    _TEXT.map(lambda t: t.encode("utf-8")),
    st.text(max_size=60).map(lambda t: t.encode("utf-8")),
)


_WORD = st.sampled_from(["a", "é", "Vie\u0302\u0323t", "\u0e1b\u0e48\u0e39", "x", "|||", "<s>"])
_SPACE = st.sampled_from([" ", "  ", "\t", "\xa0", "\u2028", "\x1d"])


@st.composite
def _sentence(draw: st.DrawFn) -> str:
    words = draw(st.lists(_WORD, max_size=4))
    return "".join(w + draw(_SPACE) for w in words).strip(" ")


@st.composite
def _links(draw: st.DrawFn, base: int) -> str:
    links = draw(
        st.lists(
            st.tuples(st.integers(0, 5), st.sampled_from("-p?"), st.integers(0, 5)), max_size=4
        )
    )
    return " ".join(f"{i + base}{sep}{j + base}" for i, sep, j in links)


@st.composite
def _mostly_valid(draw: st.DrawFn, fmt: str) -> list[bytes]:
    """Files of ``fmt`` that are often loadable: right shapes, random words and links."""
    n = draw(st.integers(1, 4))
    base = 1 if fmt in ("awesome", "wpt") else 0
    src = [draw(_sentence()) for _ in range(n)]
    tgt = [draw(_sentence()) for _ in range(n)]
    links = [draw(_links(base - draw(st.sampled_from([0, 0, 0, 1])))) for _ in range(n)]
    if fmt == "awesome":
        files = ["\n".join(f"{a} ||| {b}" for a, b in zip(src, tgt, strict=True)), "\n".join(links)]
    elif fmt == "xlwa":
        rows = [f"{a}\t{b}\t{c}" for a, b, c in zip(src, tgt, links, strict=True)]
        files = ["\n".join(draw(st.permutations(rows + [""] * draw(st.integers(0, 2)))))]
    elif fmt == "wpt":
        snums = draw(st.sampled_from([list(range(1, n + 1)), list(range(n, 0, -1))]))
        lines = [
            f"{k} {i} {j} {draw(st.sampled_from(['', 'S', 'P', 'P 0.5', 'x']))}"
            for k in snums
            for i, j in draw(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), max_size=3))
        ]
        files = [
            "\n".join(f"<s snum={k:04d}> {a} </s>" for k, a in zip(snums, src, strict=True)),
            "\n".join(f"<s snum={k}> {b} </s>" for k, b in zip(range(1, n + 1), tgt, strict=True)),
            "\n".join(lines),
        ]
    else:
        files = ["\n".join(src), "\n".join(tgt), "\n".join(links)]
    extra = draw(st.sampled_from(["", "", "\n", "\n\n", "\r\n"]))
    return [(text + extra).encode("utf-8") for text in files]


def _fuzz_files(fmt: str, root: Path) -> tuple[dict, list[Path]]:
    """load_gold kwargs and the files they read, for one format."""
    if fmt == "awesome":
        files = [root / "f.src-tgt", root / "f.gold"]
        return {"name_or_path": files[0], "src_lang": "de", "tgt_lang": "en"}, files
    if fmt == "xlwa":
        files = [root / "bg" / "test.tsv"]
        return {"name_or_path": files[0]}, files
    if fmt == "bicici":
        files = [root / "b" / "test.de", root / "b" / "test.en", root / "b" / "de-en.wa"]
        return {"name_or_path": root / "b"}, files
    names = ("s.txt", "t.txt", "l.txt")
    files = [root / fmt / n for n in names]
    return {
        "format": fmt,
        "src_file": files[0],
        "tgt_file": files[1],
        "links_file": files[2],
        "src_lang": "de",
        "tgt_lang": "en",
    }, files


@pytest.mark.parametrize("fmt", GOLD_FORMATS)
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_gold_readers(fmt: str, data: st.DataObject) -> None:
    """Arbitrary bytes: a consistent GoldSet (counted skips only) or a GoldFormatError with
    the file and line."""
    with tempfile.TemporaryDirectory() as tmp:
        kwargs, files = _fuzz_files(fmt, Path(tmp))
        if data.draw(st.booleans(), label="structured"):
            contents = data.draw(_mostly_valid(fmt), label="files")
        else:
            contents = [data.draw(_BYTES, label=path.name) for path in files]
        for path, content in zip(files, contents, strict=True):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                gold = load_gold(**kwargs)
            except GoldFormatError as err:
                if "no gold links" in str(err):  # about the whole set, not one line
                    assert err.path in files and err.line is None, str(err)
                    event("no gold links")
                    return
                if "point outside their sentence pair" in str(err):  # a misread set
                    assert err.path in files and err.line is None, str(err)
                    assert str(err).startswith(f"{err.path}: "), str(err)
                    event("out of range: refused")
                    return
                assert err.path in files and err.line is not None and err.line >= 1, str(err)
                assert f"{err.path} line {err.line}" in str(err) or (
                    "different line counts" in str(err)
                    and all(str(p) in str(err) for p in files[:2])
                )
                event("GoldFormatError")
                return
    event(f"loaded, skipped {sorted(gold.skipped)}")
    assert all(issubclass(w.category, GoldAlignmentWarning) for w in caught), caught
    assert all(any(ch.isdigit() for ch in str(w.message)) for w in caught)
    # one warning per set; it reports counted skips and/or the 1-based suspicion
    assert len(caught) <= 1
    assert (
        not caught
        or sum(gold.skipped.values()) > 0
        or any(note in str(caught[0].message) for note in ("looks 1-based", "have no gold link"))
    )
    assert len(gold) > 0
    assert len(gold.tgt_sents) == len(gold.sure) == len(gold.possible) == len(gold)
    for src, tgt, sure, possible in zip(
        gold.src_sents, gold.tgt_sents, gold.sure, gold.possible, strict=True
    ):
        assert sure <= possible
        assert all(0 <= i < len(src) and 0 <= j < len(tgt) for i, j in possible)
        assert all(w and not any(c.isspace() for c in w) for w in src + tgt)
        assert all(unicodedata.is_normalized("NFC", w) for w in src + tgt)


def test_align_task_takes_a_described_set(tmp_path: Path) -> None:
    """``align`` passes each ``sets`` entry to load_gold: a mapping describes any gold set
    (e.g. ``--option 'align.sets=[{path: DIR, format: wpt, encoding: latin-1}]'``)."""
    from xalign_align_eval import AlignConfig, AlignTask

    from xalign import TaskContext

    folder = _wpt_folder(tmp_path / "hansards")
    config = AlignConfig(sets=[{"path": str(folder), "format": "wpt", "name": "wpt-hansards"}])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GoldAlignmentWarning)
        golds = AlignTask(config).load_sets(TaskContext(show_progress=False))
    assert [g.name for g in golds] == ["wpt-hansards"]
    _check_wpt(golds[0])


# ---------------------------------------------------------------- the raw WPT-05 release layout

HI = "<s snum=1> vaha ghar chhota hai </s>\n<s snum=2> haan . </s>\n"


@pytest.mark.parametrize(
    ("stem", "l1", "l2", "links_name", "langs"),
    [
        ("test", "eng", "hin", "test.eng.hin.wa", ("hin", "eng")),
        ("trial", "eng", "hin", "trial.eng.hin.wa.nonullalign", ("hin", "eng")),
        ("test", "rom", "eng", "test.rom.eng.wa", ("rom", "eng")),
        ("trial", "ine", "eng", "trial.ine.eng.wa.nullalign", ("ine", "eng")),
        ("test", "rom", "eng", "test.rom-eng.wa", ("rom", "eng")),
    ],
)
def test_wpt_release_layout_infers_the_sentence_files_from_the_links_name(
    tmp_path: Path, stem: str, l1: str, l2: str, links_name: str, langs: tuple[str, str]
) -> None:
    """No FilePairs.*: ``<stem>.<l1>.<l2>.wa`` names its sentence files; the folder and the
    links file both load, the L1 side first in each link."""
    folder = tmp_path / stem
    english_first = l1 == "eng"
    _write(folder / f"{stem}.{l1}", WPT_E if english_first else HI)
    _write(folder / f"{stem}.{l2}", HI if english_first else WPT_E)
    # L1 position, L2 position (1-based); English 'the'(1) ~ 'vaha'(1), 'small'(4) ~ 'chhota'(3)
    wa = "1 1 1 S\n1 4 3 S\n1 0 2 P\n2 1 1 S\n" if english_first else "1 1 1 S\n1 3 4 S\n2 1 1\n"
    _write(folder / links_name, wa)
    for target in (folder, folder / links_name):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", GoldAlignmentWarning)  # NULL links
            gold = load_gold(target)
        assert (gold.src_lang, gold.tgt_lang) == langs
        assert gold.src_sents[0] == ["vaha", "ghar", "chhota", "hai"]
        assert gold.tgt_sents[0] == ["the", "house", "is", "small"]
        assert gold.sure == [{(0, 0), (2, 3)}, {(0, 0)}]


def test_wpt_release_layout_needs_the_named_files(tmp_path: Path) -> None:
    folder = tmp_path / "w"
    _write(folder / "test.eng", WPT_E)
    _write(folder / "test.eng.hin.wa", "1 1 1 S\n")
    with pytest.raises(GoldFormatError, match=r"looked for test.eng and test.hin \(missing"):
        load_gold(folder)
    _write(folder / "test.hin", "vaha ghar chhota hai\nhaan .\n")  # not WPT markup
    with pytest.raises(GoldFormatError, match=r"without '<s snum=N>' lines.*src_file"):
        load_gold(folder / "test.eng.hin.wa")
    _write(folder / "test.hin", HI)
    assert load_gold(folder).sure[0] == {(0, 0)}


# ---------------------------------------------------------------- links read the wrong way round

SHORT, LONG = "a b c", "u v w x y z"
# (short index, long index): every link fits only when the short side's index comes first
LINKS = [(0, 0), (1, 2), (2, 5)]


def _pairs(links: list[tuple[int, int]], base: int) -> str:
    return " ".join(f"{i + base}-{j + base}" for i, j in links)


def _misread_set(tmp_path: Path, fmt: str, n: int) -> tuple[dict, Path]:
    """A set of ``n`` (short, long) pairs in ``fmt`` whose links list the short side first;
    returns load_gold keywords that read it correctly and the links file."""
    if fmt == "xlwa":
        line = f"{SHORT}\t{LONG}\t{_pairs(LINKS, 0)}\n"
        tsv = _write(tmp_path / "es" / "test.tsv", line * n)
        return {"name_or_path": tsv}, tsv
    if fmt == "awesome":
        _write(tmp_path / "enfr.src-tgt", f"{SHORT} ||| {LONG}\n" * n)
        gold = _write(tmp_path / "enfr.gold", (_pairs(LINKS, 1) + "\n") * n)
        return {"name_or_path": tmp_path / "enfr.src-tgt"}, gold
    if fmt == "bicici":
        folder = tmp_path / "deen"
        _write(folder / "test.de", f"{SHORT}\n" * n)
        _write(folder / "test.en", f"{LONG}\n" * n)
        return {"name_or_path": folder}, _write(folder / "de-en.wa", (_pairs(LINKS, 0) + "\n") * n)
    if fmt == "pharaoh":
        links = _write(tmp_path / "l.txt", (_pairs(LINKS, 0) + "\n") * n)
        return {
            "format": "pharaoh",
            "src_file": _write(tmp_path / "s.de", f"{SHORT}\n" * n),
            "tgt_file": _write(tmp_path / "t.en", f"{LONG}\n" * n),
            "links_file": links,
        }, links
    folder = tmp_path / "wpt"  # wpt
    _write(folder / "test.rom", "".join(f"<s snum={k + 1}> {SHORT} </s>\n" for k in range(n)))
    _write(folder / "test.eng", "".join(f"<s snum={k + 1}> {LONG} </s>\n" for k in range(n)))
    wa = "".join(f"{k + 1} {i + 1} {j + 1} S\n" for k in range(n) for i, j in LINKS)
    return {"name_or_path": folder}, _write(folder / "test.rom.eng.wa", wa)


@pytest.mark.parametrize("fmt", ["xlwa", "awesome", "bicici", "pharaoh", "wpt"])
@pytest.mark.parametrize("n", [12, 3])
def test_links_read_in_the_wrong_direction_are_refused(tmp_path: Path, fmt: str, n: int) -> None:
    """Read with the other ``first``, 1 link in 3 points outside its sentence: refused (not
    scored on the 2 in 3 that still fit), naming the file, the share and the option; with 3
    sentences too, since the other reading fits them all."""
    kwargs, links_file = _misread_set(tmp_path, fmt, n)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the right reading: no warning at all
        right = load_gold(**kwargs)
    assert sum(len(p) for p in right.possible) == 3 * n and right.out_of_range == []
    with pytest.raises(GoldFormatError) as err:
        load_gold(**kwargs, first="tgt")
    text = str(err.value)
    assert text.startswith(f"{links_file}: {n} of {3 * n} gold links (33.3%)")
    assert "with first: src, 0 would be" in text and "first='src'" in text
    assert "direction" in text and err.value.path == links_file


def test_a_one_based_file_read_as_zero_based_is_refused_with_index_base(tmp_path: Path) -> None:
    n = 12
    links = _write(tmp_path / "l.txt", (_pairs([(0, 0), (1, 1), (2, 2)], 1) + "\n") * n)
    spec = {
        "format": "pharaoh",
        "src_file": _write(tmp_path / "s.de", "a b c\n" * n),
        "tgt_file": _write(tmp_path / "t.en", "x y z\n" * n),
        "links_file": links,
    }
    with pytest.raises(GoldFormatError, match=r"12 of 36 gold links \(33.3%\).*index_base: 1"):
        load_gold(**spec)
    assert load_gold(**spec, index_base=1).sure[0] == {(0, 0), (1, 1), (2, 2)}


def test_links_of_other_sentences_are_refused_without_a_wrong_hint(tmp_path: Path) -> None:
    """Links shifted by one line (the first line's links belong to a 6-word pair): no other
    reading fits better, the message says the links do not belong to the sentences."""
    src = "".join(f"{'a ' * (6 if k % 2 else 2)}\n" for k in range(24))
    tgt = "".join(f"{'x ' * (6 if k % 2 else 2)}\n" for k in range(24))
    links = "".join(
        f"{_pairs([(0, 0), (5, 5)] if k % 2 == 0 else [(0, 0)], 0)}\n" for k in range(24)
    )
    spec = {
        "format": "pharaoh",
        "src_file": _write(tmp_path / "s.de", src),
        "tgt_file": _write(tmp_path / "t.en", tgt),
        "links_file": _write(tmp_path / "l.txt", links),
    }
    with pytest.raises(GoldFormatError, match=r"12 of 36 .*does not seem to belong"):
        load_gold(**spec)


def test_a_few_stray_links_are_still_only_warned(tmp_path: Path) -> None:
    """1 link in 40 (2.5 %) outside its sentence: an annotation slip, warned and dropped."""
    kwargs, _ = _misread_set(tmp_path, "pharaoh", 13)
    Path(kwargs["links_file"]).write_text(
        (_pairs(LINKS, 0) + "\n") * 12 + _pairs([*LINKS, (9, 0)], 0) + "\n", encoding="utf-8"
    )
    with pytest.warns(GoldAlignmentWarning, match="1 gold link"):
        gold = load_gold(**kwargs)
    assert gold.out_of_range == [(12, (9, 0))]


@pytest.mark.parametrize(
    ("folder", "lang", "warned"),
    [
        ("bg", "bg", False),
        ("pt-BR", "pt-BR", False),
        ("data", "tgt", True),
        ("my sets", "tgt", True),
    ],
)
def test_xlwa_language_comes_from_a_folder_named_by_its_code(
    tmp_path: Path, folder: str, lang: str, warned: bool
) -> None:
    """A TSV outside a language folder (data/es40.tsv) was read as language 'data', silently."""
    import warnings

    tsv = _write(tmp_path / folder / "es40.tsv", "the house\tla casa\t0-0 1-1\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gold = load_gold(tsv)
    said = [str(w.message) for w in caught if "tells no language" in str(w.message)]
    assert gold.src_lang == lang and gold.tgt_lang == "en"
    assert bool(said) == warned, said
    if warned:
        assert f"its folder {folder!r} tells no language" in said[0] and "tgt_lang" in said[0]
