"""XNLI zero-shot transfer: fine-tune on English NLI, test on the other languages.

``xnli`` is the XTREME recipe (``scripts/train_xnli.sh`` + ``third_party/run_classify.py``):
English MultiNLI train, lr 2e-5, 5 epochs, max length 128, effective batch 32 (8 x 4
accumulation there), linear decay with no warmup, no weight decay, Adam eps 1e-8, gradient
clipping 1.0; the checkpoint with the best English XNLI dev accuracy is tested on the 15 XNLI
test sets (XTREME checks every 100 steps, here after every epoch).

``test_files`` (all three XNLI tasks) replaces a language's XNLI test set with the user's own
labeled ``premise<TAB>hypothesis<TAB>label`` file (:func:`xalign_xnli.data.read_nli_file`).

``xnli-mini`` is the same code at CPU scale: fine-tune on the English XNLI *dev* set, test on
the first ``test_limit`` examples of the XNLI *test* sets (labels from
``DERIVED_test-labels.txt``); never train and test on the same split. The metric is accuracy
in percent (``acc`` in XTREME's run_classify.py; some papers label the XNLI column "F1");
per-example scores are 1/0 correctness. ``meta`` holds averages (all / non-English languages),
the training log (loss and selection score per epoch, best epoch) and the options used.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import xalign
from xalign import (
    FinetuneLog,
    FinetuneSettings,
    Task,
    TaskContext,
    TaskResult,
    check_test_files,
    chosen_test_file,
    finetune,
    fit_max_length,
    load_for_finetuning,
    model_input_names,
    parse_languages,
    predict,
    seed_everything,
)
from xalign_xnli.data import (
    NLI_FILE,
    XNLI_LABELS,
    XNLI_LANGS,
    load_mnli_train,
    load_xnli,
    read_nli_file,
)

Example = dict[str, Any]
MINI_LANGS = ("en", "bg", "de", "el", "es", "fr")


@dataclass
class XnliConfig(FinetuneSettings):
    """Options of ``xnli`` (defaults: XTREME's): the fine-tuning settings
    (:class:`xalign.FinetuneSettings`, documented there) and the data:

    - ``languages``: test languages (XNLI has 15; another one needs a ``test_files``
      entry); ``xalign eval --languages`` evaluates a subset of them.
    - ``test_files``: language -> your own labeled ``premise<TAB>hypothesis<TAB>label`` file,
      read instead of that language's XNLI test set (the language must be among
      ``languages``).
    - ``train_limit``: first N rows of English MultiNLI train; null = all.
    - ``dev_limit``: first N rows of English XNLI dev used to select the epoch; null = all.
    - ``test_limit``: first N rows of each test set; null = all.
    - ``select_checkpoint``: after each epoch score English XNLI dev and keep the weights of
      the best epoch (earliest on ties); false = the last epoch.
    - ``max_length``: subwords per premise-hypothesis pair (longest-first truncation), capped
      at the model's limit.
    - ``eval_batch_size``: pairs per forward pass when scoring dev and test (speed and memory
      only).
    """

    TASK: ClassVar[str] = "xnli"  # names the task in option errors

    languages: list[str] = field(default_factory=lambda: list(XNLI_LANGS))
    test_files: dict[str, str] = field(default_factory=dict)
    train_limit: int | None = None
    dev_limit: int | None = None
    test_limit: int | None = None
    select_checkpoint: bool = True
    epochs: int = 5
    max_length: int = 128
    eval_batch_size: int = 64

    def __post_init__(self) -> None:
        super().__post_init__()
        self.languages = parse_languages(self.languages)
        self.test_files = check_test_files(self.test_files, self.TASK, NLI_FILE, self.languages)

    def settings(self) -> FinetuneSettings:
        return FinetuneSettings.from_options(self)


@dataclass
class XnliMiniConfig(XnliConfig):
    """Options of ``xnli-mini``: train on the first ``train_limit`` rows of XNLI dev-en.

    Defaults were measured with multilingual-e5-small on 2 CPU cores (about 3.5 min): a
    higher learning rate for the few steps, and a frozen word-embedding matrix (the bulk of
    the parameters: about 2x faster steps at equal accuracy).

    - ``train_limit``: first N rows of English XNLI dev trained on; null = all but the
      ``heldout`` rows.
    - ``heldout``: > 0 (with ``select_checkpoint``) selects the best epoch on the *last*
      ``heldout`` rows of dev-en, disjoint from the training rows; 0 keeps the last epoch.
    - ``select_checkpoint``: select the best epoch on the ``heldout`` rows (needs
      ``heldout`` > 0); false = the last epoch.
    - ``dev_limit``: not used by ``xnli-mini`` (its selection rows are ``heldout``).
    """

    TASK: ClassVar[str] = "xnli-mini"

    languages: list[str] = field(default_factory=lambda: list(MINI_LANGS))
    train_limit: int | None = 1000
    test_limit: int | None = 500
    heldout: int = 0
    learning_rate: float = 1e-4
    epochs: int = 2
    batch_size: int = 16
    warmup_ratio: float = 0.1
    freeze_embeddings: bool = True


class _NliData:
    """Train / selection / test examples of one task variant."""

    def __init__(self, config: XnliConfig, context: TaskContext, task: str = "xnli") -> None:
        self.config = config
        self.data_dir = context.data_dir
        self.task = task
        self.languages = task_languages(config, context)

    def train(self) -> list[Example]:
        return load_mnli_train(self.data_dir, limit=self.config.train_limit)

    def selection(self) -> list[Example]:
        return load_xnli("en", "dev", self.data_dir, limit=self.config.dev_limit)

    def test_file(self, lang: str) -> Path | None:
        """The ``test_files`` entry of ``lang`` (None: XNLI test)."""
        return chosen_test_file(self.config.test_files, lang, self.config.languages, self.task)

    def test(self, lang: str) -> list[Example]:
        path = self.test_file(lang)
        if path is not None:
            return read_nli_file(path, limit=self.config.test_limit)
        return load_xnli(lang, "test", self.data_dir, limit=self.config.test_limit)


def task_languages(config: Any, context: TaskContext) -> list[str]:
    """``context.languages`` (``--languages``) when given, else the task's ``languages``."""
    return parse_languages(context.languages) if context.languages else list(config.languages)


