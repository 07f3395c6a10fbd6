"""Evaluation metrics: SQuAD v1.1 EM/F1, accuracy, and the mean ± std over seeds.

Return conventions: ``squad_scores`` is in percent (like the official SQuAD script);
``accuracy`` is a fraction in ``[0, 1]``. Tatoeba retrieval is the ``tatoeba`` plugin's
(``retrieval_correct``), the ratio margin the ``bucc`` plugin's (``margin_scores``) and the
paired bootstrap :func:`xalign.compare.statistics.paired_test`: one implementation each.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "accuracy",
    "exact_match",
    "f1",
    "normalize_answer",
    "seed_summary",
    "seed_text",
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
# Seed aggregation (retrieval is the tatoeba plugin's, the ratio margin bucc's, the paired
# bootstrap xalign.compare.statistics.paired_test)
# --------------------------------------------------------------------------------------------


def seed_summary(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (``ddof=1``) over seeds; std is 0 for one seed."""
    arr = np.asarray(list(values), dtype=np.float64)
    if arr.size == 0:
        raise ValueError("seed_summary needs at least one value")
    std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    return float(arr.mean()), std


def seed_text(mean: float, std: float, n_seeds: int, spec: str = ".3f", std_spec: str = "") -> str:
    """``mean ± std`` over seeds as shown in tables (``xalign eval``, ``xalign compare``, model
    cards): ``mean`` in format ``spec``, ``std`` in ``std_spec`` (default: ``spec``); one seed
    has no spread (its std is stored as 0), so just the mean. E.g. ``seed_text(61.25, 0.5, 2,
    ".2f") == "61.25 ± 0.50"``, ``seed_text(0.5, 0.0, 1) == "0.500"``."""
    core = f"{mean:{spec}}"
    return f"{core} ± {std:{std_spec or spec}}" if n_seeds > 1 else core
