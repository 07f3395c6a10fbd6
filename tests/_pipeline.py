"""The pre-``prepare`` training-data pipeline, kept as an independent check of
:mod:`xalign.data.prepare`: tests compare prepared data with what these give.

:func:`attach_links` resolves each pair's links in memory with the live functions of
:mod:`xalign.data.links` (:func:`~xalign.data.links.corpus_links`, the one rank agreement
:func:`~xalign.data.links.agree_on_links`).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from xalign.config import RunConfig
from xalign.data.links import (
    CorpusLinks,
    LinkSet,
    agree_on_links,
    corpus_key,
    corpus_links,
    gather_from_ranks,
)
from xalign.data.prepare import corpus_options
from xalign.links import LinkSpec
from xalign.provenance import corpus_digest, model_identity


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
