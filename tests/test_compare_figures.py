"""``xalign.compare.figures``: a Δ-vs-base figure per task, read from the Summary only."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from xalign.compare import CompareReport, summarize
from xalign.compare.figures import delta_points, draw_task, figure_name, write_figures
from xalign.compare.report import plot, write_report
from xalign.task import Metric, TaskResult

PNG = b"\x89PNG\r\n\x1a\n"
LONG = [f"xlwa-{c}-test" for c in ("bg", "es", "fr", "de", "it", "pt", "ro", "sl", "nl")]


def result(scores: dict[str, list[float]], metric: str = "acc") -> TaskResult:
    return TaskResult(
        task="t",
        main_metric=metric,
        scores={k: {metric: sum(v) / len(v)} for k, v in scores.items()},
        per_example={k: list(v) for k, v in scores.items()},
        metrics=(Metric(metric, higher_is_better=True),),
    )


def summary_of(languages: list[str], seeds: int, rows=("base", "A", "B")):
    """Row r, seed s, language k: 20 per-example scores alternating around a known mean."""
    shift = {"base": 0.0, "A": 0.1, "B": -0.02}
    results = {
        r: {
            "t": {
                s: result(
                    {
                        lang: [
                            0.5 + shift[r] + 0.01 * s + (0.2 if n % 2 else -0.2) for n in range(20)
                        ]
                        for lang in languages
                    }
                )
                for s in range(seeds)
            }
        }
        for r in rows
    }
    return summarize(
        results, rows=list(rows), tasks=["t"], seen_languages=languages[:1], seeds=seeds
    )


def test_points_are_the_table_deltas_and_the_test_intervals() -> None:
    summary = summary_of(["de", "fr"], seeds=2)
    points = delta_points(summary, "t")
    assert [(p.objective, p.language) for p in points] == [
        ("A", "de"),
        ("A", "fr"),
        ("B", "de"),
        ("B", "fr"),
    ]
    tests = {(s.objective, s.language): s.test for s in summary.significance}
    for p in points:
        assert p.delta == pytest.approx(summary.cell("t", p.language, p.objective).delta_vs_base)
        assert (p.ci_low, p.ci_high) == (
            tests[p.objective, p.language].ci_low,
            tests[p.objective, p.language].ci_high,
        )
        assert p.ci_low <= p.delta <= p.ci_high
    a_de = next(p for p in points if p.objective == "A")
    assert a_de.delta == pytest.approx(0.1) and a_de.significant


@pytest.mark.parametrize("languages", [["de", "fr"], LONG])
def test_x_labels_do_not_overlap(languages: list[str]) -> None:
    fig = draw_task(summary_of(languages, seeds=1), "t")
    fig.canvas.draw()
    (ax,) = [a for a in fig.axes]
    boxes = [t.get_window_extent() for t in ax.get_xticklabels()]
    assert [t.get_text() for t in ax.get_xticklabels()] == languages
    for a, b in itertools.combinations(boxes, 2):
        assert not a.overlaps(b)
    fig_box = fig.bbox
    assert all(fig_box.x0 <= b.x0 and b.x1 <= fig_box.x1 and b.y0 >= fig_box.y0 for b in boxes)


def test_bar_chart_has_no_std_bars_for_one_seed(tmp_path: Path) -> None:
    from matplotlib.axes import Axes

    drawn: list = []
    original = Axes.bar

    def spy(self, *args, **kwargs):
        drawn.append(kwargs.get("yerr"))
        return original(self, *args, **kwargs)

    Axes.bar = spy
    try:
        plot(summary_of(["de", "fr"], seeds=1), tmp_path / "one.png")
        one = list(drawn)
        drawn.clear()
        plot(summary_of(["de", "fr"], seeds=2), tmp_path / "two.png")
        two = list(drawn)
    finally:
        Axes.bar = original
    assert one and all(y is None for y in one)
    assert two and all(y is not None for y in two)


def test_write_report_writes_and_records_one_figure_per_task(tmp_path: Path) -> None:
    summary = summary_of(["de", "fr"], seeds=2)
    report = CompareReport("parent", summary, {})
    write_report(report, tmp_path)
    path = Path(report.artifacts["figure:t"])
    assert path == (tmp_path / figure_name("t")).resolve()
    assert path.read_bytes()[:8] == PNG
    assert figure_name("a/b c") == "compare_a_b_c.png"


def test_no_figure_without_deltas(tmp_path: Path) -> None:
    summary = summary_of(["de"], seeds=1, rows=("base",))
    assert write_figures(summary, tmp_path) == {}


def test_a_row_without_values_on_a_task_gets_no_bar_there(tmp_path: Path) -> None:
    """A reference row scored on one task only (eflomal on align) is left out of the other
    task's bars and legend, and kept where it has values."""
    from xalign.compare.report import rows_with_values

    def scores(shift: float) -> dict[int, TaskResult]:
        return {0: result({"de": [0.5 + shift + (0.2 if n % 2 else -0.2) for n in range(20)]})}

    results = {
        "base": {"t": scores(0.0), "u": scores(0.0)},
        "A": {"t": scores(0.1), "u": scores(0.05)},
        "ref": {"t": scores(0.2), "u": {}},
    }
    summary = summarize(
        results, rows=["base", "A", "ref"], tasks=["t", "u"], seen_languages=["de"], seeds=1
    )
    assert rows_with_values(summary, "t") == ["base", "A", "ref"]
    assert rows_with_values(summary, "u") == ["base", "A"]
    plot(summary, tmp_path / "compare.png")
    assert (tmp_path / "compare.png").read_bytes().startswith(PNG)
