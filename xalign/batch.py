"""The batch that objectives see: encoded source/target sentences of one language pair.

One natural path for data: corpus -> per-language-pair batches -> encoder -> :class:`Side`
(subword states plus the word<->subword map) -> objective plugin -> loss. Objectives pick
the representation they need (``side.words(...)`` or ``side.subwords()``); nothing in the
trainer special-cases an objective.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from xalign.links import Links

if TYPE_CHECKING:
    from xalign.links import LinkSpec

POOLINGS = ("last", "first", "mean")
SENTENCE_POOLINGS = ("mean", "cls")


@dataclass
class Side:
    """One side (source or target) of a batch after the encoder.

    ``hidden`` holds the chosen layer's subword states ``[B, T, H]``; ``word_index[b, t]``
    is the word a subword belongs to (``-1`` for special and padding tokens);
    ``attention_mask[b, t]`` is 1 on every token the encoder attended to (special tokens
    included, padding excluded), or None for a side built without one; ``input_ids``
    ``[B, T]`` are the subword ids the encoder read (set by the trainer; None in a hand-built
    Side).
    """

    hidden: Tensor
    word_index: Tensor
    n_words: Tensor
    words: list[list[str]]
    langs: list[str]
    default_pooling: str = "last"
    attention_mask: Tensor | None = None
    input_ids: Tensor | None = None

    @property
    def batch_size(self) -> int:
        return self.hidden.shape[0]

    def subwords(self) -> tuple[Tensor, Tensor]:
        """Subword vectors (float32) and a mask of real (non-special, non-pad) subwords."""
        return self.hidden.float(), self.word_index >= 0

    def words_vectors(self, pooling: str | None = None) -> tuple[Tensor, Tensor]:
        """Word vectors ``[B, W, H]`` (float32) pooled from subwords, and their mask ``[B, W]``.

        ``pooling``: ``last`` subword (the paper's WordOT), ``first`` (Wu & Dredze) or ``mean``;
        defaults to the run's ``model.pooling``.
        """
        pooling = pooling or self.default_pooling
        if pooling not in POOLINGS:
            raise ValueError(f"unknown word pooling {pooling!r}; choose one of {POOLINGS}")
        return pool_words(self.hidden.float(), self.word_index, self.n_words, pooling)

    def sentence_vectors(self, pooling: str = "mean") -> Tensor:
        """One vector per sentence ``[B, H]`` (float32): :func:`pool_sentences`."""
        return pool_sentences(self, pooling)


def pool_words(
    hidden: Tensor, word_index: Tensor, n_words: Tensor, pooling: str
) -> tuple[Tensor, Tensor]:
    """Pool subword states into word vectors with one scatter, no Python loop over words."""
    bsz, seq, dim = hidden.shape
    max_words = int(n_words.max().item()) if bsz else 0
    mask = torch.arange(max_words, device=hidden.device)[None, :] < n_words[:, None]
    real = word_index >= 0
    # Flatten (sentence, word) into one index; padding/special tokens go to a dump slot.
    slot = torch.where(
        real,
        word_index + torch.arange(bsz, device=hidden.device)[:, None] * max_words,
        torch.full_like(word_index, bsz * max_words),
    )
    slot = slot.reshape(-1)
    flat = hidden.reshape(-1, dim)
    count = torch.zeros(bsz * max_words + 1, dtype=hidden.dtype, device=hidden.device)
    count = count.index_add(0, slot, torch.ones_like(slot, dtype=hidden.dtype))[:-1]
    if pooling == "mean":
        out = torch.zeros(bsz * max_words + 1, dim, dtype=hidden.dtype, device=hidden.device)
        vecs = out.index_add(0, slot, flat)[:-1] / count.clamp(min=1)[:, None]
    else:
        pos = torch.arange(bsz * seq, device=hidden.device)
        init = -1 if pooling == "last" else bsz * seq
        pick = torch.full((bsz * max_words + 1,), init, dtype=torch.long, device=hidden.device)
        reduce = "amax" if pooling == "last" else "amin"
        pick = pick.scatter_reduce(0, slot, pos, reduce=reduce, include_self=True)[:-1]
        vecs = flat[pick.clamp(0, bsz * seq - 1)] * (count > 0)[:, None].to(hidden.dtype)
    # A word with no subword (normalised away or truncated) is masked out.
    mask = mask & (count > 0).reshape(bsz, max_words)
    return vecs.reshape(bsz, max_words, dim), mask


def pool_sentences(side: Side, pooling: str = "mean") -> Tensor:
    """Sentence vectors ``[B, H]`` (float32) from one side's token states, differentiable.

    - ``mean``: the mean over every attended token, special tokens included (the
      ``mean_tokens`` pooling of sentence-transformers, used by Reimers & Gurevych 2020 §3 and
      by the e5 models); without ``side.attention_mask``, over the real subwords
      (``word_index >= 0``);
    - ``cls``: the first attended token ([CLS] / ``<s>``; LaBSE, Feng et al. 2022 §3).

    A sentence without tokens gives a zero vector. Cost: one masked sum over ``[B, T, H]``, no
    extra encoder pass. Raises ValueError for another ``pooling``.
    """
    if pooling not in SENTENCE_POOLINGS:
        raise ValueError(f"unknown sentence pooling {pooling!r}; choose one of {SENTENCE_POOLINGS}")
    hidden = side.hidden.float()
    if hidden.shape[1] == 0:  # no tokens at all (an empty batch: 0 sentences)
        return hidden.new_zeros(hidden.shape[0], hidden.shape[2])
    mask = side.attention_mask if side.attention_mask is not None else side.word_index >= 0
    mask = mask.to(device=hidden.device, dtype=torch.bool)
    if pooling == "cls":
        first = mask.int().argmax(dim=1)  # first attended position (0 with right padding)
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        return hidden[rows, first] * mask.any(dim=1, keepdim=True).to(hidden.dtype)
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def gather_rows(x: Tensor) -> tuple[Tensor, slice]:
    """The rows of ``x`` from every data-parallel rank, in rank order, and this rank's slice.

    For a loss whose negatives are the whole GLOBAL batch (in-batch negatives under data
    parallelism): every rank gets all ``N = Σ_r n_r`` rows; the other ranks' rows are
    constants (no gradient), this rank's rows are ``x`` itself, so the gradient of a loss
    computed from the result reaches only this rank's vectors (ranks may hold different
    numbers of rows, 0 included). With one process, or without ``torch.distributed``, it
    returns ``(x, slice(0, len(x)))``. A collective: every rank must call it, as the trainer
    guarantees for objectives declaring ``Needs(gathers=True)``. Reduce the per-row losses
    with :func:`global_mean`.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x, slice(0, x.shape[0])
    world, rank = dist.get_world_size(), dist.get_rank()
    size = torch.tensor([x.shape[0]], dtype=torch.long, device=x.device)
    sizes_t = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes_t, size)
    sizes = [int(t.item()) for t in sizes_t]
    padded = x.detach().new_zeros((max(sizes), *x.shape[1:]))
    padded[: x.shape[0]] = x.detach()
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded.contiguous())
    rows = [p[:n] for p, n in zip(parts, sizes, strict=True)]
    rows[rank] = x
    start = sum(sizes[:rank])
    return torch.cat(rows), slice(start, start + x.shape[0])


