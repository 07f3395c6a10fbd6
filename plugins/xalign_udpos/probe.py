"""``pos-probe``: UD POS transfer through a frozen encoder and a linear classifier.

Every word of English UD EWT train gets one vector (one layer's subword states pooled over the
word, mean by default — the same word vectors the alignment objectives and the ``align`` task
read), a multinomial logistic regression over the 17 UPOS tags is fit on them, and the test
treebanks of the other languages are tagged word by word (the treebanks of ``pos-mini``).
Nothing in the encoder is trained and nothing is random: a model gets the same accuracy on
every run, so the seed spread of a fine-tuned tagger (``pos-mini``: 0.1-1.4 points) is gone.

Metric: token accuracy (%) over UD syntactic words. ``per_example`` is 1/0 per test word;
``counts`` holds correct and total words per test sentence, so ``compare``
resamples whole sentences and recomputes accuracy (as for ``udpos``). A word without a vector
(no subword, or cut by ``max_length``) gets the zero vector and is tagged like any other word.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

import xalign
from xalign import (
    ProbeSettings,
    TaskContext,
    TaskResult,
    encode_words,
    fit_linear_probe,
    parse_languages,
)
from xalign_udpos.conllu import UPOS_TAGS, TaggedSentence
from xalign_udpos.data import UdSource, UdSplit, check_test_files, check_treebanks

PROBE_LANGS = ("en", "bg", "de", "el", "es", "fr", "ru", "zh", "ar", "hi", "tr", "vi")
#: The treebank of each language in ../shared/data/ud (the same as pos-mini's).
PROBE_TREEBANKS = {
    "en": "en_ewt", "bg": "bg_btb", "de": "de_gsd", "el": "el_gdt", "es": "es_gsd",
    "fr": "fr_gsd", "ru": "ru_gsd", "zh": "zh_gsd", "ar": "ar_pud", "hi": "hi_pud",
    "tr": "tr_imst", "vi": "vi_vtb",
}  # fmt: skip
LABEL_IDS = {tag: i for i, tag in enumerate(UPOS_TAGS)}
WORD_POOLINGS = ("mean", "first", "last")


@dataclass
class PosProbeConfig(ProbeSettings):
    """Options of ``pos-probe`` (checked by :class:`xalign.ProbeSettings`, where ``layer``,
    ``c`` and ``max_length`` are documented).

    - ``pooling``: subwords -> word vector: ``mean``, ``first`` or ``last`` subword.
    - ``train_limit``: English EWT train sentences, spread evenly over the file; null = all
      12,544.
    - ``test_limit``: test sentences per language, spread evenly over the file; null = all.
    - ``batch_size``: sentences per encoder forward pass (speed and memory only).
    - ``languages``: test languages; ``xalign eval --languages`` evaluates a subset of them.
    - ``treebanks``: language -> UD treebank code (``de_gsd``) read for it (``en``: the
      training treebank too); a language without an entry pools all its treebanks (local
      files, else XTREME's pooled Hub data).
    - ``test_files``: language -> your own CoNLL-U test file, read instead of its treebank's
      test split (the language must be among ``languages``).
    """

    POOLINGS: ClassVar[tuple[str, ...]] = WORD_POOLINGS

    languages: list[str] = field(default_factory=lambda: list(PROBE_LANGS))
    treebanks: dict[str, str] = field(default_factory=lambda: dict(PROBE_TREEBANKS))
    test_files: dict[str, str] = field(default_factory=dict)
    batch_size: int = 32

    def __post_init__(self) -> None:
        super().__post_init__()
        self.languages = parse_languages(self.languages)
        self.treebanks = check_treebanks(self.treebanks, "pos-probe", self.languages)
        self.test_files = check_test_files(self.test_files, "pos-probe", self.languages)


class PosProbe(xalign.Task):
    """UD POS through a frozen encoder: a linear probe on English word vectors, token accuracy."""

    name = "pos-probe"
    description = (
        "UD POS with a frozen encoder: logistic regression on word vectors of English EWT "
        "train, token accuracy on 12 test treebanks (deterministic)"
    )
    Config = PosProbeConfig
    uses_seed = False  # nothing random: one evaluation serves every seed
    result_version = "1"
    #: token accuracy (%) = 100·Σcorrect/Σwords: compare resamples sentences and recomputes it
    metrics = (
        xalign.Metric(
            "accuracy", higher_is_better=True, aggregation="ratio", offset=0.0, scale=100.0
        ),
    )

    def _source(self) -> UdSource:
        return UdSource(
            self.name, self.config.treebanks, self.config.test_files, self.config.languages
        )

    def _languages(self, context: TaskContext) -> list[str]:
        return parse_languages(context.languages) if context.languages else self.config.languages

    def _load(self, lang: str, split: str, context: TaskContext, limit: int | None) -> UdSplit:
        return self._source().load(lang, split, context.data_dir, limit)

    def inputs(self, context: TaskContext) -> list:
        """The local CoNLL-U files a run reads (for the evaluation's reuse key)."""
        splits = [("en", "train")] + [(lang, "test") for lang in self._languages(context)]
        return self._source().inputs(splits, context.data_dir)

    def run(self, model: str, context: TaskContext) -> TaskResult:
        c, started = self.config, time.perf_counter()
        train = self._load("en", "train", context, c.train_limit)
        tests = {
            lang: self._load(lang, "test", context, c.test_limit)
            for lang in self._languages(context)
        }
        encoder = xalign.load_encoder(model, layer=c.layer, max_length=c.max_length)
        encoder.to(context.device).eval()
        train_x, train_missing = self._vectors(encoder, train.sentences, "en", context)
        train_y = _tags(train.sentences)
        probe = fit_linear_probe(train_x, train_y, c=c.c)
        per_example: dict[str, list[float]] = {}
        counts: dict[str, xalign.ItemCounts] = {}
        missing = {"en train": train_missing}
        for lang in xalign.track(list(tests), "pos-probe", context.show_progress):
            sentences = tests[lang].sentences
            x, missing[lang] = self._vectors(encoder, sentences, lang, context)
            flags = (probe.predict(x) == _tags(sentences)).astype(int)
            per_example[lang] = flags.astype(float).tolist()
            counts[lang] = _by_sentence(flags, sentences)
        scores = {lang: {"accuracy": 100.0 * float(np.mean(v))} for lang, v in per_example.items()}
        transfer = [
            s["accuracy"] for lang, s in scores.items() if xalign.primary_language(lang) != "en"
        ]
        meta: dict[str, Any] = {
            "metric": "token accuracy (%) over UD syntactic words; per_example = 1/0 per word",
            "avg_accuracy_non_en": float(np.mean(transfer)) if transfer else None,
            "model": model,
            "config": asdict(c),
            "layer": encoder.layer,
            "n_train_sentences": len(train.sentences),
            "n_train_words": int(len(train_y)),
            "train_accuracy": 100.0 * float(np.mean(probe.predict(train_x) == train_y)),
            "words_without_vector": missing,
            "n_test_sentences": {lang: len(s.sentences) for lang, s in tests.items()},
            "sources": {f"{d.lang}/{d.split}": d.sources for d in [train, *tests.values()]},
            "seconds": round(time.perf_counter() - started, 2),
        }
        return TaskResult(self.name, "accuracy", scores, per_example, meta, counts=counts)

    def _vectors(
        self,
        encoder: xalign.Encoder,
        sentences: list[TaggedSentence],
        lang: str,
        context: TaskContext,
    ) -> tuple[np.ndarray, int]:
        """One row per word ``[Σ words, H]`` in sentence then word order, and how many words
        had no vector (zeros)."""
        rows, missing = [], 0
        size = self.config.batch_size
        for start in range(0, len(sentences), size):
            chunk = [list(s.words) for s in sentences[start : start + size]]
            with torch.inference_mode():
                wv = encode_words(
                    encoder, chunk, lang, pooling=self.config.pooling, device=context.device
                )
            for b, words in enumerate(chunk):
                rows.append(wv.vectors[b, : len(words)].double().numpy())
                missing += int((~wv.mask[b, : len(words)]).sum())
        return np.concatenate(rows), missing


def _tags(sentences: list[TaggedSentence]) -> np.ndarray:
    return np.asarray([LABEL_IDS[t] for s in sentences for t in s.tags])


def _by_sentence(flags: np.ndarray, sentences: list[TaggedSentence]) -> xalign.ItemCounts:
    """Correct and total words per sentence (``flags`` in sentence then word order)."""
    matched, start = [], 0
    for s in sentences:
        matched.append(int(flags[start : start + len(s)].sum()))
        start += len(s)
    return xalign.ItemCounts(matched, [len(s) for s in sentences])
