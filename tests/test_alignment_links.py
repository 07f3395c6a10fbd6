"""Worked examples for link algebra (symmetrisation, one-to-one, Pharaoh) and AER."""

from __future__ import annotations

import math

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
