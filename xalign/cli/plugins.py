"""``xalign plugins [NAME]``: installed objectives and tasks, broken or conflicting plugins,
and the options of one objective or task with their defaults and help text."""

from __future__ import annotations

import difflib
import inspect
import json
import textwrap
import warnings
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from xalign.cli.common import err, field_help, user_errors
from xalign.progress import fail, stdout_console

LOAD_ENV_HINT = (
    "XALIGN_LOAD_PLUGINS=NAME,... loads only the named plugins (DIST:NAME picks "
    "one of two plugins with the same name)"
)


def plugins_command(
    name: str | None = typer.Argument(
        None, help="An objective or task: list its options (--option/--set keys, defaults)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List installed objective and task plugins, and any broken or conflicting ones; with
    NAME, the options of that objective or task."""
    from xalign.plugins import PluginWarning, get_registry

    with user_errors(), warnings.catch_warnings():  # the listing shows every problem itself
        warnings.simplefilter("ignore", PluginWarning)
        listing = get_registry().listing()
    if name is not None:  # an objective/task name, else a plugin (entry-point) name
        found = [i for i in listing if i["name"] == name]
        _plugin_options(name, found or [i for i in listing if i["plugin"] == name], as_json)
        for item in listing:  # the full listing shows these in its status column
            if item["status"] == "missing":
                err.print(f"warning: {item['error']}", highlight=False, markup=False)
        return
    if as_json:
        typer.echo(json.dumps(listing, indent=2))
        return
    table = Table(
        "name", "kind", "status", "distribution", "version", "module", "needs", "description"
    )
    for item in listing:
        ok = item["status"] == "ok"
        color = "yellow" if item["status"] == "warning" else "red"  # warning: listed, not usable
        status = "ok" if ok else f"[bold {color}]{item['status']}[/]"
        about = escape(item["description"]) if ok else f"[{color}]{escape(item['error'])}[/]"
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


def option_help(kind: str, name: str) -> dict[str, str]:
    """Help text of each option of objective or task ``name``: :func:`field_help` of its
    ``Config`` (``field(metadata={"help": ...})`` or a ``- ``key``: text`` docstring bullet)."""
    import dataclasses

    from xalign.plugins import get_registry

    registry = get_registry()
    reg = registry.objective(name) if kind == "objective" else registry.task(name)
    config = getattr(reg.cls, "Config", None)
    helps = field_help(config) if dataclasses.is_dataclass(config) else {}
    if kind == "objective":
        helps["weight"] = "Weight of this objective's loss in the sum of objectives."
    return helps


def _plugin_options(name: str, found: list[dict[str, Any]], as_json: bool) -> None:
    """``xalign plugins NAME``: the options of an objective and/or task called NAME, or of
    everything the plugin (entry point) NAME registered; exit 1 when there is none."""
    from xalign.plugins import get_registry

    ok = [item for item in found if item["status"] in ("ok", "warning")]
    if not ok:
        problem = next((item["error"] for item in found), None)
        registry = get_registry()
        regs = (*registry.objectives().values(), *registry.tasks().values())
        known = sorted({i.name for i in regs})
        plugins = sorted({i.source.name for i in regs} - set(known))
        close = difflib.get_close_matches(name, known + plugins, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        also = f"; plugins: {', '.join(plugins)}" if plugins else ""
        fail(
            problem
            or f"no objective, task or plugin {name!r}; installed: {', '.join(known)}{also}{hint}",
            1,
        )
    for item in ok:
        item["help"] = option_help(item["kind"], item["name"])
    if as_json:
        typer.echo(json.dumps(ok, indent=2))
        return
    for item in ok:
        name = item["name"]
        if item["kind"] == "objective":  # every objective also takes its weight in the sum
            prefix, how, options = (
                f"objectives.{name}.",
                "--set",
                {**item["options"], "weight": 1.0},
            )
        else:
            prefix, how, options = f"{name}.", "--option", item["options"]
        typer.echo(f"{item['kind']} {name}: {item['description']}")
        source = _source(item["kind"], name)
        if source:
            typer.echo(textwrap.fill(source, width=100, initial_indent="source: "))
        table = Table(
            "option", "default", "help", title=f"{item['kind']} {name}: {how} {prefix}KEY=VALUE"
        )
        for key, default in options.items():
            table.add_row(
                escape(prefix + key), escape(json.dumps(default)), escape(item["help"].get(key, ""))
            )
        stdout_console().print(table)
        for metric in item.get("metrics", []):  # a task's declared metrics
            how = "higher" if metric["higher_is_better"] else "lower"
            items = "mean of per_example" if metric["aggregation"] == "mean" else "Σmatched/Σtotal"
            typer.echo(
                f"metric {metric['name']}: {how} is better; {metric['aggregation']} "
                f"({metric['offset']:g} + {metric['scale']:g}·{items})"
            )
        if "uses_seed" in item:
            typer.echo(f"uses_seed: {str(item['uses_seed']).lower()}")
        if item["status"] == "warning":
            err.print(f"warning: {item['error']}", highlight=False, markup=False)


def _source(kind: str, name: str) -> str:
    """The first paragraph of the docstring of the module defining plugin ``name`` (where the
    built-ins give the formula's paper, section and reference code), one line; "" if none."""
    from xalign.plugins import get_registry

    registry = get_registry()
    entry = registry.objective(name) if kind == "objective" else registry.task(name)
    doc = inspect.getdoc(inspect.getmodule(entry.cls)) or ""
    return " ".join(doc.split("\n\n")[0].split())
