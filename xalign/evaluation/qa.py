"""Extractive QA fine-tuning shared by the QA task plugins (``xquad``, ``qa-mini``, ``mlqa``).

:class:`ExtractiveQaTask` is XTREME's QA recipe (``scripts/train_qa.sh`` +
``third_party/run_squad.py``): fine-tune a span head on English SQuAD v1.1 train, lr 3e-5,
3 epochs, max length 384, doc stride 128 (windows start every 128 context tokens), questions
cut to 64 tokens, effective batch 32, 500 warmup steps then linear decay, weight decay 1e-4,
Adam eps 1e-8, gradient clipping 1.0, final checkpoint; n-best 20 span decoding with answers
of at most 30 tokens, a start token only counting in the window where it has the most context
(run_squad defaults). Features come from the fast tokenizer (offset mappings, overflowing
windows); a window that does not hold the whole answer is labelled with token 0.

It lives in xalign, not in a plugin, because two plugins run this recipe (``xalign_xquad``
and ``xalign_mlqa``) and plugins do not import each other. A subclass supplies its test data
(:meth:`ExtractiveQaTask.test_examples`); the SQuAD v1.1 training set is the recipe's own
input. Every QA task also takes ``test_files`` (a language's questions from any SQuAD v1.1
file) and ``scoring``: SQuAD v1.1's answer normalisation, or MLQA's official one
(:func:`normalize_mlqa`, defined here for both plugins).
"""

from __future__ import annotations

import functools
import re
import string
import sys
import time
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from xalign.errors import XalignError
from xalign.evaluation.data import (
    check_test_files,
    chosen_test_file,
    find_data_file,
    load_hub_dataset,
    read_squad_json,
    squad_examples,
)
from xalign.evaluation.finetune import (
    FinetuneSettings,
    finetune,
    fit_max_length,
    load_for_finetuning,
    model_input_names,
    parse_languages,
    predict,
    seed_everything,
)
from xalign.evaluation.metrics import f1 as squad_f1
from xalign.evaluation.metrics import squad_scores
from xalign.languages import language_key, primary_language
from xalign.task import Metric, Task, TaskContext, TaskResult

__all__ = [
    "MLQA_LANGS",
    "QA_SCORINGS",
    "ExtractiveQaConfig",
    "ExtractiveQaTask",
    "QaTestFileError",
    "QaWindow",
    "answer_positions",
    "best_span",
    "cut_questions",
    "decode_answers",
    "encode_qa",
    "load_squad_train",
    "mixed_segmentation",
    "mlqa_exact_match",
    "mlqa_f1",
    "mlqa_scores",
    "normalize_mlqa",
    "punctuation",
]

Example = dict[str, Any]
Offsets = list[tuple[int, int] | None]
SQUAD_HUB_ID = "rajpurkar/squad"
SQUAD_TRAIN_FILE = "train-v1.1.json"


