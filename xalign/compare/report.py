"""Rendering of a comparison's :class:`~xalign.compare.statistics.Summary`.

Everything here reads the typed Summary only (no statistic is computed): the Markdown report
(``compare.md``), the CSV (``compare.csv``), the bar chart (``compare.png``), one Δ-vs-base
figure per task (``compare_<task>.png``, :mod:`xalign.compare.figures`), the JSON
(``compare.json`` and ``xalign compare --json``: :meth:`CompareReport.to_dict`) and the rich
tables ``xalign compare`` prints (:func:`print_report`). Markdown and terminal tables share
:func:`table_cells` and :func:`footer`, so they show the same cells and notes.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xalign.compare.figures import write_figures
from xalign.compare.statistics import BASE, N_BOOT, Average, Cell, HeadToHead, Summary
from xalign.evaluation.metrics import seed_text

if TYPE_CHECKING:
    from rich.console import Console

#: one rendered table cell: (``mean ± std``, `` (+Δ)*`` suffix, bold?)
CellText = tuple[str, str, bool]


@dataclass
class CompareReport:
    """Numbers, run ids and artifact paths of one comparison."""

    parent_run_id: str
    summary: Summary
    runs: dict[str, Any]
    artifacts: dict[str, str] = field(default_factory=dict)
    markdown: str = ""
    #: :class:`xalign.compare.correlation.AlignmentTransfer`, with alignment and transfer tasks
    correlation: Any = None

    def to_dict(self) -> dict[str, Any]:
        """``compare.json``: the parent run id, :meth:`Summary.to_dict`, runs and artifacts
        (and ``alignment_vs_transfer`` when the comparison has both kinds of task)."""
        out = {
            "parent_run_id": self.parent_run_id,
            **self.summary.to_dict(),
            "runs": self.runs,
            "artifacts": self.artifacts,
        }
        if self.correlation is not None:
            out["alignment_vs_transfer"] = self.correlation.to_dict()
        return out


# ------------------------------------------------------------------------------ cells
def decimals(summary: Summary, task: str) -> int:
    """3 decimals when every mean of ``task`` is in [-1, 1] (fractions), else 2 (percent)."""
    means = [
        e.mean for e in [*summary.rows, *summary.averages] if e.task == task and e.mean is not None
    ]
    return 3 if all(abs(m) <= 1.0 for m in means) else 2


def cell_parts(entry: Cell | Average, d: int) -> CellText:
    """(``mean ± std``, `` (+Δ)*`` suffix, bold?) of one table cell with ``d`` decimals."""
    if entry.mean is None:
        return "–", "", False
    core = seed_text(entry.mean, entry.std or 0.0, entry.n_seeds, f".{d}f")
    suffix = ""
    if entry.delta_vs_base is not None:
        suffix = f" ({entry.delta_vs_base:+.{d}f})"
    if entry.significant:
        suffix += "*"
    return core, suffix, entry.best


def columns(summary: Summary, task: str) -> list[str]:
    """Column labels of ``task``'s table after "objective": languages, then ``avg SCOPE``."""
    return [*summary.tasks[task].languages, *(f"avg {s}" for s in summary.scopes(task))]


def entry(summary: Summary, task: str, column: str, objective: str) -> Cell | Average:
    """The cell or average shown in ``column`` (a label of :func:`columns`) for ``objective``."""
    if column.startswith("avg ") and column not in summary.tasks[task].languages:
        return summary.average(task, column[4:], objective)
    return summary.cell(task, column, objective)


def table_cells(summary: Summary, task: str) -> tuple[list[str], list[list[Any]]]:
    """Header and per-row ``[objective, *cell_parts]`` of ``task``'s table."""
    d = decimals(summary, task)
    cols = columns(summary, task)
    body = [
        [row, *(cell_parts(entry(summary, task, c, row), d) for c in cols)]
        for row in summary.objectives
    ]
    return ["objective", *cols], body


def format_p(p: float | None, resamples: int = N_BOOT) -> str:
    """A p-value with 3 decimals; ``<1/resamples`` when no resample crossed 0; – when None."""
    if p is None:
        return "–"
    return f"<{1 / resamples:g}" if p == 0 else f"{p:.3f}"


