"""``xalign sync-tracking DIR``: send the MLflow records a run kept locally while its tracking
server was unreachable."""

from __future__ import annotations

from pathlib import Path

import typer

from xalign.cli.common import err, user_errors


def is_run_dir(directory: Path) -> bool:
    """Whether ``directory`` is the output folder of an ``xalign run`` (checkpoints/model)."""
    return any((directory / name).exists() for name in ("checkpoints", "model", "config.yaml"))


def sync_tracking_command(
    directory: Path = typer.Argument(..., help="Run output dir holding tracking-backlog.jsonl."),
    tracking_uri: str | None = typer.Option(
        None, "--tracking-uri", help="Send to this store instead of the one recorded."
    ),
) -> None:
    """Send MLflow records a run kept locally while its tracking server was unreachable."""
    from xalign.tracking import BACKLOG_FILE, replay_backlog

    if directory.is_dir() and not (directory / BACKLOG_FILE).exists() and is_run_dir(directory):
        err.print(
            f"nothing to send: {directory} has no {BACKLOG_FILE} (every record of this run "
            f"reached its tracking store)",
            highlight=False,
        )
        return
    with user_errors():
        sent = replay_backlog(directory, tracking_uri)
    err.print(f"sent {sent} tracking record(s) from {directory}", highlight=False)
