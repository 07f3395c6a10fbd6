"""Text normalisation (NFC, Moses unescaping) and mark-safe Moses word tokenisation."""

from __future__ import annotations

import re
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sacremoses import MosesPunctNormalizer, MosesTokenizer

from xalign.data.text import MOSES_XML_ENTITIES, normalize_text, tokenize_words


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


def is_mark(char: str) -> bool:
    return unicodedata.category(char)[0] == "M"


# --- normalize_text: Moses XML unescaping ----------------------------------------------------


def test_the_entity_table_is_exactly_what_the_moses_escaper_writes():
    assert MOSES_XML_ENTITIES == {
        "&amp;": "&",
        "&#124;": "|",
        "&lt;": "<",
        "&gt;": ">",
        "&apos;": "'",
        "&quot;": '"',
        "&#91;": "[",
        "&#93;": "]",
    }


@pytest.mark.parametrize(
    ("escaped", "plain"),
    [
        ("Das ist Peters &quot;Haus&quot; .", 'Das ist Peters "Haus" .'),
        ("That is Peter &apos;s &quot;house&quot; .", 'That is Peter \'s "house" .'),
        ("Tom &amp; Anna", "Tom & Anna"),
        ("&#124;", "|"),
        ("a &#91; b &#93; c", "a [ b ] c"),
        ("&lt;b&gt; fett &lt;/b&gt;", "<b> fett </b>"),
        ("l&apos;homme", "l'homme"),
        ("&quot;&quot;&amp;&amp;", '""&&'),
    ],
)
def test_moses_entities_are_unescaped(escaped, plain):
    assert normalize_text(escaped) == (plain, True)


def test_double_escaping_is_undone_one_level_only():
    once, changed = normalize_text("&amp;quot;")
    assert (once, changed) == ("&quot;", True)
    assert normalize_text(once) == ('"', True)
    assert normalize_text("&amp;amp;") == ("&amp;", True)


@pytest.mark.parametrize(
    "text",
    [
        "Ein Haus .",
        "AT&T & Co &c.",
        "&nbsp; &#39; &#x27; &bar; &bra; &ket;",  # HTML and legacy Moses forms are left alone
        "&amp",  # no semicolon
        "",
    ],
)
def test_text_without_moses_entities_is_unchanged(text):
    assert normalize_text(text) == (text, False)


def test_unescape_false_keeps_entities_but_still_applies_nfc():
    assert normalize_text("Tom &amp; Anna", unescape=False) == ("Tom &amp; Anna", False)
    assert normalize_text(nfd("Việt &quot;"), unescape=False) == ("Việt &quot;", False)


def test_nfc_is_applied_and_is_not_reported_as_unescaping():
    assert normalize_text(nfd("Tiếng Việt")) == ("Tiếng Việt", False)
    assert normalize_text("Tiếng Việt")[0] == nfc("Tiếng Việt")
    # unescaping runs first, so an unescaped "<" composes with a following U+0338 into U+226E
    assert normalize_text("&lt;\u0338") == ("\u226e", True)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_unescaping_inverts_the_sacremoses_escaper(text):
    escaped = MosesTokenizer().escape_xml(text)
    assert normalize_text(escaped) == (nfc(text), escaped != text)


def test_unescaped_english_tokenises_without_entity_debris():
    text, changed = normalize_text("That is Peter &apos;s &quot;house&quot; .")
    assert changed
    # no "&", "apos", "quot", ";" is left, and Moses' own "'s" stays one word (issue 20.2)
    assert tokenize_words(text, "en") == ["That", "is", "Peter", "'s", '"', "house", '"', "."]
    assert tokenize_words(normalize_text("Tom &amp; Anna")[0], "en") == ["Tom", "&", "Anna"]
    assert tokenize_words(normalize_text("Das ist Peters &quot;Haus&quot; .")[0], "de") == [
        "Das",
        "ist",
        "Peters",
        '"',
        "Haus",
        '"',
        ".",
    ]


def test_tokenize_words_does_not_unescape():
    assert tokenize_words("Tom &amp; Anna", "en") == ["Tom", "&", "amp", ";", "Anna"]


ENTITY = re.compile(r"&(?:amp|#124|lt|gt|apos|quot|#91|#93);")


