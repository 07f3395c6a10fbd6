"""``xalign run``: fine-tune an encoder with alignment objective(s); the run id on stdout, and
on stderr what was measured and the commands to look at it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from xalign.cli.common import check_model_ref, err, user_errors

if TYPE_CHECKING:
    from xalign.recipe import RunResult


def resume_step(resume: Path) -> tuple[Path, int | None]:
    """The checkpoint ``--resume`` continues from and its step (None: unreadable state)."""
    from xalign.checkpoint import STATE, find_checkpoint

    ckpt = find_checkpoint(resume)
    try:
        return ckpt, int(json.loads((ckpt / STATE).read_text(encoding="utf-8"))["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return ckpt, None  # the recipe's own load names the problem


def summary_lines(result: RunResult, tracking_uri: str) -> list[str]:
    """What a finished run measured (final loss, each pair's objective terms at the last step)
    and where it is, then the next commands: evaluation and the MLflow UI."""
    m = result.metrics
    seconds = m.get("train_seconds")
    took = f" in {seconds:.1f} s" if seconds is not None else ""
    lines = [f"finished {result.steps} steps{took}; outputs in {result.output_dir}"]
    pairs: dict[str, dict[str, float]] = {}
    for key, value in m.items():
        if "/" in key:
            pair, term = key.split("/", 1)
            pairs.setdefault(pair, {})[term] = value
    if "loss" in m:
        lines.append(f"final loss {m['loss']:.4f} (the sum of each pair's weighted total)")
    for pair, terms in pairs.items():
        shown = ", ".join(f"{t} {v:.4f}" for t, v in terms.items() if t != "weight")
        lines.append(f"  {pair}: {shown}")
    lines.append("  (every step's values are in the MLflow run; final_metrics.json is an artifact)")
    if result.model_dir is not None:
        lines.append(f"model: {result.model_dir}")
        ref = result.run_id or str(result.model_dir)
        lines.append("next:")
        lines.append(f"  xalign eval --model {ref} --task align")
    else:
        lines.append(
            "no model saved (train.save_model: false): to evaluate, train again with "
            "--set train.save_model=true"
        )
        lines.append("next:")
    from xalign.redact import redact_uri

    shown = redact_uri(tracking_uri)
    if tracking_uri.split(":", 1)[0].lower() in ("http", "https", "databricks", "databricks-uc"):
        lines.append(f"  open the run in the MLflow UI of {shown}")  # a server has its UI
    else:
        lines.append(f"  mlflow ui --backend-store-uri {shown} --host 127.0.0.1")
    return lines


def run_command(
    objective: list[str] = typer.Option(
        [], "--objective", "-o", help="Objective NAME or NAME:WEIGHT (repeat to combine)."
    ),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML config file."),
    overrides: list[str] = typer.Option([], "--set", "-s", help="Override: key.sub=value."),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help="MLflow tracking URI."),
    resume: Path | None = typer.Option(
        None, "--resume", help="Run output dir or checkpoint to resume."
    ),
    as_json: bool = typer.Option(False, "--json", help='Print {"run_id", "metrics"}.'),
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="No progress and no summary: stdout has the run id only."
    ),
) -> None:
    """Fine-tune an encoder with alignment objective(s); prints the MLflow run id."""
    from xalign.checkpoint import find_checkpoint
    from xalign.config import load_config
    from xalign.errors import ConfigError
    from xalign.plugins import get_registry
    from xalign.recipe import run_training
    from xalign.tracking import resolve_tracking_uri

    with user_errors():  # TrainingInterrupted (SIGINT/SIGTERM) exits 130/143
        if resume is not None and not resume.exists():
            raise ConfigError(
                f"--resume {resume}: no such file or directory (give a run's "
                f"output dir or one of its checkpoints)"
            )
        saved = resume is not None and config is None and not objective
        if saved:
            config = find_checkpoint(resume) / "config.yaml"
        registry = get_registry()
        # every value and every objective option is checked here, before anything heavy;
        # a saved config holds paths as the run read them (absolute since they are anchored)
        cfg = load_config(
            config, overrides, objective or None, registry=registry, paths_from_file=not saved
        )
        if tracking_uri:
            cfg.tracking.uri = tracking_uri
        for name in cfg.objectives:
            registry.objective(name)
        check_model_ref(cfg.model.name, "model.name")
        if resume is not None:
            ckpt, step = resume_step(resume)
            at = f"step {step}" if step is not None else "its last step"
            err.print(f"resuming from {at} (checkpoint {escape(str(ckpt))})", highlight=False)
        result = run_training(cfg, resume=resume, registry=registry, show_progress=not quiet)
    from accelerate import PartialState

    if not PartialState().is_main_process:
        return
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "run_id": result.run_id,
                    "metrics": result.metrics,
                    "output_dir": str(result.output_dir),
                }
            )
        )
        return
    if quiet:
        err.print(f"finished {result.steps} steps; outputs in {result.output_dir}")
    else:
        uri = resolve_tracking_uri(cfg.tracking.uri)
        for line in summary_lines(result, uri):
            err.print(escape(line), highlight=False, soft_wrap=True)
    typer.echo(result.run_id)
