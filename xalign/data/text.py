"""Text normalisation and Moses word tokenisation (sacremoses), one cached tokenizer per language.

Policy (see the README, "Text normalisation policy"):

- Every sentence is put in Unicode NFC, so a word has one spelling whatever normal form the
  corpus was written in (``Vi\u1ec7t`` and ``Vie\u0323\u0302t`` are the same word).
- :func:`normalize_text` undoes Moses XML escaping (``&apos;`` -> ``'`` ...), one level only.
- :func:`tokenize_words` never splits a word at a combining mark (Unicode category ``M*``):
  sacremoses pads every character outside its ``IsAlnum`` table with spaces, which cuts Thai
  tone marks, viramas, stress accents and any mark without a precomposed form off their letter.
  Here Moses sees the text without the marks it would cut off, and they are put back on the
  character they follow.
"""

from __future__ import annotations

import difflib
import re
import sys
import unicodedata
from collections import defaultdict
from functools import lru_cache
from typing import Any

from sacremoses import MosesPunctNormalizer, MosesTokenizer

from xalign.languages import LanguageCodeError, primary_language


def _moses_xml_entities() -> dict[str, str]:
    """Entity -> character, inverted from sacremoses' own escaper table (8 entities)."""
    table = {}
    for regexp, entity in MosesTokenizer.MOSES_ESCAPE_XML_REGEXES:
        char = re.sub(r"\\(.)", r"\1", regexp.pattern)  # the patterns are escaped single chars
        table[entity] = char
    return table


#: ``&amp; &#124; &lt; &gt; &apos; &quot; &#91; &#93;`` -> ``& | < > ' " [ ]``: exactly the
#: entities Moses' ``escape-special-chars.perl`` (sacremoses ``escape_xml``) produces. Older
#: Moses forms (``&bar; &bra; &ket;``) and HTML entities (``&nbsp;``, ``&#39;``) are not touched.
MOSES_XML_ENTITIES: dict[str, str] = _moses_xml_entities()
_ENTITY = re.compile("|".join(re.escape(entity) for entity in MOSES_XML_ENTITIES))

#: What sacremoses' tokenizer does first: collapse whitespace runs, then delete the remaining
#: ASCII control characters (``\x00-\x1f`` minus those ``\s`` already took).
_SPACES = MosesTokenizer.DEDUPLICATE_SPACE[0]
_ASCII_JUNK = MosesTokenizer.ASCII_JUNK[0]
#: sacremoses replaces runs of dots by the literal ``DOT...MULTI`` and turns every such literal
#: back into dots at the end, so text that contains it is silently rewritten ("DOTMULTI" -> ".").
_MULTIDOT_LITERAL = re.compile(r"(?:DOT)+MULTI")


def normalize_text(text: str, *, unescape: bool = True) -> tuple[str, bool]:
    """Undo Moses XML escaping (if ``unescape``) and put ``text`` in Unicode NFC.

    Unescaping is one level, in one left-to-right pass over the 8 entities of
    :data:`MOSES_XML_ENTITIES`: ``&amp;quot;`` (escaped twice) becomes ``&quot;``, not ``"``,
    because a corpus may legitimately contain the text ``&quot;``. It runs before NFC, since an
    unescaped ``<``/``>`` can compose with a following U+0338 (``&lt;\u0338`` -> ``\u226e``).

    Returns:
        ``(normalised text, whether unescaping replaced at least one entity)``; the flag is
        always False when ``unescape`` is False (NFC changes alone do not set it).
    """
    changed = False
    if unescape and "&" in text:
        text, count = _ENTITY.subn(lambda m: MOSES_XML_ENTITIES[m.group()], text)
        changed = count > 0
    return unicodedata.normalize("NFC", text), changed


