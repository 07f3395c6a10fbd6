"""Plugin hook specifications.

Every hook follows the ``register_*(register)`` style: xalign calls the hook with a
``register`` callback and the plugin calls it once per thing it provides. Built-in
plugins (under ``plugins/``) use exactly the same hooks and entry points as third-party ones.
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

hookspec = pluggy.HookspecMarker("xalign")
hookimpl = pluggy.HookimplMarker("xalign")


@hookspec
def register_objectives(register: Callable[[type], None]) -> None:
    """Register alignment objectives.

    ``register(ObjectiveClass)`` takes a subclass of :class:`xalign.Objective` with a
    unique ``name``, a ``Config`` dataclass of its options, a one-line ``description`` and a
    ``needs(self)`` method saying what it reads from the batch (see :class:`xalign.Needs`),
    answerable from its options alone (:meth:`xalign.Objective.needs_for`).
    """


@hookspec
def register_tasks(register: Callable[[type], None]) -> None:
    """Register evaluation tasks.

    ``register(TaskClass)`` takes a subclass of :class:`xalign.Task` with a unique ``name``,
    a ``Config`` dataclass, ``metrics`` (each :class:`xalign.Metric` it reports, with its
    direction) and ``run(self, model: str, context: TaskContext) -> TaskResult``.
    """
