"""The numbers of a comparison: a typed :class:`Summary` of per-seed task results.

Per (task, language, objective) a :class:`Cell` holds the mean and sample standard deviation
(ddof=1) of the main metric over seeds, Δ vs the base encoder, the p-value of a two-sided
paired bootstrap test vs base and whether the mean is the best of its column; per (task,
scope) an :class:`Average` holds the same over the per-seed average of the "seen" (training
source) languages or of all languages, tested the same way; per (task, language) and per
(task, average) a :class:`HeadToHead` tests the best objective against the runner-up (base
excluded).

The test (:func:`paired_test`) is a two-level paired bootstrap: test items within each seed
(Koehn 2004, "Statistical significance tests for machine translation evaluation"), then the
seeds (hierarchical bootstrap), on the metric the table shows (a corpus metric such as AER is
recomputed from its per-sentence count terms on every resample).

:meth:`Summary.to_dict` is the ``compare.json`` / ``xalign compare --json`` layout: its keys
and their order are part of the CLI's output.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xalign.evaluation.metrics import seed_summary
from xalign.evaluation.runs import BASE, EvalRun
from xalign.languages import same_language
from xalign.task import ResultContractError, TaskResult

N_BOOT = 1000  # bootstrap resamples
BOOT_SEED = 0  # seed of the resampling generator
ALPHA = 0.05  # significance level of the "*" marks
POWER = 0.8  # power at which the minimum detectable effect is given
#: (z_{1-ALPHA/2} + z_{POWER}): 1.95996 + 0.84162, the normal quantiles (scipy.stats.norm.ppf)
MDE_FACTOR = 2.80158
SCOPES = ("seen", "all")  # the averages of a task, in table order
#: |Δ*| at most this (metric units) is a tie: an average's Δ summed from opposite languages'
#: differences (+0.2, -0.2) is rounding noise, not a side
TIE = 1e-9

#: row (objective or base) -> task -> seed -> result
Results = dict[str, dict[str, dict[int, TaskResult]]]


# ------------------------------------------------------------------------------ types
class _Record:
    """A dataclass whose JSON form is its fields, in declaration order."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]


@dataclass(frozen=True)
class PairedTest:
    """A two-sided paired bootstrap test of A vs B over per-example scores.

    ``delta_examples``: the mean over ``seeds`` of each seed's Δ of the metric;
    ``n_examples``: the test items resampled, summed over those seeds (sentences for a metric
    given by count terms, else per-example scores); ``ci_low``/``ci_high``: the 95 %
    percentile interval of the resampled Δ; ``mde``: the minimum detectable effect, the
    smallest true |Δ| this test finds at p < ``ALPHA`` with probability ``POWER`` (80 %):
    (z₁₋α/₂ + z_power) · SE, with SE the standard deviation of the resampled Δ (the normal
    approximation of power analysis, Cohen 1988 §2.3; Bloom 1995, "Minimum detectable effects").
    """

    delta_examples: float
    p_value: float
    ci_low: float
    ci_high: float
    n_examples: int
    seeds: list[int]
    mde: float = float("nan")


@dataclass(frozen=True)
class Significance:
    """One objective-vs-base test of ``Summary.significance`` (a :class:`PairedTest` placed)."""

    task: str
    language: str
    objective: str
    test: PairedTest

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "language": self.language,
            "objective": self.objective,
            **dataclasses.asdict(self.test),
        }


@dataclass(frozen=True)
class SeedStats:
    """Mean and sample std (ddof=1; 0 for one seed) of per-seed values; None when empty."""

    mean: float | None
    std: float | None
    n_seeds: int
    values: list[float]

    @classmethod
    def of(cls, values: Sequence[float]) -> SeedStats:
        if not values:
            return cls(None, None, 0, [])
        mean, std = seed_summary(values)
        return cls(mean, std, len(values), [float(v) for v in values])


