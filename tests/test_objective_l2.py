"""The ``l2`` objective (Cao et al. 2020): hand-computed values, needs, and training runs."""

from __future__ import annotations

import pytest
import torch
from conftest import run_json
from typer.testing import CliRunner
from xalign_l2 import L2Alignment

from xalign import AlignmentBatch, LinkSpec, Side, testing

INTERSECTION = LinkSpec("intersection", one_to_one=True, drop_identical=False, max_words=64)


def make_side(sentences: list[list[list[float]]], lang: str = "de", pooling: str = "last") -> Side:
    """A Side with one subword per word: ``[CLS] w0 w1 ... [SEP] pad`` (decoy 99 elsewhere)."""
    return testing.make_side(vectors=sentences, lang=lang, pooling=pooling, pad_value=99.0)


SRC = [[[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]], [[2.0, 2.0], [1.0, 1.0]]]
FROZEN = [[[0.0, 0.0], [0.0, 1.0], [1.0, 1.0]], [[0.0, 0.0], [1.0, 3.0]]]
TUNED = [[[1.0, 1.0], [5.0, 5.0], [0.0, 0.0]], [[9.0, 9.0], [1.0, 0.0]]]
LINKS = [{(0, 0), (1, 2)}, {(1, 1)}]


def batch(links=LINKS, src=SRC, frozen=FROZEN, tuned=TUNED, spec=INTERSECTION) -> AlignmentBatch:
    return AlignmentBatch(
        "de-en", make_side(src), make_side(tuned, "en"), make_side(frozen, "en"), {spec: links}
    )


def test_loss_is_per_sentence_sum_then_batch_mean():
    # sentence 0: |(1,0)-(0,0)|^2 + |(0,2)-(1,1)|^2 = 1 + 2 = 3; sentence 1: |(1,1)-(1,3)|^2 = 4
    loss = L2Alignment(hidden_size=2).loss(batch())
    assert loss.item() == pytest.approx((3 + 4) / 2)


def test_tuned_target_uses_the_trained_english_side():
    obj = L2Alignment(L2Alignment.Config(target="tuned"), hidden_size=2)
    # sentence 0: |(1,0)-(1,1)|^2 + |(0,2)-(0,0)|^2 = 1 + 4; sentence 1: |(1,1)-(1,0)|^2 = 1
    assert obj.loss(batch()).item() == pytest.approx((5 + 1) / 2)


def test_sentence_without_links_counts_in_the_mean():
    src, frozen = SRC + [[[7.0, 7.0]]], FROZEN + [[[0.0, 0.0]]]
    loss = L2Alignment(hidden_size=2).loss(
        batch(links=LINKS + [set()], src=src, frozen=frozen, tuned=TUNED + [[[0.0, 0.0]]])
    )
    assert loss.item() == pytest.approx((3 + 4 + 0) / 3)


def test_pooling_option_picks_subword():
    # one word of two subwords: first (1, 0), last (0, 4); English word (0, 0)
    hidden = torch.tensor([[[9.0, 9.0], [1.0, 0.0], [0.0, 4.0], [9.0, 9.0]]])
    src = Side(hidden, torch.tensor([[-1, 0, 0, -1]]), torch.tensor([1]), [["ab"]], ["de"])
    en = make_side([[[0.0, 0.0]]], "en")
    b = AlignmentBatch("de-en", src, en, en, {INTERSECTION: [{(0, 0)}]})
    values = {
        p: L2Alignment(L2Alignment.Config(pooling=p), hidden_size=2).loss(b).item()
        for p in ("first", "last", "mean", None)
    }
    assert values == pytest.approx({"first": 1.0, "last": 16.0, "mean": 0.25 + 4.0, None: 16.0})


def test_masked_word_links_are_ignored_and_gradient_reaches_source_only():
    b = batch()
    b.src.word_index[0, 2] = -1  # source word 1 of sentence 0 lost its subword
    loss = L2Alignment(hidden_size=2).loss(b)
    assert loss.item() == pytest.approx((1 + 4) / 2)
    loss.backward()
    assert b.src.hidden.grad.abs().sum() > 0
    assert b.tgt_frozen.hidden.grad is None or b.tgt_frozen.hidden.grad.abs().sum() == 0
    assert b.tgt.hidden.grad is None


def test_no_links_gives_connected_zero():
    loss = L2Alignment(hidden_size=2).loss(batch(links=[set(), set()]))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()


def test_needs_follow_options():
    default = L2Alignment(hidden_size=4).needs()
    assert default.links == (INTERSECTION,) and default.frozen_target
    assert not default.mixed_languages
    cfg = L2Alignment.Config(
        symmetrization="grow-diag-final-and", one_to_one=False, drop_identical=True, target="tuned"
    )
    needs = L2Alignment(cfg, hidden_size=4).needs()
    assert needs.links == (
        LinkSpec("grow-diag-final-and", one_to_one=False, drop_identical=True, max_words=64),
    )
    assert not needs.frozen_target


@pytest.mark.parametrize(
    "bad", [{"target": "x"}, {"symmetrization": "union"}, {"pooling": "max"}, {"nope": 1}]
)
def test_bad_options_rejected(bad):
    with pytest.raises(ValueError):
        L2Alignment.from_options(bad, hidden_size=4)


# ---------------------------------------------------------------- training through the CLI
runner = CliRunner()


def history(uri: str, run_id: str, key: str) -> list[float]:
    from mlflow.tracking import MlflowClient

    hist = MlflowClient(uri).get_metric_history(run_id, key)
    return [m.value for m in sorted(hist, key=lambda m: m.step)]


def test_training_decreases_l2_loss(smoke_overrides, tracking_uri, tmp_path, monkeypatch):
    monkeypatch.setenv("XALIGN_CACHE_DIR", str(tmp_path / "cache"))
    sets = sum((["--set", o] for o in smoke_overrides), [])
    out = run_json(
        [
            "-o",
            "l2",
            *sets,
            "--set",
            "train.lr=1e-3",
            "--set",
            "train.epochs=5",
            "--set",
            "train.reg_weight=0",
        ]
    )
    values = history(tracking_uri, out["run_id"], "de-en/l2")
    assert len(values) >= 6 and all(v > 0 for v in values), values
    assert sum(values[-2:]) < 0.85 * sum(values[:2]), values


def test_combined_with_sinkhorn_logs_both(smoke_overrides, tracking_uri, tmp_path, monkeypatch):
    monkeypatch.setenv("XALIGN_CACHE_DIR", str(tmp_path / "cache"))
    sets = sum((["--set", o] for o in smoke_overrides), [])
    out = run_json(["-o", "sinkhorn:1.0", "-o", "l2:0.5", *sets])
    m = out["metrics"]
    for pair in ("de-en", "fr-en"):
        assert m[f"{pair}/sinkhorn"] > 0 and m[f"{pair}/l2"] > 0
        expected = m[f"{pair}/sinkhorn"] + 0.5 * m[f"{pair}/l2"] + 1.0 * m[f"{pair}/reg"]
        assert m[f"{pair}/total"] == pytest.approx(expected, rel=1e-4)
    assert len(history(tracking_uri, out["run_id"], "fr-en/l2")) == 2
