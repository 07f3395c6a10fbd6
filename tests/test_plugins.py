"""Plugin discovery, listing, restriction, documentation and failure reporting."""

from __future__ import annotations

import ast
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from typer.testing import CliRunner

import xalign
from xalign import hookspecs
from xalign.cli import app
from xalign.plugins import PluginError, PluginWarning, get_registry, reset_registry

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "docs" / "plugin-template"
runner = CliRunner()


def install_fake_distribution(
    site: Path,
    dist: str,
    version: str,
    entry: str,
    module: str,
    source: str | None = None,
    source_dir: Path | None = None,
) -> None:
    """Make ``dist`` importable and discoverable (a dist-info with entry points) from ``site``."""
    if source_dir is not None:
        shutil.copytree(source_dir, site / module)
    else:
        (site / module).mkdir(parents=True)
        (site / module / "__init__.py").write_text(source or "")
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[xalign]\n{entry} = {module}\n")


@pytest.fixture
def site(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    yield site
    # forget the modules imported from it: the next test's module of the same name is new
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", None) or "").startswith(str(site)):
            del sys.modules[name]


def plugins_json() -> list[dict]:
    result = runner.invoke(app, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_builtin_sinkhorn_is_listed_with_its_distribution():
    items = {i["name"]: i for i in plugins_json()}
    s = items["sinkhorn"]
    assert s["kind"] == "objective" and s["distribution"] == "xalign"
    assert s["module"] == "xalign_sinkhorn" and s["description"]
    assert s["options"]["blur"] == 0.05 and "needs" in s


def test_builtin_plugins_are_all_listed():
    names = {i["name"]: i["kind"] for i in plugins_json()}
    assert names == {
        "sinkhorn": "objective",
        "l2": "objective",
        "contrastive": "objective",
        "mixed_ot": "objective",
        "translation_ranking": "objective",
        "distill": "objective",
        "so": "objective",
        "co": "objective",
        "tlm": "objective",
        "xnli": "task",
        "xnli-mini": "task",
        "xquad": "task",
        "qa-mini": "task",
        "align": "task",
        "tatoeba": "task",
        "udpos": "task",
        "pos-mini": "task",
        "mlqa": "task",
        "bucc": "task",
        "xnli-probe": "task",
        "pos-probe": "task",
    }


def test_env_var_restricts_loading(monkeypatch):
    monkeypatch.setenv("XALIGN_LOAD_PLUGINS", "")
    assert plugins_json() == []
    reset_registry()
    monkeypatch.setenv("XALIGN_LOAD_PLUGINS", "sinkhorn")
    assert [i["name"] for i in plugins_json()] == ["sinkhorn"]


def test_template_plugin_installs_lists_and_trains(site, smoke_overrides, monkeypatch):
    """The documented template, installed as a third-party distribution, works end to end."""
    install_fake_distribution(
        site,
        "xalign-example",
        "0.1.0",
        "example",
        "xalign_example",
        source_dir=TEMPLATE / "xalign_example",
    )
    items = {i["name"]: i for i in plugins_json()}
    assert items["mean_cosine"]["distribution"] == "xalign-example"
    assert items["mean_cosine"]["version"] == "0.1.0"
    assert items["mean_cosine"]["module"] == "xalign_example"
    # the same entry point registers the template's task
    assert items["pair_retrieval"]["kind"] == "task"
    assert items["pair_retrieval"]["distribution"] == "xalign-example"
    sets = sum((["--set", o] for o in smoke_overrides), [])
    result = runner.invoke(app, ["run", "-q", "--json", "-o", "mean_cosine", *sets])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout.strip().splitlines()[-1])["metrics"]
    assert 0 <= metrics["de-en/mean_cosine"] <= 2


def test_template_pyproject_declares_the_entry_point():
    text = (TEMPLATE / "pyproject.toml").read_text()
    assert "[project.entry-points.xalign]" in text and 'example = "xalign_example"' in text


def test_import_error_names_the_distribution(site):
    """A plugin that fails to import is skipped with a warning naming it; the rest loads."""
    install_fake_distribution(
        site,
        "xalign-broken",
        "9.9",
        "broken",
        "xalign_broken",
        source="import does_not_exist_anywhere\n",
    )
    with pytest.warns(
        PluginWarning,
        match=r"plugin 'broken' from distribution xalign-broken "
        r"9\.9 failed to import .*XALIGN_LOAD_PLUGINS",
    ):
        registry = get_registry()
    assert registry.objective("sinkhorn").source.distribution == "xalign"
    [problem] = [p for p in registry.problems if p.name == "broken"]
    assert (problem.status, problem.distribution, problem.version) == (
        "error",
        "xalign-broken",
        "9.9",
    )
    assert "ModuleNotFoundError: No module named 'does_not_exist_anywhere'" in problem.error
    result = runner.invoke(app, ["plugins"])
    assert result.exit_code == 0 and "xalign-broken" in result.stdout


def test_exception_in_loss_names_the_distribution(site, smoke_overrides):
    install_fake_distribution(
        site,
        "xalign-raises",
        "1.2",
        "raises",
        "xalign_raises",
        source=(
            "import xalign\n"
            "class Boom(xalign.Objective):\n"
            "    name = 'boom'\n"
            "    def loss(self, batch):\n"
            "        raise ZeroDivisionError('kaboom')\n"
            "@xalign.hookimpl\n"
            "def register_objectives(register):\n"
            "    register(Boom)\n"
        ),
    )
    sets = sum((["--set", o] for o in smoke_overrides), [])
    result = runner.invoke(app, ["run", "-q", "-o", "boom", *sets])
    assert result.exit_code == 1
    assert "objective 'boom' (plugin 'raises', distribution xalign-raises 1.2)" in result.output
    assert "ZeroDivisionError: kaboom" in result.output


def test_registering_a_non_objective_is_rejected(site):
    install_fake_distribution(
        site,
        "xalign-wrong",
        "1.0",
        "wrong",
        "xalign_wrong",
        source=(
            "import xalign\n"
            "@xalign.hookimpl\n"
            "def register_objectives(register):\n"
            "    register(dict)\n"
        ),
    )
    with pytest.warns(PluginWarning, match="not a subclass of xalign.Objective"):
        objectives = get_registry().objectives()
    assert "sinkhorn" in objectives
    [problem] = get_registry().problems
    assert problem.name == "wrong" and problem.distribution == "xalign-wrong"
    assert "registered <class 'dict'> as objective" in problem.error


def test_duplicate_names_are_rejected(site):
    install_fake_distribution(
        site,
        "xalign-dup",
        "1.0",
        "dup",
        "xalign_dup",
        source=(
            "import xalign\n"
            "class S(xalign.Objective):\n"
            "    name = 'sinkhorn'\n"
            "@xalign.hookimpl\n"
            "def register_objectives(register):\n"
            "    register(S)\n"
        ),
    )
    with pytest.warns(PluginWarning, match="objective 'sinkhorn' is registered by 2 plugins"):
        objectives = get_registry().objectives()
    assert "sinkhorn" not in objectives and "l2" in objectives
    with pytest.raises(PluginError, match="registered by 2 plugins") as info:
        get_registry().objective("sinkhorn")
    assert "plugin 'sinkhorn' (distribution xalign 0.1.0" in str(info.value)
    assert "plugin 'dup' (distribution xalign-dup 1.0, xalign_dup.S)" in str(info.value)


def test_every_hookspec_is_documented():
    """datasette style: a hook without a section in docs/plugins.md fails the suite."""
    docs = (ROOT / "docs" / "plugins.md").read_text()
    specs = [
        n for n, f in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(f, "xalign_spec")
    ]
    assert {"register_objectives", "register_tasks"} <= set(specs)
    for name in specs:
        sig = f"{name}({', '.join(inspect.signature(getattr(hookspecs, name)).parameters)})"
        assert re.search(rf"^### `{re.escape(sig)}`$", docs, re.M), f"{sig} undocumented"
        assert getattr(hookspecs, name).__doc__.strip()


#: Public submodules a plugin may import from (``from xalign.testing import make_side``).
PUBLIC_MODULES = {f"xalign.{name}" for name in ("testing",)}


#: Plugin-to-plugin imports still present, each a known debt (shared code belongs in xalign's
#: public API): (importing package, imported package). Nothing else may import another plugin.
KNOWN_PLUGIN_IMPORTS = {("xalign_co", "xalign_so")}


def public_api_violations(
    source: str, own: str | None = None, *, plugin_imports: bool = True
) -> list[tuple[int, str]]:
    """(line, dotted name) of every use of xalign outside ``xalign.__all__`` in ``source``:
    ``import xalign.sub``, ``from xalign.sub import ...``, ``from xalign import name`` and
    ``xalign.name`` (also through ``import xalign as alias``) with a name not in ``__all__``;
    and every import of another plugin's package (``xalign_NAME`` other than ``own``, the
    package the source belongs to) unless ``plugin_imports`` is False (a plugin's own tests)."""
    public = set(xalign.__all__)

    def other_plugin(module: str) -> str | None:
        top = module.split(".")[0]
        known = (own, top) in KNOWN_PLUGIN_IMPORTS
        if plugin_imports and top.startswith("xalign_") and top != own and not known:
            return top
        return None

    tree = ast.parse(source)
    aliases: set[str] = set()
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if other_plugin(alias.name):
                    out.append((node.lineno, alias.name))
                elif alias.name == "xalign":
                    aliases.add(alias.asname or "xalign")
                elif alias.name.startswith("xalign.") and alias.name not in PUBLIC_MODULES:
                    out.append((node.lineno, alias.name))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if other_plugin(node.module):
                out += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
            elif node.module == "xalign":
                bad = [a.name for a in node.names if a.name not in public]
                out += [(node.lineno, f"xalign.{name}") for name in bad]
            elif node.module.startswith("xalign.") and node.module not in PUBLIC_MODULES:
                out += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr not in public
        ):
            out.append((node.lineno, f"xalign.{node.attr}"))
    return sorted(set(out))