class _Entry(_Record):
    """A table entry with :class:`SeedStats` ``stats``; its JSON form has the stats' fields
    (mean, std, n_seeds, values) in place of ``stats``."""

    stats: SeedStats

    @property
    def mean(self) -> float | None:
        return self.stats.mean

    @property
    def std(self) -> float | None:
        return self.stats.std

    @property
    def n_seeds(self) -> int:
        return self.stats.n_seeds

    @property
    def values(self) -> list[float]:
        return self.stats.values

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in dataclasses.asdict(self).items():  # type: ignore[call-overload]
            if key == "stats":
                out.update(value)
            else:
                out[key] = value
        return out


@dataclass(frozen=True)
class Cell(_Entry):
    """One (task, language, objective) cell of a table.

    ``delta_vs_base``: mean − base mean in the metric's units (None for base or no data);
    ``p_value``: the paired test vs base (None for base or without per-example scores);
    ``significant``: ``p_value < ALPHA``; ``best``: the best mean of its column (ties all).
    """

    task: str
    language: str
    objective: str
    stats: SeedStats
    delta_vs_base: float | None
    p_value: float | None
    significant: bool
    best: bool


@dataclass(frozen=True)
class Average(_Entry):
    """Mean ± std over seeds of the per-seed average over ``languages`` (scope seen/all).

    ``delta_vs_base``, ``p_value``, ``significant`` and ``best`` as in :class:`Cell`: the test
    is :func:`paired_test` over all of ``languages`` at once (per seed, each language's test
    items are resampled and the seed's Δ is the mean of the languages' Δ). ``mde``: that test's
    minimum detectable effect (None for base or without per-example scores).
    """

    task: str
    scope: str
    languages: list[str]
    objective: str
    stats: SeedStats
    delta_vs_base: float | None
    best: bool
    p_value: float | None = None
    significant: bool = False
    mde: float | None = None


@dataclass(frozen=True)
class HeadToHead(_Record):
    """The best objective vs the runner-up (base excluded) on one language, or on an average
    (``language`` is then ``avg seen`` / ``avg all``, the table's column label).

    ``delta``: difference of their seed means; ``p_value``: the same paired test as vs base.
    """

    task: str
    language: str
    best: str
    runner_up: str
    delta: float
    p_value: float | None
    significant: bool


@dataclass(frozen=True)
class TaskInfo(_Record):
    """What the table of one task shows: its main metric, direction and language columns.

    ``languages``: the task's score keys in first-seen order; ``seen``: those whose language
    (``language_of``, from ``TaskResult.languages``, else the key) was trained on;
    ``options``: the task options the comparison set (``--option TASK.KEY=VALUE``, e.g. bucc's
    ``split: dev``), shown under the table; empty: the task's defaults.
    """

    main_metric: str
    higher_is_better: bool
    languages: list[str]
    seen: list[str]
    language_of: dict[str, str]
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Summary:
    """Every number of a comparison; renderers read it through :meth:`cell`/:meth:`average`."""

    objectives: list[str]  # table rows: base first, then the objectives
    tasks: dict[str, TaskInfo]
    seeds: int | None
    seen_languages: list[str]
    target_language: str
    rows: list[Cell] = field(default_factory=list)
    averages: list[Average] = field(default_factory=list)
    significance: list[Significance] = field(default_factory=list)
    head_to_head: list[HeadToHead] = field(default_factory=list)
    resamples: int = N_BOOT
    boot_seed: int = BOOT_SEED
    alpha: float = ALPHA
    _cache: Any = field(default=None, init=False, repr=False, compare=False)

    def cell(self, task: str, language: str, objective: str) -> Cell:
        """The cell of ``objective`` in ``language``'s column of ``task`` (KeyError if none)."""
        return self._index()[0][task, language, objective]

    def average(self, task: str, scope: str, objective: str) -> Average:
        """The ``scope`` (``seen``/``all``) average of ``objective`` on ``task`` (KeyError)."""
        return self._index()[1][task, scope, objective]

    def scopes(self, task: str) -> list[str]:
        """The averages ``task`` has, in :data:`SCOPES` order (no "seen" without seen keys)."""
        have = {a.scope for a in self.averages if a.task == task}
        return [s for s in SCOPES if s in have]

    def _index(self) -> tuple[dict[tuple, Cell], dict[tuple, Average]]:
        key = (len(self.rows), len(self.averages))
        cached = self._cache
        if cached is None or cached[0] != key:
            cells = {(c.task, c.language, c.objective): c for c in self.rows}
            avgs = {(a.task, a.scope, a.objective): a for a in self.averages}
            cached = (key, cells, avgs)
            self._cache = cached
        return cached[1], cached[2]

    def to_dict(self) -> dict[str, Any]:
        """The JSON layout of ``compare.json`` (keys in this order)."""
        return {
            "objectives": list(self.objectives),
            "tasks": {t: info.to_dict() for t, info in self.tasks.items()},
            "seeds": self.seeds,
            "seen_languages": list(self.seen_languages),
            "target_language": self.target_language,
            "rows": [c.to_dict() for c in self.rows],
            "averages": [a.to_dict() for a in self.averages],
            "significance": {
                "test": "paired bootstrap",
                "alternative": "two-sided",
                "resamples": self.resamples,
                "seed": self.boot_seed,
                "alpha": self.alpha,
                "pairing": "per-example main-metric scores concatenated across seeds, "
                "paired by (seed, example)",
                "vs": BASE,
                "results": [s.to_dict() for s in self.significance],
            },
            "head_to_head": [h.to_dict() for h in self.head_to_head],
        }


