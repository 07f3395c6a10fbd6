"""MLQA answer scoring: exact match and token F1 with MLQA's per-language normalisation.

Behaviour of the official ``mlqa_evaluation_v1.py`` (MLQA v1.0), reimplemented from its
documented steps. An answer is normalised in this order:

1. lowercase (``str.lower``);
2. remove punctuation: every character whose Unicode category starts with ``P`` (``«``, ``。``,
   ``،``, ``।``, ...) plus the ASCII ``string.punctuation`` set (which also holds the symbols
   ``$ + < = > ^ ` | ~``); other symbols such as ``€`` stay;
3. remove articles of the answer's language, whole words (``\\b``, Unicode-aware), each replaced
   by a space: en ``a an the``; es ``un una unos unas el la los las``; de ``ein eine einen einem
   eines einer der die das den dem des``; vi ``của là cái chiếc những``; ar: every occurrence of
   ``ال`` (the official pattern ``\\sال^|ال`` reduces to its second branch), also inside a word
   (``بالقلم`` -> ``ب قلم``); hi and zh have none;
4. tokenise: whitespace for en es hi vi de ar; for zh "mixed segmentation": every CJK
   ideograph in U+4E00-U+9FA5 and every punctuation character is a token of its own, runs of
   other characters are split on whitespace (``2008年北京`` -> ``2008 年 北 京``);
5. join the tokens with single spaces.

EM compares the normalised strings, F1 is the bag-of-tokens overlap of the normalised tokens
(SQuAD's formula), both maximised over the gold answers. Differences from SQuAD v1.1 scoring
(SQuAD v1.1's ``normalize_answer``): Unicode punctuation is removed, the article list
follows the language, and Chinese is scored per character.
"""

from __future__ import annotations

import functools
import re
import string
import sys
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

MLQA_LANGS: tuple[str, ...] = ("en", "ar", "de", "es", "hi", "vi", "zh")
_WHITESPACE_LANGS = frozenset({"en", "es", "hi", "vi", "de", "ar"})
_ARTICLES: dict[str, re.Pattern[str] | None] = {
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


def _check_lang(lang: str) -> None:
    if lang not in _ARTICLES:
        raise ValueError(
            f"MLQA scoring has no rules for language {lang!r}; "
            f"MLQA languages: {', '.join(MLQA_LANGS)}"
        )


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
    """``text`` normalised for language ``lang`` (steps in the module docstring).

    Raises ``ValueError`` for a language outside :data:`MLQA_LANGS`.
    """
    _check_lang(lang)
    punct = punctuation()
    text = "".join(ch for ch in text.lower() if ch not in punct)
    articles = _ARTICLES[lang]
    if articles is not None:
        text = articles.sub(" ", text)
    tokens = text.split() if lang in _WHITESPACE_LANGS else mixed_segmentation(text)
    return " ".join(t for t in tokens if t.strip())


def _golds(golds: str | Iterable[str]) -> list[str]:
    gold_list = [golds] if isinstance(golds, str) else list(golds)
    if not gold_list:
        raise ValueError("at least one gold answer is required")
    return gold_list


def _f1_single(pred: str, gold: str, lang: str) -> float:
    pred_tokens = normalize_mlqa(pred, lang).split()
    gold_tokens = normalize_mlqa(gold, lang).split()
    same = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def mlqa_exact_match(pred: str, golds: str | Iterable[str], lang: str) -> float:
    """1.0 if ``pred`` normalises to the same string as one of ``golds``, else 0.0."""
    return max(float(normalize_mlqa(pred, lang) == normalize_mlqa(g, lang)) for g in _golds(golds))


def mlqa_f1(pred: str, golds: str | Iterable[str], lang: str) -> float:
    """Token F1 in ``[0, 1]`` after MLQA normalisation, maximised over ``golds``."""
    return max(_f1_single(pred, g, lang) for g in _golds(golds))


def mlqa_scores(
    preds: Mapping[str, str], examples: Sequence[Mapping[str, Any]], lang: str
) -> dict[str, float]:
    """Corpus EM and F1 in percent over ``examples`` (HF ``squad`` schema: ``id``,
    ``answers.text``); a question without a prediction scores 0, as in the official script."""
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
