"""The docs describe what exists (datasette style): hooks with their signatures, CLI commands,
config keys and options, links between pages, and README command blocks that parse."""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS, ROOT / "benchmarks" / "README.md"]


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _code_blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def test_readme_is_short() -> None:
    n = len(_text(README).splitlines())
    assert n <= 250, f"README.md has {n} lines; move detail into docs/ (limit 250)"


def test_every_hook_is_documented_with_its_signature() -> None:
    from xalign import hookspecs

    hooks = [
        (name, fn)
        for name, fn in vars(hookspecs).items()
        if callable(fn) and name.startswith("register_")
    ]
    assert hooks, "no hook specifications found"
    plugins_doc = _text(ROOT / "docs" / "plugins.md")
    for name, fn in hooks:
        params = ", ".join(inspect.signature(fn).parameters)
        heading = f"### `{name}({params})`"
        assert heading in plugins_doc, f"hook {name} is not documented as {heading!r}"


def test_hook_docstrings_name_the_base_class_signatures() -> None:
    """The hook docstrings quote the methods a registered class implements; they must match."""
    from xalign import Task, hookspecs

    names = list(inspect.signature(Task.run).parameters)  # self, model, context
    doc = hookspecs.register_tasks.__doc__ or ""
    shown = re.search(r"``run\(([^)]*)\)", doc)
    assert shown, "register_tasks' docstring does not show run(...)"
    params = [p.split(":")[0].strip() for p in shown.group(1).split(",")]
    assert params == names, f"docstring shows run({shown.group(1)}); Task.run has {names}"


def _cli_commands() -> set[str]:
    import typer

    from xalign.cli import app

    group = typer.main.get_command(app)
    return set(group.commands)  # type: ignore[attr-defined]


def test_every_cli_command_the_docs_mention_exists() -> None:
    commands = _cli_commands()
    mentioned: dict[str, set[str]] = {}
    for page in PAGES:
        for block in _code_blocks(_text(page), "bash"):
            for m in re.finditer(r"(?:^|[\s/])xalign (\w[\w-]*)", block, flags=re.M):
                mentioned.setdefault(m.group(1), set()).add(page.name)
    assert mentioned, "no `xalign COMMAND` found in the docs' command blocks"
    missing = {c: sorted(p) for c, p in mentioned.items() if c not in commands}
    assert not missing, f"docs mention CLI commands that do not exist: {missing}"


def _config_fields() -> dict[str, set[str]]:
    from xalign.config import RunConfig

    out: dict[str, set[str]] = {}
    for f in dataclasses.fields(RunConfig):
        tp = f.default_factory() if f.default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(tp):
            out[f.name] = {g.name for g in dataclasses.fields(tp)}
    return out


def _plugin_options() -> dict[str, set[str]]:
    from xalign.plugins import get_registry

    reg = get_registry()
    out: dict[str, set[str]] = {}
    for registered in [*reg.objectives().values(), *reg.tasks().values()]:
        name, cfg = registered.name, getattr(registered.cls, "Config", None)
        if True:
            if dataclasses.is_dataclass(cfg):
                out[name] = {f.name for f in dataclasses.fields(cfg)} | {"weight"}
    return out


EXAMPLE_PLUGINS = {"example", "mean_cosine", "TASK", "NAME"}


def test_every_config_key_the_docs_set_exists() -> None:
    sections = _config_fields()
    options = _plugin_options()
    bad: list[str] = []
    pattern = r"--(?:set|option) '?([A-Za-z_][\w-]*)\.([\w.]+?)(?==|\b)"
    for page in PAGES:
        for m in re.finditer(pattern, _text(page)):
            head, rest = m.group(1), m.group(2)
            if head == "section" or head in EXAMPLE_PLUGINS:
                continue
            if head == "objectives":
                plugin, _, key = rest.partition(".")
                if plugin in EXAMPLE_PLUGINS or not key:
                    continue
                if plugin not in options or key.split(".")[0] not in options[plugin]:
                    bad.append(f"{page.name}: objectives.{rest}")
            elif head in sections:
                if rest.split(".")[0] not in sections[head]:
                    bad.append(f"{page.name}: {head}.{rest}")
            elif head in options:
                if rest.split(".")[0] not in options[head]:
                    bad.append(f"{page.name}: {head}.{rest}")
            else:
                bad.append(f"{page.name}: {head}.{rest} (no such section or plugin)")
    assert not bad, "docs set keys that do not exist:\n" + "\n".join(sorted(set(bad)))


