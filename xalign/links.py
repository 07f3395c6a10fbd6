"""Word links: the one home of the ``Links`` type, symmetrisation, Pharaoh I/O, :class:`LinkSpec`
and the links of a training corpus (computed once with eflomal, cached, or read from files).

A link ``(i, j)`` joins source word ``i`` and target word ``j`` (0-based, source first).
Symmetrisation follows Koehn et al. (2003) / Moses ``symal``; the growing heuristics are
defined over the union of both directions, so no sentence lengths are needed.

Training links of a language pair are resolved once per corpus (:func:`corpus_links`):

- from files named by ``data.links`` (Pharaoh ``i-j``, 0-based, one line per kept sentence
  pair in corpus order; see :func:`links_path`), validated with ``file:line`` errors; or
- from eflomal (forward + reverse, symmetrised), cached under ``$XALIGN_CACHE_DIR/eflomal``
  keyed by the tokenised corpus, the eflomal settings and the eflomal version. eflomal seeds
  itself from ``/dev/urandom`` (it has no seed option), so a cold cache gives new links: one
  process computes them under a file lock and every other process reads the cache.

Each symmetrisation's links are identified by :func:`links_digest`, the sha256 of their
canonical Pharaoh text (:func:`links_text`, the MLflow artifact ``links/<pair>.<sym>.txt``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias

from xalign.errors import XalignError

if TYPE_CHECKING:
    from xalign.config import RunConfig
    from xalign.data.sampler import ParallelData

logger = logging.getLogger(__name__)

Links: TypeAlias = set[tuple[int, int]]
Sentences: TypeAlias = Sequence[Sequence[str]]

_DIAG_NEIGHBOURS = ((-1, 0), (0, -1), (1, 0), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1))
#: One link of a Pharaoh line (ASCII digits): the one pattern of :func:`iter_pharaoh`.
_LINK_RE = re.compile(r"([0-9]+)([-p?])([0-9]+)")
_INDEX_FORMAT = "xalign-corpus-links/2"  # 2: words of xalign.data.text.TOKENIZER_VERSION


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


def _check_symmetrization(method: str) -> None:
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
    _check_symmetrization(method)
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
        _check_symmetrization(self.symmetrization)

    def apply(self, links: Links, src_words: Sequence[str], tgt_words: Sequence[str]) -> Links:
        """This spec's filters on one sentence pair's symmetrised links."""
        if len(src_words) > self.max_words or len(tgt_words) > self.max_words:
            return set()
        if self.drop_identical:
            links = drop_identical(links, src_words, tgt_words)
        if self.one_to_one:
            links = one_to_one(links)
        return set(links)


# ------------------------------------------------------------------------------ corpus links
#: A language pair as (source code, target code). Codes may hold hyphens (BCP-47 ``pt-BR``,
#: ``zh-Hant``), so a pair travels as this tuple; its name (:func:`pair_name`) is a label only
#: and is never split back into codes.
Pair = tuple[str, str]


def pair_name(pair: Pair) -> str:
    """``"src-tgt"``: the label of a pair in messages, file names and MLflow keys."""
    src, tgt = pair
    return f"{src}-{tgt}"


def _as_pair(pair: Pair) -> Pair:
    if isinstance(pair, str) or len(pair) != 2:
        raise TypeError(f"a language pair is (source, target), not {pair!r}")
    return str(pair[0]), str(pair[1])


def links_path(option: str | Mapping[str, str], src: str, tgt: str, symmetrization: str) -> Path:
    """The file ``data.links`` names for one pair and symmetrisation.

    ``option`` is a path template (``{src}``, ``{tgt}``, ``{symmetrization}`` are replaced,
    e.g. ``links/{src}-{tgt}.{symmetrization}.txt``) or a mapping from ``"de-en"`` or ``"de"``
    to such a template. A template without ``{symmetrization}`` serves every symmetrisation.
    """
    if isinstance(option, Mapping):
        template = option.get(f"{src}-{tgt}", option.get(src))
        if template is None:
            raise LinksFileError(
                f"data.links has no entry for {src}-{tgt} (keys: "
                f"{', '.join(map(str, option))}); key it by '{src}-{tgt}'"
            )
    else:
        template = option
    text = (
        str(template)
        .replace("{src}", src)
        .replace("{tgt}", tgt)
        .replace("{symmetrization}", symmetrization)
    )
    return Path(text).expanduser()


@dataclass
class CorpusLinks:
    """Symmetrised links of one language pair's kept sentence pairs, per symmetrisation.

    ``links[sym][n]`` are pair ``n``'s links (source first, 0-based); ``sources[sym]`` says
    where they came from (a file path, or ``eflomal X (cache KEY)``).
    """

    pair: str
    links: dict[str, list[Links]]
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def digests(self) -> dict[str, str]:
        """sha256 of each symmetrisation's canonical Pharaoh text."""
        return {sym: links_digest(lk) for sym, lk in sorted(self.links.items())}

    @property
    def digest(self) -> str:
        """One digest over every symmetrisation (see :func:`combined_digest`)."""
        return combined_digest(self.digests)

    def for_spec(self, spec: LinkSpec, src_sents: Sentences, tgt_sents: Sentences) -> list[Links]:
        """``spec``'s filtered links of every sentence pair."""
        return [
            spec.apply(lk, s, t)
            for lk, s, t in zip(self.links[spec.symmetrization], src_sents, tgt_sents, strict=True)
        ]


