"""Did the launcher start the processes it was asked for? (docs/failures.md, "Several
processes")

``accelerate launch --num_processes 2 --cpu ...`` (no ``--multi_gpu``) starts *one* process:
accelerate's simple launcher runs the script once, with ``MASTER_ADDR``/``MASTER_PORT`` set
because more than one process was asked for, and no ``WORLD_SIZE``. The run then trains as a
single rank. :func:`check_launch` compares the number asked for — ``WORLD_SIZE`` (torchrun,
``accelerate launch --multi_gpu``), else ``--num_processes N`` on the launching ``accelerate``
command line — with the number of processes the run has, and warns naming both.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

from xalign.errors import XalignWarning

#: How to get N gloo ranks on CPU (accelerate's ``--cpu`` alone starts one process).
CPU_FORM = "accelerate launch --multi_gpu --num_processes N -m xalign.cli run ..."


class LaunchWarning(XalignWarning):
    """The launcher asked for more processes than the run has (it trains with fewer ranks)."""


def _parent_cmdline() -> list[str]:
    """The command line of the parent process (Linux ``/proc``; empty elsewhere)."""
    try:
        raw = Path(f"/proc/{os.getppid()}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _num_processes_arg(argv: list[str]) -> int | None:
    """``N`` of ``--num_processes N`` (or ``--num-processes=N``) in an ``accelerate launch``
    command line, else None."""
    if not any(Path(a).name == "accelerate" or a.startswith("accelerate.") for a in argv):
        return None
    if "launch" not in argv and "accelerate.commands.launch" not in argv:
        return None
    for i, arg in enumerate(argv):
        m = re.fullmatch(r"--num[_-]processes(?:=(\d+))?", arg)
        if m is None:
            continue
        value = m.group(1) or (argv[i + 1] if i + 1 < len(argv) else "")
        return int(value) if value.isdigit() else None
    return None


def requested_processes(
    env: dict[str, str] | None = None, parent_argv: list[str] | None = None
) -> tuple[int, str] | None:
    """(processes the launch asked for, where that number comes from), or None when the
    process was not started by a multi-process launcher.

    ``env`` defaults to ``os.environ``; ``parent_argv`` to the parent's command line.
    """
    env = dict(os.environ) if env is None else env
    world = env.get("WORLD_SIZE", "")
    if world.isdigit() and int(world) > 1:
        return int(world), f"WORLD_SIZE={world}"
    if "ACCELERATE_USE_CPU" not in env and "ACCELERATE_MIXED_PRECISION" not in env:
        return None  # not started by `accelerate launch`
    argv = _parent_cmdline() if parent_argv is None else parent_argv
    asked = _num_processes_arg(argv)
    if asked is not None and asked > 1:
        return asked, f"--num_processes {asked}"
    if env.get("MASTER_PORT") and not world:  # set by accelerate only for > 1 process
        return 2, "MASTER_ADDR/MASTER_PORT set by accelerate launch (more than 1 process)"
    return None


def check_launch(
    processes: int,
    *,
    env: dict[str, str] | None = None,
    parent_argv: list[str] | None = None,
) -> str | None:
    """Warn (:class:`LaunchWarning`) when the launch asked for more than ``processes``
    processes; returns the message, or None when all is well."""
    asked = requested_processes(env, parent_argv)
    if asked is None or asked[0] <= processes:
        return None
    number, source = asked
    at_least = "at least " if source.startswith("MASTER_") else ""
    use_cpu = str((env if env is not None else os.environ).get("ACCELERATE_USE_CPU", ""))
    hint = (
        f" (`accelerate launch --cpu` without --multi_gpu starts one process; for {number} "
        f"gloo ranks on CPU use `{CPU_FORM.replace('N', str(number))}`)"
        if use_cpu.lower() in {"true", "1"}
        else f" (for {number} ranks use `{CPU_FORM.replace('N', str(number))}` or torchrun)"
    )
    message = (
        f"the launch asked for {at_least}{number} processes ({source}) but this run has "
        f"{processes}: it trains as {processes} rank(s){hint}"
    )
    warnings.warn(message, LaunchWarning, stacklevel=2)
    return message
