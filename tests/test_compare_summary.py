"""``xalign.compare``'s typed Summary, its paired bootstrap, its renderings, and the tracking
queries compare and evaluate share — all with hand-computable values, no stored golden files.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time

import pytest
from mlflow.tracking import MlflowClient
from rich.console import Console
from test_evaluate import fresh_store, log_train_run  # noqa: F401

from xalign.compare import (
    Average,
    Cell,
    CompareReport,
    HeadToHead,
    Summary,
    TaskInfo,
    eval_summary,
    paired_test,
    print_report,
    summarize,
    to_csv,
    to_markdown,
)
from xalign.compare.statistics import SeedStats, best_rows
from xalign.evaluation.runs import EvalRun
from xalign.task import ItemCounts, Metric, TaskResult


def result(scores: dict[str, list[float]], *, higher: bool = True, metric: str = "acc"):
    """A TaskResult whose per-language score is the mean of its per-example scores."""
    return TaskResult(
        task="t",
        main_metric=metric,
        scores={k: {metric: sum(v) / len(v)} for k, v in scores.items()},
        per_example={k: list(v) for k, v in scores.items()},
        metrics=(Metric(metric, higher_is_better=higher),),
    )


def const(x: float, n: int = 10) -> list[float]:
    return [x] * n


# three rows, two seeds, two languages; every paired difference of a test has one sign (p = 0)
# or is zero everywhere (p = 1), so every p-value is known without running the bootstrap
SCORES = {
    "base": {0: {"de": const(0.5), "en": const(0.4)}, 1: {"de": const(0.7), "en": const(0.4)}},
    "A": {0: {"de": const(0.9), "en": const(0.3)}, 1: {"de": const(0.9), "en": const(0.2)}},
    "B": {0: {"de": const(0.5), "en": const(0.6)}, 1: {"de": const(0.7), "en": const(0.6)}},
}


def summary_of(scores=SCORES, seen=("de",)) -> Summary:
    results = {
        row: {"t": {s: result(by_lang) for s, by_lang in seeds.items()}}
        for row, seeds in scores.items()
    }
    return summarize(results, rows=list(scores), tasks=["t"], seen_languages=seen, seeds=2)


# ------------------------------------------------------------------------------ statistics
def test_seed_stats_and_best_rows():
    s = SeedStats.of([0.5, 0.7])
    assert s.mean == pytest.approx(0.6) and s.std == pytest.approx(math.sqrt(0.02))  # ddof=1
    assert s.n_seeds == 2 and s.values == [0.5, 0.7]
    assert SeedStats.of([3.0]) == SeedStats(3.0, 0.0, 1, [3.0])
    assert SeedStats.of([]) == SeedStats(None, None, 0, [])
    assert best_rows({"a": 0.2, "b": 0.5, "c": 0.5, "d": None}, True) == {"b", "c"}
    assert best_rows({"a": 0.2, "b": 0.5, "d": None}, False) == {"a"}
    assert best_rows({"a": None}, True) == set()


def test_paired_test_identical_scores_give_p_1():
    a = {0: result({"de": [0.0, 1.0, 1.0, 0.0]}), 1: result({"de": [1.0, 1.0, 0.0]})}
    test = paired_test(a, a, "de")
    assert test.p_value == 1.0 and test.delta_examples == 0.0
    assert (test.ci_low, test.ci_high) == (0.0, 0.0)
    assert test.n_examples == 7 and test.seeds == [0, 1]


@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_paired_test_all_better_gives_p_0(seed):
    # every (seed, example) pair favours A, by 0.1 .. 1.0: no resample has Δ* <= 0
    a = {0: result({"fr": [i / 10 for i in range(1, 11)]}), 1: result({"fr": [1.0] * 5})}
    b = {0: result({"fr": [0.0] * 10}), 1: result({"fr": [0.5] * 5})}
    test = paired_test(a, b, "fr", seed=seed)
    assert test.p_value == 0.0 < 0.05
    assert test.delta_examples == pytest.approx((0.55 + 0.5) / 2)  # mean of the seeds' Δ
    assert 0.1 <= test.ci_low <= test.delta_examples <= test.ci_high <= 1.0
    assert paired_test(b, a, "fr", seed=seed).p_value == 0.0  # two-sided


def test_paired_test_one_differing_example_matches_the_closed_form():
    # A = B except one of n = 10 examples (A +1): Δ* > 0 iff that example is drawn, so
    # P(Δ* <= 0) = (1 - 1/n)^n and the two-sided p is 2·(0.9)^10 = 0.697 (± 0.03 for 1000 draws)
    b = {0: result({"de": [0.0] * 10})}
    a = {0: result({"de": [1.0] + [0.0] * 9})}
    p = paired_test(a, b, "de", resamples=1000, seed=0).p_value
    assert p == pytest.approx(2 * 0.9**10, abs=0.1)
    assert paired_test(a, b, "de", resamples=1000, seed=0).p_value == p  # seeded: repeatable


def test_minimum_detectable_effect_by_hand():
    # one seed, A = B except one of n = 10 examples (A +1): a resample's Δ is K/n with
    # K ~ Binomial(n, 1/n), so SE = sqrt(n·0.1·0.9)/n = 0.0949 and MDE = 2.8016·SE = 0.2658
    b = {0: result({"de": [0.0] * 10})}
    a = {0: result({"de": [1.0] + [0.0] * 9})}
    test = paired_test(a, b, "de", resamples=4000, seed=0)
    assert test.mde == pytest.approx(2.80158 * math.sqrt(10 * 0.1 * 0.9) / 10, rel=0.05)
    # ten times the items with the same per-item spread: SE and MDE shrink by sqrt(10)
    a10 = {0: result({"de": ([1.0] + [0.0] * 9) * 10})}
    b10 = {0: result({"de": [0.0] * 100})}
    big = paired_test(a10, b10, "de", resamples=4000, seed=0)
    assert big.mde == pytest.approx(test.mde / math.sqrt(10), rel=0.08)
    md = to_markdown(summary_of())
    assert "Minimum detectable effect vs base (80 % power, p < 0.05): de " in md


def test_an_average_is_tested_on_the_mean_of_its_languages_deltas():
    # de: A = B except one of 10 items (A +1); fr: A = B. The average's Δ* is K/10/2 with
    # K ~ Binomial(10, 1/10): the same p as de alone (2·0.9^10), half its MDE
    b = {0: result({"de": [0.0] * 10, "fr": [0.5] * 10})}
    a = {0: result({"de": [1.0] + [0.0] * 9, "fr": [0.5] * 10})}
    de = paired_test(a, b, "de", resamples=4000, seed=0)
    avg = paired_test(a, b, ["de", "fr"], resamples=4000, seed=0)
    assert avg.delta_examples == pytest.approx(0.05) and avg.n_examples == 20
    assert avg.p_value == pytest.approx(2 * 0.9**10, abs=0.06)
    assert avg.mde == pytest.approx(de.mde / 2, rel=0.08)
    # parallel test sets (translations of the same 10 items: same count), A better on item 0
    # in both languages: the items are drawn once for both, so the average's Δ* is K/10 as
    # for one language (independent draws would give (K1 + K2)/20: SE/sqrt(2), too small)
    a2 = {0: result({"de": [1.0] + [0.0] * 9, "fr": [1.0] + [0.0] * 9})}
    b2 = {0: result({"de": [0.0] * 10, "fr": [0.0] * 10})}
    both = paired_test(a2, b2, ["de", "fr"], resamples=4000, seed=0)
    assert both.mde == pytest.approx(de.mde, rel=0.01)
    assert both.p_value == pytest.approx(de.p_value, abs=0.01)
    # opposite differences on the same item cancel in every resample: a tie, p = 1
    a3 = {0: result({"de": [1.0] + [0.0] * 9, "fr": [0.0] * 10})}
    b3 = {0: result({"de": [0.0] * 10, "fr": [1.0] + [0.0] * 9})}
    assert paired_test(a3, b3, ["de", "fr"]).p_value == 1.0
    # a seed counts only if every language has per-example data on both sides
    gap = {0: a2[0], 1: result({"de": [1.0] * 10})}
    assert paired_test(gap, {0: b2[0], 1: result({"de": [0.0] * 10})}, ["de", "fr"]).seeds == [0]
    assert paired_test(a2, b2, ["de", "xx"]) is None
    # a single key in a list is the single-key test, draw for draw
    assert paired_test(a, b, ["de"], seed=3) == paired_test(a, b, "de", seed=3)


def test_a_difference_one_seed_reverses_is_not_significant_however_many_examples():
    # seed 0: A right on all 500 examples, B wrong (Δ0 = +1); seed 1: Δ1 = -0.2 on every
    # example. Pooling (seed, example) pairs gave p = 0. Resampling the two seeds gives Δ* =
    # -0.2 exactly when seed 1 is drawn twice: P(Δ* <= 0) = 1/4, two-sided p = 0.5.
    n = 500
    a = {0: result({"de": [1.0] * n}), 1: result({"de": [0.0] * n})}
    b = {0: result({"de": [0.0] * n}), 1: result({"de": [0.2] * n})}
    test = paired_test(a, b, "de", resamples=2000)
    assert test.delta_examples == pytest.approx(0.4)
    assert test.p_value == pytest.approx(0.5, abs=0.06)
    assert (test.ci_low, test.ci_high) == (pytest.approx(-0.2), pytest.approx(1.0))
    # the same examples under one seed each: every seed agrees, and the test says so
    assert paired_test({0: a[0]}, {0: b[0]}, "de").p_value == 0.0


def counted(matched: list[int], total: list[int], *, declare: bool = True) -> TaskResult:
    """An align-like result: per-sentence AER in per_example, the corpus AER terms in counts."""
    per = [1 - m / t if t else 0.0 for m, t in zip(matched, total, strict=True)]
    ratio = {"aggregation": "ratio", "offset": 1.0, "scale": -1.0} if declare else {}
    aer = 1 - sum(matched) / sum(total)
    return TaskResult(
        "align",
        "aer",
        {"s": {"aer": aer}},
        {"s": per},
        counts={"s": ItemCounts(matched, total)},
        metrics=(Metric("aer", higher_is_better=False, **ratio),),
    )


def test_a_corpus_metric_is_tested_on_its_own_value_not_a_mean_of_sentences():
    # A: matched 2/2 and 0/4 -> corpus AER 1 - 2/6 = 2/3 (mean of per-sentence AER: 0.5);
    # B: 0/2 and 0/2 -> AER 1. The table's Δ is -1/3, and that is what is tested. Resamples
    # of the 2 sentences: {0,0} Δ* = 0 - 1 = -1, {0,1} -1/3, {1,1} 1 - 1 = 0 (prob. 1/4):
    # P(Δ* >= 0) = 1/4, two-sided p = 0.5.
    a, b = {0: counted([2, 0], [2, 4])}, {0: counted([0, 0], [2, 2])}
    test = paired_test(a, b, "s", resamples=2000)
    assert test.delta_examples == pytest.approx(-1 / 3)
    assert test.p_value == pytest.approx(0.5, abs=0.06)
    assert (test.ci_low, test.ci_high) == (pytest.approx(-1.0), pytest.approx(0.0))
    # a metric declared as a mean uses the mean of per-example scores
    old = paired_test({0: counted([2, 0], [2, 4], declare=False)}, b, "s")
    assert old.delta_examples == pytest.approx(-0.5)


def test_paired_test_pairs_only_seeds_both_sides_have():
    a = {
        0: result({"de": [1.0, 1.0]}),
        1: result({"de": [1.0, 0.0, 1.0]}),  # other length than b's seed 1: skipped
        2: result({"de": [0.0]}),  # not in b: skipped
        3: TaskResult("t", "acc", {"de": {"acc": 1.0}}),  # no per-example scores: skipped
    }
    b = {0: result({"de": [0.0, 1.0]}), 1: result({"de": [0.0, 0.0]}), 3: result({"de": [0.0]})}
    test = paired_test(a, b, "de")
    assert test.seeds == [0] and test.n_examples == 2 and test.delta_examples == 0.5
    assert paired_test(a, b, "fr") is None
    assert paired_test({3: a[3]}, {3: b[3]}, "de") is None


def test_summary_cells_by_hand():
    s = summary_of()
    assert s.objectives == ["base", "A", "B"] and s.seeds == 2
    assert s.tasks["t"] == TaskInfo("acc", True, ["de", "en"], ["de"], {"de": "de", "en": "en"})
    base, a, b = (s.cell("t", "de", r) for r in ("base", "A", "B"))
    assert (base.mean, base.std) == (pytest.approx(0.6), pytest.approx(math.sqrt(0.02)))
    assert base.delta_vs_base is None and base.p_value is None and not base.significant
    assert (a.mean, a.std, a.n_seeds) == (pytest.approx(0.9), 0.0, 2)
    assert a.values == pytest.approx([0.9, 0.9])
    assert a.delta_vs_base == pytest.approx(0.3) and a.p_value == 0.0 and a.significant
    assert a.best and not base.best and not b.best
    assert b.p_value == 1.0 and not b.significant and b.delta_vs_base == pytest.approx(0.0)
    en = s.cell("t", "en", "A")
    assert en.mean == pytest.approx(0.25) and en.std == pytest.approx(math.sqrt(0.005))
    assert en.delta_vs_base == pytest.approx(-0.15) and en.significant
    assert s.cell("t", "en", "B").best
    # averages: per seed over the languages, then over seeds
    seen, all_a = s.average("t", "seen", "A"), s.average("t", "all", "A")
    assert seen.languages == ["de"] and seen.mean == pytest.approx(0.9) and seen.best
    assert all_a.values == pytest.approx([0.6, 0.55]) and all_a.mean == pytest.approx(0.575)
    assert all_a.delta_vs_base == pytest.approx(0.075) and not all_a.best
    assert s.average("t", "all", "base").std == pytest.approx(math.sqrt(0.005))
    assert s.average("t", "all", "B").best
    # significance vs base: one entry per (language, objective) with per-example scores
    assert [(x.language, x.objective, x.test.p_value) for x in s.significance] == [
        ("de", "A", 0.0),
        ("de", "B", 1.0),
        ("en", "A", 0.0),
        ("en", "B", 0.0),
    ]
    # averages are tested too: seen = de (A's Δ per seed 0.4, 0.2: p 0; B's 0: p 1); all: A's
    # per-seed Δ of the average is 0.15 and 0.0, so Δ* <= 0 only when seed 1 is drawn twice
    # (P = 1/4, p = 0.5); B's is 0.1 in both seeds (p 0)
    assert (seen.p_value, seen.significant) == (0.0, True)
    # its MDE: the mean of 2 seeds drawn from Δ {0.4, 0.2} has SD sqrt(0.5)·0.1
    assert seen.mde == pytest.approx(2.80158 * math.sqrt(0.5) * 0.1, rel=0.1)
    assert s.average("t", "seen", "B").p_value == 1.0
    assert all_a.p_value == pytest.approx(0.5, abs=0.1) and not all_a.significant
    assert s.average("t", "all", "B").p_value == 0.0 and s.average("t", "all", "B").significant
    assert s.average("t", "all", "base").p_value is None
    assert s.head_to_head[:2] == [
        HeadToHead("t", "de", "A", "B", pytest.approx(0.3), 0.0, True),
        HeadToHead("t", "en", "B", "A", pytest.approx(0.35), 0.0, True),
    ]
    # best vs runner-up on the averages: seen A vs B (Δ 0.4, 0.2: p 0); all B vs A (per-seed
    # Δ -0.05 and +0.1: p = 0.5)
    seen_h2h, all_h2h = s.head_to_head[2:]
    assert seen_h2h == HeadToHead("t", "avg seen", "A", "B", pytest.approx(0.3), 0.0, True)
    assert (all_h2h.language, all_h2h.best, all_h2h.runner_up) == ("avg all", "B", "A")
    assert all_h2h.delta == pytest.approx(0.025) and not all_h2h.significant
    assert all_h2h.p_value == pytest.approx(0.5, abs=0.1)
    with pytest.raises(KeyError):
        s.cell("t", "fr", "A")
    assert summary_of(seen=()).scopes("t") == ["all"]  # no seen language: no "avg seen"


def test_lower_is_better_and_missing_values():
    results = {
        "base": {"aer": {0: result({"de": [0.4] * 4, "el": [0.3] * 4}, higher=False)}},
        "x": {"aer": {0: result({"de": [0.2] * 4}, higher=False)}},  # no el
    }
    s = summarize(results, rows=["base", "x"], tasks=["aer"], seen_languages=["de", "el"])
    assert s.cell("aer", "de", "x").best and not s.cell("aer", "de", "base").best
    missing = s.cell("aer", "el", "x")
    assert (missing.mean, missing.n_seeds, missing.delta_vs_base) == (None, 0, None)
    assert missing.p_value is None and not missing.best
    assert s.average("aer", "seen", "x").n_seeds == 0  # its only seed lacks el
    assert s.head_to_head == []  # one objective: no runner-up


def test_eval_summary_by_hand():
    def run(seed, scores):
        return EvalRun(TaskResult("xnli", "acc", scores), "xnli", f"r{seed}", seed, False, "k")

    out = eval_summary(
        [
            run(0, {"de": {"acc": 0.5, "f1": 0.4}}),
            run(1, {"de": {"acc": 0.7}, "el": {"acc": 0.25}}),
        ]
    )
    acc = out["xnli"]["de"]["acc"]
    assert acc["mean"] == pytest.approx(0.6) and acc["std"] == pytest.approx(math.sqrt(0.02))
    assert acc["n_seeds"] == 2
    assert out["xnli"]["de"]["f1"] == {"mean": 0.4, "std": 0.0, "n_seeds": 1}
    assert list(out["xnli"]) == ["de", "el"]


# ------------------------------------------------------------------------------ rendering
MD_ROWS = [
    "| objective | de | en | avg seen | avg all |",
    "|---|---:|---:|---:|---:|",
    "| base | 0.600 ± 0.141 | 0.400 ± 0.000 | 0.600 ± 0.141 | 0.500 ± 0.071 |",
    "| A | **0.900 ± 0.000** (+0.300)* | 0.250 ± 0.071 (-0.150)* | **0.900 ± 0.000** (+0.300)* "
    "| 0.575 ± 0.035 (+0.075) |",
    "| B | 0.600 ± 0.141 (+0.000) | **0.600 ± 0.000** (+0.200)* | 0.600 ± 0.141 (+0.000) "
    "| **0.600 ± 0.071** (+0.100)* |",
]


def test_markdown_and_terminal_show_the_summary():
    s = summary_of()
    md = to_markdown(s, "run123").splitlines()
    assert md[:4] == [
        "# Zero-shot transfer: A, B vs base",
        "",
        "MLflow parent run `run123`; 2 seed(s).",
        "",
    ]
    assert md[4] == "## t (acc, higher is better)"
    start = md.index(MD_ROWS[0])
    assert md[start : start + 5] == MD_ROWS
    assert "| de | A | B | +0.300 | <0.001* |" in md and "| en | B | A | +0.350 | <0.001* |" in md
    assert any("*: p < 0.05 in a two-sided two-level paired bootstrap test" in line for line in md)
    assert any("(data.languages: de); the alignment target en" in line for line in md)

    buf = io.StringIO()
    print_report(s, Console(file=buf, width=300))
    human = buf.getvalue()
    assert "t: acc (higher is better)" in human
    for line in MD_ROWS[2:]:  # every markdown cell, bold markers dropped, is in the table
        for cell in line.strip("| ").split(" | ")[1:]:
            assert cell.replace("**", "") in human
    assert "  de: best A vs runner-up B: Δ +0.3, p <0.001*" in human
    assert "  en: best B vs runner-up A: Δ +0.35, p <0.001*" in human
    assert "  avg seen: best A vs runner-up B: Δ +0.3, p <0.001*" in human
    assert "| avg seen | A | B | +0.300 | <0.001* |" in md
    mde = next(line for line in md if line.startswith("Minimum detectable effect"))
    assert ", avg seen 0." in mde and ", avg all 0." in mde


# the JSON layout of ``compare.json`` / ``xalign compare --json`` (keys in order)
KEYS = {
    "report": "parent_run_id objectives tasks seeds seen_languages target_language rows "
    "averages significance head_to_head runs artifacts",
    "cell": "task language objective mean std n_seeds values delta_vs_base p_value significant "
    "best",
    "average": "task scope languages objective mean std n_seeds values delta_vs_base best "
    "p_value significant mde",
    "head_to_head": "task language best runner_up delta p_value significant",
    "significance": "task language objective delta_examples p_value ci_low ci_high n_examples "
    "seeds mde",
}


def test_json_and_csv_hold_the_summary_values():
    s = summary_of()
    report = CompareReport("pid", s, {"parent": "pid"}, {"csv": "x.csv"})
    out = json.loads(json.dumps(report.to_dict()))
    assert list(out) == KEYS["report"].split()
    assert list(out["rows"][0]) == KEYS["cell"].split()
    assert list(out["averages"][0]) == KEYS["average"].split()
    assert list(out["head_to_head"][0]) == KEYS["head_to_head"].split()
    sig = out["significance"]
    assert (sig["test"], sig["alternative"], sig["resamples"], sig["seed"], sig["alpha"]) == (
        "paired bootstrap",
        "two-sided",
        1000,
        0,
        0.05,
    )
    assert list(sig["results"][0]) == KEYS["significance"].split()
    a_de = next(r for r in out["rows"] if (r["language"], r["objective"]) == ("de", "A"))
    assert a_de["mean"] == pytest.approx(0.9) and a_de["p_value"] == 0.0 and a_de["best"]
    assert [r["objective"] for r in out["rows"]] == ["base", "A", "B"] * 2
    assert out["tasks"]["t"]["seen"] == ["de"] and out["runs"] == {"parent": "pid"}

    lines = list(csv.DictReader(io.StringIO(to_csv(s))))
    assert len(lines) == 3 * 2 + 3 * 2  # rows x (languages + averages)
    for line in lines:
        lang, obj = line["language"], line["objective"]
        e = s.average("t", lang[4:], obj) if lang.startswith("avg_") else s.cell("t", lang, obj)
        p = e.p_value
        assert float(line["mean"]) == e.mean and float(line["std"]) == e.std  # repr round-trip
        assert line["n_seeds"] == str(e.n_seeds)
        assert line["delta_vs_base"] == ("" if e.delta_vs_base is None else repr(e.delta_vs_base))
        assert line["p_value"] == ("" if p is None else repr(p))


def test_rendering_of_a_hand_built_summary():
    """Renderers read only the typed Summary: no statistic is recomputed."""
    info = TaskInfo("f1", True, ["de"], ["de"], {"de": "de"})

    def cell(obj, mean, std, delta, p):
        n = 0 if mean is None else 2
        stats = SeedStats(mean, std, n, [mean] * n)
        return Cell("qa", "de", obj, stats, delta, p, p is not None and p < 0.05, obj == "x")

    s = Summary(
        objectives=["base", "x", "y"],
        tasks={"qa": info},
        seeds=1,
        seen_languages=["de"],
        target_language="en",
        rows=[
            cell("base", 61.25, 0.5, None, None),
            cell("x", 70.0, 1.0, 8.75, 0.002),
            cell("y", None, None, None, None),
        ],
        averages=[
            Average("qa", "all", ["de"], o, SeedStats(m, 0.0, 1, [m]), d, o == "x")
            for o, m, d in (("base", 61.25, None), ("x", 70.0, 8.75), ("y", None, None))
        ],
        head_to_head=[HeadToHead("qa", "de", "x", "y", 3.0, None, False)],
    )
    md = to_markdown(s).splitlines()
    assert "| objective | de | avg all |" in md  # no seen average in the Summary: none shown
    # a mean > 1: 2 decimals; the averages come from one seed: no ± (not "± 0.00")
    assert "| base | 61.25 ± 0.50 | 61.25 |" in md
    assert "| x | **70.00 ± 1.00** (+8.75)* | **70.00** (+8.75) |" in md
    assert "| y | – | – |" in md
    assert "| de | x | y | +3.00 | – |" in md
    assert not any(line.startswith("MLflow parent run") for line in md)
    rows = list(csv.reader(io.StringIO(to_csv(s))))
    assert rows[3] == ["qa", "de", "y", "", "", "0", "", ""]
    assert s.rows[1].to_dict()["values"] == [70.0, 70.0] and "stats" not in s.rows[1].to_dict()
    assert rows[2][-1] == "0.002" and rows[5][-1] == ""


# ------------------------------------------------------------------------------ tracking queries
def test_tracker_queries_by_tag(tmp_path):
    from xalign.tracking import (
        KIND_EVAL,
        TAG_EVAL_KEY,
        TAG_KIND,
        TAG_TRAIN_RUN_ID,
        Tracker,
        get_run,
    )

    uri = fresh_store(tmp_path)
    older = log_train_run(uri, tmp_path, fingerprint="a" * 16)
    time.sleep(0.01)  # start times are in ms: newest first must be decidable
    newer = log_train_run(uri, tmp_path, fingerprint="a" * 16)
    log_train_run(uri, tmp_path, fingerprint="b" * 16)  # another config
    tracker = Tracker(uri, "xalign")
    client = MlflowClient(uri)
    unfinished = client.create_run(
        tracker.experiment_id, tags={"xalign.fingerprint": "a" * 16, "xalign.kind": "train"}
    ).info.run_id  # RUNNING: never a candidate
    assert [r.info.run_id for r in tracker.training_runs("a" * 16)] == [newer, older]
    assert tracker.training_runs("c" * 16) == []
    tags = {TAG_KIND: KIND_EVAL, TAG_EVAL_KEY: "k1", TAG_TRAIN_RUN_ID: newer}
    ev = client.create_run(tracker.experiment_id, tags=tags).info.run_id
    client.set_terminated(ev, "FINISHED")
    assert [r.info.run_id for r in tracker.eval_runs("k1")] == [ev]
    assert tracker.eval_runs("k2") == [] and tracker.training_runs("k1") == []
    assert get_run(unfinished, uri).info.status == "RUNNING"
    assert get_run("0" * 32, uri) is None
    client.log_param(ev, "p", "1")
    assert tracker.run_params(ev) == {"p": "1"}
    with pytest.raises(ValueError, match="quote"):
        tracker.eval_runs("x' or '1' = '1")


def f1_result(counts: dict[str, tuple[list[int], list[int]]]) -> TaskResult:
    """A BUCC-like result: F1 in percent from per-item count terms (NaN when Σtotal = 0)."""
    return TaskResult(
        "bucc",
        "f1",
        {k: {"f1": 100 * sum(m) / sum(t) if sum(t) else math.nan} for k, (m, t) in counts.items()},
        counts={k: ItemCounts(m, t) for k, (m, t) in counts.items()},
        metrics=(Metric("f1", higher_is_better=True, aggregation="ratio", scale=100.0),),
    )


def test_a_seed_whose_metric_is_undefined_is_not_tested():
    """A ratio metric with Σtotal = 0 (no gold and no prediction) is NaN: that seed has
    nothing to test. Without another seed there is no test (None, shown –), not p = 1 (which
    says 'no difference'); with one, the test uses that seed only, for a language and for an
    average alike."""
    empty = ([0, 0], [0, 0])
    base = {0: f1_result({"de": ([1, 0, 1], [2, 2, 2]), "fr": empty})}
    a = {0: f1_result({"de": ([2, 2, 2], [2, 2, 2]), "fr": empty})}
    assert paired_test(a, base, "fr") is None
    assert paired_test(a, base, ["de", "fr"]) is None
    assert paired_test(a, base, "de").p_value == 0.0  # every item favours a
    # seed 1 defined, seed 0 not: only seed 1 is a unit, its Δ the test's
    base[1] = f1_result({"de": ([1, 0, 1], [2, 2, 2]), "fr": ([0, 1], [1, 1])})
    a[1] = f1_result({"de": ([2, 2, 2], [2, 2, 2]), "fr": ([1, 1], [1, 1])})
    fr = paired_test(a, base, "fr")
    assert fr.seeds == [1] and fr.n_examples == 2 and fr.delta_examples == pytest.approx(50.0)
    avg = paired_test(a, base, ["de", "fr"])
    assert avg.seeds == [1] and avg.delta_examples == pytest.approx((200 / 3 + 50) / 2)
    # in the summary: the undefined single-seed cells and averages are untested
    results = {"base": {"bucc": {0: base[0]}}, "A": {"bucc": {0: a[0]}}}
    s = summarize(results, rows=["base", "A"], tasks=["bucc"], seen_languages=["de", "fr"])
    assert s.cell("bucc", "fr", "A").p_value is None
    assert s.average("bucc", "seen", "A").p_value is None
    assert [x.language for x in s.significance] == ["de"]
    rows = list(csv.reader(io.StringIO(to_csv(s))))
    assert [r[-1] for r in rows if r[1] in ("fr", "avg_seen") and r[2] == "A"] == ["", ""]


def test_average_of_languages_with_different_item_counts_by_hand():
    """The average's resampled Δ is the mean of independent languages' Δ: with one differing
    item in de (n = 10) and 10 in fr (n = 100), SE² = (0.09/10 + 0.09/100)/4 (Binomial
    item counts), MDE = 2.8016·SE = 0.1394; a one-language average is that language's test."""
    a = {0: result({"de": [1.0] + [0.0] * 9, "fr": ([1.0] + [0.0] * 9) * 10})}
    b = {0: result({"de": [0.0] * 10, "fr": [0.0] * 100})}
    test = paired_test(a, b, ["de", "fr"], resamples=8000, seed=0)
    assert test.delta_examples == pytest.approx(0.1) and test.n_examples == 110
    assert test.mde == pytest.approx(2.80158 * math.sqrt(0.09 / 10 + 0.09 / 100) / 2, rel=0.05)
    assert paired_test(a, b, ["de"]) == paired_test(a, b, "de")


