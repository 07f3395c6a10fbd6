"""MLflow logging for runs (rank 0 only): params, per-step metrics, artifacts, tags.

The names of the tags xalign writes (``TAG_*``, run kinds ``KIND_*``) and the queries that
find runs by them (:meth:`Tracker.training_runs`, :meth:`Tracker.eval_runs`, :func:`get_run`)
live here, so training, evaluation and compare agree on them.

Failure policy (README "Failure behaviour"):

* A :class:`Tracker` probes its store when it is made (one request, no retry, 5 s timeout), so
  an unreachable server fails in seconds with a :class:`TrackingError` naming the URI — before
  a model is loaded. :func:`check_tracking` is the same probe for commands that read runs first.
  A non-local store's probe is also cut at :data:`PROBE_DEADLINE` seconds of wall-clock time
  (the Databricks SDK ignores MLflow's timeout and retries a dead host for minutes).
* Unless the user set them, MLflow's HTTP client gets 2 retries, a 1 s backoff and a 10 s
  timeout (its defaults, 7 retries and 120 s, make a dead server cost minutes per request).
* Once a run exists, each request to a non-local store is cut at :data:`SEND_DEADLINE`
  seconds of wall-clock time (whatever retries the client makes on its own), and no request
  starts while a cut one is still waiting: a store that dies mid-run costs one deadline.
* A record that cannot be sent because of a transport problem (connection
  refused, timeout, 5xx, store I/O error, the deadline) is *kept*: in memory and in
  ``<backlog dir>/tracking-backlog.jsonl`` (artifacts copied to ``tracking-backlog-files/``).
  The tracker is then offline; at most every ``retry_interval`` seconds the next record makes one
  quick attempt to send the backlog, in order. :meth:`Tracker.end` tries once more; what is still
  unsent stays on disk and :func:`replay_backlog` sends it later (``xalign sync-tracking DIR``;
  ``xalign run --resume DIR`` does it first). A record the server *rejects* (a bug, e.g. a
  changed param value) is moved to ``tracking-backlog-rejected.jsonl`` with a warning.
* Credentials never leave the process (docs/failures.md): messages, params, tags, run names,
  text artifacts and backlog records carry the URI and values redacted (:mod:`xalign.redact`);
  MLflow's "View run ... at: URL" lines go to stderr, redacted.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from xalign.errors import XalignError, XalignWarning
from xalign.redact import is_redacted, redact, redact_text, redact_uri

T = TypeVar("T")

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
MAX_PARAM_LEN = 6000
BACKLOG_FILE = "tracking-backlog.jsonl"
BACKLOG_FILES = "tracking-backlog-files"
REJECTED_FILE = "tracking-backlog-rejected.jsonl"

#: MLflow HTTP client settings applied when the user set none (seconds / counts).
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}
#: One try, 10 s (inside :data:`PROBE_DEADLINE`; a busy local server can take 5 s to answer
#: its first request): the reachability probe and the first record of a backlog flush.
QUICK = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
#: Wall-clock bound (s) on the probe of a non-local store. Some clients ignore :data:`QUICK`
#: (the Databricks SDK behind ``databricks://`` retries for 300 s on its own), so the probe
#: runs in a daemon thread and a store that has not answered by then is unreachable.
PROBE_DEADLINE = 15.0
#: Wall-clock bound (s) on one record sent to a non-local store during a run (an artifact
#: gets one more second per MB). Past it the record is kept in the backlog and the tracker goes
#: offline; the send left waiting (a dead host under the Databricks SDK's own 300 s of retries)
#: finishes in a daemon thread, and no other send starts before it has.
SEND_DEADLINE = 15.0
#: Schemes of stores on this machine (opening one may run migrations: never cut short).
LOCAL_SCHEMES = frozenset({"", "file", "sqlite"})
#: MLflow error codes that mean "the store is unavailable", not "this request is wrong".
TRANSIENT_CODES = frozenset(
    {
        "INTERNAL_ERROR",
        "TEMPORARILY_UNAVAILABLE",
        "IO_ERROR",
        "SERVICE_UNDER_MAINTENANCE",
        "WORKSPACE_TEMPORARILY_UNAVAILABLE",
        "DEADLINE_EXCEEDED",
        "RESOURCE_EXHAUSTED",
        "ABORTED",
        "REQUEST_LIMIT_EXCEEDED",
        "COULD_NOT_ACQUIRE_LOCK",
    }
)


# MLflow tag names xalign writes on its runs and queries them by (README "Reproducibility").
TAG_KIND = "xalign.kind"  #: one of KIND_TRAIN, KIND_EVAL, KIND_COMPARE
KIND_TRAIN = "train"
KIND_EVAL = "eval"
KIND_COMPARE = "compare"
TAG_FINGERPRINT = "xalign.fingerprint"  #: training: RunConfig.fingerprint()
TAG_IDENTITY = "xalign.identity"  #: training: content identity (provenance.training_identity)
TAG_LINK_SYMMETRIZATIONS = "xalign.link_symmetrizations"  #: training: comma-separated
TAG_PLUGIN_PREFIX = "xalign.plugin."  #: training: + objective name -> "distribution version"
TAG_OUTPUT_DIR = "xalign.output_dir"  #: training: absolute output folder
TAG_MODEL_DIR = "xalign.model_dir"  #: training: absolute saved-model folder
TAG_FAILURE = "xalign.failure"  #: why a run FAILED or was KILLED
TAG_RESUMED_AFTER = "xalign.resumed_after"  #: a resumed run: its earlier xalign.failure
TAG_OBJECTIVE = "xalign.objective"  #: training/eval: objective(s), "+"-joined
TAG_OBJECTIVES = "xalign.objectives"  #: compare: comma-separated
TAG_TASKS = "xalign.tasks"  #: compare: comma-separated
TAG_TASK = "xalign.task"  #: eval
TAG_SEED = "xalign.seed"  #: eval, and training runs started by compare
TAG_MODEL_REF = "xalign.model_ref"  #: eval: the model as given
TAG_TRAIN_RUN_ID = "xalign.train_run_id"  #: eval: the training run of the model, or ""
TAG_EVAL_KEY = "xalign.eval_key"  #: eval: content key (evaluate.eval_key)
PARAM_VERSION = "xalign.version"  #: param of training and eval runs


class TrackingError(XalignError, RuntimeError):
    """The MLflow store cannot be reached or used; the message names the URI."""


class TrackingWarning(XalignWarning):
    """Tracking degraded (server unreachable, records kept locally) but the run goes on."""


def resolve_tracking_uri(explicit: str | None = None) -> str:
    """``--tracking-uri``/config > ``MLFLOW_TRACKING_URI`` > a local sqlite store.

    A URI whose credentials were redacted when it was saved (``http://alice:***@host`` read
    back from a run's ``config.yaml`` or tracking backlog) is replaced by
    ``MLFLOW_TRACKING_URI`` when that is the same URI with its credentials.

    Raises:
        TrackingError: a redacted URI and no environment URI that completes it.
    """
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if explicit and is_redacted(explicit):
        if env and redact_uri(env) == explicit:
            return env
        raise TrackingError(
            f"tracking URI {explicit} was saved without its credentials (xalign never "
            f"writes them): pass it again with --tracking-uri, or set MLFLOW_TRACKING_URI "
            f"(or MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD with a URI without them)"
        )
    return explicit or env or DEFAULT_TRACKING_URI


def artifact_root(uri: str) -> str | None:
    """Where a new experiment of a local sqlite store keeps its artifacts: ``mlruns`` beside
    the database file, so the store and its artifacts move together. MLflow's own default is
    ``mlruns`` in the cwd of whichever process first creates the experiment: a store opened by
    absolute path from another folder would record that folder, and its results would be lost
    with it. ``None`` for other stores (a server decides, ``--default-artifact-root``)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///") :].split("?", 1)[0]
    if not path or path == ":memory:":
        return None
    return str(Path(path).resolve().parent / "mlruns")


def git_sha(cwd: Path | None = None) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            cwd=cwd or Path(__file__).resolve().parent,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def apply_http_defaults() -> None:
    """Short MLflow HTTP retries/timeouts (:data:`HTTP_DEFAULTS`) unless already set."""
    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)


