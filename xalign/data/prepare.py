"""Prepare once: the training corpus as on-disk, memory-mapped datasets, reused by every run.

A *prepared pair* is one language pair of ``data.corpus`` after everything the trainer does to
it before the first step (the functions of :mod:`xalign.data.filters`): NFC + Moses
unescaping, Moses words, the length filters, the drop of pairs with a side the run's tokenizer
maps to no subword, and the statistics of ``data_stats.json``
(read, dropped per reason with the first ``file:line``s, unescaped lines per file, words
without a subword, words cut by ``model.max_length``). It is stored as a Hugging Face
``datasets`` Arrow table (columns ``src_words``, ``tgt_words``, ``where``) that later runs
memory-map instead of re-reading and re-tokenising the corpus.

*Prepared links* are one pair's word links for the run's :class:`~xalign.links.LinkSpec` s:
the symmetrised corpus links (one column per symmetrisation, what the ``links/`` artifacts
and digests are made of) and each spec's filtered links (one column per spec), resolved by
:func:`xalign.data.links.corpus_links` (``data.links`` files or eflomal through its cache).

Both are cache entries ``$XALIGN_CACHE_DIR/prepared/<key>/`` keyed by the content of their
inputs (see :func:`words_key`, :func:`links_key`): corpus content (sha256 of the files a spec
names, via :mod:`xalign.provenance`, or of the sentence pairs as read for ``demo``/``hf:``
specs), the spec and ``data.limit``, the filters, the tokenizer's own serialisation and
``max_length``, the link options, and the xalign/sacremoses/eflomal versions. The entries
live in a content-keyed store (:mod:`xalign.data.store`): written whole or not at all, under
a file lock, every file's size and sha256 in a ``manifest.json`` checked before use, so a
damaged or partial entry is rebuilt, never used.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any, overload

from xalign.config import RunConfig
from xalign.data.corpus import PairSpec, RawPair, language_spec, read_parallel, spec_files
from xalign.data.filters import (
    PairStats,
    check_kept,
    check_subword_counts,
    stats_from_json,
    stats_to_json,
    subword_counts_arrow,
    tally_line,
    target_file,
    warn_truncated,
    words_and_reason,
)
from xalign.data.links import (
    CorpusLinks,
    LazyLinks,
    LinkSet,
    PreparedCorpusLinks,
    agree_on_links,
    corpus_key,
    corpus_links,
    gather_from_ranks,
    links_columns,
    links_path,
    spec_column,
    spec_name,
    sym_column,
    unflat_links,
)
from xalign.data.sampler import PairData, PairExample, ParallelData, sample_order
from xalign.data.store import PreparedDataError, cached_entry
from xalign.data.text import TOKENIZER_VERSION
from xalign.encoders import Encoder
from xalign.links import Links, LinkSpec
from xalign.self_links import is_self

logger = logging.getLogger(__name__)

#: Format of the cache entries; bump when their layout or meaning changes.
#: 3: words of the idempotent tokeniser (:data:`xalign.data.text.TOKENIZER_VERSION`).
PREPARE_FORMAT = "xalign-prepared/3"  # 2: unescaped_lines per file of each side
#: Rows per ``datasets.map`` batch of the Moses step.
MAP_BATCH = 1000
#: Below this many sentence pairs the Moses step runs in this process: a worker process costs
#: ~1-2 s to start and to ship its shard back, more than it saves on a small corpus.
MAP_MIN_ROWS = 20_000


# ------------------------------------------------------------------------------ options, keys
@dataclass(frozen=True)
class PrepareOptions:
    """Everything besides the corpus and the tokenizer that shapes the prepared words.

    ``max_length``: the encoder's limit in subwords, special tokens included (truncation
    counts only; nothing is cut here). ``limit``: ``data.limit`` (first N pairs, None = all).
    """

    target: str = "en"
    min_words: int = 1
    max_words: int = 64
    max_ratio: float | None = None
    limit: int | None = None
    unescape: bool = True
    max_length: int | None = None

    @classmethod
    def from_config(cls, cfg: RunConfig, max_length: int | None) -> PrepareOptions:
        """The options of a :class:`~xalign.config.RunConfig` (``data.*``)."""
        d = cfg.data
        return cls(
            target=d.target,
            min_words=d.min_words,
            max_words=d.max_words,
            max_ratio=d.max_ratio,
            limit=d.limit,
            unescape=d.unescape,
            max_length=max_length,
        )


def corpus_options(cfg: RunConfig, model_id: str) -> dict[str, Any]:
    """What turns a raw corpus into the kept tokenised pairs that links index, besides the
    corpus itself: the ``data`` filters, the subword tokenizer (the model's content identity,
    since pairs without subwords are dropped) and ``model.max_length``."""
    data = dict(cfg.to_dict()["data"])
    for key in ("corpus", "languages", "links", "self_links", "pairs_per_language"):
        data.pop(key, None)
    return {"data": data, "model": model_id, "max_length": cfg.model.max_length}


def _sha(obj: Any) -> str:
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def tokenizer_identity(tokenizer: Any) -> str:
    """sha256 of a fast tokenizer's full serialisation (vocabulary, normaliser, pre-tokeniser,
    post-processor) plus its class: two tokenizers with equal identities give equal subword
    counts, whatever model folder they came from. None -> ``"none"`` (no subword check)."""
    if tokenizer is None:
        return "none"
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise PreparedDataError(
            f"{type(tokenizer).__name__} is not a fast tokenizer: the prepare stage (like the "
            "trainer) needs a Hugging Face fast tokenizer"
        )
    digest = hashlib.sha256(type(tokenizer).__name__.encode())
    digest.update(backend.to_str().encode("utf-8"))
    return digest.hexdigest()


def text_digest(pairs: Sequence[RawPair]) -> str:
    """sha256 of sentence pairs as read: :func:`xalign.provenance.pairs_digest`, the same value
    as :func:`xalign.provenance.corpus_digest` (the run's ``data.corpus_hash.<pair>``)."""
    from xalign.provenance import pairs_digest

    return pairs_digest(pairs)


def corpus_identity(spec: PairSpec, src: str, tgt: str, limit: int | None) -> dict[str, Any]:
    """What identifies a pair's raw corpus without reading it: the spec as written (it names
    the ``file:line`` locations), ``limit`` and the sha256 of every file it reads (cached per
    file by :func:`xalign.provenance.file_digest`); for ``demo``/``hf:`` specs the sha256 of
    the sentence pairs as read. A missing or unreadable file raises the reader's CorpusError.
    """
    from xalign.provenance import file_digest

    files = spec_files(spec, src, tgt)
    out: dict[str, Any] = {
        "spec": dict(spec) if isinstance(spec, Mapping) else spec,
        "limit": limit or None,
    }
    if files is None or not all(p.is_file() for p in files):
        # demo / hub, or a path the reader must report (missing file, a directory)
        out["text"] = text_digest(read_parallel(spec, src, tgt, limit=limit))
        return out
    out["files"] = [[str(p), file_digest(p)] for p in files]
    return out


def words_key(
    src: str, identity: Mapping[str, Any], options: PrepareOptions, tokenizer_id: str
) -> str:
    """Cache key of one prepared pair: format, software versions, corpus identity, filters,
    tokenizer identity and ``max_length``."""
    from xalign._version import __version__

    return _sha(
        {
            "format": PREPARE_FORMAT,
            "kind": "words",
            "xalign": __version__,
            "sacremoses": version("sacremoses"),
            "words": TOKENIZER_VERSION,
            "pair": [src, options.target],
            "corpus": dict(identity),
            "options": asdict(options),
            "tokenizer": tokenizer_id,
        }
    )


def links_key(
    words: str,
    pair: tuple[str, str],
    specs: Sequence[LinkSpec],
    option: str | Mapping[str, str] | None,
) -> str:
    """Cache key of one pair's prepared links: the prepared words' key, the specs, and either
    the ``data.links`` files' sha256 or the eflomal version (eflomal links are drawn once per
    tokenised corpus, then shared through eflomal's own cache)."""
    from xalign.provenance import file_digest

    src_lang, tgt_lang = pair
    source: Any
    if option:
        source = {}
        for sym in sorted({s.symmetrization for s in specs}):
            path = links_path(option, src_lang, tgt_lang, sym)
            source[sym] = [str(path), file_digest(path) if path.is_file() else "missing"]
    else:
        source = {"eflomal": version("eflomal")}
    return _sha(
        {
            "format": PREPARE_FORMAT,
            "kind": "links",
            "words": words,
            "specs": sorted(spec_name(s) for s in specs),
            "source": source,
        }
    )


# ------------------------------------------------------------------------------ cache entries
def prepared_root(cache_dir: str | Path | None = None) -> Path:
    """``cache_dir``, else ``$XALIGN_CACHE_DIR/prepared``."""
    if cache_dir is not None:
        return Path(cache_dir)
    from xalign.paths import cache_root

    return cache_root() / "prepared"


# ------------------------------------------------------------------------------ the Moses step
def _moses_batch(
    batch: dict[str, list[Any]],
    *,
    src_lang: str,
    tgt_lang: str,
    unescape: bool,
    min_words: int,
    max_words: int,
    max_ratio: float | None,
) -> dict[str, list[Any]]:
    """``datasets.map`` function: raw ``src``/``tgt`` -> words, unescape flag, filter reason."""
    out: dict[str, list[Any]] = {"src_words": [], "tgt_words": [], "changed": [], "reason": []}
    for s, t in zip(batch["src"], batch["tgt"], strict=True):
        sw, tw, changed, reason = words_and_reason(
            s,
            t,
            src_lang,
            tgt_lang,
            unescape=unescape,
            min_words=min_words,
            max_words=max_words,
            max_ratio=max_ratio,
        )
        out["src_words"].append(sw)
        out["tgt_words"].append(tw)
        out["changed"].append(changed)
        out["reason"].append(reason or "")
    return out


def default_num_proc(rows: int) -> int:
    """Worker processes for the Moses step: 1 below :data:`MAP_MIN_ROWS` pairs, else every
    core (``XALIGN_PREPARE_PROCS`` overrides)."""
    env = os.environ.get("XALIGN_PREPARE_PROCS")
    if env:
        return max(1, int(env))
    if rows < MAP_MIN_ROWS:
        return 1
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)


