"""Losses and OT under a bf16 autocast equal their float32 values (issue 20, item 4).

geomloss's cost ½(‖x‖² + ‖y‖² − 2⟨x, y⟩) cancels catastrophically in bf16 when the word
vectors share a large component (clustered clouds, |x| ≈ 30): under a CPU bf16 autocast the
divergence came out several percent low and its gradient tens of percent off. Every objective
(through the recipe's :func:`xalign.recipe.objective_loss`), the drift term and the public OT
functions must give the float32 value and gradient.
"""

from __future__ import annotations

import contextlib

import pytest
import torch

import xalign
from xalign.batch import AlignmentBatch, Side

B, T, H = 3, 7, 32


def autocast(on: bool):
    return torch.autocast("cpu", dtype=torch.bfloat16) if on else contextlib.nullcontext()


def clustered(n: int, *, seed: int, scale: float = 30.0, shift: float = 0.0) -> torch.Tensor:
    """``[B, n, H]`` points within ~1 of a common centre of norm ``scale``."""
    g = torch.Generator().manual_seed(seed)
    centre = torch.randn(H, generator=torch.Generator().manual_seed(0))
    centre = centre / centre.norm() * scale
    return centre + 0.5 * torch.randn(B, n, H, generator=g) + shift


def side(hidden: torch.Tensor, lang: str) -> Side:
    """One subword per word, a special token at position 0 and a padded tail."""
    n_words = torch.tensor([T - 2, T - 3, T - 1])
    word_index = torch.full((B, T), -1)
    for b, n in enumerate(n_words.tolist()):
        word_index[b, 1 : 1 + n] = torch.arange(n)
    words = [[f"w{i}" for i in range(n)] for n in n_words.tolist()]
    return Side(hidden, word_index, n_words, words, [lang] * B)


def objective(name: str, **options):
    from xalign.plugins import get_registry

    return get_registry().objective(name).cls.from_options(options, hidden_size=H)


def make_batch(obj, src: torch.Tensor, tgt: torch.Tensor, frozen: torch.Tensor) -> AlignmentBatch:
    links = {}
    needs = obj.needs()
    for spec in needs.links:
        links[spec] = [{(i, i) for i in range(4)} | {(0, 2), (3, 1)} for _ in range(B)]
    return AlignmentBatch("de-en", side(src, "de"), side(tgt, "en"), side(frozen, "en"), links)


def loss_and_grad(obj, *, under_autocast: bool) -> tuple[float, torch.Tensor, torch.Tensor]:
    from xalign.recipe import objective_loss

    src = clustered(T, seed=1).requires_grad_()
    tgt = clustered(T, seed=2, shift=0.2).requires_grad_()
    frozen = clustered(T, seed=3, shift=0.1)
    obj.zero_grad()
    with autocast(under_autocast):
        value = objective_loss(obj, make_batch(obj, src, tgt, frozen))
    value.backward()
    return value.item(), src.grad, tgt.grad


OBJECTIVES = [
    ("sinkhorn", {}),
    ("sinkhorn", {"scope": "batch"}),
    ("sinkhorn", {"level": "subword", "p": 1}),
    ("mixed_ot", {}),
    ("l2", {}),
    ("l2", {"target": "tuned"}),
    ("contrastive", {"projection": "linear"}),
    ("contrastive", {"variant": "strong", "projection": "nn"}),
    ("translation_ranking", {}),
    ("so", {}),
    ("co", {}),
]


@pytest.mark.parametrize(("name", "options"), OBJECTIVES)
def test_objective_loss_under_bf16_autocast_is_float32(name, options):
    torch.manual_seed(0)
    obj = objective(name, **options)
    ref, ref_src, ref_tgt = loss_and_grad(obj, under_autocast=False)
    got, got_src, got_tgt = loss_and_grad(obj, under_autocast=True)
    assert abs(ref) > 1e-6
    assert got == pytest.approx(ref, rel=1e-5)
    assert ref_src is not None
    for g, r in ((got_src, ref_src), (got_tgt, ref_tgt)):
        if r is None:  # l2's frozen target: no gradient either way
            assert g is None
            continue
        assert torch.allclose(g, r, rtol=1e-4, atol=1e-6 * r.abs().max().item())


