"""Word-alignment quality (AER, precision, recall, F1) of an encoder on gold test sets.

Links are extracted without training, from one layer's word vectors (SimAlign-style):

- ``method: argmax`` links source word i and English word j when they are each other's most
  cosine-similar word (mutual argmax; Jalili Sabet et al. 2020, "ArgMax").
- ``method: ot`` computes the entropic OT plan π between the two word clouds
  (:func:`xalign.transport_plan`: uniform weights, cost ½‖x−y‖², ε = blur²) and links
  (i, j) when π_ij ≥ ``threshold`` · max(row i) and ≥ ``threshold`` · max(column j);
  ``threshold = 1`` is the mutual argmax of π, lower values admit many-to-many links.

Scores are corpus-level (Och & Ney 2003), one entry per gold set, keyed by the set name
(two sets can share a language; the language is in ``meta["languages"]``). AER is the main
metric and lower is better (``meta["higher_is_better"] = False``).

``per_example[set]`` holds per-sentence AER (0.0 for a sentence with no predicted and no sure
link), so a paired bootstrap over it is an approximation of the corpus AER's. For the exact
corpus statistic, ``meta["sentence_counts"][set]`` holds per-sentence ``matched`` =
|A∩S| + |A∩P| and ``total`` = |A| + |S|: corpus AER = 1 − Σmatched / Σtotal over any
resample of sentences.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

import xalign
from xalign import Side, TaskContext, TaskResult
from xalign.alignment import GoldSet, Links, alignment_scores, available_gold_sets, load_gold

METHODS = ("argmax", "ot")
POOLINGS = ("mean", "first", "last")


class WordEncoder(Protocol):
    """What the task needs from an encoder (``xalign.Encoder`` or a test stub)."""

    def encode(self, sentences: list[list[str]], langs: list[str], *, pooling: str = ...,
               device: torch.device | str | None = ...) -> Side: ...


def _as_list(value: Any) -> list[str] | None:
    """``None``, a list, or a comma-separated string (from the command line) -> list."""
    if value is None or isinstance(value, list):
        return value
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return list(value)


@dataclass
class AlignConfig:
    """Options of the ``align`` task.

    - ``sets``: gold set names (or paths ``load_gold`` accepts); ``None`` = every available
      set except the ``*-dev`` splits.
    - ``layer``: hidden-state index; ``-1`` = last, the layer the objectives tune (SimAlign
      and awesome-align extract from layer 8 of 12-layer models, usually better untuned).
    - ``pooling``: subwords -> word vector (``mean`` default: uses every subword).
    - ``blur`` (``ot``): geomloss length scale on L2-normalised vectors (``normalize``), so
      ε = blur² = 0.01 against a cost of 1 − cos; the objective's sharper 0.05 gives
      slightly worse links with e5. ``threshold`` (``ot``): relative link threshold, 1 =
      mutual argmax of π (see the module docstring). ``sinkhorn_iters`` (``ot``): extra
      Sinkhorn updates after geomloss's ε-annealing (0 = none, as in the objective; an exactly
      converged plan gave slightly worse links with e5: bicici AER 0.185 vs 0.175).
    - ``limit``: first N sentence pairs of each set; ``max_length``: subwords per sentence,
      capped at the model's limit (longer sentences lose their last words).
    """

    sets: list[str] | None = None
    layer: int = -1
    method: str = "argmax"
    pooling: str = "mean"
    blur: float = 0.1
    threshold: float = 1.0
    normalize: bool = True
    sinkhorn_iters: int = 0
    batch_size: int = 32
    limit: int | None = None
    max_length: int = 512

    def __post_init__(self) -> None:
        self.sets = _as_list(self.sets)
        if self.method not in METHODS:
            raise ValueError(f"align: method must be one of {METHODS}, got {self.method!r}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"align: pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"align: threshold must be in (0, 1], got {self.threshold}")
        if self.blur <= 0 or self.batch_size < 1 or self.sinkhorn_iters < 0:
            raise ValueError("align: need blur > 0, batch_size >= 1 and sinkhorn_iters >= 0")
        if self.limit is not None and self.limit < 0:
            raise ValueError(f"align: limit must be >= 0, got {self.limit}")


# ------------------------------------------------------------------------ link extraction


def mutual_links(scores: Tensor, threshold: float = 1.0) -> Links:
    """Links (i, j) with ``scores[i, j]`` ≥ threshold × its row max and its column max.

    ``threshold = 1`` is the mutual argmax (ties give several links); ``threshold < 1`` needs
    non-negative scores (e.g. a transport plan).
    """
    if scores.numel() == 0:
        return set()
    row_max = scores.max(dim=1, keepdim=True).values
    col_max = scores.max(dim=0, keepdim=True).values
    keep = (scores >= threshold * row_max) & (scores >= threshold * col_max)
    return {(int(i), int(j)) for i, j in keep.nonzero().tolist()}


def cosine_similarity(x: Tensor, y: Tensor) -> Tensor:
    """Cosine similarity matrix ``[N, M]`` between rows of ``x`` and ``y``."""
    x = torch.nn.functional.normalize(x.float(), dim=-1)
    y = torch.nn.functional.normalize(y.float(), dim=-1)
    return x @ y.T


def ot_plan(x: Tensor, y: Tensor, *, blur: float, normalize: bool = True,
            max_iter: int = 0) -> Tensor:
    """Entropic OT plan ``[N, M]`` between two uniform word clouds (:func:`xalign.transport_plan`).

    ``normalize`` L2-normalises the vectors first (cost ½‖x−y‖² = 1 − cos); ``max_iter`` extra
    Sinkhorn updates after geomloss's annealing make π an exact coupling.
    """
    x, y = x.float(), y.float()
    if normalize:
        x = torch.nn.functional.normalize(x, dim=-1)
        y = torch.nn.functional.normalize(y, dim=-1)
    return xalign.transport_plan(x, y, blur=blur, max_iter=max_iter)


def _restore(links: Links, src_idx: Tensor, tgt_idx: Tensor) -> Links:
    """Map links between kept words back to the sentence's word positions."""
    src, tgt = src_idx.tolist(), tgt_idx.tolist()
    return {(src[i], tgt[j]) for i, j in links}


