"""Word links of a sentence pair from an encoder's word vectors: the ONE extraction behind
``xalign align`` and the ``align`` evaluation task (exported from :mod:`xalign`).

Links are 0-based ``(source word, target word)`` positions in the sentences as given (Moses
words), extracted without training from one layer's word vectors (SimAlign-style):

- ``method: argmax`` links i and j when each is the other's most cosine-similar word (mutual
  argmax; Jalili Sabet et al. 2020, "ArgMax"). Ties give several links.
- ``method: ot`` computes the entropic OT plan π between the two uniform word clouds
  (:func:`xalign.transport_plan`: cost ½‖x−y‖², ε = blur², on L2-normalised vectors when
  ``normalize``, so the cost is 1 − cos) and links (i, j) when π_ij ≥ ``threshold`` · max of
  row i and ≥ ``threshold`` · max of column j: ``threshold = 1`` is the mutual argmax of π,
  lower values admit many-to-many links.
- ``method: softmax`` is awesome-align's extraction rule (Dou & Neubig 2021, §2.2, "softmax"
  with threshold c = 1e-3): S = x·yᵀ (dot products of the word vectors, no scaling), P_xy =
  softmax of S over target words (each row), P_yx = softmax over source words (each column);
  (i, j) is linked when both exceed ``softmax_threshold``. awesome-align applies it to
  subwords and links two words when any of their subwords are linked; here it applies to the
  pooled word vectors, like every other method (the test compares the two on the same vectors).
- ``method: itermax`` is SimAlign's IterMax (Jalili Sabet et al., Findings EMNLP 2020, Alg. 1,
  as ``simalign`` 0.4 implements it): the mutual argmax of s = (cos + 1) / 2, then up to
  ``itermax_rounds`` − 1 more rounds that scale s by 0 where both words are aligned, by
  α = 0.9 where one is and by 1 where neither is, and add the mutual argmax among pairs with
  at least one unaligned word (first index on ties, as numpy's argmax). Pairs with a side of
  at most two words stop after the first round (as simalign).

Positions are kept: a word without a vector is never aligned and never shifts its neighbours.
A word has no vector when the tokenizer maps it to zero subwords (control characters such as
U+007F; zero-width/format characters such as U+200B for BERT-normalising tokenizers) or when
the sentence is longer than the model's maximum length and some of the word's subwords are cut
(*truncated*; :class:`TruncationWarning` reports the count where truncation happens).

:func:`cosine_similarity`, :func:`mutual_links` and :func:`ot_plan` are the only definitions of
these three steps in xalign; :func:`align_pair` combines them and :func:`extract_links` returns
the links of ``config.method`` (what the ``align`` task scores and ``xalign align`` prints).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, Protocol

import torch
from torch import Tensor

from xalign.batch import POOLINGS, Side
from xalign.errors import XalignError, XalignWarning
from xalign.links import Links
from xalign.ot import in_full_precision, transport_plan

METHODS = ("argmax", "ot", "softmax", "itermax")
ITERMAX_ALPHA = 0.9  # simalign 0.4, SentenceAligner.iter_max: alpha_ratio


class ExtractError(XalignError, ValueError):
    """Invalid extraction options or input; ``option`` names the bad option (or is None)."""

    def __init__(self, message: str, option: str | None = None) -> None:
        super().__init__(message)
        self.option = option


class TruncationWarning(XalignWarning):
    """Words were cut at the model's maximum length; they are left unaligned."""


