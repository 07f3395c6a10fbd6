"""Per sentence pair: words, the load-time filters, and the statistics of what was dropped.

One raw sentence pair becomes words (:func:`words_and_reason`: NFC + Moses unescaping
(``data.unescape``), Moses words) and is kept or dropped by the length filter
(:func:`filter_reason`); the kept pairs are then dropped when a side has no subword at all in
the run's tokenizer (:func:`check_subwords`). :class:`PairStats` records why every dropped pair
was dropped, with the first ``file:line`` per reason, the lines Moses unescaping changed, and
the words cut by ``model.max_length`` (``data_stats.json`` of a run).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import numpy as np

from xalign.data.corpus import CorpusError, PairSpec, spec_files
from xalign.data.text import normalize_text, tokenize_words

#: Why a sentence pair is dropped at load time, in the order the checks run (first match wins).
REASONS = ("empty", "too_short", "too_long", "ratio", "no_subwords")
#: How many ``file:line`` locations the statistics keep per reason.
FIRST_EXAMPLES = 5
#: Words (or sentences) per call of the subword tokenizer during the load-time check.
TOKENIZER_CHUNK = 4096
#: Sentences whose per-word subword counts are checked against the encoder's own call.
CHECK_SENTENCES = 64


class DataWarning(UserWarning):
    """Training data that is used, but not all of it (e.g. words cut by ``model.max_length``)."""


@dataclass
class Tally:
    """A count plus the first few locations (``path:line``) it was seen at."""

    count: int = 0
    first: list[str] = field(default_factory=list)

    def add(self, where: str, n: int = 1) -> None:
        self.count += n
        if len(self.first) < FIRST_EXAMPLES:
            self.first.append(where)

    def as_dict(self) -> dict[str, Any]:
        return {"count": self.count, "first": list(self.first)}


@dataclass
class PairStats:
    """What loading one language pair read, dropped and changed.

    ``filtered[reason]``: pairs dropped per reason (:data:`REASONS`). ``unescaped_lines[file]``:
    lines of ``file`` whose text Moses XML unescaping changed (two files: each side under its
    own file; one file: a line once, whichever side). ``truncated_words``: words of kept
    sentences that lose subwords to ``model.max_length`` (count) and the sentences (one side
    of one pair) they are in. ``no_subword_words``: words of kept sentences that the
    tokenizer maps to no subword (they keep their position but get no vector).
    """

    read: int = 0
    filtered: dict[str, Tally] = field(default_factory=lambda: {r: Tally() for r in REASONS})
    unescaped_lines: dict[str, int] = field(default_factory=dict)
    truncated_words: int = 0
    truncated_sentences: Tally = field(default_factory=Tally)
    no_subword_words: Tally = field(default_factory=Tally)

    @property
    def n_filtered(self) -> int:
        return sum(t.count for t in self.filtered.values())


def filter_reason(
    src: Sequence[str],
    tgt: Sequence[str],
    *,
    min_words: int,
    max_words: int,
    max_ratio: float | None,
) -> str | None:
    """Why the length filter drops a pair (``empty``/``too_short``/``too_long``/``ratio``), or
    None to keep it: both sides need [min_words, max_words] words and a word-count ratio
    longer/shorter <= ``max_ratio`` (no bound when None)."""
    ls, lt = len(src), len(tgt)
    if ls == 0 or lt == 0:
        return "empty"
    if ls < min_words or lt < min_words:
        return "too_short"
    if ls > max_words or lt > max_words:
        return "too_long"
    if max_ratio is not None and max(ls, lt) / min(ls, lt) > max_ratio:
        return "ratio"
    return None


def keep_pair(
    src: list[str], tgt: list[str], *, min_words: int, max_words: int, max_ratio: float | None
) -> bool:
    """Length filter: both sides within [min_words, max_words], length ratio bounded."""
    return (
        filter_reason(src, tgt, min_words=min_words, max_words=max_words, max_ratio=max_ratio)
        is None
    )


def subword_counts(tokenizer: Any, sentences: Sequence[Sequence[str]]) -> list[np.ndarray]:
    """Subwords per word of each word-tokenised sentence, as the encoder will see them.

    The encoder (:meth:`xalign.encoders.Encoder.tokenize_words`) calls the fast tokenizer with
    ``is_split_into_words=True``, which encodes every word on its own (normaliser,
    pre-tokeniser and model run per word), so a word's subword count does not depend on its
    sentence. Each distinct word is therefore tokenised once, in batches (no Python loop over
    subwords), and the counts are looked up per sentence. The first sentences are checked
    against the encoder's own call; should a tokenizer ever disagree, every sentence is
    counted with that call instead. Returns one int array ``[n_words]`` per sentence; 0 marks
    a word the tokenizer maps to nothing (control or, for BERT-normalising tokenizers,
    zero-width/format characters).
    """
    flat, starts = subword_counts_flat(tokenizer, sentences)
    return np.split(flat, starts[1:-1]) if sentences else []


def subword_counts_flat(
    tokenizer: Any, sentences: Sequence[Sequence[str]]
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`subword_counts` as one flat int array ``[total words]`` and the sentence offsets
    ``[n_sentences + 1]`` (sentence ``i`` is ``flat[starts[i]:starts[i + 1]]``)."""
    import pandas as pd

    lengths_of = np.fromiter((len(s) for s in sentences), dtype=np.int64, count=len(sentences))
    starts = np.zeros(len(sentences) + 1, dtype=np.int64)
    np.cumsum(lengths_of, out=starts[1:])
    words = np.empty(int(starts[-1]), dtype=object)
    words[:] = [w for s in sentences for w in s]
    codes, distinct = pd.factorize(words)  # each distinct word once, in first-seen order
    return _counts_of_distinct(tokenizer, codes, distinct, starts, lambda n: sentences[:n])