class _PunctNormalizer(MosesPunctNormalizer):
    """sacremoses' punctuation normaliser with its ~40 patterns compiled once.

    The stock ``normalize`` hands each pattern string to ``re.sub``, one cache lookup per
    pattern and sentence; this runs the same substitutions, in the same order, as compiled
    patterns, and skips a pattern when the text lacks a string every match of it contains
    (:func:`required_substrings`). Same output: ``tests/test_moses_speedups.py`` compares
    both on every FLORES language and on generated text. With ``pre_replace_unicode_punct`` or
    ``post_remove_control_chars`` set it is the stock method.
    """

    def __init__(self, lang: str) -> None:
        super().__init__(lang=lang)
        self._compiled = [
            (re.compile(regexp), sub, _needed(regexp, sub)) for regexp, sub in self.substitutions
        ]

    def normalize(self, text: str) -> str:
        if self.pre_replace_unicode_punct or self.post_remove_control_chars:
            return super().normalize(text)
        for pattern, sub, needed in self._compiled:
            for part in needed:
                if part not in text:
                    break  # no match possible: nothing to substitute
            else:
                text = pattern.sub(sub, text)
        return text.strip()


def _needed(regexp: str, sub: str) -> tuple[str, ...]:
    """What a text must contain for the normaliser's substitution to change it: the
    pattern's :func:`required_substrings`, or two spaces for the ``" +"`` -> ``" "`` rule
    (a lone space is replaced by itself)."""
    if (regexp, sub) == (" +", " "):
        return ("  ",)
    return required_substrings(re.compile(regexp))


class _Tokenizer(MosesTokenizer):
    """sacremoses' tokenizer, idempotent on its own output, made faster with the same output.

    Apostrophe rules (Moses ``tokenizer.perl``, lines "split contractions") rewritten so that
    tokenising the tokenised text changes nothing (:func:`make_idempotent`). Speed-ups, each
    compared with the stock class in ``tests/test_moses_speedups.py``: the stock
    ``islower``/``isanyalpha`` (a set of a few thousand characters built on every call, once
    per token ending in a full stop) answered from sets built once; the non-breaking prefix
    step without a regex per token; rules skipped when the text lacks a string every match
    needs (:data:`_GUARDED_RULES`); the comma rules written with the comma first.
    """

    def __init__(self, lang: str) -> None:
        super().__init__(lang=lang)
        self._lower = frozenset(self.IsLower)
        self._alpha = frozenset(self.IsAlpha)
        self._nonbreaking = frozenset(self.NONBREAKING_PREFIXES)
        self._numeric_only = frozenset(self.NUMERIC_ONLY_PREFIXES)
        make_idempotent(self)
        # the same comma rules, literal first, so that the regex engine jumps from comma to
        # comma instead of testing the lookbehind's digit class at every position
        n = self.IsN
        self.COMMA_SEPARATE_1 = (re.compile(rf",(?<=[^{n}],)"), " , ")
        self.COMMA_SEPARATE_3 = (re.compile(rf",(?<=[{n}],)$"), " , ")
        for name in _GUARDED_RULES:
            setattr(self, name, _guard(getattr(self, name)))
        for name in _GUARDED_RULE_LISTS:
            setattr(self, name, [_guard(rule) for rule in getattr(self, name)])

    def islower(self, text: str) -> bool:
        return set(text) <= self._lower

    def isanyalpha(self, text: str) -> bool:
        return not self._alpha.isdisjoint(text)

    def handles_nonbreaking_prefixes(self, text: str) -> str:
        """The stock method (a full stop split off a word unless the word is a known
        abbreviation ...) without a regex per token: ``^(\\S+)\\.$`` on a token of
        ``str.split`` is "longer than 1 and ends with a full stop", ``^[0-9]+`` is "starts
        with an ASCII digit"."""
        tokens = text.split()
        if "." not in text:
            return " ".join(tokens)
        last = len(tokens) - 1
        for i, token in enumerate(tokens):
            if len(token) < 2 or token[-1] != ".":
                continue
            prefix = token[:-1]
            if (
                ("." in prefix and self.isanyalpha(prefix))
                or (prefix in self._nonbreaking and prefix not in self._numeric_only)
                or (i != last and self.islower(tokens[i + 1][0]))
            ):
                continue
            if prefix in self._numeric_only and i < last and tokens[i + 1][0] in "0123456789":
                continue
            tokens[i] = prefix + " ."
        return " ".join(tokens)


