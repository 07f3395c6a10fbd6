"""Sends to a remote tracking store during a run are bounded in wall-clock time (issue 20.7).

A store that dies mid-run (a Databricks/MLflow HTTP server that stops answering) used to
block each metric send for as long as the client retried (MLflow's HTTP retries, the
Databricks SDK's 300 s). Now one send waits at most :data:`xalign.tracking.SEND_DEADLINE`;
while that send is still hanging, later records are kept at once; all are sent, in order,
when the store answers again.
"""

from __future__ import annotations

import socket
import threading
import time
import warnings
from pathlib import Path

import pytest

import xalign.tracking as tracking
from xalign.tracking import Tracker, TrackingWarning

DEADLINE = 1.0


class HangingClient:
    """An MlflowClient stand-in whose requests hang (a dead host under a client that ignores
    every timeout) until :attr:`back` is set; then it records what it was sent."""

    def __init__(self) -> None:
        self.back = threading.Event()
        self.sent: list[tuple[str, list]] = []

    def _wait(self) -> None:
        if not self.back.wait(timeout=20):  # an unbounded send would block the test this long
            raise ConnectionError("[Errno 110] Connection timed out")

    def log_batch(self, run_id, metrics=(), params=(), tags=(), synchronous=True) -> None:
        self._wait()
        self.sent.append(("batch", [m.step for m in metrics] + [p.key for p in params]))

    def set_terminated(self, run_id, status=None, end_time=None) -> None:
        self._wait()
        self.sent.append(("end", [status]))


def remote_tracker(monkeypatch, tmp_path: Path, client) -> Tracker:
    """A tracker on an http:// store whose probe is skipped, with ``client`` and a run."""
    monkeypatch.setattr(tracking, "_probe", lambda uri, request: "0")
    monkeypatch.setattr(tracking, "SEND_DEADLINE", DEADLINE, raising=False)
    tracker = Tracker("http://127.0.0.1:9", "exp", retry_interval=3600)
    tracker.client = client
    tracker.run_id = "r1"
    tracker.set_backlog_dir(tmp_path / "out")
    return tracker


def test_a_hanging_store_costs_one_deadline_then_records_are_kept(monkeypatch, tmp_path):
    client = HangingClient()
    tracker = remote_tracker(monkeypatch, tmp_path, client)
    start = time.monotonic()
    with pytest.warns(TrackingWarning, match="unreachable while sending metrics.*within 1 s"):
        tracker.log_metrics({"loss": 1.0}, step=1)
    first = time.monotonic() - start
    assert DEADLINE <= first < DEADLINE + 15  # an unbounded send waits the client's 20 s
    start = time.monotonic()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TrackingWarning)
        for step in range(2, 12):
            tracker.log_metrics({"loss": 1.0 / step}, step=step)
        assert not tracker.flush(force=True)  # the cut send still waits: no new attempt
        tracker.log_params({"lr": 0.1})
    # kept at once: eleven records that each waited the deadline would take 11 s
    assert time.monotonic() - start < 6 * DEADLINE
    assert tracker.unsent == 12 and client.sent == []
    backlog = tmp_path / "out" / tracking.BACKLOG_FILE
    assert len(backlog.read_text().splitlines()) == 12
    client.back.set()  # the store answers again: the cut send ends, then all go in order
    tracker._stuck.join(5)
    with pytest.warns(TrackingWarning, match="reachable again: 12 kept record"):
        assert tracker.flush(force=True)
    steps = [s for op, items in client.sent[1:] for s in items]  # [0]: the cut send itself
    assert client.sent[0] == ("batch", [1])
    assert steps == [*range(1, 12), "lr"] and not backlog.exists()
    tracker.end()
    assert client.sent[-1] == ("end", ["FINISHED"])


def test_a_large_artifact_gets_more_time_and_local_stores_are_never_cut(monkeypatch, tmp_path):
    seen: list[float] = []
    monkeypatch.setattr(tracking, "SEND_DEADLINE", DEADLINE, raising=False)

    def fake_bounded(request, deadline, what):
        seen.append(deadline)
        return request(), None

    monkeypatch.setattr(tracking, "_bounded", fake_bounded, raising=False)
    monkeypatch.setattr(tracking, "_send_record", lambda client, rec, directory: None)
    monkeypatch.setattr(tracking, "_probe", lambda uri, request: "0")
    big = tmp_path / "model.bin"
    big.write_bytes(b"\0" * 3_000_000)
    remote = Tracker("https://h:1", "exp")
    remote.run_id = "r"
    remote.log_artifact(big)
    remote.log_metrics({"x": 1.0}, step=0)
    assert seen == [pytest.approx(DEADLINE + 3.0), DEADLINE]
    local = Tracker(f"sqlite:///{tmp_path}/m.db", "exp")
    local.run_id = "r"
    local.log_metrics({"x": 1.0}, step=0)
    assert len(seen) == 2  # sqlite: sent directly, never in a bounded thread


@pytest.fixture
def silent_server():
    """A socket on 127.0.0.1 that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(2)
    for conn in held:
        conn.close()
    server.close()


def test_real_mlflow_client_on_a_silent_server_is_cut(monkeypatch, tmp_path, silent_server):
    """MLflow's own HTTP client, with its default retries and a 120 s timeout per request."""
    from mlflow.tracking import MlflowClient

    for key, value in {
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "7",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "120",
    }.items():
        monkeypatch.setenv(key, value)
    tracker = remote_tracker(monkeypatch, tmp_path, MlflowClient(silent_server))
    start = time.monotonic()
    with pytest.warns(TrackingWarning, match="unreachable while sending metrics"):
        tracker.log_metrics({"loss": 1.0}, step=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TrackingWarning)
        for step in range(2, 6):
            tracker.log_metrics({"loss": 1.0}, step=step)
        tracker.end("FAILED")
    assert time.monotonic() - start < DEADLINE + 5
    assert tracker.unsent == 6
