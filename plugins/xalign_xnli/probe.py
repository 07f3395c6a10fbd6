"""``xnli-probe``: XNLI transfer through a frozen encoder and a linear classifier.

Each premise and hypothesis is embedded once (mean of one layer's token states, the
Tatoeba/BUCC pooling), a pair is the InferSent feature vector [u, v, |u−v|, u∗v] (Conneau et
al., EMNLP 2017, §3.1), and a multinomial logistic regression is fit on English XNLI *dev*
(2490 pairs) and tested on the first ``test_limit`` pairs of each XNLI *test* set (labels from
``DERIVED_test-labels.txt``). Nothing is trained in the encoder and nothing is random: a model
gets the same accuracy on every run, so the seed spread of a fine-tuned protocol (``xnli-mini``:
0.3-3.6 points) is gone and differences between models are differences between their vectors.
Accuracy is in percent; ``per_example`` is 1/0 correctness per test pair.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import xalign
from xalign import (
    ProbeSettings,
    TaskContext,
    TaskResult,
    check_test_files,
    chosen_test_file,
    embed_sentences,
    fit_linear_probe,
    pair_features,
    parse_languages,
)
from xalign_xnli.data import NLI_FILE, load_xnli, read_nli_file

PROBE_LANGS = ("en", "bg", "de", "el", "es", "fr", "ru", "zh")


@dataclass
class XnliProbeConfig(ProbeSettings):
    """Options of ``xnli-probe`` (checked by :class:`xalign.ProbeSettings`, where ``c``,
    ``max_length`` and ``batch_size`` are documented).

    - ``layer``: hidden-state index (``-1`` = last, the layer the objectives tune).
    - ``pooling``: sentence vector of premise and hypothesis: ``mean`` (all attended tokens,
      special tokens included) or ``cls`` (the first token).
    - ``train_limit``: first N rows of English XNLI dev the probe is fit on; null = all 2490.
    - ``test_limit``: first N rows of each test set; null = all (5010 in XNLI).
    - ``languages``: test languages (XNLI test or ``test_files``); ``xalign eval
      --languages`` evaluates a subset of them.
    - ``test_files``: language -> your own labeled ``premise<TAB>hypothesis<TAB>label`` file,
      read instead of XNLI test (the language must be among ``languages``).
    """

    languages: list[str] = field(default_factory=lambda: list(PROBE_LANGS))
    test_files: dict[str, str] = field(default_factory=dict)
    test_limit: int | None = 2000

    def __post_init__(self) -> None:
        super().__post_init__()
        self.languages = parse_languages(self.languages)
        self.test_files = check_test_files(self.test_files, "xnli-probe", NLI_FILE, self.languages)


class XnliProbe(xalign.Task):
    """XNLI through a frozen encoder: linear probe fit on English dev, accuracy per language."""

    name = "xnli-probe"
    description = (
        "XNLI with a frozen encoder: logistic regression on [u, v, |u-v|, u*v] of mean-pooled "
        "sentence vectors, fit on English dev, accuracy on each test set (deterministic)"
    )
    Config = XnliProbeConfig
    data_folders = ("xnli",)  # what Task.inputs hashes
    uses_seed = False  # nothing random: one evaluation serves every seed
    result_version = "2"  # 2: scale=100 declared
    metrics = (xalign.Metric("accuracy", higher_is_better=True, scale=100.0),)  # %, items 1/0

    def _languages(self, context: TaskContext) -> list[str]:
        c = self.config
        return parse_languages(context.languages) if context.languages else list(c.languages)

    def _test_file(self, lang: str) -> Path | None:
        return chosen_test_file(self.config.test_files, lang, self.config.languages, self.name)

    def _test(self, lang: str, context: TaskContext) -> list[dict]:
        path = self._test_file(lang)
        if path is not None:
            return read_nli_file(path, limit=self.config.test_limit)
        return load_xnli(lang, "test", context.data_dir, limit=self.config.test_limit)

    def inputs(self, context: TaskContext) -> list[Path]:
        """The data folder's files (``Task.inputs``) and the ``test_files`` read."""
        chosen = [self._test_file(lang) for lang in self._languages(context)]
        return super().inputs(context) + [p for p in chosen if p is not None]

    def run(self, model: str, context: TaskContext) -> TaskResult:
        c, started = self.config, time.perf_counter()
        train = load_xnli("en", "dev", context.data_dir, limit=c.train_limit)
        tests = {lang: self._test(lang, context) for lang in self._languages(context)}
        for what, rows in [("en dev", train), *((f"{k} test", v) for k, v in tests.items())]:
            if not rows or any(r["label"] < 0 for r in rows):
                raise ValueError(
                    f"xnli-probe: XNLI {what} has no rows or unlabeled rows "
                    "(test labels come from DERIVED_test-labels.txt beside test-L.tsv)"
                )
        encoder = xalign.load_encoder(model, layer=c.layer, max_length=c.max_length)
        encoder.to(context.device).eval()
        train_x = self._features(encoder, train, context)
        probe = fit_linear_probe(train_x, _labels(train), c=c.c)
        per_example: dict[str, list[float]] = {}
        for lang in xalign.track(list(tests), "xnli-probe", context.show_progress):
            rows = tests[lang]
            predicted = probe.predict(self._features(encoder, rows, context))
            per_example[lang] = (predicted == _labels(rows)).astype(float).tolist()
        scores = {lang: {"accuracy": 100.0 * float(np.mean(v))} for lang, v in per_example.items()}
        transfer = [
            s["accuracy"] for lang, s in scores.items() if xalign.primary_language(lang) != "en"
        ]
        meta: dict[str, Any] = {
            "metric": "accuracy (%) per language; per_example = 1/0 correctness",
            "avg_accuracy_non_en": float(np.mean(transfer)) if transfer else None,
            "model": model,
            "config": asdict(c),
            "layer": encoder.layer,
            "n_train": len(train),
            "n_test": {lang: len(v) for lang, v in per_example.items()},
            "train_accuracy": 100.0 * float(np.mean(probe.predict(train_x) == _labels(train))),
            "seconds": round(time.perf_counter() - started, 2),
        }
        return TaskResult(self.name, "accuracy", scores, per_example, meta)

    def _features(
        self, encoder: xalign.Encoder, rows: list[dict], context: TaskContext
    ) -> np.ndarray:
        c = self.config
        kw = {"pooling": c.pooling, "batch_size": c.batch_size, "device": context.device}
        u = embed_sentences(encoder, [r["premise"] for r in rows], **kw)
        v = embed_sentences(encoder, [r["hypothesis"] for r in rows], **kw)
        return pair_features(u, v)


def _labels(rows: list[dict]) -> np.ndarray:
    return np.asarray([int(r["label"]) for r in rows])
