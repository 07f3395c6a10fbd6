"""Frozen-encoder probes: embed once, fit a linear classifier on English, test elsewhere.

A probe measures what a model's representations already hold, without fine-tuning the encoder:
no optimiser noise, no head initialisation, no data order — the same model gives the same
score on every run, so differences between two models are differences between their vectors.
This is the standard "linear probing" view of cross-lingual transfer (Conneau et al., ACL
2018, SentEval; for XNLI features the [u, v, |u−v|, u∗v] of InferSent, Conneau et al., EMNLP
2017, §3.1).

The classifier is scikit-learn's L2-regularised multinomial logistic regression (L-BFGS) on
standardised features (mean and variance of the training features): deterministic for a given
training set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor


@dataclass
class ProbeSettings:
    """Options every frozen-encoder probe shares, checked once (``xnli-probe``, ``pos-probe``).

    - ``layer``: hidden-state index the features are read from (``-1`` = last, ``0`` = the
      embeddings).
    - ``pooling``: token states -> feature vector, one of the class's ``POOLINGS`` (here
      ``mean`` or ``cls``).
    - ``train_limit``: first (or evenly spread) N training items; null = all.
    - ``test_limit``: first (or evenly spread) N test items per language; null = all.
    - ``c``: inverse L2 regularisation strength of the logistic regression (scikit-learn's
      ``C``; > 0, smaller = stronger).
    - ``max_length``: subwords per sentence (longer ones are cut; capped at the model's limit).
    - ``batch_size``: sentences per encoder forward pass (speed and memory only).

    A probe's ``Config`` extends this dataclass, re-declares the defaults that differ, may
    narrow ``POOLINGS`` and overrides a bullet above with its own (same form) where the
    meaning is narrower; a subclass ``__post_init__`` calls ``super().__post_init__()``.

    Raises:
        ValueError: a pooling outside ``POOLINGS``, ``c <= 0``, a limit < 1, ``max_length``
            or ``batch_size`` < 1 (the config loader names the task option).
    """

    POOLINGS: ClassVar[tuple[str, ...]] = ("mean", "cls")

    layer: int = -1
    pooling: str = "mean"
    train_limit: int | None = None
    test_limit: int | None = None
    c: float = 1.0
    max_length: int = 128
    batch_size: int = 64

    def __post_init__(self) -> None:
        if self.pooling not in self.POOLINGS:
            raise ValueError(f"pooling must be one of {self.POOLINGS}, got {self.pooling!r}")
        if not self.c > 0:
            raise ValueError(f"c must be > 0, got {self.c}")
        for key in ("train_limit", "test_limit"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ValueError(f"{key} must be >= 1 or null (all), got {value}")
        for key in ("max_length", "batch_size"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")


def pair_features(u: Tensor, v: Tensor) -> np.ndarray:
    """InferSent/SentEval pair features ``[u, v, |u − v|, u ∗ v]``: ``[N, H]`` x 2 -> ``[N, 4H]``
    (Conneau et al., EMNLP 2017, §3.1)."""
    if u.shape != v.shape:
        raise ValueError(f"pair_features: shapes differ, {tuple(u.shape)} vs {tuple(v.shape)}")
    return torch.cat([u, v, (u - v).abs(), u * v], dim=1).double().numpy()


@dataclass
class LinearProbe:
    """A fitted probe: ``predict(features) -> labels``. Build it with :func:`fit_linear_probe`."""

    model: object
    mean: np.ndarray
    scale: np.ndarray
    n_train: int

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Predicted labels ``[N]`` of features ``[N, D]`` (standardised as the training set)."""
        x = (np.asarray(features, dtype=np.float64) - self.mean) / self.scale
        return self.model.predict(x)  # type: ignore[attr-defined]


def fit_linear_probe(
    features: np.ndarray,
    labels: Sequence[int] | np.ndarray,
    *,
    c: float = 1.0,
    max_iter: int = 1000,
) -> LinearProbe:
    """Fit L2-regularised multinomial logistic regression (scikit-learn, L-BFGS) on
    standardised ``features`` ``[N, D]`` with integer ``labels`` ``[N]``.

    ``c``: inverse regularisation strength (scikit-learn's ``C``). Deterministic: the same data
    give the same classifier. Raises ``ValueError`` for empty data, mismatched lengths or a
    single class.
    """
    from sklearn.linear_model import LogisticRegression

    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"fit_linear_probe: need features [N, D] with N >= 1, got {x.shape}")
    if len(y) != len(x):
        raise ValueError(f"fit_linear_probe: {len(x)} feature rows but {len(y)} labels")
    if len(np.unique(y)) < 2:
        raise ValueError("fit_linear_probe: the training labels hold a single class")
    mean = x.mean(0)
    scale = x.std(0)
    scale[scale == 0] = 1.0
    model = LogisticRegression(C=c, max_iter=max_iter)
    model.fit((x - mean) / scale, y)
    return LinearProbe(model, mean, scale, len(x))


__all__ = ["LinearProbe", "fit_linear_probe", "pair_features"]
