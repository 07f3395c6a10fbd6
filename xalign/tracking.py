"""MLflow logging for runs (rank 0 only): params, per-step metrics, artifacts, tags."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
MAX_PARAM_LEN = 6000


def resolve_tracking_uri(explicit: str | None = None) -> str:
    """``--tracking-uri``/config > ``MLFLOW_TRACKING_URI`` > a local sqlite store."""
    return explicit or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def git_sha(cwd: Path | None = None) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=cwd or Path(__file__).resolve().parent, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


class Tracker:
    """Thin wrapper over the MLflow client; a disabled tracker (other ranks) does nothing."""

    def __init__(self, uri: str | None, experiment: str, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self.uri = resolve_tracking_uri(uri)
        self.experiment = experiment
        self.run_id: str | None = None
        if enabled:
            import mlflow
            from mlflow.tracking import MlflowClient

            self.client = MlflowClient(self.uri)
            mlflow.set_tracking_uri(self.uri)
            exp = self.client.get_experiment_by_name(experiment)
            self.experiment_id = (exp.experiment_id if exp else
                                  self.client.create_experiment(experiment))

    def start(self, *, run_name: str | None = None, run_id: str | None = None,
              tags: dict[str, str] | None = None, parent_run_id: str | None = None) -> str | None:
        """Start a new run, or reopen ``run_id`` (resume)."""
        if not self.enabled:
            return None
        if run_id:
            self.client.update_run(run_id, status="RUNNING")
            self.run_id = run_id
        else:
            tags = dict(tags or {})
            if parent_run_id:
                tags["mlflow.parentRunId"] = parent_run_id
            run = self.client.create_run(self.experiment_id, run_name=run_name, tags=tags)
            self.run_id = run.info.run_id
        return self.run_id

    def log_params(self, params: dict[str, Any]) -> None:
        if not self.enabled:
            return
        from mlflow.entities import Param

        items = [Param(k, _param_str(v)) for k, v in sorted(params.items())]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i:i + 100], synchronous=True)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        if not self.enabled or not metrics:
            return
        import time

        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        items = [Metric(_metric_key(k), float(v), ts, step) for k, v in metrics.items()]
        for i in range(0, len(items), 500):
            self.client.log_batch(self.run_id, metrics=items[i:i + 500])

    def set_tags(self, tags: dict[str, Any]) -> None:
        if not self.enabled:
            return
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, str(v))

    def log_text(self, text: str, artifact_file: str) -> None:
        if not self.enabled:
            return
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / artifact_file
            path.write_text(text, encoding="utf-8")
            self.client.log_artifact(self.run_id, str(path))

    def log_json(self, obj: Any, artifact_file: str) -> None:
        self.log_text(json.dumps(obj, indent=2, sort_keys=True, default=str), artifact_file)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        if self.enabled:
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def end(self, status: str = "FINISHED") -> None:
        if self.enabled and self.run_id:
            self.client.set_terminated(self.run_id, status=status)


def _param_str(v: Any) -> str:
    s = json.dumps(v) if isinstance(v, (list, dict)) else str(v)
    return s if len(s) <= MAX_PARAM_LEN else s[: MAX_PARAM_LEN - 3] + "..."


def _metric_key(k: str) -> str:
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in k)
