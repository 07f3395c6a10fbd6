"""Time one training step's phases on the embedded model (or --model) for the README demo.

    python benchmarks/bench_train_step.py [--model packaged:multilingual-e5-small] [--batch 24]

Prints seconds per phase (encode source/target/frozen target, objective, backward, optimizer
step) averaged over a few repetitions after one warm-up.
"""

from __future__ import annotations

import argparse
import time

import torch
from xalign_sinkhorn import Sinkhorn

from xalign.data.prepare import PrepareOptions, prepare
from xalign.encoders import load_encoder
from xalign.recipe import drift_regulariser


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="packaged:multilingual-e5-small")
    ap.add_argument("--batch", type=int, default=24)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--freeze-embeddings", action="store_true")
    args = ap.parse_args()

    enc = load_encoder(args.model)
    if args.freeze_embeddings:
        enc.model.get_input_embeddings().requires_grad_(False)
    frozen = enc.frozen_copy()
    prepared = prepare("demo", ["de"], PrepareOptions(target="en"), tokenizer=None)
    data = prepared.parallel_data(pairs_per_language=None, batch_size=args.batch, seed=0)
    obj = Sinkhorn(hidden_size=enc.hidden_size)
    params = [p for p in enc.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=5e-5)
    pair = data.pairs[0]
    timings: dict[str, list[float]] = {}

    def tick(name: str, start: float) -> float:
        now = time.perf_counter()
        timings.setdefault(name, []).append(now - start)
        return now

    for rep in range(args.reps + 1):
        batch = data.batch(pair, rep)
        t = time.perf_counter()
        src = enc.encode([e.src_words for e in batch], ["de"] * len(batch))
        t = tick("encode source", t)
        tgt = enc.encode([e.tgt_words for e in batch], ["en"] * len(batch))
        t = tick("encode target", t)
        with torch.no_grad():
            f = frozen.encode([e.tgt_words for e in batch], ["en"] * len(batch))
        t = tick("encode frozen target", t)
        from xalign.batch import AlignmentBatch

        loss = obj.loss(AlignmentBatch("de-en", src, tgt, f)) + drift_regulariser(tgt, f)
        t = tick("objective + regulariser", t)
        loss.backward()
        t = tick("backward", t)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        tick("clip + optimizer step", t)
        if rep == 0:
            timings.clear()
    total = 0.0
    for name, values in timings.items():
        mean = sum(values) / len(values)
        total += mean
        print(f"{name:>26}: {mean:7.3f} s")
    print(
        f"{'total per pair-step':>26}: {total:7.3f} s  (batch {args.batch}, "
        f"{torch.get_num_threads()} threads)"
    )


if __name__ == "__main__":
    main()
