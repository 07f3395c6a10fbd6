"""Sinkhorn benchmarks: batching, POT, and geomloss's ε-annealing ``scaling`` (time vs error).

Clouds are paper-sized by default (24 sentence pairs, ~40 words, 768 dims, blur 0.05 so
ε = 0.0025, p = 2): target words are source words (shuffled) plus noise, as in a parallel
sentence pair. ``--quick`` shrinks everything so the suite runs in seconds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from xalign import sinkhorn_divergence
from xalign.ot import sinkhorn_updates

BLUR = 0.05


@dataclass(frozen=True)
class Size:
    batch: int
    words: int
    dim: int
    reps: int


PAPER = Size(24, 40, 768, 3)
QUICK = Size(6, 12, 64, 1)


def paired_clouds(size: Size, seed: int = 0, dtype: torch.dtype = torch.float32):
    """``x, x_mask, y, y_mask``: ``[B, W, D]`` clouds, lengths in [W/2, W], y ≈ permuted x."""
    g = torch.Generator().manual_seed(seed)
    b, w, d = size.batch, size.words, size.dim
    lx = torch.randint(w // 2, w + 1, (b,), generator=g)
    ly = (lx + torch.randint(-2, 3, (b,), generator=g)).clamp(1, w)
    x = torch.randn(b, w, d, generator=g, dtype=torch.float64) * (8.0 / math.sqrt(d))
    y = torch.empty_like(x)
    scale = 8.0 / math.sqrt(d)
    for i in range(b):
        noise = torch.randn(w, d, generator=g, dtype=torch.float64)
        y[i] = x[i, torch.randperm(w, generator=g)] + 0.5 * scale * noise
    xm = torch.arange(w)[None, :] < lx[:, None]
    ym = torch.arange(w)[None, :] < ly[:, None]
    return x.to(dtype), xm, y.to(dtype), ym


def timed(fn: Callable[[], object], reps: int) -> float:
    """Seconds per call, after one warm-up call."""
    fn()
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - start) / reps


def batched_vs_loop(quick: bool) -> dict[str, float]:
    """One batched geomloss call (zero-weight padding) vs a per-pair loop, forward + backward."""
    size = QUICK if quick else PAPER
    x, xm, y, ym = paired_clouds(size)
    x.requires_grad_(True)

    def batched() -> None:
        sinkhorn_divergence(x, xm, y, ym, blur=BLUR).mean().backward()

    def looped() -> None:
        total = sum(
            sinkhorn_divergence(x[b][xm[b]], xm[b][xm[b]], y[b][ym[b]], ym[b][ym[b]], blur=BLUR)
            for b in range(size.batch)
        )
        (total / size.batch).backward()

    tb, tl = timed(batched, size.reps), timed(looped, size.reps)
    return {
        "sinkhorn_batched_vs_loop": tl / tb,
        "sinkhorn_batched_ms": tb * 1e3,
        "sinkhorn_loop_ms": tl * 1e3,
    }


def vs_pot_loop(quick: bool) -> dict[str, float]:
    """Batched geomloss S_ε vs POT's log-domain Sinkhorn per pair at the same ε (forward only).

    POT computes OT_ε(x, y), OT_ε(x, x), OT_ε(y, y) per pair (the three terms of S_ε) with
    ``ot.sinkhorn2(method="sinkhorn_log")`` on the cost ½‖x−y‖², ε = blur².
    """
    import ot

    size = QUICK if quick else PAPER
    x, xm, y, ym = paired_clouds(size)
    eps = BLUR**2

    def ours() -> None:
        with torch.no_grad():
            sinkhorn_divergence(x, xm, y, ym, blur=BLUR)

    def pot() -> None:
        for b in range(size.batch):
            xs, ys = x[b][xm[b]].double(), y[b][ym[b]].double()
            a = torch.full((len(xs),), 1.0 / len(xs), dtype=torch.float64)
            c = torch.full((len(ys),), 1.0 / len(ys), dtype=torch.float64)
            for u, wu, v, wv in ((xs, a, ys, c), (xs, a, xs, a), (ys, c, ys, c)):
                cost = torch.cdist(u, v) ** 2 / 2
                ot.sinkhorn2(
                    wu, wv, cost, eps, method="sinkhorn_log", numItermax=2000, stopThr=1e-9
                )

    t_ours, t_pot = timed(ours, size.reps), timed(pot, max(1, size.reps // 3))
    return {"sinkhorn_vs_pot_loop": t_pot / t_ours, "pot_loop_ms": t_pot * 1e3}


def _converged(x: torch.Tensor, y: torch.Tensor, eps: float) -> tuple[float, torch.Tensor]:
    """Converged OT_ε(x, y) (dual value) and its plan, float64, uniform weights.

    Starts from geomloss's potentials at scaling 0.99 and runs log-domain Sinkhorn updates at
    the final ε until the potentials move by < 1e-12·ε.
    """
    from geomloss import SamplesLoss

    n, m = len(x), len(y)
    a = x.new_full((n,), 1.0 / n)
    b = y.new_full((m,), 1.0 / m)
    loss = SamplesLoss(
        "sinkhorn",
        p=2,
        blur=math.sqrt(eps),
        scaling=0.99,
        debias=False,
        potentials=True,
        backend="tensorized",
    )
    f, g = (t.reshape(-1) for t in loss(a, x, b, y))
    cost = torch.cdist(x, y) ** 2 / 2
    f, g = sinkhorn_updates(f, g, cost, a, b, eps, max_iter=50_000, tol=1e-12)
    value = float((a * f).sum() + (b * g).sum())
    plan = a[:, None] * b[None, :] * torch.exp((f[:, None] + g[None, :] - cost) / eps)
    return value, plan


def reference(x, xm, y, ym, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Converged S_ε per pair ``[B]`` and ∂(Σ_b S_ε)/∂x ``[B, W, D]`` (envelope theorem).

    ∂OT_ε(α, β)/∂x_i = Σ_j π_ij (x_i − y_j) for the cost ½‖x−y‖²; for the debiasing term
    ½·OT_ε(α, α) the derivative is Σ_k π^xx_ik (x_i − x_k) (x appears on both sides).
    """
    values = torch.zeros(len(x), dtype=torch.float64)
    grad = torch.zeros_like(x, dtype=torch.float64)
    for b in range(len(x)):
        xs, ys = x[b][xm[b]].double(), y[b][ym[b]].double()
        v_xy, p_xy = _converged(xs, ys, eps)
        v_xx, p_xx = _converged(xs, xs, eps)
        v_yy, _ = _converged(ys, ys, eps)
        values[b] = v_xy - 0.5 * v_xx - 0.5 * v_yy
        g_xy = p_xy.sum(1)[:, None] * xs - p_xy @ ys
        g_xx = p_xx.sum(1)[:, None] * xs - p_xx @ xs
        grad[b][xm[b]] = g_xy - g_xx
    return values, grad


