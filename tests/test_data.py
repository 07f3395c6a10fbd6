import gzip
import json

import numpy as np
import pytest
from _pipeline import build_parallel_data

from xalign.data.corpus import DEMO_LANGUAGES, CorpusError, read_parallel
from xalign.data.filters import keep_pair
from xalign.data.sampler import sample_order
from xalign.data.text import tokenize_words

PAIRS = [("Das ist gut.", "That is good."), ("Ich bin hier.", "I am here.")]


def test_demo_corpus_is_multiway_parallel():
    english = None
    for lang in DEMO_LANGUAGES:
        pairs = read_parallel("demo", lang, "en")
        assert len(pairs) == 250
        tgt = [p.tgt for p in pairs]
        assert english is None or tgt == english
        english = tgt


def test_tsv_and_triple_bar_and_two_files_and_gz(tmp_path):
    (tmp_path / "de-en.tsv").write_text("".join(f"{s}\t{t}\n" for s, t in PAIRS))
    (tmp_path / "de-en.txt").write_text("".join(f"{s} ||| {t}\n" for s, t in PAIRS))
    with gzip.open(tmp_path / "c.de.gz", "wt") as f:
        f.write("".join(s + "\n" for s, _ in PAIRS))
    with gzip.open(tmp_path / "c.en.gz", "wt") as f:
        f.write("".join(t + "\n" for _, t in PAIRS))
    for spec in ("{src}-{tgt}.tsv", "{src}-{tgt}.txt", "c.{lang}.gz"):
        pairs = read_parallel(str(tmp_path / spec), "de", "en")
        assert [(p.src, p.tgt) for p in pairs] == PAIRS


def test_local_json_dataset(tmp_path):
    path = tmp_path / "de-en.jsonl"
    path.write_text(
        "".join(json.dumps({"translation": {"de": s, "en": t}}) + "\n" for s, t in PAIRS)
    )
    assert [(p.src, p.tgt) for p in read_parallel(str(path), "de", "en")] == PAIRS


def test_bad_line_names_file_and_line(tmp_path):
    path = tmp_path / "de-en.tsv"
    path.write_text("a\tb\nonly one field\n")
    with pytest.raises(CorpusError, match=r"de-en.tsv:2"):
        read_parallel(str(path), "de", "en")


def test_unaligned_files_are_an_error(tmp_path):
    (tmp_path / "x.de").write_text("a\nb\nc\n")
    (tmp_path / "x.en").write_text("a\nb\n")
    with pytest.raises(CorpusError, match="not line-aligned"):
        read_parallel(str(tmp_path / "x.{lang}"), "de", "en")


def test_missing_file_is_named(tmp_path):
    with pytest.raises(CorpusError, match="nothere.tsv"):
        read_parallel(str(tmp_path / "nothere.tsv"), "de", "en")


def test_moses_tokenisation_per_language():
    assert tokenize_words("L'homme n'est pas là.", "fr") == [
        "L'",
        "homme",
        "n'",
        "est",
        "pas",
        "là",
        ".",
    ]
    assert tokenize_words("Don't stop, it's 3.5 km!", "en") == [
        "Don",
        "'t",
        "stop",
        ",",
        "it",
        "'s",
        "3.5",
        "km",
        "!",
    ]


def test_upsampling_is_seeded_and_balanced():
    order = sample_order(10, 25, seed=1, name="de-en")
    assert len(order) == 25
    counts = np.bincount(order, minlength=10)
    assert counts.min() >= 2 and counts.max() <= 3
    assert np.array_equal(order, sample_order(10, 25, seed=1, name="de-en"))
    assert not np.array_equal(order, sample_order(10, 25, seed=2, name="de-en"))


def test_length_filter():
    assert keep_pair(["a"] * 3, ["b"] * 4, min_words=1, max_words=5, max_ratio=None)
    assert not keep_pair(["a"] * 6, ["b"] * 4, min_words=1, max_words=5, max_ratio=None)
    assert not keep_pair(["a"] * 1, ["b"] * 4, min_words=1, max_words=5, max_ratio=2.0)


def test_rank_shards_partition_the_global_batch():
    data = build_parallel_data(
        "demo", ["de", "fr"], "en", pairs_per_language=100, batch_size=8, seed=3
    )
    assert data.micro_steps == 13
    for pair in data.pairs:
        for micro in (0, 5, 12):
            whole = data.batch(pair, micro)
            halves = data.batch(pair, micro, 0, 2) + data.batch(pair, micro, 1, 2)
            assert sorted(map(id, whole)) == sorted(map(id, halves))
            assert len(whole) == data.global_batch_size(micro)
    assert data.global_batch_size(12) == 4
