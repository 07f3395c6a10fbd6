"""Word-align a tokenised parallel corpus with eflomal (both directions), cached on disk.

eflomal 2.0.0 exposes ``eflomal.read_text``/``write_text`` (vocabulary indexing, optional
lower-casing) and ``eflomal.align`` (runs its sampler binary and writes forward and reverse
Pharaoh links, both in (source, target) orientation). It has NO seed option (neither
``eflomal.align`` nor the binary's flags; the binary seeds its samplers from
``/dev/urandom``, falling back to ``time()``), so two runs on the same corpus give different
links: measured on 24 demo pairs, four cold-cache runs differed in 18 pairs. ``seed`` is
therefore only part of the cache key: a cached result is reused exactly, and a new seed asks
for a fresh run. Both directions are cached, so every symmetrisation reuses one eflomal run,
and a computation holds a file lock so concurrent processes (data-parallel ranks, parallel
jobs) on one machine run eflomal once and read each other's result.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path

from xalign.links import Links, parse_pharaoh, symmetrize
from xalign.paths import cache_root

logger = logging.getLogger(__name__)

_CACHE_FORMAT = "xalign-eflomal-links/1"

Sentences = Sequence[Sequence[str]]


@dataclass(frozen=True)
class EflomalSettings:
    """Options that change eflomal's output (all part of the cache key).

    ``model``: 1 IBM1, 2 HMM, 3 HMM + fertility; ``n_samplers``, ``rel_iterations`` and
    ``null_prior`` are passed to eflomal unchanged. Pairs with more than ``max_words`` words
    on either side (or an empty side) are not aligned.
    """

    max_words: int = 64
    seed: int = 0
    lowercase: bool = True
    model: int = 3
    n_samplers: int = 3
    rel_iterations: float = 1.0
    null_prior: float = 0.2


@dataclass
class EflomalResult:
    """Forward and reverse links of the requested sentence pairs, plus the skipped ones."""

    forward: list[Links]
    reverse: list[Links]
    skipped: list[int]
    from_cache: bool = False

    def symmetrized(self, method: str = "intersection") -> list[Links]:
        """Symmetrise every sentence pair (see :func:`xalign.links.symmetrize`)."""
        return [symmetrize(f, r, method) for f, r in zip(self.forward, self.reverse, strict=True)]


def default_cache_dir() -> Path:
    """``$XALIGN_CACHE_DIR/eflomal``, else ``platformdirs.user_cache_dir("xalign")/eflomal``."""
    return cache_root() / "eflomal"


def eflomal_version() -> str:
    """The installed eflomal version (part of every cache key)."""
    return version("eflomal")


# ---------------------------------------------------------------- corpus preparation


def _line(tokens: Sequence[str]) -> str:
    """One eflomal input line; whitespace inside a token becomes ``_`` so indices hold."""
    return " ".join(re.sub(r"\s+", "_", t) or "_" for t in tokens)


def _kept_pairs(src: Sentences, tgt: Sentences, max_words: int) -> tuple[list[int], list[int]]:
    """Indices of pairs to align and of pairs skipped (empty or longer than ``max_words``)."""
    kept, skipped = [], []
    for n, (s, t) in enumerate(zip(src, tgt, strict=True)):
        ok = 0 < len(s) <= max_words and 0 < len(t) <= max_words
        (kept if ok else skipped).append(n)
    return kept, skipped


def _check_parallel(src: Sentences, tgt: Sentences, what: str) -> None:
    """Raise unless both sides have the same number of sentences."""
    if len(src) != len(tgt):
        raise ValueError(f"{what}: {len(src)} source vs {len(tgt)} target sentences")


# ---------------------------------------------------------------- cache


def cache_key(
    src: Sentences,
    tgt: Sentences,
    extra_src: Sentences,
    extra_tgt: Sentences,
    settings: EflomalSettings,
) -> str:
    """sha256 over the cache format, eflomal version, settings and both corpora."""
    digest = hashlib.sha256()
    header = {"format": _CACHE_FORMAT, "eflomal": eflomal_version(), **asdict(settings)}
    digest.update(json.dumps(header, sort_keys=True).encode())
    for part, (a, b) in (("main", (src, tgt)), ("extra", (extra_src, extra_tgt))):
        digest.update(f"\n#{part} {len(a)}\n".encode())
        for s, t in zip(a, b, strict=True):
            digest.update(json.dumps([list(s), list(t)], ensure_ascii=False).encode() + b"\n")
    return digest.hexdigest()


def read_cached(path: Path, n_sents: int) -> EflomalResult | None:
    """A cached result of ``n_sents`` pairs, or None if the file is missing or unusable."""
    return _read_cache(path, n_sents)


def _read_cache(path: Path, n_sents: int) -> EflomalResult | None:
    """A cached result, or None if the file is missing or unusable."""
    try:
        with open(path, encoding="utf-8") as f:
            header = json.loads(f.readline())
            rows = [json.loads(line) for line in f]
        if header.get("format") != _CACHE_FORMAT or len(rows) != n_sents:
            raise ValueError("format or sentence count mismatch")
        forward = [{(i, j) for i, j in row["fwd"]} for row in rows]
        reverse = [{(i, j) for i, j in row["rev"]} for row in rows]
        return EflomalResult(forward, reverse, list(header["skipped"]), from_cache=True)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        logger.warning("ignoring unusable eflomal cache %s: %s", path, err)
        return None


def _cache_lines(result: EflomalResult, settings: EflomalSettings) -> Iterator[str]:
    """JSON lines: a header, then one ``{"fwd": ..., "rev": ...}`` per sentence pair."""
    header = {
        "format": _CACHE_FORMAT,
        "eflomal": eflomal_version(),
        "settings": asdict(settings),
        "skipped": result.skipped,
    }
    yield json.dumps(header)
    for fwd, rev in zip(result.forward, result.reverse, strict=True):
        yield json.dumps({"fwd": sorted(fwd), "rev": sorted(rev)})


def _write_cache(path: Path, result: EflomalResult, settings: EflomalSettings) -> None:
    """Write the cache file atomically (temporary file + ``os.replace``); warn on failure."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.writelines(line + "\n" for line in _cache_lines(result, settings))
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
    except OSError as err:
        logger.warning("could not write eflomal cache %s: %s", path, err)


