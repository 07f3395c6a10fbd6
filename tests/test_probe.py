"""Frozen-encoder probes: the public helpers, and the ``xnli-probe`` / ``pos-probe`` tasks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from xalign_udpos.probe import PosProbe, PosProbeConfig, _by_sentence
from xalign_xnli.probe import XnliProbe, XnliProbeConfig

import xalign
from xalign import (
    TaskContext,
    embed_sentences,
    fit_linear_probe,
    load_encoder,
    pair_features,
)


def test_pair_features_by_hand() -> None:
    u = torch.tensor([[1.0, 2.0]])
    v = torch.tensor([[3.0, 1.0]])
    assert pair_features(u, v).tolist() == [[1.0, 2.0, 3.0, 1.0, 2.0, 1.0, 3.0, 2.0]]
    with pytest.raises(ValueError, match="shapes differ"):
        pair_features(u, torch.zeros(1, 3))


def test_linear_probe_separates_separable_data_and_is_deterministic() -> None:
    rng = np.random.default_rng(0)
    centres = np.array([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 4.0]])
    y = rng.integers(0, 3, size=300)
    x = centres[y] + rng.normal(scale=0.5, size=(300, 3)) + 100.0  # offset: standardised away
    probe = fit_linear_probe(x, y)
    assert (probe.predict(x) == y).mean() == 1.0
    again = fit_linear_probe(x, y)
    assert np.array_equal(probe.model.coef_, again.model.coef_)
    # a constant feature is kept (scale 1), not a division by zero
    with_const = np.hstack([x, np.ones((300, 1))])
    assert (fit_linear_probe(with_const, y).predict(with_const) == y).mean() == 1.0


@pytest.mark.parametrize(
    "x, y, message",
    [
        (np.zeros((0, 2)), [], "N >= 1"),
        (np.zeros((3, 2)), [0, 1], "3 feature rows but 2 labels"),
        (np.zeros((3, 2)), [1, 1, 1], "single class"),
    ],
)
def test_linear_probe_refuses_bad_training_data(x, y, message) -> None:
    with pytest.raises(ValueError, match=message):
        fit_linear_probe(x, y)


def test_embed_sentences_is_the_masked_mean_of_the_layer(tiny_model) -> None:
    encoder = load_encoder(str(tiny_model), layer=-1, max_length=32).eval()
    texts = ["Das Haus ist klein .", "Ja", "The house is small and old ."]
    got = embed_sentences(encoder, texts, batch_size=2)
    for i, text in enumerate(texts):  # one sentence at a time: no padding at all
        enc = encoder.tokenizer([text], return_tensors="pt")
        with torch.no_grad():
            hidden = encoder(enc["input_ids"], enc["attention_mask"])
        assert torch.allclose(got[i], hidden[0].mean(0), atol=1e-5)
    cls = embed_sentences(encoder, texts, pooling="cls")
    enc = encoder.tokenizer([texts[1]], return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(cls[1], encoder(enc["input_ids"], enc["attention_mask"])[0, 0])
    without = embed_sentences(encoder, texts[:1], pool_special_tokens=False)
    enc = encoder.tokenizer(texts[:1], return_tensors="pt", return_special_tokens_mask=True)
    with torch.no_grad():
        hidden = encoder(enc["input_ids"], enc["attention_mask"])[0]
    keep = enc["special_tokens_mask"][0] == 0
    assert torch.allclose(without[0], hidden[keep].mean(0), atol=1e-5)
    with pytest.raises(ValueError, match="unknown sentence pooling"):
        embed_sentences(encoder, texts, pooling="max")


def test_sentence_counts_by_hand() -> None:
    class S:
        def __init__(self, n: int) -> None:
            self.n = n

        def __len__(self) -> int:
            return self.n

    flags = np.array([1, 0, 1, 1, 1, 0])
    counts = _by_sentence(flags, [S(2), S(1), S(3)])
    assert (counts.matched, counts.total) == ([1, 1, 2], [2, 1, 3])


@pytest.mark.parametrize(
    "cls, bad",
    [
        (XnliProbeConfig, {"pooling": "max"}),
        (XnliProbeConfig, {"c": 0}),
        (XnliProbeConfig, {"test_limit": 0}),
        (PosProbeConfig, {"pooling": "cls"}),
        (PosProbeConfig, {"train_limit": 0}),
        (PosProbeConfig, {"c": -1.0}),
        (PosProbeConfig, {"test_limit": 0}),
        (XnliProbeConfig, {"max_length": 0}),
        (PosProbeConfig, {"batch_size": 0}),
    ],
)
def test_options_are_checked(cls, bad) -> None:
    with pytest.raises(ValueError):
        cls(**bad)


@pytest.mark.parametrize("cls", [XnliProbeConfig, PosProbeConfig])
@pytest.mark.parametrize(
    "bad, message",
    [
        ({"c": 0}, "c must be > 0, got 0"),
        ({"train_limit": 0}, "train_limit must be >= 1 or null"),
        ({"test_limit": -2}, "test_limit must be >= 1 or null"),
        ({"pooling": "max"}, "pooling must be one of"),
    ],
)
def test_both_probes_share_one_check(cls, bad, message) -> None:
    """One check (xalign.ProbeSettings) with one message per key for both probes."""
    assert issubclass(cls, xalign.ProbeSettings)
    with pytest.raises(ValueError, match=message):
        cls(**bad)
    assert PosProbeConfig(pooling="first").pooling == "first"  # each probe's own POOLINGS
    assert XnliProbeConfig(pooling="cls").pooling == "cls"


def _context(shared_data, languages):
    return TaskContext(data_dir=shared_data, languages=languages, show_progress=False)


def test_xnli_probe_on_the_tiny_model(tiny_model, shared_data, one_thread) -> None:
    task = XnliProbe(XnliProbeConfig(train_limit=90, test_limit=40))
    result = task.run(str(tiny_model), _context(shared_data, ["en", "de"]))
    assert set(result.scores) == {"en", "de"} and result.main_metric == "accuracy"
    for lang, flags in result.per_example.items():
        assert len(flags) == 40 and set(flags) <= {0.0, 1.0}
        assert result.scores[lang]["accuracy"] == pytest.approx(100 * np.mean(flags))
    assert result.meta["n_train"] == 90
    assert XnliProbe.metrics[0].higher_is_better
    again = task.run(str(tiny_model), _context(shared_data, ["en", "de"]))
    assert again.per_example == result.per_example  # nothing random
    assert not XnliProbe.uses_seed


def test_pos_probe_on_the_tiny_model(tiny_model, shared_data, one_thread) -> None:
    task = PosProbe(PosProbeConfig(train_limit=60, test_limit=12))
    result = task.run(str(tiny_model), _context(shared_data, ["en", "de"]))
    counts = result.counts
    for lang, flags in result.per_example.items():
        assert sum(counts[lang].total) == len(flags)
        assert sum(counts[lang].matched) == sum(flags)
        assert len(counts[lang].total) == 12
        assert result.scores[lang]["accuracy"] == pytest.approx(100 * np.mean(flags))
    # a probe fit on 60 English sentences tags its own training words better than chance (1/17)
    assert result.meta["train_accuracy"] > 100 / 17
    files = task.inputs(_context(shared_data, ["en", "de"]))
    assert {p.name for p in files} >= {"en_ewt-ud-train.conllu", "de_gsd-ud-test.conllu"}


@pytest.mark.integration
def test_xnli_probe_on_the_embedded_model_is_above_chance(shared_data) -> None:
    task = XnliProbe(XnliProbeConfig(test_limit=300))
    result = task.run("packaged:multilingual-e5-small", _context(shared_data, ["en", "de"]))
    # a 3-way task: chance is 33.3 %; e5-small's mean-pooled last layer reaches ~57 % on en
    assert result.scores["en"]["accuracy"] > 45
    assert result.scores["de"]["accuracy"] > 40