@dataclass
class ExtractiveQaConfig(FinetuneSettings):
    """Options of an extractive QA task (defaults: XTREME's): the fine-tuning settings
    (:class:`xalign.FinetuneSettings`, documented there) and the data. Subclasses give
    ``languages`` their default.

    - ``languages``: test languages, a list or comma-separated codes (``de-DE`` reads ``de``);
      ``xalign eval --languages`` evaluates a subset of them.
    - ``train_limit``: first N training questions (SQuAD v1.1 train); null = all.
    - ``test_limit``: first N test questions per language; null = all.
    - ``max_length``: subwords per window (question, context and special tokens), capped at
      the model's limit.
    - ``doc_stride``: step between the starts of a context's windows, in context tokens
      (XTREME semantics; a longer context gives overlapping windows).
    - ``max_query_length``: questions are cut to this many subwords (at most
      ``max_length`` - 8).
    - ``n_best``: span decoding pairs the n_best highest start and end logits of each window.
    - ``max_answer_length``: longest predicted answer span, in subwords.
    - ``eval_batch_size``: windows per forward pass at test time (speed and memory only).
    - ``test_files``: language -> your own SQuAD v1.1 JSON test file (a path relative to the
      working directory; XQuAD, MLQA and TyDiQA-GoldP files are all in this format), read
      instead of the task's own test set for that language; the language must be among
      ``languages``, ``test_limit`` applies, and the file is part of the evaluation's reuse key.
    - ``scoring``: how answers are compared, ``squad`` (SQuAD v1.1's normalisation: ASCII
      punctuation, English articles, whitespace tokens) or ``mlqa`` (MLQA's official one for the
      context language, :func:`normalize_mlqa`; languages en ar de es hi vi zh only).
    """

    #: names the task in option errors (``qa-mini: test_files``); each task's Config sets it
    TASK: ClassVar[str] = "extractive-qa"

    languages: list[str] = field(default_factory=list)
    train_limit: int | None = None
    test_limit: int | None = None
    learning_rate: float = 3e-5
    max_length: int = 384
    doc_stride: int = 128
    max_query_length: int = 64
    warmup_steps: int = 500
    weight_decay: float = 1e-4
    n_best: int = 20
    max_answer_length: int = 30
    eval_batch_size: int = 32
    test_files: dict[str, str] = field(default_factory=dict)
    scoring: str = "squad"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.languages = parse_languages(self.languages)
        if self.doc_stride < 1 or self.max_query_length < 1:
            raise ValueError("doc_stride and max_query_length must be >= 1")
        if self.max_query_length + 8 > self.max_length:
            raise ValueError("max_length must exceed max_query_length by more than 8 tokens")
        for key in ("train_limit", "test_limit"):  # 0 questions: nothing to train or score
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ValueError(f"{self.TASK}: {key} must be >= 1 or null (all), got {value}")
        if self.scoring not in QA_SCORINGS:
            raise ValueError(
                f"{self.TASK}: scoring must be one of {', '.join(QA_SCORINGS)}, "
                f"got {self.scoring!r}"
            )
        check_scoring_languages(self.scoring, self.languages, self.TASK)
        self.test_files = check_test_files(
            self.test_files, self.TASK, "SQuAD v1.1 JSON file", self.languages
        )

    def settings(self) -> FinetuneSettings:
        return FinetuneSettings.from_options(self)


# --------------------------------------------------------------------------------------------
# Features: question + overflowing context windows
# --------------------------------------------------------------------------------------------


@dataclass
class QaWindow:
    """One window of one example: character span per token (None outside the context) and
    whether the token's window is the one with the most context around it."""

    example: int
    offsets: Offsets
    max_context: list[bool]


def cut_questions(
    tokenizer: Any, questions: Sequence[str], max_query_length: int
) -> tuple[list[str], list[int]]:
    """Questions (left-stripped) cut to ``max_query_length`` tokens, and their token counts."""
    texts = [q.lstrip() for q in questions]
    enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    lengths = [len(ids) for ids in enc["input_ids"]]
    for i, n in enumerate(lengths):
        if n > max_query_length:
            texts[i] = texts[i][: enc["offset_mapping"][i][max_query_length - 1][1]]
            lengths[i] = len(tokenizer(texts[i], add_special_tokens=False)["input_ids"])
    return texts, lengths


def answer_positions(offsets: Offsets, start_char: int, end_char: int) -> tuple[int, int]:
    """Token span of the answer ``[start_char, end_char)`` in a window; (0, 0) (the first,
    classifier token) when the answer is not entirely inside the window's context."""
    context = [i for i, o in enumerate(offsets) if o is not None]
    if not context:
        return 0, 0
    first, last = context[0], context[-1]
    if offsets[first][0] > start_char or offsets[last][1] < end_char:
        return 0, 0
    start = first
    while start <= last and offsets[start][0] <= start_char:
        start += 1
    end = last
    while end >= first and offsets[end][1] >= end_char:
        end -= 1
    return start - 1, end + 1


def _max_context(windows: list[Offsets], step: int) -> list[list[bool]]:
    """Per window and token: is this the window where the token has the most context?

    Context token ``m`` of window ``j`` is document token ``j * step + m``; its score is
    ``min(left, right) + 0.01 * window length`` (as in BERT / XTREME's ``run_squad``).
    """
    best: dict[int, tuple[float, int]] = {}
    contexts = [[i for i, o in enumerate(offs) if o is not None] for offs in windows]
    for j, ctx in enumerate(contexts):
        n = len(ctx)
        for m in range(n):
            score = min(m, n - 1 - m) + 0.01 * n
            if j * step + m not in best or score > best[j * step + m][0]:
                best[j * step + m] = (score, j)
    masks = []
    for j, (offs, ctx) in enumerate(zip(windows, contexts, strict=True)):
        mask = [False] * len(offs)
        for m, i in enumerate(ctx):
            mask[i] = best[j * step + m][1] == j
        masks.append(mask)
    return masks