def scaling_error(quick: bool, scalings: tuple[float, ...] = (0.5, 0.9, 0.99)) -> dict[str, float]:
    """Value and gradient error of geomloss's S_ε against the converged divergence, and time.

    Errors are relative: |S − S*| / |S*| averaged over pairs (value) and ‖∇ − ∇*‖ / ‖∇*‖ over
    the whole batch (gradient w.r.t. the source cloud), in float64.
    """
    size = QUICK if quick else Size(PAPER.batch, PAPER.words, PAPER.dim, 1)
    x, xm, y, ym = paired_clouds(size, dtype=torch.float64)
    ref_v, ref_g = reference(x, xm, y, ym, BLUR**2)
    out: dict[str, float] = {}
    sinkhorn_divergence(x, xm, y, ym, blur=BLUR, scaling=scalings[0])  # warm-up (first call)
    for s in scalings:
        xg = x.clone().requires_grad_(True)
        start = time.perf_counter()
        v = sinkhorn_divergence(xg, xm, y, ym, blur=BLUR, scaling=s)
        v.sum().backward()
        seconds = time.perf_counter() - start
        value_err = float(((v.detach() - ref_v).abs() / ref_v.abs()).mean())
        grad_err = float((xg.grad - ref_g).norm() / ref_g.norm())
        out[f"sinkhorn_scaling_{s}_value_rel_err"] = value_err
        out[f"sinkhorn_scaling_{s}_grad_rel_err"] = grad_err
        out[f"sinkhorn_scaling_{s}_ms"] = seconds * 1e3
    return out
