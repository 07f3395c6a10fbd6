"""Sinkhorn-divergence alignment (Alqahtani et al. 2021, "OT as alignment objective").

Minimises S_ε(α, β) between the source and English word clouds of each sentence pair
(``scope: sentence``, one batched geomloss call) or of the whole batch (``scope: batch``).
The paper's Eq. 2 prints a minus sign before S; that is a typo: the divergence is minimised.

Options (see :class:`SinkhornConfig`): ``level`` word (WordOT, words pooled from subwords) or
subword (SubOT); ``p``, ``blur`` (ε = blur^p), ``scaling``, ``debias``, ``reach`` (None =
balanced, a number = unbalanced with ρ = reach^p), ``diameter`` (fixed start of the
ε-annealing; makes a batched call equal per-pair calls) and ``point_weights`` (the mass of
each point: uniform or tf-idf; not to be confused with the objective's ``weight`` in the sum
of objectives). ``point_weights`` was called ``weights`` before; the old key still works, with
a deprecation warning.

Scope: why ``sentence`` is the default
--------------------------------------
The paper defines the loss between the contextual embeddings of the words of a *parallel*
source/target pair but does not say explicitly whether one OT problem is solved per sentence
pair or over all words of a mini-batch. We read it per sentence pair: transport is only
meaningful between translations of each other; a batch-level problem lets a word be matched
with a word of an unrelated sentence that happens to be close, and its value depends on the
batch composition. Appendix E's "mixing languages" variant (words of several source languages
in one OT against English) only makes sense if an OT problem spans several sentence pairs,
i.e. batch scope - with sentence scope every problem holds one pair and hence one language
pair by construction. So ``scope: batch`` (and the ``mixed_ot`` objective) are the ablations,
``scope: sentence`` the main method. Sentence scope solves all pairs of a batch in ONE
batched geomloss call with zero-weight padding.

tf-idf weights (paper footnote 7)
---------------------------------
``point_weights: tf-idf`` gives each word (token position) the mass tf(w, s)·idf(w): tf is the count
of the lower-cased word in its sentence, idf = log((1 + N) / (1 + df(w))) + 1 over the N
training sentences of that language in the language pair (smoothed so no word gets zero mass;
unseen words get the largest idf). Masses are renormalised per sentence (per batch for
``scope: batch``); at subword level a word's mass is split evenly over its subwords. idf must
not be estimated from the batches seen (the loss would then depend on batch order), so it is
computed once from the training data by :meth:`Sinkhorn.prepare` (``idf_from_sentences``),
which the trainer calls before training (``Objective.prepare(data)``).
"""

from __future__ import annotations

import difflib
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

import xalign
from xalign import AlignmentBatch, Needs, Objective, PreparedCorpus

WEIGHTS = ("uniform", "tf-idf")


class Idf(dict):
    """idf per lower-cased word; a missing word gets ``unseen`` (the idf of df = 0)."""

    def __init__(self, values: dict[str, float], unseen: float) -> None:
        super().__init__(values)
        self.unseen = unseen

    def __missing__(self, word: str) -> float:
        return self.unseen


def idf_from_sentences(sentences: Iterable[Sequence[str]]) -> Idf:
    """Smoothed idf, log((1 + N) / (1 + df)) + 1, of lower-cased words over ``sentences``."""
    df: Counter[str] = Counter()
    n = 0
    for words in sentences:
        n += 1
        df.update({w.lower() for w in words})
    return Idf(
        {w: math.log((1 + n) / (1 + d)) + 1 for w, d in df.items()}, unseen=math.log(1 + n) + 1
    )


def tfidf(words: Sequence[str], idf: dict[str, float]) -> list[float]:
    """tf(w, sentence)·idf(w) for each word position of one sentence."""
    lower = [w.lower() for w in words]
    counts = Counter(lower)
    return [counts[w] * idf[w] for w in lower]


def word_weights(side: xalign.Side, idfs: Sequence[dict[str, float]]) -> torch.Tensor:
    """tf-idf weights ``[B, W]`` aligned with ``side.words_vectors()`` (one idf per sentence)."""
    width = int(side.n_words.max()) if side.batch_size else 0
    out = torch.zeros(side.batch_size, width)
    for b, (words, idf) in enumerate(zip(side.words, idfs, strict=True)):
        n = min(width, len(words))
        out[b, :n] = torch.tensor(tfidf(words, idf)[:n])
    return out.to(side.hidden.device)


def subword_weights(side: xalign.Side, words: torch.Tensor) -> torch.Tensor:
    """Spread each word's weight evenly over its subwords: ``[B, T]`` (0 on special tokens)."""
    real = side.word_index >= 0
    idx = side.word_index.clamp(min=0)
    counts = torch.zeros_like(words).scatter_add(1, idx, real.to(words.dtype))
    return words.gather(1, idx) / counts.gather(1, idx).clamp(min=1) * real


