"""The documented smoke run on the embedded model: exits 0 and lands in MLflow with metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from xalign.cli import app
from xalign.plugins import reset_registry

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.integration
def test_smoke_config_on_embedded_model(tmp_path, tracking_uri, monkeypatch):
    from mlflow.tracking import MlflowClient

    reset_registry()
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["run", "--objective", "sinkhorn", "--config",
                                      str(ROOT / "configs" / "smoke.yaml"), "--json", "-q",
                                      "--tracking-uri", tracking_uri])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout.strip().splitlines()[-1])
    run = MlflowClient(tracking_uri).get_run(out["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["model.name"] == "packaged:multilingual-e5-small"
    for key in ("de-en/sinkhorn", "fr-en/sinkhorn", "de-en/reg", "loss"):
        assert key in run.data.metrics
    assert 0 < run.data.metrics["de-en/sinkhorn"] < 100
