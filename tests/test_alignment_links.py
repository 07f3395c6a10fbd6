"""Worked examples for link algebra (symmetrisation, one-to-one, Pharaoh) and AER."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from xalign.alignment import (
    SYMMETRIZATION_METHODS,
    alignment_scores,
    drop_identical,
    format_pharaoh,
    one_to_one,
    parse_pharaoh,
    symmetrize,
    transpose,
)

# Worked example on a 5x5 matrix (rows = source i, columns = target j):
#
#        j=0 j=1 j=2 j=3 j=4
#   i=0   B   r   .   .   .      B = in both directions, f = forward only, r = reverse only
#   i=1   .   B   f   .   .
#   i=2   .   .   .   .   .
#   i=3   .   .   .   .   f
#   i=4   f   .   .   .   .
#
# intersection = {0-0, 1-1}
# grow-diag: 1-2 neighbours 1-1 and target 2 is unaligned -> added. 0-1 neighbours 0-0 and
#   1-1 but source 0 and target 1 are both aligned -> never added. 3-4 and 4-0 have no
#   aligned neighbour -> not grown.  => {0-0, 1-1, 1-2}
# final-and (forward first): 3-4 joins two unaligned words -> added; 4-0 has target 0
#   aligned -> not added.  => {0-0, 1-1, 1-2, 3-4}
# final: 4-0 has source 4 unaligned -> added too.  => {0-0, 1-1, 1-2, 3-4, 4-0}
# union adds 0-1 as well.
FWD = {(0, 0), (1, 1), (1, 2), (3, 4), (4, 0)}
REV = {(0, 0), (1, 1), (0, 1)}
EXPECTED = {
    "intersection": {(0, 0), (1, 1)},
    "grow-diag": {(0, 0), (1, 1), (1, 2)},
    "grow-diag-final-and": {(0, 0), (1, 1), (1, 2), (3, 4)},
    "grow-diag-final": {(0, 0), (1, 1), (1, 2), (3, 4), (4, 0)},
    "union": {(0, 0), (1, 1), (1, 2), (3, 4), (4, 0), (0, 1)},
}


@pytest.mark.parametrize("method", sorted(EXPECTED))
def test_symmetrize_worked_example(method: str) -> None:
    assert symmetrize(FWD, REV, method) == EXPECTED[method]


def test_all_methods_covered_and_distinct() -> None:
    assert set(SYMMETRIZATION_METHODS) == set(EXPECTED)
    assert len({frozenset(v) for v in EXPECTED.values()}) == len(EXPECTED)


def test_grow_diag_follows_diagonal_chain_to_fixpoint() -> None:
    # Only 0-0 is in both directions; 1-1 is its diagonal neighbour (both words free) and
    # 2-2 becomes reachable once 1-1 is in, so growing must iterate.
    fwd, rev = {(0, 0), (1, 1), (2, 2)}, {(0, 0)}
    assert symmetrize(fwd, rev, "grow-diag") == {(0, 0), (1, 1), (2, 2)}


def test_symmetrize_empty_and_unknown() -> None:
    for method in SYMMETRIZATION_METHODS:
        assert symmetrize(set(), set(), method) == set()
    with pytest.raises(ValueError, match="grow-diag-final-and"):
        symmetrize(FWD, REV, "gdfa")


# one_to_one: source 1 has two links, target 3 has two links.
LINKS = {(0, 0), (1, 1), (1, 2), (2, 3), (3, 3), (4, 4)}


def test_one_to_one_drop() -> None:
    # Words with several links lose all of them: 1-1, 1-2 (source 1) and 2-3, 3-3 (target 3).
    assert one_to_one(LINKS) == {(0, 0), (4, 4)}


def test_one_to_one_greedy_without_scores_keeps_first() -> None:
    # Ascending order: 1-1 before 1-2, 2-3 before 3-3.
    assert one_to_one(LINKS, mode="greedy") == {(0, 0), (1, 1), (2, 3), (4, 4)}


def test_one_to_one_greedy_by_score() -> None:
    scores = {(1, 2): 0.9, (3, 3): 0.8, (1, 1): 0.5, (2, 3): 0.1}
    # 1-2 then 3-3 win; 1-1 and 2-3 lose; unscored 0-0 and 4-4 (-inf) come last but are free.
    assert one_to_one(LINKS, scores, mode="greedy") == {(1, 2), (3, 3), (0, 0), (4, 4)}


def test_one_to_one_unknown_mode() -> None:
    with pytest.raises(ValueError, match="greedy"):
        one_to_one(LINKS, mode="best")


def test_drop_identical() -> None:
    src = ["Berlin", "ist", "groß", "."]
    tgt = ["berlin", "is", "big", "."]
    links = {(0, 0), (1, 1), (2, 2), (3, 3), (2, 3)}
    assert drop_identical(links, src, tgt) == {(0, 0), (1, 1), (2, 2), (2, 3)}
    assert drop_identical(links, src, tgt, ignore_case=True) == {(1, 1), (2, 2), (2, 3)}
    with pytest.raises(ValueError, match="out of range"):
        drop_identical({(4, 0)}, src, tgt)


def test_parse_pharaoh() -> None:
    sure, possible = parse_pharaoh("0-0 1p2 3?4 2-1\n")
    assert sure == {(0, 0), (2, 1)}
    assert possible == {(0, 0), (2, 1), (1, 2), (3, 4)}
    assert parse_pharaoh("1-1 2p3", one_based=True) == ({(0, 0)}, {(0, 0), (1, 2)})
    assert parse_pharaoh("   ") == (set(), set())
    with pytest.raises(ValueError, match="malformed"):
        parse_pharaoh("0-0 1:2")
    with pytest.raises(ValueError, match="index below 1"):
        parse_pharaoh("0-1", one_based=True)


def test_one_pharaoh_line_parser_for_every_reader(tmp_path) -> None:
    """iter_pharaoh is the one parser: lazy, ASCII digits only, the same tokens refused by
    parse_pharaoh, the training-links reader and the gold reader."""
    from xalign.alignment.gold import GoldFormatError, _parse_links
    from xalign.links import LinksFileError, PharaohSyntaxError, iter_pharaoh, read_links_file

    assert list(iter_pharaoh("1-2 3p1 2?2", base=1)) == [
        (0, 1, True, "1-2"),
        (2, 0, False, "3p1"),
        (1, 1, False, "2?2"),
    ]
    links = iter_pharaoh("0-0 0:1")
    assert next(links) == (0, 0, True, "0-0")  # the bad token is reached only when read
    with pytest.raises(PharaohSyntaxError) as bad:
        next(links)
    assert (bad.value.kind, bad.value.token) == ("malformed", "0:1")
    with pytest.raises(PharaohSyntaxError) as big:
        list(iter_pharaoh("1234567890-1", max_digits=9))
    assert (big.value.kind, big.value.digits) == ("too_large", "1234567890")
    with pytest.raises(PharaohSyntaxError) as low:
        list(iter_pharaoh("1-0", base=1))
    assert low.value.kind == "below_base"
    arabic_three = "\u0663"  # a Unicode digit: not a Pharaoh index anywhere
    with pytest.raises(ValueError, match="malformed"):
        parse_pharaoh(f"0-{arabic_three}")
    path = tmp_path / "x.txt"
    path.write_text(f"0-{arabic_three}\n", encoding="utf-8")
    with pytest.raises(LinksFileError, match="x.txt:1: malformed link"):
        read_links_file(path, [["a"] * 5], [["b"] * 5])
    with pytest.raises(GoldFormatError, match="g.wa line 4: malformed link"):
        _parse_links(f"0-{arabic_three}", 0, "src", Path("g.wa"), 4)


def test_format_pharaoh_round_trip() -> None:
    sure, possible = {(2, 1), (0, 0)}, {(0, 0), (1, 2), (3, 4)}
    assert format_pharaoh(sure, possible) == "0-0 1p2 2-1 3p4"
    assert format_pharaoh(sure, possible, one_based=True) == "1-1 2p3 3-2 4p5"
    assert parse_pharaoh(format_pharaoh(sure, possible)) == (sure, possible | sure)
    assert format_pharaoh(set()) == ""


def test_transpose() -> None:
    assert transpose({(0, 1), (2, 3)}) == {(1, 0), (3, 2)}


# AER worked example over two sentences.
# sentence 1: A = {0-0, 1-1, 2-2, 3-0}, S = {0-0, 1-1}, P = S + {2-2, 2-3}
#   A∩S = {0-0, 1-1} (2), A∩P = {0-0, 1-1, 2-2} (3)
# sentence 2: A = {0-1}, S = {0-0}, P = S + {1-1}: A∩S = A∩P = {} (0)
# totals: |A| = 5, |S| = 3, |A∩S| = 2, |A∩P| = 3, |P| = 4 + 2 = 6
# precision = 3/5, recall = 2/3, F1 = 2·(3/5)(2/3)/(3/5 + 2/3) = (4/5)/(19/15) = 12/19
# AER = 1 - (2 + 3)/(5 + 3) = 3/8
PRED = [{(0, 0), (1, 1), (2, 2), (3, 0)}, {(0, 1)}]
SURE = [{(0, 0), (1, 1)}, {(0, 0)}]
POSSIBLE_ONLY = [{(2, 2), (2, 3)}, {(1, 1)}]


def test_alignment_scores_worked_example() -> None:
    possible = [p | s for p, s in zip(POSSIBLE_ONLY, SURE, strict=True)]
    scores = alignment_scores(PRED, SURE, possible)
    assert scores["precision"] == pytest.approx(3 / 5)
    assert scores["recall"] == pytest.approx(2 / 3)
    assert scores["f1"] == pytest.approx(12 / 19)
    assert scores["aer"] == pytest.approx(3 / 8)
    counts = {k: scores[k] for k in ("n_pred", "n_sure", "n_possible")}
    assert counts == {"n_pred": 5, "n_sure": 3, "n_possible": 6}
    assert (scores["n_pred_sure"], scores["n_pred_possible"]) == (2, 3)


def test_alignment_scores_treats_sure_as_possible() -> None:
    # Passing P without the sure links gives the same scores (P is taken as P ∪ S).
    full = [p | s for p, s in zip(POSSIBLE_ONLY, SURE, strict=True)]
    assert alignment_scores(PRED, SURE, POSSIBLE_ONLY) == alignment_scores(PRED, SURE, full)


def test_alignment_scores_without_possible() -> None:
    # P = S: |A∩P| = 2, AER = 1 - 4/8.
    scores = alignment_scores(PRED, SURE)
    assert scores["aer"] == pytest.approx(0.5)
    assert scores["precision"] == pytest.approx(2 / 5)


def test_alignment_scores_edge_cases() -> None:
    assert alignment_scores([set()], [{(0, 0)}])["aer"] == pytest.approx(1.0)
    perfect = alignment_scores([{(0, 0)}], [{(0, 0)}])
    assert (perfect["aer"], perfect["f1"]) == (0.0, 1.0)
    empty = alignment_scores([set()], [set()])
    assert math.isnan(empty["aer"]) and empty["precision"] == 0.0
    with pytest.raises(ValueError, match="sentence counts differ"):
        alignment_scores([set()], [set(), set()])


# ---------------------------------------------------------------- one home for links (xalign.links)


def test_links_have_one_home() -> None:
    import importlib.util

    import xalign
    import xalign.alignment as alignment_links
    import xalign.batch
    import xalign.links as home

    assert importlib.util.find_spec("xalign.alignment.links") is None  # no second module

    for name in (
        "symmetrize",
        "one_to_one",
        "drop_identical",
        "parse_pharaoh",
        "format_pharaoh",
        "transpose",
    ):
        assert getattr(alignment_links, name) is getattr(home, name), name
    assert xalign.LinkSpec is home.LinkSpec and xalign.Links is home.Links is xalign.batch.Links
    assert SYMMETRIZATION_METHODS is home.SYMMETRIZATIONS  # the one list
    with pytest.raises(ValueError, match="grow-diag-final-and"):
        home.LinkSpec("gdfa")


def test_the_links_module_imports_nothing_of_xalign_but_errors() -> None:
    """xalign/links.py is pure: every import of it, function-level ones included, is the
    standard library or xalign.errors (corpus and run links live in xalign.data.links)."""
    import ast

    import xalign.links as home

    tree = ast.parse(Path(home.__file__).read_text(encoding="utf-8"))
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert {n for n in names if n.split(".")[0] == "xalign"} == {"xalign.errors"}
    assert not {n.split(".")[0] for n in names} & {"torch", "numpy", "accelerate", "datasets"}


def test_link_spec_filters_worked_example() -> None:
    from xalign.links import LinkSpec

    src = ["Berlin", "ist", "groß", "."]
    tgt = ["Berlin", "is", "big", "."]
    # symmetrised: Berlin-Berlin, ist-is, groß-big, .-., .-Berlin (source "." in two links,
    # target Berlin in two links)
    links = {(0, 0), (1, 1), (2, 2), (3, 3), (3, 0)}
    # one-to-one alone: "." and "Berlin" (target) have two links -> 0-0, 3-3, 3-0 go
    assert LinkSpec(one_to_one=True).apply(links, src, tgt) == {(1, 1), (2, 2)}
    # drop_identical runs first: Berlin-Berlin and .-. go, then every word has one link left
    assert LinkSpec(one_to_one=True, drop_identical=True).apply(links, src, tgt) == {
        (1, 1),
        (2, 2),
        (3, 0),
    }
    assert LinkSpec(one_to_one=False, drop_identical=True).apply(links, src, tgt) == {
        (1, 1),
        (2, 2),
        (3, 0),
    }
    assert LinkSpec(max_words=3).apply(links, src, tgt) == set()  # 4 words > 3: no links
    assert LinkSpec(one_to_one=False, max_words=4).apply(links, src, tgt) == links


def test_links_text_and_digest_are_canonical() -> None:
    import hashlib

    from xalign.links import combined_digest, links_digest, links_text

    corpus = [{(1, 0), (0, 1)}, set(), {(2, 2)}]
    text = links_text(corpus)
    assert text == "0-1 1-0\n\n2-2\n"  # sorted, 0-based, one line per pair, empty = no links
    assert links_digest(corpus) == hashlib.sha256(text.encode()).hexdigest()
    assert links_digest([{(0, 1), (1, 0)}, set(), {(2, 2)}]) == links_digest(corpus)
    assert links_digest([{(0, 1)}, set(), {(2, 2)}]) != links_digest(corpus)
    assert combined_digest({"intersection": "abc"}) == "abc"  # = sha256sum of the one file
    both = combined_digest({"intersection": "a", "union": "b"})
    assert both == hashlib.sha256(b"intersection a\nunion b\n").hexdigest()


def test_links_path_template_and_mapping(tmp_path) -> None:
    from xalign.data.links import links_path
    from xalign.links import LinksFileError

    template = str(tmp_path / "links" / "{src}-{tgt}.{symmetrization}.txt")
    assert links_path(template, "de", "en", "union") == tmp_path / "links" / "de-en.union.txt"
    mapping = {"de-en": "a/{symmetrization}.txt", "fr": "b/fr.txt"}
    assert links_path(mapping, "de", "en", "intersection") == Path("a/intersection.txt")
    assert links_path(mapping, "fr", "en", "intersection") == Path("b/fr.txt")
    with pytest.raises(LinksFileError, match="no entry for el-en"):
        links_path(mapping, "el", "en", "intersection")


SRC = [["Das", "Haus", "ist", "klein", "."], ["Ja"], ["Это", "дом"]]
TGT = [["The", "house", "is", "small", "."], ["Yes"], ["This", "is", "a", "house"]]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0-0 1-1\n0-0\n", r"x.txt: 2 lines, but de-en has 3 sentence pairs"),
        ("0-0\n0-0\n0-0\n0-0\n", r"x.txt: 4 lines, but de-en has 3"),
        (
            "0-0 1-1\n0-0\n0-0 2-4\n",
            r"x.txt:3: link 2-4 out of range: sentence pair 3 has 2 source "
            r"and 4 target words",
        ),
        ("1-1 5-5\n1-1\n1-1\n", r"x.txt:1: link 5-5 out of range.*\(is the file 1-based\?\)"),
        ("0-0\n0:0\n\n", r"x.txt:2: malformed link '0:0'"),
        ("0-0\n0p0\n\n", r"x.txt:2: possible link '0p0'"),
    ],
)
def test_read_links_file_errors_name_file_and_line(tmp_path, text, message) -> None:
    from xalign.links import LinksFileError, read_links_file

    path = tmp_path / "x.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(LinksFileError, match=message):
        read_links_file(path, SRC, TGT, pair="de-en")


def test_read_links_file_accepts_pharaoh_corpus(tmp_path) -> None:
    from xalign.links import LinksFileError, read_links_file

    path = tmp_path / "ok.txt"
    path.write_bytes("\ufeff0-0 4-4 1-1\r\n\n1-3 0-0\n".encode())  # BOM, CRLF, empty line
    assert read_links_file(path, SRC, TGT) == [{(0, 0), (1, 1), (4, 4)}, set(), {(0, 0), (1, 3)}]
    path.write_text("0-0\n\n", encoding="utf-8")  # a missing last line is not silently empty
    with pytest.raises(LinksFileError, match="2 lines, but the corpus has 3"):
        read_links_file(path, SRC, TGT)
    with pytest.raises(LinksFileError, match="links file not found"):
        read_links_file(tmp_path / "missing.txt", SRC, TGT)
