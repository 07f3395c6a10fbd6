"""``train.reg_reduction``: the drift term summed (the paper's Eq. 2) or averaged over words.

Per English sentence of words t = 1..n, ``sum`` is Σ_t ‖c(t) − c0(t)‖² and ``mean`` is that
divided by n; both are then averaged over the batch's sentences and weighed by λ. The values
are computed here word by word in Python loops from the tuned and frozen encoders' word
vectors, after moving the tuned encoder's weights so that c ≠ c0.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

LAM = 0.5


def write_corpus(directory: Path, n: int) -> str:
    from xalign.data.corpus import read_parallel

    rows = read_parallel("demo", "de", "en")[:n]
    (directory / "de-en.tsv").write_text(
        "".join(f"{r[0]}\t{r[1]}\n" for r in rows), encoding="utf-8"
    )
    return str(directory / "{src}-{tgt}.tsv")


def make_recipe(tiny_model, tmp_path, tracking_uri, *extra: str):
    from xalign.config import load_config
    from xalign.recipe import AlignmentRecipe

    cfg = load_config(
        objectives=["sinkhorn"],
        overrides=[
            f"model.name={tiny_model}",
            f"data.corpus={write_corpus(tmp_path, 12)}",
            "data.languages=[de]",
            "train.dropout=false",
            f"train.reg_weight={LAM}",
            "train.save_model=false",
            f"train.output_dir={tmp_path / 'out'}",
            f"tracking.uri={tracking_uri}",
            *extra,
        ],
    )
    recipe = AlignmentRecipe(cfg, show_progress=False)
    recipe.setup()
    return recipe


def hand_drift(c: torch.Tensor, c0: torch.Tensor, n_words: list[int], reduction: str) -> float:
    """Mean over sentences of Σ_t ‖c(t) − c0(t)‖² (``sum``) or of its mean over t (``mean``)."""
    per_sentence = []
    for b, n in enumerate(n_words):
        total = 0.0
        for t in range(n):
            total += sum((float(c[b, t, k]) - float(c0[b, t, k])) ** 2 for k in range(c.shape[-1]))
        per_sentence.append(total / n if reduction == "mean" else total)
    return sum(per_sentence) / len(per_sentence)


@pytest.mark.parametrize("reduction", ["sum", "mean", None])
def test_drift_term_reduces_as_configured(
    reduction, tiny_model, tmp_path, tracking_uri, one_thread
):
    """None: the key left out, which must mean ``sum``. Sentences of different lengths, so
    sum and mean differ by more than a common factor."""
    from xalign.batch import AlignmentBatch

    extra = [] if reduction is None else [f"train.reg_reduction={reduction}"]
    recipe = make_recipe(tiny_model, tmp_path, tracking_uri, *extra)
    expected_reduction = reduction or "sum"
    assert recipe.cfg.train.reg_reduction == expected_reduction
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # move the tuned copy away from the frozen one
        for p in recipe.encoder.model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    (pair,) = recipe.data.pairs
    by_length = {len(e.tgt_words): e for e in pair.examples}  # sum ≠ n·mean across them
    examples = [by_length[n] for n in sorted(by_length)[:3]]
    assert len(examples) == 3, "need English sentences of 3 different lengths"
    tgt_words = [e.tgt_words for e in examples]
    src = recipe.encoder.encode([e.src_words for e in examples], [pair.src] * 3)
    tgt = recipe.encoder.encode(tgt_words, ["en"] * 3)
    frozen = recipe.frozen.encode(tgt_words, ["en"] * 3)

    parts = recipe._loss_terms("de-en", AlignmentBatch("de-en", src, tgt, frozen), {}, 1.0)

    c, _ = tgt.words_vectors()
    c0, _ = frozen.words_vectors()
    n_words = [len(w) for w in tgt_words]
    want = {r: hand_drift(c.detach(), c0.detach(), n_words, r) for r in ("sum", "mean")}
    assert want["sum"] > 0
    assert want["sum"] / want["mean"] > 2  # the two reductions are told apart
    assert parts["reg"].item() == pytest.approx(LAM * want[expected_reduction], rel=1e-5)


def test_drift_reduction_must_be_sum_or_mean(tmp_path):
    from xalign.config import load_config
    from xalign.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        load_config(overrides=["train.reg_reduction=max"])
    assert "train.reg_reduction: must be sum or mean, got 'max'" in str(err.value)


def test_drift_regulariser_rejects_an_unknown_reduction():
    from xalign.batch import Side
    from xalign.recipe import drift_regulariser

    side = Side(
        torch.zeros(1, 3, 4), torch.tensor([[-1, 0, -1]]), torch.tensor([1]), [["a"]], ["en"]
    )
    with pytest.raises(ValueError, match="unknown drift reduction 'max'"):
        drift_regulariser(side, side, "max")