# ------------------------------------------------------------------------------ computing
def summarize(
    results: Results,
    *,
    rows: Sequence[str],
    tasks: Sequence[str],
    seen_languages: Sequence[str],
    seeds: int | None = None,
    target_language: str = "en",
    task_options: dict[str, dict[str, Any]] | None = None,
) -> Summary:
    """Per-language and averaged mean ± std over seeds, Δ vs base, best, significance.

    ``results[row][task][seed]``: the :class:`TaskResult` of each row (``BASE`` among them) on
    each task and seed. "Seen" languages are the training sources (``data.languages``), not the
    target. ``task_options``: task -> the options the comparison set (:attr:`TaskInfo.options`).

    Raises:
        ValueError: a task has no result at all.
    """
    out = Summary(
        objectives=list(rows),
        tasks={},
        seeds=seeds,
        seen_languages=list(seen_languages),
        target_language=target_language,
    )
    for task in tasks:
        info = task_info(task, {r: results[r][task] for r in rows}, seen_languages)
        info = dataclasses.replace(info, options=dict((task_options or {}).get(task) or {}))
        out.tasks[task] = info
        hib = info.higher_is_better
        for key in info.languages:
            stats = {
                r: SeedStats.of(
                    [
                        res.main()[key]
                        for _, res in sorted(results[r][task].items())
                        if key in res.scores
                    ]
                )
                for r in rows
            }
            best = best_rows({r: s.mean for r, s in stats.items()}, hib)
            for r in rows:
                test = (
                    None if r == BASE else paired_test(results[r][task], results[BASE][task], key)
                )
                if test is not None:
                    out.significance.append(Significance(task, key, r, test))
                out.rows.append(
                    Cell(
                        task=task,
                        language=key,
                        objective=r,
                        stats=stats[r],
                        delta_vs_base=_delta(stats[r], stats[BASE], r),
                        p_value=test.p_value if test else None,
                        significant=bool(test and test.p_value < ALPHA),
                        best=r in best,
                    )
                )
            h2h = head_to_head(task, key, stats, results, rows, hib)
            if h2h is not None:
                out.head_to_head.append(h2h)
        for scope in SCOPES:
            keys = info.seen if scope == "seen" else info.languages
            if not keys:
                continue
            stats = {r: SeedStats.of(seed_averages(results[r][task], keys)) for r in rows}
            best = best_rows({r: s.mean for r, s in stats.items()}, hib)
            for r in rows:
                test = (
                    None if r == BASE else paired_test(results[r][task], results[BASE][task], keys)
                )
                out.averages.append(
                    Average(
                        task=task,
                        scope=scope,
                        languages=list(keys),
                        objective=r,
                        stats=stats[r],
                        delta_vs_base=_delta(stats[r], stats[BASE], r),
                        best=r in best,
                        p_value=test.p_value if test else None,
                        significant=bool(test and test.p_value < ALPHA),
                        mde=test.mde if test and test.mde == test.mde else None,
                    )
                )
            h2h = head_to_head(task, keys, stats, results, rows, hib, label=f"avg {scope}")
            if h2h is not None:
                out.head_to_head.append(h2h)
    return out