def head_to_heads(summary: Summary, task: str) -> list[HeadToHead]:
    return [h for h in summary.head_to_head if h.task == task]


def option_items(options: dict[str, Any], prefix: str = "") -> list[str]:
    """``KEY=VALUE`` texts of task options as ``--option`` takes them: a mapping's entries as
    ``KEY.SUB=VALUE``, a list as ``[a,b]``, a mapping inside a list as ``{k: v}``, booleans and
    None as YAML writes them; a string holding ``", "`` (the items' separator), empty or with
    surrounding spaces in double quotes."""

    def text(value: Any) -> str:
        if value is None:
            return "null"
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (list, tuple)):
            return "[" + ",".join(text(v) for v in value) + "]"
        if isinstance(value, dict):
            return "{" + ", ".join(f"{k}: {text(v)}" for k, v in value.items()) + "}"
        if isinstance(value, str) and (", " in value or value != value.strip() or not value):
            return json.dumps(value, ensure_ascii=False)
        return str(value)

    items: list[str] = []
    for key, value in options.items():
        if isinstance(value, dict) and value:
            items += option_items(value, f"{prefix}{key}.")
        else:
            items.append(f"{prefix}{key}={text(value)}")
    return items


def options_line(summary: Summary, task: str) -> str | None:
    """``Task options: split=dev, threshold=dev`` with a task's table; None: its defaults."""
    items = option_items(summary.tasks[task].options)
    return f"Task options: {', '.join(items)}" if items else None


def mde_line(summary: Summary, task: str) -> str | None:
    """One line under a task's table: each language's and each average's minimum detectable
    effect vs base (the median over objectives of their tests' MDE), in the metric's units;
    None without tests."""
    by_lang: dict[str, list[float]] = {}
    for s in summary.significance:
        if s.task == task and s.test.mde == s.test.mde:  # not nan
            by_lang.setdefault(s.language, []).append(s.test.mde)
    for a in summary.averages:
        if a.task == task and a.mde is not None:
            by_lang.setdefault(f"avg {a.scope}", []).append(a.mde)
    if not by_lang:
        return None
    d = decimals(summary, task)
    parts = [f"{lang} {float(np.median(v)):.{d}f}" for lang, v in by_lang.items()]
    return f"Minimum detectable effect vs base (80 % power, p < {summary.alpha}): " + ", ".join(
        parts
    )


def footer(summary: Summary) -> list[str]:
    """The notes under the tables: what mean ± std, Δ, bold, the averages and * mean."""
    seen = ", ".join(summary.seen_languages)
    target = summary.target_language
    joint = [
        "joint:NAME rows: the base encoder fine-tuned on the task with objective NAME as an "
        "auxiliary loss on the run's parallel corpus (joint realignment, Gaschi et al. 2023); "
        "NAME rows: aligned with NAME first, then fine-tuned (sequential). Tasks that do not "
        "fine-tune have no joint result (–)."
    ]
    return joint * any(r.startswith("joint:") for r in summary.objectives) + [
        "mean ± std: mean and sample standard deviation (ddof=1) over seeds; seed s trains "
        "with train.seed=s and evaluates with task seed s (base: task seed s only); a mean "
        "without ± comes from one seed.",
        "(Δ): objective mean − base mean, in the metric's units (for lower-is-better metrics "
        "a negative Δ is an improvement). Bold: best mean in the column (ties all bold).",
        f"avg seen: mean over the source languages the objectives were trained on "
        f"(data.languages: {seen}); the alignment target {target} (also the task-training "
        f"language) is not counted as seen. avg all: mean over every language the task "
        f"reports, {target} included. Each average is computed per seed, then mean ± std over "
        f"seeds; it is tested like a language (below): within a seed each language's test "
        f"items are resampled (languages with as many items as each other, such as "
        f"translations of one test set, with the same indices) and the seeds are drawn once "
        f"for all of them.",
        f"*: p < {summary.alpha} in a two-sided two-level paired bootstrap test of the "
        f"objective vs base ({summary.resamples} resamples, seed {summary.boot_seed}): the "
        f"test items within each seed (the same items for both, Koehn 2004), then the seeds "
        f"(seed s paired with seed s), so the seed spread enters the test (with few seeds "
        f"coarsely); "
        f"the statistic is the table's metric (a corpus metric such as AER is recomputed on "
        f"each resample); p = min(1, 2·min(P(Δ*≤0), P(Δ*≥0))), reported as "
        f"<{1 / summary.resamples:g} when no resample crosses 0. "
        f"Best vs runner-up: the same test between the two best objectives (base excluded). "
        f"No correction for multiple comparisons.",
        "Minimum detectable effect: the smallest true difference vs base that the test finds "
        "at p < 0.05 with 80 % probability, 2.80 × the standard deviation of the resampled Δ "
        "(median over the objectives of a column); a protocol whose effect of interest is "
        "below it cannot tell the rows apart with these seeds and test items.",
    ]


