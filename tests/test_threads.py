"""Thread counts chosen by xalign (xalign/threads.py): affinity-aware default, the config key
and the environment variable, OpenMP's wait policy set before torch starts."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from xalign.config import ConfigError, load_config
from xalign.errors import XalignError
from xalign.threads import (
    ENV_NUM_THREADS,
    ThreadsError,
    apply_num_threads,
    available_cores,
    passive_wait_policy,
    resolve_num_threads,
)


def test_available_cores_follows_the_affinity_set_not_the_core_count(monkeypatch):
    assert available_cores() == len(os.sched_getaffinity(0))
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3})
    assert available_cores() == 1
    assert resolve_num_threads(environ={}) == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 2, 5})
    assert resolve_num_threads(environ={}) == 3


def test_order_config_then_environment_then_cores(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert resolve_num_threads(None, {}) == 4
    assert resolve_num_threads(None, {ENV_NUM_THREADS: ""}) == 4  # empty: unset
    assert resolve_num_threads(None, {ENV_NUM_THREADS: " 2 "}) == 2
    assert resolve_num_threads(3, {ENV_NUM_THREADS: "2"}) == 3
    assert resolve_num_threads(1, {}) == 1


@pytest.mark.parametrize("value", ["0", "-1", "1.5", "two", "2 threads"])
def test_bad_environment_value_names_the_variable(value):
    with pytest.raises(ThreadsError, match=ENV_NUM_THREADS) as info:
        resolve_num_threads(None, {ENV_NUM_THREADS: value})
    assert isinstance(info.value, XalignError)
    assert repr(value) in str(info.value)


@pytest.mark.parametrize("value", [0, -2, 1.5, True])
def test_bad_configured_value_names_the_key(value):
    with pytest.raises(ThreadsError, match="train.num_threads"):
        resolve_num_threads(value, {})


def test_default_never_raises_a_lower_count_chosen_elsewhere(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert resolve_num_threads(None, {}, current=64) == 4  # torch's default: every core
    assert resolve_num_threads(None, {}, current=1) == 1  # OMP_NUM_THREADS=1, set_num_threads
    assert resolve_num_threads(None, {ENV_NUM_THREADS: "3"}, current=1) == 3
    assert resolve_num_threads(2, {}, current=1) == 2


def test_apply_sets_torch_threads(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.delenv(ENV_NUM_THREADS, raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    try:
        torch.set_num_threads(8)
        assert apply_num_threads() == 2 and torch.get_num_threads() == 2
        torch.set_num_threads(1)
        assert apply_num_threads() == 1 and torch.get_num_threads() == 1
        assert apply_num_threads(2) == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_config_key_is_validated_and_not_part_of_the_fingerprint():
    assert load_config(None, []).train.num_threads is None
    one = load_config(None, ["train.num_threads=1"])
    assert one.train.num_threads == 1
    assert one.fingerprint() == load_config(None, []).fingerprint()
    with pytest.raises(ConfigError, match="train.num_threads"):
        load_config(None, ["train.num_threads=0"])


def test_wait_policy_is_set_only_when_the_user_has_not():
    env: dict[str, str] = {}
    assert passive_wait_policy(env) is True and env == {"OMP_WAIT_POLICY": "PASSIVE"}
    env = {"OMP_WAIT_POLICY": ""}
    assert passive_wait_policy(env) is True and env["OMP_WAIT_POLICY"] == "PASSIVE"
    env = {"OMP_WAIT_POLICY": "ACTIVE"}
    assert passive_wait_policy(env) is False and env["OMP_WAIT_POLICY"] == "ACTIVE"


# records OMP_WAIT_POLICY at the moment torch is first imported, then imports xalign
_PROBE = """
import os, sys
class Probe:
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            print("at-torch-import", os.environ.get("OMP_WAIT_POLICY"))
            sys.meta_path.remove(self)
        return None
sys.meta_path.insert(0, Probe())
import xalign
print("after", os.environ.get("OMP_WAIT_POLICY"))
"""


@pytest.mark.parametrize(("given", "expected"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_import_xalign_sets_the_wait_policy_before_torch_starts(given, expected):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given is not None:
        env["OMP_WAIT_POLICY"] = given
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True
    ).stdout.split("\n")
    assert f"at-torch-import {expected}" in out
    assert f"after {expected}" in out
