"""The batched-Sinkhorn / geomloss-loop ratio on a busy machine (``--only sinkhorn_contended``).

A competing process runs torch matrix products on 2 OpenMP threads (torch's defaults: what
another user's job looks like) for the whole measurement and is ended by its process id
afterwards. Each variant runs :func:`benchmarks.sinkhorn.batched_vs_loop` in a fresh process,
because OpenMP reads its wait policy once, when torch starts:

- ``sinkhorn_batched_vs_loop_contended`` (and ``sinkhorn_batched_ms_contended``): xalign's
  settings: ``OMP_WAIT_POLICY=PASSIVE`` (set by ``import xalign``), threads = the cores of the
  process's affinity set (xalign/threads.py);
- ``..._contended_spin``: torch's defaults: torch imported before xalign, wait policy unset
  (OpenMP's threads spin before they sleep), threads = cores;
- ``..._contended_1thread``: xalign's settings with ``XALIGN_NUM_THREADS=1``.

A variant still running after :data:`CHILD_TIMEOUT_S` is ended and counted in
``sinkhorn_contended_timeouts`` (its keys are then absent). Compare them with
``sinkhorn_batched_vs_loop`` of the same run (no competitor) and read them
with ``load_avg_1min`` of the machine block: the machine's own load adds to the competitor.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: the competing job: 2 OpenMP threads of matrix products, torch's default wait policy
COMPETITOR = """
import torch
torch.set_num_threads(2)
a = torch.randn(512, 512)
while True:
    a @ a
"""

#: one measurement in a fresh process; argv: variant, quick (0/1)
_CHILD = """
import json, sys
if sys.argv[1] == "spin":
    import torch  # OpenMP starts before xalign can choose its wait policy
from benchmarks.sinkhorn import batched_vs_loop
from xalign.threads import apply_num_threads
if sys.argv[1] != "spin":
    apply_num_threads()
import torch
out = batched_vs_loop(sys.argv[2] == "1")
print(json.dumps({**out, "threads": torch.get_num_threads()}))
"""

VARIANTS = {"": {}, "_spin": {}, "_1thread": {"XALIGN_NUM_THREADS": "1"}}
CHILD_TIMEOUT_S = 900


def _env(extra: dict[str, str], *, spin: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    env.pop("XALIGN_NUM_THREADS", None)
    if not spin:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return {**env, **extra}


def contended(quick: bool) -> dict[str, float]:
    """Every ``sinkhorn_*_contended*`` key (see the module docstring)."""
    competitor_env = _env({"OMP_NUM_THREADS": "2"}, spin=True)
    competitor = subprocess.Popen(
        [sys.executable, "-c", COMPETITOR],
        env=competitor_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    results: dict[str, float] = {}
    try:
        time.sleep(1.0)  # let it start its threads
        if competitor.poll() is not None:
            raise RuntimeError(f"the competing process exited with {competitor.returncode}")
        for suffix, extra in VARIANTS.items():
            variant = suffix.lstrip("_") or "xalign"
            try:
                out = subprocess.run(
                    [sys.executable, "-c", _CHILD, variant, "1" if quick else "0"],
                    env=_env(extra, spin=variant == "spin"),
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                    timeout=CHILD_TIMEOUT_S,
                )
            except subprocess.TimeoutExpired:  # run() has ended the child
                results["sinkhorn_contended_timeouts"] = (
                    results.get("sinkhorn_contended_timeouts", 0) + 1
                )
                continue
            if out.returncode != 0:
                raise RuntimeError(f"contended variant {variant!r} failed:\n{out.stderr[-3000:]}")
            got = json.loads(out.stdout.strip().splitlines()[-1])
            results[f"sinkhorn_batched_vs_loop_contended{suffix}"] = got["sinkhorn_batched_vs_loop"]
            results[f"sinkhorn_batched_ms_contended{suffix}"] = got["sinkhorn_batched_ms"]
            results[f"sinkhorn_threads_contended{suffix}"] = got["threads"]
    finally:
        competitor.terminate()  # by its pid: only the process started here
        try:
            competitor.wait(timeout=10)
        except subprocess.TimeoutExpired:
            competitor.kill()
            competitor.wait()
    return results