def extract_links(x: Tensor, x_mask: Tensor, y: Tensor, y_mask: Tensor,
                  config: AlignConfig) -> Links:
    """Links of one sentence pair from word vectors ``[W, H]`` and masks of real words."""
    src_idx, tgt_idx = x_mask.nonzero().flatten(), y_mask.nonzero().flatten()
    if len(src_idx) == 0 or len(tgt_idx) == 0:
        return set()
    xs, ys = x[src_idx], y[tgt_idx]
    if config.method == "ot":
        plan = ot_plan(xs, ys, blur=config.blur, normalize=config.normalize,
                       max_iter=config.sinkhorn_iters)
        links = mutual_links(plan, config.threshold)
    else:
        links = mutual_links(cosine_similarity(xs, ys))
    return _restore(links, src_idx, tgt_idx)


# ------------------------------------------------------------------------ prediction


def _batches(gold: GoldSet, size: int) -> Iterator[list[int]]:
    """Sentence indices in batches of similar length (less padding), longest first."""
    order = sorted(range(len(gold)), key=lambda n: -max(len(gold.src_sents[n]),
                                                         len(gold.tgt_sents[n])))
    for start in range(0, len(order), size):
        yield order[start:start + size]


def _word_vectors(encoder: WordEncoder, sents: list[list[str]], lang: str, pooling: str,
                  device: str) -> tuple[Tensor, Tensor]:
    """Pooled word vectors and masks of a batch of sentences (padded, on the CPU)."""
    side = encoder.encode(sents, [lang] * len(sents), pooling=pooling, device=device)
    vecs, mask = side.words_vectors(pooling)
    return vecs.cpu(), mask.cpu()


@torch.inference_mode()
def predict_links(encoder: WordEncoder, gold: GoldSet, config: AlignConfig,
                  device: str = "cpu", progress: bool = False) -> list[Links]:
    """Predicted links for every sentence pair of ``gold`` (source = non-English side)."""
    pred: list[Links] = [set() for _ in range(len(gold))]
    batches = list(_batches(gold, config.batch_size))
    for idx in xalign.track(batches, f"align {gold.name}", progress):
        keep = [n for n in idx if gold.src_sents[n] and gold.tgt_sents[n]]
        if not keep:
            continue
        x, xm = _word_vectors(encoder, [gold.src_sents[n] for n in keep], gold.src_lang,
                              config.pooling, device)
        y, ym = _word_vectors(encoder, [gold.tgt_sents[n] for n in keep], gold.tgt_lang,
                              config.pooling, device)
        for b, n in enumerate(keep):
            pred[n] = extract_links(x[b], xm[b], y[b], ym[b], config)
    return pred


# ------------------------------------------------------------------------ scoring


def sentence_counts(pred: Sequence[Links], gold: GoldSet) -> tuple[list[int], list[int]]:
    """Per sentence: matched = |A∩S| + |A∩P| and total = |A| + |S| (corpus AER's terms)."""
    matched, total = [], []
    for a, s, p in zip(pred, gold.sure, gold.possible, strict=True):
        p = p | s
        matched.append(len(a & s) + len(a & p))
        total.append(len(a) + len(s))
    return matched, total


