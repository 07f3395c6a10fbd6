"""Helpers for testing objectives and tasks without a real model or corpus (public API).

Build what an objective's ``loss`` receives from words and given or random vectors
(:func:`make_side`, :func:`make_batch`), the training data ``prepare`` receives
(:func:`make_corpus`), a tiny random BERT that :func:`xalign.load_encoder` loads in a second
(:func:`tiny_encoder`), and check that a loss is finite, differentiable and lower for aligned
than for unrelated vectors (:func:`check_loss`). xalign's own objective tests use them, and so
does ``docs/plugin-template``.

Layout of a built :class:`~xalign.Side`: per sentence ``[CLS] w0 subwords ... [SEP] pad``,
``word_index`` −1 on ``[CLS]``, ``[SEP]`` and padding, whose hidden states hold ``pad_value``
(a decoy: a loss that reads them gives visibly wrong values).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from xalign.batch import AlignmentBatch, Side
from xalign.links import Links, LinkSpec

if TYPE_CHECKING:
    from xalign.objective import Objective

__all__ = [
    "check_loss",
    "make_batch",
    "make_corpus",
    "make_side",
    "random_words",
    "registered_plugin",
    "tiny_encoder",
]

WordVectors = Sequence[Sequence[Any]]  # [sentence][word] -> [H] vector or [k, H] subwords


def _as_subwords(vec: Any) -> Tensor:
    """A word's subword states ``[k, H]`` from a ``[H]`` vector (one subword) or ``[k, H]``."""
    t = torch.as_tensor(vec, dtype=torch.float32)
    return t[None, :] if t.dim() == 1 else t


def random_words(n_sentences: int, n_words: int | Sequence[int], lang: str = "de") -> list:
    """``n_sentences`` sentences of ``n_words`` words each (an int, or one count per sentence),
    named ``de0``, ``de1``, ... (handy when only the shapes matter)."""
    counts = [n_words] * n_sentences if isinstance(n_words, int) else list(n_words)
    return [[f"{lang}{i}" for i in range(n)] for n in counts]


def make_side(
    words: Sequence[Sequence[str]] | None = None,
    vectors: WordVectors | None = None,
    *,
    lang: str = "de",
    langs: Sequence[str] | None = None,
    hidden_size: int = 8,
    subwords: int = 1,
    pad_value: float = 7.0,
    pooling: str = "last",
    seed: int = 0,
    requires_grad: bool = True,
) -> Side:
    """A :class:`~xalign.Side` (one side of a batch) from words and/or vectors.

    - ``vectors[b][w]``: word ``w`` of sentence ``b`` as a ``[H]`` vector (one subword) or a
      ``[k, H]`` tensor (its ``k`` subword states, e.g. to test ``first``/``last`` pooling).
      Without ``vectors``, each word gets ``subwords`` random subword states (standard normal
      from ``torch.Generator().manual_seed(seed)``, ``hidden_size`` wide).
    - ``words``: the words (default ``w0``, ``w1``, ... per sentence); with ``vectors`` the
      counts must agree.
    - ``lang`` for every sentence, or ``langs`` one code per sentence (a mixed batch).
    - ``pooling``: the run's ``model.pooling`` (``Side.words_vectors()``'s default).

    ``hidden`` is ``[B, T, H]`` float32 (``requires_grad`` by default, so a test can check a
    loss's gradient), ``T`` = 2 + the most subwords in a sentence. Raises ``ValueError`` when
    words and vectors disagree or a sentence list is empty.
    """
    if vectors is None:
        if words is None:
            raise ValueError("make_side: give words, vectors or both")
        g = torch.Generator().manual_seed(seed)
        vectors = [[torch.randn(subwords, hidden_size, generator=g) for _ in s] for s in words]
    subs = [[_as_subwords(v) for v in sentence] for sentence in vectors]
    if not subs or not any(subs):
        raise ValueError("make_side: no sentence has a word")
    if words is None:
        words = [[f"w{i}" for i in range(len(s))] for s in subs]
    if [len(w) for w in words] != [len(s) for s in subs]:
        raise ValueError(
            f"make_side: words per sentence {[len(w) for w in words]} but vectors "
            f"{[len(s) for s in subs]}"
        )
    dim = next(w for s in subs for w in s).shape[1]
    length = max(sum(w.shape[0] for w in s) for s in subs) + 2
    hidden = torch.full((len(subs), length, dim), float(pad_value))
    word_index = torch.full((len(subs), length), -1, dtype=torch.long)
    for b, sentence in enumerate(subs):
        t = 1  # position 0 is [CLS]
        for w, states in enumerate(sentence):
            hidden[b, t : t + len(states)] = states
            word_index[b, t : t + len(states)] = w
            t += len(states)
    codes = list(langs) if langs is not None else [lang] * len(subs)
    if len(codes) != len(subs):
        raise ValueError(f"make_side: {len(codes)} langs for {len(subs)} sentences")
    return Side(
        hidden.requires_grad_(requires_grad),
        word_index,
        torch.tensor([len(s) for s in subs]),
        [list(w) for w in words],
        codes,
        default_pooling=pooling,
    )