#: The tokenizer's (pattern, substitution) rules that :class:`_Tokenizer` skips when the text
#: lacks a string every match needs (``,`` for the comma rules ...).
_GUARDED_RULES = (
    "COMMA_SEPARATE_1",
    "COMMA_SEPARATE_2",
    "COMMA_SEPARATE_3",
    "NON_SPECIFIC_APOSTROPHE",
    "TRAILING_DOT_APOSTROPHE",
    "MULTIDOT_RUN",
    "MULTIDOT_MARKER",
)
_GUARDED_RULE_LISTS = ("ENGLISH_SPECIFIC_APOSTROPHE", "FR_IT_SPECIFIC_APOSTROPHE")


class _GuardedPattern:
    """A compiled pattern whose ``sub`` returns the text unchanged, without running the
    regex, when a string every match contains is absent from it."""

    __slots__ = ("pattern", "needed")

    def __init__(self, pattern: re.Pattern[str]) -> None:
        self.pattern = pattern
        self.needed = required_substrings(pattern)

    def sub(self, repl: Any, text: str, count: int = 0) -> str:
        for part in self.needed:
            if part not in text:
                return text
        return self.pattern.sub(repl, text, count)


def _guard(rule: Any) -> Any:
    """A rule ``(pattern, substitution)`` or a bare pattern, with its pattern guarded."""
    if isinstance(rule, tuple):
        return (_guard(rule[0]), *rule[1:])
    if isinstance(rule, re.Pattern):
        return _GuardedPattern(rule)
    return rule


def required_substrings(pattern: re.Pattern[str]) -> tuple[str, ...]:
    """Strings that every match of ``pattern`` contains: its runs of consecutive literals
    outside any alternative, optional part, lookaround or class (``r"\\) ([.!:?;,])"`` ->
    ``(") ",)``, ``r"(\\.+)\"x"`` -> ``(".", '"x')``, ``r" +"`` -> ``(" ",)``, ``r"\\s+"`` ->
    ``()``). Empty when unsure (case-insensitive patterns, a parser this Python lacks). A text
    that lacks one of them cannot match, so a substitution on it can be skipped."""
    return _required_substrings(pattern.pattern, pattern.flags)


@lru_cache(maxsize=256)
def _required_substrings(regexp: str | bytes, flags: int) -> tuple[str, ...]:
    """:func:`required_substrings` by pattern text (the classes of a few thousand letters
    take a moment to parse; every language's tokenizer has the same ones)."""
    if flags & re.IGNORECASE or not isinstance(regexp, str):
        return ()
    try:
        from re import _constants as sre  # type: ignore[attr-defined]
        from re import _parser  # type: ignore[attr-defined]

        parsed = _parser.parse(regexp, flags)
    except (ImportError, AttributeError, re.error):  # pragma: no cover - other Pythons
        return ()
    found: list[str] = []

    def walk(items: Any) -> None:
        run = ""
        for op, av in items:
            if op is sre.LITERAL:
                run += chr(av)
                continue
            found.append(run)
            run = ""
            if op is sre.SUBPATTERN and not av[1] & re.IGNORECASE:  # not a (?i:...) group
                walk(av[-1])
            elif op in (sre.MAX_REPEAT, sre.MIN_REPEAT) and av[0] >= 1:
                walk(av[2])
        found.append(run)

    walk(parsed)
    return tuple(dict.fromkeys(run for run in found if run))


#: Version of the word segmentation: part of every key of tokenised data (prepared words, the
#: links index) and of a training run's identity, so a change of words rebuilds, never reuses.
#: 2: idempotent apostrophe rules, ``@-@`` escapes kept, BCP-47 codes by primary subtag.
#: 3: French/Italian opening quote at the start of the text split off (``' Qu' il``).
#:    ISO 639-3 / FLORES codes (``eng``, ``deu_Latn``) get their Moses language's rules.
TOKENIZER_VERSION = "xalign-words/3"


