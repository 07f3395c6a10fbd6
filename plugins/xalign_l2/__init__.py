"""Linked-word L2 alignment (Cao, Kitaev & Klein 2020, "Multilingual Alignment of Contextual
Word Representations").

For each sentence pair, eflomal links (intersection, one-to-one by default) pair source word i
with English word j, and the loss pulls the fine-tuned source vector f(i) onto the frozen initial
model's English vector f0(j)::

    L = 1/B · Σ_b Σ_{(i, j) ∈ links_b} ‖f(src_b,i) − f0(tgt_b,j)‖²

i.e. a sum over the links of each sentence, averaged over the B sentences of the batch (the same
convention as the trainer's drift regulariser; sentences without links count as 0). The paper's
English regulariser λ·Σ‖c(t) − c0(t)‖² is added by the trainer for every objective, not here.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

import xalign
from xalign import AlignmentBatch, LinkSpec, Needs, Objective

POOLINGS = (None, "last", "first", "mean")


@dataclass
class L2Config:
    """Options (help text of ``xalign plugins l2``).

    - ``symmetrization``: the eflomal links used: ``intersection`` or ``grow-diag-final-and``.
    - ``one_to_one``: keep only links whose two words have no other link.
    - ``drop_identical``: drop links between identical strings (numbers, names).
    - ``target``: ``frozen`` (the paper: the initial model's English vectors) or ``tuned``
      (the model being trained).
    - ``pooling``: subwords -> word vector (last, first, mean); null: the run's model.pooling.
    """

    symmetrization: str = "intersection"
    one_to_one: bool = True
    drop_identical: bool = False
    target: str = "frozen"
    pooling: str | None = None

    def __post_init__(self) -> None:
        if self.symmetrization not in ("intersection", "grow-diag-final-and"):
            raise ValueError("l2: symmetrization must be intersection or grow-diag-final-and")
        if self.target not in ("frozen", "tuned"):
            raise ValueError("l2: target must be frozen or tuned")
        if self.pooling not in POOLINGS:
            raise ValueError(f"l2: pooling must be one of {POOLINGS}")


class L2Alignment(Objective):
    """Squared distance between linked source words and (frozen) English words."""

    name = "l2"
    description = "L2 between eflomal-linked words and frozen English vectors (Cao et al. 2020)"
    Config = L2Config

    def link_spec(self) -> LinkSpec:
        c = self.config
        return LinkSpec(
            c.symmetrization, one_to_one=c.one_to_one, drop_identical=c.drop_identical, max_words=64
        )

    def needs(self) -> Needs:
        return Needs(links=(self.link_spec(),), frozen_target=self.config.target == "frozen")

    def target_side(self, batch: AlignmentBatch) -> xalign.Side:
        if self.config.target == "tuned":
            return batch.tgt
        if batch.tgt_frozen is None:
            raise ValueError("l2 with target=frozen needs batch.tgt_frozen")
        return batch.tgt_frozen

    def target_vectors(self, batch: AlignmentBatch) -> tuple[Tensor, Tensor]:
        """English word vectors and mask; frozen ones are constants (detached)."""
        y, mask = self.target_side(batch).words_vectors(self.config.pooling)
        return (y.detach() if self.config.target == "frozen" else y), mask

    def loss(self, batch: AlignmentBatch) -> Tensor:
        x, xm = batch.src.words_vectors(self.config.pooling)
        y, ym = self.target_vectors(batch)
        b, i, j = xalign.linked_positions(batch.links_for(self.link_spec()), xm, ym)
        if b.numel() == 0:
            return x.sum() * 0.0
        sq = ((x[b, i] - y[b, j]) ** 2).sum(-1)
        per_sentence = x.new_zeros(x.shape[0]).index_add(0, b, sq)
        return per_sentence.mean()


@xalign.hookimpl
def register_objectives(register) -> None:
    register(L2Alignment)
