"""Prepare-stage and eflomal throughput (issue 10, "Prepare once").

Keys (``python -m benchmarks --only prepare,eflomal``):

- ``prepare_pairs_per_s``: a cold prepare (read, NFC/unescape, Moses words, filters, subword
  check with the run's tokenizer, Arrow write) of the real FLORES devtest pairs bg de el es fr
  -> en in ``../shared/data/parallel`` (5 x 1012 pairs), in sentence pairs per second.
- ``prepare_big_pairs_per_s_np1`` / ``_np2``: the same on a bigger input made by repeating the
  real lines (``BIG_ROWS`` per language, 2 languages) with 1 and 2 Moses worker processes
  (``datasets.map(num_proc=...)``); ``prepare_250k_x5_min`` / ``prepare_250k_x15_min``
  project the faster of the two linearly to 250k pairs x 5 / x 15 languages (projected, not
  measured: the cost is per line, pair by pair, so it is linear in lines).
- ``prepare_cache_hit_s``: wall time of ``xalign prepare`` on a cache hit of the big input, in
  a fresh process (imports, config, model load for its tokenizer, content keys, checks,
  memory-map): what ``xalign run`` spends on its data before training when the data is
  prepared.
- ``prepare_peak_rss_gb``: peak RSS of a cold prepare in a fresh process (self + the largest
  worker), measured at two sizes per language and projected linearly to 250k pairs per
  language; pairs are prepared one after the other, so 15 languages need what one needs
  (``prepare_peak_rss_gb_measured_<n>`` are the measurements).
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
RSS_ROWS = (5_000, 20_000)  # pairs per language of the two RSS measurements
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


_RSS_SCRIPT = r"""
import json, resource, sys, warnings
warnings.simplefilter("ignore")
from transformers import AutoTokenizer
from xalign.data.prepare import PrepareOptions, prepare
corpus, langs, tok_dir, cache, procs = json.loads(sys.argv[1])
tok = AutoTokenizer.from_pretrained(tok_dir)
prepare(corpus, langs, PrepareOptions(max_length=512), tokenizer=tok, cache_dir=cache,
        num_proc=procs)
me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"self_kb": me, "children_kb": kids}))
"""


def _peak_rss_gb(corpus: Any, langs: list[str], tok_dir: str, cache: Path, procs: int) -> float:
    """Peak RSS (GB) of a cold prepare in a fresh process: its own peak + its largest worker's."""
    arg = json.dumps([corpus, langs, tok_dir, str(cache), procs])
    out = subprocess.run(
        [sys.executable, "-c", _RSS_SCRIPT, arg],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        timeout=1800,
    )
    rss = json.loads(out.stdout.strip().splitlines()[-1])
    return (rss["self_kb"] + rss["children_kb"]) / 1024**2


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
        rates = {}
        for procs in (1, 2):
            seconds = _time_prepare(big, ["de", "el"], tok, folder / f"big{procs}", num_proc=procs)
            rates[procs] = 2 * BIG_ROWS / seconds
            results[f"prepare_big_pairs_per_s_np{procs}"] = rates[procs]
        best = max(rates.values())
        results["prepare_250k_x5_min"] = 5 * PAPER_PAIRS / best / 60
        results["prepare_250k_x15_min"] = 15 * PAPER_PAIRS / best / 60
        # cache hit: a fresh `xalign prepare` on the big input's entries
        config = folder / "big.yaml"
        config.write_text(
            json.dumps(
                {
                    "extends": str(ROOT / "configs" / "default.yaml"),
                    "data": {"corpus": big, "languages": ["de", "el"]},
                }
            ),
            encoding="utf-8",
        )
        env = {**os.environ, "XALIGN_CACHE_DIR": str(folder / "xc")}
        xalign = str(Path(sys.executable).with_name("xalign"))
        cmd = [xalign, "prepare", "--config", str(config), "-o", "sinkhorn", "--json"]
        subprocess.run(cmd, env=env, capture_output=True, check=True, cwd=ROOT, timeout=1800)
        start = time.perf_counter()
        out = subprocess.run(cmd, env=env, capture_output=True, check=True, cwd=ROOT, text=True)
        results["prepare_cache_hit_s"] = time.perf_counter() - start
        assert json.loads(out.stdout)["cache_hit"]
        # peak RSS at two sizes per language (2 languages), projected to 250k per language
        tok_dir = _e5_dir()
        rss = {}
        for rows in RSS_ROWS:
            data = _repeat({k: corpus[k] for k in ("de", "el")}, rows, folder)
            rss[rows] = _peak_rss_gb(data, ["de", "el"], tok_dir, folder / f"rss{rows}", 2)
            results[f"prepare_peak_rss_gb_measured_{rows}"] = rss[rows]
        lo, hi = RSS_ROWS
        slope = (rss[hi] - rss[lo]) / (hi - lo)
        results["prepare_peak_rss_gb"] = rss[hi] + slope * (PAPER_PAIRS - hi)
    return results


def _e5_dir() -> str:
    from xalign.encoders.encoder import resolve_model_dir

    return resolve_model_dir("packaged:multilingual-e5-small")


def eflomal_bench(quick: bool) -> dict[str, float]:
    """``eflomal_pairs_per_s`` and ``eflomal_250k_x5_min`` (see the module docstring)."""
    from xalign.data.corpus import language_spec, read_parallel
    from xalign.data.text import tokenize_words
    from xalign.links import corpus_links

    corpus = _flores_corpus()
    if quick or corpus is None:
        raw = read_parallel("demo", "de", "en", limit=60)
    else:
        raw = read_parallel(language_spec(corpus, "de"), "de", "en")
    src = [tokenize_words(p.src, "de") for p in raw]
    tgt = [tokenize_words(p.tgt, "en") for p in raw]
    with tempfile.TemporaryDirectory(prefix="xalign-bench-eflomal-") as tmp:
        start = time.perf_counter()
        corpus_links(src, tgt, ["intersection"], pair="de-en", cache_dir=Path(tmp))
        seconds = time.perf_counter() - start
    rate = len(src) / seconds
    return {"eflomal_pairs_per_s": rate, "eflomal_250k_x5_min": 5 * PAPER_PAIRS / rate / 60}


TARGETS = {
    "prepare_250k_x15_min": "<= 15 (projected)",
    "prepare_cache_hit_s": "<= 30",
    "prepare_peak_rss_gb": "<= 4 (250k x 15, projected)",
}
