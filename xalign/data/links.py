"""The links of a training corpus and of a run: what objectives with a :class:`LinkSpec` train on.

Training links of a language pair are resolved once per corpus (:func:`corpus_links`):

- from files named by ``data.links`` (Pharaoh ``i-j``, 0-based, one line per kept sentence
  pair in corpus order; see :func:`links_path`), validated with ``file:line`` errors; or
- from eflomal (forward + reverse, symmetrised), cached under ``$XALIGN_CACHE_DIR/eflomal``
  keyed by the tokenised corpus, the eflomal settings and the eflomal version. eflomal seeds
  itself from ``/dev/urandom`` (it has no seed option), so a cold cache gives new links: one
  process computes them under a file lock and every other process reads the cache.

A run's links (:class:`LinkSet`) are the same on every data-parallel rank:
:func:`agree_on_links` gives every rank the main process's links.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

from xalign.alignment import eflomal_aligner as ea
from xalign.data.store import write_atomic
from xalign.data.text import TOKENIZER_VERSION
from xalign.links import (
    Links,
    LinksFileError,
    LinkSpec,
    Sentences,
    check_symmetrization,
    combined_digest,
    links_digest,
    parse_links_file,
    read_links_file,
)

logger = logging.getLogger(__name__)

_INDEX_FORMAT = "xalign-corpus-links/2"  # 2: words of xalign.data.text.TOKENIZER_VERSION

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


# ------------------------------------------------------------------------------ corpus links
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


def eflomal_settings(src_sents: Sentences, tgt_sents: Sentences) -> ea.EflomalSettings:
    """One eflomal run per corpus for every LinkSpec: every kept pair is aligned (max_words
    = the longest sentence) and ``LinkSpec.max_words`` filters afterwards; seed 0 is only a
    cache-key constant (eflomal has no seed)."""
    longest = max(
        (max(len(s), len(t)) for s, t in zip(src_sents, tgt_sents, strict=True)), default=1
    )
    return ea.EflomalSettings(max_words=max(1, longest), seed=0)


def corpus_key(pair: Pair, corpus_digest: str, data_options: Mapping[str, Any]) -> str:
    """Key of a raw corpus + the options that turn it into kept tokenised pairs (index key)."""
    from importlib.metadata import version

    from xalign._version import __version__

    blob = json.dumps(
        {
            "format": _INDEX_FORMAT,
            "pair": list(_as_pair(pair)),
            "corpus": corpus_digest,
            "data": dict(data_options),
            "xalign": __version__,
            "sacremoses": version("sacremoses"),
            "words": TOKENIZER_VERSION,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


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
    :func:`~xalign.links.read_links_file`); else from eflomal through its cache
    (``cache_dir``, default ``$XALIGN_CACHE_DIR/eflomal``), computed under a file lock when
    missing and ``compute`` (``compute=False`` returns None on a cache miss: used by
    data-parallel ranks that must not run eflomal themselves). ``index_key``
    (:func:`corpus_key`) records which eflomal cache entry this raw corpus maps to, so
    :func:`known_links_digests` can find the links without tokenising the corpus.
    """
    src, tgt = src_sents, tgt_sents
    syms = sorted(set(symmetrizations))
    for sym in syms:
        check_symmetrization(sym)
    src_lang, tgt_lang = _as_pair(pair)
    name = pair_name((src_lang, tgt_lang))
    if option:
        files = {sym: links_path(option, src_lang, tgt_lang, sym) for sym in syms}
        links = {sym: read_links_file(p, src, tgt, pair=name) for sym, p in files.items()}
        return CorpusLinks(name, links, {sym: str(p) for sym, p in files.items()})
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
                "settings": dataclasses.asdict(settings),
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


def _write_index(cache_dir: Path, key: str, entry: dict[str, Any]) -> None:
    """Atomically record ``key -> eflomal cache entry`` (best effort: a warning on failure)."""
    path = _index_path(cache_dir, key)
    try:
        write_atomic(path, json.dumps(entry))
    except OSError as err:
        logger.warning("could not write the links index %s: %s", path, err)


# ------------------------------------------------------------------ links as table columns
def spec_name(spec: LinkSpec) -> str:
    """A LinkSpec as canonical JSON (part of cache keys and of :func:`spec_column`)."""
    return json.dumps(dataclasses.asdict(spec), sort_keys=True)


def flat_links(links: Links) -> list[int]:
    """A sentence pair's links as sorted ``[i0, j0, i1, j1, ...]`` (Arrow-friendly)."""
    return [x for link in sorted(links) for x in link]


def unflat_links(flat: Sequence[int]) -> Links:
    """Inverse of :func:`flat_links`."""
    return set(zip(flat[0::2], flat[1::2], strict=True))


def sym_column(sym: str) -> str:
    """The table column of one symmetrisation's corpus links."""
    return f"sym:{sym}"


def spec_column(spec: LinkSpec) -> str:
    """The table column of one LinkSpec's filtered links."""
    return "spec:" + hashlib.sha256(spec_name(spec).encode()).hexdigest()[:16]


