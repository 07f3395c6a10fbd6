"""LoRA vs full fine-tuning: trainable parameters, step time, peak memory, checkpoint size.

Keys (``python -m benchmarks --only lora``), each measured for full fine-tuning (``_full``) and
LoRA (``model.lora: {r: 8, alpha: 16}``, peft's default targets: BERT's ``query``/``value``):

- ``lora_trainable_params[_full]``: parameters the optimizer updates; ``lora_trainable_fraction``
  = LoRA / full.
- ``lora_step_s[_full]``: median seconds of one optimizer step (encode source, target and
  the frozen c0, sinkhorn + drift, backward, Adam), from the time between two consecutive
  steps' metric records, the first step excluded; ``lora_step_time_ratio`` = LoRA / full.
- ``lora_peak_rss_gib[_full]``: peak resident memory of the training process (``VmHWM``; each
  run in a fresh subprocess); ``lora_peak_mem_ratio`` = LoRA / full; with a GPU also
  ``lora_peak_cuda_gib[_full]`` and ``lora_peak_cuda_mem_ratio``
  (``torch.cuda.max_memory_allocated``).
- ``lora_checkpoint_mb[_full]``: size of the final checkpoint's ``model.safetensors`` (LoRA:
  the adapter only).

Full mode: the embedded ``packaged:multilingual-e5-small``, the demo corpus de-en, batch 24,
6 optimizer steps. ``--quick``: a tiny random BERT, batch 8, 4 steps (numbers mean nothing).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.training import E5, ROOT, peak_rss_gib, random_bert

LORA = "model.lora={r: 8, alpha: 16}"


def _overrides(quick: bool, tmp: Path, lora: bool) -> list[str]:
    name = "lora" if lora else "full"
    common = [
        "data.languages=[de]",
        "train.grad_accum=1",
        "train.save_model=false",
        f"train.output_dir={tmp / name}",
        f"tracking.uri=sqlite:///{tmp / 'mlflow.db'}",
        *([LORA] if lora else []),
    ]
    if quick:
        model = tmp / "model"
        if not model.exists():
            random_bert(model, hidden=64, layers=2, vocab=2000)
        return [f"model.name={model}", "data.limit=32", "train.batch_size=8",
                "train.max_steps=4", *common]  # fmt: skip
    return [f"model.name={E5}", "data.limit=144", "train.batch_size=24", "train.max_steps=6",
            *common]  # fmt: skip


def child(overrides: list[str]) -> dict[str, float]:
    """Train in this process; trainable parameters, step times, peaks, checkpoint size."""
    from xalign import recipe as trainer
    from xalign.config import load_config
    from xalign.tracking import Tracker

    stamps: list[float] = []
    counted: dict[str, int] = {}
    log_metrics = Tracker.log_metrics
    setup_optimizer = trainer.AlignmentRecipe._setup_optimizer

    def timed(self: Tracker, metrics: dict[str, float], step: int) -> None:
        stamps.append(time.perf_counter())
        log_metrics(self, metrics, step)

    def counting(self: trainer.AlignmentRecipe, *args: Any, **kwargs: Any) -> Any:
        built = setup_optimizer(self, *args, **kwargs)  # (module, ddp, params, optimizer)
        counted["trainable"] = sum(p.numel() for p in built[2])
        return built

    Tracker.log_metrics = timed  # type: ignore[method-assign]
    trainer.AlignmentRecipe._setup_optimizer = counting  # type: ignore[method-assign]
    result = trainer.run_training(load_config(None, overrides), show_progress=False)
    steps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    ckpt = next((result.output_dir / "checkpoints").glob("step-*/model.safetensors"))
    out = {
        "trainable": float(counted["trainable"]),
        "step_s": statistics.median(steps),
        "peak_rss_gib": peak_rss_gib(),
        "checkpoint_mb": ckpt.stat().st_size / 2**20,
    }
    if torch.cuda.is_available():
        out["peak_cuda_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def _run(quick: bool, tmp: Path, lora: bool) -> dict[str, float]:
    args = [sys.executable, "-m", "benchmarks.lora", *_overrides(quick, tmp, lora)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"} if quick else None
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"lora benchmark child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def lora_cost(quick: bool) -> dict[str, float]:
    """The ``lora_*`` keys (see the module docstring)."""
    from mlflow.tracking import MlflowClient

    with tempfile.TemporaryDirectory(prefix="xalign-lora-") as tmp:
        # the store's schema migrations run here, in neither measured process
        MlflowClient(f"sqlite:///{Path(tmp) / 'mlflow.db'}").search_experiments(max_results=1)
        full = _run(quick, Path(tmp), lora=False)
        lora = _run(quick, Path(tmp), lora=True)
    out: dict[str, float] = {}
    for key, ratio in (
        ("trainable", "lora_trainable_fraction"),
        ("step_s", "lora_step_time_ratio"),
        ("peak_rss_gib", "lora_peak_mem_ratio"),
        ("checkpoint_mb", "lora_checkpoint_ratio"),
        ("peak_cuda_gib", "lora_peak_cuda_mem_ratio"),
    ):
        if key not in full:
            continue
        name = "lora_trainable_params" if key == "trainable" else f"lora_{key}"
        out[f"{name}_full"] = round(full[key], 4)
        out[name] = round(lora[key], 4)
        out[ratio] = round(lora[key] / full[key], 5)
    return out


if __name__ == "__main__":
    print(json.dumps(child(sys.argv[1:])))
