"""Plugin discovery (entry-point group ``xalign``) and the objective/task registries.

Built-in plugins are loaded through the same entry points as third-party ones. Set
``XALIGN_LOAD_PLUGINS=a,b`` to load only those entry points (empty string = none); a name
declared by two distributions is chosen with ``DIST:NAME`` (e.g. ``xalign:sinkhorn``).

No plugin can silently replace or break another:

- an entry-point name declared by two distributions loads both (as ``DIST:NAME``) with a
  warning naming both;
- an objective or task name registered by two plugins is usable from neither: using it is a
  :class:`PluginError` naming both distributions;
- a plugin that fails to import or to register is skipped with a warning; ``xalign plugins``
  lists it with its error, and a failed lookup of an objective or task names it.

Objectives are built from their options here, and only here (:func:`build_objective`); what
they need is answered from their options without building them (:func:`objective_needs`),
and the rule that mixed-language objectives run alone is :func:`mixed_batches`.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.metadata
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pluggy

import xalign.hookspecs as hookspecs
from xalign.errors import ConfigError, XalignError, XalignWarning
from xalign.objective import Needs, Objective
from xalign.task import Metric, ResultContractError, Task, check_metric_declaration

ENTRY_POINT_GROUP = "xalign"
LOAD_ENV = "XALIGN_LOAD_PLUGINS"
KINDS = ("objective", "task")


class PluginError(XalignError, RuntimeError):
    """A plugin failed (import, registration, or at run time); the message names it."""


class PluginWarning(XalignWarning):
    """A plugin was skipped or is ambiguous; the rest of xalign keeps working."""


@dataclass
class PluginSource:
    """Where a registered plugin module came from."""

    name: str
    module: str
    distribution: str
    version: str

    def label(self) -> str:
        return f"plugin {self.name!r} (distribution {self.distribution} {self.version})"


@dataclass
class Registered:
    """One objective or task class with its provenance."""

    name: str
    kind: str
    cls: type
    source: PluginSource
    extra: dict[str, Any] = field(default_factory=dict)

    def info(self) -> dict[str, Any]:
        doc = (self.cls.description or (self.cls.__doc__ or "").strip()).splitlines()
        info = {
            "name": self.name,
            "kind": self.kind,
            "status": "ok",
            "plugin": self.source.name,
            "distribution": self.source.distribution,
            "version": self.source.version,
            "module": self.cls.__module__,
            "description": doc[0] if doc else "",
            "options": self.cls.options(),
        }
        if self.kind == "objective":
            info["needs"] = _needs_of(self.cls)
        else:  # what compare reads: each metric's direction and aggregation
            metrics = getattr(self.cls, "metrics", ())
            declared = metrics if isinstance(metrics, (tuple, list)) else ()
            info["metrics"] = [dataclasses.asdict(m) for m in declared if isinstance(m, Metric)]
            info["uses_seed"] = bool(getattr(self.cls, "uses_seed", True))
            try:  # eval/compare refuse such a task before running it: say so here too
                check_metric_declaration(self.cls, self.where())
            except ResultContractError as exc:
                info["status"], info["error"] = "warning", str(exc)
        return info

    def where(self) -> str:
        return (
            f"{self.kind} {self.name!r} (plugin {self.source.name!r}, distribution "
            f"{self.source.distribution} {self.source.version})"
        )


@dataclass
class PluginProblem:
    """A plugin that could not be loaded, or a name claimed twice.

    ``kind`` is ``plugin`` (an entry point) or ``objective``/``task`` (a registered name);
    ``status`` is ``error`` (skipped), ``conflict`` (claimed by two distributions) or
    ``missing`` (named in ``XALIGN_LOAD_PLUGINS`` but not installed); ``error`` says it all.
    """

    name: str
    kind: str
    status: str
    distribution: str
    version: str
    module: str
    error: str

    def info(self) -> dict[str, Any]:
        """As listed by ``xalign plugins --json``."""
        return {
            "name": self.name,
            "kind": self.kind,
            "status": self.status,
            "distribution": self.distribution,
            "version": self.version,
            "module": self.module,
            "error": self.error,
        }


def _needs_of(cls: type[Objective]) -> list[str]:
    """What ``xalign plugins`` shows: the needs of the default options."""
    try:
        needs = objective_needs(cls, cls.Config())
    except Exception as exc:  # noqa: BLE001 - shown to the user, not fatal for listing
        return [f"<needs() failed: {exc}>"]
    if needs is None:
        return ["<needs() reads more than its options: known once built for a model>"]
    return needs.describe()


# -- objectives: built from options, and their needs, in one place -----------------------------
def objective_config(entry: Registered, options: Mapping[str, Any]) -> Any:
    """The ``Config`` of objective ``entry`` from ``options`` (without ``weight``; deprecated
    names accepted, see :meth:`Objective.upgrade_options`).

    Raises:
        PluginError: an unknown option or a value that does not fit; names the plugin.
    """
    try:
        return entry.cls.config_from(options)
    except PluginError:
        raise
    except Exception as exc:
        raise PluginError(f"{entry.where()}: bad options: {exc}") from exc


def build_objective(
    entry: Registered, options: Mapping[str, Any], *, hidden_size: int
) -> Objective:
    """Objective ``entry`` built from ``options`` for an encoder of ``hidden_size`` (the width
    of its vectors); the only place xalign builds one.

    Raises:
        PluginError: bad options (:func:`objective_config`) or a failing ``__init__``.
    """
    config = objective_config(entry, options)
    try:
        return entry.cls(config, hidden_size=hidden_size)
    except PluginError:
        raise
    except Exception as exc:
        raise PluginError(f"{entry.where()}: bad options: {exc}") from exc


def objective_needs(
    cls: type[Objective], config: Any, *, hidden_size: int | None = None
) -> Needs | None:
    """What objective class ``cls`` with options ``config`` needs: ``cls.needs_for(config)``,
    no model built. For a ``needs()`` that reads more than ``config`` (``AttributeError``,
    see :meth:`Objective.needs_for`): the ``needs()`` of the objective built for
    ``hidden_size``, or None when no hidden size is known yet (no model loaded)."""
    try:
        return cls.needs_for(config)
    except AttributeError:
        if hidden_size is None:
            return None
        return cls(config, hidden_size=hidden_size).needs()


def options_needs(
    entry: Registered, options: Mapping[str, Any], *, hidden_size: int | None = None
) -> Needs | None:
    """:func:`objective_needs` of ``options`` (:func:`objective_config`, same errors); a
    failing ``needs()`` is a :class:`PluginError` naming the plugin."""
    config = objective_config(entry, options)
    try:
        return objective_needs(entry.cls, config, hidden_size=hidden_size)
    except Exception as exc:
        raise PluginError(
            f"{entry.where()} failed in needs(): {type(exc).__name__}: {exc}"
        ) from exc


def mixed_batches(needs: Mapping[str, Needs | None], *, where: str = "config") -> bool:
    """The mixed-language rule: True when the run's objectives (name -> needs; None: not known
    yet, left out) get one batch mixing all language pairs (``Needs.mixed_languages``), False
    for one batch per pair.

    Raises:
        ConfigError: some objectives need mixed batches and others per-pair ones; ``where``
            (the config file:line or ``--objective`` flags) starts the message.
    """
    known = {n: bool(v.mixed_languages) for n, v in needs.items() if v is not None}
    if len(set(known.values())) > 1:
        together = [n for n, m in known.items() if m]
        apart = [n for n, m in known.items() if not m]
        raise ConfigError(
            f"{where}: objectives: {', '.join(together)} need(s) one batch mixing all language "
            f"pairs and cannot be combined with per-language-pair objectives "
            f"({', '.join(apart)}) in one run"
        )
    return any(known.values())


def normalize_distribution(name: str) -> str:
    """PEP 503 normal form (``Xalign_Evil`` -> ``xalign-evil``), as ``DIST:NAME`` matches."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _dist_of(ep: importlib.metadata.EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "unknown", "unknown"
    return dist.name or "unknown", dist.version or "unknown"


