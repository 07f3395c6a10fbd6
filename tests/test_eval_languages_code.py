"""``--languages`` for eval/compare (checked against the task's languages option) and
evaluation reuse keyed by the source of an editable / unversioned task plugin (fresh19
findings 15 and 17)."""

from __future__ import annotations

import importlib
import json
import sys
import textwrap
from pathlib import Path

import pytest
from test_evaluate import CosineTask, fake_plugins, fresh_store  # noqa: F401
from typer.testing import CliRunner

from xalign.cli import app
from xalign.evaluation import runs
from xalign.plugins import get_registry

TASK_SOURCE = textwrap.dedent(
    """
    from dataclasses import dataclass, field

    import xalign
    from xalign_langs.base import LangBase

    VALUE = 1.0


    @dataclass
    class LangConfig:
        languages: list[str] = field(default_factory=lambda: ["de", "fr"])


    class LangTask(LangBase):
        name = "langs"
        Config = LangConfig
        uses_seed = False
        metrics = (xalign.Metric("score", higher_is_better=True),)

        def run(self, model, context):
            langs = context.languages or self.config.languages
            scores = {lang: {"score": VALUE} for lang in langs}
            return xalign.TaskResult(self.name, "score", scores, {lang: [VALUE] for lang in langs})


    @xalign.hookimpl
    def register_tasks(register):
        register(LangTask)
    """
)
BASE_SOURCE = "import xalign\n\n\nclass LangBase(xalign.Task):\n    pass\n"


@pytest.fixture
def lang_plugin(fake_plugins, tmp_path, monkeypatch):  # noqa: F811
    """A task plugin package ``xalign_langs`` importable from tmp_path (not a distribution)."""
    monkeypatch.setenv("XALIGN_CACHE_DIR", str(tmp_path / "cache"))
    pkg = tmp_path / "site" / "xalign_langs"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(TASK_SOURCE)
    (pkg / "base.py").write_text(BASE_SOURCE)
    (pkg / "notes.txt").write_text("not code")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    module = importlib.import_module("xalign_langs")
    get_registry().add(module, name="langs", distribution="local", version="0")
    yield pkg
    for name in [n for n in sys.modules if n.startswith("xalign_langs")]:
        del sys.modules[name]


def eval_json(*args: str) -> dict:
    result = CliRunner().invoke(app, ["eval", *args, "--json"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return json.loads(result.stdout)


def test_task_code_hashes_the_package_and_base_classes(lang_plugin: Path) -> None:
    cls = sys.modules["xalign_langs"].LangTask
    first = runs.task_code(cls)
    assert first is not None and first == runs.task_code(cls)
    (lang_plugin / "notes.txt").write_text("still not code, longer")  # not a .py file
    assert runs.task_code(cls) == first
    (lang_plugin / "base.py").write_text(BASE_SOURCE + "# edited\n")
    second = runs.task_code(cls)
    assert second != first
    (lang_plugin / "__init__.py").write_text(TASK_SOURCE.replace("1.0", "2.0"))
    assert runs.task_code(cls) not in (first, second)


def test_released_installs_are_keyed_by_version_only(monkeypatch, lang_plugin: Path) -> None:
    import xalign_xnli

    assert runs._released(xalign_xnli.__file__) is False  # this checkout: pip install -e .
    assert runs._released(pytest.__file__) is True  # a wheel from PyPI, in site-packages
    assert runs._released(lang_plugin / "__init__.py") is False  # a module on sys.path
    assert runs.task_code(xalign_xnli.Xnli) is not None  # the built-ins of a checkout
    monkeypatch.setattr(runs, "_released", lambda path: True)
    assert runs.task_code(sys.modules["xalign_langs"].LangTask) is None


def test_editing_an_unversioned_task_re_evaluates(tiny_model, tmp_path, lang_plugin) -> None:
    args = (str(tiny_model), "-t", "langs", "--tracking-uri", fresh_store(tmp_path))
    first = eval_json(*args)["runs"][0]
    again = eval_json(*args)["runs"][0]
    assert (first["reused"], again["reused"]) == (False, True)
    assert again["eval_key"] == first["eval_key"]
    # the version is unchanged ("local 0"); only the source differs
    (lang_plugin / "__init__.py").write_text(TASK_SOURCE.replace("VALUE = 1.0", "VALUE = 0.25"))
    edited = eval_json(*args)["runs"][0]
    assert not edited["reused"] and edited["eval_key"] != first["eval_key"]
    assert eval_json(*args)["runs"][0]["reused"]


def test_eval_languages_restrict_and_are_checked(tiny_model, tmp_path, lang_plugin) -> None:
    uri = fresh_store(tmp_path)
    every = eval_json(str(tiny_model), "-t", "langs", "--tracking-uri", uri)["runs"][0]
    assert list(every["scores"]) == ["de", "fr"]
    only_fr = eval_json(str(tiny_model), "-t", "langs", "--languages", "fr", "--tracking-uri", uri)
    run = only_fr["runs"][0]
    assert list(run["scores"]) == ["fr"] and not run["reused"]  # another key
    both = eval_json(
        str(tiny_model), "-t", "langs", "-l", "fr,de", "-l", "fr", "--tracking-uri", uri
    )
    assert list(both["runs"][0]["scores"]) == ["fr", "de"]  # order given, de-duplicated
    bad = CliRunner().invoke(
        app, ["eval", str(tiny_model), "-t", "langs", "--languages", "de,xx", "--tracking-uri", uri]
    )
    assert bad.exit_code == 1 and "Traceback" not in bad.output
    for part in ("--languages xx", "task 'langs' (plugin 'langs', distribution local 0)",
                 "evaluates de, fr", "--option langs.languages=[de,fr,xx]"):  # fmt: skip
        assert part in bad.output.replace("\n", " "), bad.output


def test_check_languages_without_a_languages_option() -> None:
    class Entry:
        def where(self) -> str:
            return "task 'x'"

    class NoLanguages:
        name, config = "x", object()

    assert runs.check_languages(NoLanguages(), Entry(), None) is None
    assert runs.check_languages(NoLanguages(), Entry(), ["deen", " de ", "de"]) == ["deen", "de"]


def test_compare_re_evaluate_and_languages(tiny_model, tmp_path) -> None:
    """--re-evaluate reuses training runs and evaluates again; --languages reaches the tasks
    (and their keys)."""
    from test_compare import write_config

    uri = fresh_store(tmp_path)
    cfg = write_config(tmp_path / "cfg.yaml", tiny_model, uri, tmp_path / "out", limit=8)
    args = ["compare", "sinkhorn", "--config", str(cfg), "--set", "train.batch_size=8"]
    args += ["--tasks", "fake", "--json"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output + repr(first.exception)
    assert CosineTask.calls == 2
    again = CliRunner().invoke(app, [*args, "--re-evaluate"])
    assert again.exit_code == 0, again.output + repr(again.exception)
    out = json.loads(again.stdout)
    assert all(r["reused"] for r in out["runs"]["train"])
    assert not any(r["reused"] for r in out["runs"]["eval"]) and CosineTask.calls == 4
    assert "reusing training run" in again.stderr and "reusing evaluation" not in again.stderr
    narrowed = CliRunner().invoke(app, [*args, "--languages", "de"])
    assert narrowed.exit_code == 0, narrowed.output + repr(narrowed.exception)
    keys = {r["eval_key"] for r in json.loads(narrowed.stdout)["runs"]["eval"]}
    assert keys.isdisjoint({r["eval_key"] for r in out["runs"]["eval"]})
    assert CosineTask.calls == 6
