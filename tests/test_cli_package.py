"""The CLI package: one registry of subcommands, one error wrapper, ``xalign align``'s options
built from ExtractConfig, "did you mean", path-like models that do not exist, help text of
plugin options, the finished-run summary and plain progress lines."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from xalign.alignment.extract import ExtractConfig
from xalign.cli import COMMANDS, app
from xalign.cli.common import check_model_ref, field_help, looks_like_path
from xalign.cli.run import resume_step, summary_lines
from xalign.errors import ConfigError
from xalign.progress import PlainProgress, progress_bar
from xalign.recipe import RunResult

runner = CliRunner()
CLI = Path(__file__).resolve().parents[1] / "xalign" / "cli"


def test_every_command_is_registered_once_in_commands():
    registered = [c.name for c in app.registered_commands]
    assert registered == [name for name, _, _ in COMMANDS]
    assert len(set(registered)) == len(registered)
    for path in CLI.glob("*.py"):  # one error wrapper: xalign.cli.common.user_errors
        if path.name != "common.py":
            assert "except XalignError" not in path.read_text(), path


def test_align_options_are_extract_config_fields():
    command = next(c for c in app.registered_commands if c.name == "align").callback
    import inspect

    params = inspect.signature(command).parameters
    for f in dataclasses.fields(ExtractConfig):
        assert f.name in params, f.name
        assert params[f.name].default.default == getattr(ExtractConfig(), f.name)
    result = runner.invoke(app, ["align", "--help"], env={"COLUMNS": "200"})
    assert "--sinkhorn-iters" in result.output and "--no-normalize" in result.output


def test_align_flags_stay_flags():
    """--json, --no-plot, --no-normalize take no value (their bool type is kept)."""
    result = runner.invoke(
        app, ["align", "a", "b", "--json", "--no-plot", "--no-normalize", "-m", "./nope"]
    )
    assert result.exit_code == 1 and "./nope: no such folder" in result.stderr, result.output


def test_align_bad_extract_option_names_the_flag():
    result = runner.invoke(app, ["align", "a", "b", "--threshold", "1.5"])
    assert result.exit_code == 1
    assert "--threshold: threshold must be in (0, 1], got 1.5" in result.stderr


@dataclass
class _Documented:
    """Options.

    - ``alpha``: from the docstring,
      over two lines.
    - ``beta`` (``ot``): ignored, the metadata wins.
    """

    alpha: float = 1.0
    beta: int = field(default=2, metadata={"help": "from ``metadata``"})
    gamma: str = "x"


def test_field_help_prefers_metadata_then_docstring_bullets():
    assert field_help(_Documented) == {
        "alpha": "from the docstring, over two lines.",
        "beta": "from metadata",
        "gamma": "",
    }


@pytest.mark.parametrize(
    "ref, pathlike",
    [
        ("./nope", True),
        ("/abs/nope", True),
        ("~/nope", True),
        ("a/b/c", True),
        ("outputs/nope", True),  # outputs/ exists in the working directory
        ("intfloat/multilingual-e5-small", False),  # a hub id
        ("bert-base-cased", False),
    ],
)
def test_looks_like_path(ref, pathlike, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs").mkdir()
    assert looks_like_path(ref) is pathlike


@pytest.mark.parametrize("ref", ["base", "packaged:multilingual-e5-small", "0" * 32, "org/name"])
def test_check_model_ref_passes_non_paths(ref):
    check_model_ref(ref)


def test_check_model_ref_names_the_folder(tmp_path):
    with pytest.raises(ConfigError, match=r"--model .*/nope/model: no such folder"):
        check_model_ref(str(tmp_path / "nope" / "model"))
    check_model_ref(str(tmp_path))  # exists: fine


def _runs(uri: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    ids = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(ids) if ids else []


@pytest.mark.parametrize(
    "args",
    [
        ["eval", "./outputs/nope", "--task", "align"],
        ["align", "Haus", "house", "--model", "./outputs/nope"],
        ["run", "-o", "sinkhorn", "--set", "model.name=./outputs/nope"],
        ["compare", "sinkhorn", "--task", "align", "--set", "model.name=./outputs/nope"],
    ],
)
def test_missing_local_model_fails_at_once_without_a_run(args, tracking_uri, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = ["--tracking-uri", tracking_uri] if args[0] != "align" else []
    result = runner.invoke(app, [*args, *uri])
    assert result.exit_code == 1, result.output
    assert "./outputs/nope: no such folder" in result.stderr
    assert "Traceback" not in result.output
    assert _runs(tracking_uri) == []


def test_unknown_names_get_did_you_mean():
    from xalign.plugins import PluginError, get_registry

    with pytest.raises(PluginError, match="did you mean 'sinkhorn'"):
        get_registry().objective("sinkhron")
    with pytest.raises(PluginError, match="did you mean 'align'"):
        get_registry().task("algin")
    result = runner.invoke(app, ["plugins", "tatoeab"])
    assert result.exit_code == 1
    assert "did you mean 'tatoeba'?" in result.stderr
    result = runner.invoke(app, ["run", "-o", "contrastiv", "--set", "data.limit=2"])
    assert "did you mean 'contrastive'?" in result.stderr


def test_plugins_name_shows_option_help():
    result = runner.invoke(app, ["plugins", "align", "--json"])
    assert result.exit_code == 0, result.output
    [item] = json.loads(result.stdout)
    assert item["help"]["threshold"].startswith("relative link threshold")
    result = runner.invoke(app, ["plugins", "sinkhorn", "--json"])
    [item] = json.loads(result.stdout)
    assert set(item["help"]) >= set(item["options"]) | {"weight"}


def test_sync_tracking_with_nothing_to_send_exits_0(tmp_path):
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    result = runner.invoke(app, ["sync-tracking", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert "nothing to send" in result.stderr


def test_summary_lines_name_terms_and_next_commands(tmp_path):
    metrics = {
        "de-en/sinkhorn": 1.5,
        "de-en/total": 1.5,
        "de-en/weight": 24.0,
        "fr-en/sinkhorn": 2.25,
        "fr-en/total": 2.25,
        "fr-en/weight": 24.0,
        "loss": 3.75,
        "lr": 0.0,
        "train_seconds": 12.34,
    }
    result = RunResult("a" * 32, metrics, tmp_path, 12, tmp_path / "model")
    lines = summary_lines(result, "sqlite:///mlflow.db")
    assert lines[0] == f"finished 12 steps in 12.3 s; outputs in {tmp_path}"
    assert "final loss 3.7500 (the sum of each pair's weighted total)" in lines
    assert "  de-en: sinkhorn 1.5000, total 1.5000" in lines
    assert "  fr-en: sinkhorn 2.2500, total 2.2500" in lines
    assert f"  xalign eval --model {'a' * 32} --task align" in lines
    assert lines[-1] == "  mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1"
    # a server: its own UI, the URI's credentials masked (the hint once printed them)
    for uri, shown in [
        ("http://erin:CliPassw0rd5@127.0.0.1:5947", "http://erin:***@127.0.0.1:5947"),
        ("https://u:Hash#Secret42@h:9", "https://u:***@h:9"),
        ("databricks://PROF", "databricks://PROF"),
    ]:
        hint = summary_lines(result, uri)[-1]
        assert hint == f"  open the run in the MLflow UI of {shown}"
    assert summary_lines(result, "postgresql://u:pw@db/x")[-1] == (
        "  mlflow ui --backend-store-uri postgresql://u:***@db/x --host 127.0.0.1"
    )
    no_model = summary_lines(RunResult("r", metrics, tmp_path, 12, None), "u")
    assert (
        "no model saved (train.save_model: false): to evaluate, train again with "
        "--set train.save_model=true" in no_model
    )
    assert not any("xalign eval" in line for line in no_model)


def test_resume_step_reads_the_checkpoint_state(tmp_path):
    from xalign.checkpoint import REQUIRED

    ckpt = tmp_path / "checkpoints" / "step-6"
    ckpt.mkdir(parents=True)
    for name in REQUIRED:  # a complete checkpoint (find_checkpoint refuses an incomplete one)
        (ckpt / name).write_text("x")
    (ckpt / "state.json").write_text(json.dumps({"step": 6}))
    assert resume_step(ckpt) == (ckpt, 6)


def test_plain_progress_line_and_eta(monkeypatch):
    monkeypatch.setattr("sys.stderr.isatty", lambda: False, raising=False)
    assert isinstance(progress_bar(True, "loss"), PlainProgress)
    progress = PlainProgress("loss", every=3600.0)
    task = progress.add_task("align", total=10, completed=2, loss=float("nan"))
    progress.update(task, advance=3, loss=3.14159)
    # 3 steps done here in 6 s -> 2 s a step, 5 left -> 10 s
    assert progress.line(progress.tasks[task], 6.0) == (
        "align: step 5/10 loss 3.1416 elapsed 0:00:06 eta 0:00:10"
    )


def test_plain_progress_prints_every_n_seconds(capsys):
    progress = PlainProgress("loss", every=0.0)
    with progress:
        task = progress.add_task("align", total=4, loss=float("nan"))
        for step in range(4):
            progress.update(task, advance=1, loss=float(step))
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" elapsed")[0] for line in lines] == [
        f"align: step {n}/4 loss {n - 1:.4f}" for n in range(1, 5)
    ]


def test_track_prints_plain_lines_when_stderr_is_not_a_terminal(capsys, monkeypatch):
    from xalign.progress import track

    monkeypatch.setenv("XALIGN_PROGRESS_SECONDS", "0")
    assert list(track([10, 20, 30], "tatoeba")) == [10, 20, 30]
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" elapsed")[0] for line in lines] == [
        f"tatoeba: step {n}/3" for n in (1, 2, 3)
    ]
    assert list(track([1], "x", enabled=False)) == [1] and capsys.readouterr().err == ""


@pytest.mark.parametrize(
    "name, source",
    [
        ("co", "Dou & Neubig 2021"),
        ("translation_ranking", "Feng et al., ACL 2022"),
        ("distill", "Reimers & Gurevych, EMNLP 2020"),
        ("sinkhorn", "Alqahtani et al. 2021"),
    ],
)
def test_plugins_name_shows_description_and_source(name, source):
    from xalign.plugins import get_registry

    result = runner.invoke(app, ["plugins", name])
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert get_registry().objective(name).cls.description in text
    assert "source: " in text and source in text