def test_plain_loss_under_autocast_is_not_float32():
    """What objective_loss protects against: a plugin's own matmul under the autocast runs in
    bf16 (here contrastive's similarity matrix and projection head)."""
    obj = objective("contrastive", projection="linear")
    src, tgt, frozen = clustered(T, seed=1), clustered(T, seed=2, shift=0.2), clustered(T, seed=3)
    batch = make_batch(obj, src, tgt, frozen)
    ref = obj.loss(batch).item()
    with autocast(True):
        raw = obj.loss(batch).item()
    assert raw != pytest.approx(ref, rel=1e-4)


def test_third_party_objective_sees_float32_without_autocast():
    """Any Objective subclass called through the recipe: float32 vectors, autocast off."""
    from xalign.recipe import objective_loss

    seen = {}

    class Probe(xalign.Objective):
        name = "probe"

        def loss(self, batch):
            seen["dtype"] = batch.src.hidden.dtype
            seen["frozen"] = batch.tgt_frozen.hidden.dtype
            seen["autocast"] = torch.is_autocast_enabled("cpu")
            x, _ = batch.src.words_vectors()
            return (x @ x.transpose(1, 2)).mean()

    hidden = clustered(T, seed=1).bfloat16().requires_grad_()
    batch = AlignmentBatch("de-en", side(hidden, "de"), side(hidden, "en"), side(hidden, "en"))
    with autocast(True):
        value = objective_loss(Probe(hidden_size=H), batch)
    assert seen == {"dtype": torch.float32, "frozen": torch.float32, "autocast": False}
    assert value.dtype == torch.float32
    value.backward()
    assert hidden.grad is not None and hidden.grad.dtype == torch.bfloat16


def test_drift_regulariser_under_autocast_is_float32():
    from xalign.recipe import drift_regulariser

    tuned = clustered(T, seed=1).requires_grad_()
    frozen = clustered(T, seed=2)
    ref = drift_regulariser(side(tuned, "en"), side(frozen, "en"))
    (ref_grad,) = torch.autograd.grad(ref, tuned)
    with autocast(True):
        got = drift_regulariser(side(tuned, "en"), side(frozen, "en"))
    (got_grad,) = torch.autograd.grad(got, tuned)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(ref.item(), rel=1e-6)
    assert torch.allclose(got_grad, ref_grad, rtol=1e-6)


def divergence(x, xm, y, ym, *, under_autocast: bool, **kw) -> tuple[float, torch.Tensor]:
    x = x.clone().requires_grad_()
    with autocast(under_autocast):
        value = xalign.sinkhorn_divergence(x, xm, y, ym, **kw).sum()
    value.backward()
    return value.item(), x.grad


@pytest.mark.parametrize(
    "kw",
    [{}, {"p": 1}, {"reach": 1.0}, {"debias": False, "diameter": 10.0}, {"weights": True}],
)
def test_sinkhorn_divergence_under_autocast(kw):
    x, y = clustered(T, seed=4), clustered(T - 1, seed=5, shift=0.3)
    xm = torch.ones(B, T, dtype=torch.bool)
    ym = torch.ones(B, T - 1, dtype=torch.bool)
    ym[1, -2:] = False
    if kw.pop("weights", False):
        kw = {"x_weights": torch.rand(B, T) + 0.1, "y_weights": torch.rand(B, T - 1) + 0.1}
    ref, ref_grad = divergence(x, xm, y, ym, under_autocast=False, **kw)
    got, got_grad = divergence(x, xm, y, ym, under_autocast=True, **kw)
    assert ref > 1e-3
    assert got == pytest.approx(ref, rel=1e-5)
    assert torch.allclose(got_grad, ref_grad, rtol=1e-4, atol=1e-6 * ref_grad.abs().max().item())