class _MiniData(_NliData):
    """English XNLI dev for training (and held-out selection), XNLI test for testing."""

    config: XnliMiniConfig

    def _dev_en(self) -> list[Example]:
        return load_xnli("en", "dev", self.data_dir)

    def train(self) -> list[Example]:
        rows = self._dev_en()
        limit = self.config.train_limit
        limit = len(rows) - self.config.heldout if limit is None else limit
        if limit + self.config.heldout > len(rows):
            raise ValueError(
                f"train_limit {limit} + heldout {self.config.heldout} exceed the "
                f"{len(rows)} rows of XNLI dev-en"
            )
        return rows[:limit]

    def selection(self) -> list[Example]:
        return self._dev_en()[-self.config.heldout :] if self.config.heldout else []


def encode_pairs(
    tokenizer: Any, examples: list[Example], max_length: int, keep: set[str]
) -> list[dict[str, Any]]:
    """Tokenise premise/hypothesis pairs (longest-first truncation) into features."""
    if not examples:
        return []
    enc = tokenizer(
        [e["premise"] for e in examples],
        [e["hypothesis"] for e in examples],
        truncation=True,
        max_length=max_length,
    )
    features = []
    for i, example in enumerate(examples):
        feature = {k: enc[k][i] for k in keep if k in enc}
        feature["labels"] = int(example["label"])
        features.append(feature)
    return features


def _check_labels(examples: list[Example], what: str) -> None:
    bad = sum(1 for e in examples if not 0 <= e["label"] < len(XNLI_LABELS))
    if bad:
        raise ValueError(f"{what}: {bad} examples have no label (missing test labels file?)")


def _argmax(outputs: Any, batch: dict) -> list[int]:
    return outputs.logits.float().argmax(-1).tolist()


