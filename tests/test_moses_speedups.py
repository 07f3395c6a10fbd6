"""xalign's sacremoses subclasses (compiled normaliser patterns, character sets built once)
give exactly the stock classes' output: on real sentences of 16 scripts and languages, and
on generated text made of the characters the patterns and tests look at."""

from __future__ import annotations

import re
import sys
import unicodedata
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sacremoses import MosesPunctNormalizer, MosesTokenizer

from xalign.data import text as text_module
from xalign.data.text import (
    _GUARDED_RULE_LISTS,
    _GUARDED_RULES,
    _marks,
    _moses,
    _PunctNormalizer,
    _Tokenizer,
    make_idempotent,
    moses_language,
    required_substrings,
    tokenize_words,
)

# FLORES-200 file stem -> the language code xalign passes to sacremoses
FLORES = {
    "eng_Latn": "en",
    "deu_Latn": "de",
    "fra_Latn": "fr",
    "spa_Latn": "es",
    "ita_Latn": "it",
    "ell_Grek": "el",
    "bul_Cyrl": "bg",
    "rus_Cyrl": "ru",
    "tur_Latn": "tr",
    "vie_Latn": "vi",
    "swh_Latn": "sw",
    "arb_Arab": "ar",
    "urd_Arab": "ur",
    "hin_Deva": "hi",
    "tha_Thai": "th",
    "zho_Hans": "zh",
}
LANGS = sorted(set(FLORES.values()))


@cache
def _stock_moses(lang: str) -> tuple[MosesPunctNormalizer, MosesTokenizer]:
    """The stock classes, given xalign's idempotent apostrophe and comma rules (a change of
    output, tested in test_tokenize_idempotent.py): what is compared here are the speed-ups."""
    tokenizer = MosesTokenizer(lang=lang)
    make_idempotent(tokenizer)
    return MosesPunctNormalizer(lang=lang), tokenizer


def _stock(lang: str, text: str) -> list[str]:
    normalizer, tokenizer = _stock_moses(lang)
    return tokenizer.tokenize(
        normalizer.normalize(text), escape=False, aggressive_dash_splits=False
    )


def _ours(lang: str, text: str) -> list[str]:
    normalizer, tokenizer = _moses(lang)
    assert isinstance(normalizer, _PunctNormalizer) and isinstance(tokenizer, _Tokenizer)
    return tokenizer.tokenize(
        normalizer.normalize(text), escape=False, aggressive_dash_splits=False
    )


@pytest.mark.parametrize(("stem", "lang"), sorted(FLORES.items()))
def test_same_words_as_stock_sacremoses_on_flores(shared_data, stem, lang):
    path = shared_data / "parallel" / "flores200_devtest" / f"{stem}.devtest"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    lines = path.read_text(encoding="utf-8").splitlines()[:200]
    assert lines
    stock = [_stock(lang, line) for line in lines]
    assert [_ours(lang, line) for line in lines] == stock


# the characters the normaliser's patterns and the tokenizer's prefix tests turn on
_PATTERN_CHARS = "".join(
    sorted(
        {c for regexp, _ in MosesPunctNormalizer(lang="en").substitutions for c in regexp}
        | set(" .,;:!?'\"()[]{}-–—«»„“”‘’‚…%$€0123456789aAzZéÉßıİςΣжЖ\u00a0\u202f\t")
    )
)


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=_PATTERN_CHARS, max_size=60), lang=st.sampled_from(LANGS))
def test_same_output_as_stock_sacremoses_on_generated_text(text, lang):
    stock_norm = _stock_moses(lang)[0].normalize(text)
    assert _moses(lang)[0].normalize(text) == stock_norm
    assert _ours(lang, text) == _stock(lang, text)


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=8))
def test_character_class_tests_answer_as_stock(text):
    stock, ours = _stock_moses("en")[1], _moses("en")[1]
    assert ours.islower(text) == stock.islower(text)
    assert ours.isanyalpha(text) == stock.isanyalpha(text)


@pytest.mark.parametrize(
    "text", ["", "abc", "Abc", "ß", "σς", "a.b", "1.", "ΑΒ", "\u00a0", "x\u0301", "日本"]
)
def test_character_class_tests_by_hand(text):
    stock, ours = MosesTokenizer(lang="en"), _moses("en")[1]
    assert (ours.islower(text), ours.isanyalpha(text)) == (
        stock.islower(text),
        stock.isanyalpha(text),
    )


def test_optional_normaliser_steps_fall_back_to_the_stock_method():
    text = "«Bonjour»\u200b , dit-il\x07 ! 【x】"
    for flags in ({"pre_replace_unicode_punct": True}, {"post_remove_control_chars": True}):
        ours = _PunctNormalizer("fr")
        for key, value in flags.items():
            setattr(ours, key, value)
        stock = MosesPunctNormalizer(lang="fr", **flags)
        assert ours.normalize(text) == stock.normalize(text)


