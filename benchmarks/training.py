"""Training and evaluation cost: objective overhead per step, memory vs pairs, encoding speed.

Keys (``python -m benchmarks``):

- ``step_overhead_<objective>``: time of one training step (encode source, target and the
  frozen target c0, loss, backward, Adam step) with the objective plus the drift regulariser
  / the *reference* step: the same step with the regulariser and a zero-weight term on the
  source states, so that the backward runs through both sides as it does for every
  alignment objective. 1.00 = free. Objectives: ``sinkhorn_sentence``, ``sinkhorn_batch``
  (``scope``), ``l2``, ``contrastive``, ``mixed_ot``, ``translation_ranking``, ``distill``
  (its teacher: the frozen initial model c0 the step computes anyway).
  ``..._vs_regulariser_only`` divides by the step with the regulariser alone instead, whose
  backward skips the source encoder:
  that ratio is mostly the source side's backward (~1.3-1.4 for every objective, l2's
  negligible loss included), not the objective's cost. Medians of per-repetition ratios over
  (``scope``), ``l2``, ``contrastive``, ``mixed_ot``, ``so``, ``co``, ``tlm`` (its own
  encoder passes count as the objective's: ``objective_ms_tlm`` includes them).
  ``..._vs_regulariser_only`` divides by the step with the regulariser alone instead, whose
  backward skips the source encoder: that ratio is mostly the source side's backward
  (~1.3-1.4 for every objective, l2's negligible loss included), not the objective's cost.
  Medians of per-repetition ratios over
  5 interleaved repetitions (whole steps jitter by a few percent).
  ``objective_ms_<objective>``: the objective's own forward + backward (word pooling, loss,
  gradient down to the subword states; median of 15) on the batch's encoder states, and
  ``objective_share_<objective>`` that time / the reference step: the precise form of the
  overhead, free of step jitter. Full mode: FLORES-200 devtest de-en, the first batch of 24
  (``../shared/data``, else the demo corpus), a randomly initialised BERT of mBERT's shape
  (768 wide, 12 layers, 12 heads; WordPiece vocabulary learned from the demo corpus and the
  batch): the objective's cost does not depend on the weights, the encoder's does on their
  shapes only; then ``..._e5_small`` keys for sinkhorn with the embedded e5-small.
  ``--quick``: 64 wide, 2 layers, demo batch of 8. Links (l2, contrastive) are the diagonal
  ``i-i``: a loss's cost does not depend on which words are linked.
- ``peak_mem_15_vs_1_langs``: peak RSS of a 2-step ``xalign`` training run with 15 language
  pairs / with 1 pair, each in a fresh subprocess (``VmHWM``: :func:`peak_rss_gib`); with a
  GPU also ``peak_cuda_mem_15_vs_1_langs`` (``torch.cuda.max_memory_allocated``). Full: the embedded
  ``packaged:multilingual-e5-small`` on FLORES-200 devtest (``../shared/data``), paper batch
  (24, 2 micro-steps); ``--quick`` or without the data: a tiny random BERT on the demo corpus
  with the 5 demo languages repeated under 15 codes. The peak is the activations of the
  longest padded batch the run meets, and 15 pairs meet 15 times as many batches, so full
  mode also gives ``peak_mem_15_vs_1_langs_equal_length`` (both runs truncated to 32
  subwords: every batch has the same shape, the ratio is the number of pairs alone),
  ``peak_mem_15_vs_1_langs_same_data`` (bg's files under all 15 codes vs bg alone run for
  30 steps: the same sentences and as many batches, only the number of pairs differs) and
  ``peak_mem_15_vs_1_langs_checkpointing`` (``train.gradient_checkpointing=true``).
- ``eval_sentences_per_s_align``: sentences encoded and aligned per second by the ``align``
  task's ``predict_links`` (default ``ExtractConfig``; both sides of each pair count);
  ``eval_sentences_per_s_tatoeba``: sentences embedded per second by the ``tatoeba`` task's
  ``embed``. Embedded e5 on the demo corpus (``--quick``: the tiny random BERT).
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
E5 = "packaged:multilingual-e5-small"
# 15 FLORES-200 languages (code used in the config, file stem)
FLORES_15 = [
    ("bg", "bul_Cyrl"),
    ("de", "deu_Latn"),
    ("el", "ell_Grek"),
    ("es", "spa_Latn"),
    ("fr", "fra_Latn"),
    ("ru", "rus_Cyrl"),
    ("tr", "tur_Latn"),
    ("ar", "arb_Arab"),
    ("vi", "vie_Latn"),
    ("th", "tha_Thai"),
    ("zh", "zho_Hans"),
    ("hi", "hin_Deva"),
    ("sw", "swh_Latn"),
    ("ur", "urd_Arab"),
    ("it", "ita_Latn"),
]


# ----------------------------------------------------------------------------- models
def random_bert(
    directory: Path,
    *,
    hidden: int,
    layers: int,
    vocab: int = 8000,
    texts: list[Any] | None = None,
) -> Path:
    """A randomly initialised BERT with a WordPiece vocabulary learned from the demo corpus
    (plus ``texts``: sentences, or lists of words, the model will encode)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from tokenizers.trainers import WordPieceTrainer
    from transformers import BertConfig, BertForMaskedLM, PreTrainedTokenizerFast

    from xalign.data.corpus import DEMO_LANGUAGES, read_parallel

    demo = [s for lang in DEMO_LANGUAGES for p in read_parallel("demo", lang, "en") for s in p[:2]]
    extra = [t if isinstance(t, str) else " ".join(t) for t in texts or []]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(
        demo + extra, WordPieceTrainer(vocab_size=vocab, special_tokens=special)
    )
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64),
        intermediate_size=4 * hidden,
        max_position_embeddings=512,
    )
    # with its (random) masked-LM head, for tlm; AutoModel loads the encoder from it
    BertForMaskedLM(config).save_pretrained(directory)
    fast.save_pretrained(directory)
    return directory


