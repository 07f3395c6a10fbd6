"""The training data path: load-time filters and statistics, the batch plan, rank shards, and
words the subword tokenizer maps to nothing."""

from __future__ import annotations

import math
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from _pipeline import build_parallel_data
from hypothesis import given, settings
from hypothesis import strategies as st

from xalign.data.corpus import CorpusError
from xalign.data.filters import REASONS, DataWarning, filter_reason, subword_counts
from xalign.data.sampler import PairData, PairExample, ParallelData, sample_order
from xalign.errors import ConfigError

#: Characters that the tiny model's BERT normaliser maps to no subword at all: C0/C1 controls
#: and zero-width/format characters.
ZERO_SUBWORD_CHARS = ["\u007f", "\u0085", "\u200b", "\u200d", "\ufeff", "\u2060"]


# ------------------------------------------------------------------------------ batch plan
def make_data(sizes: list[int], batch_size: int, per_language: int | None = None) -> ParallelData:
    """Language pairs ``l0-en, l1-en, ...`` of ``sizes[k]`` distinct one-word examples."""
    pairs = []
    for k, n in enumerate(sizes):
        examples = [
            PairExample([f"s{k}.{i}"], [f"t{k}.{i}"], where=f"c{k}.tsv:{i + 1}") for i in range(n)
        ]
        order = sample_order(n, per_language, seed=7, name=f"l{k}-en")
        pairs.append(PairData(f"l{k}", "en", examples, order))
    return ParallelData(pairs, batch_size)


def epoch_usage(data: ParallelData, pair: PairData, epoch: int, world: int = 1) -> Counter:
    """How often each example is used in one epoch, gathered from every rank's shard."""
    used: Counter = Counter()
    for micro in range(epoch * data.micro_steps, (epoch + 1) * data.micro_steps):
        shards = [data.batch(pair, micro, r, world) for r in range(world)]
        assert sum(map(len, shards)) == data.global_batch_size(micro, pair)
        used.update(id(ex) for shard in shards for ex in shard)
    return used


def planned(pair: PairData) -> Counter:
    """Each example as often as the sampled order holds it (once each without resampling)."""
    return Counter(id(pair.examples[i]) for i in pair.order)


def test_worked_example_from_the_issue():
    """Sizes 6 (first) and 10, batch 4: 3 micro-steps; the first pair is done after 2."""
    data = make_data([6, 10], 4)
    assert data.micro_steps == 3
    small, big = data.pairs
    assert [data.global_batch_size(m, small) for m in range(3)] == [4, 2, 0]
    assert [data.global_batch_size(m, big) for m in range(3)] == [4, 4, 2]
    assert data.batch(small, 2) == [] and data.batch(small, 2, 1, 2) == []
    assert sorted(e.src_words[0] for m in range(3) for e in data.batch(big, m)) == sorted(
        f"s1.{i}" for i in range(10)
    )
    with pytest.raises(ValueError, match="differ per language pair"):
        data.global_batch_size(1)
    assert data.global_batch_size(0) == 4  # equal sizes: no pair needed
    assert data.stats()["l0-en"]["batches_per_epoch"] == 2
    assert data.stats()["l1-en"]["batches_per_epoch"] == 3


@pytest.mark.parametrize("sizes", [[6, 10], [10, 6], [8, 8], [6, 10, 3], [1, 7, 13], [5]])
@pytest.mark.parametrize("batch_size", [1, 3, 4, 20])
def test_every_sentence_once_per_epoch(sizes, batch_size):
    data = make_data(sizes, batch_size)
    assert data.micro_steps == max(math.ceil(n / batch_size) for n in sizes)
    for pair in data.pairs:
        assert planned(pair) == Counter(id(e) for e in pair.examples)  # each exactly once
        for epoch in range(3):  # the epoch repeats: micro-steps wrap around
            assert epoch_usage(data, pair, epoch) == planned(pair)


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 23), min_size=1, max_size=4),
    batch_size=st.integers(1, 9),
    world=st.integers(1, 4),
    per_language=st.none() | st.integers(1, 30),
)
def test_plan_covers_each_epoch_on_any_number_of_ranks(sizes, batch_size, world, per_language):
    """Rank shards are disjoint, their union is the global batch, each epoch uses every
    sampled position of every pair exactly once (also when upsampled/subsampled)."""
    data = make_data(sizes, batch_size, per_language)
    for pair in data.pairs:
        assert len(pair.order) == (per_language or len(pair.examples))
        for epoch in (0, 1):
            assert epoch_usage(data, pair, epoch, world) == planned(pair)
        for micro in range(data.micro_steps):
            whole = data.batch(pair, micro)
            shards = [data.batch(pair, micro, r, world) for r in range(world)]
            ids = [id(e) for s in shards for e in s]
            assert sorted(ids) == sorted(map(id, whole))
            assert len(whole) == data.global_batch_size(micro, pair)


