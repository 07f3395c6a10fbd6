"""Plugin discovery, listing, restriction, documentation and failure reporting."""

from __future__ import annotations

import inspect
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from xalign import hookspecs
from xalign.cli import app
from xalign.plugins import PluginError, get_registry, reset_registry

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "docs" / "plugin-template"
runner = CliRunner()




def install_fake_distribution(site: Path, dist: str, version: str, entry: str, module: str,
                              source: str | None = None, source_dir: Path | None = None) -> None:
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
    return site


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
    assert names == {"sinkhorn": "objective", "l2": "objective", "contrastive": "objective",
                     "mixed_ot": "objective", "xnli": "task", "xnli-mini": "task",
                     "xquad": "task", "qa-mini": "task", "align": "task", "tatoeba": "task"}


def test_env_var_restricts_loading(monkeypatch):
    monkeypatch.setenv("XALIGN_LOAD_PLUGINS", "")
    assert plugins_json() == []
    reset_registry()
    monkeypatch.setenv("XALIGN_LOAD_PLUGINS", "sinkhorn")
    assert [i["name"] for i in plugins_json()] == ["sinkhorn"]


def test_template_plugin_installs_lists_and_trains(site, smoke_overrides, monkeypatch):
    """The documented template, installed as a third-party distribution, works end to end."""
    install_fake_distribution(site, "xalign-example", "0.1.0", "example", "xalign_example",
                              source_dir=TEMPLATE / "xalign_example")
    items = {i["name"]: i for i in plugins_json()}
    assert items["mean_cosine"]["distribution"] == "xalign-example"
    assert items["mean_cosine"]["version"] == "0.1.0"
    assert items["mean_cosine"]["module"] == "xalign_example"
    sets = sum((["--set", o] for o in smoke_overrides), [])
    result = runner.invoke(app, ["run", "-q", "--json", "-o", "mean_cosine", *sets])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout.strip().splitlines()[-1])["metrics"]
    assert 0 <= metrics["de-en/mean_cosine"] <= 2


def test_template_pyproject_declares_the_entry_point():
    text = (TEMPLATE / "pyproject.toml").read_text()
    assert '[project.entry-points.xalign]' in text and 'example = "xalign_example"' in text


def test_import_error_names_the_distribution(site):
    install_fake_distribution(site, "xalign-broken", "9.9", "broken", "xalign_broken",
                              source="import does_not_exist_anywhere\n")
    with pytest.raises(PluginError, match=r"plugin 'broken' from distribution xalign-broken 9.9"):
        get_registry()
    result = runner.invoke(app, ["plugins"])
    assert result.exit_code == 1 and "xalign-broken" in result.output


def test_exception_in_loss_names_the_distribution(site, smoke_overrides):
    install_fake_distribution(site, "xalign-raises", "1.2", "raises", "xalign_raises", source=(
        "import xalign\n"
        "class Boom(xalign.Objective):\n"
        "    name = 'boom'\n"
        "    def loss(self, batch):\n"
        "        raise ZeroDivisionError('kaboom')\n"
        "@xalign.hookimpl\n"
        "def register_objectives(register):\n"
        "    register(Boom)\n"))
    sets = sum((["--set", o] for o in smoke_overrides), [])
    result = runner.invoke(app, ["run", "-q", "-o", "boom", *sets])
    assert result.exit_code == 1
    assert "objective 'boom' (plugin 'raises', distribution xalign-raises 1.2)" in result.output
    assert "ZeroDivisionError: kaboom" in result.output


def test_registering_a_non_objective_is_rejected(site):
    install_fake_distribution(site, "xalign-wrong", "1.0", "wrong", "xalign_wrong", source=(
        "import xalign\n"
        "@xalign.hookimpl\n"
        "def register_objectives(register):\n"
        "    register(dict)\n"))
    with pytest.raises(PluginError, match="not a subclass of xalign.Objective"):
        get_registry().objectives()


def test_duplicate_names_are_rejected(site):
    install_fake_distribution(site, "xalign-dup", "1.0", "dup", "xalign_dup", source=(
        "import xalign\n"
        "class S(xalign.Objective):\n"
        "    name = 'sinkhorn'\n"
        "@xalign.hookimpl\n"
        "def register_objectives(register):\n"
        "    register(S)\n"))
    with pytest.raises(PluginError, match="registered twice"):
        get_registry().objectives()


def test_every_hookspec_is_documented():
    """datasette style: a hook without a section in docs/plugins.md fails the suite."""
    docs = (ROOT / "docs" / "plugins.md").read_text()
    specs = [n for n, f in inspect.getmembers(hookspecs, inspect.isfunction)
             if hasattr(f, "xalign_spec")]
    assert {"register_objectives", "register_tasks"} <= set(specs)
    for name in specs:
        sig = f"{name}({', '.join(inspect.signature(getattr(hookspecs, name)).parameters)})"
        assert re.search(rf"^### `{re.escape(sig)}`$", docs, re.M), f"{sig} undocumented"
        assert getattr(hookspecs, name).__doc__.strip()


def test_plugins_are_independent_packages_using_public_api():
    """Built-in plugins import xalign's public API only (as a third party would)."""
    allowed = {"xalign", "xalign.alignment", "xalign.evaluation", "xalign.encoders",
               "xalign.finetune"}
    for pkg in (ROOT / "plugins").iterdir():
        for py in pkg.rglob("*.py"):
            for mod in re.findall(r"^\s*(?:from|import)\s+(xalign[\w.]*)", py.read_text(), re.M):
                assert mod in allowed or mod.startswith(pkg.name), f"{py}: imports {mod}"


def test_subprocess_cli_sees_an_installed_plugin(site):
    install_fake_distribution(site, "xalign-example", "0.1.0", "example", "xalign_example",
                              source_dir=TEMPLATE / "xalign_example")
    env = {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    out = subprocess.run([sys.executable, "-m", "xalign.cli", "plugins", "--json"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "mean_cosine" in {i["name"] for i in json.loads(out.stdout)}