# every xalign code path that talks to MLflow imports this module first (evaluate, compare,
# align resolve run ids with their own MlflowClient): a dead server costs seconds there too
apply_http_defaults()


@contextlib.contextmanager
def _env(values: dict[str, str]) -> Iterator[None]:
    """Temporarily set environment variables (MLflow reads them at each request)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def is_transient(exc: BaseException) -> bool:
    """True for store-unavailable errors (retry later), False for rejected requests."""
    from mlflow.exceptions import MlflowException

    if isinstance(exc, MlflowException):
        return exc.error_code in TRANSIENT_CODES
    try:
        import requests

        if isinstance(exc, requests.RequestException):
            return True
    except ImportError:  # pragma: no cover - requests ships with mlflow
        pass
    return isinstance(exc, (OSError, TimeoutError, ConnectionError))


def _reason(exc: BaseException) -> str:
    """The root cause of a (long, nested) MLflow/requests error, e.g. 'Connection refused'
    (URIs in it redacted, :mod:`xalign.redact`)."""
    text = redact_text(str(exc))
    found = re.findall(r"\[Errno -?\d+\] [^\"')\]]+", text)
    if found:
        return found[-1].strip()
    for pattern in (r"Read timed out[^\"')]*", r"timed out", r"status code \d+[^\"']*"):
        m = re.search(pattern, text)
        if m:
            return m.group(0).strip()
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:297] + "..."


def _unreachable(uri: str, exc: BaseException) -> TrackingError:
    if "MLFLOW_ALLOW_FILE_STORE" in str(exc):  # MLflow 3.x refuses file stores by default
        return TrackingError(
            f"MLflow tracking store {redact_uri(uri)} is a file store, which this MLflow "
            f"refuses unless MLFLOW_ALLOW_FILE_STORE=true is set in the environment; set it, "
            f"or use a database store such as {DEFAULT_TRACKING_URI} (`mlflow "
            f"migrate-filestore` moves existing runs)"
        )
    if uri.lower().startswith("databricks"):
        fix = (
            "Check the host and credentials of that profile in ~/.databrickscfg "
            "(or DATABRICKS_HOST/DATABRICKS_TOKEN)"
        )
    else:
        fix = "Start the server (e.g. `mlflow server --host 127.0.0.1 --port 5000`)"
    return TrackingError(
        f"MLflow tracking store {redact_uri(uri)} is unreachable ({_reason(exc)}). {fix} "
        f"or pass another --tracking-uri (or MLFLOW_TRACKING_URI); the default is a local "
        f"{DEFAULT_TRACKING_URI}."
    )


def _is_local(uri: str) -> bool:
    scheme = uri.split("://", 1)[0].split("+", 1)[0].lower() if "://" in uri else ""
    return scheme in LOCAL_SCHEMES or uri.startswith("file:")


def _probe(uri: str, request: Callable[[], T]) -> T:
    """``request()`` (a first call to the store at ``uri``) with :data:`QUICK` settings, given
    at most :data:`PROBE_DEADLINE` seconds when the store is not local.

    Raises:
        TrackingError: ``request`` failed, or did not return in time (the URI redacted).
    """
    with _env(QUICK):
        try:
            if _is_local(uri):
                return request()
            # a thread left waiting on a dead host ends with the process (daemon)
            return _bounded(request, PROBE_DEADLINE, "probe", name="xalign-tracking-probe")[0]
        except BaseException as exc:
            if hasattr(exc, "worker"):  # _bounded's deadline passed
                raise _unreachable(
                    uri, TimeoutError(f"no answer within {PROBE_DEADLINE:.0f} s")
                ) from None
            raise _unreachable(uri, exc) from exc


def _bounded(
    request: Callable[[], T], deadline: float, what: str, *, name: str = "xalign-tracking-send"
) -> tuple[T, threading.Thread]:
    """``request()`` in a daemon thread, waited for at most ``deadline`` seconds; returns its
    value and the thread. Raises what ``request`` raised, or :class:`TimeoutError` (naming
    ``what``) with the still running thread as ``exc.worker``."""
    done: list[T] = []
    failed: list[BaseException] = []

    def call() -> None:
        try:
            done.append(request())
        except BaseException as exc:  # handed to the caller's thread
            failed.append(exc)

    worker = threading.Thread(target=call, name=name, daemon=True)
    worker.start()
    worker.join(deadline)
    if worker.is_alive():
        exc = TimeoutError(f"{what}: no answer within {deadline:.0f} s")
        exc.worker = worker  # type: ignore[attr-defined]
        raise exc
    if failed:
        raise failed[0]
    return done[0], worker


def check_tracking(uri: str | None) -> str:
    """Probe the store at ``uri`` in seconds; returns the resolved URI.

    Raises:
        TrackingError: the store cannot be reached (message names the URI and the cause).
    """
    from mlflow.tracking import MlflowClient

    uri = resolve_tracking_uri(uri)
    apply_http_defaults()
    _probe(uri, lambda: MlflowClient(uri).search_experiments(max_results=1))
    return uri


def get_run(run_id: str, uri: str | None = None) -> Any | None:
    """The MLflow run ``run_id`` in the store at ``uri`` (resolved), or None if it has none.

    Raises:
        TrackingError: the store cannot be reached or opened (a dead host, a missing database
            driver such as psycopg2), as :func:`check_tracking` says it (the URI redacted).
    """
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    uri = resolve_tracking_uri(uri)
    apply_http_defaults()

    def request() -> Any | None:
        client = MlflowClient(uri)
        try:
            return client.get_run(run_id)
        except MlflowException as exc:  # no such run: None; a store that fails: unreachable
            if getattr(exc, "error_code", "") in (
                "RESOURCE_DOES_NOT_EXIST",
                "INVALID_PARAMETER_VALUE",
            ):
                return None
            raise

    return _probe(uri, request)


def _quote(value: str) -> str:
    """``value`` as a single-quoted MLflow search-filter literal (tag values xalign queries by
    are hex digests and kind names: a quote in one is a bug, not input to escape)."""
    if "'" in value:
        raise ValueError(f"cannot search MLflow runs by a tag value with a quote: {value!r}")
    return f"'{value}'"


class Tracker:
    """MLflow client wrapper that never loses a record; a disabled tracker does nothing.

    Args:
        uri: tracking URI (resolved with :func:`resolve_tracking_uri`).
        experiment: experiment name (created if missing); ``None`` for replay only.
        enabled: False on non-main ranks.
        retry_interval: seconds between attempts to send a backlog while offline.

    Raises:
        TrackingError: the store is unreachable when the tracker is made.
    """

    def __init__(
        self,
        uri: str | None,
        experiment: str | None,
        *,
        enabled: bool = True,
        retry_interval: float = 30.0,
    ) -> None:
        self.enabled = enabled
        self.uri = resolve_tracking_uri(uri)
        self.shown_uri = redact_uri(self.uri)  #: the URI as printed, logged and kept
        self.experiment = experiment
        self.run_id: str | None = None
        self.retry_interval = retry_interval
        self.backlog_dir: Path | None = None
        self._staging: Path | None = None  # backlog dir before the real one is known
        self._pending: list[dict[str, Any]] = []
        self._offline = False
        self._last_try = 0.0
        self._ended: set[str] = set()
        self._stuck: threading.Thread | None = None  # a send cut at SEND_DEADLINE, still running
        if enabled:
            import mlflow
            from mlflow.tracking import MlflowClient

            apply_http_defaults()
            try:
                self.client = MlflowClient(self.uri)  # a sqlite store is opened right here
                mlflow.set_tracking_uri(self.uri)
            except Exception as exc:
                raise _unreachable(self.uri, exc) from exc
            self.experiment_id = _probe(self.uri, self._experiment_id)

    def _experiment_id(self) -> str | None:
        """The id of :attr:`experiment` (created if missing); the probe of the store."""
        if self.experiment is None:
            self.client.search_experiments(max_results=1)
            return None
        exp = self.client.get_experiment_by_name(self.experiment)
        if exp:
            return exp.experiment_id
        return self.client.create_experiment(
            self.experiment, artifact_location=artifact_root(self.uri)
        )

    # --------------------------------------------------------------- queries
    def finished_runs(self, tags: dict[str, str]) -> list[Any]:
        """FINISHED runs of this experiment whose ``tags`` all have the given values, newest
        first (MLflow ``Run`` objects)."""
        where = " and ".join(f"tags.`{k}` = {_quote(v)}" for k, v in tags.items())
        return self.client.search_runs(
            [self.experiment_id],
            f"{where} and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"],
        )

    def training_runs(self, fingerprint: str) -> list[Any]:
        """FINISHED training runs of a config (``TAG_FINGERPRINT``), newest first: the
        candidates for reuse by content identity (``TAG_IDENTITY``)."""
        return self.finished_runs({TAG_FINGERPRINT: fingerprint, TAG_KIND: KIND_TRAIN})

    def eval_runs(self, key: str) -> list[Any]:
        """FINISHED evaluation runs with content key ``key`` (``TAG_EVAL_KEY``), newest first."""
        return self.finished_runs({TAG_EVAL_KEY: key, TAG_KIND: KIND_EVAL})

    def run_params(self, run_id: str) -> dict[str, str]:
        """The params logged on ``run_id``.

        Raises:
            TrackingError: this store has no run ``run_id`` (it was tracked in another store).
        """
        return dict(self._run(run_id).data.params)

    def run_tags(self, run_id: str) -> dict[str, str]:
        """The tags of ``run_id`` (raises as :meth:`run_params`)."""
        return dict(self._run(run_id).data.tags)

    def _run(self, run_id: str) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_run(run_id)
        except MlflowException as exc:
            if getattr(exc, "error_code", "") != "RESOURCE_DOES_NOT_EXIST":
                raise
            raise TrackingError(
                f"MLflow run {run_id} is not in the tracking store {redact_uri(self.uri)}: it "
                f"was tracked in another store; pass that one with --tracking-uri (or set "
                f"MLFLOW_TRACKING_URI)"
            ) from None

    def download_artifact(self, run_id: str, path: str, dst: str | Path) -> Path:
        """Download artifact ``path`` of ``run_id`` into folder ``dst``; returns the local path.

        Raises:
            FileNotFoundError: the run has no such artifact (e.g. its artifact folder was
                deleted or moved while the store still lists the run).
        """
        from mlflow.exceptions import MlflowException

        try:
            return Path(self.client.download_artifacts(run_id, path, str(dst)))
        except MlflowException as exc:
            raise FileNotFoundError(
                f"run {run_id} of {self.shown_uri} has no artifact {path!r}: "
                f"{redact_text(exc.message)}"
            ) from exc

    # ------------------------------------------------------------------ runs
    def start(
        self,
        *,
        run_name: str | None = None,
        run_id: str | None = None,
        tags: dict[str, str] | None = None,
        parent_run_id: str | None = None,
    ) -> str | None:
        """Start a new run, or reopen ``run_id`` (resume).

        Raises:
            TrackingError: the store is unreachable (a run id is needed to go on).
        """
        if not self.enabled:
            return None
        if self._pending:
            self.flush(force=True)
        try:
            if run_id:
                self._call(lambda: self.client.update_run(run_id, status="RUNNING"), "reopen")
                self.run_id = run_id
            else:
                tags = {k: redact_text(str(v)) for k, v in (tags or {}).items()}
                if parent_run_id:
                    tags["mlflow.parentRunId"] = parent_run_id
                run = self._call(
                    lambda: self.client.create_run(
                        self.experiment_id,
                        run_name=redact_text(run_name) if run_name else run_name,
                        tags=tags,
                    ),
                    "create_run",
                )
                self.run_id = run.info.run_id
        except Exception as exc:
            if is_transient(exc):
                raise _unreachable(self.uri, exc) from exc
            raise TrackingError(
                f"MLflow store {self.shown_uri} refused to "
                f"{'reopen run ' + run_id if run_id else 'create a run'}: "
                f"{_reason(exc)}"
            ) from exc
        self._ended.discard(self.run_id)
        return self.run_id

    def log_params(self, params: dict[str, Any]) -> None:
        if self.enabled:
            self._submit(
                {
                    "op": "params",
                    "params": {k: _param_str(redact(v)) for k, v in sorted(params.items())},
                }
            )

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        if self.enabled and metrics:
            self._submit(
                {
                    "op": "metrics",
                    "step": int(step),
                    "timestamp": _now_ms(),
                    "metrics": {_metric_key(k): float(v) for k, v in metrics.items()},
                }
            )

    def set_tags(self, tags: dict[str, Any]) -> None:
        if self.enabled and tags:
            self._submit({"op": "tags", "tags": {k: redact_text(str(v)) for k, v in tags.items()}})

    def delete_tag(self, key: str) -> None:
        """Remove tag ``key`` of the run (it must exist when the record is sent)."""
        if self.enabled:
            self._submit({"op": "delete_tag", "key": key})

    def log_text(self, text: str, artifact_file: str) -> None:
        if not self.enabled:
            return
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / artifact_file
            path.write_text(redact_text(text), encoding="utf-8")
            self.log_artifact(path)

    def log_json(self, obj: Any, artifact_file: str) -> None:
        self.log_text(json.dumps(obj, indent=2, sort_keys=True, default=str), artifact_file)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        if self.enabled:
            self._submit(
                {
                    "op": "artifact",
                    "source": str(Path(path).resolve()),
                    "artifact_path": artifact_path,
                }
            )

    def end(self, status: str = "FINISHED") -> None:
        """Terminate the current run (once); warn where unsent records are kept, if any."""
        if not (self.enabled and self.run_id) or self.run_id in self._ended:
            return
        self._ended.add(self.run_id)
        self._submit({"op": "end", "status": status, "end_time": _now_ms()}, force=True)
        if self._pending:
            where = self._dir()
            warnings.warn(
                f"MLflow store {self.shown_uri} is still unreachable: {len(self._pending)} "
                f"record(s) of run {self.run_id} (status {status}) are kept in "
                f"{where / BACKLOG_FILE}; send them when it is back with "
                f"`xalign sync-tracking {where}`"
                + (
                    f" (or `xalign run --resume {where}` sends them first)"
                    if self.backlog_dir is not None and status != "FINISHED"
                    else ""
                ),
                TrackingWarning,
                stacklevel=2,
            )

    @property
    def unsent(self) -> int:
        """Number of records not yet accepted by the store."""
        return len(self._pending)

    # --------------------------------------------------------------- backlog
    def set_backlog_dir(self, directory: Path) -> None:
        """Keep unsent records in ``directory`` from now on (a run's output dir).

        A backlog already there (an earlier process of the same run) is put first and sent
        now if the store is reachable; records kept before (in memory/staging) move there.
        """
        if not self.enabled:
            return
        directory = Path(directory)
        if self.backlog_dir is not None and directory.resolve() == self.backlog_dir.resolve():
            return
        old_dir = self._dir() if (self._pending or self._staging) else None
        earlier = (
            _read_backlog(directory / BACKLOG_FILE) if (directory / BACKLOG_FILE).exists() else []
        )
        directory.mkdir(parents=True, exist_ok=True)
        moved = []
        for rec in self._pending:
            if rec["op"] == "artifact" and "file" in rec and old_dir is not None:
                src = old_dir / rec["file"]
                dst = directory / rec["file"]
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(src), str(dst))
            moved.append(rec)
        if self._staging is not None:
            rejected = self._staging / REJECTED_FILE
            if rejected.exists():
                with (directory / REJECTED_FILE).open("a", encoding="utf-8") as fh:
                    fh.write(rejected.read_text(encoding="utf-8"))
            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None
        self.backlog_dir = directory
        self._pending = earlier + moved
        self._save()
        if self._pending and self.flush(force=True) and earlier:
            warnings.warn(
                f"sent {len(earlier)} tracking record(s) kept in {directory} by an "
                f"earlier process to {self.shown_uri}",
                TrackingWarning,
                stacklevel=2,
            )

    def flush(self, *, force: bool = False) -> bool:
        """Send kept records in order; True when nothing is left.

        The first record goes out with one quick try (:data:`QUICK`); on a transport error the
        tracker stays offline and the rest waits. Without ``force`` this happens at most every
        ``retry_interval`` seconds while offline.
        """
        if not self._pending:
            self._offline = False
            return True
        now = time.monotonic()
        if self._offline and not force and now - self._last_try < self.retry_interval:
            return False
        self._last_try = now
        sent = 0
        rejected: list[dict[str, Any]] = []
        try:
            while self._pending:
                rec = self._pending[0]
                try:
                    with _env(QUICK) if sent == 0 else contextlib.nullcontext():
                        self._send(rec)
                except Exception as exc:
                    if is_transient(exc):
                        self._go_offline(exc, rec)
                        return False
                    rejected.append({**rec, "error": _reason(exc)})
                    warnings.warn(
                        f"MLflow store {self.shown_uri} rejected a kept {rec['op']} record "
                        f"of run {rec.get('run_id')}: {_reason(exc)}; moved to "
                        f"{self._dir() / REJECTED_FILE}",
                        TrackingWarning,
                        stacklevel=2,
                    )
                self._pending.pop(0)
                sent += 1
        finally:
            if sent:
                self._after_send(rejected)
        if self._offline:
            warnings.warn(
                f"MLflow store {self.shown_uri} is reachable again: {sent} kept record(s) sent",
                TrackingWarning,
                stacklevel=2,
            )
        self._offline = False
        return True

    def _submit(self, rec: dict[str, Any], *, force: bool = False) -> None:
        rec = {"uri": self.shown_uri, "run_id": self.run_id, **rec}
        if self._pending and not self.flush(force=force):
            self._keep(rec)
            return
        try:
            self._send(rec)
        except Exception as exc:
            if not is_transient(exc):
                self._keep(rec, rejected=_reason(exc))
                warnings.warn(
                    f"MLflow store {self.shown_uri} rejected {rec['op']} for run "
                    f"{self.run_id}: {_reason(exc)}; kept in "
                    f"{self._dir() / REJECTED_FILE}",
                    TrackingWarning,
                    stacklevel=3,
                )
                return
            self._keep(rec)
            self._go_offline(exc, rec)

    def _go_offline(self, exc: BaseException, rec: dict[str, Any]) -> None:
        self._last_try = time.monotonic()
        if self._offline:
            return
        self._offline = True
        where = (
            f"{self._dir() / BACKLOG_FILE}"
            if self.backlog_dir is not None
            else "memory (then the run's output dir)"
        )
        warnings.warn(
            f"MLflow store {self.shown_uri} unreachable while sending {rec['op']} "
            f"({_reason(exc)}): the run goes on; records are kept in {where} and "
            f"sent when it is back (retried every {self.retry_interval:g} s)",
            TrackingWarning,
            stacklevel=3,
        )

    def _send(self, rec: dict[str, Any]) -> None:
        directory = self._dir() if self._has_dir() else None
        deadline = SEND_DEADLINE
        if rec["op"] == "artifact":  # a large file may take its time: one more second per MB
            src = rec.get("source") or str((directory or Path(".")) / rec["file"])
            with contextlib.suppress(OSError):
                deadline += os.path.getsize(src) / 1e6
        self._call(lambda: _send_record(self.client, rec, directory), rec["op"], deadline)

    def _call(self, request: Callable[[], T], what: str, deadline: float | None = None) -> T:
        """``request()`` to the store; for a non-local store cut at ``deadline`` (default
        :data:`SEND_DEADLINE`) seconds, and refused at once while an earlier cut request is
        still waiting for its answer (a dead store then costs one deadline, not one per record).

        Raises:
            TimeoutError: cut or refused (transient: the caller keeps the record).
        """
        if _is_local(self.uri):  # a sqlite/file store: never cut (migrations, a slow disk)
            return request()
        if self._stuck is not None:
            if self._stuck.is_alive():
                raise TimeoutError(f"{what}: an earlier request to the store has not returned yet")
            self._stuck = None
        try:
            value, _ = _bounded(request, SEND_DEADLINE if deadline is None else deadline, what)
        except TimeoutError as exc:
            self._stuck = getattr(exc, "worker", None) or self._stuck
            raise
        return value

    def _has_dir(self) -> bool:
        return self.backlog_dir is not None or self._staging is not None

    def _dir(self) -> Path:
        """Where kept records live: the backlog dir, else a private staging dir."""
        if self.backlog_dir is not None:
            return self.backlog_dir
        if self._staging is None:
            self._staging = Path(tempfile.mkdtemp(prefix="xalign-tracking-backlog-"))
        return self._staging

    def _keep(self, rec: dict[str, Any], *, rejected: str | None = None) -> None:
        """Append ``rec`` to the backlog (or the rejected file), copying an artifact's file."""
        directory = self._dir()
        if rec["op"] == "artifact" and "file" not in rec:
            src = Path(rec.pop("source"))
            rel = f"{BACKLOG_FILES}/{uuid.uuid4().hex[:12]}/{src.name}"
            (directory / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, directory / rel)
            rec["file"] = rel
        if rejected is not None:
            _append(directory / REJECTED_FILE, {**rec, "error": rejected})
            return
        self._pending.append(rec)
        _append(directory / BACKLOG_FILE, rec)

    def _save(self) -> None:
        """Rewrite the backlog file from memory (after a partial flush); remove it when empty."""
        if not self._has_dir():
            return
        directory = self._dir()
        path = directory / BACKLOG_FILE
        if not self._pending:
            path.unlink(missing_ok=True)
            files = directory / BACKLOG_FILES
            if files.exists() and not (directory / REJECTED_FILE).exists():
                shutil.rmtree(files, ignore_errors=True)
            return
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in self._pending), encoding="utf-8")
        os.replace(tmp, path)

    def _after_send(self, rejected: list[dict[str, Any]]) -> None:
        for rec in rejected:
            _append(self._dir() / REJECTED_FILE, rec)
        self._save()


