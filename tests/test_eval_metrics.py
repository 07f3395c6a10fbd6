"""Worked examples for the evaluation metrics: xalign.evaluation.metrics, and the live
retrieval (``tatoeba`` plugin), ratio margin (``bucc`` plugin) and paired bootstrap
(:func:`xalign.compare.statistics.paired_test`) that the tasks and ``compare`` use."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from xalign_bucc.mining import margin_scores
from xalign_tatoeba import retrieval_correct

from xalign.compare.statistics import paired_test
from xalign.evaluation import (
    accuracy,
    exact_match,
    f1,
    normalize_answer,
    seed_summary,
    squad_scores,
)
from xalign.evaluation.metrics import seed_text
from xalign.task import TaskResult


def retrieval_accuracy(src: np.ndarray, tgt: np.ndarray, margin: bool = False, k: int = 4) -> float:
    """Top-1 accuracy of the live retrieval: cosine (``tatoeba``'s ``retrieval_correct``) or,
    with ``margin``, the ratio margin over the k nearest neighbours (``bucc``'s forward best)."""
    x, y = torch.tensor(src, dtype=torch.float64), torch.tensor(tgt, dtype=torch.float64)
    if not margin:
        return float(np.mean(retrieval_correct(x, y)))
    best, _ = margin_scores(x, y, k).forward_best()
    return float((best == torch.arange(len(x))).double().mean())


def paired_bootstrap(a: np.ndarray, b: np.ndarray, n: int = 1000, seed: int = 0) -> dict:
    """The live paired bootstrap (one seed of per-example scores) as a plain dict."""

    def result(scores: np.ndarray) -> dict[int, TaskResult]:
        per_example = {"de": [float(v) for v in np.asarray(scores, dtype=np.float64)]}
        return {0: TaskResult("t", "acc", {"de": {"acc": 0.0}}, per_example=per_example)}

    test = paired_test(result(a), result(b), "de", resamples=n, seed=seed)
    if test is None:
        return {}
    return {
        "delta": test.delta_examples,
        "p_value": test.p_value,
        "ci_low": test.ci_low,
        "ci_high": test.ci_high,
    }


# ------------------------------------------------------------------------------------------
# SQuAD normalisation
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The Cat", "cat"),  # case + leading article
        ("An apple a day", "apple day"),  # a/an removed as whole words
        ("Anne theory", "anne theory"),  # ... but not inside words
        ("theory of the atom", "theory of atom"),
        ("a man, a plan, a canal: Panama!", "man plan canal panama"),  # punctuation
        ("U.S.A.", "usa"),
        ("rock-n-roll", "rocknroll"),  # punctuation is deleted, not replaced by a space
        ("  Hello\tWORLD \n", "hello world"),  # whitespace fix
        ("The", ""),
        ("Über DIE Brücke", "über die brücke"),  # Unicode lowercasing; German "die" stays
        ("ÉCOLE normale", "école normale"),
        ("São\u00a0Paulo", "são paulo"),  # non-breaking space is whitespace
        ("«Paris»", "«paris»"),  # non-ASCII punctuation kept, as in the official script
        ("東京。", "東京。"),
    ],
)
def test_normalize_answer(text: str, expected: str) -> None:
    assert normalize_answer(text) == expected


def test_exact_match_multi_gold() -> None:
    assert exact_match("the Eiffel Tower", ["Eiffel Tower", "Paris"]) == 1.0
    assert exact_match("Paris.", ["Eiffel Tower", "paris"]) == 1.0
    assert exact_match("Eiffel", ["Eiffel Tower", "Paris"]) == 0.0
    assert exact_match("Eiffel Tower", "eiffel tower!") == 1.0  # a single gold string
    assert exact_match("the", "a") == 1.0  # both normalise to "" (official v1.1 behaviour)


