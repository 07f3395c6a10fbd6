"""xalign's sacremoses subclasses (compiled normaliser patterns, character sets built once)
give exactly the stock classes' output: on real sentences of 16 scripts and languages, and
on generated text made of the characters the patterns and tests look at."""

from __future__ import annotations

from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sacremoses import MosesPunctNormalizer, MosesTokenizer

from xalign.data.text import _moses, _PunctNormalizer, _Tokenizer, make_idempotent

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
