"""Does better alignment go with better transfer? Δalignment against Δtransfer per language.

From one comparison's :class:`~xalign.compare.statistics.Summary`: for every pair of an
alignment task (``align``, ``tatoeba``, ``bucc``: they measure the encoder itself) and a
transfer task (one that fine-tunes or probes on English and tests other languages), each
(objective, language) point is the objective's improvement over base on the alignment task
against its improvement over base on the transfer task, in each metric's own units.

An improvement follows the metric's declared direction (:class:`xalign.Metric`
``higher_is_better``): ``mean − base`` for higher-is-better metrics, ``base − mean`` for
lower-is-better ones such as AER, so a positive value is always better on both axes.

The association is Spearman's rank correlation ρ over the points (Spearman 1904;
``scipy.stats.spearmanr``, ties get average ranks), with a 95 % percentile bootstrap
confidence interval (Efron & Tibshirani 1993, §13.3): the points are resampled with
replacement ``N_BOOT`` times (seed ``BOOT_SEED``), ρ is computed on each resample, and
resamples whose ρ is undefined (a constant axis) are left out. This is the question Gaschi
et al. (Findings of ACL 2023, §5) studied by hand across realignment methods.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xalign.compare.statistics import BASE, BOOT_SEED, N_BOOT, Summary

if TYPE_CHECKING:
    from rich.console import Console

#: Tasks that measure alignment when their plugin does not say (``Task.kind``).
ALIGNMENT_TASKS = ("align", "tatoeba", "bucc")
#: Transfer tasks that do not fine-tune through FinetuneSettings, when their plugin does not
#: say (frozen-encoder probes: a linear classifier fit on English, tested on the others).
TRANSFER_TASKS = ("xnli-probe", "pos-probe")
KINDS = ("alignment", "transfer")
#: Fewest points for a correlation (below it ρ and its interval are not given).
MIN_POINTS = 3


@dataclass(frozen=True)
class Point:
    """One (objective, language): improvements over base on each task (+ = better)."""

    objective: str
    language: str
    alignment: float
    transfer: float


@dataclass
class Correlation:
    """Spearman ρ of one (alignment task, transfer task) pair, with its bootstrap 95 % CI
    (NaN with fewer than :data:`MIN_POINTS` points or a constant axis)."""

    alignment_task: str
    alignment_metric: str
    transfer_task: str
    transfer_metric: str
    points: list[Point]
    rho: float
    ci_low: float
    ci_high: float
    resamples: int = N_BOOT
    seed: int = BOOT_SEED


@dataclass
class AlignmentTransfer:
    """Every (alignment task, transfer task) correlation of a comparison."""

    correlations: list[Correlation] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "statistic": "spearman",
            "improvement": "objective − base for higher-is-better metrics, base − objective "
            "for lower-is-better ones (+ = better on both axes)",
            "interval": "95 % percentile bootstrap over (objective, language) points",
            "correlations": [_nan_to_none(asdict(c)) for c in self.correlations],
        }

    def to_markdown(self) -> str:
        lines = ["## Alignment vs transfer", ""]
        for c in self.correlations:
            lines += [
                f"### {c.alignment_task} ({c.alignment_metric}) vs {c.transfer_task} "
                f"({c.transfer_metric})",
                "",
                "| objective | language | Δ alignment | Δ transfer |",
                "|---|---|---:|---:|",
            ]
            lines += [
                f"| {p.objective} | {p.language} | {p.alignment:+.3f} | {p.transfer:+.3f} |"
                for p in c.points
            ]
            lines += ["", _summary_line(c), ""]
        lines += [f"- {NOTE}"]
        return "\n".join(lines) + "\n"

    def to_csv(self) -> str:
        buf = io.StringIO()
        out = csv.writer(buf, lineterminator="\n")
        out.writerow(
            ["alignment_task", "transfer_task", "objective", "language", "d_alignment",
             "d_transfer", "rho", "ci_low", "ci_high"]
        )  # fmt: skip
        for c in self.correlations:
            for p in c.points:
                out.writerow(
                    [c.alignment_task, c.transfer_task, p.objective, p.language,
                     f"{p.alignment:.6g}", f"{p.transfer:.6g}", f"{c.rho:.6g}",
                     f"{c.ci_low:.6g}", f"{c.ci_high:.6g}"]
                )  # fmt: skip
        return buf.getvalue()

    def write(self, out_dir: Path) -> dict[str, str]:
        """``compare_correlation.md/.csv/.json`` in ``out_dir``; their paths by artifact name."""
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = {}
        for ext, text in (
            ("md", self.to_markdown()),
            ("csv", self.to_csv()),
            ("json", json.dumps(self.to_dict(), indent=2)),
        ):
            path = (out_dir / f"compare_correlation.{ext}").resolve()
            path.write_text(text, encoding="utf-8")
            paths[f"correlation_{ext}"] = str(path)
        return paths

    def print(self, console: Console) -> None:
        """The terminal form: one table of points and one ρ line per task pair."""
        from rich.table import Table

        for c in self.correlations:
            table = Table(
                "objective",
                "language",
                "Δ alignment",
                "Δ transfer",
                title=f"alignment vs transfer: {c.alignment_task} vs {c.transfer_task}",
            )
            for p in c.points:
                table.add_row(p.objective, p.language, f"{p.alignment:+.3f}", f"{p.transfer:+.3f}")
            console.print(table)
            console.print(f"  {_summary_line(c)}", highlight=False, markup=False)
        console.print(f"- {NOTE}", highlight=False, markup=False)


NOTE = (
    "Alignment vs transfer: each point is one objective on one language; Δ = improvement over "
    "base in the metric's units, signed by its direction (+ = better, so a fall in AER is "
    "positive). ρ: Spearman rank correlation over the points; 95 % CI: percentile bootstrap "
    f"of ρ over the points ({N_BOOT} resamples, seed {BOOT_SEED}). Few points give wide "
    "intervals; the points of one objective share its training run, so they are not "
    "independent."
)


def _summary_line(c: Correlation) -> str:
    if math.isnan(c.rho):
        return f"Spearman ρ: – ({len(c.points)} points; needs {MIN_POINTS} with varying values)"
    return (
        f"Spearman ρ = {c.rho:+.3f}, 95 % CI [{c.ci_low:+.3f}, {c.ci_high:+.3f}] "
        f"({len(c.points)} points)"
    )


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return value


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's ρ of paired values (average ranks for ties; NaN when an axis is constant
    or there are fewer than :data:`MIN_POINTS` pairs)."""
    from scipy.stats import spearmanr

    if len(x) < MIN_POINTS or len(set(x)) < 2 or len(set(y)) < 2:
        return float("nan")
    return float(spearmanr(x, y).statistic)


