"""Does a gold set's text contradict the languages declared for its sides?

Two cheap kinds of evidence, read from the first :data:`SAMPLE` sentences of each side:

* **Script.** Each letter's Unicode script is the first word of its character name
  (``unicodedata.name``: ``LATIN SMALL LETTER A``, ``CYRILLIC ...``, ``CJK UNIFIED IDEOGRAPH``,
  ``HIRAGANA ...``); a language in :data:`SCRIPTS` expects its own. A side whose letters are
  more than :data:`CONTRADICTION` (80 %) in other scripts contradicts its declared language
  (``el`` declared, Latin text; ``en`` declared, Cyrillic text).
* **English function words.** English running text is about a third function words
  (``the``, ``of``, ``and`` ...; :data:`ENGLISH_WORDS` holds 30 that are rare as words of
  the other Latin-script languages). The side declared English with under 3 % of them while
  the other side has at least 10 % is the other language: the sides are swapped.

A code's script subtag (``hi-Latn``, ``sr-Cyrl``: :data:`SUBTAG_SCRIPTS`) overrides its
language's usual script. Too little text (under :data:`MIN_LETTERS` letters or
:data:`MIN_WORDS` words a side) is no evidence; a language outside :data:`SCRIPTS` without a
known script subtag is never checked by script.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from xalign.languages import LanguageCodeError, primary_language, script_subtag

__all__ = [
    "CONTRADICTION",
    "ENGLISH_WORDS",
    "SCRIPTS",
    "SUBTAG_SCRIPTS",
    "Side",
    "contradiction",
]

#: Sentences read per side.
SAMPLE = 500
#: Share of the evidence that must contradict the declared language.
CONTRADICTION = 0.8
MIN_LETTERS = 100
MIN_WORDS = 100
#: English-side share of :data:`ENGLISH_WORDS` below which, and other-side share from which,
#: the sides are taken as swapped.
ENGLISH_LOW, ENGLISH_HIGH = 0.03, 0.10

_LATIN = frozenset({"LATIN"})
_CYRILLIC = frozenset({"CYRILLIC"})
_ARABIC = frozenset({"ARABIC"})
_DEVANAGARI = frozenset({"DEVANAGARI"})
_HAN = frozenset({"CJK"})
#: Primary language -> the scripts (first words of Unicode character names) of its letters.
#: Languages written in several scripts (sr, bs, az, uz, pa, ...) are left out.
SCRIPTS: dict[str, frozenset[str]] = {
    **dict.fromkeys(
        ["en", "fr", "de", "es", "it", "pt", "ro", "nl", "cs", "pl", "sv", "da", "no", "nb",
         "fi", "hu", "tr", "et", "lv", "lt", "sk", "sl", "hr", "ca", "eu", "gl", "af", "sw",
         "tl", "id", "ms", "ga", "is", "eng", "fra", "deu", "spa", "ron", "ita", "por",
         "nld"],
        _LATIN,
    ),
    **dict.fromkeys(["ru", "bg", "uk", "mk", "be", "kk", "rus", "bul", "ukr"], _CYRILLIC),
    **dict.fromkeys(["ar", "fa", "ur", "ara", "pes", "urd"], _ARABIC),
    **dict.fromkeys(["hi", "mr", "ne", "hin", "mar"], _DEVANAGARI),
    **dict.fromkeys(["zh", "zho", "cmn"], _HAN),
    **dict.fromkeys(["ja", "jpn"], frozenset({"CJK", "HIRAGANA", "KATAKANA"})),
    **dict.fromkeys(["el", "ell"], frozenset({"GREEK"})),
    **dict.fromkeys(["he", "heb"], frozenset({"HEBREW"})),
    **dict.fromkeys(["th", "tha"], frozenset({"THAI"})),
    **dict.fromkeys(["ko", "kor"], frozenset({"HANGUL"})),
    "ka": frozenset({"GEORGIAN"}),
    "hy": frozenset({"ARMENIAN"}),
    "bn": frozenset({"BENGALI"}),
    "ta": frozenset({"TAMIL"}),
    "te": frozenset({"TELUGU"}),
}  # fmt: skip

#: Frequent English function words that are rare as words of other Latin-script languages
#: (no ``a``, ``in``, ``is``, ``an``, ``was``, ``will``, ``die``, ``on``).
ENGLISH_WORDS = frozenset(
    "the of and to that for with this are be by it which have has not from they you would "
    "their been were there his its than these who".split()
)  # fmt: skip


@dataclass(frozen=True)
class Side:
    """One side of a gold set as the user described it."""

    option: str  #: the option that declared its language: ``src_lang`` or ``tgt_lang``
    lang: str  #: the declared code
    words: Sequence[Sequence[str]]  #: its sentences (words)
    english: bool  #: declared English (by code, or by the ``english`` option)


@lru_cache(maxsize=8192)
def _script(char: str) -> str | None:
    """The script of a letter (None for anything else): ``LATIN``, ``CYRILLIC``, ``CJK`` ..."""
    if not unicodedata.category(char).startswith("L"):
        return None
    name = unicodedata.name(char, "")
    return name.split(" ", 1)[0] if name else None


def _scripts(words: Sequence[Sequence[str]]) -> Counter[str]:
    return Counter(s for sent in words[:SAMPLE] for word in sent for c in word if (s := _script(c)))


def _english_share(words: Sequence[Sequence[str]]) -> tuple[float, int]:
    tokens = [w.lower() for sent in words[:SAMPLE] for w in sent]
    return (sum(w in ENGLISH_WORDS for w in tokens) / len(tokens) if tokens else 0.0), len(tokens)


#: ISO 15924 script subtag -> the scripts of its letters (a code's own subtag wins:
#: ``hi-Latn`` is romanised Hindi, ``sr-Cyrl`` Cyrillic Serbian).
SUBTAG_SCRIPTS: dict[str, frozenset[str]] = {
    "Latn": _LATIN, "Cyrl": _CYRILLIC, "Arab": _ARABIC, "Deva": _DEVANAGARI, "Hans": _HAN,
    "Hant": _HAN, "Hani": _HAN, "Jpan": SCRIPTS["ja"], "Grek": SCRIPTS["el"],
    "Hebr": SCRIPTS["he"], "Thai": SCRIPTS["th"], "Hang": SCRIPTS["ko"], "Kore": SCRIPTS["ko"],
    "Geor": SCRIPTS["ka"], "Armn": SCRIPTS["hy"], "Beng": SCRIPTS["bn"], "Taml": SCRIPTS["ta"],
    "Telu": SCRIPTS["te"],
}  # fmt: skip


def _expected(lang: str) -> frozenset[str] | None:
    """The scripts ``lang``'s letters should be in: its script subtag's, else its primary
    language's; None (not checked) for an unknown script or language."""
    try:
        script = script_subtag(lang)
        if script is not None:
            return SUBTAG_SCRIPTS.get(script)
        return SCRIPTS.get(primary_language(lang))
    except LanguageCodeError:
        return None


