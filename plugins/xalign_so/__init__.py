"""awesome-align's self-training objective SO (Dou & Neubig 2021, "Word Alignment by Fine-tuning
Embeddings on Parallel Corpora", EACL, §2.2 "Self-training Objective"; reference code: PyPI
``awesome-align`` 0.1.7, ``modeling.BertGuideHead``).

On the run's layer (``model.layer``; awesome-align uses 8 of 12), per sentence pair, with
``h_x`` the source and ``h_y`` the English subword states (special and padding tokens
excluded), the similarity is the dot product ``S = h_x h_yᵀ`` and the two directional
alignment probabilities are softmaxes over each direction (§2.1)::

    P→ = softmax_rows(S)        (each source subword over the English subwords)
    P← = softmax_columns(S)     (each English subword over the source subwords)

Guide links (awesome-align's softmax-threshold extraction, §2.1), computed without gradient
on the same states: subwords i, j are linked when ``P→_ij > c`` and ``P←_ij > c``
(``threshold`` c = 1e-3); two words are linked when any of their subwords are, and the guide
``G_ij`` is 1 for every subword pair of linked words. With ``guide: links`` the guide words
come from the run's word links instead (``data.links`` files, eflomal, or ``data.links: self``):
awesome-align's supervised variant (``--train_gold_file`` in its code). The loss (§2.2,
normalised as the reference code does: by the numbers of real subwords n_x, n_y)::

    L_so = −1/B · Σ_b [ Σ_ij G_ij P→_ij / n_x + Σ_ij G_ij P←_ij / n_y ]

It is ≤ 0 (−2 when every subword's probability mass lies on guide links). A sentence with no
guide link contributes 0. The guide is recomputed on every batch from the states the loss
reads (dropout included when ``train.dropout``; awesome-align extracts in eval mode).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

import xalign
from xalign import AlignmentBatch, LinkSpec, Needs, Objective, Side

GUIDES = ("self", "links")


def directional_probabilities(src: Side, tgt: Side) -> tuple[Tensor, Tensor, Tensor]:
    """awesome-align's two alignment probability matrices of a batch (§2.1).

    Returns ``P→`` ``[B, S, T]`` (softmax of the dot-product scores over the English subwords of
    each source subword), ``P←`` ``[B, S, T]`` (softmax over the source subwords of each English
    subword) and the mask ``[B, S, T]`` of pairs of real subwords; both matrices are 0 outside
    it. Float32, differentiable.
    """
    x, xm = src.subwords()
    y, ym = tgt.subwords()
    scores = x @ y.transpose(1, 2)
    low = torch.finfo(scores.dtype).min  # finite: a sentence without subwords gives no NaN
    fwd = F.softmax(scores.masked_fill(~ym[:, None, :], low), dim=-1)
    bwd = F.softmax(scores.masked_fill(~xm[:, :, None], low), dim=-2)
    valid = xm[:, :, None] & ym[:, None, :]
    zero = scores.new_zeros(())
    return torch.where(valid, fwd, zero), torch.where(valid, bwd, zero), valid


def word_onehot(side: Side, n_words: int) -> Tensor:
    """``[B, T, W]`` float: 1 where subword t belongs to word w (specials and padding: 0)."""
    idx = side.word_index.clamp(min=0)
    onehot = F.one_hot(idx, num_classes=max(n_words, 1)).float()
    return onehot * (side.word_index >= 0)[..., None].float()


def threshold_word_links(
    fwd: Tensor, bwd: Tensor, src: Side, tgt: Side, threshold: float
) -> Tensor:
    """awesome-align's softmax-threshold extraction (§2.1) lifted to words: ``[B, Ws, Wt]``
    bool, True when some subword pair of the two words has both probabilities > ``threshold``."""
    keep = ((fwd > threshold) & (bwd > threshold)).float()
    ms = word_onehot(src, int(src.n_words.max().item()) if src.batch_size else 0)
    mt = word_onehot(tgt, int(tgt.n_words.max().item()) if tgt.batch_size else 0)
    return (ms.transpose(1, 2) @ keep @ mt) > 0


def subword_guide(words: Tensor, src: Side, tgt: Side) -> Tensor:
    """The subword guide ``[B, S, T]`` float: 1 for every subword pair of linked words
    (``words`` ``[B, Ws, Wt]`` bool), as awesome-align's ``get_aligned_word`` builds it."""
    ms = word_onehot(src, words.shape[1])
    mt = word_onehot(tgt, words.shape[2])
    return ((ms @ words.float() @ mt.transpose(1, 2)) > 0).float()