def encode_qa(
    tokenizer: Any,
    examples: Sequence[Example],
    *,
    max_length: int,
    doc_stride: int,
    max_query_length: int,
    keep: set[str] | None = None,
    train: bool = False,
) -> tuple[list[dict[str, Any]], list[QaWindow]]:
    """Split every (question, context) into windows of ``max_length`` tokens.

    Consecutive windows start ``doc_stride`` context tokens apart (XTREME semantics; the fast
    tokenizer's ``stride`` is the overlap, computed per question length). Returns model
    features (with ``start_positions``/``end_positions`` of the first answer when ``train``)
    and the matching :class:`QaWindow` list, ordered by example.
    """
    keep = keep or {"input_ids"}
    questions, lengths = cut_questions(
        tokenizer, [e["question"] for e in examples], max_query_length
    )
    specials = tokenizer.num_special_tokens_to_add(pair=True)
    groups: dict[int, list[int]] = defaultdict(list)
    for i, n in enumerate(lengths):
        groups[n].append(i)
    rows: list[tuple[int, int, dict[str, Any], QaWindow]] = []
    for n_q, idx in groups.items():
        span = max_length - n_q - specials
        if span < 1:
            raise ValueError(f"max_length {max_length} leaves no room for the context")
        overlap = max(0, span - doc_stride)
        enc = tokenizer(
            [questions[i] for i in idx],
            [examples[i]["context"] for i in idx],
            truncation="only_second",
            max_length=max_length,
            stride=overlap,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
        )
        per_example: dict[int, list[int]] = defaultdict(list)
        for w, sample in enumerate(enc["overflow_to_sample_mapping"]):
            per_example[idx[sample]].append(w)
        for ex, ws in per_example.items():
            offsets = [
                [
                    o if s == 1 else None
                    for o, s in zip(enc["offset_mapping"][w], enc.sequence_ids(w), strict=True)
                ]
                for w in ws
            ]
            masks = _max_context(offsets, span - overlap)
            for k, w in enumerate(ws):
                feature = {key: enc[key][w] for key in keep if key in enc}
                if train:
                    feature["start_positions"], feature["end_positions"] = _first_answer_positions(
                        examples[ex], offsets[k]
                    )
                rows.append((ex, k, feature, QaWindow(ex, offsets[k], masks[k])))
    rows.sort(key=lambda r: (r[0], r[1]))
    return [r[2] for r in rows], [r[3] for r in rows]


def _first_answer_positions(example: Example, offsets: Offsets) -> tuple[int, int]:
    answers = example["answers"]
    if not answers["text"]:
        return 0, 0
    start = answers["answer_start"][0]
    return answer_positions(offsets, start, start + len(answers["text"][0]))


# --------------------------------------------------------------------------------------------
# Span decoding
# --------------------------------------------------------------------------------------------


def best_span(
    start_logits: Sequence[float],
    end_logits: Sequence[float],
    window: QaWindow,
    *,
    n_best: int = 20,
    max_answer_length: int = 30,
) -> tuple[float, int, int] | None:
    """Best ``(score, start_char, end_char)`` of one window among its n-best start/end tokens.

    A span must lie in the context, end at or after its start, span at most
    ``max_answer_length`` tokens and start at a token that has its maximal context here.
    """
    offs = window.offsets
    starts = np.argsort(-np.asarray(start_logits, dtype=np.float64), kind="stable")[:n_best]
    ends = np.argsort(-np.asarray(end_logits, dtype=np.float64), kind="stable")[:n_best]
    best: tuple[float, int, int] | None = None
    for s in starts.tolist():
        if offs[s] is None or not window.max_context[s]:
            continue
        for e in ends.tolist():
            if offs[e] is None or e < s or e - s + 1 > max_answer_length:
                continue
            score = float(start_logits[s]) + float(end_logits[e])
            if best is None or score > best[0]:
                best = (score, offs[s][0], offs[e][1])
    return best


