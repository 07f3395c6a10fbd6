"""Universal POS tagging zero-shot transfer: fine-tune on English UD, tag other languages.

``udpos`` is the XTREME recipe (``scripts/train_udpos.sh`` + ``third_party/run_tag.py``): a
token classifier over the 17 UPOS tags on the English UD training data, lr 2e-5, 10 epochs,
max length 128, effective batch 32 (8 x 4 accumulation there), no warmup, no weight decay,
Adam eps 1e-8, gradient clipping 1.0; the checkpoint with the best English dev score is tested
on the 33 XTREME languages (XTREME checks every 500 steps, here after every epoch). Labelling
is XTREME's: the first subword of each word carries its tag, the other subwords and special
tokens are ignored (-100); sentences longer than ``max_length`` pieces are cut between words
into windows, so every word is tagged (see :mod:`xalign_udpos.tagging`).

``pos-mini`` is the same code at CPU scale: ``train_limit`` sentences of English EWT train
(evenly spaced over the file), epoch selection on ``dev_limit`` sentences of EWT dev, and
``test_limit`` sentences (evenly spaced) of one test treebank per language (the treebanks of
``../shared/data/ud``: bg de el es fr ru zh ar hi tr vi, plus English EWT test). One
deliberate difference: it tags the piece after a bare SentencePiece ``▁`` rather than the
``▁`` itself (``label_subword``, see :class:`PosMiniConfig`).

Metric: token accuracy in percent over UD syntactic words (multiword-token ranges and empty
nodes are skipped). XTREME's tables call the POS column "F1": ``run_tag.py`` computes seqeval's
chunk F1, and seqeval reads a tag without B-/I- prefix as a chunk whose type is the tag minus
its first letter, merging runs of equal tags (NOUN NOUN is one chunk), so that number is not
token accuracy (checked with seqeval 1.2.2: gold NOUN NOUN VERB DET NOUN PUNCT, predicted
NOUN VERB VERB DET NOUN PUNCT gives F1 0.60, accuracy 0.83); with one tag per token,
token-level micro-F1 equals accuracy. ``per_example`` holds the 1/0 correctness of every
test token; ``counts`` (:class:`xalign.ItemCounts`) holds per test sentence the correct and
total words and the ``accuracy`` metric is declared with the ``ratio`` aggregation (accuracy
= 100·Σcorrect/Σwords), so ``compare``'s
bootstrap resamples whole sentences (the words of a sentence are not independent) and
recomputes token accuracy on each resample. Data: local
CoNLL-U files, else the Hub (see :mod:`xalign_udpos.data`).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import xalign
from xalign import (
    FinetuneSettings,
    Task,
    TaskContext,
    TaskResult,
    finetune,
    fit_max_length,
    load_for_finetuning,
    model_input_names,
    parse_languages,
    predict,
    seed_everything,
)
from xalign_udpos.conllu import UPOS_TAGS, TaggedSentence
from xalign_udpos.data import (
    XTREME_UDPOS_NAMES,
    UdSource,
    UdSplit,
    check_test_files,
    check_treebanks,
)
from xalign_udpos.tagging import (
    LabelSubword,
    encode_tagged,
    first_piece_predictions,
    gold_labels,
)

__all__ = ["PosMini", "PosMiniConfig", "UPOS_TAGS", "Udpos", "UdposConfig", "register_tasks"]

SOURCE_LANG = "en"
LABEL_IDS = {tag: i for i, tag in enumerate(UPOS_TAGS)}
XTREME_LANGS = tuple(XTREME_UDPOS_NAMES)
MINI_LANGS = ("en", "bg", "de", "el", "es", "fr", "ru", "zh", "ar", "hi", "tr", "vi")
#: The treebank of each language in ../shared/data/ud (also the Hub configs of pos-mini).
MINI_TREEBANKS = {
    "en": "en_ewt", "bg": "bg_btb", "de": "de_gsd", "el": "el_gdt", "es": "es_gsd",
    "fr": "fr_gsd", "ru": "ru_gsd", "zh": "zh_gsd", "ar": "ar_pud", "hi": "hi_pud",
    "tr": "tr_imst", "vi": "vi_vtb",
}  # fmt: skip
METRIC = (
    "token accuracy (%) over UD syntactic words (XTREME's tables label the POS column "
    "F1, but its seqeval chunk F1 is not token accuracy); per_example = 1/0 "
    "correctness of every test token"
)
LABELLING = {
    "first": "first subword of each word carries its UPOS tag (XTREME's utils_tag.py)",
    "first_content": "first subword of each word carries its UPOS tag, or the next one when "
    "the first is a bare SentencePiece word-boundary marker",
}
LABELLING_REST = (
    "; other subwords and special tokens are ignored (-100); sentences longer than max_length "
    "are cut between words into windows"
)


@dataclass
class UdposConfig(FinetuneSettings):
    """Options of ``udpos`` (defaults: XTREME's).

    ``treebanks`` maps a language to one UD treebank (``{en: en_ewt}``); a language without an
    entry pools all its treebanks found locally (XTREME), or uses XTREME's ``udpos`` data on the
    Hub. ``batch_size`` is per optimiser step (``grad_accum`` micro-batches).

    - ``languages``: test languages (UD codes, English included as the source).
    - ``treebanks``: language -> one UD treebank (``{en: en_ewt}``); unlisted: all found.
    - ``test_files``: language -> your own CoNLL-U test file (replaces the treebank's).
    - ``train_limit``: English training sentences, spread evenly over the split (null: all).
    - ``dev_limit``: English dev sentences for epoch selection, spread evenly (null: all).
    - ``test_limit``: test sentences per language, spread evenly (null: all).
    - ``select_checkpoint``: keep the epoch with the best English dev accuracy.
    - ``max_length``: subwords per window; a longer sentence is cut between words into windows
      (every word is tagged).
    - ``eval_batch_size``: sentences per forward pass when tagging dev and test.
    - ``label_subword``: ``first`` tags each word's first subword (XTREME), even a bare
      SentencePiece ``▁``; ``first_content`` the piece after a leading bare ``▁``.
    """

    TASK: ClassVar[str] = "udpos"  # names the task in option errors

    languages: list[str] = field(default_factory=lambda: list(XTREME_LANGS))
    treebanks: dict[str, str] = field(default_factory=dict)
    test_files: dict[str, str] = field(default_factory=dict)
    train_limit: int | None = None
    dev_limit: int | None = None
    test_limit: int | None = None
    select_checkpoint: bool = True
    epochs: int = 10
    max_length: int = 128
    eval_batch_size: int = 64
    label_subword: LabelSubword = "first"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.languages = parse_languages(self.languages)
        self.treebanks = check_treebanks(self.treebanks, self.TASK, self.languages)
        self.test_files = check_test_files(self.test_files, self.TASK, self.languages)
        for name in ("train_limit", "dev_limit", "test_limit"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or null (all), got {value}")

    def settings(self) -> FinetuneSettings:
        return FinetuneSettings.from_options(self)


@dataclass
class PosMiniConfig(UdposConfig):
    """Options of ``pos-mini``: one pass over 2000 EWT training sentences, 200 test sentences
    per language.

    Defaults were measured with multilingual-e5-small on 2 CPU cores (about 5-10 min; see the
    README): one epoch (a second one adds ~1.5 points and doubles the training time), a higher
    learning rate for the few steps, length-grouped batches, a frozen word-embedding matrix
    (the bulk of the parameters) and ``label_subword="first_content"``: with XTREME's
    ``first`` the SentencePiece tokenizer of e5/XLM-R leaves 86% of the Chinese words tagged
    from a bare ``▁`` token, and zh accuracy is an artefact (25%; 66% with ``first_content``,
    other languages within 2 points).
    """

    TASK: ClassVar[str] = "pos-mini"

    languages: list[str] = field(default_factory=lambda: list(MINI_LANGS))
    treebanks: dict[str, str] = field(default_factory=lambda: dict(MINI_TREEBANKS))
    train_limit: int | None = 2000
    dev_limit: int | None = 200
    test_limit: int | None = 200
    learning_rate: float = 1e-4
    epochs: int = 1
    batch_size: int = 16
    warmup_ratio: float = 0.1
    group_by_length: bool = True
    freeze_embeddings: bool = True
    label_subword: LabelSubword = "first_content"


class _Tagger:
    """Encode sentences for, and score, one fine-tuned token classifier."""

    def __init__(self, net: Any, tokenizer: Any, config: UdposConfig, context: TaskContext) -> None:
        self.net, self.tokenizer, self.config, self.context = net, tokenizer, config, context
        self.keep = model_input_names(net, tokenizer)
        self.max_length = fit_max_length(net, tokenizer, config.max_length)

    def encode(self, sentences: list[TaggedSentence]) -> list[dict[str, Any]]:
        features, _ = encode_tagged(
            self.tokenizer,
            sentences,
            LABEL_IDS,
            max_length=self.max_length,
            keep=self.keep,
            label_subword=self.config.label_subword,
        )
        return features

    def correct(self, features: list[dict[str, Any]], label: str) -> list[float]:
        """1.0/0.0 per word, in sentence then word order."""
        preds = predict(
            self.net,
            features,
            first_piece_predictions,
            pad_id=self.tokenizer.pad_token_id,
            batch_size=self.config.eval_batch_size,
            device=self.context.device,
            show_progress=self.context.show_progress,
            label=label,
        )
        return [
            float(p == g)
            for pred, f in zip(preds, features, strict=True)
            for p, g in zip(pred, gold_labels(f), strict=True)
        ]

    def accuracy(self, features: list[dict[str, Any]], label: str) -> float:
        return 100.0 * _mean(self.correct(features, label))


def _by_sentence(flags: list[float], split: Any) -> xalign.ItemCounts:
    """Correct and total words per test sentence (``flags`` are in sentence then word order;
    every word of a sentence is tagged, windows included)."""
    sizes = [len(sentence.tags) for sentence in split.sentences]
    if sum(sizes) != len(flags):  # pragma: no cover - encode_tagged tags every word
        raise RuntimeError(f"{len(flags)} scored words for {sum(sizes)} test words")
    matched, start = [], 0
    for size in sizes:
        matched.append(int(sum(flags[start : start + size])))
        start += size
    return xalign.ItemCounts(matched, sizes)


class Udpos(Task):
    """UD POS tagging (XTREME): train on English UD, zero-shot token accuracy on 33 languages."""

    name = "udpos"
    description = (
        "UD POS (XTREME): fine-tune a UPOS tagger on English UD, best epoch on en "
        "dev, zero-shot token accuracy on 33 languages"
    )
    Config = UdposConfig
    result_version = "3"  # 3: typed counts/metrics (2: meta keys); pos-mini too
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

    def load(self, lang: str, split: str, context: TaskContext, limit: int | None) -> UdSplit:
        """One split of one language (``test_files`` or this task's treebank choice); errors
        if it is empty."""
        return self._source().load(lang, split, context.data_dir, limit)

    def splits(self, context: TaskContext) -> list[tuple[str, str]]:
        """The (language, split) pairs a run reads: English train (and dev), then tests."""
        c = self.config
        langs = self._languages(context)
        source = [(SOURCE_LANG, "train")] + ([(SOURCE_LANG, "dev")] if c.select_checkpoint else [])
        return source + [(lang, "test") for lang in langs]

    def inputs(self, context: TaskContext) -> list[Path]:
        """The local CoNLL-U files a run reads (for the evaluation's reuse key)."""
        return self._source().inputs(self.splits(context), context.data_dir)

    def run(self, model: str, context: TaskContext) -> TaskResult:
        c, started = self.config, time.perf_counter()
        langs = self._languages(context)
        train = self.load(SOURCE_LANG, "train", context, c.train_limit)
        dev = self.load(SOURCE_LANG, "dev", context, c.dev_limit) if c.select_checkpoint else None
        tests = {lang: self.load(lang, "test", context, c.test_limit) for lang in langs}
        seed_everything(context.seed)  # the tagging head is initialised here
        from transformers import AutoModelForTokenClassification

        net, tokenizer, new_params = load_for_finetuning(
            model,
            AutoModelForTokenClassification,
            num_labels=len(UPOS_TAGS),
            id2label=dict(enumerate(UPOS_TAGS)),
            label2id=dict(LABEL_IDS),
        )
        tagger = _Tagger(net, tokenizer, c, context)
        features = tagger.encode(train.sentences)
        select = (
            partial(tagger.accuracy, tagger.encode(dev.sentences), "select en dev")
            if dev is not None
            else None
        )
        log = finetune(
            net,
            features,
            c.settings(),
            pad_id=tokenizer.pad_token_id,
            seed=context.seed,
            device=context.device,
            show_progress=context.show_progress,
            label=f"{self.name} train",
            select=select,
        )
        per_example = {
            lang: tagger.correct(tagger.encode(split.sentences), f"test {lang}")
            for lang, split in tests.items()
        }
        scores = {lang: {"accuracy": 100.0 * _mean(v)} for lang, v in per_example.items()}
        counts = {lang: _by_sentence(per_example[lang], split) for lang, split in tests.items()}
        acc = [s["accuracy"] for s in scores.values()]
        transfer = [
            s["accuracy"]
            for lang, s in scores.items()
            if xalign.primary_language(lang) != SOURCE_LANG
        ]
        meta = {
            "metric": METRIC,
            "labelling": LABELLING[c.label_subword] + LABELLING_REST,
            "tags": list(UPOS_TAGS),
            "avg_accuracy": _mean(acc),
            "avg_accuracy_non_en": _mean(transfer) if transfer else None,
            "model": model,
            "seed": context.seed,
            "config": asdict(c),
            "train": log.as_dict(),
            "n_train": len(train.sentences),
            "n_train_words": train.n_words,
            "n_train_features": len(features),
            "n_select": len(dev.sentences) if dev is not None else 0,
            "max_length": tagger.max_length,
            "n_test": {lang: len(v) for lang, v in per_example.items()},
            "n_test_sentences": {lang: len(s.sentences) for lang, s in tests.items()},
            "sources": {
                f"{d.lang}/{d.split}": d.sources
                for d in [train, *([dev] if dev else []), *tests.values()]
            },
            "new_parameters": new_params,
            "seconds": round(time.perf_counter() - started, 2),
        }
        return TaskResult(self.name, "accuracy", scores, per_example, meta, counts=counts)


class PosMini(Udpos):
    """CPU-scale UD POS: a slice of English EWT train, a slice of one test treebank per language."""

    name = "pos-mini"
    description = (
        "UD POS at CPU scale: fine-tune on train_limit English EWT sentences, token "
        "accuracy on test_limit sentences of 12 languages' test treebanks"
    )
    Config = PosMiniConfig


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


@xalign.hookimpl
def register_tasks(register) -> None:
    from xalign_udpos.probe import PosProbe

    register(Udpos)
    register(PosMini)
    register(PosProbe)