def test_f1_multi_gold() -> None:
    # pred tokens: eiffel tower in paris (4).
    # gold 1 "eiffel tower": overlap 2, P=1/2, R=1 -> 2/3; gold 2 "paris france": 1/3.
    golds = ["the Eiffel Tower", "Paris, France"]
    assert f1("Eiffel Tower in Paris", golds) == pytest.approx(2 / 3)
    assert f1("Paris", ["Paris, France"]) == pytest.approx(2 / 3)  # P=1, R=1/2
    assert f1("Eiffel Tower", ["Eiffel Tower", "Paris"]) == 1.0


def test_f1_counts_repeated_tokens_once_per_match() -> None:
    # "cat cat" vs "cat": overlap min(2, 1) = 1, P=1/2, R=1 -> 2/3.
    assert f1("the cat cat", "cat") == pytest.approx(2 / 3)


def test_f1_empty_cases() -> None:
    assert f1("", "answer") == 0.0
    assert f1("the", "a") == 0.0  # v1.1: no common token -> 0, even if both are empty
    assert f1("blue", ["red", "green"]) == 0.0
    with pytest.raises(ValueError):
        f1("x", [])


def _flat_dataset() -> list[dict]:
    return [
        {"id": "q1", "answers": {"text": ["Denver Broncos", "Broncos"], "answer_start": [0, 7]}},
        {"id": "q2", "answers": {"text": ["Eiffel Tower", "Paris"], "answer_start": [0, 20]}},
        {"id": "q3", "answers": {"text": ["1990"], "answer_start": [5]}},
    ]


def test_squad_scores_flat_and_nested() -> None:
    preds = {
        "q1": "the Broncos",  # EM 1, F1 1
        "q2": "Eiffel Tower in Paris",  # EM 0, F1 2/3
        # q3 missing -> 0 / 0
        "unknown": "ignored",
    }
    scores = squad_scores(preds, _flat_dataset())
    assert scores["exact_match"] == pytest.approx(100 / 3)
    assert scores["f1"] == pytest.approx(100 * (1 + 2 / 3) / 3)

    nested = {
        "version": "1.1",
        "data": [
            {
                "title": "t",
                "paragraphs": [
                    {
                        "context": "c",
                        "qas": [
                            {"id": ex["id"], "question": "?", "answers": _answer_list(ex)}
                            for ex in _flat_dataset()
                        ],
                    }
                ],
            }
        ],
    }
    assert squad_scores(preds, nested) == pytest.approx(scores)


def _answer_list(example: dict) -> list[dict]:
    answers = example["answers"]
    return [
        {"text": t, "answer_start": s}
        for t, s in zip(answers["text"], answers["answer_start"], strict=True)
    ]


def test_squad_scores_perfect() -> None:
    preds = {"q1": "Broncos", "q2": "Paris", "q3": "1990"}
    assert squad_scores(preds, _flat_dataset()) == {"exact_match": 100.0, "f1": 100.0}


# ------------------------------------------------------------------------------------------
# Accuracy
# ------------------------------------------------------------------------------------------


def test_accuracy() -> None:
    assert accuracy([0, 1, 2, 1], [0, 1, 1, 1]) == 0.75
    assert accuracy(np.array([2, 2]), np.array([2, 2])) == 1.0
    with pytest.raises(ValueError):
        accuracy([0, 1], [0])
    with pytest.raises(ValueError):
        accuracy([], [])


# ------------------------------------------------------------------------------------------
# Retrieval
# ------------------------------------------------------------------------------------------


def test_retrieval_two_of_three() -> None:
    src = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.05]])
    tgt = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.1, 0.0]])
    # row 2 (cos 0.994 with its gold) is closer to target 0 (cos 0.999): 2/3 correct.
    assert retrieval_accuracy(src, tgt) == pytest.approx(2 / 3)
    # cosine ignores the scale of the rows
    assert retrieval_accuracy(src * np.array([[3.0], [0.5], [7.0]]), tgt * 2.0) == pytest.approx(
        2 / 3
    )


def test_retrieval_identity_and_distractors() -> None:
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(20, 8))
    assert retrieval_accuracy(emb, emb) == 1.0
    distractors = rng.normal(size=(5, 8))
    assert retrieval_accuracy(emb, np.vstack([emb, distractors])) == 1.0
    with pytest.raises(ValueError):
        retrieval_accuracy(emb, emb[:10])  # fewer targets than sources
    with pytest.raises(ValueError):
        retrieval_accuracy(emb, emb[:, :4])


