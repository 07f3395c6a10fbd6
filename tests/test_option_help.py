"""Every option of every built-in objective and task has help text (``xalign plugins NAME``),
and the rules by which :func:`xalign.cli.common.field_help` finds it."""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest

import xalign.plugins as plugins
from xalign.cli.common import _doc_bullets, field_help
from xalign.cli.plugins import option_help

ROOT = Path(__file__).resolve().parents[1]


def builtin() -> list[tuple[str, str]]:
    """``(kind, name)`` of every objective and task the xalign distribution registers."""
    registry = plugins.get_registry()
    regs = (*registry.objectives().values(), *registry.tasks().values())
    return sorted((r.kind, r.name) for r in regs if r.source.distribution == "xalign")


def undocumented(kind: str, name: str) -> list[str]:
    """The options of objective/task ``name`` that ``xalign plugins NAME`` shows without help."""
    return [key for key, text in option_help(kind, name).items() if not text.strip()]


def config_of(kind: str, name: str) -> type:
    registry = plugins.get_registry()
    reg = registry.objective(name) if kind == "objective" else registry.task(name)
    return reg.cls.Config


def test_every_builtin_plugin_folder_is_checked():
    """The parametrised checks below see every ``plugins/xalign_*`` package (none failed to
    load or was left out by XALIGN_LOAD_PLUGINS), so none passes by being absent."""
    registry = plugins.get_registry()
    regs = (*registry.objectives().values(), *registry.tasks().values())
    loaded = {r.source.module.split(".")[0] for r in regs if r.source.distribution == "xalign"}
    folders = {p.name for p in (ROOT / "plugins").glob("xalign_*") if (p / "__init__.py").is_file()}
    assert folders and folders <= loaded, sorted(folders - loaded)


@pytest.mark.parametrize("kind, name", builtin(), ids=lambda v: str(v))
def test_every_builtin_option_has_help_text(kind, name):
    config = config_of(kind, name)
    assert dataclasses.is_dataclass(config), f"{kind} {name}: Config is not a dataclass"
    helps = option_help(kind, name)
    assert set(helps) >= {f.name for f in dataclasses.fields(config)}
    missing = undocumented(kind, name)
    assert not missing, (
        f"{kind} {name}: options without help text: {missing}; add a docstring bullet "
        f'``- ``key``: text`` to its Config (or field(metadata={{"help": ...}}))'
    )


@pytest.mark.parametrize("kind, name", builtin(), ids=lambda v: str(v))
def test_docstring_bullets_name_existing_options(kind, name):
    """A bullet for a renamed or removed option (``- ``treebank``:`` for ``treebanks``)
    documents nothing and hides that the real option lost its text."""
    config = config_of(kind, name)
    fields = {f.name for f in dataclasses.fields(config)}
    for klass in config.__mro__:
        if dataclasses.is_dataclass(klass) and "__doc__" in vars(klass) and klass.__doc__:
            stale = set(_doc_bullets(inspect.cleandoc(klass.__doc__))) - fields
            assert not stale, f"{klass.__qualname__}: bullets for no option: {sorted(stale)}"


# ------------------------------------------------------------------ the check can fail


@dataclass
class _HalfDocumented:
    """Options.

    - ``alpha``: documented.
    """

    alpha: float = 1.0
    beta: int = 2  # no bullet, no metadata
    gamma: str = field(default="x", metadata={"help": "   "})  # blank is not help


def _fake_registry(config: type) -> SimpleNamespace:
    reg = SimpleNamespace(cls=SimpleNamespace(Config=config))
    return SimpleNamespace(objective=lambda name: reg, task=lambda name: reg)


@pytest.mark.parametrize("kind", ["objective", "task"])
def test_the_check_reports_an_undocumented_option(kind, monkeypatch):
    monkeypatch.setattr(plugins, "get_registry", lambda: _fake_registry(_HalfDocumented))
    assert undocumented(kind, "fake") == ["beta", "gamma"]
    with pytest.raises(AssertionError, match=r"options without help text: \['beta', 'gamma'\]"):
        test_every_builtin_option_has_help_text(kind, "fake")


# ------------------------------------------------------------------ field_help precedence


@dataclass
class _Base:
    """Base options.

    - ``size``: from the base,
      continued on a second line.
    - ``rate``: the base's text.
    - ``mode``: the base's text, under the metadata.
    """

    size: int = 1
    rate: float = 0.5
    mode: str = field(default="a", metadata={"help": "from the metadata"})


@dataclass
class _Child(_Base):
    """Child options (re-declares defaults, documents one field anew).

    - ``rate``: the child's text (see :class:`xalign.LinkSpec`).
    - ``mode``: the child's bullet, still under the base's metadata.
    - ``extra``: a new option.
    """

    size: int = 2  # no bullet here: the base's text stays
    rate: float = 0.1
    extra: bool = False


def test_subclass_bullet_overrides_base_and_metadata_wins():
    assert field_help(_Base) == {
        "size": "from the base, continued on a second line.",
        "rate": "the base's text.",
        "mode": "from the metadata",
    }
    assert field_help(_Child) == {
        "size": "from the base, continued on a second line.",  # re-declared, inherits text
        "rate": "the child's text (see xalign.LinkSpec).",  # role markup shown as plain text
        "mode": "from the metadata",
        "extra": "a new option.",
    }


def test_shared_base_settings_document_third_party_configs():
    """A third-party task that extends a public settings class gets its help text."""
    from xalign import FinetuneSettings, ProbeSettings

    @dataclass
    class MyProbe(ProbeSettings):
        layer: int = 8  # a different default, no docstring of its own

    @dataclass
    class MyFinetune(FinetuneSettings):
        epochs: int = 1

    for config in (MyProbe, MyFinetune):
        helps = field_help(config)
        assert all(text.strip() for text in helps.values()), (config, helps)
    assert field_help(MyProbe)["layer"].startswith("hidden-state index")