# ------------------------------------------------------------------------------ formats
def to_markdown(summary: Summary, parent_run_id: str | None = None) -> str:
    """``compare.md``: per task a table, the best-vs-runner-up table, then the footer notes."""
    rows = [r for r in summary.objectives if r != BASE]
    lines = [f"# Zero-shot transfer: {', '.join(rows)} vs base", ""]
    if parent_run_id:
        lines += [f"MLflow parent run `{parent_run_id}`; {summary.seeds} seed(s).", ""]
    for task, info in summary.tasks.items():
        way = "higher" if info.higher_is_better else "lower"
        lines += [f"## {task} ({info.main_metric}, {way} is better)", ""]
        options = options_line(summary, task)
        if options:
            lines += [options, ""]
        header, body = table_cells(summary, task)
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
        for name, *cells in body:
            texts = [(f"**{c}**" if bold else c) + s for c, s, bold in cells]
            lines.append("| " + " | ".join([name, *texts]) + " |")
        mde = mde_line(summary, task)
        if mde:
            lines += ["", mde]
        h2h = head_to_heads(summary, task)
        if h2h:
            d = decimals(summary, task)
            lines += [
                "",
                "Best objective vs runner-up (same paired bootstrap):",
                "",
                "| language | best | runner-up | Δ | p |",
                "|---|---|---|---:|---:|",
            ]
            for h in h2h:
                p = format_p(h.p_value, summary.resamples)
                star = "*" if h.significant else ""
                lines.append(
                    f"| {h.language} | {h.best} | {h.runner_up} | {h.delta:+.{d}f} | {p}{star} |"
                )
        lines.append("")
    lines += ["---", ""] + [f"- {note}" for note in footer(summary)]
    return "\n".join(lines) + "\n"


def print_report(summary: Summary, console: Console) -> None:
    """The terminal form of :func:`to_markdown`: rich tables, best-vs-runner-up lines, notes."""
    from rich.table import Table

    for t, info in summary.tasks.items():
        way = "higher" if info.higher_is_better else "lower"
        header, body = table_cells(summary, t)
        table = Table(*header, title=f"{t}: {info.main_metric} ({way} is better)")
        for name, *cells in body:
            table.add_row(name, *((f"[bold]{c}[/]" if bold else c) + s for c, s, bold in cells))
        console.print(table)
        options = options_line(summary, t)
        if options:  # one line, not wrapped to the table's width
            console.print(f"  {options}", highlight=False, markup=False, soft_wrap=True)
        mde = mde_line(summary, t)
        if mde:
            console.print(f"  {mde}", highlight=False, markup=False)
        for h in head_to_heads(summary, t):
            p = format_p(h.p_value, summary.resamples)
            star = "*" if h.significant else ""
            console.print(
                f"  {h.language}: best {h.best} vs runner-up {h.runner_up}: "
                f"Δ {h.delta:+.4g}, p {p}{star}",
                highlight=False,
                markup=False,
            )
    for note in footer(summary):
        console.print(f"- {note}", highlight=False, markup=False)