def decode_answers(
    examples: Sequence[Example],
    windows: Sequence[QaWindow],
    logits: Sequence[tuple[Sequence[float], Sequence[float]]],
    *,
    n_best: int = 20,
    max_answer_length: int = 30,
) -> dict[str, str]:
    """Best answer text per example id over all its windows ("" when none is valid)."""
    best: dict[int, tuple[float, int, int]] = {}
    for window, (start, end) in zip(windows, logits, strict=True):
        span = best_span(start, end, window, n_best=n_best, max_answer_length=max_answer_length)
        if span is not None and (window.example not in best or span[0] > best[window.example][0]):
            best[window.example] = span
    answers = {}
    for i, example in enumerate(examples):
        span = best.get(i)
        answers[example["id"]] = (
            "" if span is None else example["context"][span[1] : span[2]].strip()
        )
    return answers


def _span_logits(outputs: Any, batch: dict) -> list[tuple[list[float], list[float]]]:
    lengths = batch["attention_mask"].sum(-1).tolist()
    start, end = outputs.start_logits.float(), outputs.end_logits.float()
    return [(start[i, :n].tolist(), end[i, :n].tolist()) for i, n in enumerate(lengths)]


# --------------------------------------------------------------------------------------------
# Scoring: MLQA's official per-language normalisation (SQuAD v1.1's is xalign.squad_f1)
# --------------------------------------------------------------------------------------------
# Behaviour of the official ``mlqa_evaluation_v1.py`` (MLQA v1.0, Lewis et al., ACL 2020),
# reimplemented from its documented steps. An answer is normalised in this order:
#
# 1. lowercase (``str.lower``);
# 2. remove punctuation: every character whose Unicode category starts with ``P`` (``«``,
#    ``。``, ``،``, ``।``, ...) plus the ASCII ``string.punctuation`` set (which also holds the
#    symbols ``$ + < = > ^ ` | ~``); other symbols such as ``€`` stay;
# 3. remove articles of the answer's language, whole words (``\b``, Unicode-aware), each
#    replaced by a space: en ``a an the``; es ``un una unos unas el la los las``; de ``ein eine
#    einen einem eines einer der die das den dem des``; vi ``của là cái chiếc những``; ar: every
#    occurrence of ``ال`` (the official pattern ``\sال^|ال`` reduces to its second branch),
#    also inside a word (``بالقلم`` -> ``ب قلم``); hi and zh have none;
# 4. tokenise: whitespace for en es hi vi de ar; for zh "mixed segmentation": every CJK
#    ideograph in U+4E00-U+9FA5 and every punctuation character is a token of its own, runs
#    of other characters are split on whitespace (``2008年北京`` -> ``2008 年 北 京``);
# 5. join the tokens with single spaces.
#
# EM compares the normalised strings, F1 is the bag-of-tokens overlap of the normalised tokens
# (SQuAD's formula), both maximised over the gold answers. Differences from SQuAD v1.1: Unicode
# punctuation is removed, the article list follows the language, Chinese is scored per
# character. The code lives here, in the module of ExtractiveQaTask, so that its source is part
# of every QA evaluation's reuse key (xalign.evaluation.runs.task_code).

MLQA_LANGS: tuple[str, ...] = ("en", "ar", "de", "es", "hi", "vi", "zh")
_WHITESPACE_LANGS = frozenset({"en", "es", "hi", "vi", "de", "ar"})
_MLQA_ARTICLES: dict[str, re.Pattern[str] | None] = {
    "en": re.compile(r"\b(?:a|an|the)\b"),
    "es": re.compile(r"\b(?:un|una|unos|unas|el|la|los|las)\b"),
    "de": re.compile(r"\b(?:ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\b"),
    "vi": re.compile(r"\b(?:của|là|cái|chiếc|những)\b"),
    "ar": re.compile("ال"),
    "hi": None,
    "zh": None,
}
_CJK = re.compile("[\u4e00-\u9fa5]")


@functools.cache
def punctuation() -> frozenset[str]:
    """Unicode punctuation (categories Pc Pd Pe Pf Pi Po Ps) plus ASCII ``string.punctuation``."""
    unicode_p = (
        chr(i) for i in range(sys.maxunicode) if unicodedata.category(chr(i)).startswith("P")
    )
    return frozenset(unicode_p) | frozenset(string.punctuation)


