"""Picture of one sentence pair's alignment (``xalign align --out``): the OT plan as a heatmap.

Extraction itself lives in :mod:`xalign.alignment.extract` (shared with the ``align`` task);
this module only draws. The figure is capped at :data:`MAX_INCHES` per side (at
:data:`DPI` dots per inch, so at most 2400×2400 pixels whatever the sentence length); past
about 60 words per axis the tick labels shrink and then only every k-th word is labelled.

Fonts: the words may be in any script (Thai, Devanagari, CJK, ...), while matplotlib's
default font (DejaVu Sans) covers Latin, Greek and Cyrillic only. :func:`choose_fonts` adds,
after the default, the installed fonts (matplotlib's font list) that cover the words'
characters, and matplotlib draws each glyph from the first font that has it. A word that no
installed font can draw is labelled ``#k (Script)`` instead of boxes, and one
:class:`MissingGlyphWarning` names those words (instead of matplotlib's warning per glyph).
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
import warnings
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import Tensor

from xalign.alignment.extract import SentenceAlignment, display_word
from xalign.errors import XalignWarning
from xalign.links import Links

MAX_INCHES = 20.0
DPI = 120
MIN_FONT, MAX_FONT = 4.0, 10.0


class MissingGlyphWarning(XalignWarning):
    """Some words of a plot cannot be drawn with any installed font (labelled by position)."""


@functools.cache
def _charmap(fname: str) -> frozenset[int]:
    """The code points a font file has glyphs for (empty when it cannot be read)."""
    from matplotlib.ft2font import FT2Font

    try:
        return frozenset(FT2Font(fname).get_charmap())
    except Exception:  # noqa: BLE001 - a broken font file covers nothing
        return frozenset()


def _needed(text: str) -> set[int]:
    """Code points of ``text`` that need a glyph (not spaces or invisible format marks)."""
    return {ord(c) for c in text if not c.isspace() and unicodedata.category(c) != "Cf"}


def _default_families() -> list[str]:
    import matplotlib

    family = matplotlib.rcParams["font.family"]
    families = [family] if isinstance(family, str) else list(family)
    out: list[str] = []
    for name in families:  # generic names ("sans-serif") -> their configured fonts
        key = f"font.{name}"
        out += list(matplotlib.rcParams[key]) if key in matplotlib.rcParams else [name]
    return out


def _installed_fonts() -> list[tuple[str, str]]:
    """(family, file) of every font matplotlib knows, except Last Resort (matplotlib ships
    it: its "glyphs" for every code point are placeholder boxes)."""
    from matplotlib import font_manager

    fonts = font_manager.fontManager.ttflist
    return [(f.name, f.fname) for f in fonts if not f.name.startswith("Last Resort")]


def choose_fonts(texts: Iterable[str]) -> tuple[list[str], set[int]]:
    """Font families to draw ``texts`` with, and the code points no installed font covers.

    The first installed default family (``rcParams["font.family"]``, generic names
    expanded) comes first; then, greedily, the installed font that covers most of the
    characters still uncovered, until none helps.
    """
    needed: set[int] = set().union(*(_needed(t) for t in texts))
    fonts = _installed_fonts()
    defaults = _default_families()
    present = [(fam, fname) for fam, fname in fonts if fam in defaults]
    families: list[str] = []
    if present:  # the default font actually drawn: the first default family installed
        family, fname = min(present, key=lambda f: defaults.index(f[0]))
        families.append(family)
        needed -= _charmap(fname)
    while needed:
        family, fname = max(fonts, key=lambda f: len(needed & _charmap(f[1])), default=("", ""))
        gain = needed & _charmap(fname) if fname else set()
        if not gain:
            break
        if family not in families:
            families.append(family)
        needed -= gain
    return families or ["sans-serif"], needed


def _script(word: str) -> str:
    """The Unicode script-ish name of the first letter of ``word`` (``Thai``, ``Cjk``)."""
    for ch in word:
        name = unicodedata.name(ch, "")
        if name:
            script = name.split()[0]
            return script if script == "CJK" else script.title()
    return "unknown script"


def _labels(words: list[str], missing: set[int]) -> tuple[list[str], list[str]]:
    """Tick labels for ``words`` and the words that cannot be drawn (labelled ``#k (Script)``)."""
    labels, undrawable = [], []
    for k, word in enumerate(words):
        shown = display_word(word)
        if _needed(shown) & missing:
            undrawable.append(word)
            shown = f"#{k} ({_script(word)})"
        labels.append(shown)
    return labels, undrawable


_GLYPH_WARNING = re.compile(r"Glyph \d+ .*missing from (current )?font")


def _tick_labels(words: list[str], span_inches: float) -> tuple[list[int], float]:
    """Which words to label along an axis of ``span_inches``, and the font size in points."""
    cell = span_inches * 72.0 / max(len(words), 1)  # points per word
    size = min(MAX_FONT, max(MIN_FONT, 0.8 * cell))
    step = max(1, math.ceil(size / cell))
    return list(range(0, len(words), step)), size


def plot_plan(
    plan: Tensor,
    src_words: list[str],
    tgt_words: list[str],
    path: str | Path,
    *,
    ot_links: Links = frozenset(),
    argmax_links: Links = frozenset(),
    title: str | None = None,
    src_label: str = "source",
    tgt_label: str = "target",
) -> Path:
    """Save π·n (rows: source words, columns: target words) as a PNG heatmap.

    ``plan`` ``[n, m]`` may hold NaN for words without a vector (drawn grey); n is the number
    of source words with a vector, so each such row of π·n sums to 1. OT links are framed in
    white, mutual-argmax links get a red dot. The figure is at most ``MAX_INCHES`` square.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n, m = plan.shape
    kept = int((~torch.isnan(plan)).any(dim=1).sum()) or 1
    width = min(MAX_INCHES, max(4.0, 0.55 * m + 2.5))
    height = min(MAX_INCHES, max(3.0, 0.45 * n + 1.8))
    fig, ax = plt.subplots(figsize=(width, height))
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="lightgrey")
    image = ax.imshow(
        (plan * kept).cpu().numpy(),
        cmap=cmap,
        vmin=0.0,
        vmax=1.0,
        aspect="auto",
        interpolation="nearest",
    )
    title = title or "OT plan (□ OT link, ● mutual argmax)"
    shown = [display_word(w) for w in src_words + tgt_words] + [title, src_label, tgt_label]
    families, missing = choose_fonts(shown)
    src_shown, src_bad = _labels(src_words, missing)
    tgt_shown, tgt_bad = _labels(tgt_words, missing)
    xt, xs = _tick_labels(tgt_words, width - 2.5)
    yt, ys = _tick_labels(src_words, height - 1.8)
    xl, yl = [tgt_shown[k] for k in xt], [src_shown[k] for k in yt]
    ax.set_xticks(
        xt,
        labels=xl,
        rotation=45,
        ha="right",
        rotation_mode="anchor",
        fontsize=xs,
        fontfamily=families,
    )
    ax.set_yticks(yt, labels=yl, fontsize=ys, fontfamily=families)
    ax.set_xlabel(tgt_label, fontfamily=families)
    ax.set_ylabel(src_label, fontfamily=families)
    line = 2.0 if max(n, m) <= 60 else 0.5
    for i, j in ot_links:
        ax.add_patch(
            matplotlib.patches.Rectangle(
                (j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="white", linewidth=line
            )
        )
    if argmax_links:
        rows, cols = zip(*sorted(argmax_links), strict=True)
        ax.plot(cols, rows, "o", color="red", markersize=4 if max(n, m) <= 60 else 1)
    fig.colorbar(image, ax=ax, label="π·n (share of the source word's mass)", shrink=0.8)
    ax.set_title(title, fontsize=10, fontfamily=families)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig.tight_layout()
        fig.savefig(path, dpi=DPI)
    plt.close(fig)
    glyphs = [w for w in caught if _GLYPH_WARNING.search(str(w.message))]
    for w in caught:  # every other warning as it was
        if w not in glyphs:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    undrawable = src_bad + tgt_bad
    if undrawable or glyphs:
        chars = "".join(sorted({chr(c) for c in missing}))[:40]
        words = ", ".join(undrawable[:20]) + (" ..." if len(undrawable) > 20 else "")
        warnings.warn(
            f"{path}: no installed font covers {len(undrawable)} word(s) ({words or 'labels'}; "
            f"characters {chars!r}): labelled by position and script instead; install a font "
            f"for the script (e.g. Debian's fonts-noto-core / fonts-noto-cjk) to see them",
            MissingGlyphWarning,
            stacklevel=2,
        )
    return path


def plot_alignment(
    alignment: SentenceAlignment,
    path: str | Path,
    *,
    title: str | None = None,
    src_label: str = "source",
    tgt_label: str = "target",
) -> Path:
    """:func:`plot_plan` of an :func:`~xalign.alignment.extract.align_sentences` result.

    Needs the plan (``both=True`` or ``method: ot``).
    """
    result = alignment.result
    if result.plan is None:
        raise ValueError("plot_alignment needs the OT plan: align with both=True")
    return plot_plan(
        result.plan,
        alignment.src_words,
        alignment.tgt_words,
        path,
        ot_links=result.ot_links or set(),
        argmax_links=result.argmax_links or set(),
        title=title,
        src_label=src_label,
        tgt_label=tgt_label,
    )
