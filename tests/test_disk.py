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