@contextlib.contextmanager
def _quiet_datasets() -> Iterator[None]:
    from datasets import utils as dtqdm

    was = dtqdm.are_progress_bars_disabled()
    dtqdm.disable_progress_bars()
    try:
        yield
    finally:
        if not was:
            dtqdm.enable_progress_bars()


def _build_words(
    tmp: Path,
    spec: PairSpec,
    src: str,
    options: PrepareOptions,
    tokenizer: Any,
    num_proc: int | None,
) -> dict[str, Any]:
    """Read, Moses-tokenise, filter and subword-check one pair into ``tmp/data``; returns the
    manifest body (rows, corpus digest, stats). Raises the reader's CorpusError and
    check_kept's CorpusError when nothing is left."""
    import datasets
    import pyarrow as pa
    from datasets.table import InMemoryTable

    tgt = options.target
    name = f"{src}-{tgt}"
    started = time.perf_counter()
    raw = read_parallel(spec, src, tgt, limit=options.limit)
    digest = text_digest(raw)
    stats = PairStats(read=len(raw))
    procs = num_proc or default_num_proc(len(raw))
    table = datasets.Dataset(  # Arrow columns built at once (from_dict encodes row by row)
        InMemoryTable.from_pydict(
            {
                "src": pa.array([p.src for p in raw], pa.string()),
                "tgt": pa.array([p.tgt for p in raw], pa.string()),
                "where": pa.array([p.where for p in raw], pa.string()),
            }
        )
    )
    del raw
    kwargs = {
        "src_lang": src,
        "tgt_lang": tgt,
        "unescape": options.unescape,
        "min_words": options.min_words,
        "max_words": options.max_words,
        "max_ratio": options.max_ratio,
    }
    with _quiet_datasets():
        words = table.map(
            _moses_batch,
            batched=True,
            batch_size=MAP_BATCH,
            fn_kwargs=kwargs,
            remove_columns=["src", "tgt"],
            num_proc=procs if procs > 1 else None,
            cache_file_name=str(tmp / "moses.arrow") if procs > 1 else None,
            keep_in_memory=procs <= 1,
            load_from_cache_file=False,
            new_fingerprint=uuid.uuid4().hex,
        )
    del table
    # the words stay Arrow from here: filters by row index, subword counts over Arrow columns
    kept_rows: list[int] = []
    tgt_file = target_file(spec, src, tgt)
    for start in range(0, len(words), 50_000):
        chunk = words.data.table.slice(start, 50_000).select(["where", "changed", "reason"])
        kept_rows += [
            i
            for i, (where, changed, reason) in enumerate(
                zip(*(chunk.column(c).to_pylist() for c in chunk.column_names), strict=True),
                start,
            )
            if tally_line(stats, where, changed, reason or None, tgt_file)
        ]
    kept = words.data.table.select(["src_words", "tgt_words", "where"]).take(
        pa.array(kept_rows, pa.int64())
    )
    del words
    if tokenizer is not None and kept.num_rows:
        budget = None
        if options.max_length is not None:
            budget = options.max_length - tokenizer.num_special_tokens_to_add(pair=False)
        checked = check_subword_counts(
            subword_counts_arrow(tokenizer, kept.column("src_words")),
            subword_counts_arrow(tokenizer, kept.column("tgt_words")),
            kept.column("where").to_pylist(),
            budget,
            stats,
        )
        if len(checked) < kept.num_rows:
            kept = kept.take(pa.array(checked, pa.int64()))
    check_kept(
        name,
        spec,
        range(kept.num_rows),
        stats,
        min_words=options.min_words,
        max_words=options.max_words,
        max_ratio=options.max_ratio,
    )
    features = datasets.Features(
        {
            "src_words": datasets.Sequence(datasets.Value("string")),
            "tgt_words": datasets.Sequence(datasets.Value("string")),
            "where": datasets.Value("string"),
        }
    )
    out = datasets.Dataset(
        InMemoryTable(kept.cast(features.arrow_schema)),
        info=datasets.DatasetInfo(features=features),
    )
    n_rows = kept.num_rows
    del kept
    with _quiet_datasets():
        out.save_to_disk(str(tmp / "data"))
    (tmp / "moses.arrow").unlink(missing_ok=True)
    for stray in tmp.glob("*.arrow"):  # num_proc shards of the Moses step
        stray.unlink()
    return {
        "kind": "words",
        "pair": name,
        "src": src,
        "tgt": tgt,
        "rows": n_rows,
        "corpus_digest": digest,
        "stats": stats_to_json(stats),
        "num_proc": procs,
        "seconds": round(time.perf_counter() - started, 3),
    }