def plugin_api_problems(plugins_dir: Path) -> list[str]:
    """One message per non-public use in any plugin package under ``plugins_dir``: plugin,
    file:line and the name."""
    problems = []
    for pkg in sorted(p for p in plugins_dir.iterdir() if p.is_dir()):
        for py in sorted(pkg.rglob("*.py")):
            is_plugin = pkg.name.startswith("xalign_")  # not the template's tests/
            source = py.read_text()
            for line, name in public_api_violations(source, pkg.name, plugin_imports=is_plugin):
                what = (
                    "another plugin (shared code belongs in xalign's public API)"
                    if name.startswith("xalign_")
                    else "not in xalign.__all__ (the public API)"
                )
                problems.append(
                    f"plugin {pkg.name}: {py.relative_to(plugins_dir.parent)}:{line}: uses "
                    f"{name}, which is {what}"
                )
    return problems


@pytest.mark.parametrize("plugins_dir", [ROOT / "plugins", TEMPLATE])
def test_plugins_use_only_the_public_api(plugins_dir):
    """Built-in plugins (and the template) import only ``xalign.__all__`` (as a third party
    would) and their own package, never another plugin's (``mlqa`` and ``xquad`` share
    ``xalign.ExtractiveQaTask``); ``KNOWN_PLUGIN_IMPORTS`` lists the one remaining debt."""
    assert plugin_api_problems(plugins_dir) == []


