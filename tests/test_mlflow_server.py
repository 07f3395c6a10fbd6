"""A run logged to a real MLflow tracking server (127.0.0.1 only, stopped by its PID)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import migrated_sqlite_uri
from typer.testing import CliRunner

from xalign.cli import app
from xalign.plugins import reset_registry


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(tmp_path: Path, port: int) -> subprocess.Popen:
    """``mlflow server`` on 127.0.0.1:port over tmp_path's store; waits for /health.

    A new store starts as a copy of an empty migrated one (the server's own migrations would
    cost seconds at every start)."""
    if not (tmp_path / "server.db").exists():
        migrated_sqlite_uri(tmp_path / "server.db")
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    log = open(tmp_path / "server.log", "a")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [
            str(mlflow_bin),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination",
            str(tmp_path / "artifacts"),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
        start_new_session=True,
    )
    deadline = time.time() + 120
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    proc.url = f"http://127.0.0.1:{port}"
                    return proc
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            _stop_server(proc)
            pytest.fail(
                "mlflow server did not start: " + (tmp_path / "server.log").read_text()[-2000:]
            )
        time.sleep(0.5)


def _stop_server(proc: subprocess.Popen) -> None:
    """Stop the server's process group (by its PID) and wait until the port is closed."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def mlflow_server(tmp_path):
    proc = _start_server(tmp_path, _free_port())
    try:
        yield proc.url
    finally:
        _stop_server(proc)


def test_run_is_logged_to_a_tracking_server(mlflow_server, smoke_overrides):
    from mlflow.tracking import MlflowClient

    reset_registry()
    sets = sum((["--set", o] for o in smoke_overrides if not o.startswith("tracking.")), [])
    result = CliRunner().invoke(
        app, ["run", "-q", "--json", "-o", "sinkhorn", *sets, "--tracking-uri", mlflow_server]
    )
    assert result.exit_code == 0, result.output
    run_id = json.loads(result.stdout.strip().splitlines()[-1])["run_id"]
    client = MlflowClient(mlflow_server)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert "de-en/sinkhorn" in run.data.metrics
    assert {a.path for a in client.list_artifacts(run_id)} >= {"config.yaml", "final_metrics.json"}


# ------------------------------------------------------------------ the server dies mid-run
def _run_killing_the_server(tmp_path, smoke_overrides, monkeypatch, *, restart_after: int | None):
    """3-step run logging to a server that is stopped after the step-1 checkpoint (and
    started again after checkpoint ``restart_after``); returns (result, url, servers)."""
    from xalign import recipe as trainer

    port = _free_port()
    servers = [_start_server(tmp_path, port)]
    original = trainer.AlignmentRecipe.save_checkpoint
    timings: dict[str, float] = {}

    def save(self, step, metrics):
        original(self, step, metrics)
        if step == 1:
            _stop_server(servers[-1])
            timings["killed"] = time.perf_counter()
        if step == restart_after:
            servers.append(_start_server(tmp_path, port))

    monkeypatch.setattr(trainer.AlignmentRecipe, "save_checkpoint", save)
    reset_registry()
    sets = sum((["--set", o] for o in smoke_overrides if not o.startswith("tracking.")), [])
    url = f"http://127.0.0.1:{port}"
    try:
        result = CliRunner().invoke(
            app,
            [
                "run",
                "-q",
                "--json",
                "-o",
                "sinkhorn",
                *sets,
                "--set",
                "train.epochs=2",
                "--set",
                "train.checkpoint_every=1",
                "--tracking-uri",
                url,
            ],
        )
        timings["done"] = time.perf_counter()
    finally:
        monkeypatch.undo()
    return result, url, servers, timings


def test_server_killed_mid_run_training_finishes_and_sync_sends_everything(
    tmp_path, smoke_overrides, monkeypatch
):
    from mlflow.tracking import MlflowClient

    from xalign.tracking import BACKLOG_FILE

    result, url, servers, timings = _run_killing_the_server(
        tmp_path, smoke_overrides, monkeypatch, restart_after=None
    )
    try:
        assert result.exit_code == 0, result.output
        # 2 more steps, a checkpoint each, the model: seconds, not minutes of HTTP retries
        assert timings["done"] - timings["killed"] < 90, timings
        run_dir = next((tmp_path / "out").iterdir())
        assert (run_dir / BACKLOG_FILE).exists()
        flat = "".join(result.output.split())
        assert "".join(f"xalign sync-tracking {run_dir}".split()) in flat, result.output
        servers.append(_start_server(tmp_path, int(url.rsplit(":", 1)[1])))
        sync = CliRunner().invoke(app, ["sync-tracking", str(run_dir)])
        assert sync.exit_code == 0, sync.output
        client = MlflowClient(url)
        run = client.get_run(run_dir.name)
        assert run.info.status == "FINISHED"
        history = client.get_metric_history(run_dir.name, "de-en/sinkhorn")
        assert sorted(m.step for m in history) == [1, 2, 3]  # 24 pairs / 8 x 2 epochs / 2
        assert {a.path for a in client.list_artifacts(run_dir.name)} >= {
            "config.yaml",
            "data_stats.json",
            "final_metrics.json",
        }
        assert run.data.tags["xalign.model_dir"].endswith("model")
        assert not (run_dir / BACKLOG_FILE).exists()
    finally:
        for proc in servers:
            _stop_server(proc)


def test_server_back_before_the_end_gets_the_backlog_without_replay(
    tmp_path, smoke_overrides, monkeypatch
):
    from mlflow.tracking import MlflowClient

    from xalign.tracking import BACKLOG_FILE

    result, url, servers, _ = _run_killing_the_server(
        tmp_path, smoke_overrides, monkeypatch, restart_after=2
    )
    try:
        assert result.exit_code == 0, result.output
        run_id = json.loads(result.stdout.strip().splitlines()[-1])["run_id"]
        client = MlflowClient(url)
        assert client.get_run(run_id).info.status == "FINISHED"
        history = client.get_metric_history(run_id, "loss")
        assert sorted(m.step for m in history) == [1, 2, 3]
        assert "final_metrics.json" in {a.path for a in client.list_artifacts(run_id)}
        assert not (tmp_path / "out" / run_id / BACKLOG_FILE).exists()
    finally:
        for proc in servers:
            _stop_server(proc)