# ---------------------------------------------------------------- running eflomal


def _write_eflomal_text(lines: list[str], path: Path, lowercase: bool) -> None:
    """Index a text with eflomal's own reader and write its binary input format."""
    import eflomal

    sents, index = eflomal.read_text(lines, lowercase, 0, 0)
    with open(path, "wb") as f:
        eflomal.write_text(f, tuple(sents), len(index))


def _read_links(path: Path) -> list[Links]:
    """One set of 0-based links per line of an eflomal output file."""
    with open(path, encoding="utf-8") as f:
        return [parse_pharaoh(line)[0] for line in f]


def _run_eflomal(
    src_lines: list[str], tgt_lines: list[str], settings: EflomalSettings
) -> tuple[list[Links], list[Links]]:
    """Align line-parallel texts; return forward and reverse links (source first)."""
    import eflomal

    with tempfile.TemporaryDirectory(prefix="xalign-eflomal-") as tmp:
        work = Path(tmp)
        _write_eflomal_text(src_lines, work / "src", settings.lowercase)
        _write_eflomal_text(tgt_lines, work / "tgt", settings.lowercase)
        eflomal.align(
            str(work / "src"),
            str(work / "tgt"),
            links_filename_fwd=str(work / "fwd"),
            links_filename_rev=str(work / "rev"),
            model=settings.model,
            n_samplers=settings.n_samplers,
            rel_iterations=settings.rel_iterations,
            null_prior=settings.null_prior,
            quiet=True,
        )
        forward, reverse = _read_links(work / "fwd"), _read_links(work / "rev")
    if not len(forward) == len(reverse) == len(src_lines):
        raise RuntimeError(
            f"eflomal returned {len(forward)}/{len(reverse)} lines "
            f"for {len(src_lines)} sentence pairs"
        )
    return forward, reverse