def links_columns(
    cl: CorpusLinks, specs: Sequence[LinkSpec], src_sents: Sentences, tgt_sents: Sentences
) -> dict[str, list[list[int]]]:
    """A pair's links as table columns: each symmetrisation's corpus links
    (:func:`sym_column`) and each spec's filtered links (:func:`spec_column`), one row per
    sentence pair, flattened (:func:`flat_links`)."""
    columns: dict[str, list[list[int]]] = {}
    for sym in sorted({s.symmetrization for s in specs}):
        columns[sym_column(sym)] = [flat_links(lk) for lk in cl.links[sym]]
    for spec in specs:
        columns[spec_column(spec)] = [
            flat_links(lk) for lk in cl.for_spec(spec, src_sents, tgt_sents)
        ]
    return columns


class LazyLinks(Sequence[Links]):
    """One symmetrisation's corpus links, decoded from the Arrow column on access."""

    def __init__(self, table: Any, column: str) -> None:
        self._col = table.select_columns([column])
        self._name = column

    def __len__(self) -> int:
        return len(self._col)

    @overload
    def __getitem__(self, i: int) -> Links: ...
    @overload
    def __getitem__(self, i: slice) -> list[Links]: ...
    def __getitem__(self, i: int | slice) -> Links | list[Links]:
        if isinstance(i, slice):
            return [unflat_links(f) for f in self._col[i][self._name]]
        return unflat_links(self._col[int(i)][self._name])

    def __iter__(self) -> Iterator[Links]:
        for batch in self._col.iter(batch_size=10_000):
            for flat in batch[self._name]:
                yield unflat_links(flat)

    def total(self) -> int:
        """Links over all sentence pairs, from the Arrow list lengths (nothing decoded)."""
        import pyarrow.compute as pc

        lengths = pc.list_value_length(self._col.data.column(self._name))
        return int(pc.sum(lengths).as_py() or 0) // 2


def total_links(links: Sequence[Links]) -> int:
    """Links over all sentence pairs of one symmetrisation (:meth:`LazyLinks.total` when the
    links live in a prepared entry)."""
    return links.total() if isinstance(links, LazyLinks) else sum(map(len, links))


class PreparedCorpusLinks(CorpusLinks):
    """:class:`CorpusLinks` whose links are read from a prepared entry on demand and whose
    digests are the ones recorded when it was built (no re-hash of the corpus links)."""

    def __init__(
        self,
        pair: str,
        links: dict[str, Sequence[Links]],
        sources: dict[str, str],
        digests: dict[str, str],
    ) -> None:
        super().__init__(pair, links, sources)  # type: ignore[arg-type]
        self._digests = dict(sorted(digests.items()))

    @property
    def digests(self) -> dict[str, str]:
        return dict(self._digests)


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

    def describe(self) -> str:
        """Where the links came from and each pair's links per sentence (one figure per
        symmetrisation, in the order of the sources), a line per group of pairs with the
        same sources: ``word links: intersection: self (...): de-en 7.6, fr-en 8.1 per
        sentence``; "" without links. ``xalign run`` prints it when a run starts."""
        groups: dict[str, list[str]] = {}
        for pair, cl in sorted(self.corpus.items()):
            syms = sorted(cl.links)
            source = "; ".join(f"{sym}: {cl.sources.get(sym, 'unknown')}" for sym in syms)
            per = "/".join(
                f"{total_links(cl.links[sym]) / max(1, len(cl.links[sym])):.1f}" for sym in syms
            )
            groups.setdefault(source, []).append(f"{pair} {per}")
        return "".join(
            f"word links: {source}: {', '.join(pairs)} per sentence\n"
            for source, pairs in groups.items()
        ).rstrip("\n")


def agree_on_links(
    resolved: Mapping[str, CorpusLinks | None], main: bool
) -> dict[str, CorpusLinks | None]:
    """Every rank trains on the main process's links: ``resolved`` (this rank's links per pair,
    None where it could not read them: no shared cache folder, eflomal's cache cold) when it
    equals the main process's, digest for digest; else the main process's, received by
    broadcast (sent only when some rank lacks them). Collective: every rank must call it."""
    from accelerate.utils import broadcast_object_list, gather_object

    mine = {n: cl.digests if cl is not None else None for n, cl in resolved.items()}
    wanted = broadcast_object_list([mine if main else None])[0]
    ok = mine == wanted
    if all(gather_object([ok])):
        return dict(resolved)
    payload = None
    if main:  # materialised: prepared links are read from disk on demand
        payload = {
            n: ({s: list(lk) for s, lk in cl.links.items()}, cl.sources)
            for n, cl in resolved.items()
            if cl is not None
        }
    payload = broadcast_object_list([payload])[0]
    if ok:
        return dict(resolved)
    return {n: CorpusLinks(n, links, sources) for n, (links, sources) in payload.items()}


def gather_from_ranks(value: Any, world: int) -> list[Any]:
    """``value`` of every rank, in rank order (``[value]`` on one process)."""
    if world <= 1:
        return [value]
    from accelerate.utils import gather_object

    return list(gather_object([value]))
