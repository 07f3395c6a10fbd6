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

import numpy as np
import torch
from torch import Tensor

from xalign.encoders import Encoder

SENTENCE_POOLINGS = ("mean", "cls")


def mean_pool(hidden: Tensor, mask: Tensor) -> Tensor:
    """Masked mean of token states ``[B, T, H]`` -> ``[B, H]`` (zeros for an empty mask)."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


@torch.inference_mode()
def embed_sentences(
    encoder: Encoder,
    texts: Sequence[str],
    *,
    pooling: str = "mean",
    pool_special_tokens: bool = True,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
) -> Tensor:
    """Sentence vectors ``[N, H]`` (float32, CPU) of raw sentences at ``encoder.layer``.

    ``pooling``: ``mean`` of the token states weighted by the attention mask — XTREME's
    ``evaluate_retrieval.py`` (Tatoeba, BUCC), special tokens included unless
    ``pool_special_tokens=False`` (its ``--pool_skip_special_token``) — or ``cls``, the first
    token's state. Sentences are truncated at ``encoder.max_length`` subwords and encoded in
    length-sorted batches (less padding; the result is in the order given).
    """
    if pooling not in SENTENCE_POOLINGS:
        raise ValueError(f"unknown sentence pooling {pooling!r}; choose one of {SENTENCE_POOLINGS}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(texts)), key=lambda n: -len(texts[n]))
    out = torch.zeros(len(texts), encoder.hidden_size)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        enc = encoder.tokenizer(
            [texts[n] for n in idx],
            padding=True,
            truncation=True,
            max_length=encoder.max_length,
            return_tensors="pt",
            return_special_tokens_mask=True,
        )
        hidden = encoder(enc["input_ids"].to(device), enc["attention_mask"].to(device)).float()
        if pooling == "cls":
            out[idx] = hidden[:, 0].cpu()
            continue
        mask = enc["attention_mask"]
        if not pool_special_tokens:
            mask = mask * (1 - enc["special_tokens_mask"])
        out[idx] = mean_pool(hidden, mask.to(device)).cpu()
    return out


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


__all__ = [
    "SENTENCE_POOLINGS",
    "LinearProbe",
    "embed_sentences",
    "fit_linear_probe",
    "mean_pool",
    "pair_features",
]