def task_info(
    task: str, by_row: dict[str, dict[int, TaskResult]], seen_languages: Sequence[str]
) -> TaskInfo:
    """Columns of ``task``: score keys in first-seen order over rows and seeds, and which are
    seen (their ``TaskResult.languages`` language, else the key, has the primary language of
    one of ``seen_languages``).

    Raises:
        ValueError: no row has a result for ``task``.
        ResultContractError: a result's main metric has no declared direction
            (:class:`xalign.Metric`), or results disagree on it; the message names the task
            and its plugin.
    """
    first = [res for seeds in by_row.values() for _, res in sorted(seeds.items())]
    if not first:
        raise ValueError(f"no results for task {task!r}")
    keys: list[str] = []
    language_of: dict[str, str] = {}
    for res in first:
        for key in res.scores:
            if key not in keys:
                keys.append(key)
            if key in res.languages:
                language_of[key] = str(res.languages[key])
    seen = [  # by primary language: training on de-DE makes XNLI's de seen
        k for k in keys if any(same_language(language_of.get(k, k), s) for s in seen_languages)
    ]
    directions = {res.metric().higher_is_better for res in first}  # undeclared: an error
    if len(directions) > 1:
        raise ResultContractError(
            f"task {task!r}: its results declare both directions for {first[0].main_metric!r} "
            f"(stored by different plugin versions?); evaluate again with --no-reuse"
        )
    return TaskInfo(
        main_metric=first[0].main_metric,
        higher_is_better=directions.pop(),
        languages=keys,
        seen=seen,
        language_of={k: language_of.get(k, k) for k in keys},
    )


def _delta(stats: SeedStats, base: SeedStats, row: str) -> float | None:
    ok = row != BASE and stats.mean is not None and base.mean is not None
    return stats.mean - base.mean if ok else None  # type: ignore[operator]


def best_rows(means: dict[str, float | None], higher_is_better: bool) -> set[str]:
    """The rows whose mean is the best (within 1e-12: ties are all best); none without data."""
    valid = {r: m for r, m in means.items() if m is not None}
    if not valid:
        return set()
    top = max(valid.values()) if higher_is_better else min(valid.values())
    return {r for r, m in valid.items() if abs(m - top) <= 1e-12}


def seed_averages(by_seed: dict[int, TaskResult], keys: Sequence[str]) -> list[float]:
    """Per seed, the main metric averaged over ``keys`` (seeds missing one are skipped)."""
    out = []
    for _, res in sorted(by_seed.items()):
        main = res.main()
        if all(k in main for k in keys):
            out.append(sum(main[k] for k in keys) / len(keys))
    return out