def _mlqa_lang(lang: str) -> str:
    """The MLQA language whose rules score ``lang``: its primary subtag (``de-DE``, ``DE`` and
    ``de_AT`` read ``de``; ``zh-Hans`` reads ``zh``)."""
    primary = primary_language(lang, where="MLQA scoring")
    if primary not in _MLQA_ARTICLES:
        raise ValueError(
            f"MLQA scoring has no rules for language {lang!r}; "
            f"MLQA languages: {', '.join(MLQA_LANGS)}"
        )
    return primary


def mixed_segmentation(text: str) -> list[str]:
    """Chinese tokens: each CJK ideograph or punctuation character alone, other runs split on
    whitespace."""
    punct = punctuation()
    tokens: list[str] = []
    run: list[str] = []
    for char in text:
        if _CJK.match(char) or char in punct:
            tokens += "".join(run).split()
            run = []
            tokens.append(char)
        else:
            run.append(char)
    return tokens + "".join(run).split()


def normalize_mlqa(text: str, lang: str) -> str:
    """``text`` normalised for language ``lang`` (steps in the comment above).

    ``lang``: a language code whose primary subtag is in :data:`MLQA_LANGS` (``de``,
    ``de-DE``, ``zh-Hans``). Raises ``ValueError`` for another language or a string that is no
    language code.
    """
    lang = _mlqa_lang(lang)
    punct = punctuation()
    text = "".join(ch for ch in text.lower() if ch not in punct)
    articles = _MLQA_ARTICLES[lang]
    if articles is not None:
        text = articles.sub(" ", text)
    tokens = text.split() if lang in _WHITESPACE_LANGS else mixed_segmentation(text)
    return " ".join(t for t in tokens if t.strip())


def _mlqa_golds(golds: str | Iterable[str]) -> list[str]:
    gold_list = [golds] if isinstance(golds, str) else list(golds)
    if not gold_list:
        raise ValueError("at least one gold answer is required")
    return gold_list


def _mlqa_f1_single(pred: str, gold: str, lang: str) -> float:
    pred_tokens = normalize_mlqa(pred, lang).split()
    gold_tokens = normalize_mlqa(gold, lang).split()
    same = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def mlqa_exact_match(pred: str, golds: str | Iterable[str], lang: str) -> float:
    """1.0 if ``pred`` normalises to the same string as one of ``golds``, else 0.0."""
    return max(
        float(normalize_mlqa(pred, lang) == normalize_mlqa(g, lang)) for g in _mlqa_golds(golds)
    )


def mlqa_f1(pred: str, golds: str | Iterable[str], lang: str) -> float:
    """Token F1 in ``[0, 1]`` after MLQA normalisation, maximised over ``golds``."""
    return max(_mlqa_f1_single(pred, g, lang) for g in _mlqa_golds(golds))


def mlqa_scores(
    preds: Mapping[str, str], examples: Sequence[Mapping[str, Any]], lang: str
) -> dict[str, float]:
    """Corpus EM and F1 in percent over ``examples`` (HF ``squad`` schema: ``id``,
    ``answers.text``); a question without a prediction scores 0, as in the official script."""
    lang = _mlqa_lang(lang)  # also when no question has a prediction
    if not examples:
        raise ValueError("no questions to score")
    em = f1 = 0.0
    for example in examples:
        pred = preds.get(example["id"])
        if pred is None:
            continue
        golds = example["answers"]["text"]
        em += mlqa_exact_match(pred, golds, lang)
        f1 += mlqa_f1(pred, golds, lang)
    return {"exact_match": 100.0 * em / len(examples), "f1": 100.0 * f1 / len(examples)}


#: ``ExtractiveQaConfig.scoring`` -> what the scores are (the result's ``meta["metric"]``).
QA_SCORINGS: dict[str, str] = {
    "squad": "SQuAD v1.1 exact_match / f1 (%)",
    "mlqa": (
        "MLQA exact_match / f1 (%) with the official mlqa_evaluation_v1.py normalisation of "
        "the context language"
    ),
}


