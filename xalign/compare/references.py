"""Reference rows of a comparison: results a task computes without a model (``eflomal`` in
the ``align`` table), placed below the objectives and scored and tested like them.

A task offers them with a method ``reference_rows(context, data) -> {row: TaskResult}``
(``data``: the comparison's ``data`` config, whose corpus is the objectives' training
corpus). A reference row is one result per task, shown as seed 0 (a mean without ± ).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from xalign.errors import XalignError
from xalign.plugins import PluginError, PluginRegistry
from xalign.task import TaskContext, TaskResult, stamp_result

HOOK = "reference_rows"


def reference_results(
    tasks: Sequence[str],
    options: dict[str, dict[str, Any]],
    registry: PluginRegistry,
    context: TaskContext,
    data: Any,
    taken: Sequence[str],
) -> dict[str, dict[str, TaskResult]]:
    """``{row: {task: result}}`` of every task in ``tasks`` that offers reference rows.

    A row named like one in ``taken`` (base or an objective) becomes ``NAME (reference)``.
    Raises :class:`~xalign.errors.PluginError` naming the plugin when its hook fails or
    returns something other than ``{str: TaskResult}``.
    """
    out: dict[str, dict[str, TaskResult]] = {}
    for t in tasks:
        entry = registry.task(t)
        task = entry.cls.from_options(dict(options.get(t) or {}))
        hook = getattr(task, HOOK, None)
        if hook is None:
            continue
        try:
            rows = hook(context, data)
        except XalignError:
            raise
        except Exception as exc:  # a bug in the plugin or input it did not check
            raise PluginError(
                f"{entry.where()} failed in {HOOK}(): {type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(rows, dict) or not all(
            isinstance(k, str) and isinstance(v, TaskResult) for k, v in rows.items()
        ):
            raise PluginError(f"{entry.where()}: {HOOK}() must return {{row name: TaskResult}}")
        for name, result in rows.items():
            row = f"{name} (reference)" if name in taken else name
            # the task's declared metrics, checked like a model's result
            out.setdefault(row, {})[t] = stamp_result(result, task, entry.where())
    return out
