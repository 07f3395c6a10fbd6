"""``xalign eval``: evaluate a model on tasks, one MLflow run per seed; the task-name and
``--option`` parsing that ``xalign compare`` shares."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from xalign.cli.common import check_model_ref, err, user_errors
from xalign.progress import fail, stdout_console

DEFAULT_COMPARE_TASKS = ("align", "xnli-mini")  # compare's default: the CPU-sized protocols


def split_names(items: list[str]) -> list[str]:
    """Repeatable and/or comma-separated names, de-duplicated in order."""
    names = [n.strip() for item in items for n in item.split(",") if n.strip()]
    return list(dict.fromkeys(names))


def parse_task_options(items: list[str], tasks: list[str]) -> dict[str, dict[str, Any]]:
    """``--option TASK.KEY=VALUE`` (YAML values, dotted keys nest) -> {task: options}."""
    from xalign.config import ConfigError, parse_override

    out: dict[str, dict[str, Any]] = {}
    for item in items:
        keys, value = parse_override(item)
        if len(keys) < 2:
            raise ConfigError(f"--option {item!r}: expected TASK.KEY=VALUE (e.g. xnli.epochs=1)")
        if keys[0] not in tasks:
            raise ConfigError(f"--option {item!r}: task {keys[0]!r} is not among {tasks}")
        node = out.setdefault(keys[0], {})
        for part in keys[1:-1]:
            node = node.setdefault(part, {})
        node[keys[-1]] = value
    return out


def _is_count(value: float, metric: str) -> bool:
    """A whole number shown as one: a count (``n_*`` metrics: ``n_pred``, ``n_sure``, ...) or
    any whole value above 1 (a score in [0, 1] that is exactly 0 or 1 keeps its decimals)."""
    return (
        math.isfinite(value) and value.is_integer() and (abs(value) > 1 or metric.startswith("n_"))
    )


def _fmt(mean: float, std: float, n_seeds: int, metric: str = "") -> str:
    """``mean ± std``; one seed has no spread, so just the mean. Whole numbers (counts such
    as ``n_pred 4383``) print without decimals, and so does a whole spread beside one."""
    from xalign.evaluation.metrics import seed_text

    if _is_count(mean, metric):
        return seed_text(mean, std, n_seeds, ".0f", ".0f" if std.is_integer() else ".2f")
    return seed_text(mean, std, n_seeds, ".3f" if abs(mean) <= 1.0 else ".2f")


def eval_command(
    model: str | None = typer.Argument(
        None,
        help="Path, hub id, packaged:NAME, 'base' (the "
        "default config's encoder) or an MLflow training run id.",
    ),
    model_option: str | None = typer.Option(
        None, "--model", "-m", help="The model, as an option (same as MODEL)."
    ),
    task: list[str] = typer.Option(..., "--task", "-t", help="Task name (repeatable)."),
    seeds: int = typer.Option(1, "--seeds", min=1, help="Task seeds 0..N-1 (one run each)."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Local data folder."),
    option: list[str] = typer.Option([], "--option", help="Task option TASK.KEY=VALUE."),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help="MLflow tracking URI."),
    languages: list[str] = typer.Option(
        [],
        "--languages",
        "-l",
        help="Evaluate only these languages (comma-separated or repeatable), among each "
        "task's languages option; default: the task's own.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    no_reuse: bool = typer.Option(
        False,
        "--no-reuse",
        help="Re-evaluate even if a finished run with the same "
        "content key (model files, task data, options) exists.",
    ),
) -> None:
    """Evaluate a model on task(s), one MLflow run per seed (finished identical runs reused:
    same model file contents, task input file contents, options, seed and plugin version)."""
    from xalign.evaluation.runs import evaluate_runs, resolve_spec
    from xalign.task import TaskContext
    from xalign.tracking import check_tracking

    if model is not None and model_option is not None and model != model_option:
        fail(f"two models given: {model!r} and --model {model_option!r}")
    model = model or model_option
    if model is None:
        fail("no model: xalign eval MODEL --task T (or --model MODEL)")
    tasks = split_names(task)
    with user_errors():  # user-facing errors only; anything else is a bug
        check_model_ref(model)
        options = parse_task_options(option, tasks)
        check_tracking(tracking_uri)  # seconds, before any model is resolved or loaded
        spec = resolve_spec(model, tracking_uri=tracking_uri)
        langs = split_names(languages) or None
        context = TaskContext(data_dir=data_dir, languages=langs, show_progress=not as_json)
        runs = [
            r
            for t in tasks
            for r in evaluate_runs(
                spec,
                t,
                options=options.get(t),
                seeds=seeds,
                context=context,
                tracking_uri=tracking_uri,
                reuse=not no_reuse,
            )
        ]
    from xalign.compare.report import option_items
    from xalign.compare.statistics import eval_summary

    summary = eval_summary(runs)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "model": model,
                    "model_path": spec.path,
                    "train_run_id": spec.train_run_id,
                    "objective": spec.objective,
                    "task_options": {t: options.get(t) or {} for t in tasks},
                    "runs": [
                        {
                            "task": r.task,
                            "seed": r.seed,
                            "run_id": r.run_id,
                            "reused": r.reused,
                            "eval_key": r.eval_key,
                            "main_metric": r.result.main_metric,
                            "scores": r.result.scores,
                        }
                        for r in runs
                    ],
                    "summary": summary,
                }
            )
        )
        return
    console = stdout_console()
    for t, langs in summary.items():
        metrics = list(dict.fromkeys(m for scores in langs.values() for m in scores))
        table = Table("language", *metrics, title=f"{t} — {model} ({seeds} seed(s))")
        for lang, scores in langs.items():
            table.add_row(
                lang,
                *(
                    _fmt(scores[m]["mean"], scores[m]["std"], scores[m]["n_seeds"], m)
                    if m in scores
                    else "–"
                    for m in metrics
                ),
            )
        console.print(table)
        given = option_items(options.get(t) or {})
        if given:  # one line, not wrapped to the table's width
            console.print(
                f"  Task options: {', '.join(given)}", highlight=False, markup=False, soft_wrap=True
            )
    reused = sum(r.reused for r in runs)
    err.print(
        f"{len(runs)} eval run(s), {reused} reused: {', '.join(r.run_id for r in runs)}",
        highlight=False,
    )