def make_idempotent(tokenizer: MosesTokenizer) -> None:
    """Give a sacremoses tokenizer xalign's idempotent rules (in place): the apostrophe rules
    of :func:`_apostrophe_rules`, and comma rules that look at their neighbours without
    consuming them (Moses' ``a,,1`` gives ``a , ,1``, which its next pass splits again)."""
    rules = _apostrophe_rules(tokenizer.IsAlpha, tokenizer.IsN)
    tokenizer.ENGLISH_SPECIFIC_APOSTROPHE = rules["en"]
    tokenizer.FR_IT_SPECIFIC_APOSTROPHE = rules["fr"]
    n = tokenizer.IsN
    tokenizer.COMMA_SEPARATE_1 = (re.compile(rf"(?<=[^{n}]),"), " , ")
    tokenizer.COMMA_SEPARATE_2 = (re.compile(rf",(?=[^{n}])"), " , ")


#: English clitics Moses splits off a word (``Peter 's``, ``isn 't``, ``we 're`` ...).
ENGLISH_CLITICS = ("s", "t", "m", "d", "re", "ve", "ll")

_Rule = tuple[re.Pattern[str], Any]


def _apostrophe_rules(alpha: str, digit: str) -> dict[str, list[_Rule]]:
    """Moses' English and French/Italian apostrophe rules, made idempotent.

    Moses splits English ``Peter's`` into ``Peter 's`` and French ``l'homme`` into
    ``l' homme``, but its rules then split its own output again (``Peter ' s``, ``l ' homme``):
    English splits any apostrophe between a space and a letter, French any apostrophe between
    a letter and a space. Here those two rules spare exactly the form Moses produced:

    - English: ``'`` + letter after a space that follows a letter or digit stays on its
      letters (``Peter 's``, ``1990 's``, ``O 'Brien``) when it is a clitic
      (:data:`ENGLISH_CLITICS`) or no closing quote (letter + ``'`` not before a letter)
      follows it in the text; so ``said 'Clean Air Act' .`` is still ``said ' Clean Air Act '
      .`` as in Moses. A closing quote at the very end of the text is split too (Moses'
      ``tokenizer.perl`` pads the line with spaces and does so; sacremoses does not).
    - French/Italian: letter + ``'`` before a space and a letter stays (``l' homme``,
      ``dell' anno``, Italian ``po' di``) unless an opening quote (``'`` before a letter,
      not after one) precedes it with no closing quote between (``due 'scatole nere' con``
      -> ``due ' scatole nere ' con`` as in Moses).
    - An opening quote at the start of the text is split off as after a space (``'Qu'il`` ->
      ``' Qu' il``), as Moses' ``tokenizer.perl`` does on its space-padded line.
    - Every rule looks at its neighbours without consuming them, so adjacent apostrophes are
      handled in one pass (Moses leaves the second of ``a'b'c`` for its next pass).

    Other languages split every apostrophe (Moses' rule, already idempotent).
    """
    a, n = alpha, digit
    letter, alnum = frozenset(alpha), frozenset(alpha + digit)
    clitic = re.compile(rf"(?i:{'|'.join(ENGLISH_CLITICS)})(?![{a}])")
    closing = re.compile(rf"[{a}]'(?![{a}])")

    # Spaces before/after the apostrophe may be several (Moses pads as it goes); its marker
    # for "..." (DOT...MULTI) is letters at this stage but stands for dots.
    next_word = re.compile(rf"\s+(?!(?:DOT)+MULTI)[{a}]")

    def english_opening(m: re.Match[str]) -> str:
        text, i = m.string, m.start()
        j = i - 1
        while j >= 0 and text[j].isspace():
            j -= 1
        after_word = 0 <= j < i - 1 and text[j] in alnum and not text.endswith("MULTI", 0, j + 1)
        if after_word and (clitic.match(text, i + 1) or not closing.search(text, i + 1)):
            return "'"  # Moses' own "Peter 's" / "O 'Brien"
        return " ' "

    def french_closing(m: re.Match[str]) -> str:
        text, i = m.string, m.start()
        if not next_word.match(text, i + 1):
            return " ' "
        opened = [
            j
            for j in range(i)
            if text[j] == "'" and text[j + 1] in letter and (j == 0 or text[j - 1] not in letter)
        ]
        if opened and not closing.search(text, opened[-1], i):
            return " ' "  # closes a quote opened in this text
        return "'"  # Moses' own "l' homme"

    english = [
        (re.compile(rf"(?<=[^{a}])'(?=[^{a}])"), " ' "),
        (re.compile(rf"(?<=[^{a}{n}])'(?=[{a}])"), english_opening),
        (re.compile(rf"(?<=[{a}])'(?![{a}])"), " ' "),
        (re.compile(rf"(?<=[{a}])'(?=[{a}])"), " '"),
        (re.compile(rf"(?<=[{n}])'(?=s)"), " '"),
    ]
    french = [  # the closing-quote rule first, while opening quotes are still attached
        (re.compile(rf"(?<=[{a}])'(?=[^{a}])"), french_closing),
        (re.compile(rf"(?<=[^{a}])'(?=[^{a}])"), " ' "),
        # the start of the text counts as a space (Moses' perl pads the line): "'Qu'il" ->
        # "' Qu' il", else the next pass reads "'Qu' il" as a quote closed after "Qu"
        (re.compile(rf"(?<![{a}])'(?=[{a}])"), " ' "),
        (re.compile(rf"(?<=[{a}])'(?=[{a}])"), "' "),
    ]
    return {"en": english, "fr": french}