@pytest.mark.parametrize(
    "source, expected",
    [
        ("from xalign.alignment import load_gold\n", [(1, "xalign.alignment.load_gold")]),
        (
            "import os\nimport xalign.evaluation.finetune\n",
            [(2, "xalign.evaluation.finetune")],
        ),  # the module
        ("import xalign\nxalign.default_cache_dir()\n", [(2, "xalign.default_cache_dir")]),
        ("from xalign import Task, shared_data_dir\n", [(1, "xalign.shared_data_dir")]),
        ("import xalign as xa\n\nx = xa.evaluation.f1\n", [(3, "xalign.evaluation")]),
        ("from xalign import *\n", [(1, "xalign.*")]),
        ("import xalign\nfrom xalign import Task, data_root\nxalign.squad_f1\n", []),
        (  # another plugin: forbidden
            "import xalign_xquad\nfrom xalign_xquad import Xquad\n",
            [(1, "xalign_xquad"), (2, "xalign_xquad.Xquad")],
        ),
        ("from xalign_xquad.data import load_xquad\n", [(1, "xalign_xquad.data.load_xquad")]),
        ("from xalign.testing import make_side\nimport xalign.testing\n", []),  # public module
        ("from xalign import testing\ntesting.make_batch\n", []),
        ("from xalign.testing.x import y\n", [(1, "xalign.testing.x.y")]),
    ],
)
def test_public_api_checker_finds_each_kind_of_use(source, expected):
    assert public_api_violations(source) == expected