def subword_counts_arrow(tokenizer: Any, sentences: Any) -> tuple[np.ndarray, np.ndarray]:
    """:func:`subword_counts_flat` of an Arrow ``list<string>`` column (``pyarrow`` Array or
    ChunkedArray, no nulls): the same counts, without turning every word into a Python
    string first (the prepare step's words come from ``datasets.map`` as Arrow)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    column = sentences.combine_chunks() if isinstance(sentences, pa.ChunkedArray) else sentences
    lengths_of = pc.list_value_length(column).to_numpy(zero_copy_only=False).astype(np.int64)
    starts = np.zeros(len(column) + 1, dtype=np.int64)
    np.cumsum(lengths_of, out=starts[1:])
    encoded = pc.dictionary_encode(pc.list_flatten(column))  # distinct in first-seen order
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    distinct = np.asarray(encoded.dictionary.to_pylist(), dtype=object)
    return _counts_of_distinct(
        tokenizer, codes, distinct, starts, lambda n: column.slice(0, n).to_pylist()
    )


def _counts_of_distinct(
    tokenizer: Any,
    codes: np.ndarray,
    distinct: np.ndarray,
    starts: np.ndarray,
    first: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """Tokenise each distinct word once and spread the counts over ``codes`` (word ->
    distinct index); ``first(n)`` gives the first ``n`` sentences (``None``: all) as word
    lists, for the check against the encoder's own call."""
    lengths = np.zeros(len(distinct), dtype=np.int64)
    for start in range(0, len(distinct), TOKENIZER_CHUNK):
        ids = tokenizer(
            list(distinct[start : start + TOKENIZER_CHUNK]),
            add_special_tokens=False,
            truncation=False,
            verbose=False,
        )["input_ids"]
        lengths[start : start + len(ids)] = [len(x) for x in ids]
    flat = lengths[codes] if len(codes) else np.zeros(0, dtype=np.int64)
    sample = list(first(CHECK_SENTENCES))
    exact = _counts_in_context(tokenizer, sample)
    got = np.split(flat[: starts[len(sample)]], starts[1 : len(sample)]) if sample else []
    if any(not np.array_equal(a, b) for a, b in zip(exact, got, strict=True)):
        exact = _counts_in_context(tokenizer, first(None))
        flat = np.concatenate(exact) if exact else np.zeros(0, dtype=np.int64)
    return flat, starts


def _counts_in_context(tokenizer: Any, sentences: Sequence[Sequence[str]]) -> list[np.ndarray]:
    """Subwords per word from the encoder's own call (whole sentences, split into words)."""
    out: list[np.ndarray] = []
    for start in range(0, len(sentences), TOKENIZER_CHUNK):
        chunk = [list(s) for s in sentences[start : start + TOKENIZER_CHUNK]]
        enc = tokenizer(
            chunk,
            is_split_into_words=True,
            add_special_tokens=False,
            truncation=False,
            verbose=False,
        )
        for b, words in enumerate(chunk):
            ids = [w for w in enc.word_ids(b) if w is not None]
            out.append(np.bincount(np.asarray(ids, dtype=np.int64), minlength=len(words)))
    return out


