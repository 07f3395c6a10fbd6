"""Sinkhorn divergences and transport plans with geomloss, batched with zero-weight padding.

Conventions are geomloss's: cost ``C(x, y) = ||x - y||^p / p`` (so ½‖x−y‖² for p=2),
entropic temperature ``ε = blur^p`` (blur=0.05 -> ε=0.0025), ``debias=True`` gives the
Sinkhorn *divergence* S_ε(α,β) = OT_ε(α,β) − ½OT_ε(α,α) − ½OT_ε(β,β) ≥ 0, and
``reach=None`` is balanced OT (a number = unbalanced OT with KL marginal penalty ρ=reach^p).
"""

from __future__ import annotations

import torch
from geomloss import SamplesLoss
from torch import Tensor


def masked_weights(mask: Tensor, weights: Tensor | None = None) -> Tensor:
    """Probability weights over real points: uniform (or ``weights``) renormalised, 0 on padding."""
    w = mask.to(torch.float32) if weights is None else weights.float() * mask
    total = w.sum(-1, keepdim=True)
    if bool((total <= 0).any()):
        raise ValueError("a point cloud has no real points (empty sentence after masking)")
    return w / total


def sinkhorn_divergence(x: Tensor, x_mask: Tensor, y: Tensor, y_mask: Tensor, *,
                        p: int = 2, blur: float = 0.05, scaling: float = 0.5,
                        debias: bool = True, reach: float | None = None,
                        diameter: float | None = None, x_weights: Tensor | None = None,
                        y_weights: Tensor | None = None, backend: str = "tensorized") -> Tensor:
    """S_ε between each pair of clouds ``x[b]`` (``[B, N, D]``) and ``y[b]`` (``[B, M, D]``).

    Padding (``mask == False``) gets zero weight. geomloss anneals ε from the ``diameter`` of
    the point clouds down to blur^p; with ``diameter=None`` it estimates one diameter from the
    whole batched call, so a pair's value depends (slightly) on its batch-mates. Pass a fixed
    ``diameter`` to make one batched call equal per-pair calls on the unpadded clouds.
    Returns ``[B]``.
    """
    if x.dim() == 2:
        return sinkhorn_divergence(x[None], x_mask[None], y[None], y_mask[None], p=p, blur=blur,
                                   scaling=scaling, debias=debias, reach=reach,
                                   diameter=diameter, x_weights=None if x_weights is None else x_weights[None],
                                   y_weights=None if y_weights is None else y_weights[None],
                                   backend=backend)[0]
    a = masked_weights(x_mask, x_weights)
    b = masked_weights(y_mask, y_weights)
    loss = SamplesLoss("sinkhorn", p=p, blur=blur, scaling=scaling, debias=debias, reach=reach,
                       diameter=diameter, backend=backend)
    # Zero the padded coordinates so they cannot blow up the cost scale estimate.
    x = x * x_mask[..., None].to(x.dtype)
    y = y * y_mask[..., None].to(y.dtype)
    return loss(a.to(x.dtype), x.contiguous(), b.to(y.dtype), y.contiguous())


@torch.no_grad()
def transport_plan(x: Tensor, y: Tensor, *, p: int = 2, blur: float = 0.05,
                   scaling: float = 0.5, reach: float | None = None) -> Tensor:
    """Entropic transport plan ``π`` (``[N, M]``, sums to 1) between two uniform clouds.

    Built from geomloss's dual potentials: π_ij = a_i b_j exp((f_i + g_j − C_ij) / ε).
    """
    n, m = x.shape[0], y.shape[0]
    a = torch.full((n,), 1.0 / n, dtype=x.dtype, device=x.device)
    b = torch.full((m,), 1.0 / m, dtype=y.dtype, device=y.device)
    loss = SamplesLoss("sinkhorn", p=p, blur=blur, scaling=scaling, debias=False, reach=reach,
                       potentials=True, backend="tensorized")
    f, g = loss(a, x, b, y)
    eps = blur ** p
    cost = torch.cdist(x, y) ** p / p
    return a[:, None] * b[None, :] * torch.exp((f[:, None] + g[None, :] - cost) / eps)