# ------------------------------------------------------------------------------ links
def _build_links(
    tmp: Path,
    words: Any,
    pair: tuple[str, str],
    specs: Sequence[LinkSpec],
    *,
    option: str | Mapping[str, str] | None,
    index_key: str | None,
    eflomal_cache: Path | None,
    compute: bool,
) -> dict[str, Any] | None:
    """Resolve one pair's links (:func:`xalign.data.links.corpus_links`) and store them in
    ``tmp/data``; None when they are not available without running eflomal (``compute``
    False and eflomal's cache cold)."""
    import datasets

    started = time.perf_counter()
    src = words["src_words"]
    tgt = words["tgt_words"]
    syms = sorted({s.symmetrization for s in specs})
    cl = corpus_links(
        src,
        tgt,
        syms,
        pair=pair,
        option=option,
        cache_dir=eflomal_cache,
        compute=compute,
        index_key=index_key,
    )
    if cl is None:
        return None
    columns = links_columns(cl, specs, src, tgt)
    feats = datasets.Features({c: datasets.Sequence(datasets.Value("int32")) for c in columns})
    with _quiet_datasets():
        datasets.Dataset.from_dict(columns, features=feats).save_to_disk(str(tmp / "data"))
    return {
        "kind": "links",
        "pair": pair,
        "specs": {spec_column(s): asdict(s) for s in specs},
        "sources": dict(cl.sources),
        "digests": cl.digests,
        "rows": len(src),
        "seconds": round(time.perf_counter() - started, 3),
    }