def make_batch(
    src: Side,
    tgt: Side,
    links: list[Links] | dict[LinkSpec, list[Links]] | None = None,
    *,
    objective: Objective | None = None,
    tgt_frozen: Side | None = None,
    pair: str | None = None,
) -> AlignmentBatch:
    """An :class:`~xalign.AlignmentBatch` of two sides.

    ``links``: per sentence the 0-based ``(source word, target word)`` links, given for every
    :class:`~xalign.LinkSpec` the ``objective`` declares in ``needs()`` (or a ready
    ``{spec: links}`` dict); one set per sentence, else ``ValueError``. ``tgt_frozen``
    defaults to ``tgt`` (detached) when the objective
    needs a frozen target. ``pair`` defaults to ``"mixed"`` when the source languages differ,
    else ``"{src}-{tgt}"``.
    """
    needs = objective.needs() if objective is not None else None
    if isinstance(links, dict):
        table = dict(links)
    elif links is not None:
        specs = list(needs.links) if needs is not None else []
        if not specs:
            raise ValueError(
                "make_batch: links given as a list need objective= (an objective whose "
                "needs() declares links), or give a {LinkSpec: links} dict"
            )
        table = {spec: links for spec in specs}
    else:
        table = {}
    n_sentences = src.hidden.shape[0]
    for spec, sets in table.items():
        if len(sets) != n_sentences:
            raise ValueError(
                f"make_batch: {len(sets)} link sets for {n_sentences} sentences ({spec}); "
                f"give one set of (source word, target word) per sentence"
            )
    if tgt_frozen is None and needs is not None and needs.frozen_target:
        tgt_frozen = Side(
            tgt.hidden.detach(),
            tgt.word_index,
            tgt.n_words,
            tgt.words,
            tgt.langs,
            tgt.default_pooling,
        )
    if pair is None:
        mixed = len(set(src.langs)) > 1
        pair = "mixed" if mixed else f"{src.langs[0]}-{tgt.langs[0]}"
    return AlignmentBatch(pair, src, tgt, tgt_frozen, table)


@dataclass(frozen=True)
class _Example:
    src_words: list[str]
    tgt_words: list[str]


@dataclass(frozen=True)
class _Pair:
    src: str
    tgt: str
    examples: list[_Example] = field(default_factory=list)


@dataclass(frozen=True)
class _Corpus:
    pairs: list[_Pair]


def make_corpus(
    pairs: dict[str, Iterable[tuple[Sequence[str], Sequence[str]]]], tgt: str = "en"
) -> _Corpus:
    """A :class:`~xalign.PreparedCorpus` (what ``Objective.prepare`` receives):
    ``{"de": [(source words, English words), ...], ...}``, one pair per source language."""
    return _Corpus(
        [
            _Pair(src, tgt, [_Example(list(s), list(t)) for s, t in examples])
            for src, examples in pairs.items()
        ]
    )