@pytest.mark.integration
def test_opennmt_english_entities_are_all_found_and_removed(shared_data):
    path = shared_data / "parallel" / "opennmt_toy_ende" / "src-train.txt"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    lines = path.read_text(encoding="utf-8").split("\n")[:-1]
    assert len(lines) == 10_000
    with_entities = sum(1 for line in lines if ENTITY.search(line))
    results = [normalize_text(line) for line in lines]
    assert sum(changed for _, changed in results) == with_entities == 980  # as issue 8 reports
    assert not any(ENTITY.search(text) for text, _ in results)  # nothing was double-escaped
    # every "&" left is a bare one of the input or came from "&amp;"
    bare = sum(line.count("&") - len(ENTITY.findall(line)) for line in lines)
    assert sum(text.count("&") for text, _ in results) == bare + sum(
        line.count("&amp;") for line in lines
    )
    n_entities = sum(len(ENTITY.findall(line)) for line in lines)
    assert sum(t.count(";") for t, _ in results) == sum(x.count(";") for x in lines) - n_entities
    # one level only: the one line escaped twice (and tokenised in between) keeps one level
    twice = [i for i, line in enumerate(lines) if "&amp; amp;" in line]
    assert len(twice) == 1 and "R & amp; D" in results[twice[0]][0]
    debris = {"apos", "quot", "amp", "#124", "#91", "#93", "lt", "gt"}
    for i, (text, changed) in enumerate(results):
        if changed and i not in twice:
            assert not debris & set(tokenize_words(text, "en")), text


# --- tokenize_words: NFC and combining marks -------------------------------------------------

SCRIPTS = [
    # Vietnamese: NFC has precomposed letters, NFD stacks two marks on a vowel
    ("Tiếng Việt rất đẹp .", "vi", ["Tiếng", "Việt", "rất", "đẹp", "."]),
    # Thai tone mark U+0E48 (Mn) has no precomposed form
    ("ง่าย", "th", ["ง่าย"]),
    ("ภาษาไทย ง่าย มาก", "th", ["ภาษาไทย", "ง่าย", "มาก"]),
    # Devanagari vowel signs (Mc U+093F, Mn U+0940), virama U+094D, anusvara; danda is punctuation
    ("हिन्दी में।", "hi", ["हिन्दी", "में", "।"]),
    # "ह" alone is a Hindi non-breaking prefix ("ह." stays one word); "है" is not
    ("यह है.", "hi", ["यह", "है", "."]),
    # Arabic harakat (fatha, sukun, dammatan, kasra)
    ("مَدْرَسَةٌ كَبِيرَةٌ.", "ar", ["مَدْرَسَةٌ", "كَبِيرَةٌ", "."]),
    # Hebrew points (qamats, shin dot, holam)
    ("שָׁלוֹם, עוֹלָם!", "he", ["שָׁלוֹם", ",", "עוֹלָם", "!"]),
    # Korean: NFD is conjoining Jamo, NFC composes them into syllables
    ("한국어를 배워요.", "ko", ["한국어를", "배워요", "."]),
    ("Ελληνικά καλά.", "el", ["Ελληνικά", "καλά", "."]),
    ("Йогурт и ёж.", "ru", ["Йогурт", "и", "ёж", "."]),
    # Cyrillic stress mark U+0301: no precomposed Cyrillic letter, NFC cannot help
    ("Я пью молоко́.", "ru", ["Я", "пью", "молоко́", "."]),
    # Yoruba: e-dot-below + grave has no precomposed form either
    ("Ẹ̀kọ́ dára.", "yo", ["Ẹ̀kọ́", "dára", "."]),
    # Greek perispomeni on epsilon (no precomposed form) and an enclosing mark (Me)
    ("ε͂ x⃝ y҃", "el", ["ε͂", "x⃝", "y҃"]),
]