def paired_test(
    a: dict[int, TaskResult],
    b: dict[int, TaskResult],
    key: str | Sequence[str],
    *,
    resamples: int = N_BOOT,
    seed: int = BOOT_SEED,
) -> PairedTest | None:
    """Two-sided two-level paired bootstrap of ``a`` vs ``b`` on ``key``'s main metric, or on
    its unweighted mean over several keys (a table's ``avg`` column).

    The seeds both sides have, with per-example data of equal, non-empty length and a defined
    (finite) metric, are the units; seed ``s`` of ``a`` is paired with seed ``s`` of ``b`` (same
    task seed: the same test items, head initialisation and data order). Each resample draws, within
    every seed, the test items with replacement (the same items for both sides, Koehn 2004),
    computes that seed's Δ_s* of the metric, then draws the seeds with replacement and averages
    their Δ_s* (the hierarchical bootstrap, Saravanan et al. 2020, "Application of the hierarchical
    bootstrap to multi-level data in neuroscience"). So the seed-to-seed spread of a fine-tuned
    task's Δ counts: with two seeds that disagree in sign, p is about 0.5 however many test items
    there are. With few seeds the seed level is coarse (3 seeds: 10 distinct draws; one reversing
    seed among many agreeing ones can still leave p < 0.05), and no test can see more spread than
    the seeds show.

    The metric of a seed is offset + scale·the mean of its ``per_example[key]`` scores (the
    main metric's declared :class:`xalign.Metric` map, 0 and 1 unless declared), or, when the main
    metric is declared with the ``ratio`` aggregation (:class:`xalign.Metric`, offset o,
    scale k) and the result holds ``counts[key]`` (:class:`xalign.ItemCounts`), the corpus
    metric o + k·Σmatched/Σtotal recomputed on every resample (AER: o = 1, k = −1; BUCC F1: o = 0,
    k = 100) — the number the table shows, not a mean of per-sentence values.

    With several keys (an average), a seed is a unit only when every key has per-example data
    on both sides; the seed's Δ_s* is the mean of the keys' Δ*, so the statistic is the
    table's average. Keys with the same number of items are resampled with the same item
    indices, others independently: test sets that are translations of the same items (XNLI,
    XQuAD, the UD PUD treebanks) have correlated item differences, which independent draws
    would hide (too small a p); for unrelated sets of equal size the shared draw pairs items
    arbitrarily, which leaves the variance of the resampled average unchanged in expectation.
    The seeds are drawn once for all keys: a seed that helps every language counts once, not
    once per language.

    ``delta_examples``: mean over the seeds of Δ_s (= the table's Δ when all seeds are used);
    p = min(1, 2·min(P(Δ*≤0), P(Δ*≥0))) over ``resamples`` resamples drawn with
    ``numpy.random.default_rng(seed)`` (|Δ*| ≤ :data:`TIE` counts as 0). Identical scores
    give p = 1; None when no seed has per-example data on both sides with the metric
    defined (finite) on both, or when no resample is defined.
    """
    keys = [key] if isinstance(key, str) else list(key)
    units: list[list[tuple[_Examples, _Examples]]] = []
    used: list[int] = []
    n_examples = 0
    for s in sorted(set(a) & set(b)):
        pairs = [(_per_example(a[s], k), _per_example(b[s], k)) for k in keys]
        if keys and all(_testable(x, y) for x, y in pairs):
            units.append(pairs)  # type: ignore[arg-type]
            used.append(s)
            n_examples += sum(x.n for x, _ in pairs)  # type: ignore[union-attr]
    if not units:
        return None
    rng = np.random.default_rng(seed)
    observed = np.array([np.mean([x.value() - y.value() for x, y in unit]) for unit in units])
    per_seed = np.zeros((len(units), resamples))
    for u, unit in enumerate(units):
        drawn: dict[int, np.ndarray] = {}  # item count -> the indices its keys share
        for x, y in unit:
            if x.n not in drawn:
                drawn[x.n] = rng.integers(0, x.n, size=(resamples, x.n))
            idx = drawn[x.n]
            per_seed[u] += x.resampled(idx) - y.resampled(idx)
        per_seed[u] /= len(unit)
    picks = rng.integers(0, len(units), size=(resamples, len(units)))
    deltas = per_seed[picks, np.arange(resamples)[:, None]].mean(axis=1)
    deltas = deltas[np.isfinite(deltas)]
    if deltas.size == 0:  # no resample where the metric is defined on both sides
        return None
    mde = MDE_FACTOR * float(deltas.std(ddof=1)) if deltas.size > 1 else float("nan")
    if np.all(np.abs(deltas) <= TIE):
        p_value, low, high = 1.0, 0.0, 0.0
    else:
        p_le, p_ge = float(np.mean(deltas <= TIE)), float(np.mean(deltas >= -TIE))
        p_value = min(1.0, 2.0 * min(p_le, p_ge))
        low, high = (float(v) for v in np.quantile(deltas, [0.025, 0.975]))
    return PairedTest(
        delta_examples=float(observed.mean()),
        p_value=p_value,
        ci_low=low,
        ci_high=high,
        n_examples=n_examples,
        seeds=used,
        mde=mde,
    )