def test_links_between_pages_resolve() -> None:
    bad = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", _text(page)):
            if "://" in target:
                continue
            if not (page.parent / target).exists():
                bad.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not bad, f"broken links: {bad}"


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_readme_command_blocks_parse() -> None:
    blocks = _code_blocks(_text(README), "bash")
    assert len(blocks) >= 2, "README.md must show its two quick-start commands"
    for block in blocks:
        proc = subprocess.run(["bash", "-n"], input=block, text=True, capture_output=True)
        assert proc.returncode == 0, f"README command block does not parse:\n{block}\n{proc.stderr}"


def test_quick_start_is_the_ci_command() -> None:
    """The README's test command is what CI runs."""
    blocks = _code_blocks(_text(README), "bash")
    ci = _text(ROOT / ".ci" / "run")
    assert blocks[1].strip() in ci, "README's second command block differs from .ci/run"


def _type_name(tp: object) -> str:
    import typing

    text = str(tp) if typing.get_args(tp) else getattr(tp, "__name__", str(tp))
    text = re.sub(r"\b[a-z_]+(\.[a-z_]+)*\.([A-Z])", r"\2", text.replace("typing.", ""))
    return text.replace(" | NoneType", " or null").replace(" | None", " or null")


def config_key_rows(cls: type | None = None, prefix: str = "") -> list[tuple[str, str, str]]:
    """``(section.key, type, default)`` of every run-config key, from xalign/config.py's
    dataclasses (nested dataclasses, also optional ones such as ``model.lora``, expanded)."""
    import typing

    from xalign.config import RunConfig

    cls = cls or RunConfig
    hints = typing.get_type_hints(cls)
    rows: list[tuple[str, str, str]] = []
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        if f.default is not dataclasses.MISSING:
            default = f.default
        else:
            default = f.default_factory()  # type: ignore[misc]
        nested = [
            a
            for a in (hints[f.name], *typing.get_args(hints[f.name]))
            if dataclasses.is_dataclass(a)
        ]
        if nested and key != "objectives":
            shown = "null" if default is None else "section"
            rows.append((key, _type_name(hints[f.name]), shown))
            rows += config_key_rows(nested[0], f"{key}.")
            continue
        shown = json.dumps(default) if not isinstance(default, str) else default
        rows.append((key, _type_name(hints[f.name]), shown))
    return rows


def config_key_table() -> str:
    """The "Every key" table of docs/configuration.md without its meaning column."""
    return "\n".join(
        f"| `{key}` | `{tp}` | `{default}` |" for key, tp, default in config_key_rows()
    )


def test_configuration_md_lists_every_run_config_key() -> None:
    text = _text(ROOT / "docs" / "configuration.md")
    section = text.split("## Every key", 1)[-1]
    rows = config_key_rows()
    assert len(rows) > 40
    missing = [
        f"| `{key}` | `{tp}` | `{default}` |"
        for key, tp, default in rows
        if f"| `{key}` | `{tp}` | `{default}` |" not in section
    ]
    assert not missing, (
        "docs/configuration.md 'Every key' lacks (or has stale) rows:\n" + "\n".join(missing)
    )


def test_plugin_template_is_ruff_clean_when_copied_out_of_the_tree(tmp_path) -> None:
    """A copied template lints with its own pyproject (xalign third-party, itself first)."""
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed")
    copy = tmp_path / "my-plugin"
    shutil.copytree(ROOT / "docs" / "plugin-template", copy)
    for args in (["check", "--no-cache", "."], ["format", "--check", "--no-cache", "."]):
        done = subprocess.run([ruff, *args], cwd=copy, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr


def test_plugins_doc_lists_every_link_symmetrization_and_the_zero_loss_and_task_kind() -> None:
    """The LinkSpec section names each symmetrization the code accepts, how an objective
    returns a zero loss with a gradient, and the task section documents Task.kind."""
    from xalign.compare.correlation import KINDS
    from xalign.links import SYMMETRIZATIONS

    docs = (ROOT / "docs" / "plugins.md").read_text()
    missing = [m for m in SYMMETRIZATIONS if f"`{m}`" not in docs]
    assert not missing, missing
    assert "x.sum() * 0.0" in docs
    tasks = docs.split("### `register_tasks(register)`")[1].split("\n## ")[0]
    assert "- `kind` (class attribute" in tasks
    assert all(f'`"{kind}"`' in tasks for kind in KINDS)
    import dataclasses

    import xalign

    for field in dataclasses.fields(xalign.TaskContext):  # every field, show_progress included
        assert f"  - `{field.name}`:" in tasks, field.name