def global_mean(per_row: Tensor, mine: slice) -> Tensor:
    """What ``loss()`` returns for a loss that is the mean of ``per_row`` over the global batch.

    ``per_row`` ``[N]`` is computed on every rank from :func:`gather_rows`'s rows (only this
    rank's rows, ``mine``, carry gradient). The value is the mean over this rank's rows, so
    the trainer's weighting of rank ``r``'s loss by its share ``n_r / N`` of the global batch
    sums to the global mean; the gradient is ``N / n_r`` times that of the global mean, so the
    weighted sum over ranks is exactly the gradient of the global mean (each rank supplies
    the part that flows through its own rows). With one rank it is ``per_row.mean()``; a rank
    without rows returns a zero.
    """
    n_all, n_mine = per_row.shape[0], mine.stop - mine.start
    if n_mine == n_all:
        return per_row.mean()
    if n_mine == 0:
        return per_row.sum() * 0.0
    full = per_row.mean()
    return per_row[mine].mean().detach() + (n_all / n_mine) * (full - full.detach())


def linked_positions(
    links: list[Links], src_mask: Tensor, tgt_mask: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """(sentence, source word, English word) index tensors of the links between real words.

    ``links[b]`` are sentence ``b``'s 0-based word links as computed on the corpus; this is
    the one place where links to words the batch does not hold are dropped: words cut by
    subword truncation (beyond the mask's ``W``) or without a subword (masked). Masks are
    ``[B, W]`` booleans from ``Side.words_vectors``. Index word vectors with ``x[b, i]`` /
    ``y[b, j]``; the rows come in (sentence, source, target) order.
    """
    rows = [
        (b, i, j)
        for b, lk in enumerate(links)
        for i, j in sorted(lk)
        if 0 <= i < src_mask.shape[1] and 0 <= j < tgt_mask.shape[1]
    ]
    idx = torch.tensor(rows, dtype=torch.long, device=src_mask.device).reshape(-1, 3)
    b, i, j = idx.unbind(1)
    keep = src_mask[b, i] & tgt_mask[b, j]
    return b[keep], i[keep], j[keep]


# -- Needs.mlm: the masked-LM head (tlm) ------------------------------------------------------
@dataclass(frozen=True)
class MaskedLM:
    """The encoder's masked-LM head, given to objectives that declare ``Needs(mlm=True)``
    (``batch.mlm``; None otherwise).

    ``logits(input_ids, attention_mask, select=None)`` runs the trained encoder (all layers)
    and its MLM head on any subword ids ``[B, T]`` and returns float32 logits ``[B, T, V]``,
    or ``[N, V]`` for the N positions where the bool ``select`` ``[B, T]`` is True (cheaper:
    the head's V-wide output is computed there only). Each call is one more forward (and
    backward) of the encoder. ``special_ids``: the tokenizer's special tokens (never masked);
    ``vocab_size``: the tokenizer's, the range of random replacement ids.
    """

    logits: Callable[..., Tensor]
    mask_token_id: int
    pad_token_id: int
    vocab_size: int
    max_length: int
    special_ids: frozenset[int] = frozenset()


@dataclass
class AlignmentBatch:
    """What an objective's ``loss`` receives for one language pair (or one mixed batch).

    ``tgt_frozen`` is the frozen initial model's view of the target (English) side, present
    when an objective or the drift regulariser needs it. ``teachers`` maps each teacher model
    an objective declared (``Needs(teacher=NAME)``) to its view of the target side (frozen,
    no gradient). ``links`` maps each
    :class:`~xalign.links.LinkSpec` an objective declared to per-sentence word links
    (0-based, source index first, filtered by the spec; links to words that subword
    truncation cut off are still listed: :func:`linked_positions` drops them). ``mlm`` is the
    encoder's masked-LM head when an objective declares ``Needs(mlm=True)``.
    """

    pair: str
    src: Side
    tgt: Side
    tgt_frozen: Side | None = None
    links: dict[LinkSpec, list[Links]] = field(default_factory=dict)
    teachers: dict[str, Side] = field(default_factory=dict)
    mlm: MaskedLM | None = None  # Needs.mlm

    @property
    def mixed(self) -> bool:
        return len(set(self.src.langs)) > 1

    def links_for(self, spec: LinkSpec) -> list[Links]:
        """Word links for ``spec`` (declared in the objective's ``needs``)."""
        try:
            return self.links[spec]
        except KeyError:
            raise KeyError(
                f"no word links computed for {spec}; declare it in the objective's needs()"
            ) from None

    def teacher_for(self, model: str) -> Side:
        """The teacher ``model``'s target side (declared as ``Needs(teacher=model)``)."""
        try:
            return self.teachers[model]
        except KeyError:
            raise KeyError(
                f"no vectors of teacher {model!r} computed; declare Needs(teacher={model!r}) "
                f"in the objective's needs()"
            ) from None