def to_csv(summary: Summary) -> str:
    """``compare.csv``: one line per cell, then per average (language ``avg_SCOPE``)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(
        ["task", "language", "objective", "mean", "std", "n_seeds", "delta_vs_base", "p_value"]
    )
    entries: list[tuple[str, str, Cell | Average]] = [(c.task, c.language, c) for c in summary.rows]
    entries += [(a.task, f"avg_{a.scope}", a) for a in summary.averages]
    for task, lang, e in entries:
        writer.writerow(
            [
                task,
                lang,
                e.objective,
                _num(e.mean),
                _num(e.std),
                e.n_seeds,
                _num(e.delta_vs_base),
                _num(e.p_value),
            ]
        )
    return buf.getvalue()


def _num(v: float | None) -> str:
    return "" if v is None else repr(float(v))


def rows_with_values(summary: Summary, task: str) -> list[str]:
    """The rows (objectives, references such as eflomal, joint rows) that have a value on
    ``task``: a row without one (eflomal on a transfer task) gets no bar and no legend entry."""
    groups = columns(summary, task)
    return [
        row
        for row in summary.objectives
        if any(entry(summary, task, g, row).mean is not None for g in groups)
    ]


def plot(summary: Summary, path: Path) -> None:
    """Grouped bars per task: languages (and averages) on x, one bar per objective; ± std
    bars only where a mean comes from several seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    tasks = list(summary.tasks)
    width = max(
        6.0,
        1.0
        + 0.5
        * max(len(i.languages) + 2 for i in summary.tasks.values())
        * max(1, len(summary.objectives))
        / 2,
    )
    fig, axes = plt.subplots(len(tasks), 1, figsize=(width + 1.5, 3.2 * len(tasks)), squeeze=False)
    for ax, task in zip(axes[:, 0], tasks, strict=True):
        info = summary.tasks[task]
        groups = columns(summary, task)
        rows = rows_with_values(summary, task) or summary.objectives
        x = np.arange(len(groups))
        bar = 0.8 / len(rows)
        for i, row in enumerate(rows):
            entries = [entry(summary, task, g, row) for g in groups]
            means = [e.mean if e.mean is not None else np.nan for e in entries]
            stds = [e.std if e.std is not None and e.n_seeds > 1 else np.nan for e in entries]
            spread = stds if any(s == s for s in stds) else None  # one seed: no ± bars
            ax.bar(
                x + (i - (len(rows) - 1) / 2) * bar, means, bar, yerr=spread, capsize=2, label=row
            )
        rotate = max(len(g) for g in groups) > 6 or len(groups) > 10
        ax.set_xticks(x, groups, rotation=45 if rotate else 0, ha="right" if rotate else "center")
        way = "higher" if info.higher_is_better else "lower"
        several = any(e.n_seeds > 1 for e in summary.rows if e.task == task)
        what = "mean ± std over seeds" if several else "one seed"
        ax.set_title(f"{task}: {info.main_metric} ({way} is better), {what}")
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(report: CompareReport, out_dir: Path) -> None:
    """Write compare.md/.csv/.png/.json and the per-task figures to ``out_dir`` and record
    their paths (``artifacts``: ``figure:<task>`` for each figure)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        name: (out_dir / f"compare.{ext}").resolve()
        for name, ext in (("markdown", "md"), ("csv", "csv"), ("png", "png"), ("json", "json"))
    }
    report.markdown = to_markdown(report.summary, report.parent_run_id)
    if report.correlation is not None:  # compare_correlation.md/.csv/.json, and in compare.md
        report.markdown += "\n" + report.correlation.to_markdown()
    paths["markdown"].write_text(report.markdown, encoding="utf-8")
    paths["csv"].write_text(to_csv(report.summary), encoding="utf-8")
    plot(report.summary, paths["png"])
    report.artifacts = {k: str(v) for k, v in paths.items()}
    for task, figure in write_figures(report.summary, out_dir).items():
        report.artifacts[f"figure:{task}"] = str(figure)
    if report.correlation is not None:
        report.artifacts.update(report.correlation.write(out_dir))
    report.artifacts["output_dir"] = str(out_dir.resolve())
    paths["json"].write_text(json.dumps(report.to_dict(), indent=2), encoding="utf-8")
