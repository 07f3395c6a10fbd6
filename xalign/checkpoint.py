"""Atomic training checkpoints: weights (safetensors), optimizer, scheduler, RNG, data position.

Layout of ``<run>/checkpoints/``: complete checkpoints ``step-NNNNNNN/`` and a ``latest`` file
naming the newest one. Writing step N (every file fsync'd, ``state.json`` last):

1. everything goes into ``step-N.partial/``;
2. an existing ``step-N/`` is renamed aside to ``step-N.old/`` (never deleted first);
3. ``step-N.partial/`` is renamed to ``step-N/``;
4. ``latest`` is replaced atomically (write a temp file, ``os.replace``);
5. ``step-N.old/``, stale ``.partial``/``.old`` folders and checkpoints beyond ``keep`` go.

A process killed at any point leaves a state :func:`find_checkpoint` resolves to a complete
checkpoint (``latest``'s target, else its ``.old`` twin, else the newest complete one). An I/O
error (disk full, read-only) removes the ``.partial`` folder, puts ``step-N.old`` back and raises
:class:`CheckpointError` naming the path and the OS reason.

Weights: ``model.safetensors`` holds every parameter of the module, or (``trainable_only``,
LoRA runs) only those that train, marked by the file's metadata ``xalign.weights=trainable``;
the frozen rest is the base model, whose identity ``state.json`` records.

Trust: nothing here unpickles code. Tensors and optimizer/scheduler state load with
``torch.load(weights_only=True)`` (tensors and plain containers only); RNG state is JSON.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pickle
import random
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, load_model, save_file, save_model

from xalign.errors import XalignError

LATEST = "latest"
STATE = "state.json"
#: Files of a complete checkpoint (plus ``rng-<rank>.json`` per rank).
REQUIRED = ("model.safetensors", "optimizer.pt", "scheduler.pt", STATE)
_STEP = re.compile(r"^step-(\d+)(\.old)?$")


class CheckpointError(XalignError, RuntimeError):
    """A checkpoint cannot be written or loaded; the message names the file and the reason."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """No complete checkpoint where one was expected (``--resume DIR``)."""


# ----------------------------------------------------------------------------- low-level I/O
def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not supported everywhere (e.g. some network FS)
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_file(path: Path) -> None:
    with path.open("rb+") as fh:
        os.fsync(fh.fileno())


def _write_text(path: Path, text: str) -> None:
    with path.open("w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def _torch_save(obj: Any, path: Path) -> None:
    with path.open("wb") as fh:  # our own handle: a write error is a plain OSError
        torch.save(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    _write_text(tmp, text)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def io_reason(exc: BaseException, directory: Path) -> str:
    """The OS-level reason of a write failure, e.g. ``[Errno 28] No space left on device``.

    torch/safetensors wrap errors of their own file writers in messages such as ``enforce
    fail at inline_container.cc``; then a small probe write into ``directory`` (and the free
    space) tells what the OS refuses.
    """
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"[Errno {exc.errno}] {exc.strerror or os.strerror(exc.errno)}"
    probe = directory / f".write-probe-{os.getpid()}"
    try:
        with probe.open("wb") as fh:
            fh.write(b"\0" * 65536)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as probe_exc:
        if probe_exc.errno is not None:
            return f"[Errno {probe_exc.errno}] {probe_exc.strerror}"
        return str(probe_exc)
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    with contextlib.suppress(OSError):
        free = shutil.disk_usage(directory).free
        if free < 64 << 20:
            return f"[Errno {errno.ENOSPC}] {os.strerror(errno.ENOSPC)} ({free >> 20} MiB free)"
    text = " ".join(str(exc).split())
    return text if len(text) <= 300 else text[:297] + "..."


def check_writable(directory: Path) -> None:
    """Create ``directory`` if needed and write/remove a small probe file in it.

    Raises:
        CheckpointError: it cannot be written (names the path and the OS reason).
    """
    directory = Path(directory)
    probe = directory / f".write-probe-{os.getpid()}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with probe.open("wb") as fh:
            fh.write(b"\0" * 4096)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise CheckpointError(
            f"cannot write to the output folder {directory}: {io_reason(exc, directory)}"
        ) from exc
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()


# ----------------------------------------------------------------------------- RNG (JSON)
def rng_state() -> dict[str, Any]:
    """Python, numpy, torch (and CUDA) RNG states as JSON-safe lists and numbers."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": version, "state": list(internal), "gauss_next": gauss},
        "numpy": {
            "name": name,
            "keys": np.asarray(keys).tolist(),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state().tolist(),
    }
    if torch.cuda.is_available():
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`rng_state` output (raises ``KeyError``/``TypeError``/``ValueError``)."""
    py = state["python"]
    random.setstate((int(py["version"]), tuple(int(x) for x in py["state"]), py["gauss_next"]))
    npy = state["numpy"]
    np.random.set_state(
        (
            str(npy["name"]),
            np.asarray(npy["keys"], dtype=np.uint32),
            int(npy["pos"]),
            int(npy["has_gauss"]),
            float(npy["cached_gaussian"]),
        )
    )
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])


# ----------------------------------------------------------------------------- writing
TRAINABLE_META = {"xalign.weights": "trainable"}


def trainable_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The parameters of ``module`` that train (``requires_grad``), by name, contiguous."""
    return {
        name: p.detach().contiguous() for name, p in module.named_parameters() if p.requires_grad
    }