# ------------------------------------------------------------------------------ prepared data
class ExampleView(Sequence[PairExample]):
    """A prepared pair's examples, read from the memory-mapped table row by row.

    ``view[i]`` is a fresh :class:`PairExample` (words, ``where``, and ``links[spec]`` for
    every spec of the prepared links); iteration reads the table in batches.
    """

    def __init__(
        self,
        words: Any,
        links: Any = None,
        spec_columns: Mapping[LinkSpec, str] | None = None,
        spec_links: Mapping[LinkSpec, Sequence[Links]] | None = None,
    ) -> None:
        self._words = words
        self._specs = dict(spec_columns or {})
        self._links = links.select_columns(list(self._specs.values())) if self._specs else None
        self._memory = dict(spec_links or {})

    def __len__(self) -> int:
        return len(self._words)

    def _example(self, i: int, row: Mapping[str, Any], links: Mapping[str, Any] | None) -> Any:
        ex = PairExample(row["src_words"], row["tgt_words"], where=row["where"])
        if links is not None:
            for spec, col in self._specs.items():
                ex.links[spec] = unflat_links(links[col])
        for spec, lks in self._memory.items():
            ex.links[spec] = set(lks[i])
        return ex

    @overload
    def __getitem__(self, i: int) -> PairExample: ...
    @overload
    def __getitem__(self, i: slice) -> list[PairExample]: ...
    def __getitem__(self, i: int | slice) -> PairExample | list[PairExample]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = int(i)
        if i < 0:
            i += len(self)
        links = self._links[i] if self._links is not None else None
        return self._example(i, self._words[i], links)

    def __iter__(self) -> Iterator[PairExample]:
        size = 10_000
        for start in range(0, len(self), size):
            rows = self._words[start : start + size]
            links = self._links[start : start + size] if self._links is not None else None
            for k in range(len(rows["where"])):
                row = {c: rows[c][k] for c in ("src_words", "tgt_words", "where")}
                lk = {c: links[c][k] for c in links} if links is not None else None
                yield self._example(start + k, row, lk)