def bootstrap_ci(
    x: Sequence[float],
    y: Sequence[float],
    *,
    resamples: int = N_BOOT,
    seed: int = BOOT_SEED,
    level: float = 0.95,
) -> tuple[float, float]:
    """The percentile bootstrap interval of :func:`spearman` over the (x, y) pairs: pairs
    drawn with replacement, ρ per resample, resamples with an undefined ρ left out; (NaN,
    NaN) when none is defined."""
    if len(x) < MIN_POINTS:
        return float("nan"), float("nan")
    xs, ys = np.asarray(x, float), np.asarray(y, float)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(xs), size=(resamples, len(xs)))
    rhos = np.array([spearman(xs[i].tolist(), ys[i].tolist()) for i in draws])
    rhos = rhos[~np.isnan(rhos)]
    if not len(rhos):
        return float("nan"), float("nan")
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(rhos, [tail, 100 - tail])
    return float(low), float(high)


def task_kind(name: str, registry: Any = None) -> str | None:
    """``alignment``, ``transfer`` or None for task ``name``: the plugin's ``Task.kind`` when
    it declares one; else ``alignment`` for :data:`ALIGNMENT_TASKS`, ``transfer`` for
    :data:`TRANSFER_TASKS` and for a task that fine-tunes (:func:`fine_tunes`).

    Raises:
        PluginError: ``Task.kind`` is something else (naming the plugin).
    """
    from xalign.plugins import PluginError, get_registry

    by_name = {
        **dict.fromkeys(ALIGNMENT_TASKS, "alignment"),
        **dict.fromkeys(TRANSFER_TASKS, "transfer"),
    }
    try:
        entry = (registry or get_registry()).task(name)
    except Exception:  # a task of stored results whose plugin is gone: by name only
        return by_name.get(name)
    kind = getattr(entry.cls, "kind", None)
    if kind is not None and kind not in KINDS:
        raise PluginError(
            f"{entry.where()}: Task.kind must be one of {KINDS} or None, got {kind!r}"
        )
    return kind or by_name.get(name) or ("transfer" if fine_tunes(entry.cls) else None)


