"""The pre-``prepare`` training-data pipeline, kept as an independent check of
:mod:`xalign.data.prepare`: tests compare prepared data with what these give.

:func:`build_parallel_data` reads, filters and plans in memory with the live per-pair
functions of :mod:`xalign.data.filters` and the plan of :mod:`xalign.data.sampler` (no
``datasets`` table, no cache). :func:`attach_links` resolves each pair's links in memory
with the live functions of :mod:`xalign.data.links` (:func:`~xalign.data.links.corpus_links`,
the one rank agreement :func:`~xalign.data.links.agree_on_links`).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from xalign.config import RunConfig
from xalign.data.corpus import language_spec, read_parallel
from xalign.data.filters import (
    PairStats,
    check_kept,
    check_subwords,
    tally_line,
    target_file,
    warn_truncated,
    words_and_reason,
)
from xalign.data.links import (
    CorpusLinks,
    LinkSet,
    agree_on_links,
    corpus_key,
    corpus_links,
    gather_from_ranks,
)
from xalign.data.prepare import corpus_options
from xalign.data.sampler import PairData, PairExample, ParallelData, sample_order
from xalign.errors import ConfigError
from xalign.links import LinkSpec
from xalign.provenance import corpus_digest, model_identity


def build_parallel_data(
    corpus: str | dict[str, str],
    languages: list[str],
    target: str,
    *,
    pairs_per_language: int | None,
    batch_size: int,
    seed: int,
    min_words: int = 1,
    max_words: int = 64,
    max_ratio: float | None = None,
    limit: int | None = None,
    tokenizer: Any = None,
    max_length: int | None = None,
    unescape: bool = True,
) -> ParallelData:
    """Read, normalise, Moses-tokenise, filter and plan every ``language -> target`` pair.

    ``tokenizer``: the run's fast subword tokenizer. With it, a pair is dropped
    (``no_subwords``) when one side has no subword at all (it would reach the losses as an
    empty word cloud), and words past ``max_length`` subwords (the encoder's limit, special
    tokens included) are counted and reported with a :class:`DataWarning`. Without it (data
    inspection only; the trainer always passes it) neither check runs.

    Raises ConfigError for ``min_words < 1`` or ``batch_size < 1`` and CorpusError when a
    language pair has no sentence pair left, naming the reasons and their first lines.
    """
    if min_words < 1:
        raise ConfigError(
            f"data.min_words must be >= 1 (got {min_words}): a sentence with no "
            f"words gives the alignment losses nothing to align"
        )
    if batch_size < 1:
        raise ConfigError(f"train.batch_size must be >= 1 (got {batch_size})")
    budget = None
    if tokenizer is not None and max_length is not None:
        budget = max_length - tokenizer.num_special_tokens_to_add(pair=False)
    pairs = []
    for lang in languages:
        spec = language_spec(corpus, lang)
        name = f"{lang}-{target}"
        raw = read_parallel(spec, lang, target, limit=limit)
        stats = PairStats(read=len(raw))
        tgt_file = target_file(spec, lang, target)
        candidates: list[PairExample] = []
        for pair in raw:
            sw, tw, changed, reason = words_and_reason(
                pair.src,
                pair.tgt,
                lang,
                target,
                unescape=unescape,
                min_words=min_words,
                max_words=max_words,
                max_ratio=max_ratio,
            )
            if tally_line(stats, pair.where, changed, reason, tgt_file):
                candidates.append(PairExample(sw, tw, where=pair.where))
        examples = check_subwords(candidates, tokenizer, budget, stats)
        check_kept(
            name,
            spec,
            examples,
            stats,
            min_words=min_words,
            max_words=max_words,
            max_ratio=max_ratio,
        )
        warn_truncated(name, stats, max_length, stacklevel=3)
        order = sample_order(len(examples), pairs_per_language, seed, name)
        pairs.append(PairData(lang, target, examples, order, stats))
    return ParallelData(pairs, batch_size)


def attach_links(
    data: Any,
    specs: list[LinkSpec],
    *,
    cfg: RunConfig | None = None,
    accelerator: Any = None,
    cache_dir: Path | None = None,
) -> LinkSet:
    """Resolve each pair's word links once and attach every spec's filtered links to examples.

    Links come from ``cfg.data.links`` files or from eflomal (cached under ``cache_dir``,
    default ``$XALIGN_CACHE_DIR/eflomal``). With several ranks the main process resolves
    first (eflomal under a file lock); the others then read the cache without running
    eflomal, and all agree on the main process's links (:func:`agree_on_links`).
    """
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
        resolved = agree_on_links(resolved, main)
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