def _load_weights(module: torch.nn.Module, path: Path) -> None:
    """Load ``model.safetensors`` into ``module``: all weights, or the trainable ones only.

    Raises:
        ValueError: a trainable-only file whose names differ from the module's trainable
            parameters (another adapter layout or model), or a tensor of a non-floating dtype
            (int8, bool, ...) for a floating-point one of the module (the first one named).
    """
    from xalign.encoders.weight_files import non_float_tensors

    floats = {k for k, v in module.state_dict().items() if v.is_floating_point()}
    for key, dtype in non_float_tensors(path):  # load_model would cast them silently
        if key in floats:
            raise ValueError(f"tensor {key} has dtype {dtype}, not a floating-point dtype")
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata() or {}
    if meta.get("xalign.weights") != "trainable":
        load_model(module, str(path))
        return
    saved = load_file(str(path))
    wanted = set(trainable_state(module))
    if set(saved) != wanted:
        missing, extra = sorted(wanted - set(saved)), sorted(set(saved) - wanted)
        raise ValueError(
            f"trainable weights differ from this run's: missing {missing[:3]}, "
            f"unexpected {extra[:3]}"
        )
    module.load_state_dict(saved, strict=False)


def partial_dir(root: Path, step: int) -> Path:
    return root / f"step-{step:07d}.partial"


def write_rank_state(root: Path, step: int, rank: int) -> None:
    """Every rank writes its own RNG state into the partial checkpoint (before the barrier).

    Raises:
        CheckpointError: the file cannot be written (path and OS reason in the message).
    """
    d = partial_dir(root, step)
    try:
        d.mkdir(parents=True, exist_ok=True)
        _write_text(d / f"rng-{rank}.json", json.dumps(rng_state()))
    except OSError as exc:
        shutil.rmtree(d, ignore_errors=True)
        raise CheckpointError(
            f"cannot write checkpoint {d}: {io_reason(exc, root)}; the previous checkpoint is kept"
        ) from exc


def finalize_checkpoint(
    root: Path,
    step: int,
    *,
    module: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    state: dict[str, Any],
    config_yaml: str,
    keep: int = 2,
    trainable_only: bool = False,
) -> Path:
    """Rank 0: write the shared state, install ``step-N`` and point ``latest`` at it.

    See the module docstring for the order of operations.

    Raises:
        CheckpointError: a write failed; the partial folder is removed and any previous
            ``step-N`` restored, so the last complete checkpoint is intact.
    """
    d = partial_dir(root, step)
    final = root / f"step-{step:07d}"
    aside = root / f"{final.name}.old"
    moved_aside = False
    try:
        d.mkdir(parents=True, exist_ok=True)
        if trainable_only:
            save_file(
                trainable_state(module), str(d / "model.safetensors"), metadata=TRAINABLE_META
            )
        else:
            save_model(module, str(d / "model.safetensors"))
        _fsync_file(d / "model.safetensors")
        _torch_save(optimizer.state_dict(), d / "optimizer.pt")
        _torch_save(scheduler.state_dict(), d / "scheduler.pt")
        _write_text(d / "config.yaml", config_yaml)
        _write_text(d / STATE, json.dumps(state, indent=2, default=str))  # last: completeness
        _fsync_dir(d)
        if final.exists():
            if aside.exists():  # left by a crash after step 3: final is the newer, complete one
                shutil.rmtree(aside)
            os.replace(final, aside)
            moved_aside = True
        os.replace(d, final)
        _fsync_dir(root)
        _write_atomic(root / LATEST, final.name)
    except Exception as exc:  # OSError, or a library writer's wrapped error
        reason = io_reason(exc, root)
        shutil.rmtree(d, ignore_errors=True)
        if moved_aside and not final.exists():
            with contextlib.suppress(OSError):
                os.replace(aside, final)
        raise CheckpointError(
            f"cannot write checkpoint {final}: {reason}; the previous "
            f"checkpoint ({_latest_name(root)}) is kept"
        ) from exc
    shutil.rmtree(aside, ignore_errors=True)
    _prune(root, keep, current=final.name)
    return final


def _latest_name(root: Path) -> str:
    try:
        return (root / LATEST).read_text(encoding="utf-8").strip() or "none"
    except OSError:
        return "none"