#: ISO 639-3 (and 639-2/B) code -> the two-letter code Moses keys its rules by, for every
#: language Moses has rules for (sacremoses' non-breaking prefixes, CJK, English/French/Italian
#: apostrophes). Individual codes FLORES-200 uses for a macrolanguage are included (``cmn``,
#: ``ekk``, ``lvs``, ``ory``). Moses' own three-letter languages (``mni``, ``tdt``, ``yue``)
#: need no entry.
ISO_639_3_TO_MOSES: dict[str, str] = {
    "asm": "as", "ben": "bn", "cat": "ca", "ces": "cs", "cze": "cs", "deu": "de", "ger": "de",
    "ell": "el", "gre": "el", "eng": "en", "spa": "es", "est": "et", "ekk": "et", "fin": "fi",
    "fra": "fr", "fre": "fr", "gle": "ga", "guj": "gu", "hin": "hi", "hun": "hu", "isl": "is",
    "ice": "is", "ita": "it", "jpn": "ja", "kan": "kn", "kor": "ko", "lit": "lt", "lav": "lv",
    "lvs": "lv", "mal": "ml", "mar": "mr", "nld": "nl", "dut": "nl", "ori": "or", "ory": "or",
    "pan": "pa", "pol": "pl", "por": "pt", "ron": "ro", "rum": "ro", "rus": "ru", "slk": "sk",
    "slo": "sk", "slv": "sl", "swe": "sv", "tam": "ta", "tel": "te", "zho": "zh", "chi": "zh",
    "cmn": "zh",
}  # fmt: skip


def moses_language(lang: str) -> str:
    """The language whose Moses rules apply to a BCP-47 code: its primary language
    (:func:`xalign.primary_language`: ``en-GB`` -> ``en``, ``pt-BR`` -> ``pt``, ``zh-Hant`` ->
    ``zh``, ``sr_Latn`` -> ``sr``), an ISO 639-3 subtag mapped to Moses' two-letter code
    (``eng`` -> ``en``, FLORES-200 ``deu_Latn`` -> ``de``; :data:`ISO_639_3_TO_MOSES`). Any
    other subtag, and a string that is not a language code, is returned as is (lower case).

    Moses keys its rules by bare codes (English/French/Italian apostrophes, CJK letters,
    non-breaking prefixes): a region or script subtag must not drop a language's rules.
    """
    try:
        primary = primary_language(lang)
    except LanguageCodeError:  # not a language code: no Moses rules apply to it
        return lang.strip().lower()
    return ISO_639_3_TO_MOSES.get(primary, primary)


@lru_cache(maxsize=64)
def _moses(lang: str) -> tuple[MosesPunctNormalizer, MosesTokenizer]:
    lang = moses_language(lang)
    return _PunctNormalizer(lang), _Tokenizer(lang)


