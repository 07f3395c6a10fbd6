"""The ``xalign`` command line."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from xalign.progress import stdout_console

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Cross-lingual alignment objectives for multilingual encoders.")
err = Console(stderr=True)


@app.callback()
def _quiet_libraries() -> None:
    """Keep library chatter (weight-loading bars, store migrations) out of the output."""
    import logging
    import os

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    warnings.showwarning = _show_warning


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: object = None, line: str | None = None) -> None:
    """One ``warning: Category: message`` line on stderr, without Python's source excerpt."""
    from rich.markup import escape

    err.print(f"[yellow]warning:[/] {category.__name__}: {escape(str(message))}",
              highlight=False, soft_wrap=True)


def _fail(message: str, code: int = 1) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


@app.command()
def plugins(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List installed objective and task plugins."""
    from xalign.plugins import PluginError, get_registry

    try:
        listing = get_registry().listing()
    except PluginError as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(json.dumps(listing, indent=2))
        return
    table = Table("name", "kind", "distribution", "version", "module", "needs", "description")
    for item in listing:
        table.add_row(item["name"], item["kind"], item["distribution"], item["version"],
                      item["module"], ", ".join(item.get("needs", [])) or "-",
                      item["description"])
    stdout_console().print(table)


@app.command()
def run(
    objective: list[str] = typer.Option(
        [], "--objective", "-o", help="Objective NAME or NAME:WEIGHT (repeat to combine)."),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML config file."),
    overrides: list[str] = typer.Option([], "--set", "-s", help="Override: key.sub=value."),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri",
                                               help="MLflow tracking URI."),
    resume: Path | None = typer.Option(None, "--resume",
                                          help="Run output dir or checkpoint to resume."),
    as_json: bool = typer.Option(False, "--json", help='Print {"run_id", "metrics"}.'),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Fine-tune an encoder with alignment objective(s); prints the MLflow run id."""
    from xalign.checkpoint import find_checkpoint
    from xalign.config import ConfigError, load_config
    from xalign.plugins import PluginError, get_registry
    from xalign.trainer import TrainingDiverged, run_training

    try:
        if resume is not None and config is None and not objective:
            config = find_checkpoint(resume) / "config.yaml"
        cfg = load_config(config, overrides, objective or None)
        if tracking_uri:
            cfg.tracking.uri = tracking_uri
        registry = get_registry()
        for name in cfg.objectives:
            registry.objective(name)
        result = run_training(cfg, resume=resume, registry=registry, show_progress=not quiet)
    except (ConfigError, PluginError, TrainingDiverged, FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    except RuntimeError as exc:
        if type(exc).__name__ in ("EncoderLoadError", "CorpusError"):
            _fail(str(exc))
        raise
    from accelerate import PartialState

    if not PartialState().is_main_process:
        return
    if as_json:
        typer.echo(json.dumps({"run_id": result.run_id, "metrics": result.metrics,
                               "output_dir": str(result.output_dir)}))
    else:
        err.print(f"finished {result.steps} steps; outputs in {result.output_dir}")
        typer.echo(result.run_id)


from xalign.cli_eval import compare_command, eval_command  # noqa: E402

app.command("eval")(eval_command)
app.command("compare")(compare_command)

from xalign.cli_align import align  # noqa: E402

app.command("align")(align)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
