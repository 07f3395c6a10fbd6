"""Extractive QA zero-shot transfer: fine-tune on English QA, test on XQuAD.

``xquad`` is the XTREME recipe (:class:`xalign.ExtractiveQaTask`: SQuAD v1.1 train, lr 3e-5,
3 epochs, max length 384, doc stride 128, n-best 20 span decoding, ...), scored with the
official SQuAD v1.1 EM/F1 on XQuAD's 11 XTREME languages (the shared copy also has ``ro``).

``qa-mini`` is the same code at CPU scale: train on TyDiQA-GoldP English train, test on the
first ``test_limit`` questions of a few XQuAD languages, or of any SQuAD v1.1 file per
language (``test_files``: MLQA's, your own), scored with SQuAD's or MLQA's answer
normalisation (``scoring``). ``per_example`` is the per-question F1 in [0, 1] (its mean is
the ``f1`` score / 100). Data: :mod:`xalign_xquad.data`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import xalign
from xalign import ExtractiveQaConfig, ExtractiveQaTask, TaskContext
from xalign_xquad.data import load_tydiqa_goldp, load_xquad

__all__ = ["QaMini", "QaMiniConfig", "XQUAD_LANGS", "Xquad", "XquadConfig", "register_tasks"]

Example = dict[str, Any]
XQUAD_LANGS = ("ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh")
MINI_LANGS = ("en", "de", "el", "es")


@dataclass
class XquadConfig(ExtractiveQaConfig):
    """Options of ``xquad`` (defaults: XTREME's): the fine-tuning settings and the data of
    :class:`xalign.ExtractiveQaConfig` (each documented there), and:

    - ``languages``: XQuAD test languages (default: XTREME's 11; the shared copy also has
      ``ro``); ``xalign eval --languages`` evaluates a subset of them.
    - ``test_files``, ``scoring``: a language's own SQuAD v1.1 test file and the answer
      normalisation (``squad``), as documented in :class:`xalign.ExtractiveQaConfig`.
    """

    TASK: ClassVar[str] = "xquad"
    languages: list[str] = field(default_factory=lambda: list(XQUAD_LANGS))


@dataclass
class QaMiniConfig(XquadConfig):
    """Options of ``qa-mini``: TyDiQA-GoldP English train -> XQuAD (or any SQuAD v1.1 file)
    slices, CPU-sized.

    Defaults were measured with multilingual-e5-small on 2 CPU cores (about 4.5 min): one pass
    over 600 questions in batches of 8 (F1 +7 over batches of 16 at equal tokens), a higher
    learning rate for the few steps, length-grouped batches and a frozen word-embedding matrix
    (the bulk of the parameters).

    - ``languages``: test languages (a slice of the test set each: ``test_limit``): XQuAD's,
      or any language with a ``test_files`` entry.
    - ``train_limit``: first N questions of TyDiQA-GoldP English train; null = all.
    - ``test_files``: language -> SQuAD v1.1 JSON file (relative to the working directory)
      tested instead of XQuAD, first ``test_limit`` questions, e.g. MLQA's
      ``test-context-de-question-de.json``; the language must be among ``languages``.
    - ``scoring``: ``squad`` (default) or ``mlqa`` (MLQA's official normalisation of the
      context language: what MLQA results are reported with).
    """

    TASK: ClassVar[str] = "qa-mini"
    languages: list[str] = field(default_factory=lambda: list(MINI_LANGS))
    train_limit: int | None = 600
    test_limit: int | None = 200
    learning_rate: float = 1e-4
    epochs: int = 1
    max_length: int = 256
    doc_stride: int = 128
    max_query_length: int = 48
    batch_size: int = 8
    warmup_steps: int = 0
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0
    group_by_length: bool = True
    freeze_embeddings: bool = True


# --------------------------------------------------------------------------------------------
# Tasks
# --------------------------------------------------------------------------------------------


class Xquad(ExtractiveQaTask):
    """XQuAD (XTREME): fine-tune extractive QA on SQuAD v1.1, zero-shot EM/F1 on 11 languages."""

    name = "xquad"
    description = (
        "XQuAD (XTREME): fine-tune extractive QA on SQuAD v1.1, zero-shot "
        "SQuAD EM/F1 on 11 languages"
    )
    Config = XquadConfig
    data_folders = (
        "xquad",
        "squad",
        "tydiqa",
        "tydiqa-goldp-v1.1-train",
        "tydiqa-goldp-v1.1-dev",
    )  # what Task.inputs hashes
    result_version = "3"  # 3: scale=100 declared (2: typed metrics)
    #: SQuAD v1.1 F1 and exact match (%), per question averaged (per_example: F1 in [0, 1])
    metrics = (
        xalign.Metric("f1", higher_is_better=True, scale=100.0),
        xalign.Metric("exact_match", higher_is_better=True, scale=100.0),
    )

    def test_examples(self, lang: str, context: TaskContext) -> list[Example]:
        return load_xquad(lang, context.data_dir, self.config.test_limit)


class QaMini(Xquad):
    """CPU-scale cross-lingual QA: TyDiQA-GoldP English train -> XQuAD (or ``test_files``)
    slices, SQuAD- or MLQA-scored."""

    name = "qa-mini"
    description = (
        "QA at CPU scale: fine-tune on TyDiQA-GoldP English train (train_limit), EM/F1 on "
        "the first test_limit questions per language of XQuAD or test_files (e.g. MLQA)"
    )
    Config = QaMiniConfig

    def train_examples(self, context: TaskContext) -> list[Example]:
        return load_tydiqa_goldp("train", "en", context.data_dir, self.config.train_limit)


@xalign.hookimpl
def register_tasks(register) -> None:
    register(Xquad)
    register(QaMini)