# ----------------------------------------------------------------------- step overhead
OBJECTIVES: dict[str, tuple[str, dict[str, Any]]] = {
    "sinkhorn_sentence": ("sinkhorn", {"scope": "sentence"}),
    "sinkhorn_batch": ("sinkhorn", {"scope": "batch"}),
    "l2": ("l2", {}),
    "contrastive": ("contrastive", {}),
    "mixed_ot": ("mixed_ot", {}),
    "translation_ranking": ("translation_ranking", {}),
    "distill": ("distill", {}),
    "so": ("so", {}),
    "co": ("co", {}),
    "tlm": ("tlm", {}),
}


def _objective(name: str, options: dict[str, Any], hidden: int) -> Any:
    from xalign.plugins import get_registry

    return get_registry().objective(name).cls.from_options(options, hidden_size=hidden)


def step_overhead(quick: bool) -> dict[str, float]:
    """Every ``step_overhead_*`` key (see the module docstring)."""
    threads = torch.get_num_threads()
    if quick:  # a tiny model is far faster on one thread of a busy machine
        torch.set_num_threads(1)
    try:
        if quick:
            data = _step_data("demo", batch_size=8)
            with tempfile.TemporaryDirectory(prefix="xalign-bench-") as tmp:
                model = random_bert(Path(tmp), hidden=64, layers=2, vocab=2000)
                return _step_overhead(model, data, OBJECTIVES, reps=2, hidden=64)
        corpus = _flores_de()
        data = _step_data(corpus or "demo", batch_size=24)
        texts = [s for e in data.batch(data.pairs[0], 0) for s in (e.src_words, e.tgt_words)]
        with tempfile.TemporaryDirectory(prefix="xalign-bench-") as tmp:
            # mBERT's shape (the paper's encoder): 768 wide, 12 layers, 12 heads
            model = random_bert(Path(tmp), hidden=768, layers=12, texts=texts)
            out = _step_overhead(model, data, OBJECTIVES, reps=5, hidden=768)
        e5 = {"sinkhorn_sentence": OBJECTIVES["sinkhorn_sentence"]}
        small = _step_overhead(E5, data, e5, reps=5, hidden=384)
        out.update({f"{k}_e5_small": v for k, v in small.items()})
        return out
    finally:
        torch.set_num_threads(threads)


def _flores_de() -> dict[str, Any] | None:
    flores = ROOT.parent / "shared" / "data" / "parallel" / "flores200_devtest"
    if not flores.is_dir():
        return None
    return {
        "de": {"src": str(flores / "deu_Latn.devtest"), "tgt": str(flores / "eng_Latn.devtest")}
    }


