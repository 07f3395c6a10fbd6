"""awesome-align's consistency objective CO (Dou & Neubig 2021, "Word Alignment by Fine-tuning
Embeddings on Parallel Corpora", EACL, §2.2 "Consistency Optimization"; reference code: PyPI
``awesome-align`` 0.1.7, ``modeling.BertGuideHead``, ``train_co``).

With the directional alignment probabilities ``P→`` (each source subword over the English
subwords) and ``P←`` (each English subword over the source subwords) of the run's layer, as in
``so`` (:func:`xalign_so.directional_probabilities`; special and padding tokens excluded), the
two directions should agree::

    L_co = −1/B · Σ_b trace(P→ P←ᵀ) / min(n_x, n_y) = −1/B · Σ_b Σ_ij P→_ij P←_ij / min(n_x, n_y)

with n_x, n_y the numbers of real source and English subwords. It is in [−1, 0]; it needs no
links. awesome-align trains it together with SO (``-o so -o co``).
"""

from __future__ import annotations

from torch import Tensor
from xalign_so import directional_probabilities

import xalign
from xalign import AlignmentBatch, NoOptions, Objective


def co_loss(fwd: Tensor, bwd: Tensor, valid: Tensor) -> Tensor:
    """``L_co`` of the module docstring from ``P→``, ``P←`` and the real-pair mask (all
    ``[B, S, T]``)."""
    n_src = valid.any(dim=2).sum(1)
    n_tgt = valid.any(dim=1).sum(1)
    trace = (fwd * bwd).sum((1, 2))
    return -(trace / n_src.minimum(n_tgt).clamp(min=1)).mean()


class Consistency(Objective):
    """awesome-align's consistency between the two alignment directions."""

    name = "co"
    description = "agreement of the two softmax alignment directions, awesome-align (2021)"
    Config = NoOptions

    def loss(self, batch: AlignmentBatch) -> Tensor:
        fwd, bwd, valid = directional_probabilities(batch.src, batch.tgt)
        return co_loss(fwd, bwd, valid)


@xalign.hookimpl
def register_objectives(register) -> None:
    register(Consistency)