def test_task_options_are_shown_under_their_table_and_stored():
    """What a table measured includes the task options the comparison set (bucc's dev split
    with its oracle thresholds is another measurement than its test split)."""
    from types import SimpleNamespace

    from xalign.compare.report import option_items
    from xalign.model_card import evaluation_section

    options = {
        "split": "dev",
        "threshold": "oracle",
        "languages": ["de", "fr"],
        "test_files": {"de": "/d/de.tsv", "fr": "/d/fr.tsv"},
        "select_checkpoint": False,
        "test_limit": None,
    }
    assert option_items(
        {
            "sets": [{"path": "/g/enfr", "name": "mine"}],
            "test_files": {"de": "my de, v2.conllu"},
            "empty": {},
            "note": " x",
        }
    ) == [
        "sets=[{path: /g/enfr, name: mine}]",
        'test_files.de="my de, v2.conllu"',
        "empty={}",
        'note=" x"',
    ]
    assert option_items(options) == [
        "split=dev",
        "threshold=oracle",
        "languages=[de,fr]",
        "test_files.de=/d/de.tsv",
        "test_files.fr=/d/fr.tsv",
        "select_checkpoint=false",
        "test_limit=null",
    ]
    results = {
        row: {"t": {s: result(by_lang) for s, by_lang in seeds.items()}}
        for row, seeds in SCORES.items()
    }
    s = summarize(
        results,
        rows=list(SCORES),
        tasks=["t"],
        seen_languages=["de"],
        seeds=2,
        task_options={"t": {"split": "dev", "threshold": "oracle"}},
    )
    line = "Task options: split=dev, threshold=oracle"
    md = to_markdown(s).splitlines()
    assert md[md.index("## t (acc, higher is better)") + 2] == line
    buf = io.StringIO()
    print_report(s, Console(file=buf, width=30))  # a narrow terminal: the line stays whole
    assert f"  {line}" in buf.getvalue().splitlines()
    stored = json.loads(json.dumps(s.to_dict()))
    assert stored["tasks"]["t"]["options"] == {"split": "dev", "threshold": "oracle"}
    record = SimpleNamespace(objective="A")
    card = evaluation_section(record, SimpleNamespace(parent_run_id="p", report=stored, seed=0))
    assert line in card
    # defaults (no --option): no line anywhere; an older compare.json has no options key
    plain = summary_of()
    assert not any(x.startswith("Task options") for x in to_markdown(plain).splitlines())
    del stored["tasks"]["t"]["options"]
    older = evaluation_section(record, SimpleNamespace(parent_run_id="p", report=stored, seed=0))
    assert not any(x.startswith("Task options") for x in older)