def _send_record(client: Any, rec: dict[str, Any], directory: Path | None) -> None:
    """Send one record (see :class:`Tracker`) with an ``MlflowClient``."""
    from mlflow.entities import Metric, Param, RunTag

    op, run_id = rec["op"], rec["run_id"]
    if op == "metrics":
        items = [Metric(k, v, rec["timestamp"], rec["step"]) for k, v in rec["metrics"].items()]
        for i in range(0, len(items), 500):
            client.log_batch(run_id, metrics=items[i : i + 500], synchronous=True)
    elif op == "params":
        items = [Param(k, v) for k, v in rec["params"].items()]
        for i in range(0, len(items), 100):
            client.log_batch(run_id, params=items[i : i + 100], synchronous=True)
    elif op == "tags":
        client.log_batch(
            run_id, tags=[RunTag(k, v) for k, v in rec["tags"].items()], synchronous=True
        )
    elif op == "delete_tag":
        client.delete_tag(run_id, rec["key"])
    elif op == "artifact":
        src = rec.get("source") or str((directory or Path(".")) / rec["file"])
        client.log_artifact(run_id, src, rec.get("artifact_path"))
    elif op == "end":
        # MLflow prints "View run ... at: URL" (the URL with its credentials) on stdout, which
        # carries only what a command documents (`xalign run`: the run id): stderr, redacted
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                client.set_terminated(run_id, status=rec["status"], end_time=rec["end_time"])
        finally:
            if out.getvalue():
                sys.stderr.write(redact_text(out.getvalue()))
    else:
        raise ValueError(f"unknown tracking record op {op!r}")


