"""Alignment vs transfer: Spearman ρ of Δalignment against Δtransfer, computed by hand."""

from __future__ import annotations

import json
import math

import pytest

from xalign.compare.correlation import (
    alignment_transfer,
    bootstrap_ci,
    improvements,
    spearman,
    task_kind,
)
from xalign.compare.statistics import summarize
from xalign.task import Metric, TaskResult


def test_monotone_is_one_and_reversed_is_minus_one() -> None:
    x = [0.1, 0.4, 0.5, 2.0, 3.0]
    assert spearman(x, [1, 2, 3, 4, 50]) == pytest.approx(1.0)
    assert spearman(x, [9, 8, 7, 6, -5]) == pytest.approx(-1.0)
    # every defined resample of a monotone set is monotone: the interval is [1, 1]
    assert bootstrap_ci(x, [1, 2, 3, 4, 50]) == pytest.approx((1.0, 1.0))


def test_small_tables_by_hand() -> None:
    # ranks 1..5 against 2,1,4,3,5: Σd² = 4, ρ = 1 − 6·4 / (5·(25 − 1)) = 0.8
    assert spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(0.8)
    # ties get average ranks: y ranks (1.5, 1.5, 3); Pearson of the ranks = 1.5 / √(2·1.5)
    assert spearman([1, 2, 3], [1, 1, 2]) == pytest.approx(1.5 / math.sqrt(3.0))


def test_undefined_cases_are_nan() -> None:
    assert math.isnan(spearman([1, 2], [1, 2]))  # fewer than 3 points
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))  # a constant axis
    assert all(math.isnan(v) for v in bootstrap_ci([1, 2], [2, 1]))
    assert all(math.isnan(v) for v in bootstrap_ci([1, 1, 1], [1, 2, 3]))


def test_interval_brackets_rho_and_is_reproducible() -> None:
    x, y = [1, 2, 3, 4, 5, 6, 7, 8], [2, 1, 4, 3, 6, 5, 8, 7]
    rho = spearman(x, y)
    low, high = bootstrap_ci(x, y)
    assert low <= rho <= high < 1.0 + 1e-12 and low < rho
    assert bootstrap_ci(x, y) == (low, high)
    assert bootstrap_ci(x, y, seed=1) != (low, high)


# base, A, B on three languages; AER is lower-is-better, accuracy higher-is-better
AER = {
    "base": {"de": 0.40, "fr": 0.50, "el": 0.60},
    "A": {"de": 0.30, "fr": 0.45, "el": 0.62},  # improvements +.10, +.05, −.02
    "B": {"de": 0.38, "fr": 0.20, "el": 0.54},  # +.02, +.30, +.06
}
ACC = {
    "base": {"de": 50.0, "fr": 60.0, "el": 40.0},
    "A": {"de": 53.0, "fr": 61.0, "el": 40.5},  # +3, +1, +.5
    "B": {"de": 50.2, "fr": 64.0, "el": 42.0},  # +.2, +4, +2
}


def _summary():
    def result(task, metric, hib, scores):
        return TaskResult(
            task,
            metric,
            {lang: {metric: v} for lang, v in scores.items()},
            metrics=(Metric(metric, higher_is_better=hib),),
        )

    results = {
        row: {
            "toy-align": {0: result("toy-align", "aer", False, AER[row])},
            "toy-xnli": {0: result("toy-xnli", "accuracy", True, ACC[row])},
        }
        for row in ("base", "A", "B")
    }
    return summarize(
        results, rows=["base", "A", "B"], tasks=["toy-align", "toy-xnli"], seen_languages=["de"]
    )


def test_aer_improvements_follow_its_direction() -> None:
    d = improvements(_summary(), "toy-align")
    assert d["A", "de"] == pytest.approx(0.10) and d["A", "el"] == pytest.approx(-0.02)
    assert d["B", "fr"] == pytest.approx(0.30)
    assert ("base", "de") not in d


def test_a_known_table() -> None:
    # alignment ranks: A-el 1, B-de 2, A-fr 3, B-el 4, A-de 5, B-fr 6
    # transfer ranks:  B-de 1, A-el 2, A-fr 3, B-el 4, A-de 5, B-fr 6
    # Σd² = 1 + 1 = 2, ρ = 1 − 6·2 / (6·35) = 0.942857 (with AER's sign wrong it is < 0)
    report = alignment_transfer(
        _summary(), alignment_tasks=["toy-align"], transfer_tasks=["toy-xnli"]
    )
    (c,) = report.correlations
    assert c.rho == pytest.approx(1 - 12 / 210)
    assert len(c.points) == 6 and c.ci_low <= c.rho <= c.ci_high
    assert (c.alignment_metric, c.transfer_metric) == ("aer", "accuracy")
    md = report.to_markdown()
    assert "| A | de | +0.100 | +3.000 |" in md and "Spearman ρ = +0.943" in md
    data = json.loads(json.dumps(report.to_dict()))
    assert data["correlations"][0]["rho"] == pytest.approx(0.942857, abs=1e-6)
    rows = report.to_csv().splitlines()
    assert rows[0].startswith("alignment_task,transfer_task,objective,language") and len(rows) == 7


def test_without_both_kinds_there_is_no_report() -> None:
    assert alignment_transfer(_summary(), alignment_tasks=[], transfer_tasks=["toy-xnli"]) is None


def test_task_kinds_of_the_builtin_plugins() -> None:
    assert {t: task_kind(t) for t in ("align", "tatoeba", "bucc")} == dict.fromkeys(
        ("align", "tatoeba", "bucc"), "alignment"
    )
    assert task_kind("xnli-mini") == task_kind("pos-mini") == "transfer"
    assert task_kind("xnli-probe") == task_kind("pos-probe") == "transfer"
    assert task_kind("no-such-task") is None


def test_a_task_kind_outside_the_two_is_a_plugin_error() -> None:
    import xalign
    from xalign.plugins import PluginError, get_registry
    from xalign.task import Task

    class Odd(Task):
        name = "odd-kind"
        kind = "retrieval"

    class Plugin:
        @xalign.hookimpl
        def register_tasks(self, register) -> None:
            register(Odd)

    registry = get_registry()
    registry.add(Plugin(), name="odd-tests", distribution="odd-dist", version="1")
    with pytest.raises(PluginError, match="odd-dist.*Task.kind must be one of"):
        task_kind("odd-kind", registry)
