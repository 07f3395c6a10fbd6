"""Word alignments of one sentence pair from an encoder: mutual argmax and the OT plan.

Two extractions from the word vectors of any layer (links are 0-based ``(src, tgt)``):

- **mutual argmax** of the cosine similarity (SimAlign's "ArgMax"): i and j are each other's
  most similar word.
- **OT plan**: the entropic plan π between the two uniform word clouds with the objective's
  conventions (cost ‖x−y‖^p / p, ε = blur^p, see :mod:`xalign.ot`), on L2-normalised vectors
  by default (then ½‖x−y‖² = 1 − cos). ``argmax`` links (i, j) when π_ij is the maximum of
  both its row and its column; ``threshold`` links (i, j) when π_ij·n ≥ threshold, n = number
  of source words: π_ij·n is the share of source word i's mass sent to j.

:func:`plot_plan` draws π·n as a heatmap with the words on the axes (PNG, Agg backend).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from xalign.batch import Links
from xalign.encoders import Encoder
from xalign.ot import transport_plan

PLAN_METHODS = ("argmax", "threshold")


def cosine_similarity(x: Tensor, y: Tensor) -> Tensor:
    """Cosine similarity ``[N, M]`` between the rows of ``x`` and ``y``."""
    x = torch.nn.functional.normalize(x.double(), dim=-1)
    y = torch.nn.functional.normalize(y.double(), dim=-1)
    return x @ y.T


def mutual_argmax(scores: Tensor) -> Links:
    """Links (i, j) where j is row i's argmax and i is column j's argmax (first on ties)."""
    if scores.numel() == 0:
        return set()
    row_best = scores.argmax(dim=1)
    col_best = scores.argmax(dim=0)
    return {(i, int(j)) for i, j in enumerate(row_best.tolist()) if int(col_best[j]) == i}


def plan_links(plan: Tensor, method: str = "argmax", threshold: float = 0.5) -> Links:
    """Links from a transport plan ``[N, M]``: mutual ``argmax`` or π_ij·N ≥ ``threshold``."""
    if method == "argmax":
        return mutual_argmax(plan)
    if method == "threshold":
        keep = (plan * plan.shape[0] >= threshold).nonzero().tolist()
        return {(int(i), int(j)) for i, j in keep}
    raise ValueError(f"unknown plan link method {method!r}; choose one of {PLAN_METHODS}")


@dataclass
class OTOptions:
    """How the plan is computed (geomloss conventions, see :mod:`xalign.ot`).

    ``scaling`` defaults higher than training's 0.5 and ``max_iter`` extra Sinkhorn updates
    make the plan's marginals tight (geomloss's schedule alone leaves them loose).
    """

    p: int = 2
    blur: float = 0.05
    scaling: float = 0.9
    reach: float | None = None
    normalize: bool = True
    max_iter: int = 1000


@dataclass
class PairAlignment:
    """Word alignment of one sentence pair; links are 0-based ``(src, tgt)``."""

    src_words: list[str]
    tgt_words: list[str]
    similarity: Tensor
    plan: Tensor
    argmax_links: Links = field(default_factory=set)
    ot_links: Links = field(default_factory=set)

    def pairs(self, links: Links) -> list[tuple[str, str]]:
        """``(source word, target word)`` of each link, in source order."""
        return [(self.src_words[i], self.tgt_words[j]) for i, j in sorted(links)]

    def to_dict(self) -> dict:
        """JSON-friendly view (links as sorted ``[i, j]`` lists, plan rounded)."""
        return {
            "src_words": self.src_words, "tgt_words": self.tgt_words,
            "ot_links": [list(x) for x in sorted(self.ot_links)],
            "argmax_links": [list(x) for x in sorted(self.argmax_links)],
            "plan": [[round(v, 6) for v in row] for row in self.plan.tolist()],
        }


@torch.inference_mode()
def word_vectors(encoder: Encoder, words: list[str], lang: str, pooling: str) -> Tensor:
    """Word vectors ``[W, H]`` of one sentence at the encoder's layer (truncated words dropped)."""
    side = encoder.encode([words], [lang], pooling=pooling)
    vecs, mask = side.words_vectors(pooling)
    return vecs[0][mask[0]].cpu().double()


def ot_plan(x: Tensor, y: Tensor, options: OTOptions | None = None) -> Tensor:
    """Entropic OT plan between two uniform word clouds (optionally L2-normalised)."""
    o = options or OTOptions()
    if o.normalize:
        x = torch.nn.functional.normalize(x, dim=-1)
        y = torch.nn.functional.normalize(y, dim=-1)
    return transport_plan(x, y, p=o.p, blur=o.blur, scaling=o.scaling, reach=o.reach,
                          max_iter=o.max_iter)


def align_vectors(x: Tensor, y: Tensor, src_words: list[str], tgt_words: list[str], *,
                  options: OTOptions | None = None, method: str = "argmax",
                  threshold: float = 0.5) -> PairAlignment:
    """Both alignments from word vectors ``x`` ``[N, H]`` and ``y`` ``[M, H]``."""
    plan = ot_plan(x, y, options)
    return PairAlignment(src_words, tgt_words, cosine_similarity(x, y), plan,
                         mutual_argmax(cosine_similarity(x, y)),
                         plan_links(plan, method, threshold))


def align_words(encoder: Encoder, src_words: list[str], tgt_words: list[str],
                src_lang: str, tgt_lang: str, *, pooling: str = "mean",
                options: OTOptions | None = None, method: str = "argmax",
                threshold: float = 0.5) -> PairAlignment:
    """Align two word-tokenised sentences with ``encoder`` (at its ``layer``)."""
    x = word_vectors(encoder, src_words, src_lang, pooling)
    y = word_vectors(encoder, tgt_words, tgt_lang, pooling)
    if len(x) == 0 or len(y) == 0:
        raise ValueError("both sentences need at least one word")
    return align_vectors(x, y, src_words[: len(x)], tgt_words[: len(y)], options=options,
                         method=method, threshold=threshold)


def plot_plan(plan: Tensor, src_words: list[str], tgt_words: list[str], path: str | Path, *,
              ot_links: Links = frozenset(), argmax_links: Links = frozenset(),
              title: str | None = None, src_label: str = "source",
              tgt_label: str = "target") -> Path:
    """Save π·n (rows: source words, columns: target words) as a PNG heatmap.

    OT links are framed in white, mutual-argmax links get a red dot.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n, m = plan.shape
    fig, ax = plt.subplots(figsize=(max(4.0, 0.55 * m + 2.5), max(3.0, 0.45 * n + 1.8)))
    image = ax.imshow((plan * n).cpu().numpy(), cmap="viridis", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(m), labels=tgt_words, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(n), labels=src_words)
    ax.set_xlabel(tgt_label)
    ax.set_ylabel(src_label)
    for i, j in ot_links:
        ax.add_patch(matplotlib.patches.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False,
                                                  edgecolor="white", linewidth=2))
    for i, j in argmax_links:
        ax.plot(j, i, "o", color="red", markersize=4)
    fig.colorbar(image, ax=ax, label="π·n (share of the source word's mass)", shrink=0.8)
    ax.set_title(title or "OT plan (□ OT link, ● mutual argmax)", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