class Xnli(Task):
    """Cross-lingual NLI (XTREME XNLI): train on English MultiNLI, test on 15 languages."""

    name = "xnli"
    description = (
        "XNLI (XTREME): fine-tune on English MultiNLI, best epoch on en dev, "
        "zero-shot accuracy on 15 test sets"
    )
    Config = XnliConfig
    data_folders = ("xnli", "multinli", "XNLI-MT-1.0")  # what Task.inputs hashes
    data_class: type[_NliData] = _NliData
    result_version = "3"  # 3: scale=100 declared (2: typed metrics)
    metrics = (xalign.Metric("accuracy", higher_is_better=True, scale=100.0),)  # %, items 1/0

    def inputs(self, context: TaskContext) -> list[Path]:
        """The data folder's files (``Task.inputs``) and the ``test_files`` read."""
        data = self.data_class(self.config, context, self.name)
        chosen = [data.test_file(lang) for lang in data.languages]
        return super().inputs(context) + [p for p in chosen if p is not None]

    def run(self, model: str, context: TaskContext) -> TaskResult:
        c, started = self.config, time.perf_counter()
        data = self.data_class(c, context, self.name)
        langs = data.languages
        train = data.train()
        _check_labels(train, "training data")
        selection = data.selection() if c.select_checkpoint else []
        tests = {lang: data.test(lang) for lang in langs}  # fail before training if missing
        seed_everything(context.seed)  # the classification head is initialised here
        from transformers import AutoModelForSequenceClassification

        net, tokenizer, new_params = load_for_finetuning(
            model, AutoModelForSequenceClassification, num_labels=len(XNLI_LABELS)
        )
        runner = _Runner(net, tokenizer, c, context)
        select = partial(runner.accuracy, runner.encode(selection), "select") if selection else None
        log = finetune(
            net,
            runner.encode(train),
            c.settings(),
            pad_id=tokenizer.pad_token_id,
            seed=context.seed,
            device=context.device,
            show_progress=context.show_progress,
            label=f"{self.name} train",
            select=select,
        )
        per_example = {
            lang: runner.correct(runner.encode(rows), f"test {lang}")
            for lang, rows in tests.items()
        }
        scores = {lang: {"accuracy": 100.0 * _mean(v)} for lang, v in per_example.items()}
        meta = self._meta(model, context, scores, log)
        meta.update(
            n_train=len(train),
            n_select=len(selection),
            new_parameters=new_params,
            max_length=runner.max_length,
            n_test={lang: len(v) for lang, v in per_example.items()},
            seconds=round(time.perf_counter() - started, 2),
        )
        return TaskResult(self.name, "accuracy", scores, per_example, meta)

    def _meta(
        self,
        model: str,
        context: TaskContext,
        scores: dict[str, dict[str, float]],
        log: FinetuneLog,
    ) -> dict[str, Any]:
        acc = {lang: s["accuracy"] for lang, s in scores.items()}
        transfer = [v for lang, v in acc.items() if xalign.primary_language(lang) != "en"]
        return {
            "metric": "accuracy (%) per language; per_example = 1/0 correctness",
            "avg_accuracy": _mean(list(acc.values())),
            "avg_accuracy_non_en": _mean(transfer) if transfer else None,
            "model": model,
            "seed": context.seed,
            "config": asdict(self.config),
            "train": log.as_dict(),
        }


class _Runner:
    """Tokenise and score examples with one fine-tuned classifier."""

    def __init__(self, net: Any, tokenizer: Any, config: XnliConfig, context: TaskContext) -> None:
        self.net, self.tokenizer, self.config, self.context = net, tokenizer, config, context
        self.keep = model_input_names(net, tokenizer)
        self.max_length = fit_max_length(net, tokenizer, config.max_length)

    def encode(self, examples: list[Example]) -> list[dict[str, Any]]:
        return encode_pairs(self.tokenizer, examples, self.max_length, self.keep)

    def correct(self, features: list[dict[str, Any]], label: str) -> list[float]:
        """1.0/0.0 correctness per feature."""
        if any(not 0 <= f["labels"] < len(XNLI_LABELS) for f in features):
            raise ValueError(f"{label}: unlabeled examples (missing DERIVED_test-labels.txt?)")
        preds = predict(
            self.net,
            features,
            _argmax,
            pad_id=self.tokenizer.pad_token_id,
            batch_size=self.config.eval_batch_size,
            device=self.context.device,
            show_progress=self.context.show_progress,
            label=label,
        )
        return [float(p == f["labels"]) for p, f in zip(preds, features, strict=True)]

    def accuracy(self, features: list[dict[str, Any]], label: str) -> float:
        return 100.0 * _mean(self.correct(features, label))


class XnliMini(Xnli):
    """CPU-scale XNLI: train on English XNLI dev, test on a slice of XNLI test."""

    name = "xnli-mini"
    description = (
        "XNLI at CPU scale: fine-tune on English XNLI dev (train_limit rows), "
        "accuracy on the first test_limit rows of each test set"
    )
    Config = XnliMiniConfig
    data_class = _MiniData


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


@xalign.hookimpl
def register_tasks(register) -> None:
    from xalign_xnli.probe import XnliProbe

    register(Xnli)
    register(XnliMini)
    register(XnliProbe)