def check_scoring_languages(scoring: str, languages: Sequence[str], task: str) -> None:
    """Raise ``ValueError`` naming ``TASK: scoring`` when ``scoring`` is ``mlqa`` and a
    language's primary language has no MLQA rules (MLQA's normaliser knows 7 languages)."""
    if scoring != "mlqa":
        return
    unknown = [lang for lang in languages if primary_language(lang) not in MLQA_LANGS]
    if unknown:
        # --languages only narrows the task's languages option, so the fix is that option
        keep = [lang for lang in languages if lang not in unknown] or ["en"]
        raise ValueError(
            f"{task}: scoring mlqa has no language {', '.join(unknown)}: MLQA's normalisation "
            f"has rules for {', '.join(MLQA_LANGS)} only; set the task's languages to those "
            f"(--option {task}.languages=[{','.join(keep)}]; --languages only picks among "
            "them), or use scoring squad"
        )


# --------------------------------------------------------------------------------------------
# Training data
# --------------------------------------------------------------------------------------------


def load_squad_train(data_dir: Path | None, limit: int | None = None) -> list[Example]:
    """SQuAD v1.1 train: local ``train-v1.1.json`` (in data_dir, data_dir/squad or the shared
    folder's squad/), else the Hub dataset ``rajpurkar/squad``."""
    path, searched = find_data_file(data_dir, ("squad",), (SQUAD_TRAIN_FILE,))
    if path is not None:
        return read_squad_json(path, limit)
    rows = load_hub_dataset(
        "SQuAD v1.1 train",
        SQUAD_HUB_ID,
        None,
        "train" if limit is None else f"train[:{limit}]",
        local_hint=f"{SQUAD_TRAIN_FILE} (in the folder or its squad/ subfolder)",
        searched=searched,
    )
    return squad_examples(rows)


# --------------------------------------------------------------------------------------------
# Task
# --------------------------------------------------------------------------------------------


class QaTestFileError(XalignError, ValueError):
    """A ``test_files`` entry of a QA task is not a valid SQuAD v1.1 JSON file (the message
    names the task, ``test_files.LANG``, the file and the place or line)."""


