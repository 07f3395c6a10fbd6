"""Translation ranking with in-batch negatives and an additive margin (LaBSE: Feng et al., ACL
2022, "Language-agnostic BERT Sentence Embedding", section "Bidirectional Dual Encoder with
Additive Margin Softmax": the loss L and its bidirectional sum L̄ = L + L′; the additive margin
softmax of Yang et al., IJCAI 2019).

Sentence vectors x_i (source) and y_i (English) of the N sentence pairs of the GLOBAL batch are
pooled from the run's layer (``model.layer``; ``pooling`` ``cls`` as LaBSE, or ``mean``) and
compared by cosine similarity φ. With margin m and scale s:

    ℓ→_i = −log( e^{s(φ(x_i, y_i) − m)} / (e^{s(φ(x_i, y_i) − m)} + Σ_{n≠i} e^{s φ(x_i, y_n)}) )
    ℓ←_i = the same with x and y swapped (English i ranks the N source sentences)
    L = 1/N · Σ_i (ℓ→_i + ℓ←_i)             (Eq. 2: L̄ = L + L′; ``bidirectional: false`` = L)

Defaults: m = 0.3 (LaBSE's margin) and s = 1 — LaBSE's Eq. 1 as printed has no scale;
sentence-transformers' ``MultipleNegativesRankingLoss`` (the reference implementation the tests
compare with) uses s = 20 and m = 0, a common choice for fine-tuning (``scale: 20``).

What a batch is: the micro-batch of one language pair (all ranks together), or with
``mixed_languages: true`` the union over the pairs (the negatives of a German sentence then
include the French ones' translations; LaBSE trains on such mixed batches). Under data
parallelism each rank gathers every rank's vectors (``xalign.gather_rows``, without gradient
for the others' rows) and ``xalign.global_mean`` makes the summed gradient exactly that of the
global-batch loss: N ranks reproduce the 1-rank run (a test checks it with 2 gloo ranks).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

import xalign
from xalign import AlignmentBatch, Needs, Objective

POOLINGS = ("cls", "mean")


@dataclass
class TranslationRankingConfig:
    """Options (help text of ``xalign plugins translation_ranking``; the loss: module
    docstring).

    - ``pooling``: sentence vector: ``cls`` (first token; LaBSE) or ``mean`` (all attended
      tokens; e5, sentence-transformers). For the embedded e5 use ``mean`` with ``scale:
      20``: e5 was trained on mean-pooled vectors, and at s = 1 the softmax over cosines in
      [−1, 1] is nearly flat (docs/results.md compares it that way).
    - ``margin``: additive margin m subtracted from the positive pair's cosine (>= 0; LaBSE:
      0.3).
    - ``scale``: s multiplying every cosine before the softmax (> 0; LaBSE's equation: 1;
      sentence-transformers: 20).
    - ``bidirectional``: both ranking directions, L + L′ (LaBSE, Eq. 2), or source → English
      only.
    - ``mixed_languages``: one batch mixing every language pair (negatives across
      languages); cannot be combined with per-pair objectives in one run.
    """

    pooling: str = "cls"
    margin: float = 0.3
    scale: float = 1.0
    bidirectional: bool = True
    mixed_languages: bool = False

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(
                f"translation_ranking: pooling must be one of {POOLINGS}, got {self.pooling!r}"
            )
        if not self.scale > 0:
            raise ValueError(f"translation_ranking: scale must be > 0, got {self.scale}")
        if self.margin < 0:
            raise ValueError(f"translation_ranking: margin must be >= 0, got {self.margin}")


def ranking_losses(
    x: Tensor, y: Tensor, *, margin: float, scale: float, bidirectional: bool = True
) -> Tensor:
    """Per-pair losses ``[N]``: ℓ→_i (+ ℓ←_i) of the module docstring for ``x``, ``y`` ``[N, H]``.

    Row i's positive is column i; every other row of the batch is a negative.
    """
    sim = F.normalize(x, dim=-1) @ F.normalize(y, dim=-1).T
    n = sim.shape[0]
    logits = scale * (sim - margin * torch.eye(n, dtype=sim.dtype, device=sim.device))
    goal = torch.arange(n, device=sim.device)
    out = F.cross_entropy(logits, goal, reduction="none")
    if bidirectional:
        out = out + F.cross_entropy(logits.T, goal, reduction="none")
    return out


class TranslationRanking(Objective):
    """Bidirectional in-batch translation ranking with additive margin softmax (LaBSE)."""

    name = "translation_ranking"
    description = "in-batch translation ranking, additive margin softmax (LaBSE, Feng et al. 2022)"
    Config = TranslationRankingConfig

    def needs(self) -> Needs:
        return Needs(mixed_languages=self.config.mixed_languages, gathers=True)

    def loss(self, batch: AlignmentBatch) -> Tensor:
        c = self.config
        x, mine = xalign.gather_rows(batch.src.sentence_vectors(c.pooling))
        y, _ = xalign.gather_rows(batch.tgt.sentence_vectors(c.pooling))
        if x.shape[0] == 0:
            return x.sum() * 0.0
        per_pair = ranking_losses(
            x, y, margin=c.margin, scale=c.scale, bidirectional=c.bidirectional
        )
        return xalign.global_mean(per_pair, mine)


@xalign.hookimpl
def register_objectives(register) -> None:
    register(TranslationRanking)
