"""Evaluation metrics: SQuAD v1.1 EM/F1, accuracy, Tatoeba retrieval, significance tests.

Return conventions: ``squad_scores`` is in percent (like the official SQuAD script);
``accuracy`` and ``retrieval_accuracy`` are fractions in ``[0, 1]``.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np

__all__ = [
    "accuracy",
    "exact_match",
    "f1",
    "normalize_answer",
    "paired_bootstrap",
    "ratio_margin_scores",
    "retrieval_accuracy",
    "seed_summary",
    "squad_scores",
]

# --------------------------------------------------------------------------------------------
# SQuAD v1.1
# --------------------------------------------------------------------------------------------

# The official v1.1 script strips ASCII punctuation only (``string.punctuation``).
_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """Normalise an answer as SQuAD v1.1 does.

    Steps, in order: lowercase, drop ASCII punctuation, replace the English articles
    ``a``/``an``/``the`` (whole words) by a space, collapse whitespace (Unicode-aware).
    Non-ASCII punctuation such as ``«`` or ``。`` is kept, exactly as in the official script.
    """
    lowered = text.lower()
    no_punct = "".join(ch for ch in lowered if ch not in _PUNCTUATION)
    no_articles = _ARTICLES.sub(" ", no_punct)
    return " ".join(no_articles.split())


def _as_golds(golds: str | Iterable[str]) -> list[str]:
    """Accept a single gold string or an iterable of them."""
    gold_list = [golds] if isinstance(golds, str) else list(golds)
    if not gold_list:
        raise ValueError("at least one gold answer is required")
    return gold_list


def _exact_single(pred: str, gold: str) -> float:
    return float(normalize_answer(pred) == normalize_answer(gold))


def _f1_single(pred: str, gold: str) -> float:
    """Token-level F1 between two answers after normalisation (bag-of-tokens overlap)."""
    pred_tokens = normalize_answer(pred).split()
    gold_tokens = normalize_answer(gold).split()
    overlap = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(pred_tokens)
    recall = overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def exact_match(pred: str, golds: str | Iterable[str]) -> float:
    """Exact match (0.0 or 1.0) of ``pred`` against the best of ``golds``."""
    return max(_exact_single(pred, gold) for gold in _as_golds(golds))


def f1(pred: str, golds: str | Iterable[str]) -> float:
    """Token-level F1 in ``[0, 1]``, maximised over the gold answers."""
    return max(_f1_single(pred, gold) for gold in _as_golds(golds))


def _iter_gold_answers(dataset: Any) -> Iterable[tuple[str, list[str]]]:
    """Yield ``(id, gold_texts)`` from a flat HF-style list or a nested SQuAD JSON dict."""
    if isinstance(dataset, Mapping) and "data" in dataset:
        for article in dataset["data"]:
            for paragraph in article["paragraphs"]:
                for qa in paragraph["qas"]:
                    yield str(qa["id"]), [a["text"] for a in qa["answers"]]
        return
    for example in dataset:
        answers = example["answers"]
        texts = answers["text"] if isinstance(answers, Mapping) else [a["text"] for a in answers]
        yield str(example["id"]), list(texts)


def squad_scores(preds: Mapping[str, str], dataset: Any) -> dict[str, float]:
    """Corpus EM and F1 in percent, averaged over every question of ``dataset``.

    ``dataset`` is either the flat list returned by the loaders (HF ``squad`` schema) or the
    nested SQuAD v1.1 JSON dict. As in the official script, a question without a prediction
    scores 0 and predictions for unknown ids are ignored.
    """
    em_total = f1_total = 0.0
    count = 0
    for qid, golds in _iter_gold_answers(dataset):
        count += 1
        if qid not in preds:
            continue
        em_total += exact_match(preds[qid], golds)
        f1_total += f1(preds[qid], golds)
    if count == 0:
        raise ValueError("dataset contains no questions")
    return {"exact_match": 100.0 * em_total / count, "f1": 100.0 * f1_total / count}


# --------------------------------------------------------------------------------------------
# Classification
# --------------------------------------------------------------------------------------------


def accuracy(preds: Sequence[Any] | np.ndarray, labels: Sequence[Any] | np.ndarray) -> float:
    """Fraction of positions where ``preds`` equals ``labels``."""
    pred_arr, label_arr = np.asarray(preds), np.asarray(labels)
    if pred_arr.shape != label_arr.shape:
        raise ValueError(f"shape mismatch: preds {pred_arr.shape} vs labels {label_arr.shape}")
    if pred_arr.size == 0:
        raise ValueError("accuracy of an empty set is undefined")
    return float(np.mean(pred_arr == label_arr))


# --------------------------------------------------------------------------------------------
# Retrieval (Tatoeba, XTREME protocol)
# --------------------------------------------------------------------------------------------


def _l2_normalize(emb: np.ndarray) -> np.ndarray:
    emb = np.asarray(emb, dtype=np.float64)
    if emb.ndim != 2:
        raise ValueError(f"embeddings must be 2-D, got shape {emb.shape}")
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    return emb / np.maximum(norms, 1e-12)


def _mean_topk(sim: np.ndarray, k: int) -> np.ndarray:
    """Mean of the ``k`` largest values of each row."""
    k = min(k, sim.shape[1])
    top = np.partition(sim, sim.shape[1] - k, axis=1)[:, -k:]
    return top.mean(axis=1)


def ratio_margin_scores(sim: np.ndarray, k: int = 4) -> np.ndarray:
    """Ratio-margin scores (Artetxe & Schwenk, 2019) from a cosine similarity matrix.

    ``score(x, y) = cos(x, y) / (mean_kNN_tgt(x) / 2 + mean_kNN_src(y) / 2)``, which penalises
    "hub" targets that are close to many sources.
    """
    src_density = _mean_topk(sim, k)  # (n_src,)
    tgt_density = _mean_topk(sim.T, k)  # (n_tgt,)
    denom = (src_density[:, None] + tgt_density[None, :]) / 2.0
    return sim / np.where(np.abs(denom) < 1e-12, 1e-12, denom)


def retrieval_accuracy(
    src_emb: np.ndarray,
    tgt_emb: np.ndarray,
    margin: bool = False,
    k: int = 4,
) -> float:
    """Top-1 retrieval accuracy: each source row queries all target rows; gold of row i is row i.

    Similarity is cosine (XTREME Tatoeba protocol); with ``margin=True`` the ratio margin with
    ``k`` neighbours is used instead. ``tgt_emb`` may hold extra distractor rows after the
    golds. Ties go to the lowest target index.
    """
    src, tgt = _l2_normalize(src_emb), _l2_normalize(tgt_emb)
    if src.shape[1] != tgt.shape[1]:
        raise ValueError(f"dimension mismatch: {src.shape[1]} vs {tgt.shape[1]}")
    if src.shape[0] == 0 or tgt.shape[0] < src.shape[0]:
        raise ValueError("need >= 1 source row and at least as many target rows as sources")
    sim = src @ tgt.T
    if margin:
        sim = ratio_margin_scores(sim, k)
    nearest = sim.argmax(axis=1)
    return float(np.mean(nearest == np.arange(src.shape[0])))


# --------------------------------------------------------------------------------------------
# Significance and seed aggregation
# --------------------------------------------------------------------------------------------


def _bootstrap_deltas(diff: np.ndarray, n: int, seed: int, chunk: int = 100) -> np.ndarray:
    """Mean of ``diff`` over ``n`` resamples (with replacement), computed in chunks."""
    rng = np.random.default_rng(seed)
    size = diff.shape[0]
    out = np.empty(n, dtype=np.float64)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        idx = rng.integers(0, size, size=(stop - start, size))
        out[start:stop] = diff[idx].mean(axis=1)
    return out


def paired_bootstrap(
    correct_a: np.ndarray,
    correct_b: np.ndarray,
    n: int = 1000,
    seed: int = 0,
    alternative: Literal["greater", "two-sided"] = "greater",
    ci: float = 0.95,
) -> dict[str, float]:
    """Paired bootstrap test of system A vs system B over per-example scores.

    Examples are resampled with replacement (the same indices for both systems) ``n`` times.
    Returns the observed ``delta = mean(a) - mean(b)``, a percentile confidence interval
    (``ci_low``, ``ci_high``, level ``ci``) and ``p_value``:

    - ``alternative="greater"`` (default, H1: A better than B): the fraction of resamples
      with ``delta <= 0`` (Koehn, 2004).
    - ``alternative="two-sided"``: ``min(1, 2 * min(P(delta <= 0), P(delta >= 0)))``.

    Identical systems give ``delta = 0`` and ``p_value = 1``.
    """
    a = np.asarray(correct_a, dtype=np.float64).ravel()
    b = np.asarray(correct_b, dtype=np.float64).ravel()
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"need two non-empty score arrays of equal length, got {a.size}, {b.size}")
    if n < 1 or not 0.0 < ci < 1.0:
        raise ValueError("n must be >= 1 and ci in (0, 1)")
    deltas = _bootstrap_deltas(a - b, n, seed)
    p_le = float(np.mean(deltas <= 0.0))
    if alternative == "greater":
        p_value = p_le
    elif alternative == "two-sided":
        p_value = min(1.0, 2.0 * min(p_le, float(np.mean(deltas >= 0.0))))
    else:
        raise ValueError(f"unknown alternative {alternative!r}")
    tail = (1.0 - ci) / 2.0
    low, high = np.quantile(deltas, [tail, 1.0 - tail])
    return {
        "delta": float(a.mean() - b.mean()),
        "p_value": p_value,
        "ci_low": float(low),
        "ci_high": float(high),
    }


def seed_summary(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (``ddof=1``) over seeds; std is 0 for one seed."""
    arr = np.asarray(list(values), dtype=np.float64)
    if arr.size == 0:
        raise ValueError("seed_summary needs at least one value")
    std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    return float(arr.mean()), std
