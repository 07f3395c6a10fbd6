"""A launch that asked for more processes than the run has is named in a warning."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from xalign.launch import LaunchWarning, check_launch, requested_processes

ACCEL_CPU = {"ACCELERATE_USE_CPU": "True", "ACCELERATE_MIXED_PRECISION": "no"}
LAUNCH = ["/venv/bin/python", "/venv/bin/accelerate", "launch"]


@pytest.mark.parametrize(
    ("env", "argv", "expected"),
    [
        # accelerate's simple launcher (--cpu, no --multi_gpu): one process, N on its command line
        (
            {**ACCEL_CPU, "MASTER_PORT": "29500"},
            [*LAUNCH, "--num_processes", "2", "--cpu", "t.py"],
            (2, "--num_processes 2"),
        ),
        (
            {**ACCEL_CPU, "MASTER_PORT": "29500"},
            [*LAUNCH, "--cpu", "--num-processes=4", "t.py"],
            (4, "--num_processes 4"),
        ),
        (
            ACCEL_CPU,
            ["python", "-m", "accelerate.commands.launch", "--num_processes", "3", "t.py"],
            (3, "--num_processes 3"),
        ),
        # the number is not readable, but accelerate set MASTER_PORT: more than one was asked for
        (
            {**ACCEL_CPU, "MASTER_PORT": "29500"},
            [],
            (2, "MASTER_ADDR/MASTER_PORT set by accelerate launch (more than 1 process)"),
        ),
        # torchrun / accelerate --multi_gpu
        ({"WORLD_SIZE": "2"}, [], (2, "WORLD_SIZE=2")),
        # one process asked for, or not launched by accelerate at all
        (ACCEL_CPU, [*LAUNCH, "--num_processes", "1", "t.py"], None),
        (ACCEL_CPU, [*LAUNCH, "t.py"], None),
        ({"MASTER_PORT": "29500"}, ["bash"], None),
        ({}, ["python", "x", "--num_processes", "2"], None),
        ({"WORLD_SIZE": "1"}, [], None),
    ],
)
def test_requested_processes(env, argv, expected):
    assert requested_processes(env, argv) == expected


def test_warns_naming_both_numbers_and_the_cpu_form():
    env = {**ACCEL_CPU, "MASTER_PORT": "29500"}
    with pytest.warns(LaunchWarning) as caught:
        message = check_launch(1, env=env, parent_argv=[*LAUNCH, "--num_processes", "2", "--cpu"])
    assert str(caught[0].message) == message
    assert "asked for 2 processes (--num_processes 2) but this run has 1" in message
    assert "accelerate launch --multi_gpu --num_processes 2" in message


def test_no_warning_when_the_run_has_every_process(recwarn):
    assert check_launch(2, env={"WORLD_SIZE": "2"}, parent_argv=[]) is None
    assert check_launch(1, env={}, parent_argv=[]) is None
    assert not [w for w in recwarn if issubclass(w.category, LaunchWarning)]


@pytest.mark.distributed
def test_a_real_cpu_launch_of_two_processes_is_detected(tmp_path):
    """`accelerate launch --num_processes 2 --cpu` runs the script once, as rank 0 of 1."""
    script = tmp_path / "probe.py"
    script.write_text(
        "import warnings\n"
        "from accelerate import PartialState\n"
        "from xalign.launch import check_launch\n"
        "state = PartialState(cpu=True)\n"
        "warnings.simplefilter('always')\n"
        "print('world', state.num_processes)\n"
        "print('said', check_launch(state.num_processes))\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--num_processes",
            "2",
            "--cpu",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            str(script),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=Path(__file__).parent,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("world 1") == 1, result.stdout
    assert "asked for 2 processes (--num_processes 2) but this run has 1" in result.stdout


def test_stale_distributed_variables_are_an_xalign_error(smoke_overrides, tmp_path):
    """WORLD_SIZE left in the environment without MASTER_ADDR: one error line naming the
    variables and the two ways out, not accelerate's traceback."""
    env = {k: v for k, v in os.environ.items() if k not in ("MASTER_ADDR", "MASTER_PORT")}
    env.update(WORLD_SIZE="4", RANK="0")
    sets = [a for o in smoke_overrides for a in ("--set", o)]
    proc = subprocess.run(
        [sys.executable, "-m", "xalign.cli", "run", "-q", "-o", "sinkhorn", *sets],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert "WORLD_SIZE=4" in proc.stderr and "accelerate launch" in proc.stderr