def fine_tunes(task_class: type) -> bool:
    """Whether a task class's options have ``joint`` (its Config extends
    :class:`xalign.FinetuneSettings`): it fine-tunes through xalign's shared loop."""
    import dataclasses

    config = getattr(task_class, "Config", None)
    return dataclasses.is_dataclass(config) and any(
        f.name == "joint" for f in dataclasses.fields(config)
    )


def improvements(summary: Summary, task: str) -> dict[tuple[str, str], float]:
    """(objective, language) -> improvement over base on ``task`` (+ = better; module
    docstring). Score keys of one language (several test sets) are averaged; the base row and
    cells without a Δ are left out."""
    info = summary.tasks[task]
    sign = 1.0 if info.higher_is_better else -1.0
    sums: dict[tuple[str, str], list[float]] = {}
    for cell in summary.rows:
        if cell.task != task or cell.objective == BASE or cell.delta_vs_base is None:
            continue
        lang = info.language_of.get(cell.language, cell.language)
        sums.setdefault((cell.objective, lang), []).append(sign * cell.delta_vs_base)
    return {k: float(np.mean(v)) for k, v in sums.items()}


def correlate(summary: Summary, alignment_task: str, transfer_task: str) -> Correlation:
    """The :class:`Correlation` of one task pair over the (objective, language) points both
    tasks have, in row then language order."""
    a, t = improvements(summary, alignment_task), improvements(summary, transfer_task)
    points = [Point(o, lang, a[o, lang], t[o, lang]) for (o, lang) in a if (o, lang) in t]
    x, y = [p.alignment for p in points], [p.transfer for p in points]
    low, high = bootstrap_ci(x, y)
    return Correlation(
        alignment_task=alignment_task,
        alignment_metric=summary.tasks[alignment_task].main_metric,
        transfer_task=transfer_task,
        transfer_metric=summary.tasks[transfer_task].main_metric,
        points=points,
        rho=spearman(x, y),
        ci_low=low,
        ci_high=high,
    )


def alignment_transfer(
    summary: Summary,
    registry: Any = None,
    *,
    alignment_tasks: Sequence[str] | None = None,
    transfer_tasks: Sequence[str] | None = None,
) -> AlignmentTransfer | None:
    """Every (alignment task, transfer task) :class:`Correlation` of ``summary``; None when
    it lacks either kind (tasks classified by :func:`task_kind` unless given)."""
    tasks = list(summary.tasks)
    if alignment_tasks is None:
        alignment_tasks = [t for t in tasks if task_kind(t, registry) == "alignment"]
    if transfer_tasks is None:
        transfer_tasks = [t for t in tasks if task_kind(t, registry) == "transfer"]
    if not alignment_tasks or not transfer_tasks:
        return None
    return AlignmentTransfer(
        [correlate(summary, a, t) for a in alignment_tasks for t in transfer_tasks]
    )