def tiny_encoder(
    directory: str | Path, *, seed: int = 0, hidden: int = 32, dropout: float = 0.0
) -> Path:
    """Write a tiny random 2-layer BERT (WordPiece vocabulary of 600 learned from xalign's
    demo corpus, ``hidden`` wide, 128 positions, weights from ``torch.manual_seed(seed)``) to
    ``directory``; returns it.

    :func:`xalign.load_encoder` loads it in well under a second, so tasks and training can be
    tested end to end on CPU; its scores mean nothing.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from tokenizers.trainers import WordPieceTrainer
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    from xalign.data.corpus import DEMO_LANGUAGES, read_parallel

    directory = Path(directory)
    texts = [
        s
        for lang in DEMO_LANGUAGES
        for pair in read_parallel("demo", lang, "en")
        for s in (pair.src, pair.tgt)
    ]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(texts, WordPieceTrainer(vocab_size=600, special_tokens=special))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=128,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    BertModel(config, add_pooling_layer=False).save_pretrained(directory)
    fast.save_pretrained(directory)
    return directory


@contextmanager
def registered_plugin(
    plugin: object, name: str, *, distribution: str = "local", version: str = "0"
) -> Iterator[None]:
    """Within the ``with`` block, the process-wide plugin registry (what ``xalign run``,
    ``eval``, ``compare`` and ``xalign plugins`` use) also holds ``plugin`` (a module or object
    with ``@xalign.hookimpl`` functions) under ``name``, as if ``distribution`` were installed;
    afterwards the registry is rebuilt from the installed entry points. A plugin installed
    already (``pip install -e .``: its entry point loaded the same module) is used as it is.

    Raises:
        PluginError: ``name`` is taken by another installed plugin.
    """
    from xalign.plugins import PluginError, get_registry, reset_registry

    reset_registry()
    registry = get_registry()
    if not registry.pm.is_registered(plugin):
        if registry.pm.get_plugin(name) is not None:
            reset_registry()
            taken = registry.sources.get(name)
            raise PluginError(
                f"registered_plugin: the name {name!r} is taken by the installed "
                f"{taken.label() if taken else repr(name)}; pass another name"
            )
        registry.add(plugin, name=name, distribution=distribution, version=version)
    try:
        yield
    finally:
        reset_registry()


def check_loss(
    objective: Objective,
    *,
    hidden_size: int | None = None,
    n_sentences: int = 4,
    n_words: int = 5,
    seed: int = 0,
    perturb: float = 0.0,
) -> tuple[float, float]:
    """Check an objective's ``loss`` on random batches; returns (aligned, unrelated) losses.

    Builds ``n_sentences`` sentence pairs of ``n_words`` words with one-to-one identity links
    (``(i, i)``): *aligned*, where each English word vector equals its source word's, and
    *unrelated*, where the English vectors are independent random ones (a mixed batch when
    the objective ``needs`` one). Asserts that

    - the loss is a finite scalar tensor on both;
    - it is differentiable: ``backward()`` gives the source states a finite gradient that is
      not zero everywhere on the unrelated batch;
    - it is rank-consistent: aligned < unrelated (an objective to minimise must prefer
      translations that are close).

    The gradient reaches the source states through the objective's own parameters, if any: a
    parameter that starts at zero (a linear map ``W = 0``) gives a zero gradient. Check such an
    objective at a non-zero start (its identity ``init``), or with ``perturb > 0``: the checks
    then run on a copy whose parameters have seeded Gaussian noise of that standard deviation
    added (the objective passed in is unchanged).

    Raises ``AssertionError`` saying which property failed and the values.
    """
    hidden_size = hidden_size or int(getattr(objective, "hidden_size", 0) or 8)
    needs = objective.needs()
    g = torch.Generator().manual_seed(seed)
    if perturb:
        objective = copy.deepcopy(objective)
        with torch.no_grad():
            for p in objective.parameters():
                p.add_(perturb * torch.randn(p.shape, generator=g, dtype=p.dtype))
    src_vecs = torch.randn(n_sentences, n_words, hidden_size, generator=g)
    other = torch.randn(n_sentences, n_words, hidden_size, generator=g)
    langs = (
        [("de", "fr", "ru", "zh")[b % 4] for b in range(n_sentences)]
        if needs.mixed_languages
        else ["de"] * n_sentences
    )
    identity = [{(i, i) for i in range(n_words)} for _ in range(n_sentences)]
    losses = []
    for name, tgt_vecs in (("aligned", src_vecs), ("unrelated", other)):
        src = make_side(vectors=src_vecs.clone(), langs=langs)
        tgt = make_side(vectors=tgt_vecs.clone(), lang="en")
        links = identity if needs.links else None
        batch = make_batch(src, tgt, links, objective=objective)
        loss = objective.loss(batch)
        assert isinstance(loss, Tensor) and loss.dim() == 0, (
            f"{name}: loss must be a scalar tensor, got {type(loss).__name__} "
            f"{tuple(getattr(loss, 'shape', ()))}"
        )
        assert torch.isfinite(loss), f"{name}: loss is not finite: {loss.item()}"
        assert loss.requires_grad, f"{name}: loss is not connected to the source states"
        loss.backward()
        grad = src.hidden.grad
        assert grad is not None, f"{name}: loss is not connected to the source states"
        assert torch.isfinite(grad).all(), f"{name}: non-finite gradient"
        if name == "unrelated":
            assert grad.abs().sum() > 0, (
                f"{name} batch: the gradient of the loss with respect to the source states is "
                f"zero everywhere; an objective whose own parameter starts at zero (a linear "
                f"map W = 0) gives this: check it from a non-zero start (e.g. an identity "
                f"init option) or with check_loss(objective, perturb=0.1)"
            )
        losses.append(float(loss.detach()))
    aligned, unrelated = losses
    assert aligned < unrelated, (
        f"not rank-consistent: aligned pairs give loss {aligned:.6g}, unrelated pairs "
        f"{unrelated:.6g} (an objective to minimise should prefer close translations)"
    )
    return aligned, unrelated