def _allowed_plugins() -> set[str] | None:
    """Names in ``XALIGN_LOAD_PLUGINS`` (``DIST:NAME`` with DIST normalised), None if unset."""
    raw = os.environ.get(LOAD_ENV)
    if raw is None:
        return None
    out = set()
    for item in (p.strip() for p in raw.split(",")):
        dist, sep, name = item.rpartition(":")
        if item:
            out.add(f"{normalize_distribution(dist.strip())}:{name.strip()}" if sep else item)
    return out


def _warn(message: str) -> None:
    warnings.warn(message, PluginWarning, stacklevel=3)


class PluginRegistry:
    """A pluggy manager plus the objectives and tasks its plugins registered.

    ``problems`` lists what could not be used (broken plugins, names claimed twice); the
    rest works. Lookups of a missing name mention them.
    """

    def __init__(self, load_entry_points: bool = True) -> None:
        self.pm = pluggy.PluginManager("xalign")
        self.pm.add_hookspecs(hookspecs)
        self.sources: dict[str, PluginSource] = {}
        self.problems: list[PluginProblem] = []
        self._cache: dict[str, dict[str, Registered]] | None = None
        self._conflicts: dict[str, dict[str, PluginProblem]] = {k: {} for k in KINDS}
        self._collect_problems: list[PluginProblem] = []
        if load_entry_points:
            self._load_entry_points()

    # -- loading -----------------------------------------------------------------------
    def _load_entry_points(self) -> None:
        allowed = _allowed_plugins()
        by_name: dict[str, list[importlib.metadata.EntryPoint]] = {}
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            same = by_name.setdefault(ep.name, [])
            if not any(_dist_of(o)[0] == _dist_of(ep)[0] and o.value == ep.value for o in same):
                same.append(ep)
        if allowed is not None:
            self._check_allowed(allowed, by_name)
        for name, group in by_name.items():
            chosen = [
                ep
                for ep in group
                if allowed is None
                or name in allowed
                or f"{normalize_distribution(_dist_of(ep)[0])}:{name}" in allowed
            ]
            if len(chosen) > 1:
                self._entry_point_conflict(name, chosen)
            for ep in chosen:
                dist, version = _dist_of(ep)
                qualified = f"{normalize_distribution(dist)}:{name}"
                self._load_one(ep, qualified if len(group) > 1 else name, dist, version)

    def _load_one(
        self, ep: importlib.metadata.EntryPoint, name: str, dist: str, version: str
    ) -> None:
        try:
            module = ep.load()
        except Exception as exc:  # noqa: BLE001 - any import-time failure: skip the plugin
            self._problem(
                PluginProblem(
                    name,
                    "plugin",
                    "error",
                    dist,
                    version,
                    ep.value,
                    f"plugin {name!r} from distribution {dist} {version} failed to import "
                    f"({ep.value}): {type(exc).__name__}: {exc}",
                )
            )
            return
        try:
            self.add(module, name=name, distribution=dist, version=version)
        except PluginError as exc:
            self._problem(PluginProblem(name, "plugin", "error", dist, version, ep.value, str(exc)))

    def _entry_point_conflict(self, name: str, group: list[importlib.metadata.EntryPoint]) -> None:
        dists = [(*_dist_of(ep), ep.value) for ep in group]
        both = " and ".join(f"{d} {v} (module {m})" for d, v, m in dists)
        picks = ", ".join(f"{normalize_distribution(d)}:{name}" for d, _, _ in dists)
        problem = PluginProblem(
            name,
            "plugin",
            "conflict",
            ", ".join(d for d, _, _ in dists),
            ", ".join(v for _, v, _ in dists),
            ", ".join(m for _, _, m in dists),
            f"plugin name {name!r} is declared by {len(group)} distributions: {both}; each is "
            f"loaded under its qualified name ({picks}); {LOAD_ENV}={name} would load all of "
            f"them: use one of {picks} to pick one",
        )
        self._problem(problem)

    def _check_allowed(
        self, allowed: set[str], by_name: dict[str, list[importlib.metadata.EntryPoint]]
    ) -> None:
        qualified = {
            f"{normalize_distribution(_dist_of(ep)[0])}:{n}"
            for n, eps in by_name.items()
            for ep in eps
        }
        for name in sorted(a for a in allowed if a not in by_name and a not in qualified):
            self._problem(
                PluginProblem(
                    name,
                    "plugin",
                    "missing",
                    "-",
                    "-",
                    "-",
                    f"{LOAD_ENV} names {name!r}, which no installed plugin has (a typo?); "
                    f"available plugins: {', '.join(sorted(by_name)) or 'none'}",
                )
            )

    def _problem(self, problem: PluginProblem) -> None:
        self.problems.append(problem)
        hint = (
            ""
            if problem.status != "error"
            else f"; it is skipped (`xalign plugins` lists it): fix or uninstall "
            f"{problem.distribution}, or set {LOAD_ENV} to the plugins to load"
        )
        _warn(problem.error + hint)

    def add(
        self,
        plugin: ModuleType | object,
        *,
        name: str,
        distribution: str = "local",
        version: str = "0",
    ) -> None:
        """Register a plugin object (module or instance with hookimpls), e.g. in tests."""
        try:
            self.pm.register(plugin, name=name)
        except ValueError as exc:  # pluggy: name or object already registered
            raise PluginError(
                f"plugin {name!r} (distribution {distribution} {version}) "
                f"cannot be registered: {exc}"
            ) from exc
        module = getattr(plugin, "__name__", type(plugin).__module__)
        self.sources[name] = PluginSource(name, module, distribution, version)
        self._cache = None

    def remove(self, name: str) -> None:
        self.pm.unregister(name=name)
        self.sources.pop(name, None)
        self._cache = None

    # -- registries --------------------------------------------------------------------
    def _collect(self) -> dict[str, dict[str, Registered]]:
        if self._cache is not None:
            return self._cache
        claims: dict[str, dict[str, list[Registered]]] = {k: {} for k in KINDS}
        problems: list[PluginProblem] = []
        hooks = (
            ("objective", self.pm.hook.register_objectives, Objective),
            ("task", self.pm.hook.register_tasks, Task),
        )
        for kind, hook, base in hooks:
            for impl in hook.get_hookimpls():
                source = self.sources.get(impl.plugin_name) or PluginSource(
                    impl.plugin_name, impl.plugin_name, "unknown", "unknown"
                )
                got: list[type] = []
                try:
                    impl.function(got.append)
                    for cls in got:
                        _check_class(cls, kind, base, source)
                except Exception as exc:  # noqa: BLE001 - skip this plugin's registrations
                    message = (
                        str(exc)
                        if isinstance(exc, PluginError)
                        else (
                            f"{source.label()} failed in {hook.name}: {type(exc).__name__}: {exc}"
                        )
                    )
                    problems.append(
                        PluginProblem(
                            source.name,
                            "plugin",
                            "error",
                            source.distribution,
                            source.version,
                            source.module,
                            message,
                        )
                    )
                    continue
                for cls in dict.fromkeys(got):  # the same class twice is one registration
                    claims[kind].setdefault(cls.name, []).append(
                        Registered(cls.name, kind, cls, source)
                    )
        out: dict[str, dict[str, Registered]] = {k: {} for k in KINDS}
        conflicts: dict[str, dict[str, PluginProblem]] = {k: {} for k in KINDS}
        for kind, names in claims.items():
            for name, regs in names.items():
                if len(regs) == 1:
                    out[kind][name] = regs[0]
                    continue
                conflicts[kind][name] = problem = _name_conflict(kind, name, regs)
                problems.append(problem)
        # registration problems are reported once, even if the cache is rebuilt (add/remove)
        old = {(p.name, p.error) for p in self._collect_problems}
        self.problems = [p for p in self.problems if p not in self._collect_problems]
        for p in problems:
            self.problems.append(p)
            if (p.name, p.error) not in old:
                _warn(
                    p.error
                    if p.status == "conflict"
                    else f"{p.error}; what it registers there is skipped (`xalign plugins` lists "
                    f"it; fix or uninstall {p.distribution}, or set {LOAD_ENV})"
                )
        self._collect_problems = problems
        self._conflicts = conflicts
        self._cache = out
        return out

    def objectives(self) -> dict[str, Registered]:
        return self._collect()["objective"]

    def tasks(self) -> dict[str, Registered]:
        return self._collect()["task"]

    def objective(self, name: str) -> Registered:
        return self._lookup("objective", name)

    def task(self, name: str) -> Registered:
        return self._lookup("task", name)

    def _lookup(self, kind: str, name: str) -> Registered:
        table = self._collect()[kind]
        if name in table:
            return table[name]
        if name in self._conflicts[kind]:
            raise PluginError(self._conflicts[kind][name].error)
        known = ", ".join(sorted(table)) or "none"
        message = f"unknown {kind} {name!r}; available: {known}"
        close = difflib.get_close_matches(name, list(table), n=1)
        if close:
            message += f"; did you mean {close[0]!r}?"
        broken = [p for p in self.problems if p.status in ("error", "missing")]
        if broken:
            message += (
                "; plugin problems: "
                + "; ".join(p.error for p in broken)
                + f" (`xalign plugins` lists them; fix or uninstall a broken plugin, "
                f"or set {LOAD_ENV}=NAME,... to load only the plugins you need)"
            )
        elif os.environ.get(LOAD_ENV) is not None:
            message += f" ({LOAD_ENV}={os.environ[LOAD_ENV]!r} restricts the plugins loaded)"
        raise PluginError(message)

    def listing(self) -> list[dict[str, Any]]:
        """Everything registered, then every problem, as shown by ``xalign plugins --json``."""
        items = list(self.objectives().values()) + list(self.tasks().values())
        return [r.info() for r in sorted(items, key=lambda r: (r.kind, r.name))] + [
            p.info() for p in self.problems
        ]