def test_upsampled_pair_repeats_each_example_evenly():
    data = make_data([3, 10], 4, per_language=10)
    small = data.pairs[0]
    seen = [e.src_words[0] for m in range(data.micro_steps) for e in data.batch(small, m)]
    assert sorted(seen.count(f"s0.{i}") for i in range(3)) == [3, 3, 4]


# --------------------------------------------------------------------------------- filters
@pytest.mark.parametrize(
    ("src", "tgt", "reason"),
    [
        ([], ["a"], "empty"),
        (["a"], [], "empty"),
        (["a"], ["a", "b", "c"], "too_short"),
        (["a"] * 4, ["b"] * 2, None),
        (["a"] * 7, ["b"] * 2, "too_long"),
        (["a"] * 6, ["b"] * 2, "ratio"),
        (["a"] * 2, ["b"] * 6, "ratio"),
        (["a"] * 5, ["b"] * 2, None),
    ],
)
def test_filter_reason_first_match(src, tgt, reason):
    assert filter_reason(src, tgt, min_words=2, max_words=6, max_ratio=2.5) == reason
    assert set(REASONS) >= {"empty", "too_short", "too_long", "ratio", "no_subwords"}


@pytest.mark.parametrize("min_words", [0, -1])
def test_min_words_below_one_is_a_config_error(min_words):
    with pytest.raises(ConfigError, match=r"data\.min_words must be >= 1"):
        build_parallel_data(
            "demo", ["de"], "en", pairs_per_language=None, batch_size=4, seed=0, min_words=min_words
        )


