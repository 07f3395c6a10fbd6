"""Gold sets whose declared languages contradict their text are refused (issue 20.7): the
scripts of the letters (``el`` declared, Latin text) and the English side's function words
(sides swapped), as the index_base/direction refusals do: the file, the options, the cause.

The real gold sets of ../shared/data are all accepted with their right settings and refused
with their languages swapped.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from conftest import shared_data_dir

from xalign import GoldFormatError, load_gold

#: Sentences of each script (repeated to have enough letters to judge).
TEXT = {
    "en": "the house of the old man is near the river and it has a red door",
    "fr": "la maison du vieil homme est près de la rivière et elle a une porte rouge",
    "de": "das Haus des alten Mannes steht am Fluss und hat eine rote Tür",
    "el": "το σπίτι του γέρου είναι κοντά στο ποτάμι και έχει κόκκινη πόρτα",
    "ru": "дом старика стоит у реки и у него красная дверь",
    "bg": "къщата на стареца е близо до реката и има червена врата",
    "zh": "老人 的 房子 在 河 边 ， 有 一 扇 红 门",
    "ja": "老人 の 家 は 川 の 近く に あり 、 赤い ドア が あります",
    "ar": "بيت الرجل العجوز قرب النهر وله باب أحمر",
    "hi": "बूढ़े आदमी का घर नदी के पास है और उसका दरवाज़ा लाल है",
    "th": "บ้าน ของ ชาย ชรา อยู่ ใกล้ แม่น้ำ และ มี ประตู สี แดง",
}


def write_pair(folder: Path, src_text: str, tgt_text: str, n: int = 12) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = {"src_file": folder / "a.txt", "tgt_file": folder / "b.txt"}
    files["src_file"].write_text(f"{src_text}\n" * n, encoding="utf-8")
    files["tgt_file"].write_text(f"{tgt_text}\n" * n, encoding="utf-8")
    files["links_file"] = folder / "links.txt"
    files["links_file"].write_text("0-0 1-1\n" * n, encoding="utf-8")
    return files


def load(files: dict[str, Path], **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_gold(format="pharaoh", **files, **options)


@pytest.mark.parametrize("lang", ["el", "ru", "bg", "zh", "ja", "ar", "hi", "th"])
def test_a_non_latin_language_declared_on_latin_text_and_swaps(tmp_path, lang) -> None:
    files = write_pair(tmp_path, TEXT[lang], TEXT["en"])
    assert len(load(files, src_lang=lang, tgt_lang="en")) == 12  # right: accepted
    with pytest.raises(GoldFormatError) as swapped:
        load(files, src_lang="en", tgt_lang=lang)
    message = " ".join(str(swapped.value).split())
    for part in (str(files["src_file"]), str(files["tgt_file"]), "src_lang: en",
                 "look swapped", f"pass src_lang: {lang}, tgt_lang: en"):  # fmt: skip
        assert part in message, message
    assert swapped.value.path == files["src_file"]
    # one side wrong: the English side is right, the other declared in a Latin language
    with pytest.raises(
        GoldFormatError, match=r"src_lang: 'de' is written in Latin.*check src_lang"
    ):
        load(files, src_lang="de", tgt_lang="en")
    # declared with a region or script subtag: the same check (xalign.primary_language)
    with pytest.raises(GoldFormatError, match="look swapped"):
        load(files, src_lang="EN-us", tgt_lang=f"{lang}-XX")


@pytest.mark.parametrize("lang", ["fr", "de"])
def test_swapped_latin_languages_by_english_function_words(tmp_path, lang) -> None:
    files = write_pair(tmp_path, TEXT[lang], TEXT["en"])
    assert len(load(files, src_lang=lang, tgt_lang="en")) == 12
    with pytest.raises(GoldFormatError, match=r"declared English \(src_lang: en\) has 0\.0%"):
        load(files, src_lang="en", tgt_lang=lang)
    # the english option says which side is English: it is the option named
    with pytest.raises(GoldFormatError, match=r"\(english: src: .*pass english: tgt"):
        load(files, src_lang=lang, tgt_lang="en", english="src")
    assert len(load(files, src_lang=lang, tgt_lang="en", english="tgt")) == 12


def test_little_or_mixed_evidence_is_accepted(tmp_path) -> None:
    few = write_pair(tmp_path / "few", TEXT["fr"], TEXT["en"], n=1)  # under 100 words/letters
    assert len(load(few, src_lang="en", tgt_lang="fr")) == 1
    # Bulgarian with Latin names in it (30 % of the letters): not a contradiction
    mixed = TEXT["bg"] + " " + "Sofia Plovdiv Varna Burgas Ruse"
    files = write_pair(tmp_path / "mixed", mixed, TEXT["en"])
    assert len(load(files, src_lang="bg", tgt_lang="en")) == 12
    # two Latin languages, neither English: nothing to compare
    files = write_pair(tmp_path / "defr", TEXT["fr"], TEXT["de"])
    assert len(load(files, src_lang="de", tgt_lang="fr")) == 12
    # a language without a usual script (sr: Latin or Cyrillic) is not checked by script ...
    files = write_pair(tmp_path / "sr", TEXT["ru"], TEXT["en"])
    assert len(load(files, src_lang="sr", tgt_lang="en")) == 12
    # ... but its script subtag is; and a subtag overrides the usual script (romanised Hindi)
    assert len(load(files, src_lang="sr-Cyrl", tgt_lang="en")) == 12
    with pytest.raises(GoldFormatError, match="'sr-Latn' is written in Latin"):
        load(files, src_lang="sr-Latn", tgt_lang="en")
    romanised = write_pair(tmp_path / "hi", "bude aadmi ka ghar nadi ke paas hai", TEXT["en"])
    assert len(load(romanised, src_lang="hi-Latn", tgt_lang="en")) == 12
    with pytest.raises(GoldFormatError, match="'hi' is written in Devanagari"):
        load(romanised, src_lang="hi", tgt_lang="en")


# ------------------------------------------------------------------ the real gold sets

SHARED = shared_data_dir()
ALIGN = SHARED / "align" if SHARED is not None else Path("/nonexistent")
#: path, src_lang, tgt_lang (file order) of every gold set of ../shared/data/SOURCES.md
REAL = {
    "awesome-enfr": ("awesome/enfr.src-tgt", "en", "fr"),
    "awesome-roen": ("awesome/roen.src-tgt", "ro", "en"),
    "bicici-deen": ("deen_bicici100", "de", "en"),
    **{
        f"xlwa-{lang}-{split}": (f"xlwa/{lang}/{split}.tsv", "en", lang)
        for lang in ("bg", "es")
        for split in ("test", "dev", "train")
    },
}


@pytest.mark.integration
@pytest.mark.skipif(not (ALIGN / "awesome").is_dir(), reason="no ../shared/data/align")
@pytest.mark.parametrize("name", sorted(REAL))
def test_every_real_gold_set_right_and_swapped(name: str) -> None:
    path, src, tgt = REAL[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        right = load_gold(ALIGN / path, src_lang=src, tgt_lang=tgt)
        assert len(right) >= 100 and right.tgt_lang == "en"
        if (ALIGN.parent / "align").is_dir() and name in load_named():
            assert load_gold(name, SHARED).possible == right.possible
        with pytest.raises(GoldFormatError, match="look swapped") as swapped:
            load_gold(ALIGN / path, src_lang=tgt, tgt_lang=src)
    message = str(swapped.value)
    assert f"pass src_lang: {src}, tgt_lang: {tgt}" in message
    assert str(ALIGN / path).split("/")[-1].split(".")[0] in message  # the file


def load_named() -> set[str]:
    from xalign import GOLD_SETS

    return set(GOLD_SETS)
