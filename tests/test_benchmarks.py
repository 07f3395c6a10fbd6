"""The benchmark suite runs (``--quick``); its numbers are not asserted (no timed tests)."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT

STEP_OBJECTIVES = (
    "sinkhorn_sentence",
    "sinkhorn_batch",
    "l2",
    "contrastive",
    "mixed_ot",
    "translation_ranking",
    "distill",
)


def test_quick_suite_prints_every_key_as_json():
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    report = json.loads(out.stdout)
    results = report["results"]
    for key in (
        "sinkhorn_batched_vs_loop",
        "sinkhorn_vs_pot_loop",
        "sinkhorn_scaling_0.5_value_rel_err",
        "sinkhorn_scaling_0.99_grad_rel_err",
        # issue 23: the same ratio with a competing 2-thread process, three thread settings
        "sinkhorn_batched_vs_loop_contended",
        "sinkhorn_batched_vs_loop_contended_spin",
        "sinkhorn_batched_vs_loop_contended_1thread",
        # issue 10: every key the suite promises, in one process
        *(f"step_overhead_{o}" for o in STEP_OBJECTIVES),
        *(f"step_overhead_{o}_vs_regulariser_only" for o in STEP_OBJECTIVES),
        *(f"objective_share_{o}" for o in STEP_OBJECTIVES),
        "step_seconds_reference",
        "peak_mem_15_vs_1_langs",
        "prepare_pairs_per_s",
        "prepare_250k_x5_min",
        "prepare_250k_x15_min",
        "prepare_cache_hit_s",
        "prepare_peak_rss_gb",
        "eflomal_pairs_per_s",
        "eflomal_250k_x5_min",
        "eval_sentences_per_s_align",
        "eval_sentences_per_s_tatoeba",
        "lora_trainable_params",
        "lora_trainable_fraction",
        "lora_step_time_ratio",
        "lora_peak_mem_ratio",
        "lora_checkpoint_ratio",
    ):
        assert key in results and results[key] > 0, key
    # more annealing steps -> closer to the converged divergence
    assert (
        results["sinkhorn_scaling_0.99_value_rel_err"]
        < results["sinkhorn_scaling_0.5_value_rel_err"]
    )
    # --quick's BERT: 2 layers, 64 wide; LoRA r=8 on query and value: 2·2·(64 + 64)·8
    assert results["lora_trainable_params"] == 2 * 2 * (64 + 64) * 8
    assert report["machine"]["cores"] >= 1


def test_unknown_benchmark_is_an_error():
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--only", "nope"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "unknown benchmark" in out.stderr


def test_sampled_peak_memory_counts_the_workers(tmp_path):
    """The prepare benchmark's memory probe sees a child that holds ~300 MB and a worker of
    it that holds another ~300 MB at the same time (proportional set sizes, summed)."""
    from benchmarks.prepare import _run_sampled

    hold = "b = bytearray(300_000_000); b[::4096] = b'x' * len(b[::4096]); time.sleep(1.5)"
    code = (
        "import multiprocessing as mp, time\n"
        f"def work():\n    {hold}\n"
        "if __name__ == '__main__':\n"
        "    p = mp.get_context('fork').Process(target=work); p.start()\n"
        f"    {hold}\n"
        "    p.join(); print('done')\n"
    )
    seconds, peak_gb, out = _run_sampled([sys.executable, "-c", code], {}, tmp_path)
    assert out.strip() == "done"
    assert seconds >= 1.5
    assert 0.55 < peak_gb < 1.0, peak_gb


def test_a_memory_child_does_not_report_its_parents_memory():
    """The memory benchmark's children are started by a process that may hold several GiB
    (the step-overhead models): a child's peak must be its own."""
    held = bytearray(800_000_000)
    held[::4096] = b"x" * len(held[::4096])  # resident, not just reserved
    code = (
        "import resource; from benchmarks.training import peak_rss_gib; "
        "print(peak_rss_gib(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    own, inherited = map(float, out.stdout.split())
    del held
    assert own < 0.5, own
    print(f"peak_rss_gib {own:.2f} GiB; ru_maxrss says {inherited:.2f} GiB")


def test_only_the_table_reaches_stdout_whoever_writes_to_it():
    """Python prints, raw fd 1 writes and subprocesses during a benchmark go to stderr."""
    code = (
        "import os, subprocess, sys\n"
        "from benchmarks.__main__ import stdout_to_stderr\n"
        "with stdout_to_stderr():\n"
        "    print()\n"
        "    os.write(1, b'\\n')\n"
        "    subprocess.run([sys.executable, '-c', 'print()'], check=True)\n"
        "print('table')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout == "table\n" and out.stderr.count("\n") == 3


def test_quick_mode_prints_no_targets():
    from benchmarks.__main__ import format_table

    results = {"sinkhorn_vs_pot_loop": 25.0, "step_overhead_l2": 1.01}
    assert format_table(results, {"sinkhorn_vs_pot_loop": ">= 20"}) == [
        "sinkhorn_vs_pot_loop" + " " * 12 + "25  >= 20",  # 2 spaces, then 12 wide
        "step_overhead_l2    " + " " * 10 + "1.01",
    ]
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--only", "sinkhorn_vs_pot_loop"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    lines = out.stdout.splitlines()
    assert lines[0].startswith("# ") and lines[0].endswith("(quick)")
    assert lines[1].split()[0] == "sinkhorn_vs_pot_loop"
    assert all(len(line.split()) == 2 for line in lines[1:])  # key, value: no target, no blank


def test_contended_variants_differ_only_in_thread_settings(monkeypatch):
    """xalign's settings: PASSIVE; torch's defaults: no wait policy; 1 thread by the variable."""
    from benchmarks.contended import VARIANTS, _env

    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    monkeypatch.setenv("XALIGN_NUM_THREADS", "7")
    ours, spin = _env(VARIANTS[""], spin=False), _env(VARIANTS["_spin"], spin=True)
    one = _env(VARIANTS["_1thread"], spin=False)
    assert ours["OMP_WAIT_POLICY"] == "PASSIVE" and "XALIGN_NUM_THREADS" not in ours
    assert "OMP_WAIT_POLICY" not in spin and "XALIGN_NUM_THREADS" not in spin
    assert one["OMP_WAIT_POLICY"] == "PASSIVE" and one["XALIGN_NUM_THREADS"] == "1"