@dataclass
class ExtractConfig:
    """How links are extracted; the defaults are the ``align`` task's (and ``xalign align``'s).

    - ``method``: ``argmax`` (mutual argmax of cosine similarity), ``ot`` (OT-plan links),
      ``softmax`` (awesome-align's rule) or ``itermax`` (SimAlign's IterMax).
    - ``layer``: hidden-state index; ``-1`` = last, the layer the objectives tune (SimAlign
      and awesome-align extract from layer 8 of 12-layer models, usually better untuned).
    - ``pooling``: subwords -> word vector, ``mean`` (default: uses every subword), ``first``
      or ``last``.
    - ``max_length``: subwords per sentence (special tokens included), capped at the model's
      limit; words past it are truncated (unaligned, reported).
    - ``blur`` (``ot``): geomloss length scale; ε = blur² = 0.01 against a cost of 1 − cos
      (the objective's sharper 0.05 gives slightly worse links with e5).
    - ``threshold`` (``ot``): relative link threshold in (0, 1]; 1 = mutual argmax of π.
    - ``normalize`` (``ot``): L2-normalise word vectors before OT.
    - ``sinkhorn_iters`` (``ot``): extra Sinkhorn updates after geomloss's ε-annealing (0 =
      none, as in the objective; an exactly converged plan gave slightly worse links with e5:
      bicici AER 0.185 vs 0.175).
    - ``scaling`` (``ot``): geomloss ε-annealing ratio (0.5 = geomloss's and the objective's).
    - ``softmax_threshold`` (``softmax``): probability both directions must exceed, in (0, 1);
      awesome-align's default 1e-3.
    - ``itermax_rounds`` (``itermax``): rounds of mutual argmax, >= 1 (simalign's
      ``max_count``, default 2; 1 = plain mutual argmax with first-index ties).

    Raises :class:`ExtractError` (a ``ValueError``) naming the bad option.
    """

    method: str = "argmax"
    layer: int = -1
    pooling: str = "mean"
    max_length: int = 512
    blur: float = 0.1
    threshold: float = 1.0
    normalize: bool = True
    sinkhorn_iters: int = 0
    scaling: float = 0.5
    softmax_threshold: float = 1e-3
    itermax_rounds: int = 2

    def __post_init__(self) -> None:
        checks = (
            ("method", self.method in METHODS, f"one of {METHODS}"),
            ("pooling", self.pooling in POOLINGS, f"one of {POOLINGS}"),
            ("threshold", 0.0 < self.threshold <= 1.0, "in (0, 1]"),
            ("blur", self.blur > 0, "> 0"),
            ("scaling", 0.0 < self.scaling < 1.0, "in (0, 1)"),
            ("sinkhorn_iters", self.sinkhorn_iters >= 0, ">= 0"),
            ("max_length", self.max_length >= 3, ">= 3 subwords"),
            ("softmax_threshold", 0.0 < self.softmax_threshold < 1.0, "in (0, 1)"),
            ("itermax_rounds", self.itermax_rounds >= 1, ">= 1"),
        )
        for option, ok, wanted in checks:
            if not ok:
                raise ExtractError(
                    f"{option} must be {wanted}, got {getattr(self, option)!r}", option
                )

    def extract_options(self) -> dict[str, Any]:
        """The fields of :class:`ExtractConfig` only (for subclasses with more options)."""
        return {f.name: getattr(self, f.name) for f in fields(ExtractConfig)}


# ------------------------------------------------------------------------ the steps


@in_full_precision
def cosine_similarity(x: Tensor, y: Tensor) -> Tensor:
    """Cosine similarity ``[N, M]`` (float32, also under autocast) between the rows of ``x``
    ``[N, H]`` and ``y``."""
    x = torch.nn.functional.normalize(x.float(), dim=-1)
    y = torch.nn.functional.normalize(y.float(), dim=-1)
    return x @ y.T


def mutual_links(scores: Tensor, threshold: float = 1.0) -> Links:
    """Links (i, j) with ``scores[i, j]`` ≥ threshold × its row max and × its column max.

    ``threshold = 1`` is the mutual argmax (ties give every tied link); ``threshold < 1``
    needs non-negative scores (e.g. a transport plan). ``scores`` is ``[N, M]``.
    """
    if scores.numel() == 0:
        return set()
    row_max = scores.max(dim=1, keepdim=True).values
    col_max = scores.max(dim=0, keepdim=True).values
    keep = (scores >= threshold * row_max) & (scores >= threshold * col_max)
    return {(int(i), int(j)) for i, j in keep.nonzero().tolist()}


@in_full_precision
def ot_plan(x: Tensor, y: Tensor, config: ExtractConfig | None = None) -> Tensor:
    """Entropic OT plan ``[N, M]`` (float32) between the uniform clouds ``x`` ``[N, H]``, ``y``.

    :func:`xalign.transport_plan` with p = 2, ``config.blur``, ``config.scaling`` and
    ``config.sinkhorn_iters`` extra updates; vectors are L2-normalised first when
    ``config.normalize`` (then ½‖x−y‖² = 1 − cos). Rows sum to 1/N when converged.
    """
    c = config or ExtractConfig()
    x, y = x.float(), y.float()
    if c.normalize:
        x = torch.nn.functional.normalize(x, dim=-1)
        y = torch.nn.functional.normalize(y, dim=-1)
    return transport_plan(x, y, p=2, blur=c.blur, scaling=c.scaling, max_iter=c.sinkhorn_iters)