class ExtractiveQaTask(Task):
    """Fine-tune extractive QA on SQuAD v1.1 train, test zero-shot per language (abstract:
    a subclass sets ``name``, ``Config`` (an :class:`ExtractiveQaConfig`), ``data_folders``
    and :meth:`test_examples`)."""

    Config = ExtractiveQaConfig
    data_folders = ("squad",)  # what Task.inputs hashes
    result_version = "3"  # 3: scale=100 declared (2: typed metrics)
    #: SQuAD v1.1 F1 and exact match (%), per question averaged (per_example: F1 in [0, 1])
    metrics = (
        Metric("f1", higher_is_better=True, scale=100.0),
        Metric("exact_match", higher_is_better=True, scale=100.0),
    )

    def train_examples(self, context: TaskContext) -> list[Example]:
        return load_squad_train(context.data_dir, self.config.train_limit)

    def test_examples(self, lang: str, context: TaskContext) -> list[Example]:
        """The test questions of one language (``squad`` schema, first ``test_limit``)."""
        raise NotImplementedError(f"{type(self).__name__} must define test_examples()")

    def test_languages(self, context: TaskContext) -> list[str]:
        """The languages evaluated: ``--languages`` (``context.languages``) or ``languages``."""
        c = self.config
        return parse_languages(context.languages) if context.languages else list(c.languages)

    def test_file(self, lang: str) -> Path | None:
        """The ``test_files`` entry that serves ``lang`` (None: :meth:`test_examples`).

        Raises :class:`xalign.DataUnavailableError` naming ``test_files.LANG`` for a missing
        file or a ``test_files`` language outside the task's ``languages``.
        """
        return chosen_test_file(self.config.test_files, lang, self.config.languages, self.name)

    def test_data(self, lang: str, context: TaskContext) -> list[Example]:
        """The questions tested in ``lang``: its ``test_files`` entry, else
        :meth:`test_examples`; the first ``test_limit`` either way.

        Raises :class:`QaTestFileError` (``TASK: test_files.LANG: FILE:LINE ...``) for a file
        that is not SQuAD v1.1 JSON, has no questions or an answer not found in its context.
        """
        path = self.test_file(lang)
        if path is None:
            return self.test_examples(lang, context)
        try:
            return read_squad_json(path, self.config.test_limit)
        except ValueError as err:  # read_squad_json names the file and the place / JSON line
            key = language_key(
                lang,
                self.config.test_files,
                where=f"{self.name}: test_files",
                languages=self.config.languages,
            )
            detail = str(err) if str(path) in str(err) else f"{path}: {err}"
            raise QaTestFileError(f"{self.name}: test_files.{key}: {detail}") from None

    def inputs(self, context: TaskContext) -> list[Path]:
        """The data folder's files (``Task.inputs``) and the ``test_files`` read."""
        chosen = [self.test_file(lang) for lang in self.test_languages(context)]
        return super().inputs(context) + [p for p in chosen if p is not None]

    def score(
        self, preds: dict[str, str], examples: list[Example], lang: str
    ) -> tuple[dict[str, float], list[float]]:
        """Corpus EM/F1 (%) and per-question F1 in [0, 1], by the ``scoring`` option: SQuAD
        v1.1's normalisation, or MLQA's for the context language ``lang`` (read by its primary
        language: ``de-DE`` is scored by German rules)."""
        if self.config.scoring == "mlqa":  # by the primary language, as the MLQA scorer reads it
            return mlqa_scores(preds, examples, lang), [
                mlqa_f1(preds[e["id"]], e["answers"]["text"], lang) for e in examples
            ]
        return squad_scores(preds, examples), [
            squad_f1(preds[e["id"]], e["answers"]["text"]) for e in examples
        ]

    def describe_metric(self) -> str:
        """What the scores are, for the result's ``meta["metric"]`` (follows ``scoring``)."""
        return f"{QA_SCORINGS[self.config.scoring]}; per_example = per-question F1 in [0, 1]"

    def extra_meta(self, scores: dict[str, dict[str, float]]) -> dict[str, Any]:
        """Task-specific entries of ``TaskResult.meta`` (none for XQuAD)."""
        return {}

    def run(self, model: str, context: TaskContext) -> TaskResult:
        c, started = self.config, time.perf_counter()
        langs = self.test_languages(context)
        check_scoring_languages(c.scoring, langs, self.name)  # before training, as the data
        train = self.train_examples(context)
        # all test sets first, so a missing one fails before training
        tests = {lang: self.test_data(lang, context) for lang in langs}
        files = {lang: self.test_file(lang) for lang in langs}
        seed_everything(context.seed)  # the span head is initialised here
        from transformers import AutoModelForQuestionAnswering

        net, tokenizer, new_params = load_for_finetuning(model, AutoModelForQuestionAnswering)
        keep = model_input_names(net, tokenizer)
        windows = dict(
            max_length=fit_max_length(net, tokenizer, c.max_length),
            doc_stride=c.doc_stride,
            max_query_length=c.max_query_length,
            keep=keep,
        )
        features, _ = encode_qa(tokenizer, train, train=True, **windows)
        log = finetune(
            net,
            features,
            c.settings(),
            pad_id=tokenizer.pad_token_id,
            seed=context.seed,
            device=context.device,
            show_progress=context.show_progress,
            label=f"{self.name} train",
        )
        scores, per_example = {}, {}
        for lang, examples in tests.items():
            feats, wins = encode_qa(tokenizer, examples, **windows)
            logits = predict(
                net,
                feats,
                _span_logits,
                pad_id=tokenizer.pad_token_id,
                batch_size=c.eval_batch_size,
                device=context.device,
                show_progress=context.show_progress,
                label=f"test {lang}",
            )
            preds = decode_answers(
                examples, wins, logits, n_best=c.n_best, max_answer_length=c.max_answer_length
            )
            scores[lang], per_example[lang] = self.score(preds, examples, lang)
        meta = {
            "metric": self.describe_metric(),
            "scoring": c.scoring,
            # absolute: a path relative to the working directory names no file in a stored result
            "test_files": {
                lang: str(path.absolute()) for lang, path in files.items() if path is not None
            },
            **self.extra_meta(scores),
            "avg_f1": _mean([s["f1"] for s in scores.values()]),
            "avg_exact_match": _mean([s["exact_match"] for s in scores.values()]),
            "avg_f1_non_en": _mean(
                [s["f1"] for lang, s in scores.items() if primary_language(lang) != "en"]
            ),
            "model": model,
            "seed": context.seed,
            "config": asdict(c),
            "train": log.as_dict(),
            "n_train": len(train),
            "n_train_features": len(features),
            "max_length": windows["max_length"],
            "n_test": {lang: len(v) for lang, v in per_example.items()},
            "new_parameters": new_params,
            "seconds": round(time.perf_counter() - started, 2),
        }
        return TaskResult(self.name, "f1", scores, per_example, meta)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None
