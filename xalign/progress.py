"""Rich progress on stderr (stdout stays clean for ``--json``) and the stdout console."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, NoReturn, TypeVar

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

T = TypeVar("T")

#: Width of tables printed to a pipe or file, where rich would otherwise assume 80 columns
#: and cut column headers such as ``awesome-enfr`` to ``awesom…``.
PIPE_WIDTH = 240


def track(items: Sequence[T], description: str, enabled: bool = True) -> Iterable[T]:
    """``items``, with a transient rich progress bar on stderr when ``enabled`` (a plain
    :class:`PlainProgress` line every N seconds when stderr is not a terminal)."""
    if not enabled:
        return items
    if not sys.stderr.isatty():
        return _plain_track(items, description)
    from rich.console import Console
    from rich.progress import track as rich_track

    return rich_track(items, description=description, console=Console(stderr=True), transient=True)


#: Seconds between two plain progress lines when stderr is not a terminal (env override).
PLAIN_EVERY_ENV = "XALIGN_PROGRESS_SECONDS"
PLAIN_EVERY = 30.0


def _clock(seconds: float) -> str:
    """``H:MM:SS`` of a duration in seconds."""
    s = int(max(seconds, 0))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


@dataclass
class _PlainTask:
    description: str
    total: float | None
    completed: float
    start_completed: float
    fields: dict[str, Any]


class PlainProgress:
    """The subset of rich's ``Progress`` xalign uses, as one plain stderr line every
    ``every`` seconds per task: ``align: step 120/1000 loss 3.1416 elapsed 0:02:00 eta
    0:14:40``. For logs, CI and ``nohup``, where rich draws its bar only at the end.

    The ETA is ``elapsed / done × left``, counting only steps done in this process (a resumed
    run's earlier steps are not in the rate).
    """

    def __init__(
        self, metric: str | None = None, every: float | None = None, stream: IO[str] | None = None
    ) -> None:
        env = os.environ.get(PLAIN_EVERY_ENV)
        self.every = every if every is not None else float(env) if env else PLAIN_EVERY
        self.metric = metric
        self.stream = stream
        self.tasks: dict[int, _PlainTask] = {}
        self.started = time.monotonic()
        self.last = self.started

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(
        self, description: str, total: float | None = None, completed: float = 0, **fields: Any
    ) -> int:
        task_id = len(self.tasks)
        self.tasks[task_id] = _PlainTask(description, total, completed, completed, fields)
        return task_id

    def update(self, task_id: int, advance: float = 0, **fields: Any) -> None:
        task = self.tasks[task_id]
        task.completed += advance
        task.fields.update(fields)
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            print(self.line(task, now - self.started), file=self.stream or sys.stderr, flush=True)

    def advance(self, task_id: int, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def line(self, task: _PlainTask, elapsed: float) -> str:
        """``DESC: step N/TOTAL METRIC V elapsed H:MM:SS eta H:MM:SS``."""
        total = f"/{int(task.total)}" if task.total is not None else ""
        parts = [f"{task.description}: step {int(task.completed)}{total}"]
        if self.metric and self.metric in task.fields:
            parts.append(f"{self.metric} {task.fields[self.metric]:.4f}")
        parts.append(f"elapsed {_clock(elapsed)}")
        done = task.completed - task.start_completed
        if task.total is not None and done > 0:
            parts.append(f"eta {_clock(elapsed / done * (task.total - task.completed))}")
        return " ".join(parts)


def _plain_track(items: Sequence[T], description: str) -> Iterator[T]:
    progress = PlainProgress()
    task = progress.add_task(description, total=len(items))
    for item in items:
        yield item
        progress.update(task, advance=1)


def progress_bar(enabled: bool, metric: str | None = None) -> Progress | PlainProgress:
    """A rich ``Progress`` on stderr: description, bar, n/N, optional ``metric`` field, times;
    when stderr is not a terminal, a :class:`PlainProgress` (a line every N seconds) instead.

    Tasks added to it must pass the ``metric`` field (e.g. ``loss=float("nan")``).
    """
    if enabled and not sys.stderr.isatty():
        return PlainProgress(metric)
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


def print_error(message: str) -> None:
    """Print ``error: MESSAGE`` on stderr (as is: no rich markup, no wrapping; credentials
    redacted, :func:`xalign.redact.redact_text`)."""
    from rich.markup import escape

    from xalign.redact import redact_text

    stderr_console().print(
        f"[bold red]error:[/] {escape(redact_text(message))}", highlight=False, soft_wrap=True
    )


def fail(message: str, code: int = 1) -> NoReturn:
    """:func:`print_error` and exit ``code`` (``typer.Exit``): how every CLI command reports an
    :class:`xalign.XalignError`."""
    import typer

    print_error(message)
    raise typer.Exit(code)
