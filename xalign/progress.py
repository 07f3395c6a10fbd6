"""Rich progress on stderr (stdout stays clean for ``--json``) and the stdout console."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, NoReturn, TypeVar

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

T = TypeVar("T")

#: Width of tables printed to a pipe or file, where rich would otherwise assume 80 columns
#: and cut column headers such as ``awesome-enfr`` to ``awesom…``.
PIPE_WIDTH = 240


def track(items: Sequence[T], description: str, enabled: bool = True) -> Iterable[T]:
    """``items``, with a transient rich progress bar on stderr when ``enabled``."""
    if not enabled:
        return items
    from rich.console import Console
    from rich.progress import track as rich_track

    return rich_track(items, description=description, console=Console(stderr=True), transient=True)


def progress_bar(enabled: bool, metric: str | None = None) -> Progress:
    """A rich ``Progress`` on stderr: description, bar, n/N, optional ``metric`` field, times.

    Tasks added to it must pass the ``metric`` field (e.g. ``loss=float("nan")``).
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn()]
    if metric:
        columns.append(TextColumn(f"{metric} {{task.fields[{metric}]:.4f}}"))
    columns += [TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn()]
    return Progress(*columns, console=Console(stderr=True), disable=not enabled)


def stdout_console() -> Console:
    """Console for tables on stdout: the terminal's width, or :data:`PIPE_WIDTH` when piped."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=PIPE_WIDTH)


def stderr_console() -> Console:
    """Console for messages on stderr (errors, warnings, notes), one per process."""
    global _STDERR
    if _STDERR is None:
        from rich.console import Console

        _STDERR = Console(stderr=True)
    return _STDERR


_STDERR: Console | None = None


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: MESSAGE`` on stderr (as is: no rich markup, no wrapping; credentials
    redacted, :func:`xalign.redact.redact_text`) and exit ``code``
    (``typer.Exit``): how every CLI command reports an :class:`xalign.XalignError`."""
    import typer
    from rich.markup import escape

    from xalign.redact import redact_text

    stderr_console().print(
        f"[bold red]error:[/] {escape(redact_text(message))}", highlight=False, soft_wrap=True
    )
    raise typer.Exit(code)