# ------------------------------------------------------------------ skipped rules, marks
@pytest.mark.parametrize(
    ("regexp", "needed"),
    [
        (r"\) ([.!:?;,])", (") ",)),
        (r"(\.+)\"x", (".", '"x')),
        (r" +", (" ",)),
        (r"\s+", ()),
        (r"a?b", ("b",)),
        (r"(ab)+c", ("ab", "c")),
        (r"x{2}y", ("x", "y")),
        (r"x{0,3}y", ("y",)),
        (r"a|b", ()),
        (r"[ab]c", ("c",)),
        (r"(?=x)y(?!z)", ("y",)),
        (r"(?<=[^0-9]),", (",",)),
        (r"(?i)abc", ()),
        (r"(?i:ab)c", ("c",)),
        (r"(a|b)c", ("c",)),
        (r"(?:DOT)+MULTI", ("DOT", "MULTI")),
    ],
)
def test_required_substrings_by_hand(regexp, needed):
    assert required_substrings(re.compile(regexp)) == needed


def _all_rules() -> list[re.Pattern[str]]:
    """Every pattern xalign's normaliser and tokenizer may skip, for English and French."""
    patterns = []
    for lang in ("en", "fr", "de"):
        normalizer, tokenizer = _moses(lang)
        patterns += [p for p, _, _ in normalizer._compiled]
        rules = [getattr(tokenizer, n) for n in _GUARDED_RULES]
        rules += [r for n in _GUARDED_RULE_LISTS for r in getattr(tokenizer, n)]
        for rule in rules:
            guarded = rule[0] if isinstance(rule, tuple) else rule
            patterns.append(guarded.pattern)
    return patterns


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=_PATTERN_CHARS + "DOTMULI", max_size=40), data=st.data())
def test_a_text_a_rule_matches_contains_its_required_substrings(text, data):
    pattern = data.draw(st.sampled_from(_all_rules()))
    if pattern.search(text):
        assert all(part in text for part in required_substrings(pattern))


def test_mark_set_by_hand():
    marks = _marks()
    for mark in ("\u0301", "\u0e48", "\u093f", "\u20dd", "\U0001d165", "\u0670"):
        assert mark in marks, hex(ord(mark))
    for other in ("a", " ", ".", "\u00e9", "\u0e01", "\U0001d400", "\u200d"):
        assert other not in marks, hex(ord(other))


def _reference_marks() -> re.Pattern[str]:
    """The regex class tokenize_words used before it used a set (same characters)."""
    cps = [cp for cp in range(sys.maxunicode + 1) if unicodedata.category(chr(cp))[0] == "M"]
    return re.compile("[" + "".join(f"\\U{cp:08x}" for cp in cps) + "]")


class _RegexMarks:
    def __init__(self) -> None:
        self.pattern = _reference_marks()

    def isdisjoint(self, text: str) -> bool:
        return not self.pattern.search(text)


@pytest.fixture(scope="module")
def reference_path():
    """tokenize_words as it ran before its speed-ups: the stock sacremoses classes (with
    xalign's idempotent rules) and the regex mark test."""
    marks = _RegexMarks()
    mp = pytest.MonkeyPatch()
    try:

        def run(text: str, lang: str) -> list[str]:
            mp.setattr(text_module, "_moses", lambda lg: _stock_moses(moses_language(lg)))
            mp.setattr(text_module, "_marks", lambda: marks)
            try:
                return tokenize_words(text, lang)
            finally:
                mp.undo()

        yield run
    finally:
        mp.undo()


@pytest.mark.parametrize(("stem", "lang"), sorted(FLORES.items()))
def test_tokenize_words_same_as_the_reference_path_on_flores(
    shared_data, reference_path, stem, lang
):
    path = shared_data / "parallel" / "flores200_devtest" / f"{stem}.devtest"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    lines = path.read_text(encoding="utf-8").splitlines()[:150]
    flores = stem  # xalign is called with FLORES codes too (deu_Latn -> de rules)
    for code in (lang, flores):
        assert [tokenize_words(x, code) for x in lines] == [reference_path(x, code) for x in lines]


_MARKED = _PATTERN_CHARS + "DOTMULI@\u0301\u0e48\u0e01\u093f\u0915\u0670\u0628"


@settings(max_examples=150, deadline=None)
@given(text=st.text(alphabet=_MARKED, max_size=50), lang=st.sampled_from(LANGS))
def test_tokenize_words_same_as_the_reference_path_on_generated_text(reference_path, text, lang):
    assert tokenize_words(text, lang) == reference_path(text, lang)
