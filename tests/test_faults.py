"""A run finishes or stops cleanly with nothing lost: MLflow down, signals, disk errors, trust."""

from __future__ import annotations

import errno
import json
import math
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from conftest import as_sets, migrated_sqlite_uri, run_json
from safetensors.torch import load_file
from typer.testing import CliRunner

from xalign import tracking
from xalign.cli import app
from xalign.tracking import BACKLOG_FILE, Tracker, TrackingError, TrackingWarning


def invoke(args: list[str]):
    return CliRunner().invoke(app, args)


def squash(text: str) -> str:
    """Text without any whitespace: rich wraps long messages (and paths) at its width."""
    return "".join(text.split())


def assert_says(output: str, *parts: str) -> None:
    for part in parts:
        assert squash(part) in squash(output), f"{part!r} not in:\n{output[-3000:]}"


def closed_port() -> int:
    """A local port nothing listens on (connection refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def common(tiny_model, uri) -> list[str]:
    """12 optimizer steps (24 pairs x 2 languages, batch 6, 3 epochs), linear schedule."""
    return [
        "-o",
        "sinkhorn",
        *as_sets(
            [
                f"model.name={tiny_model}",
                "data.limit=24",
                "data.languages=[de,fr]",
                "train.batch_size=6",
                "train.grad_accum=1",
                "train.epochs=3",
                "train.schedule=linear",
                "train.warmup_steps=1",
                f"tracking.uri={uri}",
            ]
        ),
    ]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def shared_uri(tmp_path_factory) -> str:
    """One sqlite store for the module (creating one costs seconds of migrations)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'm.db'}"


@pytest.fixture(scope="module")
def reference(tiny_model, tmp_path_factory, shared_uri) -> dict[str, torch.Tensor]:
    """Final weights of the uninterrupted run of :func:`common`."""
    tmp = tmp_path_factory.mktemp("reference")
    out = run_json([*common(tiny_model, shared_uri), "--set", f"train.output_dir={tmp / 'out'}"])
    return weights(out["output_dir"])


def weights(output_dir) -> dict[str, torch.Tensor]:
    return load_file(str(Path(output_dir) / "model" / "model.safetensors"))


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def only_run_dir(out: Path) -> Path:
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    return run_dir


def get_run(uri: str, run_id: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri).get_run(run_id)


# ====================================================================== 1. store unreachable
@pytest.mark.parametrize("command", ["run", "eval", "compare"])
def test_unreachable_tracking_server_fails_in_seconds_before_loading(
    command, tiny_model, tmp_path, monkeypatch
):
    from xalign import recipe as trainer

    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded before the tracking store was checked")

    monkeypatch.setattr(trainer, "load_encoder", no_loading)
    monkeypatch.setattr("xalign.encoders.load_encoder", no_loading)
    url = f"http://127.0.0.1:{closed_port()}"
    args = {
        "run": [
            "run",
            "-q",
            "-o",
            "sinkhorn",
            "--set",
            f"model.name={tiny_model}",
            "--set",
            f"train.output_dir={tmp_path / 'out'}",
        ],
        "eval": ["eval", str(tiny_model), "--task", "align"],
        "compare": [
            "compare",
            "sinkhorn",
            "--tasks",
            "align",
            "--set",
            f"model.name={tiny_model}",
            "--set",
            f"train.output_dir={tmp_path / 'out'}",
        ],
    }[command]
    start = time.perf_counter()
    result = invoke([*args, "--tracking-uri", url])
    elapsed = time.perf_counter() - start
    assert result.exit_code == 1, result.output
    assert_says(
        result.output,
        f"MLflow tracking store {url} is unreachable",
        "Connection refused",
        "--tracking-uri",
    )
    assert elapsed < 60, elapsed  # was 265 s of retries, after loading the model
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("how", ["env", "bad-sqlite"])
def test_unusable_store_from_env_or_path_is_named(how, tiny_model, tmp_path, monkeypatch):
    if how == "env":
        uri = f"http://127.0.0.1:{closed_port()}"
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        extra: list[str] = []
    else:
        (tmp_path / "a-file").write_text("")  # mlflow creates missing folders, not this
        uri = f"sqlite:///{tmp_path / 'a-file' / 'm.db'}"
        extra = ["--tracking-uri", uri]
    result = invoke(
        [
            "run",
            "-q",
            "-o",
            "sinkhorn",
            "--set",
            f"model.name={tiny_model}",
            "--set",
            f"train.output_dir={tmp_path / 'out'}",
            *extra,
        ]
    )
    assert result.exit_code == 1, result.output
    assert_says(result.output, f"MLflow tracking store {uri} is unreachable")