def softmax_links(x: Tensor, y: Tensor, threshold: float = 1e-3) -> Links:
    """awesome-align's softmax rule on word vectors ``x`` ``[N, H]`` and ``y`` ``[M, H]``.

    S = x·yᵀ (float32), links (i, j) with softmax(S)_ij over j > ``threshold`` and softmax(S)_ij
    over i > ``threshold`` (Dou & Neubig 2021, "Word Alignment by Fine-tuning Embeddings on
    Parallel Corpora", §2.2; awesome_align.modeling.BertGuideHead.forward).
    """
    if len(x) == 0 or len(y) == 0:
        return set()
    scores = x.float() @ y.float().T
    keep = (scores.softmax(dim=1) > threshold) & (scores.softmax(dim=0) > threshold)
    return {(int(i), int(j)) for i, j in keep.nonzero().tolist()}


def _first_argmax_links(scores: Tensor) -> Tensor:
    """``[N, M]`` 0/1: (i, j) where j is row i's and i is column j's first argmax."""
    n, m = scores.shape
    fwd = torch.nn.functional.one_hot(scores.argmax(dim=1), m)
    bwd = torch.nn.functional.one_hot(scores.argmax(dim=0), n).T
    return (fwd * bwd).to(scores.dtype)


def itermax_links(x: Tensor, y: Tensor, rounds: int = 2, alpha: float = ITERMAX_ALPHA) -> Links:
    """SimAlign's IterMax on word vectors ``x`` ``[N, H]`` and ``y`` ``[M, H]``.

    Jalili Sabet et al. 2020, "SimAlign", Alg. 1, as ``simalign`` 0.4's
    ``SentenceAligner.iter_max`` (max_count = ``rounds``, alpha_ratio = ``alpha``) computes it
    on s = (cos + 1) / 2: round 1 is the mutual argmax; each further round multiplies s by
    clip(α·[row i unaligned] + α·[column j unaligned], 0, 1), takes the mutual argmax of the
    result among pairs with an unaligned word, and stops when no link is added (or when every
    row or every column is aligned). With min(N, M) <= 2 only round 1 runs.
    """
    if len(x) == 0 or len(y) == 0:
        return set()
    sim = (cosine_similarity(x, y).double() + 1.0) / 2.0  # simalign's get_similarity
    return {(int(i), int(j)) for i, j in itermax_matrix(sim, rounds, alpha).nonzero().tolist()}


def itermax_matrix(sim: Tensor, rounds: int = 2, alpha: float = ITERMAX_ALPHA) -> Tensor:
    """IterMax (see :func:`itermax_links`) on a non-negative similarity ``sim`` ``[N, M]``:
    a 0/1 ``[N, M]`` link matrix of ``sim``'s dtype."""
    inter = _first_argmax_links(sim)
    if min(sim.shape) > 2:
        for _ in range(rounds - 1):
            free_x = 1.0 - inter.sum(dim=1, keepdim=True).clamp(0, 1).expand_as(sim)
            free_y = 1.0 - inter.sum(dim=0, keepdim=True).clamp(0, 1).expand_as(sim)
            if free_x.sum() < 1.0 or free_y.sum() < 1.0:
                break  # simalign zeroes the masks: nothing can be added
            mask = (alpha * free_x + alpha * free_y).clamp(0, 1)
            either_free = 1.0 - (1.0 - free_x) * (1.0 - free_y)
            new = _first_argmax_links(sim * mask) * either_free
            if not new.any():
                break
            inter = inter + new
    return inter


def method_links(x: Tensor, y: Tensor, config: ExtractConfig) -> tuple[Links, Tensor]:
    """Links of ``config.method`` between word vectors ``x`` ``[N, H]`` and ``y`` ``[M, H]``
    (every vector real) and the matrix they come from: cosine similarity (``argmax``,
    ``itermax``), the OT plan (``ot``) or the dot products (``softmax``), ``[N, M]``."""
    if config.method == "ot":
        plan = ot_plan(x, y, config)
        return mutual_links(plan, config.threshold), plan
    if config.method == "softmax":
        return softmax_links(x, y, config.softmax_threshold), x.float() @ y.float().T
    sim = cosine_similarity(x, y)
    if config.method == "itermax":
        return itermax_links(x, y, config.itermax_rounds), sim
    return mutual_links(sim), sim