def _prune(root: Path, keep: int, current: str) -> None:
    """Drop stale ``.partial``/``.old`` folders and complete checkpoints beyond ``keep``."""
    for p in root.iterdir():
        if (
            p.is_dir()
            and p.name != current
            and (p.name.endswith(".partial") or p.name.endswith(".old"))
        ):
            shutil.rmtree(p, ignore_errors=True)
    if keep <= 0:
        return
    done = sorted(
        (int(m.group(1)), p)
        for p in root.iterdir()
        if (m := _STEP.match(p.name)) and not m.group(2) and p.is_dir()
    )
    for _, old in done[:-keep]:
        if old.name != current:
            shutil.rmtree(old, ignore_errors=True)


def slim_finished(root: Path, *, keep_weights: bool) -> None:
    """Free the disk a FINISHED run's ``checkpoints`` folder ``root`` holds
    (``train.keep_optimizer_state: false``): the whole folder when ``keep_weights`` is False
    (the saved ``model/`` holds the weights), else every checkpoint but the latest, and that
    one's ``optimizer.pt`` (Adam moments: twice the weights). Call it only after the run's
    last step is written: what is left can no longer be resumed."""
    if not root.is_dir():
        return
    if not keep_weights:
        shutil.rmtree(root, ignore_errors=True)
        return
    latest = _latest_name(root)
    if not is_complete(root / latest):  # no pointer to a complete checkpoint: touch nothing
        return
    for p in root.iterdir():
        if p.is_dir() and p.name != latest:
            shutil.rmtree(p, ignore_errors=True)
    (root / latest / "optimizer.pt").unlink(missing_ok=True)


# ----------------------------------------------------------------------------- finding
def is_complete(ckpt: Path) -> bool:
    """All of :data:`REQUIRED` present (``state.json`` is written last)."""
    return ckpt.is_dir() and all((ckpt / name).is_file() for name in REQUIRED)


def _recover(root: Path) -> Path | None:
    """The checkpoint to resume from in a ``checkpoints`` folder, whatever state it is in."""
    name = None
    with contextlib.suppress(OSError):
        name = (root / LATEST).read_text(encoding="utf-8").strip() or None
    if name and "/" not in name and name not in (".", ".."):
        for candidate in (root / name, root / f"{name}.old"):
            if is_complete(candidate):
                return candidate
    found = (
        sorted(
            (int(m.group(1)), not m.group(2), p)
            for p in root.iterdir()
            if (m := _STEP.match(p.name)) and is_complete(p)
        )
        if root.is_dir()
        else []
    )
    if not found:
        return None
    best = found[-1][2]
    if name is not None:
        warnings.warn(
            f"{root / LATEST} names {name!r}, which is missing or incomplete; "
            f"using the newest complete checkpoint {best.name}",
            stacklevel=3,
        )
    return best


def find_checkpoint(path: Path) -> Path:
    """A checkpoint dir, or the checkpoint to resume from under a run/checkpoints dir.

    Raises:
        CheckpointNotFoundError: nothing complete there (also a ``FileNotFoundError``).
    """
    path = Path(path)
    for candidate in (path, path / "checkpoints"):
        if (candidate / STATE).exists():
            if is_complete(candidate):
                return candidate
            _refuse_incomplete(candidate)
        if candidate.is_dir():
            found = _recover(candidate)
            if found is not None:
                return found
    finished = _finished_run(path)
    if finished is not None:
        raise CheckpointNotFoundError(f"{path} is a finished run ({finished}); {_DROPPED}")
    raise CheckpointNotFoundError(
        f"no complete checkpoint found at {path} (looked for {STATE} or a 'latest' pointer in "
        f"it and in {path / 'checkpoints'})"
    )


def _refuse_incomplete(ckpt: Path) -> None:
    """Raise for a checkpoint folder ``ckpt`` given itself that has ``state.json`` but not
    every file of :data:`REQUIRED`: a finished run's slimmed last checkpoint (only
    ``optimizer.pt`` dropped, :func:`slim_finished`), else a damaged one."""
    lacking = [name for name in REQUIRED if not (ckpt / name).is_file()]
    if lacking == ["optimizer.pt"] and ckpt.parent.name == "checkpoints":
        raise CheckpointNotFoundError(
            f"{ckpt} is the last checkpoint of a finished run (it has no optimizer.pt); {_DROPPED}"
        )
    instead = (
        f"resume from its run folder {ckpt.parent.parent} to use the newest complete one, or "
        if ckpt.parent.name == "checkpoints"
        else ""
    )
    raise CheckpointNotFoundError(
        f"{ckpt} is not a complete checkpoint: it lacks {', '.join(lacking)} (a copy cut "
        f"short?); {instead}copy the checkpoint again"
    )


