"""Atomic training checkpoints: weights (safetensors), optimizer, scheduler, RNG, data position.

A checkpoint is written into ``step-NNNNNNN.partial`` and renamed into place only when complete;
``latest`` (also replaced atomically) names the newest complete one. A crash mid-write leaves
the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_model, save_model

LATEST = "latest"


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def partial_dir(root: Path, step: int) -> Path:
    return root / f"step-{step:07d}.partial"


def write_rank_state(root: Path, step: int, rank: int) -> None:
    """Every rank writes its own RNG state into the partial checkpoint (before the barrier)."""
    d = partial_dir(root, step)
    d.mkdir(parents=True, exist_ok=True)
    torch.save(rng_state(), d / f"rng-{rank}.pt")


def finalize_checkpoint(root: Path, step: int, *, module: torch.nn.Module,
                        optimizer: torch.optim.Optimizer, scheduler: Any,
                        state: dict[str, Any], config_yaml: str, keep: int = 2) -> Path:
    """Rank 0: write the shared state into the partial dir, rename it, update ``latest``."""
    d = partial_dir(root, step)
    d.mkdir(parents=True, exist_ok=True)
    save_model(module, str(d / "model.safetensors"))
    torch.save(optimizer.state_dict(), d / "optimizer.pt")
    torch.save(scheduler.state_dict(), d / "scheduler.pt")
    (d / "config.yaml").write_text(config_yaml, encoding="utf-8")
    (d / "state.json").write_text(json.dumps(state, indent=2, default=str), encoding="utf-8")
    final = root / f"step-{step:07d}"
    if final.exists():
        shutil.rmtree(final)
    os.replace(d, final)
    _write_atomic(root / LATEST, final.name)
    _prune(root, keep)
    return final


def _prune(root: Path, keep: int) -> None:
    if keep <= 0:
        return
    done = sorted(p for p in root.glob("step-*") if p.is_dir() and not p.name.endswith(".partial"))
    for old in done[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def find_checkpoint(path: Path) -> Path:
    """A checkpoint dir, or the latest complete checkpoint under a run/checkpoints dir."""
    path = Path(path)
    for candidate in (path, path / "checkpoints"):
        if (candidate / "state.json").exists():
            return candidate
        latest = candidate / LATEST
        if latest.exists():
            ckpt = candidate / latest.read_text(encoding="utf-8").strip()
            if (ckpt / "state.json").exists():
                return ckpt
    raise FileNotFoundError(f"no complete checkpoint found at {path} (looked for state.json "
                            f"or a 'latest' pointer in it and in {path / 'checkpoints'})")


def load_checkpoint(ckpt: Path, *, module: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, rank: int) -> dict[str, Any]:
    """Restore everything written by :func:`finalize_checkpoint`; returns ``state.json``."""
    load_model(module, str(ckpt / "model.safetensors"))
    optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=False))
    scheduler.load_state_dict(torch.load(ckpt / "scheduler.pt", weights_only=False))
    rng_file = ckpt / f"rng-{rank}.pt"
    if rng_file.exists():
        set_rng_state(torch.load(rng_file, weights_only=False))
    return json.loads((ckpt / "state.json").read_text(encoding="utf-8"))
