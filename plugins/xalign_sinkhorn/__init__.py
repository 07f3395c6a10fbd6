"""Sinkhorn-divergence alignment (Alqahtani et al. 2021, "OT as alignment objective").

Minimises S_ε(α, β) between the source and English word clouds of each sentence pair
(``scope: sentence``, one batched geomloss call) or of the whole batch (``scope: batch``).
The paper's Eq. 2 prints a minus sign before S; that is a typo: the divergence is minimised.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

import xalign
from xalign import AlignmentBatch, Needs, Objective


@dataclass
class SinkhornConfig:
    """Options; defaults are geomloss's and the paper's.

    ``blur`` is geomloss's length scale: ε = blur^p, so the paper's "ε = 0.05" (geomloss's
    default blur) means ε = 0.0025 for p = 2 with cost ½‖x−y‖².
    """

    level: str = "word"
    pooling: str | None = None
    scope: str = "sentence"
    p: int = 2
    blur: float = 0.05
    scaling: float = 0.5
    debias: bool = True
    reach: float | None = None
    diameter: float | None = None
    weights: str = "uniform"

    def __post_init__(self) -> None:
        choices = {"level": ("word", "subword"), "scope": ("sentence", "batch"),
                   "weights": ("uniform",)}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"sinkhorn: {key} must be one of {allowed}")


class Sinkhorn(Objective):
    """Sinkhorn divergence between source and English word (or subword) clouds."""

    name = "sinkhorn"
    description = "Sinkhorn divergence S_eps between word clouds (WordOT/SubOT, Alqahtani 2021)"
    Config = SinkhornConfig

    def needs(self) -> Needs:
        return Needs(mixed_languages=False)

    def vectors(self, side: xalign.Side) -> tuple[torch.Tensor, torch.Tensor]:
        if self.config.level == "subword":
            return side.subwords()
        return side.words_vectors(self.config.pooling)

    def loss(self, batch: AlignmentBatch) -> torch.Tensor:
        x, xm = self.vectors(batch.src)
        y, ym = self.vectors(batch.tgt)
        c = self.config
        kwargs = dict(p=c.p, blur=c.blur, scaling=c.scaling, debias=c.debias, reach=c.reach,
                      diameter=c.diameter)
        if c.scope == "batch":
            return xalign.sinkhorn_divergence(x[xm], xm.new_ones(int(xm.sum())),
                                              y[ym], ym.new_ones(int(ym.sum())), **kwargs)
        return xalign.sinkhorn_divergence(x, xm, y, ym, **kwargs).mean()


@xalign.hookimpl
def register_objectives(register) -> None:
    register(Sinkhorn)
