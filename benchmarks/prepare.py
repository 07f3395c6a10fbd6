"""Prepare-stage and eflomal throughput (issue 10, "Prepare once").

Keys (``python -m benchmarks --only prepare,eflomal``):

- ``prepare_pairs_per_s``: a cold prepare (read, NFC/unescape, Moses words, filters, subword
  check with the run's tokenizer, Arrow write) of the real FLORES devtest pairs bg de el es fr
  -> en in ``../shared/data/parallel`` (5 x 1012 pairs), in sentence pairs per second.
- ``prepare_big_pairs_per_s_np1`` / ``_np2``: the same on a bigger input made by repeating the
  real lines (``BIG_ROWS`` per language, 2 languages) with 1 and 2 Moses worker processes
  (``datasets.map(num_proc=...)``), in this process: how the Moses step scales with cores.
- ``prepare_250k_x2_cold_s``: wall time of a cold ``xalign prepare --config F -o sinkhorn``
  (fresh process: imports, tokenizer load, read, Moses words with the default worker count
  = every core, filters, subword check, Arrow write) of de and el at the paper's 250k pairs
  each, made by repeating the real lines; ``prepare_250k_x5_min`` / ``prepare_250k_x15_min``
  scale it to 5 and 15 languages (pairs are prepared one after another; the whole command
  is scaled, its once-per-command part too, so these over-project).
- ``prepare_250k_pair_s`` / ``prepare_250k_fixed_s``: that cold command split into the mean
  build time of one 250k pair (its entry's ``seconds``: read, Moses, filters, subword check,
  Arrow write) and the rest (imports, model and tokenizer load, the model's conversion on a
  fresh cache, file digests); ``prepare_250k_x15_fixed_plus_min`` = fixed + 15 x per pair.
- ``prepare_cache_hit_s``: the same command again, a cache hit (imports, config, tokenizer
  load, content keys of the 4 input files, checks, memory-map): what ``xalign run`` spends
  on its data before training when the data is prepared.
- ``prepare_peak_rss_gb``: peak memory of that cold prepare, the process and its workers
  together (sum of proportional set sizes, so pages shared by forked workers count once,
  sampled every 0.25 s), measured at 250k pairs per language; 15 languages need what 2 need.
- ``eflomal_pairs_per_s``: word links (eflomal forward + reverse, symmetrised, cold cache) of
  the FLORES de-en pairs; ``eflomal_250k_x5_min`` projects linearly (projected).

``--quick`` runs everything on the embedded demo corpus with a tokenizer trained on the spot
(seconds; the numbers mean nothing).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FLORES = ROOT.parent / "shared" / "data" / "parallel" / "flores200_devtest"
FLORES_FILES = {
    "bg": "bul_Cyrl",
    "de": "deu_Latn",
    "el": "ell_Grek",
    "es": "spa_Latn",
    "fr": "fra_Latn",
}
BIG_ROWS = 20_000  # pairs per language of the repeated input (2 languages)
PAPER_PAIRS = 250_000


def _flores_corpus() -> dict[str, dict[str, str]] | None:
    if not FLORES.is_dir():
        return None
    eng = str(FLORES / "eng_Latn.devtest")
    return {
        lang: {"src": str(FLORES / f"{name}.devtest"), "tgt": eng}
        for lang, name in FLORES_FILES.items()
    }


def _tiny_tokenizer() -> Any:
    """A WordPiece tokenizer trained on the demo corpus (quick mode: no model download)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from tokenizers.trainers import WordPieceTrainer
    from transformers import PreTrainedTokenizerFast

    from xalign.data.corpus import DEMO_LANGUAGES, read_parallel

    texts = [s for lang in DEMO_LANGUAGES for p in read_parallel("demo", lang, "en") for s in p[:2]]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(texts, WordPieceTrainer(vocab_size=600, special_tokens=["[UNK]"]))
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")


def _e5_tokenizer() -> Any:
    """The default model's tokenizer (multilingual-e5-small, XLM-R's 250k SentencePiece)."""
    from transformers import AutoTokenizer

    from xalign.encoders.encoder import resolve_model_dir

    return AutoTokenizer.from_pretrained(resolve_model_dir("packaged:multilingual-e5-small"))


