"""Picture of one sentence pair's alignment (``xalign align --out``): the OT plan as a heatmap.

Extraction itself lives in :mod:`xalign.alignment.extract` (shared with the ``align`` task);
this module only draws. The figure is capped at :data:`MAX_INCHES` per side (at
:data:`DPI` dots per inch, so at most 2400×2400 pixels whatever the sentence length); past
about 60 words per axis the tick labels shrink and then only every k-th word is labelled.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor

from xalign.alignment.extract import SentenceAlignment, display_word
from xalign.links import Links

MAX_INCHES = 20.0
DPI = 120
MIN_FONT, MAX_FONT = 4.0, 10.0


def _tick_labels(words: list[str], span_inches: float) -> tuple[list[int], list[str], float]:
    """Which words to label along an axis of ``span_inches``, and the font size in points."""
    cell = span_inches * 72.0 / max(len(words), 1)  # points per word
    size = min(MAX_FONT, max(MIN_FONT, 0.8 * cell))
    step = max(1, math.ceil(size / cell))
    ticks = list(range(0, len(words), step))
    return ticks, [display_word(words[k]) for k in ticks], size


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
    xt, xl, xs = _tick_labels(tgt_words, width - 2.5)
    yt, yl, ys = _tick_labels(src_words, height - 1.8)
    ax.set_xticks(xt, labels=xl, rotation=45, ha="right", rotation_mode="anchor", fontsize=xs)
    ax.set_yticks(yt, labels=yl, fontsize=ys)
    ax.set_xlabel(tgt_label)
    ax.set_ylabel(src_label)
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
    ax.set_title(title or "OT plan (□ OT link, ● mutual argmax)", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
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