@dataclass
class PreparedPair:
    """One prepared language pair: its memory-mapped words, statistics and (optional) links."""

    src: str
    tgt: str
    words_key: str
    words: Any  # datasets.Dataset: src_words, tgt_words, where
    stats: PairStats
    corpus_digest: str
    words_hit: bool
    links_key: str | None = None
    links: Any = None  # datasets.Dataset: sym:<name>, spec:<hash>
    links_manifest: dict[str, Any] | None = None
    links_hit: bool | None = None
    corpus_links: CorpusLinks | None = None
    # data.links: self: per spec, the links the examples read (filled by xalign.self_links)
    self_links: dict[LinkSpec, list[Links]] | None = None

    @property
    def name(self) -> str:
        return f"{self.src}-{self.tgt}"

    def examples(self, specs: Sequence[LinkSpec] = ()) -> ExampleView:
        """The pair's examples with ``specs``' links attached (from the prepared links, or
        from ``corpus_links`` when they came from another rank)."""
        if not specs:
            return ExampleView(self.words)
        if self.self_links is not None:  # the same lists: a refresh reaches every example
            return ExampleView(self.words, spec_links={s: self.self_links[s] for s in specs})
        if self.links is not None:
            return ExampleView(self.words, self.links, {s: spec_column(s) for s in specs})
        assert self.corpus_links is not None
        src, tgt = self.words["src_words"], self.words["tgt_words"]
        memory = {s: self.corpus_links.for_spec(s, src, tgt) for s in specs}
        return ExampleView(self.words, spec_links=memory)