@lru_cache(maxsize=64)
def _alnum(lang: str) -> frozenset[str]:
    """The characters sacremoses' tokenizer for ``lang`` never pads (its ``IsAlnum``)."""
    return frozenset(_moses(lang)[1].IsAlnum)


@lru_cache(maxsize=1)
def _marks() -> frozenset[str]:
    """Every combining mark (Mn, Mc, Me) of this Python's Unicode database. A set, not a regex
    class: the class's ranges above U+FFFF are tried one by one for each other character."""
    return frozenset(
        c for c in map(chr, range(sys.maxunicode + 1)) if unicodedata.category(c)[0] == "M"
    )


def _is_mark(char: str) -> bool:
    return unicodedata.category(char)[0] == "M"


def tokenize_words(text: str, lang: str) -> list[str]:
    """Split a sentence into words the way Moses does for ``lang``, keeping marks on their letter.

    Steps: NFC; sacremoses' whitespace collapse and control-character removal; Moses
    punctuation normalisation and tokenisation (``escape=False``, no aggressive dash splits).
    Entities are not unescaped here (that is :func:`normalize_text`'s job).

    Combining marks (``M*``) never start a new word: each mark stays on the character before
    it (a letter, a digit or a punctuation sign: ``","`` + U+0301 is one token). A mark with
    nothing before it (start of text or after a space) stays on the character after it, or is a
    word of its own when a space or the end follows. Segmentation is exactly Moses'
    segmentation of the text without the marks Moses would cut off: marks outside sacremoses'
    ``IsAlnum`` table (Thai tone marks, U+0301 ...) and marks on a non-alphanumeric base. Marks
    Moses already keeps in a word (Devanagari vowel signs, Arabic harakat ...) stay in the text
    it sees, so its word lists (non-breaking prefixes) still match. Returns NFC words, none empty.
    """
    text = _ASCII_JUNK.sub("", _SPACES.sub(" ", unicodedata.normalize("NFC", text))).strip()
    if _marks().isdisjoint(text):
        return _moses_words(text, lang)
    return _words_keeping_marks(text, lang)


#: The escapes of Moses' aggressive splits (``@-@``; ``@,@``, ``@.@`` ... of some pipelines),
#: standing as words: kept whole (Moses would pad both ``@``).
_AT_ESCAPE = re.compile(r"(?<!\S)@[-,./:]@(?!\S)")


def _moses_words(text: str, lang: str) -> list[str]:
    """sacremoses on ``text``, with ``@-@``-style escapes kept as words."""
    if "@" not in text or not _AT_ESCAPE.search(text):
        return _moses_segment(text, lang)
    words: list[str] = []
    start = 0
    for m in _AT_ESCAPE.finditer(text):
        words += _moses_segment(text[start : m.start()], lang)
        words.append(m.group())
        start = m.end()
    return words + _moses_segment(text[start:], lang)


def _moses_segment(text: str, lang: str) -> list[str]:
    """sacremoses on ``text``, with its internal ``DOT...MULTI`` literal protected."""
    normalizer, tokenizer = _moses(lang)
    placeholder = None
    if "MULTI" in text and _MULTIDOT_LITERAL.search(text):
        # Swap the "M" of each literal for a letter absent from the text: still alphanumeric
        # for Moses (so the word is not split), no longer the marker.
        placeholder = next(c for c in _placeholder_letters() if c not in text)
        text = _MULTIDOT_LITERAL.sub(lambda m: m.group()[:-5] + placeholder + "ULTI", text)
    words = tokenizer.tokenize(
        normalizer.normalize(text), escape=False, aggressive_dash_splits=False
    )
    if placeholder:
        words = [w.replace(placeholder, "M") for w in words]
    return words


@lru_cache(maxsize=1)
def _placeholder_letters() -> list[str]:
    """Caseless letters (Lo) that sacremoses counts as alphanumeric, in code point order."""
    caseless = set(MosesTokenizer.IsLower)
    return sorted(
        c for c in set(MosesTokenizer.IsAlnum) - caseless if unicodedata.category(c) == "Lo"
    )


