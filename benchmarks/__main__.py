"""One entry point for xalign's benchmarks: ``python -m benchmarks [--quick] [--json]``.

Prints a table (key, value, target) and, with ``--json``, one JSON object with every key plus
a description of the machine. Ratios are what count across machines; absolute times only with
the machine line. ``--quick`` runs tiny sizes (the test suite checks that it runs): its numbers
mean nothing, so it prints no targets beside them (``targets`` is empty in its JSON). Only the
table or the JSON goes to stdout; everything the benchmarks themselves print (libraries,
subprocesses) goes to stderr. Run from the repository root with the project's venv.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator

import torch

from benchmarks import contended, lora, prepare, sinkhorn, training
from xalign.threads import apply_num_threads, available_cores

# name -> (function(quick) -> {key: value}, {key: target description})
SUITE: dict[str, tuple[Callable[[bool], dict[str, float]], dict[str, str]]] = {
    "sinkhorn_batched_vs_loop": (sinkhorn.batched_vs_loop, {"sinkhorn_batched_vs_loop": ">= 3"}),
    "sinkhorn_vs_pot_loop": (sinkhorn.vs_pot_loop, {"sinkhorn_vs_pot_loop": ">= 20"}),
    "sinkhorn_scaling": (sinkhorn.scaling_error, {}),
    "sinkhorn_contended": (contended.contended, {}),
    "step_overhead": (
        training.step_overhead,
        {"step_overhead_sinkhorn_sentence": "<= 1.03", "step_overhead_sinkhorn_batch": "<= 1.03"},
    ),
    "peak_mem_15_vs_1_langs": (
        training.peak_memory,
        {
            "peak_mem_15_vs_1_langs": "<= 1.15",
            "peak_mem_15_vs_1_langs_equal_length": "<= 1.15",
            "peak_mem_15_vs_1_langs_same_data": "<= 1.15",
        },
    ),
    "eval_sentences_per_s": (training.eval_throughput, {}),
    "prepare": (prepare.prepare_bench, prepare.TARGETS),
    "eflomal": (prepare.eflomal_bench, {}),
    "lora": (lora.lora_cost, {}),
}


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send stdout to stderr at the file-descriptor level too: library output, C code and
    subprocesses (which write to fd 1, not to ``sys.stdout``) stay out of the table / JSON."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def format_table(results: dict[str, float], targets: dict[str, str]) -> list[str]:
    """``key  value  target`` lines (no target column when ``targets`` is empty)."""
    width = max((len(k) for k in results), default=0)
    lines = []
    for key, value in results.items():
        line = f"{key:<{width}}  {value:>12.4g}"
        lines.append(f"{line}  {targets[key]}" if key in targets else line)
    return lines


def machine() -> dict[str, object]:
    """CPU model, cores, torch build and threads: the context of every absolute number."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = next(
                line.split(":", 1)[1].strip() for line in f if line.startswith("model name")
            )
    except (OSError, StopIteration):
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "affinity_cores": available_cores(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "cuda": torch.cuda.is_available(),
        "python": platform.python_version(),
        "load_avg_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes: seconds, not minutes")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--only", default="", help="comma-separated benchmark names")
    args = ap.parse_args(argv)
    only = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(only) - set(SUITE))
    if unknown:
        ap.error(f"unknown benchmark(s) {unknown}; known: {sorted(SUITE)}")
    apply_num_threads()  # as a run does: XALIGN_NUM_THREADS, else the affinity set's cores
    results: dict[str, float] = {}
    targets: dict[str, str] = {}
    seconds: dict[str, float] = {}
    for name, (fn, target) in SUITE.items():
        if only and name not in only:
            continue
        start = time.perf_counter()
        with stdout_to_stderr():  # stdout carries only the table / JSON
            results.update(fn(args.quick))
        seconds[name] = round(time.perf_counter() - start, 2)
        if not args.quick:  # toy sizes: a target beside their numbers would mean nothing
            targets.update(target)
    if args.json:
        print(
            json.dumps(
                {
                    "machine": machine(),
                    "quick": args.quick,
                    "results": results,
                    "targets": targets,
                    "seconds": seconds,
                },
                indent=2,
            )
        )
        return 0
    print(f"# {json.dumps(machine())}{' (quick)' if args.quick else ''}")
    print("\n".join(format_table(results, targets)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
