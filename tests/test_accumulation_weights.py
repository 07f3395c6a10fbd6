"""Gradient accumulation weighs every sentence of an optimizer step the same.

5 sentences, batch 2, grad_accum 3: the epoch is micro-batches of 2, 2 and 1 sentences and
one optimizer step; its gradient must be the gradient of the mean of the 5 per-sentence
losses (the old weighting, 1/3 per micro-batch mean, gave the 5th sentence 1/3 and the
others 1/6 each).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _launch import assert_same_training, launch, model_weights
from conftest import migrated_sqlite_uri


def write_corpus(directory: Path, n: int) -> str:
    from xalign.data.corpus import read_parallel

    rows = read_parallel("demo", "de", "en")[:n]
    (directory / "de-en.tsv").write_text(
        "".join(f"{r[0]}\t{r[1]}\n" for r in rows), encoding="utf-8"
    )
    return str(directory / "{src}-{tgt}.tsv")


def overrides(tiny_model, tmp_path, tracking_uri, *extra: str) -> list[str]:
    return [
        f"model.name={tiny_model}",
        f"data.corpus={write_corpus(tmp_path, 5)}",
        "data.languages=[de]",
        "train.batch_size=2",
        "train.grad_accum=3",
        "train.optimizer=sgd",
        "train.lr=1.0",
        "train.max_grad_norm=null",
        "train.dropout=false",
        "objectives.sinkhorn.diameter=10",  # each sentence's loss independent of batch-mates
        "train.save_model=false",
        f"train.output_dir={tmp_path / 'out'}",
        f"tracking.uri={tracking_uri}",
        *extra,
    ]


def per_sentence_mean(recipe) -> torch.Tensor:
    """mean over the 5 sentences of (sinkhorn + λ·drift), one sentence at a time."""
    from xalign.batch import AlignmentBatch
    from xalign.recipe import drift_regulariser

    enc, lam = recipe.encoder, recipe.cfg.train.reg_weight
    objective = recipe.objectives["sinkhorn"]
    (pair,) = recipe.data.pairs
    losses = []
    for e in pair.examples:
        src = enc.encode([e.src_words], [pair.src])
        tgt = enc.encode([e.tgt_words], ["en"])
        frozen = recipe.frozen.encode([e.tgt_words], ["en"])
        value = objective.loss(AlignmentBatch("hand", src, tgt, frozen))
        losses.append(value + lam * drift_regulariser(tgt, frozen))
    return torch.stack(losses).mean()


@pytest.mark.parametrize("log_grad_terms", [True, False])
def test_short_last_micro_batch_weighs_by_sentence(
    log_grad_terms, tiny_model, tmp_path, tracking_uri, one_thread
):
    from xalign.config import load_config
    from xalign.recipe import AlignmentRecipe

    cfg = load_config(
        objectives=["sinkhorn"],
        overrides=overrides(
            tiny_model, tmp_path, tracking_uri, f"train.log_grad_terms={log_grad_terms}"
        ),
    )
    recipe = AlignmentRecipe(cfg, show_progress=False)
    recipe.setup()
    assert recipe.data.micro_steps == 3 and recipe.total_steps == 1
    assert [recipe.data.global_batch_size(m, recipe.data.pairs[0]) for m in range(3)] == [2, 2, 1]
    named = [(n, p) for n, p in recipe.module.named_parameters() if p.requires_grad]
    hand = per_sentence_mean(recipe)
    hand.backward()
    expected = {n: p.grad.clone() for n, p in named}
    recipe.optimizer.zero_grad(set_to_none=True)
    captured: dict[str, torch.Tensor] = {}

    def capture(optimizer, args, kwargs):
        captured.update({n: p.grad.clone() for n, p in named if p.grad is not None})

    recipe.optimizer.register_step_pre_hook(capture)
    try:
        result = recipe.train()
    finally:
        recipe.cleanup()
    scale = max(g.abs().max().item() for g in expected.values())
    assert scale > 1e-4
    for n, _ in named:
        got = captured.get(n, torch.zeros_like(expected[n]))
        assert torch.allclose(got, expected[n], rtol=1e-3, atol=1e-4 * scale), n
    # the logged loss is the same mean (the value, not only its gradient)
    assert result.metrics["loss"] == pytest.approx(hand.item(), rel=1e-3)


def test_two_ranks_weigh_like_one_rank(tiny_model, tmp_path):
    """The same 5-sentence step on 2 gloo ranks (the last micro-batch leaves rank 1 empty)
    ends with the 1-rank weights."""
    uri = migrated_sqlite_uri(tmp_path / "m.db")
    common = ["-o", "sinkhorn"]
    for o in overrides(tiny_model, tmp_path, uri, "train.lr=0.05", "train.save_model=true"):
        if not o.startswith("train.output_dir"):
            common += ["--set", o]
    a, b = (
        model_weights(launch([*common, "--set", f"train.output_dir={tmp_path / d}"], w))
        for w, d in ((1, "a"), (2, "b"))
    )
    assert_same_training(a, b, tiny_model)