def _file_of(where: str) -> str:
    """``path:line`` / ``ref:row i`` -> ``path`` / ``ref``."""
    return where.rsplit(":", 1)[0] if ":" in where else where


def words_and_reason(
    src: str,
    tgt: str,
    src_lang: str,
    tgt_lang: str,
    *,
    unescape: bool,
    min_words: int,
    max_words: int,
    max_ratio: float | None,
) -> tuple[list[str], list[str], int, str | None]:
    """One raw sentence pair -> (source words, target words, which sides Moses unescaping
    changed (:data:`SRC_CHANGED` | :data:`TGT_CHANGED`, 0 for none), the length filter's
    reason to drop it or None): NFC + unescape (:func:`normalize_text`), Moses words
    (:func:`tokenize_words`), :func:`filter_reason`."""
    src_text, src_changed = normalize_text(src, unescape=unescape)
    tgt_text, tgt_changed = normalize_text(tgt, unescape=unescape)
    sw, tw = tokenize_words(src_text, src_lang), tokenize_words(tgt_text, tgt_lang)
    reason = filter_reason(sw, tw, min_words=min_words, max_words=max_words, max_ratio=max_ratio)
    return sw, tw, SRC_CHANGED * src_changed | TGT_CHANGED * tgt_changed, reason


#: flags of :func:`words_and_reason`: which side's text unescaping changed
SRC_CHANGED, TGT_CHANGED = 1, 2


def target_file(spec: PairSpec, src: str, tgt: str) -> str | None:
    """The target side's own file when ``spec`` reads two line-aligned files, else None (the
    target text is on the source's line: one file, or no file)."""
    files = spec_files(spec, src, tgt)
    return str(files[1]) if files is not None and len(files) == 2 else None


def tally_line(
    stats: PairStats, where: str, changed: int, reason: str | None, tgt_file: str | None = None
) -> bool:
    """Count one read line into ``stats`` (unescaped lines per file: the source side under
    ``where``'s file, the target side under ``tgt_file`` when it has its own file; dropped
    pairs per reason); True when the length filter keeps it. Lines must be counted in corpus
    order."""
    src_file = _file_of(where)
    files = {src_file} if changed & SRC_CHANGED else set()
    if changed & TGT_CHANGED:
        files.add(tgt_file or src_file)
    for key in sorted(files):
        stats.unescaped_lines[key] = stats.unescaped_lines.get(key, 0) + 1
    if reason is None:
        return True
    stats.filtered[reason].add(where)
    return False


def check_kept(
    name: str,
    spec: PairSpec,
    examples: Sequence[Any],
    stats: PairStats,
    *,
    min_words: int,
    max_words: int,
    max_ratio: float | None,
) -> None:
    """CorpusError when no sentence pair of ``name`` survived the filters (the reasons with
    their counts and first ``file:line``s, and the filter settings)."""
    if len(examples):
        return
    dropped = "; ".join(
        f"{r}: {t.count} (first at {', '.join(t.first)})"
        for r, t in stats.filtered.items()
        if t.count
    )
    raise CorpusError(
        f"{name}: every one of the {stats.read} sentence pairs read from {spec!r} was "
        f"filtered out ({dropped}; data.min_words={min_words}, "
        f"data.max_words={max_words}, data.max_ratio={max_ratio})"
    )


def warn_truncated(
    name: str, stats: PairStats, max_length: int | None, *, stacklevel: int = 2
) -> None:
    """The one :class:`DataWarning` per pair whose kept words lose subwords to
    ``model.max_length`` (nothing when none do)."""
    if not stats.truncated_words:
        return
    first = stats.truncated_sentences.first[0]
    warnings.warn(
        f"{name}: {stats.truncated_words} words in {stats.truncated_sentences.count} "
        f"sentences lie past model.max_length={max_length} subwords and are cut from "
        f"training, wholly or in part (first at {first}); raise model.max_length or "
        f"lower data.max_words",
        DataWarning,
        stacklevel=stacklevel + 1,
    )


class _Candidate(Protocol):
    src_words: list[str]
    tgt_words: list[str]
    where: str