def _script_evidence(side: Side) -> str | None:
    """Why ``side``'s letters contradict its declared language, or None."""
    expected = _expected(side.lang)
    counts = _scripts(side.words)
    total = sum(counts.values())
    if expected is None or total < MIN_LETTERS:
        return None
    inside = sum(n for s, n in counts.items() if s in expected)
    if inside > (1 - CONTRADICTION) * total:
        return None
    found, n = counts.most_common(1)[0]
    return (
        f"{side.option}: {side.lang!r} is written in {'/'.join(sorted(expected)).title()}, "
        f"but {1 - inside / total:.0%} of the {total} letters of that side are not "
        f"({n / total:.0%} {found.title()})"
    )


def _fits(side: Side, lang: str) -> bool:
    """Whether ``side``'s letters fit ``lang``'s script (unknown script: yes)."""
    return _script_evidence(Side(side.option, lang, side.words, side.english)) is None


def contradiction(src: Side, tgt: Side, english_option: str | None = None) -> str | None:
    """What in the text contradicts the declared languages, with the likely cause and the
    options to fix; None when nothing does (or there is too little text to tell).

    The cause is "the two sides are swapped" when the evidence on each side fits the other
    side's declared language, else "a wrong option or file" for the side(s) at fault.
    ``english_option``: the ``english`` option when it, not a code, says which side is English
    (it is then the option named).
    """
    script = [(side, why) for side in (src, tgt) if (why := _script_evidence(side))]
    if script:
        swapped = _fits(src, tgt.lang) and _fits(tgt, src.lang)
        what = "; ".join(why for _, why in script)
        if swapped:
            return (
                f"{what}: src_lang and tgt_lang look swapped (or the two sentence files "
                f"are); pass src_lang: {tgt.lang}, tgt_lang: {src.lang}"
            )
        options = " and ".join(side.option for side, _ in script)
        return f"{what}: check {options} (or whether the right file is read for that side)"
    if src.english == tgt.english:
        return None
    english, other = (src, tgt) if src.english else (tgt, src)
    (en_share, en_n), (other_share, other_n) = map(_english_share, (english.words, other.words))
    if min(en_n, other_n) < MIN_WORDS or en_share >= ENGLISH_LOW or other_share < ENGLISH_HIGH:
        return None
    declared = f"english: {english_option}" if english_option else english.option
    fix = (
        f"pass english: {'src' if other is src else 'tgt'}"
        if english_option
        else f"pass src_lang: {tgt.lang}, tgt_lang: {src.lang}"
    )
    return (
        f"the side declared English ({declared}: {english.lang}) has {en_share:.1%} common "
        f"English function words (the, of, and ...), the other side ({other.option}: "
        f"{other.lang}) {other_share:.1%}: the sides look swapped (or the two sentence files "
        f"are); {fix}"
    )