def _append(path: Path, rec: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(rec) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _read_backlog(path: Path) -> list[dict[str, Any]]:
    """Records of a backlog file; a torn last line (killed mid-append) is ignored."""
    records = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            if i == len(lines):
                break
            raise TrackingError(f"{path}:{i}: not a tracking record ({exc.msg})") from exc
        if not isinstance(rec, dict) or "op" not in rec or "run_id" not in rec:
            raise TrackingError(f"{path}:{i}: not a tracking record (needs 'op' and 'run_id')")
        records.append(rec)
    return records


def replay_backlog(directory: Path, uri: str | None = None) -> int:
    """Send a kept backlog (``DIR/tracking-backlog.jsonl``) to its store; returns records sent.

    ``uri`` overrides the URI recorded with the records. Sent records are removed from the
    file, which is deleted when empty.

    Raises:
        TrackingError: no backlog at ``directory``, a malformed line, or the store is still
            unreachable (the message says how many records were sent and which are left).
    """
    directory = Path(directory)
    if directory.name == BACKLOG_FILE:
        directory = directory.parent
    path = directory / BACKLOG_FILE
    if not path.exists():
        raise TrackingError(f"no tracking backlog at {path} (nothing to send)")
    records = _read_backlog(path)
    if not records:
        path.unlink()
        return 0
    uris = {r.get("uri") for r in records} - {None}
    target = uri or (uris.pop() if len(uris) == 1 else None)
    if target is None:
        raise TrackingError(
            f"{path}: records name several stores {sorted(map(redact_uri, uris))}; "
            f"pass --tracking-uri"
        )
    tracker = Tracker(target, None)  # a redacted URI: MLFLOW_TRACKING_URI or an error
    tracker.backlog_dir = directory
    tracker._pending = records
    total = len(records)
    if not tracker.flush(force=True):
        left = tracker.unsent
        raise TrackingError(
            f"MLflow store {tracker.shown_uri} is unreachable: sent {total - left} of "
            f"{total} record(s); {left} remain in {path}"
        )
    return total


def _now_ms() -> int:
    return int(time.time() * 1000)


def _param_str(v: Any) -> str:
    s = json.dumps(v) if isinstance(v, (list, dict)) else str(v)
    return s if len(s) <= MAX_PARAM_LEN else s[: MAX_PARAM_LEN - 3] + "..."


def _metric_key(k: str) -> str:
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in k)


def terminal_status(exc: BaseException) -> str:
    """MLflow status for a run ended by ``exc``: KILLED for SIGINT/SIGTERM, else FAILED."""
    interrupted = isinstance(exc, KeyboardInterrupt) or type(exc).__name__ == "TrainingInterrupted"
    return "KILLED" if interrupted else "FAILED"