def _align_fresh(
    src: Sentences,
    tgt: Sentences,
    extra_src: Sentences,
    extra_tgt: Sentences,
    settings: EflomalSettings,
) -> EflomalResult:
    """Align main + extra pairs in one eflomal run and keep the main pairs' links."""
    kept, skipped = _kept_pairs(src, tgt, settings.max_words)
    extra_kept, _ = _kept_pairs(extra_src, extra_tgt, settings.max_words)
    src_lines = [_line(src[n]) for n in kept] + [_line(extra_src[n]) for n in extra_kept]
    tgt_lines = [_line(tgt[n]) for n in kept] + [_line(extra_tgt[n]) for n in extra_kept]
    forward: list[Links] = [set() for _ in src]
    reverse: list[Links] = [set() for _ in src]
    if kept:
        fwd, rev = _run_eflomal(src_lines, tgt_lines, settings)
        for row, n in enumerate(kept):
            forward[n], reverse[n] = fwd[row], rev[row]
    if skipped:
        logger.info(
            "eflomal: %d of %d sentence pairs not aligned (empty or > %d words)",
            len(skipped),
            len(src),
            settings.max_words,
        )
    return EflomalResult(forward, reverse, skipped)


@contextlib.contextmanager
def _computing(path: Path) -> Iterator[None]:
    """Inter-process lock for computing one cache entry.

    The lock file lives in the temporary folder, not beside the cache (which holds only
    ``*.jsonl`` files), so it serialises processes of one machine.
    """
    from filelock import FileLock

    folder = Path(tempfile.gettempdir()) / "xalign-locks"
    folder.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:32]
    with FileLock(str(folder / f"eflomal-{name}.lock")):
        yield


def align_directions(
    src_sents: Sentences,
    tgt_sents: Sentences,
    settings: EflomalSettings | None = None,
    *,
    cache_dir: Path | None = None,
    use_cache: bool = True,
    extra_src: Sentences | None = None,
    extra_tgt: Sentences | None = None,
    compute: bool = True,
) -> EflomalResult | None:
    """Forward and reverse eflomal links for each pair of ``src_sents``/``tgt_sents``.

    ``extra_src``/``extra_tgt`` are aligned together with the corpus to improve the
    statistics, but their links are not returned. Results are cached under ``cache_dir``
    (default :func:`default_cache_dir`) as ``<sha256>.jsonl``; a missing entry is computed
    under a lock, so concurrent callers run eflomal once. ``compute=False`` only reads the
    cache and returns None on a miss.
    """
    settings = settings or EflomalSettings()
    extra_src, extra_tgt = extra_src or [], extra_tgt or []
    _check_parallel(src_sents, tgt_sents, "corpus")
    _check_parallel(extra_src, extra_tgt, "extra corpus")
    if not use_cache:
        return (
            _align_fresh(src_sents, tgt_sents, extra_src, extra_tgt, settings) if compute else None
        )
    key = cache_key(src_sents, tgt_sents, extra_src, extra_tgt, settings)
    path = Path(cache_dir or default_cache_dir()) / f"{key}.jsonl"
    cached = _read_cache(path, len(src_sents))
    if cached is not None or not compute:
        logger.debug("eflomal cache %s %s", "hit" if cached else "miss", path)
        return cached
    with _computing(path):
        cached = _read_cache(path, len(src_sents))  # another process may have finished it
        if cached is not None:
            return cached
        result = _align_fresh(src_sents, tgt_sents, extra_src, extra_tgt, settings)
        _write_cache(path, result, settings)
    return result