@dataclass
class SinkhornConfig:
    """Options; defaults are geomloss's and the paper's.

    ``blur`` is geomloss's length scale: ε = blur^p, so the paper's "ε = 0.05" (geomloss's
    default blur) means ε = 0.0025 for p = 2 with cost ½‖x−y‖². ``reach``: None = balanced
    OT, a number = unbalanced OT with KL marginal penalty ρ = reach^p (use float32 only with
    reach not much larger than the cloud diameter: the unbalanced formula cancels
    catastrophically). ``diameter``: fixed start of the ε-annealing (None = estimated per
    call, so a pair's value depends on its batch-mates). ``point_weights``: the mass of each point,
    uniform or tf-idf (the latter needs :meth:`Sinkhorn.prepare` on the training data).

    - ``level``: points are ``word`` vectors (WordOT) or ``subword`` states (SubOT).
    - ``pooling``: subwords -> word vector (last, first, mean); null: the run's model.pooling.
    - ``scope``: one OT problem per ``sentence`` pair (the method) or per ``batch`` (ablation).
    - ``p``: cost exponent: ‖x−y‖ (1) or ½‖x−y‖² (2).
    - ``blur``: geomloss's length scale, ε = blur^p (0.05: ε = 0.0025 for p = 2).
    - ``scaling``: ε-annealing factor per Sinkhorn iteration, in (0, 1).
    - ``debias``: Sinkhorn divergence (true) or the plain entropic OT cost (false).
    - ``reach``: null: balanced OT; a number: unbalanced, KL marginal penalty ρ = reach^p.
    - ``diameter``: fixed start of the ε-annealing (null: estimated per call).
    - ``point_weights``: mass of each point: ``uniform`` or ``tf-idf`` (idf from the corpus).
    """

    level: str = "word"
    pooling: str | None = None
    scope: str = "sentence"
    p: int = 2
    blur: float = 0.05
    scaling: float = 0.5
    debias: bool = True
    reach: float | None = None
    diameter: float | None = None
    point_weights: str = "uniform"

    def __post_init__(self) -> None:
        choices = {
            "level": ("word", "subword"),
            "scope": ("sentence", "batch"),
            "point_weights": WEIGHTS,
            "p": (1, 2),
        }
        for key, allowed in choices.items():
            value = getattr(self, key)
            if value not in allowed:
                close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"sinkhorn: {key} must be one of {allowed}, got {value!r}{hint}")
        if self.blur <= 0:
            raise ValueError(f"sinkhorn: blur must be > 0, got {self.blur}")
        if not 0 < self.scaling < 1:
            raise ValueError(f"sinkhorn: scaling must be in (0, 1), got {self.scaling}")
        for key in ("reach", "diameter"):
            if getattr(self, key) is not None and getattr(self, key) <= 0:
                raise ValueError(f"sinkhorn: {key} must be None or > 0, got {getattr(self, key)}")


class Sinkhorn(Objective):
    """Sinkhorn divergence between source and English word (or subword) clouds."""

    name = "sinkhorn"
    description = "Sinkhorn divergence S_eps between word clouds (WordOT/SubOT, Alqahtani 2021)"
    Config = SinkhornConfig
    renamed_options = {"weights": "point_weights"}  # the old name, deprecated

    def __init__(self, config: SinkhornConfig | None = None, *, hidden_size: int) -> None:
        super().__init__(config, hidden_size=hidden_size)
        self.idf: dict[tuple[str, str], tuple[Idf, Idf]] = {}

    def needs(self) -> Needs:
        return Needs(mixed_languages=False)

    def prepare(self, data: PreparedCorpus) -> None:
        """Compute idf per language pair from the training data before training.

        Reads ``data.pairs`` (``.src``, ``.tgt``) and each pair's ``.examples``
        (``src_words``/``tgt_words``: Moses words, as in the batches), one pass per side.
        """
        for pair in data.pairs:
            self.idf[(pair.src, pair.tgt)] = (
                idf_from_sentences(e.src_words for e in pair.examples),
                idf_from_sentences(e.tgt_words for e in pair.examples),
            )

    def idf_for(self, src: str, tgt: str) -> tuple[Idf, Idf]:
        """Source and target idf of one language pair (computed by :meth:`prepare`)."""
        try:
            return self.idf[(src, tgt)]
        except KeyError:
            raise ValueError(
                f"sinkhorn: point_weights=tf-idf has no idf statistics for {src}-{tgt}; "
                f"Sinkhorn.prepare(data) must be called with the training data first"
            ) from None

    def vectors(self, side: xalign.Side) -> tuple[torch.Tensor, torch.Tensor]:
        if self.config.level == "subword":
            return side.subwords()
        return side.words_vectors(self.config.pooling)

    def point_weights(self, batch: AlignmentBatch) -> tuple[torch.Tensor, torch.Tensor] | None:
        """tf-idf masses of the source and target points, or None for uniform weights."""
        if self.config.point_weights == "uniform":
            return None
        langs = zip(batch.src.langs, batch.tgt.langs, strict=True)
        idfs = [self.idf_for(s, t) for s, t in langs]
        out = []
        for k, side in enumerate((batch.src, batch.tgt)):
            w = word_weights(side, [pair[k] for pair in idfs])
            out.append(subword_weights(side, w) if self.config.level == "subword" else w)
        return out[0], out[1]

    def loss(self, batch: AlignmentBatch) -> torch.Tensor:
        x, xm = self.vectors(batch.src)
        y, ym = self.vectors(batch.tgt)
        weights = self.point_weights(batch)
        xw, yw = weights if weights is not None else (None, None)
        c = self.config
        kwargs = dict(
            p=c.p,
            blur=c.blur,
            scaling=c.scaling,
            debias=c.debias,
            reach=c.reach,
            diameter=c.diameter,
        )
        if c.scope == "batch":
            return xalign.sinkhorn_divergence(
                x[xm],
                xm.new_ones(int(xm.sum())),
                y[ym],
                ym.new_ones(int(ym.sum())),
                x_weights=None if xw is None else xw[xm],
                y_weights=None if yw is None else yw[ym],
                **kwargs,
            )
        return xalign.sinkhorn_divergence(x, xm, y, ym, x_weights=xw, y_weights=yw, **kwargs).mean()


@xalign.hookimpl
def register_objectives(register) -> None:
    register(Sinkhorn)
