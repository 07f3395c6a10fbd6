"""The OT heatmap draws words of any script, or names once those it cannot (issue 20, 7e).

matplotlib's default font (DejaVu Sans) has no Thai, Devanagari or CJK; it used to draw boxes
and print a "Glyph N missing from font(s)" warning per character. Only the fonts that exist
here can be used: matplotlib ships DejaVu and STIX (STIXGeneral has circled letters, DejaVu Sans
does not), so that fallback is always testable; Thai/Devanagari/CJK are drawn where a font
for them is installed (e.g. fonts-noto-*) and otherwise named in ONE MissingGlyphWarning.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from xalign import XalignWarning
from xalign.alignment import plot
from xalign.alignment.plot import MissingGlyphWarning, plot_plan

WORDS = {
    "thai": ["สวัสดี", "ครับ"],
    "devanagari": ["नमस्ते", "दुनिया"],
    "cjk": ["你好", "世界"],
    "greek": ["καλημέρα", "κόσμε"],
    "circled": ["ⒶⒷⒸ"],  # STIXGeneral only
}


def draw(tmp_path: Path, src: list[str], tgt: list[str], **kw) -> tuple[Path, list]:
    plan = torch.full((len(src), len(tgt)), 1.0 / (len(src) * len(tgt)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = plot_plan(plan, src, tgt, tmp_path / "p.png", ot_links={(0, 0)}, **kw)
    assert out.stat().st_size > 1000
    return out, caught


def coverable(word: str) -> bool:
    """Whether some installed font (not Last Resort) has a glyph for every character: read
    from the font files with FreeType, independently of the plot module."""
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    fonts = [f for f in font_manager.fontManager.ttflist if not f.name.startswith("Last Resort")]
    covered: set[int] = set()
    for f in fonts:
        try:
            covered |= set(FT2Font(f.fname).get_charmap())
        except Exception:  # noqa: BLE001
            continue
    return all(ord(c) in covered for c in word)


def test_every_script_is_drawn_or_named_once(tmp_path):
    src = [w for words in WORDS.values() for w in words]
    _, caught = draw(tmp_path, src, ["hello", "world"])
    assert not [w for w in caught if "Glyph" in str(w.message)], [str(w.message) for w in caught]
    notices = [w for w in caught if issubclass(w.category, MissingGlyphWarning)]
    assert len(notices) <= 1 and len(caught) == len(notices)
    text = str(notices[0].message) if notices else ""
    for word in src:
        assert (word in text) == (not coverable(word)), (word, text)
    for word in WORDS["greek"] + WORDS["circled"]:  # fonts matplotlib itself ships
        assert word not in text
    assert issubclass(MissingGlyphWarning, XalignWarning)


def test_without_fallback_fonts_the_words_are_named_and_labelled(tmp_path, monkeypatch):
    """Only DejaVu Sans installed: the circled word cannot be drawn; one notice names it and
    its label is its position and script, never boxes."""
    fonts = [f for f in plot._installed_fonts() if f[0] == "DejaVu Sans"]
    monkeypatch.setattr(plot, "_installed_fonts", lambda: fonts)
    src = ["a", *WORDS["circled"], *WORDS["thai"], *WORDS["greek"]]
    _, caught = draw(tmp_path, src, ["x"])
    assert [w.category for w in caught] == [MissingGlyphWarning]
    text = str(caught[0].message)
    assert "3 word(s)" in text and all(w in text for w in WORDS["circled"] + WORDS["thai"])
    assert not any(w in text for w in WORDS["greek"])
    families, missing = plot.choose_fonts(src)
    labels, bad = plot._labels(src, missing)
    assert labels == ["a", "#1 (Circled)", "#2 (Thai)", "#3 (Thai)", *WORDS["greek"]]
    assert bad == src[1:4] and families == ["DejaVu Sans"]


def test_fallback_font_is_chosen_for_uncovered_characters():
    families, missing = plot.choose_fonts(["abc", "ⒶⒷⒸ"])
    assert families[0] == "DejaVu Sans" and "STIXGeneral" in families[1:]
    assert missing == set()
    assert plot.choose_fonts(["abc", "καλημέρα"]) == (["DejaVu Sans"], set())


@pytest.mark.parametrize("where", ["title", "src_label"])
def test_labels_and_title_never_print_glyph_warnings(tmp_path, where, monkeypatch):
    fonts = [f for f in plot._installed_fonts() if f[0] == "DejaVu Sans"]
    monkeypatch.setattr(plot, "_installed_fonts", lambda: fonts)
    _, caught = draw(tmp_path, ["a", "b"], ["x"], **{where: "ภาษาไทย"})
    assert [w.category for w in caught] == [MissingGlyphWarning]


def test_latin_words_give_no_warning(tmp_path):
    _, caught = draw(tmp_path, ["Das", "Haus"], ["the", "house"])
    assert caught == []
