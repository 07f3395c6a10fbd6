"""Checkpoint files: crash-safe re-writes, disk errors, weights-only loading, JSON RNG state."""

from __future__ import annotations

import errno
import json
import os
import pickle
import random
import shutil
import subprocess

import numpy as np
import pytest
import torch
from _launch import accelerate_launch

from xalign import checkpoint as ck
from xalign.checkpoint import CheckpointError, finalize_checkpoint, find_checkpoint


class Killed(BaseException):
    """Stands for SIGKILL: not an ``Exception``, so no cleanup code runs."""


def make_state(seed: int):
    """A small module + Adam + LambdaLR after one step, all determined by ``seed``."""
    torch.manual_seed(seed)
    module = torch.nn.Linear(4, 3)
    opt = torch.optim.Adam(module.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (s + 1))
    module(torch.randn(5, 4)).pow(2).sum().backward()
    opt.step()
    sched.step()
    return module, opt, sched


def write(root, step: int, seed: int, *, keep: int = 2):
    module, opt, sched = make_state(seed)
    ck.write_rank_state(root, step, 0)
    return finalize_checkpoint(
        root,
        step,
        module=module,
        optimizer=opt,
        scheduler=sched,
        state={"step": step, "seed": seed},
        config_yaml="x: 1\n",
        keep=keep,
    )


def load_seed(ckpt) -> int:
    """Load ``ckpt`` into fresh objects; return which seed's weights it holds."""
    module, opt, sched = make_state(99)
    state = ck.load_checkpoint(ckpt, module=module, optimizer=opt, scheduler=sched, rank=0)
    expected, _, _ = make_state(state["seed"])
    assert torch.equal(module.weight, expected.weight)
    assert opt.state_dict()["state"][0]["step"] == 1
    return state["seed"]


def leftovers(root) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.endswith((".partial", ".old")))


# ------------------------------------------------------------------ re-writing step N
# The mutating operations of a re-write of step-2, in order (see the module docstring).
CRASH_POINTS = [
    ("writing optimizer.pt", "torch_save", 1, 1),  # (label, what fails, nth call, seed found)
    ("renaming step-2 aside", "replace", 1, 1),
    ("renaming step-2.partial in", "replace", 2, 1),
    ("replacing latest", "replace", 3, 2),
    ("deleting step-2.old", "rmtree", 1, 2),
]


@pytest.mark.parametrize(
    ("label", "what", "nth", "found"), CRASH_POINTS, ids=[c[0] for c in CRASH_POINTS]
)
def test_killed_while_rewriting_a_step_leaves_a_resumable_checkpoint(
    tmp_path, monkeypatch, label, what, nth, found
):
    root = tmp_path / "run" / "checkpoints"
    write(root, 1, seed=10)
    write(root, 2, seed=1)  # the existing step-2, about to be re-written with seed 2
    assert (root / "latest").read_text() == "step-0000002"

    calls = {"n": 0}
    real = {"replace": os.replace, "rmtree": shutil.rmtree, "torch_save": ck._torch_save}

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == nth:
            raise Killed(label)
        return real[what](*args, **kwargs)

    target = {
        "replace": (os, "replace"),
        "rmtree": (shutil, "rmtree"),
        "torch_save": (ck, "_torch_save"),
    }[what]
    with monkeypatch.context() as mp:
        mp.setattr(*target, failing)
        with pytest.raises(Killed):
            write(root, 2, seed=2)
    # whatever the state on disk, a complete step-2 is found: the old one until the new one
    # is renamed in, the new one after
    ckpt = find_checkpoint(tmp_path / "run")
    assert ckpt.name.startswith("step-0000002")
    assert load_seed(ckpt) == found
    # the next checkpoint cleans up and leaves a plain, consistent folder
    write(root, 3, seed=3)
    assert leftovers(root) == []
    assert (root / "latest").read_text() == "step-0000003"
    kept = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert kept[-1] == "step-0000003" and len(kept) == 2  # keep=2
    assert load_seed(find_checkpoint(tmp_path / "run")) == 3


def test_rewrite_without_crash_replaces_the_step_and_leaves_nothing_else(tmp_path):
    root = tmp_path / "checkpoints"
    write(root, 2, seed=1)
    write(root, 2, seed=2)
    assert load_seed(find_checkpoint(tmp_path)) == 2
    assert leftovers(root) == [] and (root / "latest").read_text() == "step-0000002"


