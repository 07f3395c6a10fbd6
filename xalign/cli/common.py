"""What every ``xalign`` subcommand shares: the one error wrapper, the stderr console, the
check of a path-like ``--model`` and typer options built from a dataclass's fields."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
import re
import sys
import traceback
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import typer

from xalign.errors import ConfigError, XalignError
from xalign.progress import fail, stderr_console

err = stderr_console()
F = TypeVar("F", bound=Callable[..., Any])


def exit_code(exc: BaseException) -> int:
    """An error's own exit code (TrainingInterrupted: 128 + signal), else 1."""
    return int(getattr(exc, "exit_code", 1))


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn an :class:`~xalign.XalignError` into ``error: MESSAGE`` on stderr and its exit code
    (:func:`exit_code`). Anything else is a bug and keeps its traceback.

    An error raised from another exception (a plugin's bug wrapped in a ``PluginError``) prints
    that exception's traceback first when the environment sets ``XALIGN_DEBUG=1``; without it, a
    ``PluginError`` says how to get it."""
    try:
        yield
    except XalignError as exc:
        cause = exc.__cause__
        message = str(exc)
        if cause is not None and not isinstance(cause, XalignError):
            if os.environ.get("XALIGN_DEBUG", "") not in ("", "0"):
                from xalign.redact import redact_text

                sys.stderr.write(redact_text("".join(traceback.format_exception(cause))))
            elif type(exc).__name__ == "PluginError":
                message += " (run with XALIGN_DEBUG=1 for its traceback)"
        try:
            fail(message, exit_code(exc))
        finally:
            unreported_interruption()  # printed: main() need not print it again


def unreported_interruption() -> BaseException | None:
    """The training interruption not yet printed, if a run was interrupted (then forgotten).

    A second SIGTERM can land after training restored the signal handlers and before
    :func:`user_errors` printed the interruption's ``error:`` line (which says how to resume);
    ``main()`` prints it then."""
    recipe = sys.modules.get("xalign.recipe")  # not imported: no run was trained
    return recipe.unreported_interruption() if recipe is not None else None


_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def looks_like_path(ref: str) -> bool:
    """Whether a model reference can only be a local folder: it starts with ``/``, ``.`` or
    ``~``, has more than one ``/`` (a hub id is ``ORG/NAME``), or its first part is an existing
    local folder (``outputs/nope`` beside ``outputs/``)."""
    if ref.startswith(("/", ".", "~")) or ref.count("/") > 1:
        return True
    return "/" in ref and Path(ref.split("/", 1)[0]).is_dir()


def check_model_ref(ref: str, what: str = "--model") -> None:
    """Raise :class:`~xalign.ConfigError` at once for a path-like model reference that does not
    exist (instead of trying it as a hub id for a minute and leaving a failed MLflow run).

    ``base``, ``packaged:NAME``, run ids and ``ORG/NAME`` hub ids pass unchecked."""
    if ref.startswith("packaged:") or _RUN_ID.match(ref) or not looks_like_path(ref):
        return
    path = Path(ref).expanduser()
    if not path.exists():
        parent = next((p for p in path.parents if p.is_dir()), Path("."))
        raise ConfigError(
            f"{what} {ref}: no such folder (the closest existing folder is {parent}; give a "
            f"run's output or model folder, a hub id ORG/NAME, packaged:NAME or a run id)"
        )


def _doc_bullets(doc: str) -> dict[str, str]:
    """``{name: text}`` of the ``- ``name``: text`` bullets of a docstring (continued lines
    indented)."""
    bullets: dict[str, str] = {}
    current: str | None = None
    for line in doc.splitlines():
        found = re.match(r"^-\s+``(\w+)``(?:\s*\([^)]*\))?\s*:\s*(.*)$", line.strip())
        if found:
            current = found.group(1)
            bullets[current] = found.group(2)
        elif current and line.startswith("  ") and line.strip():
            bullets[current] += " " + line.strip()
        else:
            current = None
    return bullets


def field_help(cls: type) -> dict[str, str]:
    """Help text of each field of dataclass ``cls``: ``field(metadata={"help": ...})``, else
    the field's bullet ``- ``name``: text`` in the docstring of ``cls`` or of the base class
    that declares it (inline ``code`` markup and Sphinx roles such as :class:`X` shown as plain
    text); ``""`` when there is neither."""
    bullets: dict[str, str] = {}
    for klass in reversed(cls.__mro__):  # a subclass's bullet wins over its base's
        if "__doc__" in vars(klass) and klass.__doc__:
            bullets.update(_doc_bullets(inspect.cleandoc(klass.__doc__)))
    out = {}
    for f in dataclasses.fields(cls):
        text = f.metadata.get("help") or bullets.get(f.name, "")
        text = re.sub(r":[\w:]+:`~?([^`]*)`", r"\1", text)  # :class:`X` -> X
        out[f.name] = re.sub(r"``([^`]*)``", r"\1", text)
    return out


def dataclass_options(cls: type, *, exclude: tuple[str, ...] = ()) -> Callable[[F], F]:
    """Decorator: give a typer command one ``--name`` option per field of dataclass ``cls``
    (bool fields: ``--name/--no-name``), with the field's default and :func:`field_help`;
    the command receives them as one ``options: dict[str, Any]`` keyword."""
    hints = typing.get_type_hints(cls)
    helps = field_help(cls)
    defaults = cls()

    def decorate(func: F) -> F:
        sig = inspect.signature(func, eval_str=True)  # typer needs the types, not strings
        params = [p for p in sig.parameters.values() if p.name != "options"]
        names = [f.name for f in dataclasses.fields(cls) if f.name not in exclude]
        for name in names:
            flag = "--" + name.replace("_", "-")
            if hints[name] is bool:
                flag += "/--no-" + name.replace("_", "-")
            option = typer.Option(getattr(defaults, name), flag, help=helps[name])
            params.append(
                inspect.Parameter(
                    name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=hints[name]
                )
            )

        @functools.wraps(func)
        def command(**kwargs: Any) -> Any:
            options = {name: kwargs.pop(name) for name in names}
            return func(**kwargs, options=options)

        command.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        command.__annotations__ = {}  # typer reads the annotations from the signature
        return typing.cast(F, command)

    return decorate