@pytest.mark.parametrize(("text", "lang", "words"), SCRIPTS)
@pytest.mark.parametrize("form", ["NFC", "NFD", "NFKD"])
def test_words_are_never_split_at_a_combining_mark(text, lang, words, form):
    got = tokenize_words(unicodedata.normalize(form, text), lang)
    assert got == [nfc(unicodedata.normalize(form, w)) for w in words]
    assert all(nfc(w) == w for w in got)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("\u0301", ["\u0301"]),  # a lone mark is a word of its own
        ("\u0301\u0300", ["\u0301\u0300"]),
        ("a \u0301 b", ["a", "\u0301", "b"]),
        ("\u0301abc", ["\u0301abc"]),  # no base before it: it stays on the next character
        ("\u0301 \u0300 ab", ["\u0301", "\u0300", "ab"]),
        ("Hallo,\u0301 Welt", ["Hallo", ",\u0301", "Welt"]),  # a mark after punctuation stays on it
        ("end.\u0301", ["end", ".\u0301"]),
        ("(\u0301x)", ["(\u0301", "x", ")"]),
        ("5\u0301 km", ["5\u0301", "km"]),
        ("a\u0301\u0301 ,\u0301\u0302", ["a\u0301\u0301", ",\u0301\u0302"]),
        # the punctuation normaliser rewrites characters that carry marks: the marks follow them
        ("„Ẹ̀kọ́“ …\u0301 dára", ['"', "Ẹ̀kọ́", '"', "...\u0301", "dára"]),
    ],
)
def test_stray_marks_are_kept_on_the_character_before_them(text, words):
    assert tokenize_words(text, "en") == [nfc(w) for w in words]


def test_plain_moses_behaviour_is_unchanged():
    assert tokenize_words("L'homme n'est pas là.", "fr") == [
        "L'",
        "homme",
        "n'",
        "est",
        "pas",
        "là",
        ".",
    ]
    assert tokenize_words("Don't stop, it's 3.5 km!", "en") == [
        "Don",
        "'t",
        "stop",
        ",",
        "it",
        "'s",
        "3.5",
        "km",
        "!",
    ]
    assert tokenize_words("  Wait...  what?\t", "en") == ["Wait", "...", "what", "?"]
    assert tokenize_words("", "en") == []


def test_text_that_looks_like_sacremoses_placeholders_is_kept():
    # sacremoses stores "..." as the literal DOT...MULTI and turns every such literal into dots
    assert tokenize_words("DOTMULTI and DOTDOTMULTI ...", "en") == [
        "DOTMULTI",
        "and",
        "DOTDOTMULTI",
        "...",
    ]
    assert tokenize_words("ẹ̀ DOTMULTI", "en") == ["ẹ̀", "DOTMULTI"]


def _moses_reference(text: str, lang: str) -> list[str]:
    """sacremoses itself, as xalign calls it."""
    words = MosesTokenizer(lang=lang).tokenize(
        MosesPunctNormalizer(lang=lang).normalize(text), escape=False, aggressive_dash_splits=False
    )
    return words


def _without_cut_marks(text: str, lang: str) -> str:
    """``text`` minus the marks Moses would cut off: those outside its IsAlnum table and those
    whose base character (the last non-mark before them) is not in it."""
    alnum = set(MosesTokenizer(lang=lang).IsAlnum)
    kept, base_alnum = [], False
    for c in text:
        if is_mark(c):
            if base_alnum and c in alnum:
                kept.append(c)
            continue
        kept.append(c)
        base_alnum = c in alnum
    return "".join(kept)


def _strip_marks(word: str) -> str:
    return "".join(c for c in word if not is_mark(c))


MARKS = "\u0300\u0301\u0302\u0323\u0338\u0483\u05b8\u05c1\u064e\u0652\u093f\u0940\u094d\u0e48\u20dd"
BASES = "aeoEzẹ5ьдяαωשمकนง한"
PUNCT = ".,!?;:()-"
char = st.sampled_from(MARKS + BASES + PUNCT + "  \t")


@settings(max_examples=300, deadline=None)
@given(st.lists(char, max_size=25).map("".join), st.sampled_from(["en", "fr", "de", "th"]))
def test_marks_never_change_segmentation_and_never_start_a_word(text, lang):
    words = tokenize_words(text, lang)
    assert all(w and not any(c.isspace() for c in w) and nfc(w) == w for w in words)
    # any normal form gives the same words
    assert tokenize_words(nfd(text), lang) == words
    # nothing is lost or reordered: the words are the text without its whitespace
    assert nfd("".join(words)) == nfd(re.sub(r"\s", "", nfc(text)))
    # segmentation is Moses' segmentation of the text without the marks it would cut off
    reference = _moses_reference(_without_cut_marks(nfc(text), lang), lang)
    bare = [_strip_marks(w) for w in words]
    assert [w for w in bare if w] == [_strip_marks(w) for w in reference]
    # a word starts with a mark only where the text has a mark with no base (start / after space)
    collapsed = re.sub(r"\s+", " ", nfc(text)).strip()
    baseless = len(re.findall(r"(?:^| )[" + MARKS + "]", nfc(collapsed)))
    assert sum(is_mark(w[0]) for w in words) <= baseless
