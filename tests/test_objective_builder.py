"""The one objective builder and needs() from the options (``xalign.plugins``).

``Objective.needs_for(config)`` answers without building the objective; the config check,
``xalign plugins`` and ``xalign prepare`` use it, the recipe builds with
``build_objective``, and ``mixed_batches`` is the one mixed-language rule.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import pytest

import xalign
from xalign.config import check_objective_options, load_config
from xalign.errors import ConfigError
from xalign.plugins import (
    PluginError,
    PluginRegistry,
    Registered,
    _needs_of,
    build_objective,
    get_registry,
    mixed_batches,
    objective_needs,
    options_needs,
)

#: (objective, options) whose needs differ from the defaults' (each option that changes them)
VARIANTS = [
    ("sinkhorn", {}),
    ("l2", {"target": "frozen"}),
    ("l2", {"target": "tuned", "symmetrization": "grow-diag-final-and"}),
    ("contrastive", {"symmetrization": "intersection", "drop_identical": False}),
    ("translation_ranking", {"mixed_languages": True}),
    ("translation_ranking", {}),
    ("distill", {"teacher": "org/model"}),
    ("distill", {}),
    ("mixed_ot", {}),
    ("so", {"guide": "self"}),
    ("so", {}),
    ("tlm", {}),
]


@pytest.mark.parametrize(("name", "options"), VARIANTS)
def test_needs_from_options_equal_the_built_objectives(name, options, monkeypatch):
    """Every built-in objective: needs_for(Config) == needs() of the objective built from the
    same options, and no objective is built for it (``__init__`` patched to fail)."""
    entry = get_registry().objective(name)
    built = build_objective(entry, options, hidden_size=4).needs()
    config = entry.cls.config_from(options)

    def no_build(*args, **kwargs):
        raise AssertionError("needs_for built the objective")

    monkeypatch.setattr(entry.cls, "__init__", no_build)
    assert entry.cls.needs_for(config) == built
    assert objective_needs(entry.cls, config) == built
    assert options_needs(entry, options) == built


def test_needs_depend_on_the_options():
    """The hand-known answers for options that change the needs."""
    entry = get_registry().objective("translation_ranking")
    assert options_needs(entry, {"mixed_languages": True}) == xalign.Needs(
        mixed_languages=True, gathers=True
    )
    assert options_needs(entry, {}) == xalign.Needs(gathers=True)
    distill = get_registry().objective("distill")
    assert options_needs(distill, {"teacher": "t"}) == xalign.Needs(teacher="t")
    assert options_needs(distill, {}) == xalign.Needs(frozen_target=True)


@dataclass
class _Opts:
    mixed: bool = False


class _ReadsInit(xalign.Objective):
    """Old style: needs() reads an attribute set in __init__ (not only self.config)."""

    name = "reads_init"
    Config = _Opts

    def __init__(self, config=None, *, hidden_size: int) -> None:
        super().__init__(config, hidden_size=hidden_size)
        self.mixed = self.config.mixed

    def needs(self) -> xalign.Needs:
        return xalign.Needs(mixed_languages=self.mixed)


class _ConfigOnly(xalign.Objective):
    """Old style: needs() reads self.config and calls a method (answered unbuilt)."""

    name = "config_only"
    Config = _Opts

    def flag(self) -> bool:
        return self.config.mixed

    def needs(self) -> xalign.Needs:
        return xalign.Needs(mixed_languages=self.flag())


class _NeedsFor(xalign.Objective):
    """New style: only needs_for is overridden; the inherited needs() follows it."""

    name = "needs_for"
    Config = _Opts

    @classmethod
    def needs_for(cls, config) -> xalign.Needs:
        return xalign.Needs(mixed_languages=config.mixed, gathers=True)


class _Super(xalign.Objective):
    """needs() extends super().needs(): no recursion through the default needs_for."""

    name = "super_needs"
    Config = _Opts

    def needs(self) -> xalign.Needs:
        base = super().needs()
        return xalign.Needs(mixed_languages=self.config.mixed, gathers=base.gathers)


class _Nothing(xalign.Objective):
    name = "nothing"


@pytest.mark.parametrize("mixed", [False, True])
def test_each_way_of_declaring_needs(mixed):
    config = _Opts(mixed=mixed)
    assert _ConfigOnly.needs_for(config) == xalign.Needs(mixed_languages=mixed)
    assert _NeedsFor.needs_for(config) == xalign.Needs(mixed_languages=mixed, gathers=True)
    assert _NeedsFor(config, hidden_size=2).needs() == _NeedsFor.needs_for(config)
    assert _Super.needs_for(config) == _Super(config, hidden_size=2).needs()
    assert _Super.needs_for(config) == xalign.Needs(mixed_languages=mixed)
    assert _Nothing.needs_for(xalign.NoOptions()) == xalign.Needs()
    assert _Nothing(hidden_size=2).needs() == xalign.Needs()
    # reads __init__ state: unknown without a model, right once built with the real width
    with pytest.raises(AttributeError):
        _ReadsInit.needs_for(config)
    assert objective_needs(_ReadsInit, config) is None
    assert objective_needs(_ReadsInit, config, hidden_size=3) == xalign.Needs(mixed_languages=mixed)


def _registry(*classes: type) -> PluginRegistry:
    class Plugin:
        @xalign.hookimpl
        def register_objectives(self, register):
            for cls in classes:
                register(cls)

    registry = PluginRegistry(load_entry_points=False)
    registry.add(Plugin(), name="local")
    return registry


def test_listing_needs_without_building():
    assert _needs_of(_ConfigOnly) == []
    assert _needs_of(_NeedsFor) == ["global batch gathered across ranks"]
    assert _needs_of(_ReadsInit) == [
        "<needs() reads more than its options: known once built for a model>"
    ]


def test_config_check_applies_the_mixed_rule_from_the_options():
    """A third-party objective whose needs() depends on its options: mixed only when asked;
    one whose needs() reads __init__ state is left to the trainer (no error at config)."""
    from xalign_sinkhorn import Sinkhorn

    registry = _registry(_ConfigOnly, _ReadsInit, Sinkhorn)
    for objectives, fails in [
        ({"config_only": {}, "sinkhorn": {}}, False),
        ({"config_only": {"mixed": True}, "sinkhorn": {}}, True),
        ({"reads_init": {"mixed": True}, "sinkhorn": {}}, False),
    ]:
        cfg = load_config(None, [])
        cfg.objectives = objectives
        if fails:
            with pytest.raises(ConfigError, match="config_only need\\(s\\) one batch mixing"):
                check_objective_options(cfg, registry)
        else:
            check_objective_options(cfg, registry)


def test_mixed_batches_rule():
    mixed, per_pair = xalign.Needs(mixed_languages=True), xalign.Needs()
    assert mixed_batches({}) is False
    assert mixed_batches({"a": per_pair, "b": per_pair}) is False
    assert mixed_batches({"a": mixed, "b": mixed}) is True
    assert mixed_batches({"a": mixed, "b": None}) is True  # None: not known yet, left out
    with pytest.raises(ConfigError) as err:
        mixed_batches({"a": mixed, "b": per_pair, "c": mixed}, where="run.yaml:3")
    assert str(err.value) == (
        "run.yaml:3: objectives: a, c need(s) one batch mixing all language pairs and cannot "
        "be combined with per-language-pair objectives (b) in one run"
    )


def test_build_objective_names_the_plugin_on_bad_options():
    registry = _registry(_ConfigOnly)
    entry: Registered = registry.objective("config_only")
    assert build_objective(entry, {"mixed": True}, hidden_size=2).config.mixed is True
    for bad in ({"nope": 1}, {"mixed": "maybe"}):
        with pytest.raises(PluginError, match=r"objective 'config_only' \(plugin 'local'.*bad"):
            build_objective(entry, bad, hidden_size=2)
        with pytest.raises(PluginError, match="bad options"):
            options_needs(entry, bad)


def test_deprecated_option_names_still_build():
    entry = get_registry().objective("sinkhorn")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        built = build_objective(entry, {"weights": "uniform"}, hidden_size=2)
    assert built.config.point_weights == "uniform"
    assert any("deprecated" in str(w.message) for w in caught)
