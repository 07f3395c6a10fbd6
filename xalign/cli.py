"""The ``xalign`` command line."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import typer
from rich.table import Table

from xalign.progress import fail as _fail
from xalign.progress import stderr_console, stdout_console

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Cross-lingual alignment objectives for multilingual encoders.",
)
err = stderr_console()
LOAD_ENV_HINT = (
    "XALIGN_LOAD_PLUGINS=NAME,... loads only the named plugins (DIST:NAME picks "
    "one of two plugins with the same name)"
)


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


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: object = None,
    line: str | None = None,
) -> None:
    """One ``warning: Category: message`` line on stderr, without Python's source excerpt."""
    from rich.markup import escape

    err.print(
        f"[yellow]warning:[/] {category.__name__}: {escape(str(message))}",
        highlight=False,
        soft_wrap=True,
    )


def _exit_code(exc: BaseException) -> int:
    """An error's own exit code (TrainingInterrupted: 128 + signal), else 1."""
    return int(getattr(exc, "exit_code", 1))


@app.command()
def plugins(
    name: str | None = typer.Argument(
        None, help="An objective or task: list its options (--option/--set keys, defaults)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List installed objective and task plugins, and any broken or conflicting ones; with
    NAME, the options of that objective or task."""
    from rich.markup import escape

    from xalign.errors import XalignError
    from xalign.plugins import PluginWarning, get_registry

    try:
        with warnings.catch_warnings():  # the listing shows every problem itself
            warnings.simplefilter("ignore", PluginWarning)
            listing = get_registry().listing()
    except XalignError as exc:
        _fail(str(exc), _exit_code(exc))
    if name is not None:
        _plugin_options(name, [i for i in listing if i["name"] == name], as_json)
        return
    if as_json:
        typer.echo(json.dumps(listing, indent=2))
        return
    table = Table(
        "name", "kind", "status", "distribution", "version", "module", "needs", "description"
    )
    for item in listing:
        ok = item["status"] == "ok"
        status = "ok" if ok else f"[bold red]{item['status']}[/]"
        about = escape(item["description"]) if ok else f"[red]{escape(item['error'])}[/]"
        table.add_row(
            *(escape(str(item[k])) for k in ("name", "kind")),
            status,
            *(escape(str(item[k])) for k in ("distribution", "version", "module")),
            escape(", ".join(item.get("needs", [])) or "-"),
            about,
        )
    stdout_console().print(table)
    problems = sum(item["status"] != "ok" for item in listing)
    if problems:
        err.print(
            f"{problems} plugin problem(s): see the status column; {LOAD_ENV_HINT}", highlight=False
        )


def _plugin_options(name: str, found: list[dict], as_json: bool) -> None:
    """``xalign plugins NAME``: the options of an objective and/or task called NAME."""
    from rich.markup import escape

    from xalign.plugins import get_registry

    ok = [item for item in found if item["status"] == "ok"]
    if not ok:
        problem = next((item["error"] for item in found), None)
        known = sorted({i.name for i in (*get_registry().objectives().values(),
                                          *get_registry().tasks().values())})  # fmt: skip
        _fail(problem or f"no objective or task {name!r}; installed: {', '.join(known)}", 2)
    if as_json:
        typer.echo(json.dumps(ok, indent=2))
        return
    for item in ok:
        if item["kind"] == "objective":  # every objective also takes its weight in the sum
            prefix, how, options = (
                f"objectives.{name}.",
                "--set",
                {**item["options"], "weight": 1.0},
            )
        else:
            prefix, how, options = f"{name}.", "--option", item["options"]
        table = Table("option", "default", title=f"{item['kind']} {name}: {how} {prefix}KEY=VALUE")
        for key, default in options.items():
            table.add_row(escape(prefix + key), escape(json.dumps(default)))
        stdout_console().print(table)


@app.command()
def run(
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
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Fine-tune an encoder with alignment objective(s); prints the MLflow run id."""
    from xalign.checkpoint import find_checkpoint
    from xalign.config import load_config
    from xalign.errors import ConfigError, XalignError
    from xalign.plugins import get_registry
    from xalign.recipe import run_training

    try:
        if resume is not None and not resume.exists():
            raise ConfigError(
                f"--resume {resume}: no such file or directory (give a run's "
                f"output dir or one of its checkpoints)"
            )
        if resume is not None and config is None and not objective:
            config = find_checkpoint(resume) / "config.yaml"
        registry = get_registry()
        # every value and every objective option is checked here, before anything heavy
        cfg = load_config(config, overrides, objective or None, registry=registry)
        if tracking_uri:
            cfg.tracking.uri = tracking_uri
        for name in cfg.objectives:
            registry.objective(name)
        result = run_training(cfg, resume=resume, registry=registry, show_progress=not quiet)
    except XalignError as exc:  # TrainingInterrupted (SIGINT/SIGTERM) exits 130/143
        _fail(str(exc), _exit_code(exc))
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
    else:
        err.print(f"finished {result.steps} steps; outputs in {result.output_dir}")
        typer.echo(result.run_id)


from xalign.cli_eval import compare_command, eval_command  # noqa: E402

app.command("eval")(eval_command)
app.command("compare")(compare_command)

from xalign.cli_align import align  # noqa: E402

app.command("align")(align)

from xalign.cli_prepare import prepare_command  # noqa: E402

app.command("prepare")(prepare_command)
app.command("export")(__import__("xalign.cli_export", fromlist=["_"]).export_command)


@app.command("sync-tracking")
def sync_tracking(
    directory: Path = typer.Argument(..., help="Run output dir holding tracking-backlog.jsonl."),
    tracking_uri: str | None = typer.Option(
        None, "--tracking-uri", help="Send to this store instead of the one recorded."
    ),
) -> None:
    """Send MLflow records a run kept locally while its tracking server was unreachable."""
    from xalign.errors import XalignError
    from xalign.tracking import replay_backlog

    try:
        sent = replay_backlog(directory, tracking_uri)
    except XalignError as exc:
        _fail(str(exc), _exit_code(exc))
    err.print(f"sent {sent} tracking record(s) from {directory}", highlight=False)


_TERMINATED: list[bool] = []


def _sigterm_as_interrupt(signum: int, frame: object) -> None:
    """SIGTERM outside training (which handles it itself) ends like Ctrl-C: runs marked KILLED."""
    _TERMINATED.append(True)
    raise KeyboardInterrupt("SIGTERM")


def main() -> None:
    """The ``xalign`` command. An interrupt exits 128 + the signal number (130 SIGINT,
    143 SIGTERM) after the runs it started were marked KILLED."""
    import signal

    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        app()
    except KeyboardInterrupt as exc:  # outside typer's command call
        code = 143 if str(exc) == "SIGTERM" else 130
    except SystemExit as exc:  # typer turns a KeyboardInterrupt in a command into exit 130
        if exc.code != 130:
            raise
        code = 143 if _TERMINATED else 130
    else:
        return
    if code == 143:  # a scheduler's stop: say so in the job's log
        err.print("xalign: interrupted by SIGTERM; runs it had started are marked KILLED")
    sys.exit(code)


if __name__ == "__main__":
    main()