# ------------------------------------------------------------------------ one sentence pair


@dataclass
class PairLinks:
    """Links of one sentence pair, in sentence positions.

    ``links`` are those of ``config.method``. ``argmax_links``/``ot_links`` and the full-size
    ``similarity``/``plan`` (``[n_src, n_tgt]``, NaN in the rows/columns of words without a
    vector) are filled for the method used, and for both with ``both=True``; ``scores`` is
    the full-size matrix ``config.method`` read its links from (for ``softmax`` the dot
    products, for ``itermax`` the cosine similarity).
    """

    links: Links
    argmax_links: Links | None = None
    ot_links: Links | None = None
    similarity: Tensor | None = None
    plan: Tensor | None = None
    scores: Tensor | None = None


def _full(values: Tensor, src_idx: Tensor, tgt_idx: Tensor, n: int, m: int) -> Tensor:
    """``values`` ``[len(src_idx), len(tgt_idx)]`` placed in an ``[n, m]`` NaN matrix."""
    out = torch.full((n, m), float("nan"), dtype=values.dtype)
    out[src_idx[:, None], tgt_idx[None, :]] = values.cpu()
    return out


def _restore(links: Links, src_idx: Tensor, tgt_idx: Tensor) -> Links:
    """Map links between kept words back to the sentence's word positions."""
    src, tgt = src_idx.tolist(), tgt_idx.tolist()
    return {(src[i], tgt[j]) for i, j in links}


def align_pair(
    x: Tensor,
    x_mask: Tensor,
    y: Tensor,
    y_mask: Tensor,
    config: ExtractConfig,
    *,
    both: bool = False,
) -> PairLinks:
    """Links of one sentence pair from word vectors and masks of the words that have one.

    ``x`` ``[W_src, H]``, ``x_mask`` ``[W_src]`` (bool), likewise ``y``/``y_mask``; position w
    is word w of the sentence (words past W are treated as masked). Only masked-in words take
    part; links come back in sentence positions, so masked words are unaligned and do not
    shift their neighbours. With ``both`` the ``argmax`` and ``ot`` links are computed too.
    """
    n, m = len(x_mask), len(y_mask)
    src_idx, tgt_idx = x_mask.nonzero().flatten().cpu(), y_mask.nonzero().flatten().cpu()
    use_argmax = both or config.method == "argmax"
    use_ot = both or config.method == "ot"
    if len(src_idx) == 0 or len(tgt_idx) == 0:
        nan = torch.full((n, m), float("nan"))
        return PairLinks(
            set(),
            set() if use_argmax else None,
            set() if use_ot else None,
            nan if use_argmax else None,
            nan.clone() if use_ot else None,
            nan.clone(),
        )
    xs, ys = x[src_idx.to(x.device)], y[tgt_idx.to(y.device)]
    out = PairLinks(set())
    if use_argmax:
        sim = cosine_similarity(xs, ys)
        out.argmax_links = _restore(mutual_links(sim), src_idx, tgt_idx)
        out.similarity = _full(sim, src_idx, tgt_idx, n, m)
    if use_ot:
        plan = ot_plan(xs, ys, config)
        out.ot_links = _restore(mutual_links(plan, config.threshold), src_idx, tgt_idx)
        out.plan = _full(plan, src_idx, tgt_idx, n, m)
    if config.method == "argmax":
        out.links, out.scores = out.argmax_links or set(), out.similarity
    elif config.method == "ot":
        out.links, out.scores = out.ot_links or set(), out.plan
    else:
        links, scores = method_links(xs, ys, config)
        out.links, out.scores = (
            _restore(links, src_idx, tgt_idx),
            _full(scores, src_idx, tgt_idx, n, m),
        )
    return out


def extract_links(
    x: Tensor, x_mask: Tensor, y: Tensor, y_mask: Tensor, config: ExtractConfig
) -> Links:
    """The ``config.method`` links of one sentence pair (see :func:`align_pair`)."""
    return align_pair(x, x_mask, y, y_mask, config).links


# ------------------------------------------------------------------------ from an encoder


class WordEncoder(Protocol):
    """What extraction needs from an encoder (:class:`xalign.Encoder` or a test stub).

    An encoder with ``tokenizer`` and ``max_length`` attributes (a fast HF tokenizer) also lets
    :func:`encode_words` tell truncated words from words with no subwords.
    """

    def encode(
        self,
        sentences: list[list[str]],
        langs: list[str],
        *,
        pooling: str = ...,
        device: torch.device | str | None = ...,
    ) -> Side: ...


