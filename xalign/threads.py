"""How many threads torch's CPU kernels use, chosen rather than left at torch's default.

torch starts one OpenMP thread per core of the machine, whatever the load and whatever cores
this process may run on (``taskset``, a container's CPU set, a batch scheduler's
allocation). On a shared machine, threads beyond the cores a process really gets spin and
wait for each other. xalign therefore sets the count itself (docs/performance.md, "Threads"):

1. ``train.num_threads`` when set (a run's configuration),
2. else the environment variable :data:`ENV_NUM_THREADS` (``XALIGN_NUM_THREADS``),
3. else the number of cores this process may run on (``os.sched_getaffinity``; the core
   count where the platform has no affinity call), or torch's present count where that is
   lower (``OMP_NUM_THREADS``, or ``torch.set_num_threads`` called before): a default never
   raises a count chosen elsewhere.

OpenMP's wait policy (how idle threads wait for work: spinning or sleeping) is read once, when
the OpenMP runtime starts, that is when torch is first imported: :func:`passive_wait_policy`
sets ``OMP_WAIT_POLICY=PASSIVE`` for that moment unless the user has set it.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

from xalign.errors import XalignError

#: Environment variable that sets the thread count when ``train.num_threads`` is not set.
ENV_NUM_THREADS = "XALIGN_NUM_THREADS"


class ThreadsError(XalignError):
    """A thread count that is not a whole number >= 1 (names the key or variable)."""


def available_cores() -> int:
    """Cores this process may run on: its CPU affinity set, else ``os.cpu_count()``, >= 1."""
    if hasattr(os, "sched_getaffinity"):
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except OSError:  # pragma: no cover - affinity unreadable (some sandboxes)
            pass
    return max(1, os.cpu_count() or 1)


def _whole_number(value: object, where: str) -> int:
    if isinstance(value, bool):
        raise ThreadsError(f"{where}: must be a whole number >= 1, got {value!r}")
    try:
        number = int(str(value).strip()) if isinstance(value, str) else int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise ThreadsError(f"{where}: must be a whole number >= 1, got {value!r}") from None
    if isinstance(value, float) and value != number or number < 1:
        raise ThreadsError(f"{where}: must be a whole number >= 1, got {value!r}")
    return number


def resolve_num_threads(
    configured: int | None = None,
    environ: MutableMapping[str, str] | None = None,
    current: int | None = None,
) -> int:
    """The thread count to use: ``configured`` (``train.num_threads``), else
    ``XALIGN_NUM_THREADS``, else :func:`available_cores` (capped at ``current``, the count
    torch has now, when given).

    Raises:
        ThreadsError: ``configured`` or the variable is not a whole number >= 1 (an empty
            variable counts as unset).
    """
    if configured is not None:
        return _whole_number(configured, "train.num_threads")
    env = (os.environ if environ is None else environ).get(ENV_NUM_THREADS, "").strip()
    if env:
        return _whole_number(env, f"environment variable {ENV_NUM_THREADS}")
    cores = available_cores()
    return min(cores, current) if current is not None and current >= 1 else cores


def apply_num_threads(configured: int | None = None) -> int:
    """Set torch's intra-op thread count to :func:`resolve_num_threads` and return it."""
    import torch

    n = resolve_num_threads(configured, current=torch.get_num_threads())
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def passive_wait_policy(environ: MutableMapping[str, str] | None = None) -> bool:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` (idle OpenMP threads sleep instead of spinning) unless
    the variable is already set (to any value); True when this call set it.

    Takes effect only if the OpenMP runtime has not started yet, i.e. before the first
    ``import torch`` of the process (``import xalign`` calls it first thing); child processes
    inherit it either way.
    """
    env = os.environ if environ is None else environ
    if env.get("OMP_WAIT_POLICY", "").strip():
        return False
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    return True