def links_to_words(links: list[xalign.Links], src: Side, tgt: Side) -> Tensor:
    """Per-sentence word links as a ``[B, Ws, Wt]`` bool tensor (links to words the batch
    does not hold are dropped, as :func:`xalign.linked_positions` does)."""
    _, xm = src.words_vectors("first")
    _, ym = tgt.words_vectors("first")
    out = torch.zeros(src.batch_size, xm.shape[1], ym.shape[1], dtype=torch.bool)
    out = out.to(xm.device)
    b, i, j = xalign.linked_positions(links, xm, ym)
    out[b, i, j] = True
    return out


def so_loss(fwd: Tensor, bwd: Tensor, guide: Tensor, valid: Tensor) -> Tensor:
    """``L_so`` of the module docstring from the two probability matrices and the guide (all
    ``[B, S, T]``; ``valid`` the real-subword pair mask, from which n_x and n_y are read)."""
    n_src = valid.any(dim=2).sum(1).clamp(min=1)
    n_tgt = valid.any(dim=1).sum(1).clamp(min=1)
    per = (fwd * guide).sum((1, 2)) / n_src + (bwd * guide).sum((1, 2)) / n_tgt
    return -per.mean()


@dataclass
class SoConfig:
    """Options (help text of ``xalign plugins so``; the loss: module docstring).

    - ``threshold``: softmax threshold c of the guide extraction (Dou & Neubig 2021, §2.1):
      subwords i, j are linked when both P→_ij and P←_ij exceed it; in [0, 1), awesome-align's
      1e-3. Used with ``guide: self`` only.
    - ``guide``: ``self`` (links the model extracts on the batch, awesome-align's
      self-training) or ``links`` (the run's word links: ``data.links`` files, eflomal, or
      ``data.links: self``; awesome-align's supervised variant).
    - ``symmetrization``: with ``guide: links``, how forward and reverse eflomal links are
      combined (``intersection``, ``union``, ``grow-diag``, ``grow-diag-final``,
      ``grow-diag-final-and``; :class:`xalign.LinkSpec`); ``data.links`` files are used as given.
    - ``one_to_one``: with ``guide: links``, keep only links whose two words have no other
      link.
    - ``drop_identical``: with ``guide: links``, drop links between identical strings
      (numbers, names).
    """

    threshold: float = 1e-3
    guide: str = "self"
    symmetrization: str = "intersection"
    one_to_one: bool = False
    drop_identical: bool = False

    def __post_init__(self) -> None:
        if self.guide not in GUIDES:
            raise ValueError(f"so: guide must be one of {GUIDES}, got {self.guide!r}")
        if not 0.0 <= self.threshold < 1.0:
            raise ValueError(f"so: threshold must be in [0, 1), got {self.threshold!r}")
        LinkSpec(self.symmetrization)  # validates the name


class SelfTraining(Objective):
    """awesome-align's self-training objective on softmax-threshold (or given) guide links."""

    name = "so"
    description = "self-training on softmax-threshold links, awesome-align (Dou & Neubig 2021)"
    Config = SoConfig

    def link_spec(self) -> LinkSpec:
        c = self.config
        return LinkSpec(
            c.symmetrization,
            one_to_one=c.one_to_one,
            drop_identical=c.drop_identical,
            max_words=1024,
        )

    def needs(self) -> Needs:
        return Needs(links=(self.link_spec(),) if self.config.guide == "links" else ())

    def guide(self, batch: AlignmentBatch, fwd: Tensor, bwd: Tensor) -> Tensor:
        """The subword guide ``[B, S, T]`` (no gradient)."""
        with torch.no_grad():
            if self.config.guide == "self":
                words = threshold_word_links(fwd, bwd, batch.src, batch.tgt, self.config.threshold)
            else:
                words = links_to_words(batch.links_for(self.link_spec()), batch.src, batch.tgt)
            return subword_guide(words, batch.src, batch.tgt)

    def loss(self, batch: AlignmentBatch) -> Tensor:
        fwd, bwd, valid = directional_probabilities(batch.src, batch.tgt)
        return so_loss(fwd, bwd, self.guide(batch, fwd, bwd), valid)


@xalign.hookimpl
def register_objectives(register) -> None:
    register(SelfTraining)
