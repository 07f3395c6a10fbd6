"""Token-classification features for word-level tagging, XTREME style.

Labelling (XTREME ``third_party/utils_tag.py``): each word is cut into its subword pieces on its
own; the FIRST piece carries the word's tag, the other pieces and the special tokens carry
:data:`xalign.IGNORE_INDEX` (-100), so they add nothing to the loss and are not
predicted. A word with no piece (an empty or all-invisible FORM) or with more pieces than fit
in a window becomes the unknown token.

SentencePiece tokenizers (XLM-R, multilingual-e5) often cut a word into the bare word-boundary
marker ``▁`` and the word itself (Chinese ``的`` -> ``▁`` ``的``: 86% of the words of Chinese GSD
with multilingual-e5); XTREME then tags the ``▁``. ``label_subword="first_content"`` puts the
tag on the next piece instead (the ``▁`` stays in the input, unlabelled); with WordPiece
tokenizers (no such marker) both choices are the same.

Long sentences (XTREME ``utils_preprocess.py``, ``udpos_tokenize``): a sentence whose pieces do
not fit in ``max_length`` (minus the special tokens) is cut, greedily and between words, into
consecutive windows that fit; every window is a separate feature and every word is predicted
exactly once, so no test word is lost to truncation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from xalign import IGNORE_INDEX
from xalign_udpos.conllu import TaggedSentence

LabelSubword = Literal["first", "first_content"]
WORD_MARKER = "\u2581"  # "▁", SentencePiece's word-boundary marker


@dataclass(frozen=True)
class Window:
    """Which words of which sentence a feature holds: ``words[start:start + n_words]``."""

    sentence: int
    start: int
    n_words: int


def special_tokens(tokenizer: Any) -> tuple[list[int], list[int]]:
    """Token ids a tokenizer puts before and after one sequence.

    ``([CLS], [SEP])`` for BERT, ``(<s>, </s>)`` for XLM-R; found by encoding a probe text with
    and without special tokens. Raises ``ValueError`` when the bare encoding is not a
    contiguous part of the full one.
    """
    bare = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    for i in range(len(full) - len(bare) + 1):
        if full[i : i + len(bare)] == bare:
            return list(full[:i]), list(full[i + len(bare) :])
    raise ValueError(f"cannot locate the special tokens of {type(tokenizer).__name__}")


def word_pieces(tokenizer: Any, words: Sequence[str], max_pieces: int) -> list[list[int]]:
    """Subword ids of each word, tokenised on its own (one batched call over distinct words).

    Words with no piece or more than ``max_pieces`` pieces become ``[unk]`` (XTREME).
    """
    unique = list(dict.fromkeys(words))
    if not unique:
        return []
    unk = tokenizer.unk_token_id if tokenizer.unk_token_id is not None else tokenizer.pad_token_id
    encoded = tokenizer(unique, add_special_tokens=False)["input_ids"]
    table = {
        w: list(ids) if 0 < len(ids) <= max_pieces else [unk]
        for w, ids in zip(unique, encoded, strict=True)
    }
    return [table[w] for w in words]


def marker_id(tokenizer: Any) -> int | None:
    """Id of the bare ``▁`` piece, or None when the vocabulary has none (WordPiece)."""
    return tokenizer.get_vocab().get(WORD_MARKER)


def encode_tagged(
    tokenizer: Any,
    sentences: Sequence[TaggedSentence],
    label_ids: Mapping[str, int],
    *,
    max_length: int,
    keep: set[str] | None = None,
    label_subword: LabelSubword = "first",
) -> tuple[list[dict[str, Any]], list[Window]]:
    """Features (``input_ids``, ``labels`` aligned to them, ``token_type_ids`` if kept) and the
    :class:`Window` of each, in sentence order then word order.

    ``labels[k]`` is the tag id of the word whose labelled piece sits at position ``k``, else
    ``IGNORE_INDEX``: its first piece, or with ``label_subword="first_content"`` the piece after
    a leading bare ``▁``. Raises ``ValueError`` when ``max_length`` leaves no room for a word
    or ``label_subword`` is unknown.
    """
    if label_subword not in ("first", "first_content"):
        raise ValueError(f"label_subword must be 'first' or 'first_content', got {label_subword!r}")
    bare = marker_id(tokenizer) if label_subword == "first_content" else None
    keep = keep or {"input_ids"}
    prefix, suffix = special_tokens(tokenizer)
    budget = max_length - len(prefix) - len(suffix)
    if budget < 1:
        raise ValueError(
            f"max_length {max_length} leaves no room for words after the "
            f"{len(prefix) + len(suffix)} special tokens"
        )
    pieces = iter(word_pieces(tokenizer, [w for s in sentences for w in s.words], budget))
    features: list[dict[str, Any]] = []
    windows: list[Window] = []

    def emit(index: int, start: int, ids: list[int], labels: list[int]) -> None:
        n_words = sum(1 for label in labels if label != IGNORE_INDEX)
        feature = {
            "input_ids": prefix + ids + suffix,
            "labels": [IGNORE_INDEX] * len(prefix) + labels + [IGNORE_INDEX] * len(suffix),
        }
        if "token_type_ids" in keep:
            feature["token_type_ids"] = [0] * len(feature["input_ids"])
        features.append(feature)
        windows.append(Window(index, start, n_words))

    for index, sentence in enumerate(sentences):
        ids: list[int] = []
        labels: list[int] = []
        start = 0
        for position, tag in enumerate(sentence.tags):
            word = next(pieces)
            if ids and len(ids) + len(word) > budget:  # next window starts at this word
                emit(index, start, ids, labels)
                ids, labels, start = [], [], position
            skip = 1 if bare is not None and len(word) > 1 and word[0] == bare else 0
            ids += word
            labels += [IGNORE_INDEX] * skip + [label_ids[tag]]
            labels += [IGNORE_INDEX] * (len(word) - 1 - skip)
        emit(index, start, ids, labels)
    return features, windows


def first_piece_predictions(outputs: Any, batch: Mapping[str, Any]) -> list[list[int]]:
    """Per feature: the argmax tag id at each labelled position (one per word), in order.

    For :func:`xalign.predict`; ``batch["labels"]`` ([B, T], padded with
    ``IGNORE_INDEX``) marks the positions, ``outputs.logits`` is [B, T, n_tags].
    """
    predicted = outputs.logits.float().argmax(-1)
    marked = batch["labels"].to(predicted.device) != IGNORE_INDEX
    return [predicted[i][marked[i]].tolist() for i in range(predicted.shape[0])]


def gold_labels(feature: Mapping[str, Any]) -> list[int]:
    """The tag ids of a feature's words (its labels other than ``IGNORE_INDEX``)."""
    return [label for label in feature["labels"] if label != IGNORE_INDEX]