def sentence_aer(matched: Sequence[int], total: Sequence[int]) -> list[float]:
    """Per-sentence AER; 0.0 when a sentence has neither predicted nor sure links."""
    return [1.0 - m / t if t else 0.0 for m, t in zip(matched, total, strict=True)]


def limit_gold(gold: GoldSet, limit: int | None) -> GoldSet:
    """The first ``limit`` sentence pairs of ``gold`` (all when ``limit`` is None)."""
    if limit is None or limit >= len(gold):
        return gold
    return GoldSet(gold.name, gold.src_lang, gold.tgt_lang, gold.src_sents[:limit],
                   gold.tgt_sents[:limit], gold.sure[:limit], gold.possible[:limit],
                   [(n, link) for n, link in gold.out_of_range if n < limit])


def default_sets(context: TaskContext) -> list[str]:
    """Available gold test sets (``*-dev`` splits excluded)."""
    sets = [s for s in available_gold_sets(context.data_dir) if not s.endswith("-dev")]
    if not sets:
        where = context.data_dir or "the shared data folder ($XALIGN_SHARED_DATA)"
        raise FileNotFoundError(f"align: no gold alignment sets found under {where}/align")
    return sets


def _wanted(gold: GoldSet, languages: list[str] | None) -> bool:
    """Whether ``context.languages`` (set names or source languages) selects ``gold``."""
    return languages is None or gold.name in languages or gold.src_lang in languages


# ------------------------------------------------------------------------ the task


class AlignTask(xalign.Task):
    """Word-alignment AER of mutual-argmax or OT-plan links on gold sets (lower is better)."""

    name = "align"
    description = "Word-alignment AER/P/R/F1 on gold sets (mutual argmax or OT-plan links)"
    Config = AlignConfig

    def run(self, model: str, context: TaskContext) -> TaskResult:
        encoder = xalign.load_encoder(model, layer=self.config.layer,
                                      max_length=self.config.max_length)
        encoder.to(context.device).eval()
        return self.evaluate(encoder, context, model=model)

    def load_sets(self, context: TaskContext) -> list[GoldSet]:
        """The configured gold sets, restricted by ``context.languages`` and ``limit``."""
        names = self.config.sets or default_sets(context)
        golds = [load_gold(name, root=context.data_dir) for name in names]
        golds = [limit_gold(g, self.config.limit) for g in golds if _wanted(g, context.languages)]
        if not golds:
            raise ValueError(f"align: no gold set of {names} matches languages "
                             f"{context.languages}")
        return golds

    def evaluate(self, encoder: WordEncoder, context: TaskContext, model: str = "") -> TaskResult:
        """Score an already loaded encoder (anything with ``encode``) on the gold sets."""
        result = TaskResult(self.name, "aer", {}, {}, self._meta(model))
        result.meta["layer"] = getattr(encoder, "layer", None)
        for gold in self.load_sets(context):
            start = time.perf_counter()
            pred = predict_links(encoder, gold, self.config, context.device,
                                 context.show_progress)
            self._add(result, gold, pred, time.perf_counter() - start)
        return result

    def _meta(self, model: str) -> dict[str, Any]:
        return {"model": model, "options": asdict(self.config), "higher_is_better": False,
                "per_example": "per-sentence AER (approximate bootstrap; exact terms in "
                               "sentence_counts)",
                "languages": {}, "pairs": {}, "out_of_range": {}, "sentence_counts": {},
                "seconds": {}}

    @staticmethod
    def _add(result: TaskResult, gold: GoldSet, pred: list[Links], seconds: float) -> None:
        """Record one set's scores, per-sentence AER and provenance."""
        scores = alignment_scores(pred, gold.sure, gold.possible)
        result.scores[gold.name] = {k: float(v) for k, v in scores.items()}
        result.scores[gold.name]["n_sentences"] = float(len(gold))
        matched, total = sentence_counts(pred, gold)
        result.per_example[gold.name] = sentence_aer(matched, total)
        meta = result.meta
        meta["languages"][gold.name] = gold.src_lang
        meta["pairs"][gold.name] = f"{gold.src_lang}-{gold.tgt_lang}"
        meta["out_of_range"][gold.name] = [[n, i, j] for n, (i, j) in gold.out_of_range]
        meta["sentence_counts"][gold.name] = {"matched": matched, "total": total}
        meta["seconds"][gold.name] = round(seconds, 3)


@xalign.hookimpl
def register_tasks(register) -> None:
    register(AlignTask)