def eflomal_settings(src_sents: Sentences, tgt_sents: Sentences) -> Any:
    """One eflomal run per corpus for every LinkSpec: every kept pair is aligned (max_words
    = the longest sentence) and ``LinkSpec.max_words`` filters afterwards; seed 0 is only a
    cache-key constant (eflomal has no seed)."""
    from xalign.alignment.eflomal_aligner import EflomalSettings

    longest = max(
        (max(len(s), len(t)) for s, t in zip(src_sents, tgt_sents, strict=True)), default=1
    )
    return EflomalSettings(max_words=max(1, longest), seed=0)


def corpus_key(pair: Pair, corpus_digest: str, data_options: Mapping[str, Any]) -> str:
    """Key of a raw corpus + the options that turn it into kept tokenised pairs (index key)."""
    from importlib.metadata import version

    import xalign
    from xalign.data.text import TOKENIZER_VERSION

    blob = json.dumps(
        {
            "format": _INDEX_FORMAT,
            "pair": list(_as_pair(pair)),
            "corpus": corpus_digest,
            "data": dict(data_options),
            "xalign": xalign.__version__,
            "sacremoses": version("sacremoses"),
            "words": TOKENIZER_VERSION,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def corpus_options(cfg: Any, model_id: str) -> dict[str, Any]:
    """What turns a raw corpus into the kept tokenised pairs that links index, besides the
    corpus itself: the ``data`` filters, the subword tokenizer (the model's content identity,
    since pairs without subwords are dropped) and ``model.max_length``."""
    data = dict(cfg.to_dict()["data"])
    for key in ("corpus", "languages", "links", "self_links", "pairs_per_language"):
        data.pop(key, None)
    return {"data": data, "model": model_id, "max_length": cfg.model.max_length}


def _index_path(cache_dir: Path, key: str) -> Path:
    return cache_dir / "links-index" / f"{key}.json"


def corpus_links(
    src_sents: Sentences,
    tgt_sents: Sentences,
    symmetrizations: Iterable[str],
    *,
    pair: Pair,
    option: str | Mapping[str, str] | None = None,
    cache_dir: Path | None = None,
    compute: bool = True,
    index_key: str | None = None,
) -> CorpusLinks | None:
    """Symmetrised links of a pair's kept sentence pairs for each symmetrisation.

    With ``option`` (``data.links``) they are read from files (:func:`links_path`,
    :func:`read_links_file`); else from eflomal through its cache (``cache_dir``, default
    ``$XALIGN_CACHE_DIR/eflomal``), computed under a file lock when missing and ``compute``
    (``compute=False`` returns None on a cache miss: used by data-parallel ranks that must
    not run eflomal themselves). ``index_key`` (:func:`corpus_key`) records which eflomal
    cache entry this raw corpus maps to, so :func:`known_links_digests` can find the links
    without tokenising the corpus.
    """
    src, tgt = src_sents, tgt_sents
    syms = sorted(set(symmetrizations))
    for sym in syms:
        _check_symmetrization(sym)
    src_lang, tgt_lang = _as_pair(pair)
    name = pair_name((src_lang, tgt_lang))
    if option:
        files = {sym: links_path(option, src_lang, tgt_lang, sym) for sym in syms}
        links = {sym: read_links_file(p, src, tgt, pair=name) for sym, p in files.items()}
        return CorpusLinks(name, links, {sym: str(p) for sym, p in files.items()})
    from xalign.alignment import eflomal_aligner as ea

    cache = Path(cache_dir) if cache_dir is not None else ea.default_cache_dir()
    settings = eflomal_settings(src, tgt)
    result = ea.align_directions(src, tgt, settings, cache_dir=cache, compute=compute)
    if result is None:
        return None
    key = ea.cache_key(src, tgt, [], [], settings)
    if index_key is not None:
        _write_index(
            cache,
            index_key,
            {
                "format": _INDEX_FORMAT,
                "pair": [src_lang, tgt_lang],
                "eflomal_key": key,
                "settings": _asdict(settings),
                "n_pairs": len(src),
            },
        )
    source = f"eflomal {ea.eflomal_version()} (cache {key[:16]})"
    return CorpusLinks(
        name, {sym: result.symmetrized(sym) for sym in syms}, {sym: source for sym in syms}
    )


def known_links_digests(
    pair: Pair,
    symmetrizations: Iterable[str],
    *,
    option: str | Mapping[str, str] | None = None,
    index_key: str | None = None,
    cache_dir: Path | None = None,
) -> dict[str, str] | None:
    """The link digests a training run on this corpus would use now, without tokenising it.

    From ``data.links`` files (parsed, not validated: the run validates), or from the eflomal
    cache entry that ``index_key`` was last resolved to; None when eflomal links are not
    cached (a new eflomal run would draw new links).
    """
    syms = sorted(set(symmetrizations))
    src_lang, tgt_lang = _as_pair(pair)
    if option:
        out = {}
        for sym in syms:
            path = links_path(option, src_lang, tgt_lang, sym)
            try:
                out[sym] = links_digest(parse_links_file(path))
            except (OSError, ValueError):
                return None
        return out
    if not syms:
        return {}
    from xalign.alignment import eflomal_aligner as ea

    cache = Path(cache_dir) if cache_dir is not None else ea.default_cache_dir()
    if index_key is None:
        return None
    try:
        entry = json.loads(_index_path(cache, index_key).read_text(encoding="utf-8"))
        result = ea.read_cached(cache / f"{entry['eflomal_key']}.jsonl", int(entry["n_pairs"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if result is None:
        return None
    return {sym: links_digest(result.symmetrized(sym)) for sym in syms}


def _asdict(obj: Any) -> dict[str, Any]:
    import dataclasses

    return dataclasses.asdict(obj)


def _write_index(cache_dir: Path, key: str, entry: dict[str, Any]) -> None:
    """Atomically record ``key -> eflomal cache entry`` (best effort: a warning on failure)."""
    import os
    import tempfile

    path = _index_path(cache_dir, key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(entry, f)
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
    except OSError as err:
        logger.warning("could not write the links index %s: %s", path, err)


# ------------------------------------------------------------------ links of a run
@dataclass
class LinkSet:
    """The word links of a run: per pair, the symmetrised corpus links (``corpus``), and what
    every data-parallel rank trained on (``by_rank[r][pair]`` = links digest; rank 0 only
    knows every rank's). ``corpus_digests``/``model_identity`` are kept when computed."""

    corpus: dict[str, CorpusLinks] = field(default_factory=dict)
    by_rank: list[dict[str, str]] = field(default_factory=list)
    corpus_digests: dict[str, str] = field(default_factory=dict)
    model_identity: str | None = None

    @property
    def symmetrizations(self) -> list[str]:
        return sorted({sym for cl in self.corpus.values() for sym in cl.links})


def attach_links(
    data: ParallelData,
    specs: list[LinkSpec],
    *,
    cfg: RunConfig | None = None,
    accelerator: Any = None,
    cache_dir: Path | None = None,
) -> LinkSet:
    """Resolve each pair's word links once and attach every spec's filtered links to examples.

    Links come from ``cfg.data.links`` files or from eflomal (cached under ``cache_dir``,
    default ``$XALIGN_CACHE_DIR/eflomal``; :func:`xalign.links.corpus_links`). With several
    ranks the main process resolves first (eflomal under a file lock); the others then read
    the cache without running eflomal, and all compare digests with the main process: a rank
    that could not read the same links (no shared cache folder) takes the main process's by
    broadcast. So a run trains on ONE set of links, whatever the number of ranks.
    """
    from xalign.provenance import corpus_digest, model_identity

    out = LinkSet()
    if not specs:
        return out
    syms = sorted({s.symmetrization for s in specs})
    option = cfg.data.links if cfg is not None else None
    world = accelerator.num_processes if accelerator is not None else 1
    main = accelerator is None or accelerator.is_main_process
    first = accelerator.main_process_first() if world > 1 else contextlib.nullcontext()
    resolved: dict[str, CorpusLinks | None] = {}
    with first:
        for pair in data.pairs:
            index_key = None
            if main and cfg is not None and not option:  # index: raw corpus -> eflomal entry
                if out.model_identity is None:
                    out.model_identity = model_identity(cfg.model.name, cfg.model.revision)
                digest = corpus_digest(cfg.data.corpus, pair.src, pair.tgt, cfg.data.limit)
                out.corpus_digests[pair.name] = digest
                index_key = corpus_key(
                    (pair.src, pair.tgt), digest, corpus_options(cfg, out.model_identity)
                )
            resolved[pair.name] = corpus_links(
                [e.src_words for e in pair.examples],
                [e.tgt_words for e in pair.examples],
                syms,
                pair=(pair.src, pair.tgt),
                option=option,
                cache_dir=cache_dir,
                compute=main,
                index_key=index_key,
            )
    if world > 1:
        resolved = _agree_on_links(resolved, main)
    out.corpus = {name: cl for name, cl in resolved.items() if cl is not None}
    mine = {name: cl.digest for name, cl in out.corpus.items()}
    out.by_rank = gather_from_ranks(mine, world)
    for pair in data.pairs:
        cl = out.corpus[pair.name]
        src = [e.src_words for e in pair.examples]
        tgt = [e.tgt_words for e in pair.examples]
        for spec in specs:
            for ex, lk in zip(pair.examples, cl.for_spec(spec, src, tgt), strict=True):
                ex.links[spec] = lk
    return out


def _agree_on_links(
    resolved: dict[str, CorpusLinks | None], main: bool
) -> dict[str, CorpusLinks | None]:
    """Make every rank hold the main process's links (broadcast only when a rank lacks them)."""
    from accelerate.utils import broadcast_object_list, gather_object

    wanted = {n: cl.digests for n, cl in resolved.items() if cl is not None} if main else None
    wanted = broadcast_object_list([wanted])[0]
    ok = all(cl is not None and cl.digests == wanted.get(n) for n, cl in resolved.items())
    if all(gather_object([ok])):
        return resolved
    payload = (
        {n: (cl.links, cl.sources) for n, cl in resolved.items() if cl is not None}
        if main
        else None
    )
    payload = broadcast_object_list([payload])[0]
    if ok:
        return resolved
    return {n: CorpusLinks(n, links, sources) for n, (links, sources) in payload.items()}


def gather_from_ranks(value: Any, world: int) -> list[Any]:
    """``value`` of every rank, in rank order (``[value]`` on one process)."""
    if world <= 1:
        return [value]
    from accelerate.utils import gather_object

    return list(gather_object([value]))