_DROPPED = (
    "its optimizer state was dropped when it finished (train.keep_optimizer_state is false by "
    "default), so it cannot be resumed; pass --set train.keep_optimizer_state=true to a run "
    "to keep it resumable after it finishes"
)


def _finished_run(path: Path) -> str | None:
    """What shows that ``path`` (a run folder or its ``checkpoints``) is a run that finished
    and was slimmed by :func:`slim_finished`, or None: its saved ``model/`` without
    checkpoints, or a latest checkpoint with every file but ``optimizer.pt``."""
    run = path.parent if path.name == "checkpoints" else path
    root = run / "checkpoints"
    latest = root / _latest_name(root)
    if latest.is_dir() and all(
        (latest / name).is_file() for name in REQUIRED if name != "optimizer.pt"
    ):
        return f"{latest.name} has no optimizer.pt"
    if not root.exists() and (run / "model").is_dir():
        return f"its model is saved in {run / 'model'}, its checkpoints were removed"
    return None


# ----------------------------------------------------------------------------- loading
def safe_torch_load(path: Path) -> Any:
    """``torch.load(weights_only=True)``: tensors and plain containers, never code.

    Raises:
        CheckpointError: the file holds other Python objects (a pickle that could run code is
            refused, not executed) or cannot be read.
    """
    try:
        return torch.load(path, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f" ({found.group(1)})" if found else ""
        raise CheckpointError(
            f"{path}: refused to load: it holds Python objects other than tensors and plain "
            f"data{what}, which could run code when unpickled. xalign never writes such files; "
            f"only resume from checkpoints you wrote yourself"
        ) from exc
    except (OSError, RuntimeError, EOFError, ValueError) as exc:
        raise CheckpointError(
            f"{path}: cannot be read ({' '.join(str(exc).split())[:300]})"
        ) from exc


def _legacy_rng(path: Path) -> dict[str, Any]:
    """An ``rng-<rank>.pt`` of older xalign versions, loaded with weights_only + numpy arrays."""
    core = getattr(np, "_core", None) or np.core  # numpy 2 / 1
    allowed = [np.dtype, np.ndarray, type(np.dtype(np.uint32)), core.multiarray._reconstruct]
    with torch.serialization.safe_globals(allowed):
        old = safe_torch_load(path)
    name, keys, pos, has_gauss, cached = old["numpy"]
    version, internal, gauss = old["python"]
    return {
        "python": {"version": version, "state": list(internal), "gauss_next": gauss},
        "numpy": {
            "name": name,
            "keys": np.asarray(keys).tolist(),
            "pos": pos,
            "has_gauss": has_gauss,
            "cached_gaussian": cached,
        },
        "torch": old["torch"].tolist(),
        **({"cuda": [s.tolist() for s in old["cuda"]]} if "cuda" in old else {}),
    }


def load_checkpoint(
    ckpt: Path,
    *,
    module: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    rank: int,
) -> dict[str, Any]:
    """Restore everything written by :func:`finalize_checkpoint`; returns ``state.json``.

    Raises:
        CheckpointError: a file is missing, unreadable, unsafe to unpickle or malformed.
    """
    ckpt = Path(ckpt)
    missing = [n for n in REQUIRED if not (ckpt / n).is_file()]
    if missing:
        raise CheckpointError(f"{ckpt}: incomplete checkpoint (missing {', '.join(missing)})")
    try:
        state = json.loads((ckpt / STATE).read_text(encoding="utf-8"))
        int(state["step"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{ckpt / STATE}: unreadable checkpoint state ({exc})") from exc
    # unpickle-free loads first: a refused file leaves the model untouched
    optimizer_state = safe_torch_load(ckpt / "optimizer.pt")
    scheduler_state = safe_torch_load(ckpt / "scheduler.pt")
    rng = None
    rng_json, rng_legacy = ckpt / f"rng-{rank}.json", ckpt / f"rng-{rank}.pt"
    if rng_json.exists():
        try:
            rng = json.loads(rng_json.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{rng_json}: unreadable RNG state ({exc})") from exc
    elif rng_legacy.exists():
        try:
            rng = _legacy_rng(rng_legacy)
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{rng_legacy}: unexpected RNG state ({exc})") from exc
    try:
        _load_weights(module, ckpt / "model.safetensors")
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(
            f"{ckpt / 'model.safetensors'}: cannot load the weights "
            f"({' '.join(str(exc).split())[:300]})"
        ) from exc
    try:
        optimizer.load_state_dict(optimizer_state)
        scheduler.load_state_dict(scheduler_state)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{ckpt}: optimizer/scheduler state does not fit this run ({exc})"
        ) from exc
    if rng is not None:
        try:
            set_rng_state(rng)
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{ckpt}: malformed RNG state for rank {rank} ({exc})") from exc
    return state