_C = TypeVar("_C", bound=_Candidate)


def check_subwords(
    candidates: list[_C], tokenizer: Any, budget: int | None, stats: PairStats
) -> list[_C]:
    """Drop pairs with a side of no subword (``no_subwords``); count truncated and
    subword-less words of the kept ones into ``stats``. Vectorised over all words."""
    if tokenizer is None or not candidates:
        return candidates
    kept = check_subword_counts(
        subword_counts_flat(tokenizer, [e.src_words for e in candidates]),
        subword_counts_flat(tokenizer, [e.tgt_words for e in candidates]),
        [e.where for e in candidates],
        budget,
        stats,
    )
    return [candidates[i] for i in kept]


def check_subword_counts(
    src: tuple[np.ndarray, np.ndarray],
    tgt: tuple[np.ndarray, np.ndarray],
    wheres: Sequence[str],
    budget: int | None,
    stats: PairStats,
) -> list[int]:
    """:func:`check_subwords` from per-word subword counts (``(flat, starts)`` of each side,
    :func:`subword_counts_flat` / :func:`subword_counts_arrow`) and each pair's ``file:line``;
    returns the indices of the pairs kept, in order."""
    (src_sub, src_empty, src_cut), (tgt_sub, tgt_empty, tgt_cut) = (
        _per_sentence(*side, budget) for side in (src, tgt)
    )
    keep = (src_sub > 0) & (tgt_sub > 0)
    empty = src_empty + tgt_empty
    cut = (src_cut > 0) | (tgt_cut > 0)
    kept = np.flatnonzero(keep).tolist()
    for i in np.flatnonzero(~keep | (empty > 0) | cut).tolist():  # only flagged ones
        if not keep[i]:
            stats.filtered["no_subwords"].add(wheres[i])
            continue
        if empty[i]:
            stats.no_subword_words.add(wheres[i], int(empty[i]))
        for side_cut in (src_cut[i], tgt_cut[i]):  # a sentence is one side of a pair
            if side_cut:
                stats.truncated_words += int(side_cut)
                stats.truncated_sentences.add(wheres[i])
    return kept


def _per_sentence(
    flat: np.ndarray, starts: np.ndarray, budget: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per sentence: subwords, words with no subword, and words with a subword past the first
    ``budget`` subwords of the sentence (0 without a budget), from flat per-word counts."""

    def running(values: np.ndarray) -> np.ndarray:  # [0, v0, v0 + v1, ...]
        out = np.zeros(len(values) + 1, dtype=np.int64)
        np.cumsum(values, out=out[1:])
        return out

    def per(total: np.ndarray) -> np.ndarray:  # sum within each sentence, from running sums
        return total[starts[1:]] - total[starts[:-1]]

    before = running(flat)  # subwords before each word (and all of them at the end)
    subwords = per(before)
    empty = per(running(flat == 0))
    if budget is None:
        return subwords, empty, np.zeros_like(subwords)
    # end of each word within its sentence: subwords up to it minus those before its sentence
    ends = before[1:] - np.repeat(before[starts[:-1]], np.diff(starts))
    return subwords, empty, per(running((ends > budget) & (flat > 0)))


# ------------------------------------------------------------------------------ stats <-> JSON
def _tally_from(d: Mapping[str, Any]) -> Tally:
    return Tally(int(d["count"]), list(d["first"]))


def stats_to_json(stats: PairStats) -> dict[str, Any]:
    """A :class:`PairStats` as plain JSON (inverse: :func:`stats_from_json`)."""
    return {
        "read": stats.read,
        "filtered": {r: t.as_dict() for r, t in stats.filtered.items()},
        "unescaped_lines": dict(stats.unescaped_lines),
        "truncated_words": stats.truncated_words,
        "truncated_sentences": stats.truncated_sentences.as_dict(),
        "no_subword_words": stats.no_subword_words.as_dict(),
    }


def stats_from_json(d: Mapping[str, Any]) -> PairStats:
    return PairStats(
        read=int(d["read"]),
        filtered={r: _tally_from(t) for r, t in d["filtered"].items()},
        unescaped_lines={k: int(v) for k, v in d["unescaped_lines"].items()},
        truncated_words=int(d["truncated_words"]),
        truncated_sentences=_tally_from(d["truncated_sentences"]),
        no_subword_words=_tally_from(d["no_subword_words"]),
    )
