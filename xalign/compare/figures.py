"""Per-task figures of a comparison: Δ vs base per language with 95 % bootstrap intervals.

One PNG per task (``compare_<task>.png``, written next to ``compare.md`` and logged to MLflow
by ``xalign compare``). Each objective is a marker per language at its Δ vs base (objective
mean − base mean, the table's ``(Δ)``), with the 95 % percentile interval of the paired
bootstrap that gives the table's ``*`` (:func:`xalign.compare.statistics.paired_test`:
sentences or test items within each seed, then the seeds); filled markers are significant at
the table's α, hollow ones are not, a marker without a bar has no per-example data to test.
No ± std bars are drawn (with one seed there is no seed spread to show; the interval already
includes the seed level when there are several). Everything is read from the
:class:`~xalign.compare.statistics.Summary`; nothing is computed here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from xalign.compare.statistics import BASE, Summary

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class DeltaPoint:
    """One marker: Δ vs base of ``objective`` on ``language`` and its interval (or None)."""

    objective: str
    language: str
    delta: float
    ci_low: float | None
    ci_high: float | None
    significant: bool


def delta_points(summary: Summary, task: str) -> list[DeltaPoint]:
    """Every objective's Δ vs base on each language column of ``task`` (base excluded; cells
    without a Δ are left out), in table order."""
    tests = {(s.language, s.objective): s.test for s in summary.significance if s.task == task}
    points = []
    for objective in summary.objectives:
        if objective == BASE:
            continue
        for language in summary.tasks[task].languages:
            cell = summary.cell(task, language, objective)
            if cell.delta_vs_base is None:
                continue
            test = tests.get((language, objective))
            points.append(
                DeltaPoint(
                    objective,
                    language,
                    cell.delta_vs_base,
                    None if test is None else test.ci_low,
                    None if test is None else test.ci_high,
                    cell.significant,
                )
            )
    return points


def figure_name(task: str) -> str:
    """``compare_<task>.png`` with characters unsafe in a file name replaced by ``_``."""
    return f"compare_{re.sub(r'[^A-Za-z0-9_.-]+', '_', task)}.png"


def plot_task(summary: Summary, task: str, path: Path) -> Path | None:
    """Write ``task``'s Δ-vs-base figure to ``path``; None (nothing written) without Δs."""
    import matplotlib.pyplot as plt

    fig = draw_task(summary, task)
    if fig is None:
        return None
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def draw_task(summary: Summary, task: str) -> Figure | None:
    """``task``'s Δ-vs-base figure (a matplotlib Figure, Agg backend); None without Δs.

    x: the task's language columns (labels turned 45° when long or many, so they do not
    overlap), one marker per objective, offset within the column.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = delta_points(summary, task)
    if not points:
        return None
    info = summary.tasks[task]
    languages = [lang for lang in info.languages if any(p.language == lang for p in points)]
    objectives = list(dict.fromkeys(p.objective for p in points))
    longest = max(len(lang) for lang in languages)
    rotate = longest > 6 or len(languages) > 10
    step = 0.8 / len(objectives)
    width = min(24.0, max(6.0, 1.6 + len(languages) * max(0.45, 0.22 * len(objectives) + 0.2)))
    fig, ax = plt.subplots(figsize=(width + 2.0, 4.2 + (0.06 * longest if rotate else 0)))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, objective in enumerate(objectives):
        color = colors[k % len(colors)]
        offset = (k - (len(objectives) - 1) / 2) * step
        mine = [p for p in points if p.objective == objective]
        for p in mine:
            x = languages.index(p.language) + offset
            if p.ci_low is not None and p.ci_high is not None:
                ax.errorbar(
                    x,
                    p.delta,
                    yerr=[[max(0.0, p.delta - p.ci_low)], [max(0.0, p.ci_high - p.delta)]],
                    color=color,
                    capsize=3,
                    linewidth=1.2,
                )
            ax.plot(
                x,
                p.delta,
                marker="o",
                markersize=6,
                color=color,
                markerfacecolor=color if p.significant else "white",
                linestyle="none",
            )
        ax.plot([], [], marker="o", color=color, linestyle="none", label=objective)
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.set_xticks(
        range(len(languages)),
        languages,
        rotation=45 if rotate else 0,
        ha="right" if rotate else "center",
    )
    ax.set_xlim(-0.6, len(languages) - 0.4)
    better = "Δ > 0" if info.higher_is_better else "Δ < 0"
    ax.set_ylabel(f"Δ {info.main_metric} vs base")
    seeds = f"{summary.seeds} seed(s)" if summary.seeds else "seeds"
    ax.set_title(
        f"{task}: {info.main_metric} − base ({better} is better), {seeds}\n"
        f"bars: 95 % paired-bootstrap interval; filled: p < {summary.alpha}",
        fontsize="medium",
    )
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


def write_figures(summary: Summary, out_dir: Path) -> dict[str, Path]:
    """One figure per task of ``summary`` in ``out_dir``: {task: path} of those written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for task in summary.tasks:
        path = plot_task(summary, task, out_dir / figure_name(task))
        if path is not None:
            written[task] = path.resolve()
    return written
