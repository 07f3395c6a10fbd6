"""What a finished run keeps on disk (train.keep_optimizer_state) and `xalign clean`."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_json

from xalign.checkpoint import find_checkpoint, slim_finished

pytestmark = pytest.mark.usefixtures("one_thread")


def run(smoke_overrides, *sets: str) -> Path:
    args = ["-o", "sinkhorn"]
    for item in [*smoke_overrides, "train.checkpoint_every=1", "train.keep_checkpoints=0", *sets]:
        args += ["--set", item]
    return Path(run_json(args)["output_dir"])


def files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_finished_run_with_a_model_keeps_no_checkpoint(smoke_overrides):
    out = run(smoke_overrides)
    assert (out / "model" / "model.safetensors").is_file()
    assert not (out / "checkpoints").exists()


def test_finished_run_without_a_model_keeps_the_final_weights_only(smoke_overrides):
    out = run(smoke_overrides, "train.save_model=false")
    assert not (out / "model").exists()
    (final,) = [p.name for p in (out / "checkpoints").iterdir() if p.is_dir()]
    assert final == (out / "checkpoints" / "latest").read_text()
    kept = files(out / "checkpoints" / final)
    assert "model.safetensors" in kept and "optimizer.pt" not in kept


def test_keep_optimizer_state_keeps_every_checkpoint_and_resumes(smoke_overrides):
    out = run(smoke_overrides, "train.keep_optimizer_state=true")
    steps = sorted(p.name for p in (out / "checkpoints").iterdir() if p.is_dir())
    assert steps == ["step-0000001", "step-0000002"]  # keep_checkpoints=0: all
    assert (find_checkpoint(out) / "optimizer.pt").is_file()


def test_slim_finished_leaves_the_latest_weights(tmp_path):
    root = tmp_path / "checkpoints"
    for step in (1, 2):
        d = root / f"step-{step:07d}"
        d.mkdir(parents=True)
        for name in ("model.safetensors", "optimizer.pt", "scheduler.pt", "state.json"):
            (d / name).write_text("x")
    (root / "latest").write_text("step-0000002")
    slim_finished(root, keep_weights=True)
    assert files(root) == [
        "latest",
        "step-0000002/model.safetensors",
        "step-0000002/scheduler.pt",
        "step-0000002/state.json",
    ]
    slim_finished(root, keep_weights=False)
    assert not root.exists()


def test_slim_finished_touches_nothing_without_a_complete_latest(tmp_path):
    root = tmp_path / "checkpoints"
    (root / "step-0000001").mkdir(parents=True)
    (root / "step-0000001" / "optimizer.pt").write_text("x")
    slim_finished(root, keep_weights=True)  # no latest pointer
    (root / "latest").write_text("step-0000009")  # names a missing checkpoint
    slim_finished(root, keep_weights=True)
    assert files(root) == ["latest", "step-0000001/optimizer.pt"]


# --- xalign clean ---------------------------------------------------------------------------
def fake_run(root: Path, name: str, days_old: float, *, model: bool = True) -> Path:
    import os
    import time

    run = root / name
    (run / "checkpoints" / "step-0000002").mkdir(parents=True)
    (run / "checkpoints" / "step-0000002" / "optimizer.pt").write_bytes(b"o" * 2000)
    (run / "config.yaml").write_text("train: {}\n")
    if model:
        (run / "model").mkdir()
        (run / "model" / "model.safetensors").write_bytes(b"m" * 1000)
    when = time.time() - days_old * 86400
    for p in [run, *run.rglob("*")]:
        os.utime(p, (when, when))
    return run


def clean(*args: str):
    from typer.testing import CliRunner

    from xalign.cli import app

    return CliRunner().invoke(app, ["clean", *args])


@pytest.fixture
def outputs(tmp_path) -> Path:
    root = tmp_path / "outputs"
    fake_run(root, "old", 10)
    fake_run(root, "old-nomodel", 10, model=False)
    fake_run(root, "new", 1)
    (root / "compare" / "abc").mkdir(parents=True)  # not a run folder: never touched
    (root / "notes.txt").write_text("mine")
    return root


def test_clean_dry_run_lists_and_removes_nothing(outputs):
    result = clean(str(outputs), "--dry-run")
    assert result.exit_code == 0, result.output
    assert f"would remove {outputs / 'old'} (3.0 kB, 10.0 days old)" in result.output
    assert f"would remove {outputs / 'old-nomodel'} (2.0 kB" in result.output
    assert "new" not in result.stdout
    assert "would remove 2 folder(s), 5.0 kB" in result.output
    assert sorted(p.name for p in outputs.iterdir()) == [
        "compare",
        "new",
        "notes.txt",
        "old",
        "old-nomodel",
    ]


def test_clean_removes_runs_older_than_the_limit(outputs):
    assert clean(str(outputs), "--older-than", "0.5").exit_code == 0
    assert sorted(p.name for p in outputs.iterdir()) == ["compare", "notes.txt"]


def test_clean_keep_models_removes_only_checkpoints_beside_a_model(outputs):
    result = clean(str(outputs), "--keep-models")
    assert result.exit_code == 0, result.output
    assert (outputs / "old" / "model" / "model.safetensors").is_file()
    assert not (outputs / "old" / "checkpoints").exists()
    assert (outputs / "old-nomodel" / "checkpoints").is_dir()  # its only weights
    assert (outputs / "new" / "checkpoints").is_dir()  # too recent


def test_clean_names_a_missing_folder(tmp_path):
    result = clean(str(tmp_path / "nope"))
    assert result.exit_code == 1
    assert f"error: {tmp_path / 'nope'}: no such folder" in result.output


def test_resume_against_another_tracking_store_names_the_store(smoke_overrides, tmp_path):
    """A run resumed with a --tracking-uri that never saw it: an error line naming the run and
    the store (redacted), not MLflow's raw 'Run ... not found' traceback."""
    from typer.testing import CliRunner

    from xalign.cli import app

    out = run(smoke_overrides, "train.keep_optimizer_state=true")
    other = f"sqlite:///{tmp_path / 'other.db'}"
    result = CliRunner().invoke(app, ["run", "-q", "--resume", str(out), "--tracking-uri", other])
    assert result.exit_code == 1, result.output
    said = " ".join(result.output.split())
    assert f"error: MLflow run {out.name} is not in the tracking store {other}" in said
    assert "--tracking-uri" in said and "Traceback" not in said
