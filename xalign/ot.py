"""Sinkhorn divergences and transport plans with geomloss, batched with zero-weight padding.

Conventions are geomloss's: cost ``C(x, y) = ||x - y||^p / p`` (so ½‖x−y‖² for p=2),
entropic temperature ``ε = blur^p`` (blur=0.05 -> ε=0.0025), ``debias=True`` gives the
Sinkhorn *divergence* S_ε(α,β) = OT_ε(α,β) − ½OT_ε(α,α) − ½OT_ε(β,β) ≥ 0, and
``reach=None`` is balanced OT (a number = unbalanced OT with KL marginal penalty ρ=reach^p).

OT_ε is the *entropic OT value* min_π ⟨π, C⟩ + ε KL(π | α⊗β), which geomloss evaluates as
the dual objective ⟨α, f⟩ + ⟨β, g⟩ at its final potentials. geomloss runs a fixed number of
symmetric Sinkhorn updates along its ε-annealing schedule (from ``diameter^p`` down to
``blur^p`` by factors ``scaling^p``) rather than iterating to a tolerance, so the value is
only approximately converged: with the default ``scaling=0.5`` it can be a few percent below
the converged OT_ε; ``scaling ≥ 0.99`` brings it within ~1e-3 (see ``tests/test_sinkhorn.py``).
Gradients use the envelope theorem (the last, differentiable Sinkhorn update).

Degenerate clouds. geomloss starts its ε-annealing at ε = diameter^p, the diameter being the
diagonal of the bounding box of all points of the call; when every point coincides (one point
on each side, several identical points, x = y) that diameter is 0 and geomloss fails with
``Maximum allowed size exceeded`` (log 0). :func:`annealing_diameter` computes the same
estimate and, only when its p-th power is 0 or below the dtype's smallest normal number,
replaces it by ``blur``: the schedule is then two Sinkhorn updates at the final ε = blur^p,
which are exact for a cloud with no extent (S_ε = 0, zero gradient); :func:`transport_plan`
returns the exact plan a⊗b of a zero cost matrix directly. Every other call gets geomloss's
own estimate, so results for non-degenerate clouds are unchanged.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import TypeVar

import torch
from geomloss import SamplesLoss
from torch import Tensor

from xalign.errors import XalignError


class PointCloudError(XalignError, ValueError):
    """A point cloud or OT option that no transport can be computed for (e.g. no points)."""


# ------------------------------------------------------------------ float32 under autocast
#
# geomloss's tensorized cost is ½(‖x‖² + ‖y‖² − 2⟨x, y⟩): under a bf16 autocast the matmul
# ⟨x, y⟩ runs in bf16 (8 mantissa bits), and for word vectors that share a large component
# (|x| ≈ 20-40, distances ≈ 1) the three terms cancel: the divergence came out 65-72 % low and
# its gradient 80-105 % off. OT (and every loss) is therefore computed in float32 whatever
# autocast is active; the encoder in front of it may still run in bf16.

_LOW = (torch.float16, torch.bfloat16)
F = TypeVar("F", bound=Callable[..., object])


def as_float32(t: Tensor | None) -> Tensor | None:
    """``t`` in float32 when it is a half-precision float tensor (float64 and integer/bool
    tensors are kept); None stays None."""
    return t.float() if t is not None and t.dtype in _LOW else t


@contextlib.contextmanager
def full_precision() -> Iterator[None]:
    """Disable every active autocast (CPU, CUDA, MPS, ...) inside the block.

    Operations then run in their inputs' dtype: cast half-precision inputs with
    :func:`as_float32` first. Gradients flow through unchanged (the casts are differentiable).
    """
    with contextlib.ExitStack() as stack:
        for device in ("cpu", "cuda", "mps", "xpu"):
            try:
                active = torch.is_autocast_enabled(device)
            except (RuntimeError, TypeError):  # older torch or a device type it does not know
                active = device == "cuda" and torch.is_autocast_enabled()
            if active:
                stack.enter_context(torch.autocast(device, enabled=False))
        yield


def in_full_precision(fn: F) -> F:
    """Decorator: run ``fn`` under :func:`full_precision` with every half-precision tensor
    argument cast to float32."""

    @functools.wraps(fn)
    def wrapper(*args: object, **kwargs: object) -> object:
        args = tuple(as_float32(a) if isinstance(a, Tensor) else a for a in args)
        kwargs = {k: as_float32(v) if isinstance(v, Tensor) else v for k, v in kwargs.items()}
        with full_precision():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def annealing_diameter(
    x: Tensor, y: Tensor, *, p: int, blur: float, diameter: float | None = None
) -> float:
    """Start of geomloss's ε-annealing (its ``max_diameter``), floored for degenerate clouds.

    ``x`` ``[..., N, D]`` and ``y`` ``[..., M, D]`` are the (padded, zeroed) points exactly as
    passed to geomloss; the estimate is the norm of the extent of their common bounding box,
    computed with geomloss's own formula so that the value is bit-identical. When it is 0 (all
    points coincide) or so small that diameter^p underflows (< ``torch.finfo(dtype).tiny``),
    ``blur`` is returned instead (see the module docstring). An explicit ``diameter`` is
    returned as is. Raises :class:`PointCloudError` for ``diameter <= 0`` or empty clouds.
    """
    if diameter is not None:
        if not diameter > 0:
            raise PointCloudError(f"OT diameter must be > 0 (or None to estimate), got {diameter}")
        return float(diameter)
    estimate = bounding_diameter(x, y)
    return float(blur) if is_degenerate(estimate, p, x.dtype) else estimate


def bounding_diameter(x: Tensor, y: Tensor) -> float:
    """Diagonal of the bounding box of all points of ``x`` ``[..., N, D]`` and ``y``.

    geomloss's ``max_diameter`` formula (same operations, so the same float). Raises
    :class:`PointCloudError` when there are no points.
    """
    dim = x.shape[-1]
    xs, ys = x.detach().reshape(-1, dim), y.detach().reshape(-1, dim)
    if xs.shape[0] == 0 or ys.shape[0] == 0:
        raise PointCloudError("a point cloud has no points")
    mins = torch.stack((xs.min(dim=0)[0], ys.min(dim=0)[0])).min(dim=0)[0]
    maxs = torch.stack((xs.max(dim=0)[0], ys.max(dim=0)[0])).max(dim=0)[0]
    return (maxs - mins).norm().item()


def is_degenerate(diameter: float, p: int, dtype: torch.dtype) -> bool:
    """Whether clouds of this bounding diameter have (numerically) no extent: diameter^p is
    0 or below ``torch.finfo(dtype).tiny`` (NaN is not degenerate: it is an error upstream)."""
    return diameter == diameter and diameter**p < torch.finfo(dtype).tiny


def masked_weights(
    mask: Tensor, weights: Tensor | None = None, dtype: torch.dtype = torch.float32
) -> Tensor:
    """Probability weights over real points: uniform (or ``weights``) renormalised, 0 on padding."""
    w = mask.to(dtype) if weights is None else weights.to(dtype) * mask.to(dtype)
    total = w.sum(-1, keepdim=True)
    if bool((total <= 0).any()):
        raise PointCloudError("a point cloud has no real points (empty sentence after masking)")
    return w / total


@in_full_precision
def sinkhorn_divergence(
    x: Tensor,
    x_mask: Tensor,
    y: Tensor,
    y_mask: Tensor,
    *,
    p: int = 2,
    blur: float = 0.05,
    scaling: float = 0.5,
    debias: bool = True,
    reach: float | None = None,
    diameter: float | None = None,
    x_weights: Tensor | None = None,
    y_weights: Tensor | None = None,
    backend: str = "tensorized",
) -> Tensor:
    """S_ε between each pair of clouds ``x[b]`` (``[B, N, D]``) and ``y[b]`` (``[B, M, D]``).

    Padding (``mask == False``) gets zero weight. geomloss anneals ε from the ``diameter`` of
    the point clouds down to blur^p; with ``diameter=None`` it estimates one diameter from the
    whole batched call, so a pair's value depends (slightly) on its batch-mates. Pass a fixed
    ``diameter`` to make one batched call equal per-pair calls on the unpadded clouds.
    ``x_weights``/``y_weights`` (``[B, N]``/``[B, M]``, non-negative) replace the uniform
    weights; they are renormalised over the real points. Returns ``[B]`` (a scalar for 2-D
    inputs). Degenerate clouds (all points equal) give 0 with a zero gradient
    (:func:`annealing_diameter`). Computed in float32 (half-precision inputs are cast, any
    autocast is disabled inside: see :func:`full_precision`); the result is float32.
    """
    if x.dim() == 2:
        return sinkhorn_divergence(
            x[None],
            x_mask[None],
            y[None],
            y_mask[None],
            p=p,
            blur=blur,
            scaling=scaling,
            debias=debias,
            reach=reach,
            diameter=diameter,
            backend=backend,
            x_weights=None if x_weights is None else x_weights[None],
            y_weights=None if y_weights is None else y_weights[None],
        )[0]
    if backend in ("online", "multiscale"):
        try:
            import pykeops  # noqa: F401
        except ImportError:
            raise ValueError(
                f"backend={backend!r} needs pykeops (pip install pykeops); "
                f"backend='tensorized' needs nothing more"
            ) from None
    a = masked_weights(x_mask, x_weights, x.dtype)
    b = masked_weights(y_mask, y_weights, y.dtype)
    # Zero the padded coordinates so they cannot blow up the cost scale estimate.
    x = (x * x_mask[..., None].to(x.dtype)).contiguous()
    y = (y * y_mask[..., None].to(y.dtype)).contiguous()
    diameter = annealing_diameter(x, y, p=p, blur=blur, diameter=diameter)
    loss = SamplesLoss(
        "sinkhorn",
        p=p,
        blur=blur,
        scaling=scaling,
        debias=debias,
        reach=reach,
        diameter=diameter,
        backend=backend,
    )
    return loss(a, x, b, y)


@torch.no_grad()
@in_full_precision
def transport_plan(
    x: Tensor,
    y: Tensor,
    *,
    p: int = 2,
    blur: float = 0.05,
    scaling: float = 0.5,
    reach: float | None = None,
    a: Tensor | None = None,
    b: Tensor | None = None,
    diameter: float | None = None,
    max_iter: int = 0,
    tol: float = 1e-9,
) -> Tensor:
    """Entropic transport plan ``π`` (``[N, M]``) between two clouds ``x`` and ``y``.

    Weights ``a``/``b`` default to uniform (then π sums to 1 and its rows to 1/N). Built from
    geomloss's dual potentials of OT_ε (``debias=False``):
    π_ij = a_i b_j exp((f_i + g_j − C_ij) / ε), C_ij = ‖x_i − y_j‖^p / p, ε = blur^p.
    geomloss stops after its annealing schedule, so with ``scaling=0.5`` the marginals can be
    off by tens of percent; ``max_iter`` > 0 continues with up to that many alternating
    log-domain Sinkhorn updates at the final ε until the potentials move by < ``tol``·ε.
    Degenerate clouds (all points equal, :func:`is_degenerate`; diameter not given) have a
    zero cost matrix, whose optimal plan is exactly π = a⊗b: it is returned without solving
    (so one point on each side gives ``[[1.0]]``). Computed in float32 under any autocast,
    like :func:`sinkhorn_divergence`.
    """
    n, m = x.shape[0], y.shape[0]
    a = x.new_full((n,), 1.0 / n) if a is None else (a / a.sum()).to(x.dtype)
    b = y.new_full((m,), 1.0 / m) if b is None else (b / b.sum()).to(y.dtype)
    if diameter is None and is_degenerate(bounding_diameter(x, y), p, x.dtype):
        return a[:, None] * b[None, :]
    diameter = annealing_diameter(x, y, p=p, blur=blur, diameter=diameter)
    loss = SamplesLoss(
        "sinkhorn",
        p=p,
        blur=blur,
        scaling=scaling,
        debias=False,
        reach=reach,
        diameter=diameter,
        potentials=True,
        backend="tensorized",
    )
    f, g = (t.reshape(-1) for t in loss(a, x, b, y))  # geomloss 0.3 returns [1, N], [1, M]
    cost = torch.cdist(x, y) ** p / p
    eps = blur**p
    rho = None if reach is None else reach**p
    f, g = sinkhorn_updates(f, g, cost, a, b, eps, rho, max_iter=max_iter, tol=tol)
    return a[:, None] * b[None, :] * torch.exp((f[:, None] + g[None, :] - cost) / eps)


def sinkhorn_updates(
    f: Tensor,
    g: Tensor,
    cost: Tensor,
    a: Tensor,
    b: Tensor,
    eps: float,
    rho: float | None = None,
    *,
    max_iter: int,
    tol: float = 1e-9,
) -> tuple[Tensor, Tensor]:
    """Alternating log-domain Sinkhorn updates of the potentials (geomloss's conventions).

    f_i = −d·ε·log Σ_j b_j exp((g_j − C_ij)/ε) and symmetrically for g, with the unbalanced
    damping d = 1 / (1 + ε/ρ) (d = 1 when balanced). Stops when max |Δf| < ``tol``·ε.
    """
    damping = 1.0 if rho is None else 1.0 / (1.0 + eps / rho)
    log_a, log_b = _log_weights(a), _log_weights(b)
    for _ in range(max_iter):
        f_new = -damping * eps * torch.logsumexp(log_b[None, :] + (g[None, :] - cost) / eps, 1)
        g = -damping * eps * torch.logsumexp(log_a[:, None] + (f_new[:, None] - cost) / eps, 0)
        done = bool((f_new - f).abs().max() < tol * eps)
        f = f_new
        if done:
            break
    return f, g


def _log_weights(w: Tensor) -> Tensor:
    """log of non-negative weights with −inf replaced by a large negative number."""
    return w.log().clamp(min=-1e5)