def test_a_plugin_may_import_its_own_package_but_no_other():
    source = "from xalign_mlqa.metrics import mlqa_f1\nimport xalign_xquad\n"
    assert public_api_violations(source, own="xalign_mlqa") == [(2, "xalign_xquad")]
    assert public_api_violations("from xalign_so import x\n", own="xalign_co") == []  # known


def test_plugin_to_plugin_failure_names_both(tmp_path):
    pkg = tmp_path / "plugins" / "xalign_rogue"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("from xalign_xquad import Xquad\n")
    assert plugin_api_problems(tmp_path / "plugins") == [
        "plugin xalign_rogue: plugins/xalign_rogue/__init__.py:1: uses xalign_xquad.Xquad, "
        "which is another plugin (shared code belongs in xalign's public API)"
    ]


def test_boundary_failure_names_plugin_file_line_and_name(tmp_path):
    pkg = tmp_path / "plugins" / "xalign_rogue"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("import xalign\n")
    (pkg / "sub" / "io.py").write_text("\n\nfrom xalign.recipe import AlignmentRecipe\n")
    assert plugin_api_problems(tmp_path / "plugins") == [
        "plugin xalign_rogue: plugins/xalign_rogue/sub/io.py:3: uses "
        "xalign.recipe.AlignmentRecipe, which is not in xalign.__all__ (the public API)"
    ]


#: ``xalign.NAME`` / ``xalign.__all__`` in the docs' prose: placeholders, not names.
META = {"NAME", "__all__"}


def public_api_section() -> str:
    docs = (ROOT / "docs" / "plugins.md").read_text()
    start = docs.index("\n## Public API\n")
    end = docs.find("\n## ", start + 1)
    return docs[start : end if end > 0 else None]


def test_every_public_name_is_documented():
    """datasette style: a name in ``xalign.__all__`` without an entry in docs/plugins.md's
    "Public API" section fails the suite (and so does an entry that is not public)."""
    section = public_api_section()
    documented = set(re.findall(r"`xalign\.(\w+)", section)) - META
    undocumented = [n for n in xalign.__all__ if n not in documented]
    assert not undocumented, f"public names missing from docs/plugins.md: {undocumented}"
    assert documented <= set(xalign.__all__), documented - set(xalign.__all__)
    assert all(hasattr(xalign, n) for n in xalign.__all__)
    assert len(set(xalign.__all__)) == len(xalign.__all__)


def test_docs_mention_no_internal_module():
    """docs/plugins.md names only public names (``xalign.plugins``' registry helpers for
    plugin tests excepted), not the submodules the old docs allowed."""
    docs = (ROOT / "docs" / "plugins.md").read_text()
    used = set(re.findall(r"\bxalign\.(\w+)", docs)) - META - {"plugins"}
    assert used <= set(xalign.__all__), used - set(xalign.__all__)