def test_find_checkpoint_recovers_from_any_pointer_state(tmp_path):
    root = tmp_path / "checkpoints"
    write(root, 1, seed=1)
    write(root, 3, seed=3)
    (root / "latest").write_text("step-0000007")  # dangling
    with pytest.warns(UserWarning, match="missing or incomplete"):
        assert find_checkpoint(tmp_path).name == "step-0000003"
    (root / "latest").write_text("../../../etc")  # not a checkpoint name
    with pytest.warns(UserWarning):
        assert find_checkpoint(tmp_path).name == "step-0000003"
    (root / "latest").unlink()  # never written (killed before the first pointer update)
    assert find_checkpoint(tmp_path).name == "step-0000003"
    (root / "step-0000003" / "state.json").unlink()  # incomplete: the older one is used
    assert find_checkpoint(tmp_path).name == "step-0000001"
    os.replace(root / "step-0000001", root / "step-0000001.old")  # only an aside copy left
    assert find_checkpoint(tmp_path).name == "step-0000001.old"
    assert load_seed(find_checkpoint(tmp_path)) == 1
    shutil.rmtree(root / "step-0000001.old")
    (root / "step-0000005.partial").mkdir()
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        find_checkpoint(tmp_path)


# ------------------------------------------------------------------ disk errors
def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _erofs(*args, **kwargs):
    raise OSError(errno.EROFS, os.strerror(errno.EROFS))


def _library_error(*args, **kwargs):
    raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 64 vs 0")


@pytest.mark.parametrize(
    "case", ["enospc-optimizer", "erofs-state", "library-error-full-disk", "enospc-rename-in"]
)
def test_write_error_keeps_previous_checkpoint_and_leaves_no_partial(tmp_path, monkeypatch, case):
    root = tmp_path / "checkpoints"
    write(root, 1, seed=1)
    write(root, 2, seed=2)
    with monkeypatch.context() as mp:
        if case == "enospc-optimizer":
            mp.setattr(ck, "_torch_save", _enospc)
            reason = "[Errno 28] No space left on device"
        elif case == "erofs-state":
            real = ck._write_text
            mp.setattr(
                ck, "_write_text", lambda p, t: _erofs() if p.name == "state.json" else real(p, t)
            )
            reason = "[Errno 30] Read-only file system"
        elif case == "library-error-full-disk":
            # torch/safetensors hide the OS error; the probe + free space tell the user
            mp.setattr(ck, "save_model", _library_error)
            mp.setattr(ck.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(1, 1, 1 << 20))
            reason = "[Errno 28] No space left on device (1 MiB free)"
        else:  # re-writing step-2: the old one is aside when renaming the new one in fails
            real_replace = os.replace

            def replace(src, dst):
                if str(src).endswith(".partial"):
                    _enospc()
                return real_replace(src, dst)

            mp.setattr(os, "replace", replace)
            reason = "[Errno 28] No space left on device"
        step = 2 if case == "enospc-rename-in" else 3
        with pytest.raises(CheckpointError) as info:
            write(root, step, seed=5)
    msg = str(info.value)
    assert str(root / f"step-{step:07d}") in msg and reason in msg, msg
    assert "previous checkpoint (step-0000002) is kept" in msg
    assert leftovers(root) == []
    assert (root / "latest").read_text() == "step-0000002"
    assert load_seed(find_checkpoint(tmp_path)) == 2


@pytest.mark.skipif(
    os.geteuid() == 0,
    reason="root ignores directory permissions (the "
    "monkeypatched ENOSPC/EROFS cases above cover this path)",
)
def test_read_only_checkpoint_folder(tmp_path):
    root = tmp_path / "checkpoints"
    write(root, 1, seed=1)
    root.chmod(0o555)
    try:
        with pytest.raises(CheckpointError, match=r"\[Errno 13\] Permission denied"):
            write(root, 2, seed=2)
    finally:
        root.chmod(0o755)
    assert leftovers(root) == [] and load_seed(find_checkpoint(tmp_path)) == 1