def test_check_tracking_probe(tmp_path):
    uri = f"sqlite:///{tmp_path / 'ok.db'}"
    assert tracking.check_tracking(uri) == uri
    with pytest.raises(TrackingError, match=r"127\.0\.0\.1.*Connection refused"):
        tracking.check_tracking(f"http://127.0.0.1:{closed_port()}")


# ====================================================================== 2. server dies mid-run
class Outage:
    """Makes MlflowClient write calls fail like a dead server while ``down``."""

    WRITES = ("log_batch", "log_artifact", "set_terminated", "update_run", "set_tag")

    def __init__(self, monkeypatch) -> None:
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        self.down = False
        self.refused = 0
        for name in self.WRITES:
            real = getattr(MlflowClient, name)

            def call(client, *args, _real=real, **kwargs):
                if self.down:
                    self.refused += 1
                    raise MlflowException(
                        "API request to http://127.0.0.1:5000/api/2.0/mlflow/runs/log-batch "
                        "failed with exception HTTPConnectionPool(host='127.0.0.1', port=5000): "
                        "Max retries exceeded (Caused by NewConnectionError('Failed to establish "
                        "a new connection: [Errno 111] Connection refused'))"
                    )
                return _real(client, *args, **kwargs)

            monkeypatch.setattr(MlflowClient, name, call)


def hook_after_checkpoint(monkeypatch, actions: dict[int, callable]) -> None:
    """Run ``actions[step]()`` right after the checkpoint of that step is written."""
    from xalign import recipe as trainer

    original = trainer.AlignmentRecipe.save_checkpoint

    def save(self, step, metrics):
        original(self, step, metrics)
        if step in actions:
            actions[step]()

    monkeypatch.setattr(trainer.AlignmentRecipe, "save_checkpoint", save)


def loss_steps(uri: str, run_id: str) -> list[int]:
    from mlflow.tracking import MlflowClient

    return sorted(m.step for m in MlflowClient(uri).get_metric_history(run_id, "loss"))


def test_tracking_outage_until_the_end_keeps_everything_then_sync_sends_it(
    tiny_model, tmp_path, shared_uri, monkeypatch, reference
):
    from mlflow.tracking import MlflowClient

    outage = Outage(monkeypatch)
    hook_after_checkpoint(monkeypatch, {2: lambda: setattr(outage, "down", True)})
    result = invoke(
        [
            "run",
            "-q",
            "--json",
            *common(tiny_model, shared_uri),
            "--set",
            "train.checkpoint_every=2",
            "--set",
            f"train.output_dir={tmp_path / 'out'}",
        ]
    )
    assert result.exit_code == 0, result.output  # training went on
    run_dir = only_run_dir(tmp_path / "out")
    assert_says(
        result.output,
        "unreachable while sending metrics",
        "the run goes on",
        f"xalign sync-tracking {run_dir}",
    )
    assert outage.refused >= 2
    records = [json.loads(line) for line in (run_dir / BACKLOG_FILE).read_text().splitlines()]
    assert [r["step"] for r in records if r["op"] == "metrics"] == list(range(3, 13))
    assert [r["op"] for r in records][-3:] == ["tags", "artifact", "end"]
    assert records[-1]["status"] == "FINISHED"
    assert_same_weights(weights(run_dir), reference)
    run_id = run_dir.name
    assert get_run(shared_uri, run_id).info.status == "RUNNING"  # not told yet

    outage.down = False
    sync = invoke(["sync-tracking", str(run_dir)])
    assert sync.exit_code == 0, sync.output
    assert_says(sync.output, f"sent {len(records)} tracking record(s)")
    run = get_run(shared_uri, run_id)
    assert run.info.status == "FINISHED"
    assert loss_steps(shared_uri, run_id) == list(range(1, 13))
    assert run.data.tags["xalign.model_dir"] == str((run_dir / "model").resolve())
    assert "final_metrics.json" in {a.path for a in MlflowClient(shared_uri).list_artifacts(run_id)}
    assert not (run_dir / BACKLOG_FILE).exists()
    again = invoke(["sync-tracking", str(run_dir)])  # nothing left: not an error
    assert again.exit_code == 0, again.output
    assert_says(again.output, "nothing to send")


