"""``data.links: self``: training word links from the model being trained (self-labelled links,
as XLM-Align labels them with its own Sinkhorn plan: Chi et al. 2021, ACL).

Every ``data.self_links.refresh_every`` optimizer steps (and once before the first step), each
kept sentence pair is encoded without gradient, in eval mode (no dropout), at
``data.self_links.layer`` and its links are extracted with THE extraction of ``xalign align``
and the ``align`` task (:func:`xalign.encode_words` + :func:`xalign.extract_links` with an
:class:`xalign.ExtractConfig`: mutual argmax of cosine similarity, or the thresholded OT plan).
The links are symmetric by construction, so every :class:`~xalign.LinkSpec` symmetrisation
reads the same links; its filters (``one_to_one``, ``drop_identical``, ``max_words``) apply.

The main process computes them and broadcasts them, so every data-parallel rank trains on
the same links; extraction has no randomness, so a seed gives the same links. Each refresh
is recorded by its sha256 per pair (:func:`xalign.links.links_digest`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from xalign.data.links import CorpusLinks
from xalign.errors import ConfigError
from xalign.links import Links, LinkSpec

SELF = "self"


def is_self(option: Any) -> bool:
    """Is ``data.links`` the word ``self`` (links from the model being trained)?"""
    return isinstance(option, str) and option.strip() == SELF


@dataclass
class SelfLinksConfig:
    """``data.self_links``, read when ``data.links: self``.

    - ``layer``: hidden-state index the links are extracted at (null: the run's
      ``model.layer``; SimAlign and awesome-align extract at layer 8 of 12).
    - ``method``: ``argmax`` (mutual argmax of cosine similarity) or ``ot`` (OT plan links,
      ``threshold`` relative to the row and column maxima, ``blur`` its length scale).
    - ``pooling``: subwords -> word vector for the extraction (``mean``, ``first``, ``last``).
    - ``refresh_every``: recompute after every N optimizer steps (0: once, before training).
    - ``batch_size``: sentences per extraction forward.
    """

    layer: int | None = None
    method: str = "argmax"
    pooling: str = "mean"
    threshold: float = 1.0
    blur: float = 0.1
    refresh_every: int = 100
    batch_size: int = 64


def extract_config(cfg: SelfLinksConfig, model_layer: int) -> Any:
    """The :class:`xalign.ExtractConfig` of ``cfg`` (raises ExtractError naming the option)."""
    from xalign.alignment.extract import ExtractConfig

    return ExtractConfig(
        method=cfg.method,
        layer=model_layer if cfg.layer is None else cfg.layer,
        pooling=cfg.pooling,
        threshold=cfg.threshold,
        blur=cfg.blur,
    )


def model_links(
    encoder: Any,
    src: Sequence[Sequence[str]],
    tgt: Sequence[Sequence[str]],
    src_lang: str,
    tgt_lang: str,
    config: Any,
    *,
    batch_size: int = 64,
    device: torch.device | str | None = None,
) -> list[Links]:
    """Links of every sentence pair from ``encoder`` (an :class:`xalign.Encoder`) at
    ``config.layer``, in eval mode and without gradient (training flags restored after)."""
    from xalign.alignment.extract import encode_words, extract_links

    flags = {m: m.training for m in encoder.modules()}
    layer = encoder.layer
    encoder.eval()
    encoder.layer = config.layer
    out: list[Links] = []
    try:
        with torch.no_grad():
            for start in range(0, len(src), batch_size):
                s = [list(w) for w in src[start : start + batch_size]]
                t = [list(w) for w in tgt[start : start + batch_size]]
                x = encode_words(encoder, s, src_lang, pooling=config.pooling, device=device)
                y = encode_words(encoder, t, tgt_lang, pooling=config.pooling, device=device)
                for b in range(len(s)):
                    out.append(
                        extract_links(x.vectors[b], x.mask[b], y.vectors[b], y.mask[b], config)
                    )
    finally:
        encoder.layer = layer
        for m, training in flags.items():
            m.training = training
    return out


class SelfLinks:
    """The self-links of a run: computes them (main process), shares them with every rank and
    writes each :class:`~xalign.LinkSpec`'s filtered links into the lists the examples read.

    ``stores[pair][spec]`` is the list the pair's examples read links from (one entry per kept
    sentence pair; :meth:`xalign.data.prepare.PreparedPair.examples`).
    """

    def __init__(
        self,
        cfg: SelfLinksConfig,
        model_layer: int,
        pairs: Sequence[Any],
        specs: Sequence[LinkSpec],
        *,
        target: str,
    ) -> None:
        self.cfg = cfg
        self.config = extract_config(cfg, model_layer)
        self.pairs = list(pairs)
        self.specs = list(specs)
        self.target = target
        self.syms = sorted({s.symmetrization for s in specs})

    def source(self, step: int) -> str:
        c = self.config
        extra = f", threshold {c.threshold}, blur {c.blur}" if c.method == "ot" else ""
        return (
            f"self (step {step}: layer {c.layer}, {c.method}, {c.pooling} pooling{extra}, "
            f"refresh every {self.cfg.refresh_every})"
        )

    def refresh(
        self,
        encoder: Any,
        step: int,
        *,
        accelerator: Any = None,
        device: torch.device | str | None = None,
    ) -> dict[str, CorpusLinks]:
        """Recompute (main process), broadcast, store; returns the pairs' corpus links.
        ``device``: where to encode without an ``accelerator`` (else the accelerator's)."""
        self.check_layer(encoder)  # every rank, before the broadcast
        world = accelerator.num_processes if accelerator is not None else 1
        main = accelerator is None or accelerator.is_main_process
        device = accelerator.device if accelerator is not None else device
        links: dict[str, list[Links]] | None = None
        if main:
            links = {
                p.name: model_links(
                    encoder,
                    p.words["src_words"],
                    p.words["tgt_words"],
                    p.src,
                    self.target,
                    self.config,
                    batch_size=self.cfg.batch_size,
                    device=device,
                )
                for p in self.pairs
            }
        if world > 1:
            from accelerate.utils import broadcast_object_list

            links = broadcast_object_list([links])[0]
        assert links is not None
        return self.store(links, step)

    def check_layer(self, encoder: Any) -> None:
        """Raise ConfigError when the extraction layer is not a hidden state of ``encoder``
        (hidden states 0..n of an n-layer model; negative counts from the last)."""
        n = encoder.model.config.num_hidden_layers
        layer = self.config.layer
        if not -n - 1 <= layer <= n:
            key = "data.self_links.layer" if self.cfg.layer is not None else "model.layer"
            raise ConfigError(
                f"{key} {layer} out of range for the self links: the model they are drawn "
                f"from has {n} layers (use -{n + 1}..{n}, -1 = last)"
            )

    def store(self, links: Mapping[str, list[Links]], step: int) -> dict[str, CorpusLinks]:
        """Write each spec's filtered ``links`` into the pairs' stores (in place)."""
        out = {}
        for p in self.pairs:
            cl = CorpusLinks(
                p.name,
                {sym: list(links[p.name]) for sym in self.syms},
                {sym: self.source(step) for sym in self.syms},
            )
            src, tgt = p.words["src_words"], p.words["tgt_words"]
            for spec in self.specs:
                p.self_links[spec][:] = cl.for_spec(spec, src, tgt)
            out[p.name] = cl
        return out
