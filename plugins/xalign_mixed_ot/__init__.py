"""Mixed-language OT baseline (Appendix E: "mixing languages in one OT hurts").

The trainer hands this objective ONE batch per micro-step that concatenates every language
pair's micro-batch (``Needs(mixed_languages=True)``, ``batch.pair == "mixed"``). The loss is a
single Sinkhorn divergence between the uniform cloud of all source words of the batch (all
languages together) and the uniform cloud of all English words::

    L = S_ε( 1/|X| Σ_{x ∈ X} δ_x ,  1/|Y| Σ_{y ∈ Y} δ_y )

with X the real source words (or subwords) of every sentence and Y the English ones. It is one
batch-level quantity, not a per-sentence mean. Options mirror ``sinkhorn`` (geomloss
conventions: cost ‖x−y‖^p/p, ε = blur^p).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

import xalign
from xalign import AlignmentBatch, Needs, Objective


@dataclass
class MixedOTConfig:
    """Options, as for ``sinkhorn`` (scope is always the whole mixed batch).

    - ``level``: points are ``word`` vectors or ``subword`` states.
    - ``pooling``: subwords -> word vector (last, first, mean); null: the run's model.pooling.
    - ``p``: cost exponent: ‖x−y‖ (1) or ½‖x−y‖² (2).
    - ``blur``: geomloss's length scale, ε = blur^p.
    - ``scaling``: ε-annealing factor per Sinkhorn iteration, in (0, 1).
    - ``debias``: Sinkhorn divergence (true) or the plain entropic OT cost (false).
    - ``reach``: null: balanced OT; a number: unbalanced, KL marginal penalty ρ = reach^p.
    - ``diameter``: fixed start of the ε-annealing (null: estimated per call).
    """

    level: str = "word"
    pooling: str | None = None
    p: int = 2
    blur: float = 0.05
    scaling: float = 0.5
    debias: bool = True
    reach: float | None = None
    diameter: float | None = None

    def __post_init__(self) -> None:
        if self.level not in ("word", "subword"):
            raise ValueError("mixed_ot: level must be one of ('word', 'subword')")
        if self.pooling not in (None, "last", "first", "mean"):
            raise ValueError("mixed_ot: pooling must be None, last, first or mean")


class MixedOT(Objective):
    """One Sinkhorn divergence between all source-language words and all English words."""

    name = "mixed_ot"
    description = "One Sinkhorn divergence over all languages' words vs English (App. E baseline)"
    Config = MixedOTConfig

    def needs(self) -> Needs:
        return Needs(mixed_languages=True)

    def cloud(self, side: xalign.Side) -> torch.Tensor:
        """All real points of one side, flattened over the batch: ``[N, H]``."""
        if self.config.level == "subword":
            vecs, mask = side.subwords()
        else:
            vecs, mask = side.words_vectors(self.config.pooling)
        return vecs[mask]

    def loss(self, batch: AlignmentBatch) -> torch.Tensor:
        x, y = self.cloud(batch.src), self.cloud(batch.tgt)
        c = self.config
        return xalign.sinkhorn_divergence(
            x,
            x.new_ones(x.shape[0], dtype=torch.bool),
            y,
            y.new_ones(y.shape[0], dtype=torch.bool),
            p=c.p,
            blur=c.blur,
            scaling=c.scaling,
            debias=c.debias,
            reach=c.reach,
            diameter=c.diameter,
        )


@xalign.hookimpl
def register_objectives(register) -> None:
    register(MixedOT)