def test_tracking_back_before_the_end_sends_the_backlog_itself(
    tiny_model, tmp_path, shared_uri, monkeypatch
):
    outage = Outage(monkeypatch)
    hook_after_checkpoint(
        monkeypatch,
        {2: lambda: setattr(outage, "down", True), 6: lambda: setattr(outage, "down", False)},
    )
    out = run_json(
        [
            *common(tiny_model, shared_uri),
            "--set",
            "train.checkpoint_every=2",
            "--set",
            f"train.output_dir={tmp_path / 'out'}",
        ]
    )
    assert outage.refused >= 1
    assert loss_steps(shared_uri, out["run_id"]) == list(range(1, 13))
    assert get_run(shared_uri, out["run_id"]).info.status == "FINISHED"
    assert not (Path(out["output_dir"]) / BACKLOG_FILE).exists()


def test_resume_sends_the_backlog_of_the_interrupted_process_first(
    tiny_model, tmp_path, shared_uri, monkeypatch, reference
):
    outage = Outage(monkeypatch)

    def down_then_crash():
        outage.down = True
        raise KeyboardInterrupt  # as if killed right after the step-4 checkpoint

    hook_after_checkpoint(
        monkeypatch, {2: lambda: setattr(outage, "down", True), 4: down_then_crash}
    )
    result = invoke(
        [
            "run",
            "-q",
            *common(tiny_model, shared_uri),
            "--set",
            "train.checkpoint_every=2",
            "--set",
            f"train.output_dir={tmp_path / 'out'}",
        ]
    )
    assert result.exit_code == 130, result.output
    run_dir = only_run_dir(tmp_path / "out")
    kept = (run_dir / BACKLOG_FILE).read_text()
    assert '"status": "KILLED"' in kept
    outage.down = False
    monkeypatch.undo()
    resumed = run_json(["--resume", str(run_dir)])
    assert not (run_dir / BACKLOG_FILE).exists()
    assert loss_steps(shared_uri, run_dir.name) == list(range(1, 13))
    assert get_run(shared_uri, run_dir.name).info.status == "FINISHED"
    assert_same_weights(weights(resumed["output_dir"]), reference)