def _repeat(corpus: dict[str, dict[str, str]], rows: int, folder: Path) -> dict[str, Any]:
    """Each language's files repeated to ``rows`` lines (FLORES-style two-file entries)."""
    out = {}
    for lang, spec in corpus.items():
        entry = {}
        for side, path in spec.items():
            lines = Path(path).read_text(encoding="utf-8").splitlines()
            text = "".join(lines[i % len(lines)] + "\n" for i in range(rows))
            target = folder / f"{lang}.{side}.txt"
            target.write_text(text, encoding="utf-8")
            entry[side] = str(target)
        out[lang] = entry
    return out


def _time_prepare(corpus: Any, langs: list[str], tok: Any, cache: Path, **kw: Any) -> float:
    from xalign.data.prepare import PrepareOptions, prepare

    start = time.perf_counter()
    got = prepare(
        corpus, langs, PrepareOptions(max_length=512), tokenizer=tok, cache_dir=cache, **kw
    )
    seconds = time.perf_counter() - start
    assert not got.cache_hit
    return seconds


def _read_pairs(corpus: Any, langs: list[str], limit: int | None = None) -> int:
    from xalign.data.corpus import language_spec, read_parallel

    return sum(len(read_parallel(language_spec(corpus, lg), lg, "en", limit=limit)) for lg in langs)


def prepare_bench(quick: bool) -> dict[str, float]:
    """Every ``prepare_*`` key (see the module docstring)."""
    import warnings

    warnings.simplefilter("ignore")  # DataWarning: truncation counts are not the point here
    results: dict[str, float] = {}
    corpus = _flores_corpus()
    with tempfile.TemporaryDirectory(prefix="xalign-bench-prepare-") as tmp:
        folder = Path(tmp)
        if quick or corpus is None:
            tok = _tiny_tokenizer()
            langs = ["de", "fr"]
            n = _read_pairs("demo", langs)
            seconds = _time_prepare("demo", langs, tok, folder / "c0")
            results["prepare_pairs_per_s"] = n / seconds
            start = time.perf_counter()
            from xalign.data.prepare import PrepareOptions, prepare

            hit = prepare(
                "demo",
                langs,
                PrepareOptions(max_length=512),
                tokenizer=tok,
                cache_dir=folder / "c0",
            )
            results["prepare_cache_hit_s"] = time.perf_counter() - start
            assert hit.cache_hit
            rate = results["prepare_pairs_per_s"]
            results["prepare_250k_x5_min"] = 5 * PAPER_PAIRS / rate / 60
            results["prepare_250k_x15_min"] = 15 * PAPER_PAIRS / rate / 60
            results["prepare_peak_rss_gb"] = (
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
            )
            return results
        tok = _e5_tokenizer()
        langs = list(corpus)
        n = _read_pairs(corpus, langs)
        results["prepare_pairs_per_s"] = n / _time_prepare(
            corpus, langs, tok, folder / "c0", num_proc=1
        )
        big = _repeat({k: corpus[k] for k in ("de", "el")}, BIG_ROWS, folder)
        for procs in (1, 2):
            seconds = _time_prepare(big, ["de", "el"], tok, folder / f"big{procs}", num_proc=procs)
            results[f"prepare_big_pairs_per_s_np{procs}"] = 2 * BIG_ROWS / seconds
        results.update(_paper_size(corpus, folder))
    return results


_CLI_RSS = r"""
import sys
sys.argv = ["xalign", *sys.argv[1:]]
from xalign.cli import main
main()
"""