def _step_data(corpus: Any, *, batch_size: int) -> Any:
    from xalign.data.prepare import PrepareOptions, prepare

    prepared = prepare(corpus, ["de"], PrepareOptions(target="en"), tokenizer=None)
    return prepared.parallel_data(pairs_per_language=None, batch_size=batch_size, seed=0)


def _step_overhead(
    model: Any, data: Any, objectives_spec: dict[str, Any], *, reps: int, hidden: int
) -> dict[str, float]:
    from xalign.batch import AlignmentBatch
    from xalign.encoders import load_encoder
    from xalign.recipe import drift_regulariser, frozen_upto_layer

    encoder = load_encoder(str(model))
    encoder.train()
    frozen = frozen_upto_layer(encoder)
    pair = data.pairs[0]
    examples = data.batch(pair, 0)
    langs = [pair.src] * len(examples), [pair.tgt] * len(examples)
    src_words = [e.src_words for e in examples]
    tgt_words = [e.tgt_words for e in examples]
    diagonal = [
        {(i, i) for i in range(min(len(s), len(t)))}
        for s, t in zip(src_words, tgt_words, strict=True)
    ]
    objectives = {key: _objective(n, o, hidden) for key, (n, o) in objectives_spec.items()}
    for obj in objectives.values():
        obj.prepare(data)
    specs = {s for obj in objectives.values() for s in obj.needs().links}
    links = {spec: diagonal for spec in specs}
    mlm = None
    if any(obj.needs().mlm for obj in objectives.values()):  # tlm: the head, once
        encoder.attach_mlm_head(str(model), [k for k, o in objectives.items() if o.needs().mlm])
        mlm = encoder.masked_lm()
    params = [p for p in encoder.parameters() if p.requires_grad]
    params += [p for o in objectives.values() for p in o.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=1e-6)

    def step(objective: Any) -> float:
        start = time.perf_counter()
        src = encoder.encode(src_words, langs[0])
        tgt = encoder.encode(tgt_words, langs[1])
        with torch.no_grad():
            c0 = frozen.encode(tgt_words, langs[1])
        loss = drift_regulariser(tgt, c0)
        if objective == "reference":  # the source side's backward, at no cost of its own
            loss = loss + 0.0 * src.hidden.sum()
        elif objective is not None:
            batch = AlignmentBatch(pair.name, src, tgt, c0, links, mlm=mlm)
            loss = loss + objective.loss(batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    kinds: dict[str, Any] = {"regulariser_only": None, "reference": "reference", **objectives}
    for kind in kinds.values():  # warm-up (allocator, thread pools)
        step(kind)
    times: dict[str, list[float]] = {key: [] for key in kinds}
    for _ in range(reps):  # interleaved: drift of the machine hits every kind alike
        for key, kind in kinds.items():
            times[key].append(step(kind))
    median = {key: statistics.median(v) for key, v in times.items()}
    alone = _objective_alone(
        encoder, src_words, tgt_words, langs, objectives, links, pair.name, mlm=mlm
    )
    out: dict[str, float] = {}

    def paired(key: str, base: str) -> float:  # median over repetitions of the step ratio
        ratios = [t / b for t, b in zip(times[key], times[base], strict=True)]
        return round(statistics.median(ratios), 4)

    for key in objectives:
        out[f"step_overhead_{key}"] = paired(key, "reference")
        out[f"objective_ms_{key}"] = round(1000 * alone[key], 2)
        out[f"objective_share_{key}"] = round(alone[key] / median["reference"], 4)
        out[f"step_overhead_{key}_vs_regulariser_only"] = paired(key, "regulariser_only")
    out["step_seconds_reference"] = round(median["reference"], 4)
    out["step_seconds_regulariser_only"] = round(median["regulariser_only"], 4)
    return out


def _objective_alone(
    encoder: Any,
    src_words: list[list[str]],
    tgt_words: list[list[str]],
    langs: tuple[list[str], list[str]],
    objectives: dict[str, Any],
    links: dict[Any, Any],
    pair: str,
    reps: int = 15,
    mlm: Any = None,
) -> dict[str, float]:
    """Seconds of each objective's own forward + backward (median of ``reps``), on the
    batch's encoder states cut from the encoder's graph: the word pooling, the loss and its
    gradient down to the subword states, nothing of the encoder."""
    import dataclasses

    from xalign.batch import AlignmentBatch

    with torch.no_grad():
        sides = [encoder.encode(w, lg) for w, lg in zip((src_words, tgt_words), langs, strict=True)]
    c0 = sides[1]
    out = {}
    for key, objective in objectives.items():
        times = []
        for _ in range(reps + 1):
            src, tgt = (
                dataclasses.replace(s, hidden=s.hidden.detach().requires_grad_()) for s in sides
            )
            start = time.perf_counter()
            objective.loss(AlignmentBatch(pair, src, tgt, c0, links, mlm=mlm)).backward()
            times.append(time.perf_counter() - start)
        out[key] = statistics.median(times[1:])  # the first call warms up
    return out


# ------------------------------------------------------------------------- memory
def _mem_overrides(
    n: int, quick: bool, tmp: Path, extra: tuple[str, ...] = (), *, same_data: bool = False
) -> list[str]:
    """Overrides of a memory run with ``n`` pairs (+ ``extra`` overrides). ``same_data``
    (full mode): every code reads bg's files and 1 pair runs 30 steps instead of 2, so that
    it meets as many batches as 15 pairs do, from the same sentences."""
    flores = ROOT.parent / "shared" / "data" / "parallel" / "flores200_devtest"
    steps = 2 * (15 // n if same_data else 1)
    common = [
        f"train.max_steps={steps}",
        "train.save_model=false",
        f"train.output_dir={tmp / '-'.join([f'out{n}', *extra, *['same'] * same_data])}",
        f"tracking.uri=sqlite:///{tmp / 'mlflow.db'}",  # migrated by peak_memory
        *extra,
    ]
    if not quick and flores.is_dir():
        pairs = [(c, FLORES_15[0][1] if same_data else s) for c, s in FLORES_15[:n]]
        common.append(f"data.languages=[{','.join(c for c, _ in pairs)}]")
        for code, stem in pairs:
            common += [
                f"data.corpus.{code}.src={flores / f'{stem}.devtest'}",
                f"data.corpus.{code}.tgt={flores / 'eng_Latn.devtest'}",
            ]
        return [f"model.name={E5}", *common]
    from xalign.data.corpus import DEMO_LANGUAGES, read_parallel

    codes = [c for c, _ in FLORES_15[:n]]
    for k, code in enumerate(codes):  # the demo pairs, one demo language per code in turn
        rows = read_parallel("demo", DEMO_LANGUAGES[k % len(DEMO_LANGUAGES)], "en")
        (tmp / f"{code}-en.tsv").write_text(
            "".join(f"{r[0]}\t{r[1]}\n" for r in rows), encoding="utf-8"
        )
    model = tmp / "model"
    if not model.exists():
        random_bert(model, hidden=64, layers=2, vocab=2000)
    return [
        f"model.name={model}",
        f"data.corpus={tmp / '{src}-{tgt}.tsv'}",
        f"data.languages=[{','.join(codes)}]",
        "data.limit=48",
        "train.batch_size=8",
        *common,
    ]


def peak_rss_gib() -> float:
    """Peak resident set size of this process since it was started (``VmHWM``, GiB).

    Not ``ru_maxrss``: getrusage keeps it across fork and exec, so a child started by a
    parent holding 6 GiB reports at least 6 GiB whatever it uses itself (the parent's
    resident pages count as the child's until exec)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**20
    except OSError:  # no procfs: the getrusage figure, which is right for a small parent
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def mem_child(overrides: list[str]) -> dict[str, float]:
    """Run 2 training steps in this process; peak RSS (GiB) and peak CUDA memory (GiB)."""
    from xalign.config import load_config
    from xalign.recipe import run_training

    cfg = load_config(None, overrides)
    run_training(cfg, show_progress=False)
    out = {"peak_rss_gib": peak_rss_gib()}
    if torch.cuda.is_available():
        out["peak_cuda_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def _measure(
    n: int, quick: bool, tmp: Path, extra: tuple[str, ...] = (), same_data: bool = False
) -> dict[str, float]:
    overrides = _mem_overrides(n, quick, tmp, extra, same_data=same_data)
    args = [sys.executable, "-m", "benchmarks.training", "mem", *overrides]
    env = {**os.environ, "OMP_NUM_THREADS": "1"} if quick else None
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"memory child with {n} pairs failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def peak_memory(quick: bool) -> dict[str, float]:
    """``peak_mem_15_vs_1_langs`` (+ the absolute peaks in GiB, + CUDA with a GPU); full mode
    also the ratio at equal batch shapes and with activation checkpointing."""
    from mlflow.tracking import MlflowClient

    variants: dict[str, tuple[tuple[str, ...], bool]] = {"": ((), False)}
    if not quick:
        # the activations of the longest padded batch set the peak, and 15 pairs meet 15 times
        # as many batches as 1 pair in 2 steps; truncated to 32 subwords every batch has the
        # same shape, so this ratio is the number of pairs alone
        variants["_equal_length"] = (("model.max_length=32",), False)
        # bg's files under every code, 1 pair run 15 times as long: same sentences, as many
        # batches, only the number of pairs differs
        variants["_same_data"] = ((), True)
        variants["_checkpointing"] = (("train.gradient_checkpointing=true",), False)
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="xalign-mem-") as tmp:
        # the store's schema migrations run here, in neither measured process
        MlflowClient(f"sqlite:///{Path(tmp) / 'mlflow.db'}").search_experiments(max_results=1)
        for suffix, (extra, same_data) in variants.items():
            one = _measure(1, quick, Path(tmp), extra, same_data)
            many = _measure(15, quick, Path(tmp), extra, same_data)
            ratio = many["peak_rss_gib"] / one["peak_rss_gib"]
            out[f"peak_mem_15_vs_1_langs{suffix}"] = round(ratio, 4)
            out[f"peak_rss_gib_1_lang{suffix}"] = round(one["peak_rss_gib"], 3)
            out[f"peak_rss_gib_15_langs{suffix}"] = round(many["peak_rss_gib"], 3)
            if "peak_cuda_gib" in one:
                cuda = many["peak_cuda_gib"] / one["peak_cuda_gib"]
                out[f"peak_cuda_mem_15_vs_1_langs{suffix}"] = round(cuda, 4)
    return out


# ------------------------------------------------------------------------ evaluation
def eval_throughput(quick: bool) -> dict[str, float]:
    """``eval_sentences_per_s_align`` and ``eval_sentences_per_s_tatoeba``."""
    from xalign.alignment.extract import ExtractConfig
    from xalign.alignment.gold import GoldSet
    from xalign.data.corpus import read_parallel
    from xalign.data.text import tokenize_words
    from xalign.encoders import load_encoder
    from xalign.plugins import get_registry

    n = 32 if quick else 250
    rows = read_parallel("demo", "de", "en")[:n]
    src, eng = [r[0] for r in rows], [r[1] for r in rows]
    with tempfile.TemporaryDirectory(prefix="xalign-bench-") as tmp:
        name = str(random_bert(Path(tmp), hidden=64, layers=2, vocab=2000)) if quick else E5
        encoder = load_encoder(name)
    encoder.eval()
    align_mod = sys.modules[get_registry().task("align").cls.__module__]
    tatoeba_mod = sys.modules[get_registry().task("tatoeba").cls.__module__]
    src_words = [tokenize_words(s, "de") for s in src]
    eng_words = [tokenize_words(s, "en") for s in eng]
    empty: list[set[tuple[int, int]]] = [set() for _ in rows]
    gold = GoldSet("bench", "de", "en", src_words, eng_words, empty, empty)
    align_mod.predict_links(encoder, gold, ExtractConfig(), batch_size=32)  # warm-up
    start = time.perf_counter()
    align_mod.predict_links(encoder, gold, ExtractConfig(), batch_size=32)
    align_s = time.perf_counter() - start
    config = tatoeba_mod.TatoebaConfig()
    tatoeba_mod.embed(encoder, src[:8], config)  # warm-up
    start = time.perf_counter()
    tatoeba_mod.embed(encoder, src + eng, config)
    tatoeba_s = time.perf_counter() - start
    return {
        "eval_sentences_per_s_align": round(2 * n / align_s, 2),
        "eval_sentences_per_s_tatoeba": round(2 * n / tatoeba_s, 2),
    }


def main(argv: list[str]) -> int:
    """``python -m benchmarks.training mem OVERRIDE...``: the memory child (prints JSON)."""
    if argv[:1] != ["mem"]:
        print("usage: python -m benchmarks.training mem OVERRIDE...", file=sys.stderr)
        return 2
    print(json.dumps(mem_child(argv[1:])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
