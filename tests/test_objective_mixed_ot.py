"""The ``mixed_ot`` objective: one OT over all languages' words vs English (Appendix E)."""

from __future__ import annotations

import pytest
import torch
from conftest import run_json
from geomloss import SamplesLoss
from typer.testing import CliRunner
from xalign_mixed_ot import MixedOT

import xalign
from xalign import AlignmentBatch, Side, testing
from xalign.cli import app


def make_side(sentences: list[list[list[float]]], langs: list[str]) -> Side:
    """One subword per word: ``[CLS] w0 w1 ... [SEP] pad`` (decoy 7 elsewhere)."""
    return testing.make_side(vectors=sentences, langs=langs, pad_value=7.0)


def geomloss_divergence(x: torch.Tensor, y: torch.Tensor) -> float:
    """Reference: geomloss directly on two uniform clouds (the plugin's default options)."""
    return float(SamplesLoss("sinkhorn", p=2, blur=0.05, scaling=0.5, debias=True)(x, y))


def flat_words(side: Side, pooling: str | None = None) -> torch.Tensor:
    vecs, mask = side.words_vectors(pooling)
    return torch.cat([vecs[b][mask[b]] for b in range(side.batch_size)])


A, B, C = [0.0, 0.0], [1.0, 0.0], [0.0, 2.0]


def test_one_ot_over_the_batch_not_per_sentence():
    # Same cloud {A, B, C} on both sides, split differently across sentences and languages:
    # the single batch-level divergence is 0 while per-sentence divergences are not.
    src = make_side([[A, B], [C]], ["de", "fr"])
    tgt = make_side([[A], [B, C]], ["en", "en"])
    batch = AlignmentBatch("mixed", src, tgt)
    loss = MixedOT(hidden_size=2).loss(batch)
    assert loss.item() == pytest.approx(0.0, abs=1e-5)
    per_sentence = xalign.sinkhorn_divergence(*src.words_vectors(), *tgt.words_vectors())
    assert per_sentence.min().item() > 0.05


def test_equals_sinkhorn_divergence_over_concatenated_clouds():
    torch.manual_seed(0)
    src = make_side(
        [torch.randn(3, 4).tolist(), torch.randn(2, 4).tolist(), torch.randn(4, 4).tolist()],
        ["de", "fr", "es"],
    )
    tgt = make_side(
        [torch.randn(2, 4).tolist(), torch.randn(3, 4).tolist(), torch.randn(3, 4).tolist()],
        ["en"] * 3,
    )
    loss = MixedOT(hidden_size=4).loss(AlignmentBatch("mixed", src, tgt))
    x, y = flat_words(src), flat_words(tgt)
    assert (x.shape[0], y.shape[0]) == (9, 8)
    assert loss.item() == pytest.approx(geomloss_divergence(x.detach(), y.detach()), rel=1e-4)
    loss.backward()
    assert src.hidden.grad[:, 1:4].abs().sum() > 0 and tgt.hidden.grad.abs().sum() > 0


def test_options_are_passed_through():
    torch.manual_seed(1)
    src = make_side([torch.randn(3, 2).tolist(), torch.randn(2, 2).tolist()], ["de", "fr"])
    tgt = make_side([torch.randn(2, 2).tolist(), torch.randn(2, 2).tolist()], ["en", "en"])
    obj = MixedOT.from_options({"blur": 0.3, "debias": False, "p": 1}, hidden_size=2)
    got = obj.loss(AlignmentBatch("mixed", src, tgt)).item()
    ref = SamplesLoss("sinkhorn", p=1, blur=0.3, scaling=0.5, debias=False)
    with torch.no_grad():
        expected = float(ref(flat_words(src), flat_words(tgt)))
    assert got == pytest.approx(expected, rel=1e-4)


def test_subword_level_uses_every_subword():
    hidden = torch.tensor([[[9.0, 9.0], [0.0, 0.0], [2.0, 0.0], [9.0, 9.0]]])
    src = Side(hidden, torch.tensor([[-1, 0, 0, -1]]), torch.tensor([1]), [["ab"]], ["de"])
    tgt = make_side([[[0.0, 0.0], [2.0, 0.0]]], ["en"])
    word = MixedOT(hidden_size=2).loss(AlignmentBatch("mixed", src, tgt)).item()
    sub = (
        MixedOT.from_options({"level": "subword"}, hidden_size=2)
        .loss(AlignmentBatch("mixed", src, tgt))
        .item()
    )
    assert sub == pytest.approx(0.0, abs=1e-5)
    assert word == pytest.approx(
        geomloss_divergence(torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 0.0], [2.0, 0.0]])),
        rel=1e-4,
    )
    assert word > 0.1


def test_needs_mixed_batches_only():
    needs = MixedOT(hidden_size=4).needs()
    assert needs.mixed_languages and not needs.links and not needs.frozen_target


@pytest.mark.parametrize("bad", [{"level": "char"}, {"scope": "sentence"}, {"pooling": "max"}])
def test_bad_options_rejected(bad):
    with pytest.raises(ValueError):
        MixedOT.from_options(bad, hidden_size=4)


# ---------------------------------------------------------------- training through the CLI
runner = CliRunner()


def test_trainer_builds_one_mixed_batch(smoke_overrides, monkeypatch):
    seen: list[dict] = []
    real = MixedOT.loss

    def recording(self, batch):
        value = real(self, batch)
        with torch.no_grad():
            x, y = flat_words(batch.src), flat_words(batch.tgt)
            seen.append(
                {
                    "pair": batch.pair,
                    "src": list(batch.src.langs),
                    "tgt": set(batch.tgt.langs),
                    "value": float(value),
                    "reference": geomloss_divergence(x, y),
                }
            )
        return value

    monkeypatch.setattr(MixedOT, "loss", recording)
    sets = sum((["--set", o] for o in smoke_overrides), [])
    out = run_json(["-o", "mixed_ot", *sets, "--set", "train.save_model=false"])
    # 24 pairs per language, batch 8, grad_accum 2 -> 3 micro-steps, each ONE mixed batch
    assert len(seen) == 3
    for rec in seen:
        assert rec["pair"] == "mixed" and rec["tgt"] == {"en"}
        assert rec["src"] == ["de"] * 8 + ["fr"] * 8
        assert rec["value"] == pytest.approx(rec["reference"], rel=1e-4)
    assert "mixed/mixed_ot" in out["metrics"] and "mixed/reg" in out["metrics"]
    assert not any(k.startswith(("de-en/", "fr-en/")) for k in out["metrics"])


def test_cannot_combine_with_per_pair_objectives(smoke_overrides):
    sets = sum((["--set", o] for o in smoke_overrides), [])
    result = runner.invoke(app, ["run", "-q", "-o", "mixed_ot", "-o", "sinkhorn", *sets])
    assert result.exit_code != 0 and "cannot be combined" in result.output


def test_training_decreases_mixed_ot_loss(smoke_overrides, tracking_uri):
    from mlflow.tracking import MlflowClient

    sets = sum((["--set", o] for o in smoke_overrides), [])
    out = run_json(
        [
            "-o",
            "mixed_ot",
            *sets,
            "--set",
            "train.lr=1e-3",
            "--set",
            "train.epochs=5",
            "--set",
            "train.reg_weight=0",
        ]
    )
    hist = MlflowClient(tracking_uri).get_metric_history(out["run_id"], "mixed/mixed_ot")
    values = [m.value for m in sorted(hist, key=lambda m: m.step)]
    assert len(values) >= 6 and all(v > 0 for v in values), values
    assert sum(values[-2:]) < 0.85 * sum(values[:2]), values