def _hub_case(n: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Target 0 is a hub: cos 1/3 to every source, above the true pairs' cos 0.3."""
    dim = 2 * n
    src = np.eye(n, dim)
    tgt = np.zeros((n, dim))
    tgt[0, :n] = 1.0
    tgt[0, 0] = 2.0
    tgt[0] /= np.linalg.norm(tgt[0])  # cos 2/3 with source 0, 1/3 with the others
    for i in range(1, n):
        tgt[i, i] = 0.3
        tgt[i, n + i] = math.sqrt(1 - 0.09)  # cos 0.3 with source i, 0 with the others
    return src, tgt


def test_retrieval_hub_cosine_vs_margin() -> None:
    src, tgt = _hub_case()
    assert retrieval_accuracy(src, tgt) == pytest.approx(1 / 6)  # every query hits the hub
    assert retrieval_accuracy(src, tgt, margin=True) == 1.0  # the ratio margin discounts it
    assert retrieval_accuracy(src, tgt, margin=True, k=2) == 1.0


# ------------------------------------------------------------------------------------------
# Significance and seeds
# ------------------------------------------------------------------------------------------


def test_paired_bootstrap_identical_systems() -> None:
    scores = np.random.default_rng(1).random(400) < 0.7
    result = paired_bootstrap(scores, scores.copy(), n=500)
    assert result == {"delta": 0.0, "p_value": 1.0, "ci_low": 0.0, "ci_high": 0.0}
    assert paired_bootstrap(scores, scores, n=200)["p_value"] == 1.0  # two-sided


def test_paired_bootstrap_clearly_better() -> None:
    rng = np.random.default_rng(2)
    better = rng.random(500) < 0.8
    worse = rng.random(500) < 0.5
    result = paired_bootstrap(better, worse, n=1000, seed=0)
    assert result["delta"] == pytest.approx(better.mean() - worse.mean())
    assert result["delta"] > 0.2
    assert result["p_value"] < 0.05
    assert 0.0 < result["ci_low"] < result["delta"] < result["ci_high"]
    # the other direction: A is worse, so "A better than B" is not supported (two-sided test:
    # the interval lies below 0)
    other = paired_bootstrap(worse, better)
    assert other["delta"] < 0.0 and other["ci_high"] < 0.0 and other["p_value"] < 0.05


def test_paired_bootstrap_deterministic_and_float_scores() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.random(300), rng.random(300)  # per-example F1-like scores
    assert paired_bootstrap(a, b, n=300, seed=7) == paired_bootstrap(a, b, n=300, seed=7)
    assert paired_bootstrap(a, b[:10]) == {}  # unequal lengths: no test


def test_seed_summary() -> None:
    assert seed_summary([1.0, 2.0, 3.0]) == (2.0, 1.0)  # sample std (ddof=1)
    mean, std = seed_summary([0.5, 0.7])
    assert mean == pytest.approx(0.6)
    assert std == pytest.approx(math.sqrt(0.02))
    assert seed_summary([5.0]) == (5.0, 0.0)
    with pytest.raises(ValueError):
        seed_summary([])


@pytest.mark.parametrize(
    ("args", "text"),
    [
        ((61.25, 0.5, 2, ".2f"), "61.25 ± 0.50"),
        ((0.5, 0.0, 1), "0.500"),  # one seed: no spread
        ((-0.25, 0.0125, 3), "-0.250 ± 0.013"),
        ((4383.0, 12.0, 2, ".0f"), "4383 ± 12"),
        ((4383.0, 12.5, 2, ".0f", ".2f"), "4383 ± 12.50"),
        ((0.123456789, 0.0123456, 3, ".6g", ".3g"), "0.123457 ± 0.0123"),
    ],
)
def test_seed_text(args, text) -> None:
    assert seed_text(*args) == text
