"""Plugin discovery (entry-point group ``xalign``) and the objective/task registries.

Built-in plugins are loaded through the same entry points as third-party ones. Set
``XALIGN_LOAD_PLUGINS=a,b`` to load only those entry points (empty string = none).
"""

from __future__ import annotations

import importlib.metadata
import os
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pluggy

from xalign import hookspecs
from xalign.objective import Objective
from xalign.task import Task

ENTRY_POINT_GROUP = "xalign"
LOAD_ENV = "XALIGN_LOAD_PLUGINS"


class PluginError(RuntimeError):
    """A plugin failed (import, registration, or at run time); the message names it."""


@dataclass
class PluginSource:
    """Where a registered plugin module came from."""

    name: str
    module: str
    distribution: str
    version: str


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
            "plugin": self.source.name,
            "distribution": self.source.distribution,
            "version": self.source.version,
            "module": self.cls.__module__,
            "description": doc[0] if doc else "",
            "options": self.cls.options(),
        }
        if self.kind == "objective":
            info["needs"] = _needs_of(self.cls)
        return info

    def where(self) -> str:
        return (f"{self.kind} {self.name!r} (plugin {self.source.name!r}, distribution "
                f"{self.source.distribution} {self.source.version})")


def _needs_of(cls: type[Objective]) -> list[str]:
    try:
        return cls(hidden_size=8).needs().describe()
    except Exception as exc:  # noqa: BLE001 - shown to the user, not fatal for listing
        return [f"<needs() failed: {exc}>"]


class PluginRegistry:
    """A pluggy manager plus the objectives and tasks its plugins registered."""

    def __init__(self, load_entry_points: bool = True) -> None:
        self.pm = pluggy.PluginManager("xalign")
        self.pm.add_hookspecs(hookspecs)
        self.sources: dict[str, PluginSource] = {}
        self._cache: dict[str, dict[str, Registered]] | None = None
        if load_entry_points:
            self._load_entry_points()

    # -- loading -----------------------------------------------------------------------
    def _load_entry_points(self) -> None:
        allowed = _allowed_plugins()
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if allowed is not None and ep.name not in allowed:
                continue
            if ep.name in self.sources:
                continue
            dist = ep.dist.name if ep.dist else "unknown"
            version = ep.dist.version if ep.dist else "unknown"
            try:
                module = ep.load()
            except Exception as exc:
                raise PluginError(
                    f"plugin {ep.name!r} from distribution {dist} {version} failed to import "
                    f"({ep.value}): {type(exc).__name__}: {exc}"
                ) from exc
            self.add(module, name=ep.name, distribution=dist, version=version)

    def add(self, plugin: ModuleType | object, *, name: str, distribution: str = "local",
            version: str = "0") -> None:
        """Register a plugin object (module or instance with hookimpls), e.g. in tests."""
        self.pm.register(plugin, name=name)
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
        out: dict[str, dict[str, Registered]] = {"objective": {}, "task": {}}
        hooks = (("objective", self.pm.hook.register_objectives, Objective),
                 ("task", self.pm.hook.register_tasks, Task))
        for kind, hook, base in hooks:
            for impl in hook.get_hookimpls():
                source = self.sources.get(impl.plugin_name) or PluginSource(
                    impl.plugin_name, impl.plugin_name, "unknown", "unknown")

                def register(cls: type, *, _kind=kind, _base=base, _source=source) -> None:
                    _check_class(cls, _kind, _base, _source)
                    if cls.name in out[_kind]:
                        other = out[_kind][cls.name].source
                        raise PluginError(
                            f"{_kind} {cls.name!r} registered twice: by plugin {other.name!r} "
                            f"({other.distribution}) and {_source.name!r} ({_source.distribution})"
                        )
                    out[_kind][cls.name] = Registered(cls.name, _kind, cls, _source)

                try:
                    impl.function(register)
                except PluginError:
                    raise
                except Exception as exc:
                    raise PluginError(
                        f"plugin {source.name!r} (distribution {source.distribution}) failed in "
                        f"{hook.name}: {type(exc).__name__}: {exc}"
                    ) from exc
        self._cache = out
        return out

    def objectives(self) -> dict[str, Registered]:
        return self._collect()["objective"]

    def tasks(self) -> dict[str, Registered]:
        return self._collect()["task"]

    def objective(self, name: str) -> Registered:
        return _lookup(self.objectives(), name, "objective")

    def task(self, name: str) -> Registered:
        return _lookup(self.tasks(), name, "task")

    def listing(self) -> list[dict[str, Any]]:
        """Everything registered, as shown by ``xalign plugins --json``."""
        items = list(self.objectives().values()) + list(self.tasks().values())
        return [r.info() for r in sorted(items, key=lambda r: (r.kind, r.name))]


def _allowed_plugins() -> set[str] | None:
    raw = os.environ.get(LOAD_ENV)
    if raw is None:
        return None
    return {p.strip() for p in raw.split(",") if p.strip()}


def _check_class(cls: type, kind: str, base: type, source: PluginSource) -> None:
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise PluginError(
            f"plugin {source.name!r} ({source.distribution}) registered {cls!r} as {kind}, "
            f"which is not a subclass of xalign.{base.__name__}"
        )
    if not getattr(cls, "name", None):
        raise PluginError(f"plugin {source.name!r} registered {cls.__name__} without a name")


def _lookup(table: dict[str, Registered], name: str, kind: str) -> Registered:
    if name not in table:
        known = ", ".join(sorted(table)) or "none (check XALIGN_LOAD_PLUGINS)"
        raise PluginError(f"unknown {kind} {name!r}; available: {known}")
    return table[name]


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