def write_tsv(path: Path, rows: list[tuple[str, str]]) -> str:
    path.write_text("".join(f"{s}\t{t}\n" for s, t in rows), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def tiny_tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


ROWS = [
    ("Das Haus ist klein .", "The house is small ."),  # 1 kept
    ("Ja", "Yes"),  # 2 too_short (min 2)
    ("eins zwei drei vier fünf sechs sieben", "one two"),  # 3 too_long (max 6)
    ("a b c d e f", "one two"),  # 4 ratio (> 2.5)
    ("Tom &amp; Anna", "Tom &amp; Anna"),  # 5 kept, unescaped
    ("\u200b \u2060", "Hello there"),  # 6 no_subwords (src)
    ("Guten Morgen", "\ufeff \u0085 \u200d"),  # 7 no_subwords (tgt)
    ("Ein \u200b Hund", "A dog"),  # 8 kept, 1 empty word
    ("a &#124; b", "a | b"),  # 9 kept, unescaped
]


def test_load_time_filters_and_stats(tmp_path, tiny_tokenizer):
    de = write_tsv(tmp_path / "de-en.tsv", ROWS)
    fr = write_tsv(tmp_path / "fr-en.tsv", ROWS[:2] + [("Bonjour mon ami", "Hello my friend")])
    data = build_parallel_data(
        {"de": de, "fr": fr},
        ["de", "fr"],
        "en",
        pairs_per_language=None,
        batch_size=2,
        seed=0,
        min_words=2,
        max_words=6,
        max_ratio=2.5,
        tokenizer=tiny_tokenizer,
        max_length=64,
    )
    stats = data.stats()
    s = stats["de-en"]
    assert (s["read"], s["kept"], s["sampled"], s["filtered_total"]) == (9, 4, 4, 5)
    assert s["batches_per_epoch"] == 2
    assert s["filtered"]["empty"] == {"count": 0, "first": []}
    assert s["filtered"]["too_short"] == {"count": 1, "first": [f"{de}:2"]}
    assert s["filtered"]["too_long"] == {"count": 1, "first": [f"{de}:3"]}
    assert s["filtered"]["ratio"] == {"count": 1, "first": [f"{de}:4"]}
    assert s["filtered"]["no_subwords"] == {"count": 2, "first": [f"{de}:6", f"{de}:7"]}
    assert s["unescaped_lines"] == {de: 2}
    assert s["no_subword_words"] == {"count": 1, "first": [f"{de}:8"]}
    assert s["truncated_words"] == {"words": 0, "sentences": 0, "first": []}
    kept = {e.where: e for e in data.pairs[0].examples}
    assert sorted(kept) == [f"{de}:{i}" for i in (1, 5, 8, 9)]
    assert kept[f"{de}:5"].src_words == ["Tom", "&", "Anna"]
    assert kept[f"{de}:9"].tgt_words == ["a", "|", "b"]
    assert kept[f"{de}:8"].src_words == ["Ein", "\u200b", "Hund"]  # position kept
    f = stats["fr-en"]
    assert (f["read"], f["kept"], f["filtered_total"], f["unescaped_lines"]) == (3, 2, 1, {})


def test_unescape_off_keeps_entities(tmp_path, tiny_tokenizer):
    de = write_tsv(tmp_path / "de-en.tsv", [ROWS[4], ROWS[8]])
    data = build_parallel_data(
        de,
        ["de"],
        "en",
        pairs_per_language=None,
        batch_size=2,
        seed=0,
        tokenizer=tiny_tokenizer,
        max_length=64,
        unescape=False,
    )
    assert data.stats()["de-en"]["unescaped_lines"] == {}
    words = [w for e in data.pairs[0].examples for w in e.src_words]
    assert "amp" in words and "124" in words and "|" not in words  # Moses splits "&amp;"


def test_without_tokenizer_no_subword_check(tmp_path):
    """Data inspection without a model: only the length filters run."""
    de = write_tsv(tmp_path / "de-en.tsv", ROWS)
    data = build_parallel_data(
        de,
        ["de"],
        "en",
        pairs_per_language=None,
        batch_size=2,
        seed=0,
        min_words=2,
        max_words=6,
        max_ratio=2.5,
    )
    assert data.stats()["de-en"]["kept"] == 6
    assert data.stats()["de-en"]["filtered"]["no_subwords"]["count"] == 0


def test_everything_filtered_names_reasons_and_lines(tmp_path, tiny_tokenizer):
    de = write_tsv(tmp_path / "de-en.tsv", [ROWS[1], ROWS[5], ROWS[1]])
    with pytest.raises(CorpusError) as info:
        build_parallel_data(
            de,
            ["de"],
            "en",
            pairs_per_language=None,
            batch_size=2,
            seed=0,
            min_words=2,
            tokenizer=tiny_tokenizer,
            max_length=64,
        )
    msg = str(info.value)
    assert "de-en: every one of the 3 sentence pairs" in msg
    assert f"too_short: 2 (first at {de}:1, {de}:3)" in msg
    assert f"no_subwords: 1 (first at {de}:2)" in msg and "data.min_words=2" in msg


# ------------------------------------------------------------------- subwords and truncation
def test_subword_counts_match_the_encoder(tiny_model):
    """The load-time count is what Encoder.tokenize_words maps each word to (demo corpus plus
    words of no subword), for every sentence."""
    from xalign.data.corpus import read_parallel
    from xalign.data.text import tokenize_words
    from xalign.encoders import load_encoder

    enc = load_encoder(str(tiny_model), max_length=128)
    sentences = [tokenize_words(r[0], "el") for r in read_parallel("demo", "el", "en")[:40]]
    sentences += [["x", *ZERO_SUBWORD_CHARS, "y"], ["Straße", "\u200b"], ["\u0085", "über"]]
    counts = subword_counts(enc.tokenizer, sentences)
    encoded = enc.tokenize_words(sentences)
    for b, words in enumerate(sentences):
        wi = encoded.word_index[b]
        expected = [int((wi == w).sum()) for w in range(len(words))]
        assert counts[b].tolist() == expected, words
    assert counts[-3].tolist() == [1] + [0] * len(ZERO_SUBWORD_CHARS) + [1]


class IsolatedWordsDiffer:
    """A tokenizer whose word-by-word answer disagrees with its in-sentence answer (one extra
    subword per isolated word): the load-time count must follow the in-sentence answer."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer

    def __call__(self, texts, **kwargs):
        enc = self.tokenizer(texts, **kwargs)
        if not kwargs.get("is_split_into_words"):
            return {"input_ids": [[*ids, 0] for ids in enc["input_ids"]]}
        return enc


def test_subword_counts_fall_back_to_the_encoders_call(tiny_tokenizer):
    sentences = [["Das", "Haus"], ["ist", "\u200b", "klein", "."]] * 3
    counts = subword_counts(IsolatedWordsDiffer(tiny_tokenizer), sentences)
    assert [c.tolist() for c in counts[:2]] == [[2, 3], [2, 0, 3, 1]]
    assert [c.tolist() for c in subword_counts(tiny_tokenizer, sentences)] == [
        c.tolist() for c in counts
    ]


WORDS = st.lists(
    st.lists(
        st.sampled_from(["Das", "Haus", "ist", "\u200b", "klein", ".", "Straße", "über", "x"]),
        max_size=6,
    ),
    max_size=12,
)


@settings(max_examples=40, deadline=None)
@given(sentences=WORDS, cut=st.integers(0, 3), chunks=st.integers(1, 3))
def test_arrow_subword_counts_equal_the_list_counts(tiny_tokenizer, sentences, cut, chunks):
    """The prepare step counts subwords on Arrow columns (sliced, in several chunks, empty
    sentences included): the same per-word counts and offsets as on Python lists, and the
    same fallback to the encoder's own call when word-by-word answers disagree."""
    import pyarrow as pa

    from xalign.data.filters import subword_counts_arrow, subword_counts_flat

    column = pa.array([["pad"]] * cut + sentences, pa.list_(pa.string())).slice(cut)
    size = -(-len(sentences) // chunks) or 1
    chunked = pa.chunked_array(
        [column.slice(i, size) for i in range(0, len(sentences), size)] or [column],
        pa.list_(pa.string()),
    )
    for tokenizer in (tiny_tokenizer, IsolatedWordsDiffer(tiny_tokenizer)):
        want_flat, want_starts = subword_counts_flat(tokenizer, sentences)
        for arrow in (column, chunked):
            flat, starts = subword_counts_arrow(tokenizer, arrow)
            assert flat.tolist() == want_flat.tolist() and starts.tolist() == want_starts.tolist()


@pytest.mark.integration
def test_subword_counts_match_the_e5_encoder():
    """The embedded e5 (XLM-R sentencepiece): per-word counts equal the encoder's word_index
    on the demo corpus of every language (and 0 for a word of control characters only)."""
    from xalign.data.corpus import DEMO_LANGUAGES, read_parallel
    from xalign.data.text import tokenize_words
    from xalign.encoders import load_encoder

    enc = load_encoder("packaged:multilingual-e5-small", max_length=512)
    sentences = [["x", "\u007f", "y"]]
    for lang in DEMO_LANGUAGES:
        sentences += [tokenize_words(r.src, lang) for r in read_parallel("demo", lang, "en")[:50]]
    counts = subword_counts(enc.tokenizer, sentences)
    encoded = enc.tokenize_words(sentences)
    for b, words in enumerate(sentences):
        wi = encoded.word_index[b]
        assert counts[b].tolist() == [int((wi == w).sum()) for w in range(len(words))], words
    assert counts[0].tolist() == [1, 0, 1]


def test_truncated_words_are_counted_and_warned(tmp_path, tiny_model):
    """max_length 8 leaves 6 subwords after [CLS]/[SEP]; a word is truncated when any of its
    subwords lies past them. The encoder keeps exactly the subwords before that limit."""
    from xalign.data.text import tokenize_words
    from xalign.encoders import load_encoder

    enc = load_encoder(str(tiny_model), max_length=8)
    rows = [
        ("Das ist gut", "That is good"),
        ("Das Haus ist klein und alt .", "The house is small and old and green ."),
        ("a b c d e f", "a b c d e f g"),
    ]
    de = write_tsv(tmp_path / "de-en.tsv", rows)
    per_side = []
    for s, t in rows:
        for words in (tokenize_words(s, "de"), tokenize_words(t, "en")):
            counts = subword_counts(enc.tokenizer, [words])[0]
            starts = np.cumsum(counts) - counts
            kept = enc.tokenize_words([words]).word_index[0]
            kept_per_word = [int((kept == w).sum()) for w in range(len(words))]
            assert kept_per_word == np.clip(6 - starts, 0, counts).tolist(), words
            per_side.append(int(((starts + counts > 6) & (counts > 0)).sum()))
    # Subwords per word (tiny WordPiece): row 1: [2 2 2], [2 1 3]: 6 each, fits exactly.
    # Row 2: [2 3 2 3 2 2 1] -> ends 2 5 7 ...: "ist" (5 + 2 > 6) and the 4 words after it;
    # [1 3 1 3 1 1 1 3 1] -> ends 1 4 5 8 ...: "small" and the 5 after it. Row 3: 6 and 7
    # one-subword words: only "g" is cut.
    assert per_side == [0, 0, 5, 6, 0, 1]
    with pytest.warns(DataWarning) as record:
        data = build_parallel_data(
            de,
            ["de"],
            "en",
            pairs_per_language=None,
            batch_size=2,
            seed=0,
            tokenizer=enc.tokenizer,
            max_length=8,
        )
    total = sum(per_side)
    trunc = data.stats()["de-en"]["truncated_words"]
    assert trunc == {"words": total, "sentences": 3, "first": [f"{de}:2", f"{de}:2", f"{de}:3"]}
    (warning,) = record
    assert str(warning.message).startswith(
        f"de-en: {total} words in 3 sentences lie past model.max_length=8 subwords"
    )
    assert f"(first at {de}:2)" in str(warning.message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning when nothing is cut
        build_parallel_data(
            de,
            ["de"],
            "en",
            pairs_per_language=None,
            batch_size=2,
            seed=0,
            tokenizer=enc.tokenizer,
            max_length=128,
        )


@pytest.mark.parametrize("blank", ZERO_SUBWORD_CHARS)
@pytest.mark.parametrize("pooling", ["last", "first", "mean"])
def test_word_of_no_subword_keeps_every_position(blank, pooling, tiny_model):
    """A word that maps to no subword is masked in place: the words after it keep their index
    (their vectors are their own subwords'), links through it point at the right words."""
    from xalign.batch import linked_positions
    from xalign.encoders import load_encoder

    enc = load_encoder(str(tiny_model))
    words = ["Das", blank, "Haus", blank, "ist", "klein", blank]
    side = enc.encode([words, ["Das", "Haus"]], ["de", "de"], pooling=pooling)
    vecs, mask = side.words_vectors()
    assert mask[0, :6].tolist() == [True, False, True, False, True, True]
    assert not mask[0, 6:].any() and mask[1].tolist()[:2] == [True, True]
    for w in (0, 2, 4, 5):  # each real word's vector is pooled from its own subwords
        rows = (side.word_index[0] == w).nonzero().flatten()
        assert len(rows) >= 1
        own = side.hidden[0, rows].float()
        ref = {"last": own[-1], "first": own[0], "mean": own.mean(0)}[pooling]
        assert np.allclose(vecs[0, w].detach().numpy(), ref.detach().numpy(), atol=1e-6), w
    assert not vecs[0, 1].any() and not vecs[0, 3].any()
    b, i, j = linked_positions(
        [{(2, 1), (1, 0), (4, 1), (3, 0)}, {(1, 1)}], mask, torch.ones(2, 2, dtype=torch.bool)
    )
    assert sorted(zip(b.tolist(), i.tolist(), j.tolist(), strict=True)) == [
        (0, 2, 1),
        (0, 4, 1),
        (1, 1, 1),
    ]


def test_per_sentence_counts_by_hand():
    """Flat per-word subword counts -> per sentence: subwords, subword-less words, words past
    the budget (an empty sentence in the middle must not shift the others)."""
    from xalign.data.filters import _per_sentence

    flat = np.array([2, 3, 0, 1, 4, 0, 2])
    starts = np.array([0, 4, 4, 7])
    subwords, empty, cut = _per_sentence(flat, starts, 5)
    # sentence 0 ends at 2 5 5 6: only the last word (6 > 5) is cut; the 0-subword word at
    # 5 is not; sentence 2 ends at 4 4 6: its last word is cut
    assert (subwords.tolist(), empty.tolist(), cut.tolist()) == ([6, 0, 6], [1, 0, 1], [1, 0, 1])
    assert _per_sentence(flat, starts, None)[2].tolist() == [0, 0, 0]
    assert _per_sentence(flat, starts, 1)[2].tolist() == [3, 0, 2]
