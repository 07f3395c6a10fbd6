"""The word tokeniser is idempotent on its own output (issue 20.2).

``tokenize(" ".join(tokenize(s))) == tokenize(s)`` for every language Moses has rules for,
and a line that is already Moses output keeps its words (``Peter 's``, ``L' homme``).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sacremoses.corpus import NonbreakingPrefixes

from xalign.data.text import moses_language, normalize_text, tokenize_words

#: Every language sacremoses has non-breaking prefixes for, plus the CJK ones it treats apart.
MOSES_LANGUAGES = sorted(
    set(NonbreakingPrefixes().available_langs.values()) | {"en", "fr", "it", "ja", "ko", "zh"}
)


def retokenized(words: list[str], lang: str) -> list[str]:
    return tokenize_words(" ".join(words), lang)


# ------------------------------------------------------------------------------ by hand
@pytest.mark.parametrize(
    ("text", "lang", "words"),
    [
        # the examples: Moses output keeps its words
        ("Peter 's", "en", ["Peter", "'s"]),
        ("isn 't", "en", ["isn", "'t"]),
        ("L' homme d' affaires", "fr", ["L'", "homme", "d'", "affaires"]),
        ("dell' anno", "it", ["dell'", "anno"]),
        # and the raw forms give the same words (Moses' own rules)
        ("Peter's", "en", ["Peter", "'s"]),
        ("isn't", "en", ["isn", "'t"]),
        ("L'homme d'affaires", "fr", ["L'", "homme", "d'", "affaires"]),
        ("dell'anno", "it", ["dell'", "anno"]),
        ("the 1990's", "en", ["the", "1990", "'s"]),
        ("the 1990 's", "en", ["the", "1990", "'s"]),
        ("O'Brien 's", "en", ["O", "'Brien", "'s"]),
        ("WE'RE", "en", ["WE", "'RE"]),
        # a region or script subtag takes its language's rules
        ("Peter 's", "en-GB", ["Peter", "'s"]),
        ("L' homme", "fr-CA", ["L'", "homme"]),
        # quotes are still split as Moses splits them
        ("He said 'Clean Air Act' .", "en", ["He", "said", "'", "Clean", "Air", "Act", "'", "."]),
        ("due 'scatole nere' con", "it", ["due", "'", "scatole", "nere", "'", "con"]),
        ("the boys' toys", "en", ["the", "boys", "'", "toys"]),
        # other languages: every apostrophe alone, as before
        ("Peter's", "de", ["Peter", "'", "s"]),
        ("Peter ' s", "de", ["Peter", "'", "s"]),
        # @-@ escapes, URLs and numbers survive a second pass
        ("pre @-@ war", "en", ["pre", "@-@", "war"]),
        ("1 @,@ 000 @.@ 5", "en", ["1", "@,@", "000", "@.@", "5"]),
        ("1,000.50 km", "en", ["1,000.50", "km"]),
    ],
)
def test_known_lines(text, lang, words):
    assert tokenize_words(text, lang) == words
    assert retokenized(words, lang) == words


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("...'Peter", "en"),  # Moses' "..." marker is letters while the apostrophe rules run
        ("l'...", "fr"),
        ("Peter,,1990", "de"),  # Moses' comma rules consume their neighbour: ",1990" then ", 1990"
        ("a,,1", "en"),
        ("a'b'c d'e'f", "en"),
        ("a'b'c d'e'f", "fr"),
        ("'s 'tis 'em", "en"),
    ],
)
def test_counterexamples_found_by_generation(text, lang):
    words = tokenize_words(text, lang)
    assert retokenized(words, lang) == words


@pytest.mark.parametrize(
    ("text", "lang", "words"),
    [
        # an opening quote at the start of the text is split as after a space (Moses' perl
        # tokenizer pads the line), so the elided word keeps its apostrophe on a second pass
        (
            "'Qu'il vienne', dit-elle.",
            "fr",
            ["'", "Qu'", "il", "vienne", "'", ",", "dit-elle", "."],
        ),
        ("'Aujourd'hui' est un mot.", "fr", ["'", "Aujourd'", "hui", "'", "est", "un", "mot", "."]),
        ("'Dell'arte' è un libro.", "it", ["'", "Dell'", "arte", "'", "è", "un", "libro", "."]),
        ("'l'homme", "fr", ["'", "l'", "homme"]),
        ("'l'homme", "fr-CA", ["'", "l'", "homme"]),
        ("`l'anno", "it", ["'", "l'", "anno"]),
        ("'Yn't", "fr", ["'", "Yn'", "t"]),
        # the same quote after a space already behaved so
        ("dit 'l'homme", "fr", ["dit", "'", "l'", "homme"]),
    ],
)
def test_elided_word_after_an_opening_quote(text, lang, words):
    assert tokenize_words(text, lang) == words
    assert retokenized(words, lang) == words


def test_primary_subtag_picks_the_moses_rules():
    assert moses_language("en-GB") == "en"
    assert moses_language("pt-BR") == "pt"
    assert moses_language("zh-Hant") == "zh"
    assert moses_language("zh_Hans_CN") == "zh"
    assert moses_language("sr-Latn") == "sr"
    assert moses_language("DE") == "de"


@pytest.mark.parametrize(
    ("code", "moses"),
    [
        ("eng", "en"),
        ("deu", "de"),
        ("ger", "de"),  # ISO 639-2/B
        ("fra", "fr"),
        ("fre", "fr"),
        ("ita", "it"),
        ("por", "pt"),
        ("spa", "es"),
        ("nld", "nl"),
        ("ces", "cs"),
        ("ell", "el"),
        ("rus", "ru"),
        ("jpn", "ja"),
        ("kor", "ko"),
        ("cmn", "zh"),
        ("ENG", "en"),
        # FLORES-200 / NLLB names (language_Script), individual codes included
        ("eng_Latn", "en"),
        ("deu_Latn", "de"),
        ("zho_Hant", "zh"),
        ("lvs_Latn", "lv"),
        ("ory_Orya", "or"),
        ("por-BR", "pt"),
        # Moses' own three-letter languages and unknown codes keep their code
        ("mni", "mni"),
        ("yue", "yue"),
        ("tdt", "tdt"),
        ("tur", "tur"),
        ("xx", "xx"),
    ],
)
def test_iso_639_3_codes_pick_the_moses_rules(code, moses):
    assert moses_language(code) == moses


def test_every_moses_language_has_its_three_letter_code():
    """Each Moses language with a two-letter code is reached from an ISO 639-3 code."""
    from xalign.data.text import ISO_639_3_TO_MOSES

    two_letter = {lang for lang in MOSES_LANGUAGES if len(lang) == 2}
    assert two_letter <= set(ISO_639_3_TO_MOSES.values())
    for code, lang in ISO_639_3_TO_MOSES.items():
        assert len(code) == 3 and code.islower() and lang in MOSES_LANGUAGES


@pytest.mark.parametrize(
    ("text", "code", "short"),
    [
        ("Peter's house", "eng", "en"),
        ("Peter's house", "eng_Latn", "en"),
        ("o Exmo. Silva", "por", "pt"),
        ("o Exmo. Silva", "por_Latn", "pt"),
        ("z.B. Nr. 5 , Abs. 3", "deu_Latn", "de"),
        ("L'homme d'affaires", "fra", "fr"),
        ("dell'anno", "ita_Latn", "it"),
        ("中文abc", "zho_Hans", "zh"),
    ],
)
def test_three_letter_codes_tokenise_as_their_moses_language(text, code, short):
    assert tokenize_words(text, code) == tokenize_words(text, short)


def test_three_letter_code_words_by_hand():
    assert tokenize_words("Peter's", "eng") == ["Peter", "'s"]
    assert tokenize_words("o Exmo. Silva", "por") == ["o", "Exmo.", "Silva"]


# ------------------------------------------------------------------------------ generated text
PIECES = [
    "Peter",
    "isn",
    "O",
    "l",
    "dell",
    "po",
    "s",
    "t",
    "re",
    "ll",
    "homme",
    "1990",
    "3.5",
    "1,000",
    "5,3",
    "Mr.",
    "etc.",
    "U.S.",
    "z.B.",
    "http://example.org/a-b?x=1",
    "@-@",
    "@,@",
    "e-mail",
    "Σπίτι",
    "дом",
    "中文",
    "한국어",
    "नमस्ते",
    "สวัสดี",
    "Việt",
    "...",
    "-",
    "--",
    "—",
    "(",
    ")",
    '"',
    "«",
    "»",
    ":",
    ";",
    ",",
    ".",
    "!",
    "?",
    "%",
    "&",
    "/",
    "`",
]
glue = st.sampled_from(["", "", "'", " ", " ", " '", "' ", "-", ".", ",", "''"])
sentences = st.lists(st.tuples(st.sampled_from(PIECES), glue), max_size=14).map(
    lambda parts: "".join(p + g for p, g in parts)
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sentences, st.sampled_from(MOSES_LANGUAGES))
def test_idempotent_on_generated_text(text, lang):
    words = tokenize_words(text, lang)
    assert retokenized(words, lang) == words


@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet=st.characters(codec="utf-8"), max_size=30), st.sampled_from(MOSES_LANGUAGES)
)
def test_idempotent_on_any_text(text, lang):
    words = tokenize_words(text, lang)
    assert retokenized(words, lang) == words


ELIDED = [
    "l'homme",
    "L'homme",
    "Qu'il",
    "qu'elle",
    "Aujourd'hui",
    "d'affaires",
    "Dell'arte",
    "dell'anno",
    "un po'",
    "Yn't",
    "l'",
    "c'est",
]
quoted_elision = st.tuples(
    st.sampled_from(["", " ", "(", "« ", "x ", "dit ", "1 "]),
    st.sampled_from(["'", "`", "‘", "''"]),
    st.sampled_from(ELIDED),
    st.sampled_from(["", "'", "' ", "',", "'.", " est", "' dit-elle.", " 'a"]),
).map("".join)


@settings(max_examples=300, deadline=None)
@given(quoted_elision, st.sampled_from(["fr", "it", "fr-CA", "it-CH"]))
def test_idempotent_on_quoted_elisions(text, lang):
    words = tokenize_words(text, lang)
    assert retokenized(words, lang) == words


# ------------------------------------------------------------------------------ real corpora
FLORES = {
    "en": "eng_Latn",
    "fr": "fra_Latn",
    "it": "ita_Latn",
    "de": "deu_Latn",
    "el": "ell_Grek",
    "ru": "rus_Cyrl",
    "hi": "hin_Deva",
    "th": "tha_Thai",
    "zh": "zho_Hans",
    "pt": "por_Latn",
    "fi": "fin_Latn",
    "cs": "ces_Latn",
}


def lines_of(path: Path, n: int) -> list[str]:
    if not path.exists():
        pytest.skip(f"{path} is absent")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return [line.rstrip("\n") for _, line in zip(range(n), fh, strict=False)]


@pytest.mark.parametrize("lang", sorted(FLORES))
def test_idempotent_on_flores(shared_data, lang):
    path = shared_data / "parallel" / "flores200_devtest" / f"{FLORES[lang]}.devtest"
    for line in lines_of(path, 300):
        words = tokenize_words(line, lang)
        assert retokenized(words, lang) == words, line


@pytest.mark.parametrize("name", ["test_2016_flickr.en.gz", "test_2016_flickr.fr.gz"])
def test_idempotent_on_multi30k(shared_data, name):
    lang = name.split(".")[1]
    for line in lines_of(shared_data / "parallel" / "multi30k" / name, 300):
        words = tokenize_words(line, lang)
        assert retokenized(words, lang) == words, line


@pytest.mark.parametrize(("name", "lang"), [("src-train.txt", "en"), ("tgt-train.txt", "de")])
def test_moses_tokenised_corpus_keeps_its_apostrophe_words(shared_data, name, lang):
    """The OpenNMT set is Moses output (``&apos;s``): no word with an apostrophe is re-split.

    Some of its lines hold punctuation another tool left attached (``Tip:``, ``(The``,
    ``&apos;s).``); Moses splits those as it would in any raw line, so a word counts when it
    is one word on its own (``'s`` yes, ``'s).`` no).
    """
    path = shared_data / "parallel" / "opennmt_toy_ende" / name
    checked, split = 0, []
    for line in lines_of(path, 2000):
        text = normalize_text(line)[0]
        words = tokenize_words(text, lang)
        assert retokenized(words, lang) == words, line
        for word in text.split():
            if "'" in word and tokenize_words(word, lang) == [word]:
                checked += 1
                if word not in words:
                    split.append((word, line))
    assert split == []
    assert checked > (100 if lang == "en" else 0)


# ------------------------------------------------------------------------------ one tokeniser
AGREE = [
    ("en", "fr", "Parliament &apos;s role isn 't O 'Brien 's .", "L&apos; homme d' affaires ."),
    ("en-GB", "fr-CA", "Peter's house , 1,000.5 km", "La maison d'Peter ."),
    ("de", "it", "Peters Haus @-@ Tür", "dell' anno , un po' di"),
]


@pytest.mark.parametrize(("src_lang", "tgt_lang", "src", "tgt"), AGREE)
def test_align_prepare_and_the_stats_use_the_same_words(
    tiny_model, tmp_path, src_lang, tgt_lang, src, tgt
):
    """``xalign align``, prepared training data and its statistics see the same words."""
    import json

    from transformers import AutoTokenizer
    from typer.testing import CliRunner

    from xalign.cli import app
    from xalign.data.prepare import PrepareOptions, prepare

    expected = (
        tokenize_words(normalize_text(src)[0], src_lang),
        tokenize_words(normalize_text(tgt)[0], tgt_lang),
    )
    assert expected[0] == retokenized(expected[0], src_lang)
    args = [src, tgt, "--model", str(tiny_model), "--json", "--no-plot"]
    args += ["--src-lang", src_lang, "--tgt-lang", tgt_lang]
    result = CliRunner().invoke(app, ["align", *args])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert (out["src_words"], out["tgt_words"]) == expected
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "s.txt").write_text(src + "\n", encoding="utf-8")
    (folder / "t.txt").write_text(tgt + "\n", encoding="utf-8")
    spec = {"src": str(folder / "s.txt"), "tgt": str(folder / "t.txt")}
    got = prepare(
        {src_lang: spec},
        [src_lang],
        PrepareOptions(target=tgt_lang, max_length=64),
        tokenizer=AutoTokenizer.from_pretrained(str(tiny_model)),
        cache_dir=tmp_path / "cache",
    )
    pair = got.pairs[0]
    assert (pair.src, pair.tgt) == (src_lang, tgt_lang)
    assert (pair.words["src_words"][0], pair.words["tgt_words"][0]) == expected
    assert pair.stats.read == 1 and len(pair.words) == 1


def test_prepared_words_are_keyed_by_the_tokeniser_version(monkeypatch):
    """Stale prepared words (an older segmentation) are rebuilt, not reused."""
    from xalign.data import prepare as prep

    opts = prep.PrepareOptions()
    key = prep.words_key("de", {"text": "x"}, opts, "tok")
    monkeypatch.setattr(prep, "TOKENIZER_VERSION", "xalign-words/older")
    assert prep.words_key("de", {"text": "x"}, opts, "tok") != key
    assert prep.PREPARE_FORMAT != "xalign-prepared/2"


def test_a_training_run_on_other_words_is_not_reused():
    """The segmentation version is part of a training run's identity (compare's reuse)."""
    from xalign.config import load_config
    from xalign.data.text import TOKENIZER_VERSION
    from xalign.provenance import input_differences, training_components

    cfg = load_config(None, ["data.languages=[de]"])
    comps = training_components(
        cfg, plugins={}, links={}, corpus_digests={"de-en": "c"}, model_id="m"
    )
    assert comps["software"]["words"] == TOKENIZER_VERSION
    params = {"model.content": "m", "data.corpus_hash.de-en": "c"}
    params |= {f"software.{k}": v for k, v in comps["software"].items()}
    assert input_differences(params, comps) == []
    params["software.words"] = "xalign-words/1"
    assert input_differences(params, comps) == [f"words xalign-words/1 now {TOKENIZER_VERSION}"]