@dataclass
class PreparedData:
    """The prepared pairs of a run, in ``data.languages`` order."""

    pairs: list[PreparedPair]
    root: Path
    link_specs: list[LinkSpec] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def cache_hit(self) -> bool:
        """Every words and links entry came from the cache."""
        return all(p.words_hit and p.links_hit is not False for p in self.pairs)

    @property
    def key(self) -> str:
        """One key for the whole prepared input (over every entry's key, in order)."""
        return _sha([[p.words_key, p.links_key] for p in self.pairs])

    def parallel_data(
        self, *, pairs_per_language: int | None, batch_size: int, seed: int
    ) -> ParallelData:
        """The trainer's :class:`ParallelData` over the memory-mapped examples (the plan of
        :func:`~xalign.data.sampler.sample_order`)."""
        from xalign.errors import ConfigError

        if batch_size < 1:
            raise ConfigError(f"train.batch_size must be >= 1 (got {batch_size})")
        out = []
        for p in self.pairs:
            examples = p.examples(self.link_specs)
            order = sample_order(len(examples), pairs_per_language, seed, p.name)
            out.append(PairData(p.src, p.tgt, examples, order, p.stats))  # type: ignore[arg-type]
        return ParallelData(out, batch_size)

    def summary(self) -> dict[str, Any]:
        """What ``xalign prepare --json`` prints: per pair counts, entries and hits."""
        return {
            "key": self.key,
            "cache": str(self.root),
            "cache_hit": self.cache_hit,
            "seconds": round(self.seconds, 3),
            "link_specs": [asdict(s) for s in self.link_specs],
            "pairs": {
                p.name: {
                    "read": p.stats.read,
                    "kept": len(p.words),
                    "filtered": {r: t.count for r, t in p.stats.filtered.items()},
                    "truncated_words": p.stats.truncated_words,
                    "no_subword_words": p.stats.no_subword_words.count,
                    "entry": str(self.root / p.words_key),
                    "cache_hit": p.words_hit,
                    "corpus_digest": p.corpus_digest,
                    **(
                        {
                            "links_entry": str(self.root / p.links_key),
                            "links_cache_hit": p.links_hit,
                            "links_digests": p.corpus_links.digests,
                        }
                        if p.links_key and p.corpus_links is not None
                        else {}
                    ),
                }
                for p in self.pairs
            },
        }


def _load(folder: Path) -> Any:
    import datasets

    with _quiet_datasets():
        return datasets.load_from_disk(str(folder / "data"), keep_in_memory=False)


def prepare(
    corpus: Any,
    languages: Sequence[str],
    options: PrepareOptions,
    *,
    tokenizer: Any,
    link_specs: Sequence[LinkSpec] = (),
    links_option: str | Mapping[str, str] | None = None,
    cache_dir: str | Path | None = None,
    eflomal_cache: Path | None = None,
    num_proc: int | None = None,
    compute_links: bool = True,
    index_options: Mapping[str, Any] | None = None,
) -> PreparedData:
    """Prepare (or find in the cache) every ``language -> options.target`` pair of ``corpus``.

    ``corpus``: ``data.corpus`` (one spec, or a mapping language -> spec / ``{src, tgt}``).
    ``link_specs``: the run's LinkSpecs (none: no links entry). ``links_option``:
    ``data.links``. ``num_proc``: Moses worker processes (None: :func:`default_num_proc`).
    ``compute_links=False`` (a non-main rank) never runs eflomal: a pair whose links are
    neither prepared nor in eflomal's cache gets ``links=None`` and ``corpus_links=None``.
    ``index_options``: :func:`corpus_options` of the run, to record the
    raw-corpus -> eflomal entry index that ``compare`` reads.

    Raises CorpusError/ConfigError for bad input,
    LinksFileError for a bad ``data.links`` file, PreparedDataError when the cache is not
    writable.
    """
    started = time.perf_counter()
    root = prepared_root(cache_dir)
    tok_id = tokenizer_identity(tokenizer)
    specs = sorted(set(link_specs), key=repr)
    pairs = []
    lang_specs = {lang: language_spec(corpus, lang) for lang in languages}  # all, before work
    for lang in languages:
        spec = lang_specs[lang]
        identity = corpus_identity(spec, lang, options.target, options.limit)
        wkey = words_key(lang, identity, options, tok_id)
        wman, whit = cached_entry(
            root,
            wkey,
            PREPARE_FORMAT,
            lambda tmp, spec=spec, lang=lang: _build_words(
                tmp, spec, lang, options, tokenizer, num_proc
            ),
        )
        words = _load(root / wkey)
        pair = PreparedPair(
            lang,
            options.target,
            wkey,
            words,
            stats_from_json(wman["stats"]),
            wman["corpus_digest"],
            whit,
        )
        if specs and is_self(links_option):  # links from the model, during training
            pair.self_links = {s: [set() for _ in range(len(words))] for s in specs}
        elif specs:
            _prepare_links(
                pair,
                root,
                specs,
                links_option,
                index_options,
                eflomal_cache,
                compute_links,
            )
        pairs.append(pair)
    return PreparedData(pairs, root, specs, time.perf_counter() - started)


