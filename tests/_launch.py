"""Launch scaffolding of the multi-process tests: ``xalign run`` on 1 or more gloo ranks
(``accelerate launch --multi_gpu``, CPU), raw torch.distributed rank environments, and the
"2 ranks end with the 1-rank weights" check."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import as_sets, migrated_sqlite_uri
from safetensors.torch import load_file

XALIGN = Path(sys.executable).with_name("xalign")


def accelerate_launch(world: int) -> list[str]:
    """The command prefix that starts ``world`` gloo processes on this machine."""
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        str(world),
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
    ]


def launch(
    args: list[str],
    world: int,
    *,
    timeout: int = 600,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> dict:
    """``xalign run -q --json ARGS`` on ``world`` gloo ranks (1: a plain process), with
    ``OMP_NUM_THREADS=1``, Python's fault handler (a rank killed by a signal prints where each
    of its threads was) and ``env`` added; asserts it succeeds and only rank 0 reports.
    Returns rank 0's JSON report."""
    cmd = [str(XALIGN), "run", "-q", "--json", *args]
    if world > 1:
        cmd = [*accelerate_launch(world), *cmd]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1", **(env or {})}
    done = subprocess.run(
        cmd, capture_output=True, text=True, env=full_env, timeout=timeout, cwd=cwd
    )
    assert done.returncode == 0, failure_text(done.stderr)
    outs = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(outs) == 1, "only rank 0 reports"
    return outs[0]


def failure_text(stderr: str, head: int = 2000, tail: int = 6000) -> str:
    """The start and the end of a failed launch's stderr (a rank's traceback or fault dump
    can sit before the launcher's own report)."""
    if len(stderr) <= head + tail:
        return stderr
    return f"{stderr[:head]}\n[... {len(stderr) - head - tail} characters ...]\n{stderr[-tail:]}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_env(rank: int, world: int, port: int) -> dict[str, str]:
    """The environment of rank ``rank`` of a raw torch.distributed group on 127.0.0.1."""
    return {
        **os.environ,
        "RANK": str(rank),
        "LOCAL_RANK": str(rank),
        "WORLD_SIZE": str(world),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "OMP_NUM_THREADS": "1",
    }


def model_weights(out: dict) -> dict[str, torch.Tensor]:
    """The saved weights of the run that reported ``out``."""
    return load_file(str(Path(out["output_dir"]) / "model" / "model.safetensors"))


def assert_same_training(
    a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], init_dir: Path
) -> None:
    """``a`` moved away from the weights in ``init_dir`` and ``b`` is ``a`` up to float32
    reduction-order noise (0.2 % of the largest move)."""
    init = load_file(str(init_dir / "model.safetensors"))
    moved = max((a[k] - init[k]).abs().max().item() for k in a)
    assert moved > 1e-3
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst <= 2e-3 * moved, (worst, moved)


def two_ranks_vs_one(objective: str, tiny_model: Path, tmp_path: Path, extra: list[str]) -> None:
    """2 gloo ranks end with the 1-rank weights and loss (same global batch). 17 pairs in
    batches of 8: the last global batch has 1 pair, so rank 1's shard of it is empty."""
    from mlflow.tracking import MlflowClient

    common = [
        "-o",
        objective,
        *as_sets(
            [
                f"model.name={tiny_model}",
                "data.limit=17",
                "data.languages=[de]",
                "train.batch_size=8",
                "train.optimizer=sgd",
                "train.max_grad_norm=null",
                f"tracking.uri={migrated_sqlite_uri(tmp_path / 'm.db')}",
                *extra,
            ]
        ),
    ]
    outs = [launch([*common, "--set", f"train.output_dir={tmp_path / str(w)}"], w) for w in (1, 2)]
    assert_same_training(model_weights(outs[0]), model_weights(outs[1]), tiny_model)
    client = MlflowClient(f"sqlite:///{tmp_path / 'm.db'}")
    history = [
        [m.value for m in sorted(client.get_metric_history(o["run_id"], key), key=lambda m: m.step)]
        for o in outs
        for key in (f"de-en/{objective}",)
    ]
    assert len(history[0]) >= 2 and history[0][0] > 0
    assert history[1] == pytest.approx(history[0], rel=1e-4, abs=1e-6)