def _words_keeping_marks(text: str, lang: str) -> list[str]:
    """Tokenise ``text`` (NFC, spaces collapsed) without the marks Moses would cut off, then put
    those back.

    Removed marks are recorded against the index of a non-space character of the mark-free skeleton
    (``after[i]``, ``before[i]``) or as words of their own after non-space character ``i``
    (``alone[i]``, ``i = -1`` for the start). Moses only inserts spaces, except where its
    punctuation normaliser rewrites characters (``\u201e`` -> ``"``, ``\u2026`` -> ``...``); the
    skeleton's non-space characters are aligned to the output's with difflib in that case.
    """
    skeleton: list[str] = []
    before: dict[int, str] = defaultdict(str)
    after: dict[int, str] = defaultdict(str)
    alone: dict[int, list[str]] = defaultdict(list)
    alnum = _alnum(lang)
    last = -1  # index of the last non-space skeleton character
    after_space = True
    base_alnum = False  # is the base of the current grapheme cluster alphanumeric for Moses?
    pending = ""  # marks with no base character yet
    for char in text:
        if _is_mark(char):
            if base_alnum and char in alnum:  # Moses keeps it in the word: leave it in the text
                skeleton.append(char)
                last += 1
            elif after_space:
                pending += char
            else:
                after[last] += char
            continue
        if pending:
            if char == " ":
                alone[last].append(pending)
            else:
                before[last + 1] += pending
            pending = ""
        skeleton.append(char)
        after_space = char == " "
        base_alnum = char in alnum
        if not after_space:
            last += 1
    if pending:
        alone[last].append(pending)

    words = _moses_words("".join(skeleton).strip(), lang)
    if not (before or after or alone):
        return words  # no mark needed removing
    source = "".join(c for c in skeleton if c != " ")
    output = "".join(words)
    spans = _align(source, output)
    n_out = len(output)
    pre_out = [""] * n_out
    post_out = [""] * n_out
    alone_out: dict[int, list[str]] = defaultdict(list)
    lone: list[str] = []  # marks that found no output character at all

    def attach(marks: str, j: int, *, front: bool) -> None:
        """Glue ``marks`` before (front) or after output character ``j``, clamped to range."""
        if n_out == 0:
            lone.append(marks)
        elif j < 0:
            pre_out[0] = marks + pre_out[0]
        elif j >= n_out:
            post_out[n_out - 1] += marks
        elif front:
            pre_out[j] = marks + pre_out[j]
        else:
            post_out[j] += marks

    for i, marks in before.items():
        attach(marks, spans[i][0], front=True)
    for i, marks in after.items():
        attach(marks, spans[i][1], front=False)
    for i, runs in alone.items():
        j = spans[i][1] if i >= 0 else -1
        if n_out == 0:
            lone.extend(runs)
        else:
            alone_out[min(j, n_out - 1)].extend(runs)

    result = [*lone, *alone_out.get(-1, [])]
    k = 0
    for word in words:
        pieces, extra = [], []
        for char in word:
            pieces.append(pre_out[k] + char + post_out[k])
            extra.extend(alone_out.get(k, ()))
            k += 1
        result.append(unicodedata.normalize("NFC", "".join(pieces)))
        result.extend(extra)
    return result


def _align(source: str, output: str) -> list[tuple[int, int]]:
    """Per source character: the (first, last) output index it became.

    Identity when nothing was rewritten; otherwise difflib opcodes, a replaced block mapped
    proportionally, a deleted character mapped between its neighbours (first = the next output
    character, last = the previous one).
    """
    if source == output:
        return [(i, i) for i in range(len(source))]
    spans: list[tuple[int, int]] = []
    matcher = difflib.SequenceMatcher(None, source, output, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        for i in range(i1, i2):
            if tag == "equal":
                j = j1 + i - i1
                spans.append((j, j))
            elif tag == "replace":
                n, m = i2 - i1, j2 - j1
                spans.append((j1 + (i - i1) * m // n, j1 + ((i - i1 + 1) * m - 1) // n))
            else:  # delete: the character is gone from the output
                spans.append((j1, j1 - 1))
    return spans