def test_sinkhorn_divergence_2d_and_bf16_inputs():
    """2-D clouds, and bf16 tensors given directly: computed in float32 from their values."""
    x, y = clustered(T, seed=6)[0], clustered(T, seed=7, shift=0.3)[0]
    mx, my = torch.ones(T, dtype=torch.bool), torch.ones(T, dtype=torch.bool)
    xb, yb = x.bfloat16(), y.bfloat16()
    ref = xalign.sinkhorn_divergence(xb.float(), mx, yb.float(), my)
    with autocast(True):
        got = xalign.sinkhorn_divergence(xb, mx, yb, my)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(ref.item(), rel=1e-5)


def test_transport_plan_and_extraction_under_autocast():
    from xalign.alignment.extract import ExtractConfig

    x, y = clustered(T, seed=8)[0], clustered(T - 2, seed=9, shift=0.3)[0]
    kw = {"blur": 0.3, "max_iter": 50}
    ref = xalign.transport_plan(x, y, **kw)
    ref_cos = xalign.cosine_similarity(x, y)
    config = ExtractConfig(normalize=False)
    ref_ot = xalign.ot_plan(x, y, config)
    with autocast(True):
        got = xalign.transport_plan(x, y, **kw)
        got_bf16_in = xalign.transport_plan(x.bfloat16(), y.bfloat16(), **kw)
        got_cos = xalign.cosine_similarity(x, y)
        got_ot = xalign.ot_plan(x, y, config)
    assert got.dtype == got_cos.dtype == got_ot.dtype == torch.float32
    assert torch.allclose(got, ref, rtol=1e-5, atol=1e-8)
    assert torch.allclose(got_ot, ref_ot, rtol=1e-5, atol=1e-8)
    assert torch.allclose(got_cos, ref_cos, rtol=1e-6, atol=1e-7)
    assert got_bf16_in.dtype == torch.float32
    # the plan of the bf16-rounded points, computed in float32
    ref_rounded = xalign.transport_plan(x.bfloat16().float(), y.bfloat16().float(), **kw)
    assert torch.allclose(got_bf16_in, ref_rounded, rtol=1e-5, atol=1e-8)


def test_bf16_training_calls_objectives_in_float32(tiny_model, tmp_path, tracking_uri, one_thread):
    """train.mixed_precision=bf16 on the CPU: the encoder runs under the autocast, the
    objective sees float32 vectors with the autocast off."""
    from accelerate.state import AcceleratorState

    from xalign.config import load_config
    from xalign.recipe import AlignmentRecipe

    AcceleratorState._reset_state(True)  # an earlier test's Accelerator had no mixed precision
    cfg = load_config(
        objectives=["sinkhorn"],
        overrides=[
            f"model.name={tiny_model}",
            "data.limit=8",
            "data.languages=[de]",
            "train.batch_size=4",
            "train.grad_accum=1",
            "train.max_steps=1",
            "train.mixed_precision=bf16",
            "train.save_model=false",
            f"train.output_dir={tmp_path / 'out'}",
            f"tracking.uri={tracking_uri}",
        ],
    )
    recipe = AlignmentRecipe(cfg, show_progress=False)
    recipe.setup()
    seen: list[tuple] = []
    sinkhorn = recipe.objectives["sinkhorn"]
    original = sinkhorn.loss

    def probe(batch):
        seen.append((batch.src.hidden.dtype, torch.is_autocast_enabled("cpu")))
        return original(batch)

    sinkhorn.loss = probe
    encoded: list[bool] = []
    encode = recipe._encode_batch

    def encode_probe(*args):
        encoded.append(torch.is_autocast_enabled("cpu"))
        return encode(*args)

    recipe._encode_batch = encode_probe
    try:
        recipe.train()
    finally:
        recipe.cleanup()
        AcceleratorState._reset_state(True)
    assert encoded == [True]  # the encoder did run under the bf16 autocast
    assert seen == [(torch.float32, False)]