def _testable(x: _Examples | None, y: _Examples | None) -> bool:
    """Both sides have the same non-zero number of items and a defined (finite) metric on
    them: a ratio metric whose Σtotal is 0 (BUCC F1 without gold or predictions) is NaN."""
    if x is None or y is None or x.n != y.n or not x.n:
        return False
    return bool(np.isfinite(x.value()) and np.isfinite(y.value()))


@dataclass(frozen=True)
class _Examples:
    """One seed's per-example data of one key: scores (metric = offset + scale·their mean)
    or count terms (metric = offset + scale·Σmatched/Σtotal)."""

    scores: np.ndarray | None = None
    matched: np.ndarray | None = None
    total: np.ndarray | None = None
    offset: float = 0.0
    scale: float = 1.0

    @property
    def n(self) -> int:
        return len(self.scores if self.scores is not None else self.matched)

    def value(self) -> float:
        return float(self.resampled(np.arange(self.n)[None, :])[0])

    def resampled(self, idx: np.ndarray) -> np.ndarray:
        """The metric on each row of item indices ``idx`` (R × n) -> (R,)."""
        if self.scores is not None:
            return self.offset + self.scale * self.scores[idx].mean(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = self.matched[idx].sum(axis=1) / self.total[idx].sum(axis=1)
        return self.offset + self.scale * ratio


def _per_example(result: TaskResult, key: str) -> _Examples | None:
    counts = result.counts.get(key)
    metric = result.metric() if counts is not None and counts.matched else None
    if metric is not None and metric.aggregation == "ratio":
        return _Examples(
            matched=np.asarray(counts.matched, dtype=np.float64),
            total=np.asarray(counts.total, dtype=np.float64),
            offset=float(metric.offset),
            scale=float(metric.scale),
        )
    scores = result.per_example.get(key)
    if not scores:
        return None
    declared = {m.name: m for m in result.metrics}.get(result.main_metric)
    if declared is None or declared.aggregation != "mean":  # plain mean of the items
        return _Examples(scores=np.asarray(scores, dtype=np.float64))
    return _Examples(
        scores=np.asarray(scores, dtype=np.float64),
        offset=float(declared.offset),
        scale=float(declared.scale),
    )


def head_to_head(
    task: str,
    key: str | Sequence[str],
    stats: dict[str, SeedStats],
    results: Results,
    rows: Sequence[str],
    higher_is_better: bool,
    *,
    label: str | None = None,
) -> HeadToHead | None:
    """Best objective vs the runner-up (base excluded) on ``key`` (several keys: their average,
    shown as ``label``); None with fewer than two.

    Ranked by seed mean (stable sort: on a tie the earlier row ranks first).
    """
    ranked = sorted(
        (r for r in rows if r != BASE and stats[r].mean is not None),
        key=lambda r: stats[r].mean,  # type: ignore[arg-type,return-value]
        reverse=higher_is_better,
    )
    if len(ranked) < 2:
        return None
    best, second = ranked[0], ranked[1]
    test = paired_test(results[best][task], results[second][task], key)
    return HeadToHead(
        task=task,
        language=label or (key if isinstance(key, str) else f"avg of {', '.join(key)}"),
        best=best,
        runner_up=second,
        delta=stats[best].mean - stats[second].mean,  # type: ignore[operator]
        p_value=test.p_value if test else None,
        significant=bool(test and test.p_value < ALPHA),
    )


def eval_summary(results: list[EvalRun]) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """``xalign eval``'s summary: {task: {language: {metric: {mean, std, n_seeds}}}}.

    Mean and sample std (ddof=1, 0 for one seed) over the seeds of ``results``, every metric
    (not only the main one); languages and metrics in first-seen order.
    """
    values: dict[str, dict[str, dict[str, list[float]]]] = {}
    for r in results:
        for lang, scores in r.result.scores.items():
            for metric, v in scores.items():
                values.setdefault(r.task, {}).setdefault(lang, {}).setdefault(metric, []).append(v)
    return {
        t: {
            lang: {
                m: dict(zip(("mean", "std"), seed_summary(v), strict=True), n_seeds=len(v))
                for m, v in metrics.items()
            }
            for lang, metrics in langs.items()
        }
        for t, langs in values.items()
    }
