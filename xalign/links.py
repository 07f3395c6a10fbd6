"""Word links: the ``Links`` type, symmetrisation, :class:`LinkSpec` and Pharaoh I/O.

A link ``(i, j)`` joins source word ``i`` and target word ``j`` (0-based, source first).
Symmetrisation follows Koehn et al. (2003) / Moses ``symal``; the growing heuristics are
defined over the union of both directions, so no sentence lengths are needed. Pharaoh lines
(``i-j`` sure, ``ipj``/``i?j`` possible) are read by one parser, :func:`iter_pharaoh`, for
training-links files and gold sets alike; a corpus's links are identified by
:func:`links_digest`, the sha256 of their canonical Pharaoh text (:func:`links_text`).

Pure: no I/O beyond reading a links file, and nothing of xalign but :mod:`xalign.errors`. The
links of a training corpus (eflomal, its cache, ``data.links`` files) and of a run across
ranks are in :mod:`xalign.data.links`.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, TypeAlias

from xalign.errors import XalignError

Links: TypeAlias = set[tuple[int, int]]
Sentences: TypeAlias = Sequence[Sequence[str]]

_DIAG_NEIGHBOURS = ((-1, 0), (0, -1), (1, 0), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1))
#: One link of a Pharaoh line (ASCII digits): the one pattern of :func:`iter_pharaoh`.
_LINK_RE = re.compile(r"([0-9]+)([-p?])([0-9]+)")


class LinksFileError(XalignError, ValueError):
    """A word-links file (``data.links``) is missing, malformed or does not fit the corpus."""


# ------------------------------------------------------------------------------ link algebra
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
#: The symmetrisation heuristics, in one list for LinkSpec, symmetrize and the docs.
SYMMETRIZATIONS: tuple[str, ...] = tuple(_METHODS)
SYMMETRIZATION_METHODS = SYMMETRIZATIONS  # the name xalign.alignment exports


def check_symmetrization(method: str) -> None:
    """ValueError naming the choices unless ``method`` is one of :data:`SYMMETRIZATIONS`."""
    if method not in _METHODS:
        raise ValueError(
            f"unknown symmetrization {method!r}; choose one of {', '.join(SYMMETRIZATIONS)}"
        )


def symmetrize(
    fwd: Iterable[tuple[int, int]], rev: Iterable[tuple[int, int]], method: str
) -> Links:
    """Combine forward and reverse alignments of one sentence pair.

    Both inputs are in (source, target) orientation. ``method`` is one of
    :data:`SYMMETRIZATIONS`.
    """
    check_symmetrization(method)
    return _METHODS[method](set(fwd), set(rev))


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


# ------------------------------------------------------------------------------ Pharaoh I/O
class PharaohSyntaxError(ValueError):
    """One token of a Pharaoh line is not a link: ``kind`` is ``malformed`` (not ``i-j``,
    ``ipj`` or ``i?j``), ``too_large`` (an index of more than ``max_digits`` digits, in
    ``digits``) or ``below_base`` (an index below ``base``). Readers reword it with their
    file and line."""

    def __init__(self, token: str, kind: str, digits: str = "") -> None:
        super().__init__(f"{kind} link {token!r}")
        self.token, self.kind, self.digits = token, kind, digits


class PharaohLink(NamedTuple):
    """One link of a Pharaoh line: indices shifted to 0-based, sure (``-``) or possible."""

    i: int
    j: int
    sure: bool
    token: str


def iter_pharaoh(
    line: str, *, base: int = 0, max_digits: int | None = None
) -> Iterator[PharaohLink]:
    """THE Pharaoh line parser: the links of ``line`` in line order (``i-j`` sure, ``ipj`` and
    ``i?j`` possible; ASCII digits), ``base``-based indices shifted to 0-based.

    Lazy, so a reader's own checks on a link run before a later token is parsed. Raises
    :class:`PharaohSyntaxError` at the first bad token (per index: ``too_large`` before
    ``below_base``).
    """
    for token in line.split():
        match = _LINK_RE.fullmatch(token)
        if match is None:
            raise PharaohSyntaxError(token, "malformed")
        i = _pharaoh_index(match[1], token, base, max_digits)
        j = _pharaoh_index(match[3], token, base, max_digits)
        yield PharaohLink(i, j, match[2] == "-", token)


def _pharaoh_index(digits: str, token: str, base: int, max_digits: int | None) -> int:
    if max_digits is not None and len(digits) > max_digits:
        raise PharaohSyntaxError(token, "too_large", digits)
    value = int(digits) - base
    if value < 0:
        raise PharaohSyntaxError(token, "below_base", digits)
    return value


def parse_pharaoh(line: str, *, one_based: bool = False) -> tuple[Links, Links]:
    """Parse a Pharaoh line ``"0-0 1p2 3?4"`` into ``(sure, possible)``.

    ``i-j`` is sure; ``ipj`` and ``i?j`` are possible-only. The returned ``possible``
    includes the sure links. ``one_based`` shifts indices down by one.
    """
    sure: Links = set()
    possible: Links = set()
    shift = 1 if one_based else 0
    try:
        for link in iter_pharaoh(line, base=shift):
            possible.add((link.i, link.j))
            if link.sure:
                sure.add((link.i, link.j))
    except PharaohSyntaxError as err:
        if err.kind == "malformed":
            raise ValueError(f"malformed alignment link {err.token!r} in {line!r}") from None
        raise ValueError(
            f"index below {shift} in link {err.token!r} (one_based={one_based})"
        ) from None
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


def links_text(links: Sequence[Links]) -> str:
    """Canonical Pharaoh text of a corpus: one sorted 0-based ``i-j`` line per sentence pair,
    each ending in ``\\n`` (what the ``links/<pair>.<sym>.txt`` artifacts hold)."""
    return "".join(format_pharaoh(lk) + "\n" for lk in links)


def links_digest(links: Sequence[Links]) -> str:
    """sha256 (hex) of :func:`links_text`: equal digests mean identical links, line by line."""
    return hashlib.sha256(links_text(links).encode("utf-8")).hexdigest()


def combined_digest(digests: Mapping[str, str]) -> str:
    """One digest for a pair's links over several symmetrisations (the single one's digest
    when there is one, so it equals ``sha256sum`` of that artifact)."""
    if len(digests) == 1:
        return next(iter(digests.values()))
    blob = "".join(f"{sym} {digests[sym]}\n" for sym in sorted(digests))
    return hashlib.sha256(blob.encode()).hexdigest()


def read_links_file(
    path: str | Path, src_sents: Sentences, tgt_sents: Sentences, *, pair: str = ""
) -> list[Links]:
    """Read and validate a training-links file against the kept sentence pairs of a corpus.

    Format: one line per kept sentence pair (after ``data.min_words``/``max_words``/
    ``max_ratio``/``limit``), in corpus order; 0-based sure links ``i-j`` separated by spaces
    (source word first; an empty line = no links). Raises :class:`LinksFileError` naming
    ``file:line`` for a wrong line count, a malformed or possible (``ipj``) link, or an index
    outside its sentence.
    """
    path = Path(path)
    what = f" (data.links for {pair})" if pair else ""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise LinksFileError(f"{path}: links file not found{what}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LinksFileError(f"{path}: cannot read links file{what}: {exc}") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) != len(src_sents):
        raise LinksFileError(
            f"{path}: {len(lines)} lines, but {pair or 'the corpus'} has {len(src_sents)} "
            f"sentence pairs after filtering (data.min_words/max_words/max_ratio/limit); a "
            f"links file needs one Pharaoh line per kept pair, in corpus order"
        )
    out: list[Links] = []
    for lineno, (line, src, tgt) in enumerate(zip(lines, src_sents, tgt_sents, strict=True), 1):
        links: Links = set()
        try:
            for link in iter_pharaoh(line):
                if not link.sure:
                    raise LinksFileError(
                        f"{path}:{lineno}: possible link {link.token!r}: training links are "
                        "sure links i-j"
                    )
                i, j = link.i, link.j
                if i >= len(src) or j >= len(tgt):
                    hint = " (is the file 1-based?)" if i == len(src) or j == len(tgt) else ""
                    raise LinksFileError(
                        f"{path}:{lineno}: link {link.token} out of range: sentence pair "
                        f"{lineno} has {len(src)} source and {len(tgt)} target words (0-based "
                        f"indices){hint}"
                    )
                links.add((i, j))
        except PharaohSyntaxError as err:
            raise LinksFileError(
                f"{path}:{lineno}: malformed link {err.token!r} (expected 0-based i-j)"
            ) from None
        out.append(links)
    return out


def parse_links_file(path: str | Path) -> list[Links]:
    """Links of a file without validation against words (for digests); see read_links_file."""
    text = Path(path).read_text(encoding="utf-8-sig")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [parse_pharaoh(line)[1] for line in lines]


# ------------------------------------------------------------------------------ LinkSpec
@dataclass(frozen=True)
class LinkSpec:
    """Which word links of the training corpus an objective reads, and their filters.

    ``symmetrization``: how forward and reverse eflomal links are combined (Cao et al. 2020
    use ``intersection``; Wu & Dredze 2020 ``grow-diag-final-and``); links read from
    ``data.links`` files are taken as already symmetrised. Filters, applied in this order
    (:meth:`apply`): sentences longer than ``max_words`` words on either side get no links;
    ``drop_identical`` drops pairs of identical strings; ``one_to_one`` keeps only links whose
    two words are in exactly one link.
    """

    symmetrization: str = "intersection"
    one_to_one: bool = True
    drop_identical: bool = False
    max_words: int = 64

    def __post_init__(self) -> None:
        check_symmetrization(self.symmetrization)

    def apply(self, links: Links, src_words: Sequence[str], tgt_words: Sequence[str]) -> Links:
        """This spec's filters on one sentence pair's symmetrised links."""
        if len(src_words) > self.max_words or len(tgt_words) > self.max_words:
            return set()
        if self.drop_identical:
            links = drop_identical(links, src_words, tgt_words)
        if self.one_to_one:
            links = one_to_one(links)
        return set(links)