class _NotComputed(Exception):
    """Links not available without running eflomal (raised out of a build: nothing written)."""


def _prepare_links(
    pair: PreparedPair,
    root: Path,
    specs: Sequence[LinkSpec],
    option: str | Mapping[str, str] | None,
    index_options: Mapping[str, Any] | None,
    eflomal_cache: Path | None,
    compute: bool,
) -> None:
    lkey = links_key(pair.words_key, (pair.src, pair.tgt), specs, option)
    index_key = (
        corpus_key((pair.src, pair.tgt), pair.corpus_digest, index_options)
        if index_options is not None and not option
        else None
    )

    def build(tmp: Path) -> dict[str, Any]:
        body = _build_links(
            tmp,
            pair.words,
            (pair.src, pair.tgt),
            specs,
            option=option,
            index_key=index_key,
            eflomal_cache=eflomal_cache,
            compute=compute,
        )
        if body is None:
            raise _NotComputed
        return body

    pair.links_key = lkey
    try:
        lman, pair.links_hit = cached_entry(root, lkey, PREPARE_FORMAT, build)
    except _NotComputed:
        pair.links_hit = False
        return
    pair.links = _load(root / lkey)
    pair.links_manifest = lman
    syms = sorted({s.symmetrization for s in specs})
    pair.corpus_links = PreparedCorpusLinks(
        pair.name,
        {sym: LazyLinks(pair.links, sym_column(sym)) for sym in syms},
        {sym: lman["sources"][sym] for sym in syms},
        {sym: lman["digests"][sym] for sym in syms},
    )


# ------------------------------------------------------------------------------ the trainer's entry
def _prepare_run(
    cfg: RunConfig,
    encoder: Encoder,
    link_specs: Sequence[LinkSpec],
    model_id: str,
    *,
    cache_dir: str | Path | None,
    num_proc: int | None = None,
    compute_links: bool = True,
) -> PreparedData:
    """:func:`prepare` with the inputs of a run of ``cfg`` on ``encoder`` (its tokenizer and
    ``max_length``, the ``data`` options, ``data.links``, the links index of the corpus)."""
    return prepare(
        cfg.data.corpus,
        cfg.data.languages,
        PrepareOptions.from_config(cfg, encoder.max_length),
        tokenizer=encoder.tokenizer,
        link_specs=link_specs,
        links_option=cfg.data.links,
        cache_dir=cache_dir,
        num_proc=num_proc,
        compute_links=compute_links,
        index_options=corpus_options(cfg, model_id),
    )


def prepare_run_data(
    cfg: RunConfig,
    encoder: Encoder,
    link_specs: Sequence[LinkSpec],
    *,
    accelerator: Any = None,
    announce: bool = False,
    cache_dir: str | Path | None = None,
) -> tuple[ParallelData, LinkSet, PreparedData]:
    """The trainer's data: prepared (or taken from the cache) by the main process first, then
    memory-mapped by every rank. Returns ``(ParallelData, LinkSet, PreparedData)``: the
    examples, plan, statistics, links and digests of the run (the same as the in-memory
    pipeline of ``tests/_pipeline.py`` gives), plus the corpus digests and model identity that
    make the run's identity without reading the corpus again. Every rank trains on the main
    process's links (:func:`~xalign.data.links.agree_on_links`). ``announce`` prints one line
    (hit or built) on stderr.
    """
    from xalign.provenance import model_identity

    world = accelerator.num_processes if accelerator is not None else 1
    main = accelerator is None or accelerator.is_main_process
    first = accelerator.main_process_first() if world > 1 else contextlib.nullcontext()
    model_id = model_identity(cfg.model.name, cfg.model.revision)
    with first:
        prepared = _prepare_run(
            cfg, encoder, link_specs, model_id, cache_dir=cache_dir, compute_links=main
        )
    out = LinkSet(
        corpus_digests={p.name: p.corpus_digest for p in prepared.pairs}, model_identity=model_id
    )
    if prepared.link_specs and not is_self(cfg.data.links):
        if world > 1:
            agreed = agree_on_links({p.name: p.corpus_links for p in prepared.pairs}, main)
            for p in prepared.pairs:
                if agreed[p.name] is not p.corpus_links:  # received: attached from memory
                    p.links, p.corpus_links = None, agreed[p.name]
        out.corpus = {p.name: p.corpus_links for p in prepared.pairs if p.corpus_links}
        mine = {name: cl.digest for name, cl in out.corpus.items()}
        out.by_rank = gather_from_ranks(mine, world)
    for p in prepared.pairs:
        warn_truncated(p.name, p.stats, encoder.max_length, stacklevel=2)
    data = prepared.parallel_data(
        pairs_per_language=cfg.data.pairs_per_language,
        batch_size=cfg.train.batch_size,
        seed=cfg.train.seed,
    )
    if announce and main:
        sys.stderr.write(describe(prepared) + "\n")
    return data, out, prepared