@dataclass
class WordVectors:
    """Pooled word vectors of a batch of sentences, one position per word of each sentence.

    ``vectors`` ``[B, W, H]`` float32 (W = longest sentence in words, zeros where masked),
    ``mask`` ``[B, W]`` (word has a complete vector), and per sentence the positions of
    ``no_subwords`` words and ``truncated`` words (some subword cut at ``max_length``).
    """

    vectors: Tensor
    mask: Tensor
    no_subwords: list[list[int]]
    truncated: list[list[int]]

    @property
    def n_truncated(self) -> int:
        """Truncated words in the batch."""
        return sum(len(t) for t in self.truncated)


def subword_counts(tokenizer: Any, sentences: Sequence[Sequence[str]]) -> list[list[int]]:
    """Subwords per word of each pre-tokenised sentence, without truncation or specials, as
    lists: :func:`xalign.data.filters.subword_counts` (the one implementation, which the
    training data's length budget uses too)."""
    from xalign.data.filters import subword_counts as counts

    return [c.tolist() for c in counts(tokenizer, sentences)]


def encode_words(
    encoder: WordEncoder,
    sentences: Sequence[Sequence[str]],
    lang: str,
    *,
    pooling: str = "mean",
    device: torch.device | str | None = None,
) -> WordVectors:
    """Encode word-tokenised sentences and pool word vectors with their positions kept.

    A word is masked out when it has no subword at all (``no_subwords``) or when some of its
    subwords were cut by the encoder's ``max_length`` (``truncated``: a partly cut word would
    get a partial vector). Telling the two apart needs ``encoder.tokenizer`` (its untruncated
    subword count per word, :func:`subword_counts`, compared with the encoded one from the
    last encoded word on); without it every masked word counts as ``no_subwords``. Vectors
    come back on the CPU.
    """
    sents = [list(s) for s in sentences]
    side = encoder.encode(sents, [lang] * len(sents), pooling=pooling, device=device)
    return _word_vectors(side, sents, getattr(encoder, "tokenizer", None), pooling)


def encode_words_layers(
    encoder: Any,
    sentences: Sequence[Sequence[str]],
    lang: str,
    layers: Sequence[int],
    *,
    pooling: str = "mean",
    device: torch.device | str | None = None,
) -> dict[int, WordVectors]:
    """:func:`encode_words` at several hidden-state indices from ONE forward pass.

    ``encoder`` is an :class:`xalign.Encoder` (``tokenize_words`` and a transformers
    ``model``); the model runs once with ``output_hidden_states=True`` (index 0 = embeddings,
    L = layer L) and every index of ``layers`` is pooled from it. Raises
    :class:`ExtractError` for an encoder without ``model``/``tokenize_words`` or an index
    out of range.
    """
    if not hasattr(encoder, "tokenize_words") or not hasattr(encoder, "model"):
        raise ExtractError(
            f"a layer sweep needs an xalign.Encoder (tokenize_words and model), got "
            f"{type(encoder).__name__}",
            "layer",
        )
    sents = [list(s) for s in sentences]
    device = device or next(encoder.parameters()).device
    enc = encoder.tokenize_words(sents).to(device)
    hidden = encoder.model(
        input_ids=enc.input_ids, attention_mask=enc.attention_mask, output_hidden_states=True
    ).hidden_states
    bad = [k for k in layers if not -len(hidden) <= k < len(hidden)]
    if bad:
        raise ExtractError(
            f"layer(s) {bad} out of range: the model has hidden states 0..{len(hidden) - 1}",
            "layer",
        )
    langs = [lang] * len(sents)
    tokenizer = getattr(encoder, "tokenizer", None)
    return {
        k: _word_vectors(
            Side(hidden[k], enc.word_index, enc.n_words, sents, langs, pooling),
            sents,
            tokenizer,
            pooling,
        )
        for k in layers
    }