def align_corpus(
    src_sents: Sentences,
    tgt_sents: Sentences,
    *,
    symmetrization: str = "intersection",
    max_words: int = 64,
    seed: int = 0,
    cache_dir: Path | None = None,
    extra_src: Sentences | None = None,
    extra_tgt: Sentences | None = None,
    lowercase: bool = True,
    n_samplers: int = 3,
    use_cache: bool = True,
) -> list[Links]:
    """Symmetrised eflomal links (source first, 0-based) for each sentence pair.

    Pairs with an empty side or more than ``max_words`` words on a side get an empty set.
    See :func:`align_directions` for ``extra_*`` and caching, and the module docstring for
    why ``seed`` does not make a fresh run deterministic; other eflomal options are in
    :class:`EflomalSettings`. ``n_samplers=1`` is about twice as fast as the default 3.
    """
    symmetrize(set(), set(), symmetrization)  # fail fast on an unknown method
    settings = EflomalSettings(
        max_words=max_words, seed=seed, lowercase=lowercase, n_samplers=n_samplers
    )
    result = align_directions(
        src_sents,
        tgt_sents,
        settings,
        cache_dir=cache_dir,
        use_cache=use_cache,
        extra_src=extra_src,
        extra_tgt=extra_tgt,
    )
    assert result is not None  # compute=True always returns a result
    return result.symmetrized(symmetrization)


# ---------------------------------------------------------------- reference row of compare


@dataclass
class ReferenceLinks:
    """eflomal's links for a gold set (``xalign compare``'s ``eflomal`` row of ``align``).

    ``links``: symmetrised links per gold sentence pair (source first, 0-based);
    ``extra_pairs``: training-corpus pairs aligned with them (0 when the corpus has no such
    language pair); ``cache_key``: the eflomal cache entry they come from; ``from_cache``:
    whether that entry already existed (then the links are exactly those of earlier runs).
    """

    links: list[Links]
    extra_pairs: int
    symmetrization: str
    cache_key: str
    from_cache: bool


def corpus_words(
    corpus: object, src: str, tgt: str, *, limit: int | None = None, unescape: bool = True
) -> tuple[list[list[str]], list[list[str]]]:
    """Moses words of the training corpus ``corpus`` (a ``data.corpus`` value) for
    ``src``-``tgt``: normalised and tokenised as xalign prepares training text.

    Raises :class:`xalign.data.corpus.CorpusError` when the corpus has no such pair.
    """
    from xalign.data.corpus import language_spec, read_parallel
    from xalign.data.text import normalize_text, tokenize_words

    pairs = read_parallel(language_spec(corpus, src), src, tgt, limit=limit)
    words = [
        (
            tokenize_words(normalize_text(p.src, unescape=unescape)[0], src),
            tokenize_words(normalize_text(p.tgt, unescape=unescape)[0], tgt),
        )
        for p in pairs
    ]
    return [s for s, _ in words], [t for _, t in words]


def eflomal_reference_links(
    src_sents: Sentences,
    tgt_sents: Sentences,
    extra_src: Sentences = (),
    extra_tgt: Sentences = (),
    *,
    symmetrization: str = "grow-diag-final-and",
    cache_dir: Path | None = None,
) -> ReferenceLinks:
    """eflomal links of a gold set's own sentence pairs, aligned together with
    ``extra_src``/``extra_tgt`` (the run's training corpus) for better statistics.

    eflomal has no seed (module docstring): the links are made reproducible by the cache
    (:func:`align_directions`, keyed by both corpora, the settings and eflomal's version), so
    every later comparison on the same data reads the same links; ``from_cache`` says
    whether this call computed them. Settings: :class:`EflomalSettings` defaults with
    ``max_words`` = the longest gold sentence (every gold pair is aligned; longer training
    pairs are left out of the statistics).
    """
    symmetrize(set(), set(), symmetrization)  # fail fast on an unknown method
    longest = max(
        (max(len(s), len(t)) for s, t in zip(src_sents, tgt_sents, strict=True)), default=1
    )
    settings = EflomalSettings(max_words=max(64, longest))
    key = cache_key(src_sents, tgt_sents, extra_src, extra_tgt, settings)
    result = align_directions(
        src_sents,
        tgt_sents,
        settings,
        cache_dir=cache_dir,
        extra_src=extra_src,
        extra_tgt=extra_tgt,
    )
    assert result is not None  # compute=True always returns a result
    return ReferenceLinks(
        result.symmetrized(symmetrization), len(extra_src), symmetrization, key, result.from_cache
    )
