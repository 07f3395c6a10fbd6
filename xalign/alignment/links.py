"""Word-alignment link sets and their algebra.

A link ``(i, j)`` joins source word ``i`` and target word ``j`` (0-based, source first).
Symmetrisation follows Koehn et al. (2003) / Moses ``symal``; the growing heuristics are
defined over the union of both directions, so no sentence lengths are needed.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TypeAlias

Links: TypeAlias = set[tuple[int, int]]

_DIAG_NEIGHBOURS = ((-1, 0), (0, -1), (1, 0), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1))
_LINK_RE = re.compile(r"(\d+)([-p?])(\d+)")


def transpose(links: Iterable[tuple[int, int]]) -> Links:
    """Swap the orientation of every link: ``(i, j) -> (j, i)``."""
    return {(j, i) for i, j in links}


def _grow_diag(alignment: Links, union: Links) -> None:
    """Koehn's GROW-DIAG, in place: add union neighbours of an unaligned word until fixpoint.

    Points are visited in (source, target) order and points added during a sweep are
    themselves expanded in that sweep, as in the reference matrix loop.
    """
    src_aligned = {i for i, _ in alignment}
    tgt_aligned = {j for _, j in alignment}
    ordered = sorted(union)
    added = True
    while added:
        added = False
        for i, j in ordered:
            if (i, j) not in alignment:
                continue
            for di, dj in _DIAG_NEIGHBOURS:
                new = (i + di, j + dj)
                if new in alignment or new not in union:
                    continue
                if new[0] not in src_aligned or new[1] not in tgt_aligned:
                    alignment.add(new)
                    src_aligned.add(new[0])
                    tgt_aligned.add(new[1])
                    added = True


def _final(alignment: Links, direction: Links, *, both_unaligned: bool) -> None:
    """Koehn's FINAL (either word unaligned) or FINAL-AND (both unaligned), in place."""
    src_aligned = {i for i, _ in alignment}
    tgt_aligned = {j for _, j in alignment}
    for i, j in sorted(direction):
        if (i, j) in alignment:
            continue
        src_free, tgt_free = i not in src_aligned, j not in tgt_aligned
        if (src_free and tgt_free) if both_unaligned else (src_free or tgt_free):
            alignment.add((i, j))
            src_aligned.add(i)
            tgt_aligned.add(j)


def _grow_diag_method(fwd: Links, rev: Links, final: bool | None) -> Links:
    """Intersection, grown; then FINAL over fwd and rev (``final=False`` means FINAL-AND)."""
    alignment = fwd & rev
    _grow_diag(alignment, fwd | rev)
    if final is not None:
        for direction in (fwd, rev):
            _final(alignment, direction, both_unaligned=not final)
    return alignment


_METHODS: dict[str, Callable[[Links, Links], Links]] = {
    "intersection": lambda f, r: f & r,
    "union": lambda f, r: f | r,
    "grow-diag": lambda f, r: _grow_diag_method(f, r, None),
    "grow-diag-final": lambda f, r: _grow_diag_method(f, r, True),
    "grow-diag-final-and": lambda f, r: _grow_diag_method(f, r, False),
}
SYMMETRIZATION_METHODS: tuple[str, ...] = tuple(_METHODS)


def symmetrize(
    fwd: Iterable[tuple[int, int]], rev: Iterable[tuple[int, int]], method: str
) -> Links:
    """Combine forward and reverse alignments of one sentence pair.

    Both inputs are in (source, target) orientation. ``method`` is one of
    :data:`SYMMETRIZATION_METHODS`.
    """
    try:
        combine = _METHODS[method]
    except KeyError:
        raise ValueError(
            f"unknown symmetrization {method!r}; choose one of {', '.join(_METHODS)}"
        ) from None
    return combine(set(fwd), set(rev))


def one_to_one(
    links: Iterable[tuple[int, int]],
    scores: Mapping[tuple[int, int], float] | None = None,
    mode: str = "drop",
) -> Links:
    """Reduce links to a one-to-one alignment.

    ``mode="drop"`` (Cao et al. 2020): keep a link only if its source word and its target
    word each occur in exactly one link of the input; words aligned to several words lose
    all their links. ``scores`` is ignored.

    ``mode="greedy"``: visit links by decreasing score (ties, and all links when ``scores``
    is None, in ascending (source, target) order; missing scores count as -inf) and keep a
    link if neither of its words is already linked.
    """
    links = set(links)
    if mode == "drop":
        src_count = Counter(i for i, _ in links)
        tgt_count = Counter(j for _, j in links)
        return {(i, j) for i, j in links if src_count[i] == 1 and tgt_count[j] == 1}
    if mode == "greedy":
        return _greedy_one_to_one(links, scores or {})
    raise ValueError(f"unknown one_to_one mode {mode!r}; choose 'drop' or 'greedy'")


def _greedy_one_to_one(links: Links, scores: Mapping[tuple[int, int], float]) -> Links:
    """Greedy matching by decreasing score, ties in (source, target) order."""
    order = sorted(links, key=lambda link: (-scores.get(link, float("-inf")), link))
    kept: Links = set()
    used_src: set[int] = set()
    used_tgt: set[int] = set()
    for i, j in order:
        if i not in used_src and j not in used_tgt:
            kept.add((i, j))
            used_src.add(i)
            used_tgt.add(j)
    return kept


def drop_identical(
    links: Iterable[tuple[int, int]],
    src_words: Sequence[str],
    tgt_words: Sequence[str],
    *,
    ignore_case: bool = False,
) -> Links:
    """Drop links whose two words are the same string (Wu & Dredze 2020)."""

    def norm(word: str) -> str:
        return word.lower() if ignore_case else word

    kept: Links = set()
    for i, j in links:
        if not (0 <= i < len(src_words) and 0 <= j < len(tgt_words)):
            raise ValueError(
                f"link {i}-{j} out of range for {len(src_words)}x{len(tgt_words)} words"
            )
        if norm(src_words[i]) != norm(tgt_words[j]):
            kept.add((i, j))
    return kept


def parse_pharaoh(line: str, *, one_based: bool = False) -> tuple[Links, Links]:
    """Parse a Pharaoh line ``"0-0 1p2 3?4"`` into ``(sure, possible)``.

    ``i-j`` is sure; ``ipj`` and ``i?j`` are possible-only. The returned ``possible``
    includes the sure links. ``one_based`` shifts indices down by one.
    """
    sure: Links = set()
    possible: Links = set()
    shift = 1 if one_based else 0
    for token in line.split():
        match = _LINK_RE.fullmatch(token)
        if match is None:
            raise ValueError(f"malformed alignment link {token!r} in {line!r}")
        link = (int(match[1]) - shift, int(match[3]) - shift)
        if min(link) < 0:
            raise ValueError(f"index below {shift} in link {token!r} (one_based={one_based})")
        possible.add(link)
        if match[2] == "-":
            sure.add(link)
    return sure, possible


def format_pharaoh(
    sure: Iterable[tuple[int, int]],
    possible: Iterable[tuple[int, int]] | None = None,
    *,
    one_based: bool = False,
) -> str:
    """Format links as a Pharaoh line: sure as ``i-j``, possible-only as ``ipj``, sorted."""
    shift = 1 if one_based else 0
    sure = set(sure)
    marked = [(link, "-") for link in sure]
    marked += [(link, "p") for link in set(possible or ()) - sure]
    return " ".join(f"{i + shift}{sep}{j + shift}" for (i, j), sep in sorted(marked))