def _word_vectors(side: Side, sents: list[list[str]], tokenizer: Any, pooling: str) -> WordVectors:
    """:class:`WordVectors` of an encoded :class:`Side` (see :func:`encode_words`)."""
    width = max((len(s) for s in sents), default=0)
    vecs, mask = side.words_vectors(pooling)
    vecs, mask = vecs.detach().float().cpu(), mask.cpu()
    batch, have, dim = vecs.shape
    vectors = torch.zeros(batch, width, dim)
    vectors[:, : min(have, width)] = vecs[:, :width]
    full_mask = torch.zeros(batch, width, dtype=torch.bool)
    full_mask[:, : min(have, width)] = mask[:, :width]
    word_index = side.word_index.cpu()
    total = subword_counts(tokenizer, sents) if tokenizer is not None else None
    no_subwords, truncated = [], []
    for b, words in enumerate(sents):
        idx = word_index[b][word_index[b] >= 0]
        kept = torch.bincount(idx, minlength=len(words)).tolist() if len(words) else []
        # truncation cuts the end: only the last word with a subword and the words after it
        # can be cut (so a tokenizer count that differs mid-sentence cannot fake truncation)
        last = max((w for w, k in enumerate(kept) if k), default=0)
        cut: list[int] = []
        if total is not None:
            cut = [w for w in range(last, len(words)) if kept[w] < total[b][w]]
        empty = [w for w in range(len(words)) if kept[w] == 0 and w not in cut]
        full_mask[b, cut] = False
        full_mask[b, empty] = False
        no_subwords.append(empty)
        truncated.append(cut)
    vectors[~full_mask] = 0.0
    return WordVectors(vectors, full_mask, no_subwords, truncated)


@dataclass
class SentenceAlignment:
    """Alignment of one sentence pair (``xalign align``); links are 0-based ``(src, tgt)``."""

    src_words: list[str]
    tgt_words: list[str]
    config: ExtractConfig
    result: PairLinks
    src_no_subwords: list[int]
    tgt_no_subwords: list[int]
    src_truncated: list[int]
    tgt_truncated: list[int]

    @property
    def links(self) -> Links:
        """The ``config.method`` links (what the ``align`` task scores)."""
        return self.result.links

    def pairs(self, links: Links) -> list[tuple[str, str]]:
        """``(source word, target word)`` of each link, in source order."""
        return [(self.src_words[i], self.tgt_words[j]) for i, j in sorted(links)]

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly view: sorted ``[i, j]`` links, plan rounded (null = no vector)."""

        def matrix(t: Tensor | None) -> list[list[float | None]] | None:
            if t is None:
                return None
            return [[None if v != v else round(v, 6) for v in row] for row in t.tolist()]

        def links(lk: Links | None) -> list[list[int]] | None:
            return None if lk is None else [list(x) for x in sorted(lk)]

        return {
            "src_words": self.src_words,
            "tgt_words": self.tgt_words,
            "method": self.config.method,
            "links": links(self.result.links),
            "argmax_links": links(self.result.argmax_links),
            "ot_links": links(self.result.ot_links),
            "unaligned": {
                "src": {"no_subwords": self.src_no_subwords, "truncated": self.src_truncated},
                "tgt": {"no_subwords": self.tgt_no_subwords, "truncated": self.tgt_truncated},
            },
            "truncated_words": {"src": len(self.src_truncated), "tgt": len(self.tgt_truncated)},
            "plan": matrix(self.result.plan),
        }


def align_sentences(
    encoder: WordEncoder,
    src_words: Sequence[str],
    tgt_words: Sequence[str],
    src_lang: str,
    tgt_lang: str,
    config: ExtractConfig,
    *,
    both: bool = True,
    device: torch.device | str | None = None,
) -> SentenceAlignment:
    """Align two word-tokenised sentences with ``encoder`` (loaded at ``config.layer``).

    Raises :class:`ExtractError` when a sentence has no words.
    """
    if not src_words or not tgt_words:
        raise ExtractError("both sentences need at least one word")
    x = encode_words(encoder, [src_words], src_lang, pooling=config.pooling, device=device)
    y = encode_words(encoder, [tgt_words], tgt_lang, pooling=config.pooling, device=device)
    result = align_pair(x.vectors[0], x.mask[0], y.vectors[0], y.mask[0], config, both=both)
    return SentenceAlignment(
        list(src_words),
        list(tgt_words),
        config,
        result,
        x.no_subwords[0],
        y.no_subwords[0],
        x.truncated[0],
        y.truncated[0],
    )


def display_word(word: str) -> str:
    """``word`` with invisible characters (controls, format, separators) shown as ``<U+XXXX>``.

    An empty result (a word of only such characters) is never returned.
    """
    out = "".join(
        f"<U+{ord(ch):04X}>" if unicodedata.category(ch)[0] in "CZ" else ch for ch in word
    )
    return out or "<empty>"