def test_tracker_backlog_unit(tmp_path):
    """The Tracker alone: records kept in order while offline, artifacts copied, flush on
    return, rejected records set aside, a torn last line ignored."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    uri = migrated_sqlite_uri(tmp_path / "m.db")
    tracker = Tracker(uri, "unit", retry_interval=0.0)
    run_id = tracker.start(run_name="unit")
    tracker.set_backlog_dir(tmp_path / "run")
    real = tracker.client

    class Down:
        def __getattr__(self, name):
            def fail(*args, **kwargs):
                raise MlflowException("[Errno 111] Connection refused")

            return fail

    tracker.log_metrics({"a": 1.0}, 1)
    tracker.client = Down()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tracker.log_metrics({"a": 2.0, "b/c": float("nan")}, 2)
        tracker.log_params({"lr": 0.5, "langs": ["de", "fr"]})
        tracker.log_text("héllo wörld", "notes.txt")
        tracker.set_tags({"t": 1})
    assert any(
        issubclass(w.category, TrackingWarning) and "Connection refused" in str(w.message)
        for w in caught
    )
    lines = (tmp_path / "run" / BACKLOG_FILE).read_text().splitlines()
    assert [json.loads(line)["op"] for line in lines] == ["metrics", "params", "artifact", "tags"]
    assert tracker.unsent == 4
    tracker.client = real
    tracker.log_metrics({"a": 3.0}, 3)  # the server is back: backlog first, then this
    client = MlflowClient(uri)
    history = sorted(client.get_metric_history(run_id, "a"), key=lambda m: m.step)
    assert [(m.step, m.value) for m in history] == [(1, 1.0), (2, 2.0), (3, 3.0)]
    assert math.isnan(client.get_metric_history(run_id, "b/c")[0].value)
    run = client.get_run(run_id)
    assert run.data.params == {"lr": "0.5", "langs": '["de", "fr"]'}
    assert run.data.tags["t"] == "1"
    path = client.download_artifacts(run_id, "notes.txt", str(tmp_path / "dl"))
    assert Path(path).read_text(encoding="utf-8") == "héllo wörld"
    assert not (tmp_path / "run" / BACKLOG_FILE).exists() and tracker.unsent == 0

    # a record the store rejects (a changed param) is set aside, not retried forever
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tracker.log_params({"lr": 0.7})
    assert any("rejected params" in str(w.message) for w in caught)
    rejected = (tmp_path / "run" / tracking.REJECTED_FILE).read_text()
    assert '"lr": "0.7"' in rejected
    tracker.end("FINISHED")
    assert client.get_run(run_id).info.status == "FINISHED"


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("sqlite:///m.db", "{cwd}/mlruns"),
        ("sqlite:///sub/m.db", "{cwd}/sub/mlruns"),
        ("sqlite:////abs/dir/m.db", "/abs/dir/mlruns"),
        ("sqlite:////abs/dir/m.db?timeout=20", "/abs/dir/mlruns"),
        ("sqlite:///:memory:", None),
        ("http://127.0.0.1:5000", None),
        ("databricks", None),
    ],
)
def test_artifact_root_of_each_store_kind(uri, expected, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    want = expected and expected.format(cwd=tmp_path.resolve())
    assert tracking.artifact_root(uri) == want


def test_local_store_keeps_artifacts_beside_its_database(tmp_path, monkeypatch):
    """A store opened by absolute path from another folder keeps its artifacts beside the
    database (MLflow's default would be the cwd: deleting that folder lost every result)."""
    from mlflow.tracking import MlflowClient

    (tmp_path / "store").mkdir()
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    uri = migrated_sqlite_uri((tmp_path / "store" / "m.db").resolve())
    tracker = Tracker(uri, "beside")
    run_id = tracker.start(run_name="unit")
    tracker.log_text("kept", "result.json")
    tracker.end("FINISHED")
    exp = MlflowClient(uri).get_experiment_by_name("beside")
    assert exp.artifact_location == str((tmp_path / "store" / "mlruns").resolve())
    found = list((tmp_path / "store" / "mlruns").rglob("result.json"))
    assert [p.read_text() for p in found] == ["kept"] and run_id in str(found[0])
    assert not any((tmp_path / "cwd").iterdir())


def test_replay_ignores_a_torn_last_line_and_names_bad_lines(tmp_path):
    uri = migrated_sqlite_uri(tmp_path / "m.db")
    tracker = Tracker(uri, "unit")
    run_id = tracker.start(run_name="torn")
    d = tmp_path / "run"
    d.mkdir()
    rec = {
        "uri": uri,
        "run_id": run_id,
        "op": "metrics",
        "step": 5,
        "timestamp": 1000,
        "metrics": {"x": 0.25},
    }
    (d / BACKLOG_FILE).write_text(json.dumps(rec) + "\n" + '{"uri": "sq')  # killed mid-append
    assert tracking.replay_backlog(d) == 1
    from mlflow.tracking import MlflowClient

    assert [(m.step, m.value) for m in MlflowClient(uri).get_metric_history(run_id, "x")] == [
        (5, 0.25)
    ]
    (d / BACKLOG_FILE).write_text("not json\n" + json.dumps(rec) + "\n")
    with pytest.raises(TrackingError, match=f"{BACKLOG_FILE}:1: not a tracking record"):
        tracking.replay_backlog(d)


# ====================================================================== 3. signals
LAUNCHER = """
import sys, time
from xalign import recipe as trainer

_real = trainer.AlignmentRecipe._micro_step

def _slow(self, *args, **kwargs):  # ~0.3 s per step: time to signal mid-run
    time.sleep(0.3)
    return _real(self, *args, **kwargs)

trainer.AlignmentRecipe._micro_step = _slow
from xalign.cli import main
sys.argv = ["xalign", *sys.argv[1:]]
main()
"""


def last_logged_step(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            row = con.execute("SELECT MAX(step) FROM metrics WHERE key = 'loss'").fetchone()
    except sqlite3.Error:
        return 0
    return int(row[0] or 0)


@pytest.mark.parametrize(
    ("signals", "checkpoint_every", "code"),
    [
        ([signal.SIGTERM], 0, 143),
        ([signal.SIGINT], 0, 130),
        ([signal.SIGTERM, signal.SIGTERM], 1, 143),  # the second one stops mid-step
    ],
    ids=["SIGTERM", "SIGINT", "SIGTERM-twice"],
)
def test_signal_checkpoints_marks_killed_and_resume_matches(
    signals, checkpoint_every, code, tiny_model, tmp_path, reference
):
    db = tmp_path / "m.db"
    uri = migrated_sqlite_uri(db)
    launcher = tmp_path / "launch.py"
    launcher.write_text(LAUNCHER)
    out_dir = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            str(launcher),
            "run",
            "-q",
            *common(tiny_model, uri),
            "--set",
            f"train.checkpoint_every={checkpoint_every}",
            "--set",
            f"train.output_dir={out_dir}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.time() + 180
        # one step done; with two signals two, so the step-1 checkpoint is complete (the second
        # signal stops at once, possibly in the middle of writing the next checkpoint)
        while last_logged_step(db) < len(signals):
            assert proc.poll() is None, proc.communicate()
            assert time.time() < deadline, "no training step within 180 s"
            time.sleep(0.1)
        for i, sig in enumerate(signals):
            if i:
                time.sleep(0.05)  # lands mid-step or mid-checkpoint, mostly
            proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # A second signal that lands after the run has ended (handlers restored, the process is
    # printing its message and exiting) kills it by the default action: shells report that as
    # 128 + 15 = 143 too, and the run was already checkpointed and marked KILLED.
    allowed = (code, -signals[-1]) if len(signals) > 1 else (code,)
    assert proc.returncode in allowed, stderr[-3000:]
    run_dir = only_run_dir(out_dir)
    name = signal.Signals(signals[0]).name
    if proc.returncode == code:
        assert_says(
            stderr, f"interrupted by {name}", "marked KILLED", f"xalign run --resume {run_dir}"
        )
    if len(signals) == 1:
        assert_says(stderr, f"{name} received: stopping after the current step", "after step")
    killed = get_run(uri, run_dir.name)
    assert killed.info.status == "KILLED"
    assert f"interrupted by {name}" in killed.data.tags["xalign.failure"]
    from xalign.checkpoint import find_checkpoint

    ckpt = find_checkpoint(run_dir)
    step = json.loads((ckpt / "state.json").read_text())["step"]
    assert 1 <= step < 12
    assert not list((run_dir / "checkpoints").glob("*.partial")) or len(signals) > 1
    resumed = run_json(["--resume", str(run_dir)])
    assert resumed["run_id"] == run_dir.name
    finished = get_run(uri, run_dir.name)
    assert finished.info.status == "FINISHED"
    # a finished run has no failure; why it stopped before is kept as history
    assert "xalign.failure" not in finished.data.tags
    assert finished.data.tags["xalign.resumed_after"] == killed.data.tags["xalign.failure"]
    assert_same_weights(weights(resumed["output_dir"]), reference)


def test_stop_request_defers_the_first_signal_only():
    from xalign.recipe import StopRequest

    stop = StopRequest()
    with pytest.raises(KeyboardInterrupt):  # not in the loop (setup): stop at once
        stop._handle(signal.SIGTERM, None)
    stop = StopRequest()
    stop.deferred = True
    stop._handle(signal.SIGTERM, None)  # in the loop: only noted
    assert stop.signum == signal.SIGTERM
    with pytest.raises(KeyboardInterrupt):  # a second signal: now
        stop._handle(signal.SIGINT, None)
    assert stop.signum == signal.SIGTERM
    # stopping now: a third signal is only noted, so the cleanup marking the run KILLED and the
    # message saying where to resume from are not cut short
    stop._handle(signal.SIGTERM, None)
    assert stop.closing
    before = signal.getsignal(signal.SIGTERM)
    with StopRequest().installed() as installed:
        assert signal.getsignal(signal.SIGTERM) == installed._handle
    assert signal.getsignal(signal.SIGTERM) == before


@pytest.mark.parametrize("reported", [False, True])
def test_a_signal_after_training_still_prints_where_to_resume(reported, monkeypatch, capsys):
    """A second SIGTERM landing after run_training restored the handlers but before the CLI
    printed its ``error:`` line must not lose the resume command (it is printed once)."""
    import typer

    import xalign.cli as cli
    from xalign import recipe as trainer
    from xalign.cli.common import user_errors

    interrupted = trainer.TrainingInterrupted(
        "interrupted by SIGTERM after step 2 of 9: ... Resume with: xalign run --resume /o/r1",
        signal.SIGTERM,
    )

    def command():
        trainer._UNREPORTED[:] = [interrupted]  # what run_training leaves when it raises
        if reported:  # the CLI printed it, then the signal landed
            with pytest.raises(typer.Exit), user_errors():
                raise interrupted
        raise KeyboardInterrupt("SIGTERM")

    monkeypatch.setattr(cli, "app", command)
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    assert exit_.value.code == 143
    err = capsys.readouterr().err
    assert_says(err, "interrupted by SIGTERM; runs it had started are marked KILLED")
    assert err.count("xalign run --resume /o/r1") == 1
    assert trainer.unreported_interruption() is None  # printed once, then forgotten


@pytest.mark.parametrize("where", ["model loading", "first step"])
def test_interrupt_before_a_safe_point(where, tiny_model, tmp_path, shared_uri, monkeypatch):
    from xalign import recipe as trainer

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    if where == "model loading":
        monkeypatch.setattr(trainer, "load_encoder", interrupt)
    else:
        monkeypatch.setattr(trainer.AlignmentRecipe, "_micro_step", interrupt)
    result = invoke(
        [
            "run",
            "-q",
            *common(tiny_model, shared_uri),
            "--set",
            f"train.output_dir={tmp_path / 'out'}",
        ]
    )
    assert result.exit_code == 130, result.output
    assert_says(
        result.output,
        "interrupted by SIGINT before a safe point",
        "no checkpoint was written yet: start the run again",
    )
    if where == "model loading":
        assert_says(result.output, "no MLflow run was started")
    else:
        run_dir = only_run_dir(tmp_path / "out")
        assert get_run(shared_uri, run_dir.name).info.status == "KILLED"


# ====================================================================== 4. disk errors
def test_disk_full_at_a_checkpoint_fails_cleanly_and_resume_finishes(
    tiny_model, tmp_path, shared_uri, monkeypatch, reference
):
    from xalign import checkpoint

    calls = {"n": 0}
    real = checkpoint._torch_save

    def full_on_second_checkpoint(obj, path):
        calls["n"] += 1
        if calls["n"] == 3:  # optimizer.pt of the second checkpoint
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(obj, path)

    monkeypatch.setattr(checkpoint, "_torch_save", full_on_second_checkpoint)
    result = invoke(
        [
            "run",
            "-q",
            *common(tiny_model, shared_uri),
            "--set",
            "train.checkpoint_every=2",
            "--set",
            f"train.output_dir={tmp_path / 'out'}",
        ]
    )
    monkeypatch.undo()
    assert result.exit_code == 1, result.output
    run_dir = only_run_dir(tmp_path / "out")
    ckpts = run_dir / "checkpoints"
    assert_says(
        result.output,
        f"cannot write checkpoint {ckpts / 'step-0000004'}: [Errno 28] "
        f"No space left on device; the previous checkpoint (step-0000002) is kept",
    )
    assert "Traceback" not in result.output
    run = get_run(shared_uri, run_dir.name)
    assert run.info.status == "FAILED"
    assert "No space left on device" in run.data.tags["xalign.failure"]
    assert sorted(p.name for p in ckpts.iterdir()) == ["latest", "step-0000002"]
    resumed = run_json(["--resume", str(run_dir)])
    assert_same_weights(weights(resumed["output_dir"]), reference)


def test_output_folder_that_cannot_be_created_fails_before_loading(
    tiny_model, tmp_path, shared_uri, monkeypatch
):
    from mlflow.tracking import MlflowClient

    from xalign import recipe as trainer

    def no_loading(*args, **kwargs):
        raise AssertionError("loaded a model although the output folder is unusable")

    monkeypatch.setattr(trainer, "load_encoder", no_loading)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = invoke(
        [
            "run",
            "-q",
            *common(tiny_model, shared_uri),
            "--set",
            f"train.output_dir={blocker / 'out'}",
        ]
    )
    assert result.exit_code == 1, result.output
    assert_says(
        result.output,
        f"cannot write to the output folder {blocker / 'out'}: [Errno 20] Not a directory",
    )
    client = MlflowClient(shared_uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert not [r for r in runs if str(blocker) in r.data.tags.get("xalign.output_dir", "")]
    assert not [r for r in runs if r.info.status == "RUNNING"]


def test_model_save_error_leaves_no_partial_model(tiny_model, tmp_path, shared_uri, monkeypatch):
    from xalign.encoders.encoder import Encoder

    def full(self, directory):
        Path(directory).mkdir(parents=True)
        (Path(directory) / "config.json").write_text("{}")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Encoder, "save", full)
    result = invoke(
        [
            "run",
            "-q",
            *common(tiny_model, shared_uri),
            "--set",
            f"train.output_dir={tmp_path / 'out'}",
        ]
    )
    assert result.exit_code == 1, result.output
    run_dir = only_run_dir(tmp_path / "out")
    assert_says(result.output, f"cannot save the model to {run_dir / 'model'}: [Errno 28]")
    assert not (run_dir / "model").exists() and not (run_dir / "model.partial").exists()
    assert get_run(shared_uri, run_dir.name).info.status == "FAILED"


# ====================================================================== 6. trust
def test_resume_refuses_a_crafted_optimizer_file(tiny_model, tmp_path, shared_uri):
    out = run_json(
        [
            *common(tiny_model, shared_uri),
            "--set",
            "train.max_steps=2",
            "--set",
            "train.keep_optimizer_state=true",  # a finished run keeps its checkpoint then
            "--set",
            f"train.output_dir={tmp_path / 'out'}",
        ]
    )
    run_dir = Path(out["output_dir"])
    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    victim = run_dir / "checkpoints" / "step-0000002" / "optimizer.pt"
    torch.save({"state": {0: Payload()}, "param_groups": []}, victim)
    result = invoke(["run", "-q", "--resume", str(run_dir)])
    assert result.exit_code == 1, result.output
    assert_says(result.output, f"{victim}: refused to load", "(posix.system)")
    assert not marker.exists()


EVAL_LAUNCHER = """
import sys, time
from pathlib import Path
from xalign.plugins import get_registry

MARKER = Path(sys.argv.pop(1))

def _hang(self, model, context):  # the task is running: the test may signal now
    MARKER.touch()
    while True:
        time.sleep(0.05)

get_registry().task("align").cls.run = _hang
from xalign.cli import main
sys.argv = ["xalign", *sys.argv[1:]]
main()
"""


def test_sigterm_during_an_evaluation_exits_143_and_marks_it_killed(tiny_model, tmp_path):
    """``xalign eval`` stopped by SIGTERM exits 143 like ``xalign run`` (typer would turn the
    interrupt into 130, Ctrl-C's code), says so, and its eval run ends KILLED."""
    sig, code = signal.SIGTERM, 143
    uri = migrated_sqlite_uri(tmp_path / "m.db")
    launcher, marker = tmp_path / "launch.py", tmp_path / "started"
    launcher.write_text(EVAL_LAUNCHER)
    cmd = [sys.executable, str(launcher), str(marker), "eval", str(tiny_model), "-t", "align"]
    proc = subprocess.Popen(
        [*cmd, "--tracking-uri", uri, "--no-reuse"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        deadline = time.time() + 120
        while not marker.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.time() < deadline, "the task did not start within 120 s"
            time.sleep(0.05)
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == code, stderr[-3000:]
    assert_says(stderr, "interrupted by SIGTERM", "marked KILLED")
    from mlflow.tracking import MlflowClient

    runs = MlflowClient(uri).search_runs(["1"])
    assert [r.info.status for r in runs] == ["KILLED"]
