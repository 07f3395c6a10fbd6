"""The ``xalign`` command line: one module per subcommand, all registered in :data:`COMMANDS`.

Each module (``xalign/cli/<name>.py``) defines one typer command function; errors go through
the one wrapper :func:`xalign.cli.common.user_errors`. Heavy imports stay inside the command
functions so ``xalign --help`` is fast.
"""

from __future__ import annotations

import importlib
import sys
import warnings

import typer

from xalign.cli.common import err

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # a bug's traceback never prints tokens held in locals
    help="Cross-lingual alignment objectives for multilingual encoders.",
)

#: The one place a subcommand is registered: (command, module under xalign.cli, function).
COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("plugins", "plugins", "plugins_command"),
    ("run", "run", "run_command"),
    ("eval", "eval", "eval_command"),
    ("compare", "compare", "compare_command"),
    ("align", "align", "align_command"),
    ("prepare", "prepare", "prepare_command"),
    ("sync-tracking", "sync_tracking", "sync_tracking_command"),
    ("export", "export", "export_command"),
    ("clean", "clean", "clean_command"),
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
    from xalign.redact import redact_log_records

    redact_log_records()  # library log lines too: no credentials on stderr


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

    from xalign.redact import redact_text

    err.print(
        f"[yellow]warning:[/] {category.__name__}: {escape(redact_text(str(message)))}",
        highlight=False,
        soft_wrap=True,
    )


def _register() -> None:
    for command, module, function in COMMANDS:
        app.command(command)(getattr(importlib.import_module(f"xalign.cli.{module}"), function))


_register()
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
    except Exception as exc:  # a bug: its traceback, credentials redacted (xalign.redact)
        import traceback

        from xalign.redact import redact_text

        sys.stderr.write(redact_text("".join(traceback.format_exception(exc))))
        sys.exit(1)
    else:
        return
    from xalign.cli.common import unreported_interruption

    if code == 143:  # a scheduler's stop: say so in the job's log
        err.print("xalign: interrupted by SIGTERM; runs it had started are marked KILLED")
    pending = unreported_interruption()
    if pending is not None:  # a later signal cut its report short: where to resume from
        from xalign.progress import print_error

        print_error(str(pending))
    sys.exit(code)


__all__ = ["COMMANDS", "app", "main"]