def describe(prepared: PreparedData) -> str:
    """One line: cache hit or built, pairs, kept sentence pairs, the cache folder, seconds."""
    kept = sum(len(p.words) for p in prepared.pairs)
    hit = prepared.cache_hit
    what = "cache hit" if hit else "built"
    if not hit and any(p.words_hit or p.links_hit for p in prepared.pairs):
        what = "built in part (other entries were cache hits)"
    return (
        f"prepared data: {what}: {len(prepared.pairs)} language pair(s), {kept} sentence pairs "
        f"kept, key {prepared.key[:16]} in {prepared.root} ({prepared.seconds:.1f} s)"
    )


__all__ = [
    "ExampleView",
    "PREPARE_FORMAT",
    "PrepareOptions",
    "PreparedData",
    "PreparedDataError",
    "PreparedPair",
    "corpus_identity",
    "describe",
    "links_key",
    "link_specs_of",
    "prepare",
    "prepare_config",
    "prepare_run_data",
    "prepared_root",
    "text_digest",
    "tokenizer_identity",
    "words_key",
]


def link_specs_of(cfg: RunConfig, hidden_size: int, registry: Any = None) -> list[LinkSpec]:
    """The LinkSpecs the run's objectives declare (as the trainer collects them), from their
    options (:func:`xalign.plugins.options_needs`: built only if ``needs()`` must be).

    Raises PluginError for an unknown objective or bad objective options.
    """
    from xalign.plugins import get_registry, options_needs

    registry = registry or get_registry()
    specs: set[LinkSpec] = set()
    for name in cfg.objectives:
        entry = registry.objective(name)
        needs = options_needs(entry, cfg.objective_options(name), hidden_size=hidden_size)
        specs |= set(needs.links if needs is not None else ())
    return sorted(specs, key=repr)


def prepare_config(
    cfg: RunConfig,
    *,
    registry: Any = None,
    num_proc: int | None = None,
    cache_dir: str | Path | None = None,
) -> PreparedData:
    """``xalign prepare``: the entries ``xalign run`` with ``cfg`` will use (same tokenizer,
    ``max_length``, filters, LinkSpecs of its objectives, ``data.links``), built or found.

    Loads the encoder (for its tokenizer, ``max_length`` and hidden size), not the objectives'
    training state; runs eflomal when an objective needs links and none are cached.
    """
    from xalign.encoders import load_encoder
    from xalign.provenance import model_identity

    encoder = load_encoder(
        cfg.model.name,
        layer=cfg.model.layer,
        max_length=cfg.model.max_length,
        revision=cfg.model.revision,
        setting="model.name",
    )
    specs = link_specs_of(cfg, encoder.hidden_size, registry)
    model_id = model_identity(cfg.model.name, cfg.model.revision)
    prepared = _prepare_run(cfg, encoder, specs, model_id, cache_dir=cache_dir, num_proc=num_proc)
    for p in prepared.pairs:
        warn_truncated(p.name, p.stats, encoder.max_length, stacklevel=2)
    return prepared