def _name_conflict(kind: str, name: str, regs: list[Registered]) -> PluginProblem:
    who = " and ".join(
        f"plugin {r.source.name!r} (distribution {r.source.distribution} "
        f"{r.source.version}, {r.cls.__module__}.{r.cls.__qualname__})"
        for r in regs
    )
    return PluginProblem(
        name,
        kind,
        "conflict",
        ", ".join(dict.fromkeys(r.source.distribution for r in regs)),
        ", ".join(r.source.version for r in regs),
        ", ".join(r.cls.__module__ for r in regs),
        f"{kind} {name!r} is registered by {len(regs)} plugins: {who}; none of them is used. "
        f"Uninstall one distribution, or set {LOAD_ENV} to the plugins to load (DIST:NAME "
        f"picks one of two plugins with the same name)",
    )


def _check_class(cls: type, kind: str, base: type, source: PluginSource) -> None:
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise PluginError(
            f"{source.label()} registered {cls!r} as {kind}, which is not a subclass of "
            f"xalign.{base.__name__}"
        )
    if not isinstance(getattr(cls, "name", None), str) or not cls.name:
        raise PluginError(f"{source.label()} registered {cls.__name__} without a name")
    _check_defaults(cls, kind, source)


def _check_defaults(cls: type, kind: str, source: PluginSource) -> None:
    """The defaults of ``cls.Config`` checked against their own annotations, as user-given
    values are (``n: int = "three"`` would otherwise reach ``run``/``loss`` unchecked).

    Raises:
        PluginError: naming the plugin, the class and the option key.
    """
    from xalign.schema import check_value, type_hints

    config = getattr(cls, "Config", None)
    if not (isinstance(config, type) and dataclasses.is_dataclass(config)):
        return
    hints = type_hints(config)
    for f in dataclasses.fields(config):
        if not f.init:
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            continue
        try:
            check_value(default, hints.get(f.name, Any), f.name)
        except ConfigError as exc:
            raise PluginError(
                f"{source.label()}: {kind} {cls.name!r} ({cls.__name__}.Config): the default "
                f"of option {exc}"
            ) from None


_registry: PluginRegistry | None = None


def get_registry() -> PluginRegistry:
    """The process-wide registry, loading entry points on first use."""
    global _registry
    if _registry is None:
        _registry = PluginRegistry()
    return _registry


def reset_registry() -> None:
    """Forget the process-wide registry (tests; after changing XALIGN_LOAD_PLUGINS)."""
    global _registry
    _registry = None
