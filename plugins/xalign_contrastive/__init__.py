"""Contrastive word alignment (Wu & Dredze 2020, "Do Explicit Alignments Robustly Improve
Multilingual Encoders?").

All N eflomal-linked word pairs of the batch (grow-diag-final-and, one-to-one, identical strings
dropped; first-subword vectors) are projected by a shared head g and compared with cosine
similarity over a temperature τ: s(a, b) = cos(g(a), g(b)) / τ. With u_k = source and v_k =
English word of pair k:

- ``weak``: ½ · [CE over S = (s(u_k, v_l))_{kl} row-wise + CE over Sᵀ row-wise], each CE the mean
  over the N pairs of −log softmax(S_k)[k] (the partner is the positive, the other N−1 words of
  the other language the negatives);
- ``strong``: one 2N×2N matrix over z = [u; v] with the diagonal masked; each of the 2N items'
  positive is its partner and its negatives are the other 2N−2 items of both languages
  (NT-Xent); the mean over the 2N items.

Normalisation: a mean over the batch's linked pairs (not per sentence), as in the paper; a batch
with fewer than 2 linked pairs gives 0 (still connected to the graph).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import xalign
from xalign import AlignmentBatch, LinkSpec, Needs, Objective

POOLINGS = (None, "last", "first", "mean")


@dataclass
class ContrastiveConfig:
    """Options (help text of ``xalign plugins contrastive``).

    - ``variant``: ``weak`` (InfoNCE across the two languages) or ``strong`` (NT-Xent over
      both languages' words, 2N-2 negatives).
    - ``projection``: head g: ``id`` (none), ``linear`` (H→proj_dim, no bias) or ``nn``
      (H→proj_hidden→ReLU→proj_dim, no biases).
    - ``proj_dim``: output size of the ``linear``/``nn`` head.
    - ``proj_hidden``: inner size of the ``nn`` head (null: H, as in the authors' code).
    - ``temperature``: τ of s(a, b) = cos(g(a), g(b)) / τ (> 0).
    - ``pooling``: subwords -> word vector (last, first, mean); null: the run's model.pooling.
    - ``symmetrization``: the eflomal links used: ``intersection`` or ``grow-diag-final-and``.
    - ``one_to_one``: keep only links whose two words have no other link.
    - ``drop_identical``: drop links between identical strings (numbers, names).
    """

    variant: str = "weak"
    projection: str = "id"
    proj_dim: int = 128
    proj_hidden: int | None = None
    temperature: float = 0.1
    pooling: str | None = "first"
    symmetrization: str = "grow-diag-final-and"
    one_to_one: bool = True
    drop_identical: bool = True

    def __post_init__(self) -> None:
        choices = {
            "variant": ("weak", "strong"),
            "projection": ("id", "linear", "nn"),
            "pooling": POOLINGS,
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"contrastive: {key} must be one of {allowed}")
        if self.temperature <= 0:
            raise ValueError("contrastive: temperature must be > 0")
        LinkSpec(self.symmetrization)  # validates the symmetrization name


def build_projection(kind: str, hidden: int, out: int, inner: int | None = None) -> nn.Module:
    """The projection head g: identity, linear or Linear-ReLU-Linear, all without bias."""
    if kind == "id":
        return nn.Identity()
    if kind == "linear":
        return nn.Linear(hidden, out, bias=False)
    inner = inner or hidden
    return nn.Sequential(
        nn.Linear(hidden, inner, bias=False), nn.ReLU(), nn.Linear(inner, out, bias=False)
    )


def weak_loss(u: Tensor, v: Tensor, temperature: float) -> Tensor:
    """Symmetric InfoNCE over the N×N cosine matrix (src→tgt and tgt→src, averaged)."""
    sim = F.normalize(u, dim=-1) @ F.normalize(v, dim=-1).T / temperature
    goal = torch.arange(u.shape[0], device=u.device)
    return (F.cross_entropy(sim, goal) + F.cross_entropy(sim.T, goal)) / 2


def strong_loss(u: Tensor, v: Tensor, temperature: float) -> Tensor:
    """NT-Xent over [u; v]: partner positive, all other 2N−2 items negatives."""
    n = u.shape[0]
    z = F.normalize(torch.cat([u, v]), dim=-1)
    sim = z @ z.T / temperature
    eye = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(eye, float("-inf"))
    idx = torch.arange(n, device=z.device)
    return F.cross_entropy(sim, torch.cat([idx + n, idx]))


class ContrastiveAlignment(Objective):
    """Contrastive alignment of linked word pairs (weak or strong negatives)."""

    name = "contrastive"
    description = "InfoNCE over eflomal-linked word pairs, weak/strong (Wu & Dredze 2020)"
    Config = ContrastiveConfig

    def __init__(self, config: ContrastiveConfig | None = None, *, hidden_size: int) -> None:
        super().__init__(config, hidden_size=hidden_size)
        c = self.config
        self.head = build_projection(c.projection, hidden_size, c.proj_dim, c.proj_hidden)

    def link_spec(self) -> LinkSpec:
        c = self.config
        return LinkSpec(
            c.symmetrization, one_to_one=c.one_to_one, drop_identical=c.drop_identical, max_words=64
        )

    def needs(self) -> Needs:
        return Needs(links=(self.link_spec(),))

    def loss(self, batch: AlignmentBatch) -> Tensor:
        x, xm = batch.src.words_vectors(self.config.pooling)
        y, ym = batch.tgt.words_vectors(self.config.pooling)
        b, i, j = xalign.linked_positions(batch.links_for(self.link_spec()), xm, ym)
        if b.numel() < 2:
            return x.sum() * 0.0 + y.sum() * 0.0
        u, v = self.head(x[b, i]), self.head(y[b, j])
        fn = weak_loss if self.config.variant == "weak" else strong_loss
        return fn(u, v, self.config.temperature)


@xalign.hookimpl
def register_objectives(register) -> None:
    register(ContrastiveAlignment)
