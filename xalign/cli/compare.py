"""``xalign compare``: train each objective, evaluate it and the base encoder on tasks, and
test the differences (:mod:`xalign.compare`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from xalign.cli.common import check_model_ref, err, user_errors
from xalign.cli.eval import DEFAULT_COMPARE_TASKS, parse_task_options, split_names
from xalign.progress import stdout_console


def check_config_model(config: Path | None, overrides: list[str], objectives: list[str]) -> None:
    """A path-like ``model.name`` of the run config that does not exist fails at once."""
    from xalign.compare.orchestrate import training_config

    check_model_ref(training_config(config, overrides, objectives[0], 0).model.name, "model.name")


def parse_joint_options(items: list[str]) -> dict[str, Any]:
    """``--joint-option KEY=VALUE`` (YAML values, dotted keys nest) -> joint settings."""
    from xalign.config import ConfigError, parse_override

    out: dict[str, Any] = {}
    for item in items:
        keys, value = parse_override(item)
        if not keys:
            raise ConfigError(f"--joint-option {item!r}: expected KEY=VALUE (e.g. weight=0.1)")
        node = out
        for part in keys[:-1]:
            node = node.setdefault(part, {})
        node[keys[-1]] = value
    return out


def compare_command(
    objectives: list[str] = typer.Argument(
        ..., help="Objectives (NAME or NAME:WEIGHT); the unaligned base encoder is always a row."
    ),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML config file."),
    overrides: list[str] = typer.Option([], "--set", "-s", help="Override: key.sub=value."),
    tasks: list[str] = typer.Option(
        [],
        "--tasks",
        "--task",
        "-t",
        help="Task names (repeatable or comma-separated); default: "
        "the CPU-sized mini protocols align,xnli-mini.",
    ),
    seeds: int = typer.Option(1, "--seeds", min=1, help="Seeds 0..N-1 (train and task)."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Local data folder."),
    option: list[str] = typer.Option([], "--option", help="Task option TASK.KEY=VALUE."),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help="MLflow tracking URI."),
    languages: list[str] = typer.Option(
        [],
        "--languages",
        "-l",
        help="Evaluate only these languages (comma-separated or repeatable), among each "
        "task's languages option; default: each task's own.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    no_reuse: bool = typer.Option(
        False, "--no-reuse", help="Retrain and re-evaluate even if identical runs exist."
    ),
    mode: list[str] = typer.Option(
        [],
        "--mode",
        help="Rows per objective (repeatable or comma-separated): sequential (align, then "
        "fine-tune; the default) and/or joint (the base encoder fine-tuned with the objective "
        "as an auxiliary loss: rows joint:NAME). See docs/joint.md.",
    ),
    joint_option: list[str] = typer.Option(
        [],
        "--joint-option",
        help="Setting of the joint rows KEY=VALUE: weight, schedule (constant|linear|every), "
        "every, batch_size, max_grad_ratio, options.KEY.",
    ),
    re_evaluate: bool = typer.Option(
        False,
        "--re-evaluate",
        help="Reuse identical training runs but evaluate every model again "
        "(e.g. after editing a task).",
    ),
) -> None:
    """Compare objectives against the base encoder per task and language, with significance."""
    from xalign.compare import compare, print_report

    names = split_names(tasks) or list(DEFAULT_COMPARE_TASKS)
    with user_errors():  # user-facing errors only; anything else is a bug
        options = parse_task_options(option, names)
        joint = parse_joint_options(joint_option)
        check_config_model(config, overrides, objectives)
        report = compare(
            objectives,
            config_path=config,
            overrides=overrides,
            tasks=names,
            seeds=seeds,
            task_options=options,
            data_dir=data_dir,
            tracking_uri=tracking_uri,
            reuse=not no_reuse,
            modes=split_names(mode) or ["sequential"],
            joint=joint,
            reuse_evaluations=not re_evaluate,
            languages=split_names(languages) or None,
            log=lambda msg: err.print(msg, highlight=False, soft_wrap=True),
        )
    if as_json:
        typer.echo(json.dumps(report.to_dict()))
        return
    print_report(report.summary, stdout_console())
    if report.correlation is not None:
        report.correlation.print(stdout_console())
    err.print(
        f"parent run {report.parent_run_id}; report in {report.artifacts['output_dir']}",
        highlight=False,
    )