def _paper_size(corpus: dict[str, dict[str, str]], folder: Path) -> dict[str, float]:
    """A cold ``xalign prepare`` of 2 languages x 250k pairs (the real lines repeated), in a
    fresh process with the default worker count, then the same command on the cache hit."""
    (folder / "paper").mkdir()
    data = _repeat({k: corpus[k] for k in ("de", "el")}, PAPER_PAIRS, folder / "paper")
    config = folder / "paper.yaml"
    config.write_text(
        json.dumps(
            {
                "extends": str(ROOT / "configs" / "default.yaml"),
                "data": {"corpus": data, "languages": ["de", "el"]},
            }
        ),
        encoding="utf-8",
    )
    env = {**os.environ, "XALIGN_CACHE_DIR": str(folder / "xc")}
    args = ["prepare", "--config", str(config), "-o", "sinkhorn", "--json"]
    seconds, peak, out = _run_sampled([sys.executable, "-c", _CLI_RSS, *args], env, folder)
    if json.loads(out)["cache_hit"]:
        raise RuntimeError("the cold prepare of the 250k input hit a cache")
    per_pair = [  # each entry's own build time (read .. Arrow write), from its manifest
        json.loads(m.read_text(encoding="utf-8"))["seconds"]
        for m in (folder / "xc" / "prepared").glob("*/manifest.json")
    ]
    if len(per_pair) != 2:
        raise RuntimeError(f"expected 2 prepared entries, found {len(per_pair)}")
    fixed = seconds - sum(per_pair)
    hit_s, _, out = _run_sampled([sys.executable, "-c", _CLI_RSS, *args], env, folder)
    if not json.loads(out)["cache_hit"]:
        raise RuntimeError("the second prepare of the 250k input missed the cache")
    return {
        "prepare_250k_x2_cold_s": seconds,
        "prepare_250k_x5_min": seconds * 5 / 2 / 60,
        "prepare_250k_x15_min": seconds * 15 / 2 / 60,
        "prepare_250k_pair_s": sum(per_pair) / 2,
        "prepare_250k_fixed_s": fixed,
        "prepare_250k_x15_fixed_plus_min": (fixed + 15 * sum(per_pair) / 2) / 60,
        "prepare_cache_hit_s": hit_s,
        "prepare_peak_rss_gb": peak,
    }


def _run_sampled(cmd: list[str], env: dict[str, str], folder: Path) -> tuple[float, float, str]:
    """Run ``cmd``; its wall seconds, the peak total memory of its process tree (GB, the sum
    of proportional set sizes of the process and its workers, sampled every 0.25 s: shared
    pages count once) and its standard output."""
    import psutil

    out_path, err_path = folder / "stdout.txt", folder / "stderr.txt"
    with out_path.open("w") as out, err_path.open("w") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, cwd=ROOT)
        root = psutil.Process(proc.pid)
        peak = 0
        while proc.poll() is None:
            total = 0
            try:
                tree = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                break
            for p in tree:
                try:
                    total += p.memory_full_info().pss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            peak = max(peak, total)
            time.sleep(0.25)
        seconds = time.perf_counter() - start
    if proc.returncode != 0:
        tail = err_path.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise RuntimeError(f"{' '.join(cmd[3:])} failed:\n{tail}")
    return seconds, peak / 1e9, out_path.read_text(encoding="utf-8")


def eflomal_bench(quick: bool) -> dict[str, float]:
    """``eflomal_pairs_per_s`` and ``eflomal_250k_x5_min`` (see the module docstring)."""
    from xalign.data.corpus import language_spec, read_parallel
    from xalign.data.links import corpus_links
    from xalign.data.text import tokenize_words

    corpus = _flores_corpus()
    if quick or corpus is None:
        raw = read_parallel("demo", "de", "en", limit=60)
    else:
        raw = read_parallel(language_spec(corpus, "de"), "de", "en")
    src = [tokenize_words(p.src, "de") for p in raw]
    tgt = [tokenize_words(p.tgt, "en") for p in raw]
    with tempfile.TemporaryDirectory(prefix="xalign-bench-eflomal-") as tmp:
        start = time.perf_counter()
        corpus_links(src, tgt, ["intersection"], pair=("de", "en"), cache_dir=Path(tmp))
        seconds = time.perf_counter() - start
    rate = len(src) / seconds
    return {"eflomal_pairs_per_s": rate, "eflomal_250k_x5_min": 5 * PAPER_PAIRS / rate / 60}


TARGETS = {
    "prepare_250k_x15_min": "<= 15 (15/2 x the measured 250k x 2)",
    "prepare_cache_hit_s": "<= 30",
    "prepare_peak_rss_gb": "<= 4 (measured at 250k per language)",
}