def test_subprocess_cli_sees_an_installed_plugin(site):
    install_fake_distribution(
        site,
        "xalign-example",
        "0.1.0",
        "example",
        "xalign_example",
        source_dir=TEMPLATE / "xalign_example",
    )
    env = {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    out = subprocess.run(
        [sys.executable, "-m", "xalign.cli", "plugins", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "mean_cosine" in {i["name"] for i in json.loads(out.stdout)}


# -- plugins cannot silently replace or break each other -------------------------------------
VENV_XALIGN = ROOT / ".venv" / "bin" / "xalign"


def objective_source(*names: str, loss: str = "return batch.src.hidden.sum() * 0.0") -> str:
    """A plugin module registering one trivial objective class per name."""
    out = ["import torch", "import xalign"]
    for i, name in enumerate(names):
        out += [
            f"class Obj{i}(xalign.Objective):",
            f"    name = {name!r}",
            "    def loss(self, batch):",
            f"        {loss}",
        ]
    out += ["@xalign.hookimpl", "def register_objectives(register):"]
    out += [f"    register(Obj{i})" for i in range(len(names))]
    return "\n".join(out) + "\n"


def task_source(name: str) -> str:
    return (
        "import xalign\n"
        f"class T(xalign.Task):\n    name = {name!r}\n"
        "    def run(self, model, context):\n"
        "        return xalign.TaskResult(self.name, 'acc', {'en': {'acc': 1.0}})\n"
        "@xalign.hookimpl\n"
        "def register_tasks(register):\n"
        "    register(T)\n"
    )


def cli_env(site: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "XALIGN_LOAD_PLUGINS"}
    env["PYTHONPATH"] = f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    return {**env, **extra}


def test_entry_point_named_like_a_builtin_keeps_both_and_warns(site):
    """The issue's case: a third-party entry point 'sinkhorn' no longer hides the built-in."""
    install_fake_distribution(
        site,
        "xalign-impostor",
        "2.0",
        "sinkhorn",
        "xalign_impostor",
        source=objective_source("my_ot"),
    )
    with pytest.warns(
        PluginWarning, match="plugin name 'sinkhorn' is declared by 2 distributions"
    ) as caught:
        registry = get_registry()
    message = str(caught[0].message)
    assert "xalign 0.1.0 (module xalign_sinkhorn)" in message
    assert "xalign-impostor 2.0 (module xalign_impostor)" in message
    assert "xalign:sinkhorn" in message and "xalign-impostor:sinkhorn" in message
    sinkhorn, my_ot = registry.objective("sinkhorn"), registry.objective("my_ot")
    assert (sinkhorn.source.distribution, sinkhorn.source.name) == ("xalign", "xalign:sinkhorn")
    assert (my_ot.source.distribution, my_ot.source.name) == (
        "xalign-impostor",
        "xalign-impostor:sinkhorn",
    )
    rows = {(i["name"], i["kind"]): i for i in plugins_json()}
    assert rows[("sinkhorn", "objective")]["status"] == "ok"
    assert rows[("my_ot", "objective")]["distribution"] == "xalign-impostor"
    conflict = rows[("sinkhorn", "plugin")]
    assert conflict["status"] == "conflict"
    assert set(conflict["distribution"].split(", ")) == {"xalign", "xalign-impostor"}


@pytest.mark.parametrize(
    "env, expected",
    [
        ("xalign:sinkhorn", {"sinkhorn"}),
        ("xalign-impostor:sinkhorn", {"my_ot"}),
        ("Xalign_Impostor:sinkhorn", {"my_ot"}),  # distribution names compare PEP 503-normalised
        ("sinkhorn", {"sinkhorn", "my_ot"}),
        ("xalign:sinkhorn,xalign-impostor:sinkhorn", {"sinkhorn", "my_ot"}),
    ],
)
def test_load_plugins_picks_one_of_two_same_named_plugins(site, monkeypatch, env, expected):
    install_fake_distribution(
        site,
        "xalign-impostor",
        "2.0",
        "sinkhorn",
        "xalign_impostor",
        source=objective_source("my_ot"),
    )
    monkeypatch.setenv("XALIGN_LOAD_PLUGINS", env)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert set(get_registry().objectives()) == expected
    conflicts = [w for w in caught if "declared by 2 distributions" in str(w.message)]
    assert len(conflicts) == (1 if len(expected) == 2 else 0)


def test_impostor_objective_of_the_same_name_is_an_error_naming_both(site, smoke_overrides):
    install_fake_distribution(
        site,
        "xalign-impostor",
        "2.0",
        "sinkhorn",
        "xalign_impostor",
        source=objective_source("sinkhorn"),
    )
    sets = sum((["--set", o] for o in [*smoke_overrides, "train.max_steps=1"]), [])
    result = runner.invoke(app, ["run", "-q", "-o", "sinkhorn", *sets])
    assert result.exit_code == 1 and "Traceback" not in result.output
    err = " ".join(result.stderr.split())
    assert "error: objective 'sinkhorn' is registered by 2 plugins" in err
    assert "distribution xalign 0.1.0, xalign_sinkhorn.Sinkhorn" in err
    assert "distribution xalign-impostor 2.0, xalign_impostor.Obj0" in err
    assert get_registry().objective("l2").source.distribution == "xalign"
    rows = {(i["name"], i["kind"]): i for i in plugins_json()}
    assert rows[("sinkhorn", "objective")]["status"] == "conflict"
    assert "l2" in {name for name, kind in rows if kind == "objective"}


def test_two_third_party_plugins_claiming_one_objective(site):
    install_fake_distribution(
        site,
        "xalign-first",
        "1.0",
        "first",
        "xalign_first",
        source=objective_source("shared_ot", "first_only"),
    )
    install_fake_distribution(
        site,
        "xalign-second",
        "3.1",
        "second",
        "xalign_second",
        source=objective_source("shared_ot"),
    )
    with pytest.warns(PluginWarning, match="objective 'shared_ot' is registered by 2 plugins"):
        registry = get_registry()
        objectives = registry.objectives()
    assert "shared_ot" not in objectives and "first_only" in objectives
    with pytest.raises(PluginError) as info:
        registry.objective("shared_ot")
    assert "plugin 'first' (distribution xalign-first 1.0" in str(info.value)
    assert "plugin 'second' (distribution xalign-second 3.1" in str(info.value)


def test_two_plugins_claiming_one_task_name(site, tiny_model, tracking_uri):
    install_fake_distribution(
        site, "xalign-task-a", "1.0", "task_a", "xalign_task_a", source=task_source("mytask")
    )
    install_fake_distribution(
        site, "xalign-task-b", "2.0", "task_b", "xalign_task_b", source=task_source("mytask")
    )
    with pytest.raises(PluginError, match="task 'mytask' is registered by 2 plugins") as info:
        get_registry().task("mytask")
    assert "xalign-task-a 1.0" in str(info.value) and "xalign-task-b 2.0" in str(info.value)
    for args in (
        ["eval", str(tiny_model), "--task", "mytask", "--tracking-uri", tracking_uri],
        ["compare", "sinkhorn", "--tasks", "mytask", "--tracking-uri", tracking_uri],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 1, result.output
        err = " ".join(result.stderr.split())
        assert "task 'mytask' is registered by 2 plugins" in err, err
        assert "xalign-task-a 1.0" in err and "xalign-task-b 2.0" in err
    assert get_registry().task("align").source.distribution == "xalign"


def test_broken_plugins_are_listed_and_the_rest_works(site):
    install_fake_distribution(
        site,
        "xalign-broken",
        "9.9",
        "broken",
        "xalign_broken",
        source="import does_not_exist_anywhere\n",
    )
    install_fake_distribution(
        site,
        "xalign-raiser",
        "0.2",
        "raiser",
        "xalign_raiser",
        source=(
            "import xalign\n"
            "@xalign.hookimpl\n"
            "def register_objectives(register):\n"
            "    raise RuntimeError('no licence file')\n"
        ),
    )
    rows = {(i["name"], i["kind"]): i for i in plugins_json()}
    assert rows[("sinkhorn", "objective")]["status"] == "ok"
    broken, raiser = rows[("broken", "plugin")], rows[("raiser", "plugin")]
    assert (broken["status"], broken["distribution"], broken["version"]) == (
        "error",
        "xalign-broken",
        "9.9",
    )
    assert "ModuleNotFoundError: No module named 'does_not_exist_anywhere'" in broken["error"]
    assert raiser["status"] == "error" and raiser["distribution"] == "xalign-raiser"
    assert "failed in register_objectives: RuntimeError: no licence file" in raiser["error"]
    table = runner.invoke(app, ["plugins"])
    assert table.exit_code == 0
    flat = " ".join(table.stdout.split())
    assert "xalign-broken" in flat and "xalign-raiser" in flat and "sinkhorn" in flat
    assert "2 plugin problem(s)" in table.stderr
    result = runner.invoke(app, ["run", "-o", "no_such_objective"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    err = " ".join(result.stderr.split())
    assert "unknown objective 'no_such_objective'; available: " in err
    assert "plugin 'broken' from distribution xalign-broken 9.9 failed to import" in err
    assert "xalign-raiser" in err and "XALIGN_LOAD_PLUGINS" in err


@pytest.mark.parametrize(
    "env, typo, loaded",
    [
        ("sinkorn,l2", "sinkorn", {"l2"}),
        ("sinkhorn,contrastiv", "contrastiv", {"sinkhorn"}),
        ("nobody:sinkhorn", "nobody:sinkhorn", set()),
    ],
)
def test_mistyped_load_plugins_warns_with_the_available_names(monkeypatch, env, typo, loaded):
    monkeypatch.setenv("XALIGN_LOAD_PLUGINS", env)
    with pytest.warns(
        PluginWarning, match=f"XALIGN_LOAD_PLUGINS names '{typo}', which no installed plugin has"
    ) as caught:
        registry = get_registry()
    assert re.search(r"available plugins: .*\bcontrastive\b.*\bsinkhorn\b", str(caught[0].message))
    assert set(registry.objectives()) == loaded
    with pytest.raises(PluginError, match=f"unknown objective 'mixed_ot'.*'{typo}'"):
        registry.objective("mixed_ot")
    missing = [i for i in plugins_json() if i["status"] == "missing"]
    assert [i["name"] for i in missing] == [typo]
    for name in loaded:  # one objective's options: the mistyped name is still named
        shown = CliRunner().invoke(app, ["plugins", name])
        assert shown.exit_code == 0, shown.output
        assert f"XALIGN_LOAD_PLUGINS names '{typo}'" in " ".join(shown.stderr.split())


def test_subprocess_cli_lists_broken_plugins_and_warns(site):
    install_fake_distribution(
        site,
        "xalign-broken",
        "9.9",
        "broken",
        "xalign_broken",
        source="raise ImportError('needs libfoo')\n",
    )
    env = cli_env(site)
    out = subprocess.run(
        [str(VENV_XALIGN), "plugins", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    items = {(i["name"], i["kind"]): i for i in json.loads(out.stdout)}
    assert items[("broken", "plugin")]["error"].endswith("ImportError: needs libfoo")
    assert items[("sinkhorn", "objective")]["status"] == "ok"
    out = subprocess.run(
        [str(VENV_XALIGN), "run", "-o", "nope"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 1 and "Traceback" not in out.stderr + out.stdout
    err = " ".join(out.stderr.split())
    assert "warning: PluginWarning: plugin 'broken' from distribution xalign-broken 9.9" in err
    assert "error: unknown objective 'nope'" in err and "XALIGN_LOAD_PLUGINS" in err
    out = subprocess.run(
        [str(VENV_XALIGN), "plugins"],
        capture_output=True,
        text=True,
        env=cli_env(site, XALIGN_LOAD_PLUGINS="sinkhron"),
        timeout=300,
    )
    assert out.returncode == 0
    assert "missing" in out.stdout and "'sinkhron'" in " ".join(out.stdout.split())


@pytest.mark.parametrize("reg_weight", ["1.0", "0"])
@pytest.mark.parametrize(
    "loss",
    [
        "return batch.src.hidden.sum().detach()",
        "return torch.tensor(float(batch.src.hidden.mean().item()))",
    ],
)
def test_objective_without_gradient_is_a_plugin_error(site, smoke_overrides, reg_weight, loss):
    """Before: rc 0 training nothing (reg_weight > 0) or an autograd traceback (0)."""
    install_fake_distribution(
        site,
        "xalign-nograd",
        "1.0",
        "nograd",
        "xalign_nograd",
        source=objective_source("nograd", loss=loss),
    )
    sets = sum((["--set", o] for o in [*smoke_overrides, f"train.reg_weight={reg_weight}"]), [])
    result = runner.invoke(app, ["run", "-q", "-o", "nograd", *sets])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    err = " ".join(result.stderr.split())
    assert "objective 'nograd' (plugin 'nograd', distribution xalign-nograd 1.0)" in err
    assert "returned a tensor without a gradient (requires_grad=False, grad_fn=None)" in err


def test_plugins_name_lists_the_options_with_their_keys_and_defaults():
    """`xalign plugins NAME`: every option of the plugin's Config with the key a user types
    (objectives: --set objectives.NAME.KEY, tasks: --option NAME.KEY) and its default."""
    import dataclasses
    import json

    from xalign.plugins import get_registry

    registry = get_registry()
    for name, kind, prefix in (("sinkhorn", "objective", "objectives.sinkhorn."),
                               ("tatoeba", "task", "tatoeba.")):  # fmt: skip
        cls = (registry.objective if kind == "objective" else registry.task)(name).cls
        result = runner.invoke(app, ["plugins", name], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        for f in dataclasses.fields(cls.Config):
            row = next(ln for ln in result.stdout.splitlines() if f" {prefix}{f.name} " in ln)
            assert json.dumps(getattr(cls.Config(), f.name)) in row, row
        data = json.loads(runner.invoke(app, ["plugins", name, "--json"]).stdout)
        assert [d["kind"] for d in data] == [kind] and data[0]["options"] == cls.options()
    assert "objectives.sinkhorn.weight" in runner.invoke(app, ["plugins", "sinkhorn"]).stdout
    missing = runner.invoke(app, ["plugins", "sinkhorm"])
    assert missing.exit_code == 1 and "no objective, task or plugin 'sinkhorm'" in missing.output
    assert "sinkhorn" in missing.output  # the installed names are listed


def test_plugins_name_accepts_the_plugin_entry_point_name(site):
    """``xalign plugins ENTRY`` shows what that plugin registered (its names differ)."""
    install_fake_distribution(
        site, "xalign-linmap", "0.1", "linmap", "xalign_linmap", source=task_source("flores-x")
    )
    result = runner.invoke(app, ["plugins", "linmap", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [(d["name"], d["kind"], d["plugin"]) for d in data] == [("flores-x", "task", "linmap")]
    missing = runner.invoke(app, ["plugins", "linmapp"])
    assert missing.exit_code == 1  # as every error the CLI reports
    assert "plugins: linmap" in missing.stderr and "did you mean 'linmap'?" in missing.stderr


@pytest.mark.parametrize("name", ["l2", "contrastive", "mixed_ot", "sinkhorn"])
def test_builtin_objectives_give_every_option_help_text(name):
    import dataclasses

    from xalign.cli.plugins import option_help

    cls = get_registry().objective(name).cls
    helps = option_help("objective", name)
    missing = [f.name for f in dataclasses.fields(cls.Config) if not helps.get(f.name)]
    assert not missing, f"{name}: options without help text: {missing}"


def test_plugins_name_shows_a_tasks_declared_metrics():
    data = json.loads(runner.invoke(app, ["plugins", "align", "--json"]).stdout)
    [task] = data
    assert task["uses_seed"] is False
    aer = task["metrics"][0]
    assert aer == {
        "name": "aer",
        "higher_is_better": False,
        "aggregation": "ratio",
        "offset": 1.0,
        "scale": -1.0,
    }
    text = runner.invoke(app, ["plugins", "xnli-probe"], env={"COLUMNS": "200"}).stdout
    assert "metric accuracy: higher is better; mean (0 + 100·mean of per_example)" in text
    assert "uses_seed: false" in text


BAD_DEFAULTS = [
    # (hook, base class, the Config field, the error's tail)
    ("objectives", "Objective", "n: int = 'three'", "n: expected an integer, got 'three'"),
    ("tasks", "Task", "rate: float = 'fast'", "rate: expected a number, got 'fast'"),
    (
        "tasks",
        "Task",
        "langs: list[str] = dataclasses.field(default_factory=lambda: [1])",
        "langs[0]: expected a string, got 1",
    ),
]


@pytest.mark.parametrize("hook, base, field_line, error", BAD_DEFAULTS)
def test_a_wrongly_typed_config_default_is_refused_naming_plugin_and_key(
    site, hook, base, field_line, error
):
    """Defaults are checked like user-given values: the plugin is listed with the error
    (naming the plugin, its class and the key) and its registrations are skipped."""
    install_fake_distribution(
        site,
        "xalign-typo",
        "1.0",
        "typo",
        "xalign_typo",
        source=(
            "import dataclasses\n"
            "import xalign\n"
            "@dataclasses.dataclass\n"
            "class Cfg:\n"
            f"    {field_line}\n"
            f"class Typo(xalign.{base}):\n"
            "    name = 'typo'\n"
            "    Config = Cfg\n"
            "    metrics = (xalign.Metric('a', higher_is_better=True),)\n"
            "@xalign.hookimpl\n"
            f"def register_{hook}(register):\n"
            "    register(Typo)\n"
        ),
    )
    with pytest.warns(PluginWarning, match="default of option"):
        registered = {**get_registry().objectives(), **get_registry().tasks()}
    assert "typo" not in registered and "sinkhorn" in registered
    [problem] = get_registry().problems
    assert problem.name == "typo" and problem.status == "error"
    kind = hook[:-1]
    assert f"plugin 'typo' (distribution xalign-typo 1.0): {kind} 'typo' (Typo.Config)" in (
        problem.error
    )
    assert f"the default of option {error}" in problem.error