def test_check_writable_names_the_folder_and_reason(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    with pytest.raises(CheckpointError, match=r"file.txt/out: \[Errno 20\] Not a directory"):
        ck.check_writable(blocker / "out")
    ck.check_writable(tmp_path / "new" / "out")  # created, probe removed
    assert list((tmp_path / "new" / "out").iterdir()) == []


# ------------------------------------------------------------------ trust
class Payload:
    """Unpickling this runs ``os.system`` (the classic malicious pickle)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize(
    ("victim", "how"),
    [
        ("optimizer.pt", "torch.save"),
        ("scheduler.pt", "pickle-2"),
        ("optimizer.pt", "pickle-5"),
        ("rng-0.pt", "torch.save"),
    ],
)
def test_crafted_pickle_is_refused_and_never_runs(tmp_path, victim, how):
    root = tmp_path / "checkpoints"
    ckpt = write(root, 1, seed=1)
    marker = tmp_path / "pwned"
    payload = {"state": Payload(marker), "param_groups": []}
    if victim == "rng-0.pt":  # an old-style RNG file (still readable: see the legacy test)
        (ckpt / "rng-0.json").unlink()
    with (ckpt / victim).open("wb") as fh:
        if how.startswith("pickle"):  # a raw pickle instead of torch's zip format
            pickle.dump(payload, fh, protocol=int(how[-1]))
        else:
            torch.save(payload, fh)
    module, opt, sched = make_state(7)
    before = module.weight.detach().clone()
    with pytest.raises(CheckpointError) as info:
        ck.load_checkpoint(ckpt, module=module, optimizer=opt, scheduler=sched, rank=0)
    msg = str(info.value)
    assert str(ckpt / victim) in msg and "refused to load" in msg, msg
    if how != "pickle-5":  # protocol 5 stops at an opcode before naming the global
        assert "(posix.system)" in msg, msg
    assert not marker.exists()
    assert torch.equal(module.weight, before)  # nothing was loaded before the refusal


def test_checkpoint_files_hold_no_python_objects(tmp_path):
    ckpt = write(tmp_path / "checkpoints", 1, seed=1)
    for name in ("optimizer.pt", "scheduler.pt"):
        assert torch.serialization.get_unsafe_globals_in_checkpoint(ckpt / name) == []
    assert not list(ckpt.glob("*.pkl")) and not list(ckpt.glob("rng-*.pt"))
    json.loads((ckpt / "rng-0.json").read_text())  # plain JSON


# ------------------------------------------------------------------ RNG state
def _draws() -> tuple:
    return (
        random.random(),
        random.gauss(0, 1),
        np.random.rand(3).tolist(),
        np.random.randn(),
        torch.rand(3).tolist(),
    )


@pytest.mark.parametrize("seed", [0, 1234, 2**31 - 1])
def test_rng_state_round_trips_through_json(seed):
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    random.gauss(0, 1)  # leaves a cached gauss_next in Python's state
    np.random.randn()  # and in numpy's (has_gauss)
    state = json.loads(json.dumps(ck.rng_state()))
    first = _draws()
    ck.set_rng_state(state)
    assert _draws() == first


def test_legacy_pickled_rng_state_still_loads_without_unpickling_code(tmp_path):
    random.seed(3)
    np.random.seed(3)
    torch.manual_seed(3)
    legacy = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    torch.save(legacy, tmp_path / "rng-0.pt")
    first = _draws()
    ck.set_rng_state(ck._legacy_rng(tmp_path / "rng-0.pt"))
    assert _draws() == first


def test_truncated_or_missing_files_give_clear_errors(tmp_path):
    ckpt = write(tmp_path / "checkpoints", 1, seed=1)
    module, opt, sched = make_state(7)
    (ckpt / "optimizer.pt").write_bytes((ckpt / "optimizer.pt").read_bytes()[:50])
    with pytest.raises(CheckpointError, match="optimizer.pt: cannot be read"):
        ck.load_checkpoint(ckpt, module=module, optimizer=opt, scheduler=sched, rank=0)
    (ckpt / "scheduler.pt").unlink()
    with pytest.raises(CheckpointError, match="incomplete checkpoint .missing scheduler.pt"):
        ck.load_checkpoint(ckpt, module=module, optimizer=opt, scheduler=sched, rank=0)


RANK0_DISK_FULL = """
import os, sys
from xalign import recipe
from xalign.checkpoint import CheckpointError

def _disk_full(*args, **kwargs):
    raise CheckpointError("cannot write checkpoint (injected on rank 0): No space left on device")

if os.environ.get("RANK") == "0":
    recipe.finalize_checkpoint = _disk_full
from xalign.cli import main
sys.argv = ["xalign", *sys.argv[1:]]
main()
"""


@pytest.mark.distributed
def test_a_checkpoint_failure_on_rank_0_stops_every_rank(tiny_model, tmp_path):
    """2 gloo ranks, rank 0 cannot write the step-1 checkpoint: both ranks exit with an
    error (rank 1 says another rank failed) instead of rank 1 waiting at a barrier forever."""
    from conftest import migrated_sqlite_uri

    launcher = tmp_path / "launch.py"
    launcher.write_text(RANK0_DISK_FULL)
    sets = [
        f"model.name={tiny_model}",
        "data.limit=24",
        "data.languages=[de,fr]",
        "train.batch_size=8",
        "train.checkpoint_every=1",
        f"train.output_dir={tmp_path / 'out'}",
        f"tracking.uri={migrated_sqlite_uri(tmp_path / 'm.db')}",
    ]
    cmd = [*accelerate_launch(2), str(launcher), "run", "-q"]
    cmd += [a for s in sets for a in ("--set", s)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode != 0
    assert "injected on rank 0" in done.stderr, done.stderr[-3000:]
    assert "rank 1: another rank could not write checkpoint step 1" in done.stderr, done.stderr[
        -3000:
    ]


def _slimmed_step(root, step: int = 2):
    """A checkpoint as slim_finished leaves it: every file but optimizer.pt."""
    d = root / f"step-{step:07d}"
    d.mkdir(parents=True)
    for name in ck.REQUIRED:
        (d / name).write_text("x")
    (root / ck.LATEST).write_text(d.name)
    ck.slim_finished(root, keep_weights=True)
    return d


@pytest.mark.parametrize("with_model", [True, False])
def test_resume_of_a_finished_run_says_its_optimizer_state_was_dropped(tmp_path, with_model):
    """A finished run (train.keep_optimizer_state false): the error says it finished and how
    to keep a run resumable, for the run folder and its checkpoints folder alike."""
    run = tmp_path / "run"
    if with_model:  # save_model: the whole checkpoints folder is removed
        (run / "model").mkdir(parents=True)
        (run / "checkpoints").mkdir()
        ck.slim_finished(run / "checkpoints", keep_weights=False)
        where = [run]
    else:
        _slimmed_step(run / "checkpoints")
        where = [run, run / "checkpoints"]
    for path in where:
        with pytest.raises(ck.CheckpointNotFoundError) as info:
            find_checkpoint(path)
        message = str(info.value)
        assert message.startswith(f"{path} is a finished run")
        assert "optimizer state was dropped" in message
        assert "--set train.keep_optimizer_state=true" in message


def test_resume_from_a_checkpoint_folder_itself_that_is_slimmed_or_cut(tmp_path):
    """The checkpoint folder given directly: a finished run's slimmed last checkpoint says so;
    one missing another file names it (it used to be taken, and failed later)."""
    step = _slimmed_step(tmp_path / "run" / "checkpoints")
    with pytest.raises(ck.CheckpointNotFoundError) as info:
        find_checkpoint(step)
    message = " ".join(str(info.value).split())
    assert message.startswith(f"{step} is the last checkpoint of a finished run")
    assert "no optimizer.pt" in message and "--set train.keep_optimizer_state=true" in message
    for lost in ("model.safetensors", "scheduler.pt"):
        cut = tmp_path / lost / "checkpoints" / "step-0000003"
        cut.mkdir(parents=True)
        for name in ck.REQUIRED:
            if name != lost:
                (cut / name).write_text("x")
        with pytest.raises(ck.CheckpointNotFoundError) as info:
            find_checkpoint(cut)
        message = " ".join(str(info.value).split())
        assert f"{cut} is not a complete checkpoint: it lacks {lost}" in message
        assert f"resume from its run folder {tmp_path / lost}" in message
        (cut / lost).write_text("x")
        assert find_checkpoint(cut) == cut  # complete again: taken
    alone = tmp_path / "copied-out"  # not inside a run's checkpoints folder: no run folder
    alone.mkdir()
    (alone / "state.json").write_text("{}")
    with pytest.raises(ck.CheckpointNotFoundError) as info:
        find_checkpoint(alone)
    message = " ".join(str(info.value).split())
    assert "run folder" not in message and message.endswith("copy the checkpoint again")


def test_an_empty_folder_is_still_no_checkpoint(tmp_path):
    for path in (tmp_path, tmp_path / "missing"):
        with pytest.raises(ck.CheckpointNotFoundError, match="no complete checkpoint found"):
            find_checkpoint(path)
