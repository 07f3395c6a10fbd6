"""Word-alignment quality (AER, precision, recall, F1) of an encoder on gold test sets.

Links are extracted without training by :func:`xalign.extract_links` (the same code as
``xalign align``, so the command shows exactly the links scored here), from one layer's word
vectors (SimAlign-style):

- ``method: argmax`` links source word i and English word j when they are each other's most
  cosine-similar word (mutual argmax; Jalili Sabet et al. 2020, "ArgMax").
- ``method: ot`` computes the entropic OT plan π between the two word clouds
  (:func:`xalign.transport_plan`: uniform weights, cost ½‖x−y‖², ε = blur²) and links
  (i, j) when π_ij ≥ ``threshold`` · max(row i) and ≥ ``threshold`` · max(column j);
  ``threshold = 1`` is the mutual argmax of π, lower values admit many-to-many links.

Words without a vector (no subwords, or cut at ``max_length``) are unaligned and keep their
positions; their gold links count as missed. Truncated words are counted per set in
``meta["truncated_words"][set]`` and reported with a :class:`xalign.TruncationWarning`.

Scores are corpus-level (Och & Ney 2003), one entry per gold set, keyed by the set name
(two sets can share a language; the language is in ``TaskResult.languages``). Two path-given sets
whose files have the same name (``v1/deen.src-tgt``, ``v2/deen.src-tgt``) are told apart by
their folders (``v1/deen``, ``v2/deen``); listing one set twice is an error. AER is the main
metric and lower is better (declared in ``AlignTask.metrics``).

``per_example[set]`` holds per-sentence AER (0.0 for a sentence with no predicted and no sure
link); its mean is not the corpus AER. ``counts[set]`` (:class:`xalign.ItemCounts`) holds
per-sentence ``matched`` = |A∩S| + |A∩P| and ``total`` = |A| + |S|, and the ``aer`` metric is
declared with the ``ratio`` aggregation (corpus AER = 1 − Σmatched / Σtotal), so ``compare``
recomputes the corpus AER on every
bootstrap resample of sentences.

``layer: all`` sweeps every hidden state (0 = embeddings .. N = last) in ONE pass over the
data: each batch runs the model once with every hidden state out
(:func:`xalign.encode_words_layers`). Its result has one row per layer (``L0`` .. ``LN``),
one column per gold set plus ``average`` (the main metric: the mean AER over the sets), all
AER; ``meta["layer_sweep"]`` holds the same numbers, the best layer and the plot
(``align_layers.png`` in the run's output folder, also logged to MLflow).
"""

from __future__ import annotations

import dataclasses
import os
import time
import warnings
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

import xalign
from xalign import (
    GOLD_SETS,
    ExtractConfig,
    ExtractError,
    GoldSet,
    Links,
    TaskContext,
    TaskResult,
    TruncationWarning,
    WordEncoder,
    alignment_scores,
    available_gold_sets,
    cosine_similarity,
    encode_words_layers,
    extract_links,
    load_gold,
    mutual_links,
    ot_plan,
)

__all__ = [
    "AlignConfig",
    "AlignTask",
    "AlignTaskError",
    "cosine_similarity",
    "extract_links",
    "mutual_links",
    "ot_plan",
    "predict_links",
    "sentence_aer",
    "unique_set_names",
]


class AlignTaskError(xalign.XalignError, ValueError):
    """Bad ``align`` task options or gold-set selection (the message names the set/option)."""


def _as_list(value: Any) -> list[str] | None:
    """``None``, a list, or a comma-separated string (from the command line) -> list."""
    if value is None or isinstance(value, list):
        return value
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return list(value)


@dataclass
class AlignConfig(ExtractConfig):
    """Options of the ``align`` task: the extraction options of
    :class:`xalign.ExtractConfig` (``method``, ``layer``, ``pooling``, ``max_length``,
    ``blur``, ``threshold``, ``normalize``, ``sinkhorn_iters``, ``scaling``; the same names
    and defaults as ``xalign align``) plus:

    - ``layer``: as in :class:`xalign.ExtractConfig`, or ``all``: AER of every hidden state
      from one pass over the data (the layer sweep).
    - ``sets``: gold set names, paths or mappings (whatever ``load_gold`` accepts); ``None`` =
      every available set except the ``*-dev`` splits. Path-given sets whose names clash are
      named by their folders (``v1/deen``, ``v2/deen``).
    - ``batch_size``: sentences encoded at once (speed and memory only).
    - ``limit``: first N sentence pairs of each gold set; null = all (those N pairs must hold
      some gold link).
    - ``eflomal_row``: ``xalign compare`` adds an ``eflomal`` reference row (see
      :meth:`AlignTask.reference_rows`); no effect on ``xalign eval``.
    """

    sets: list[str | dict[str, Any]] | None = None
    batch_size: int = 32
    limit: int | None = None
    layer: int | str = -1  # type: ignore[assignment]  # ``all``: the layer sweep
    eflomal_row: bool = True

    @property
    def sweep(self) -> bool:
        """Whether ``layer: all`` asks for the per-layer sweep."""
        return self.layer == "all"

    def __post_init__(self) -> None:
        self.sets = _as_list(self.sets)
        if isinstance(self.layer, str) and not self.sweep:
            try:
                self.layer = int(self.layer)
            except ValueError:
                raise AlignTaskError(
                    f"align: layer must be a hidden-state index (-1 = last) or 'all' (the "
                    f"layer sweep), got {self.layer!r}"
                ) from None
        try:
            super().__post_init__()
        except ExtractError as exc:
            raise AlignTaskError(f"align: {exc}") from None
        if self.batch_size < 1:
            raise AlignTaskError(f"align: batch_size must be >= 1, got {self.batch_size}")
        if self.limit is not None and self.limit < 1:
            raise AlignTaskError(
                f"align: limit must be >= 1 (or null: every pair), got {self.limit}"
            )


# ------------------------------------------------------------------------ prediction


def _batches(gold: GoldSet, size: int) -> Iterator[list[int]]:
    """Sentence indices in batches of similar length (less padding), longest first."""
    order = sorted(
        range(len(gold)), key=lambda n: -max(len(gold.src_sents[n]), len(gold.tgt_sents[n]))
    )
    for start in range(0, len(order), size):
        yield order[start : start + size]


@torch.inference_mode()
def predict_links(
    encoder: WordEncoder,
    gold: GoldSet,
    config: ExtractConfig,
    device: str = "cpu",
    progress: bool = False,
    batch_size: int = 32,
) -> tuple[list[Links], list[int]]:
    """Predicted links for every sentence pair of ``gold`` (source = non-English side).

    Returns the links and, per sentence pair, the number of truncated words (both sides).
    """
    pred: list[Links] = [set() for _ in range(len(gold))]
    truncated = [0] * len(gold)
    batches = list(_batches(gold, batch_size))
    for idx in xalign.track(batches, f"align {gold.name}", progress):
        keep = [n for n in idx if gold.src_sents[n] and gold.tgt_sents[n]]
        if not keep:
            continue
        x = xalign.encode_words(
            encoder,
            [gold.src_sents[n] for n in keep],
            gold.src_lang,
            pooling=config.pooling,
            device=device,
        )
        y = xalign.encode_words(
            encoder,
            [gold.tgt_sents[n] for n in keep],
            gold.tgt_lang,
            pooling=config.pooling,
            device=device,
        )
        for b, n in enumerate(keep):
            pred[n] = extract_links(x.vectors[b], x.mask[b], y.vectors[b], y.mask[b], config)
            truncated[n] = len(x.truncated[b]) + len(y.truncated[b])
    return pred, truncated


@torch.inference_mode()
def predict_links_layers(
    encoder: xalign.Encoder,
    gold: GoldSet,
    config: ExtractConfig,
    layers: Sequence[int],
    device: str = "cpu",
    progress: bool = False,
    batch_size: int = 32,
) -> dict[int, list[Links]]:
    """:func:`predict_links` at every hidden-state index of ``layers``, one forward per batch
    and side (truncated words are unaligned as there; the sweep does not count them)."""
    pred: dict[int, list[Links]] = {k: [set() for _ in range(len(gold))] for k in layers}
    for idx in xalign.track(list(_batches(gold, batch_size)), f"align {gold.name}", progress):
        keep = [n for n in idx if gold.src_sents[n] and gold.tgt_sents[n]]
        if not keep:
            continue
        sides = [
            encode_words_layers(
                encoder,
                [sents[n] for n in keep],
                lang,
                layers,
                pooling=config.pooling,
                device=device,
            )
            for sents, lang in ((gold.src_sents, gold.src_lang), (gold.tgt_sents, gold.tgt_lang))
        ]
        for k in layers:
            x, y = sides[0][k], sides[1][k]
            for b, n in enumerate(keep):
                pred[k][n] = extract_links(x.vectors[b], x.mask[b], y.vectors[b], y.mask[b], config)
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
    if not any(gold.possible[:limit]):
        raise AlignTaskError(
            f"align: {gold.name}: its first {limit} sentence pair(s) (limit) have no gold "
            f"links: AER would be 1 whatever the aligner does; raise limit"
        )
    return GoldSet(
        gold.name,
        gold.src_lang,
        gold.tgt_lang,
        gold.src_sents[:limit],
        gold.tgt_sents[:limit],
        gold.sure[:limit],
        gold.possible[:limit],
        [(n, link) for n, link in gold.out_of_range if n < limit],
    )


def default_sets(context: TaskContext) -> list[str]:
    """Available gold test sets (``*-dev`` splits excluded)."""
    sets = [s for s in available_gold_sets(context.data_dir) if not s.endswith("-dev")]
    if not sets:
        where = context.data_dir or "the shared data folder ($XALIGN_SHARED_DATA)"
        raise AlignTaskError(f"align: no gold alignment sets found under {where}/align")
    return sets


def _entry_path(entry: Any) -> Path | None:
    """The file or folder a ``sets`` entry was loaded from; None when it fixes its own name
    (a known set name, or a mapping with ``name``)."""
    if isinstance(entry, Mapping):
        if entry.get("name"):
            return None
        where = next(
            (entry[k] for k in ("path", "text_file", "src_file", "links_file") if entry.get(k)),
            None,
        )
        return None if where is None else Path(str(where)).expanduser().resolve()
    if isinstance(entry, str) and entry in GOLD_SETS:
        return None
    return Path(str(entry)).expanduser().resolve()


def unique_set_names(entries: Sequence[Any], golds: Sequence[GoldSet]) -> list[GoldSet]:
    """``golds`` (loaded from ``entries``, in order) with names made unique.

    Sets given by path whose derived names clash (``v1/deen.src-tgt`` and
    ``v2/deen.src-tgt`` are both ``deen``) are prefixed with their folders relative to the
    folders' common ancestor (``v1/deen``, ``v2/deen``); known set names and mappings with a
    ``name`` keep their names. Raises :class:`AlignTaskError` when a set is listed twice (same
    name, or paths to the same files).
    """
    groups: dict[str, list[int]] = defaultdict(list)
    for k, gold in enumerate(golds):
        groups[gold.name].append(k)
    out = list(golds)
    for name, members in groups.items():
        if len(members) < 2:
            continue
        where = {k: _entry_path(entries[k]) for k in members}
        paths = {k: path for k, path in where.items() if path is not None}
        if len(members) - len(paths) > 1 or len(set(paths.values())) < len(paths):
            listed = ", ".join(repr(str(entries[k])) for k in members)
            raise AlignTaskError(
                f"align: gold set {name!r} is listed more than once in sets ({listed})"
            )
        parents = {k: p.parent for k, p in paths.items()}
        common = Path(os.path.commonpath([str(p) for p in parents.values()]))
        for k, parent in parents.items():
            prefix = parent.relative_to(common).as_posix()
            prefix = parent.name if prefix in ("", ".") else prefix
            out[k] = dataclasses.replace(golds[k], name=f"{prefix}/{name}")
    names = [g.name for g in out]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise AlignTaskError(
            f"align: gold sets {clash} are listed more than once in sets "
            f"(the same files under different paths?): {list(entries)}"
        )
    return out


def _wanted_by(golds: list[GoldSet], lang: str) -> bool:
    """Whether ``lang`` (a set name or a source language) selects any of ``golds``."""
    return any(_wanted(g, [lang]) for g in golds)


def _wanted(gold: GoldSet, languages: list[str] | None) -> bool:
    """Whether ``context.languages`` (set names or source languages) selects ``gold``; a
    language selects by primary language (``de-DE`` and ``de_DE`` select ``bicici-deen``)."""
    if languages is None or gold.name in languages:
        return True
    source = _primary(gold.src_lang)
    return source is not None and any(_primary(lang) == source for lang in languages)


def _primary(code: str) -> str | None:
    """:func:`xalign.primary_language` of ``code``; None for a set name (``bicici-deen``)."""
    try:
        return xalign.primary_language(code)
    except ValueError:
        return None


# ------------------------------------------------------------------------ the task


class AlignTask(xalign.Task):
    """Word-alignment AER of mutual-argmax or OT-plan links on gold sets (lower is better)."""

    name = "align"
    description = "Word-alignment AER/P/R/F1 on gold sets (mutual argmax or OT-plan links)"
    Config = AlignConfig
    data_folders = ("align",)  # gold sets; path-valued `sets` count too (Task.inputs)
    uses_seed = False  # no training, no sampling: one evaluation serves every seed
    result_version = "3"  # 3: typed counts/languages/metrics (2: meta keys)
    #: AER = 1 - (|A∩S| + |A∩P|) / (|A| + |S|) (Och & Ney 2003, eq. 11): compare recomputes it
    #: from the per-sentence counts; precision/recall/F1 against the sure and possible links.
    metrics = (
        xalign.Metric("aer", higher_is_better=False, aggregation="ratio", offset=1.0, scale=-1.0),
        xalign.Metric("precision", higher_is_better=True),
        xalign.Metric("recall", higher_is_better=True),
        xalign.Metric("f1", higher_is_better=True),
    )

    def run(self, model: str, context: TaskContext) -> TaskResult:
        layer = -1 if self.config.sweep else int(self.config.layer)
        encoder = xalign.load_encoder(model, layer=layer, max_length=self.config.max_length)
        encoder.to(context.device).eval()
        if self.config.sweep:
            return self.sweep(encoder, context, model=model)
        return self.evaluate(encoder, context, model=model)

    def sweep(self, encoder: xalign.Encoder, context: TaskContext, model: str = "") -> TaskResult:
        """AER of every hidden state (0 = embeddings .. N) on the gold sets, one pass.

        Rows ``L0`` .. ``LN``, columns the gold sets and ``average`` (the main metric);
        writes the line plot ``align_layers.png`` to ``context.output_dir``.
        """
        from xalign_align_eval.sweep import plot_sweep

        layers = list(range(encoder.model.config.num_hidden_layers + 1))
        aer: dict[str, list[float]] = {}
        for gold in self.load_sets(context):
            pred = predict_links_layers(
                encoder,
                gold,
                self.config,
                layers,
                context.device,
                context.show_progress,
                self.config.batch_size,
            )
            aer[gold.name] = [
                float(alignment_scores(pred[k], gold.sure, gold.possible)["aer"]) for k in layers
            ]
        average = [sum(v[k] for v in aer.values()) / len(aer) for k in layers]
        scores = {
            f"L{k}": {**{name: v[k] for name, v in aer.items()}, "average": average[k]}
            for k in layers
        }
        best = min(layers, key=lambda k: average[k])
        plot = Path(context.output_dir) / "align_layers.png"
        plot_sweep(
            layers,
            aer,
            average,
            plot,
            title=f"{model or encoder.name}: align AER per layer ({self.config.method})",
        )
        meta = {
            "model": model,
            "options": asdict(self.config),
            "higher_is_better": False,
            "layer_sweep": {"layers": layers, "aer": aer, "average": average, "best": best},
            "artifacts": [str(plot)],
        }
        declared = (xalign.Metric("average", higher_is_better=False),)  # mean AER of the sets
        return TaskResult(self.name, "average", scores, {}, meta, metrics=declared)

    def reference_rows(self, context: TaskContext, data: Any) -> dict[str, TaskResult]:
        """``xalign compare``'s reference row ``eflomal``: eflomal (the classical aligner the
        objectives take their training links from) on each gold set's own sentence pairs,
        aligned together with the training corpus ``data.corpus`` of that language pair (when
        ``data.languages`` has the set's source language and ``data.target`` is its target;
        first ``data.limit`` pairs), symmetrised with grow-diag-final-and and scored like the
        models (corpus AER, per-sentence counts, so compare tests it against base).

        eflomal has no seed: the links come from xalign's eflomal cache, keyed by both corpora,
        the settings and eflomal's version, so a comparison on the same data always shows the
        same row; ``meta["reference"][set]`` records the cache entry and whether this call
        computed it (``from_cache``). Empty (no row) with ``eflomal_row: false`` or a sweep.
        """
        if not self.config.eflomal_row or self.config.sweep:
            return {}
        result = TaskResult(self.name, "aer", {}, {}, self._meta("eflomal"))
        result.meta["reference"] = {}
        languages = set(getattr(data, "languages", None) or [])
        for gold in self.load_sets(context):
            start = time.perf_counter()
            extra: tuple[list[list[str]], list[list[str]]] = ([], [])
            if gold.src_lang in languages and gold.tgt_lang == getattr(data, "target", None):
                extra = xalign.corpus_words(
                    data.corpus,
                    gold.src_lang,
                    gold.tgt_lang,
                    limit=getattr(data, "limit", None),
                    unescape=getattr(data, "unescape", True),
                )
            ref = xalign.eflomal_reference_links(gold.src_sents, gold.tgt_sents, *extra)
            self._add(result, gold, ref.links, time.perf_counter() - start)
            result.meta["truncated_words"][gold.name] = 0
            result.meta["reference"][gold.name] = {
                "aligner": "eflomal",
                "extra_pairs": ref.extra_pairs,
                "symmetrization": ref.symmetrization,
                "cache_key": ref.cache_key,
                "from_cache": ref.from_cache,
            }
        return {"eflomal": result}

    def load_sets(self, context: TaskContext) -> list[GoldSet]:
        """The configured gold sets, restricted by ``context.languages`` and ``limit``."""
        names = self.config.sets or default_sets(context)
        golds = unique_set_names(names, [load_gold(name, root=context.data_dir) for name in names])
        unmatched = [lang for lang in context.languages or [] if not _wanted_by(golds, lang)]
        if unmatched:  # --languages de,xx: say so rather than drop xx silently
            available = sorted({g.src_lang for g in golds} | {g.name for g in golds})
            raise AlignTaskError(
                f"align: no gold set of {names} matches languages {','.join(unmatched)} "
                f"(--languages names a source language or a gold set: {', '.join(available)})"
            )
        return [limit_gold(g, self.config.limit) for g in golds if _wanted(g, context.languages)]

    def evaluate(self, encoder: WordEncoder, context: TaskContext, model: str = "") -> TaskResult:
        """Score an already loaded encoder (anything with ``encode``) on the gold sets."""
        result = TaskResult(self.name, "aer", {}, {}, self._meta(model))
        result.meta["layer"] = getattr(encoder, "layer", None)
        limit = getattr(encoder, "max_length", self.config.max_length)
        for gold in self.load_sets(context):
            start = time.perf_counter()
            pred, truncated = predict_links(
                encoder,
                gold,
                self.config,
                context.device,
                context.show_progress,
                self.config.batch_size,
            )
            self._add(result, gold, pred, time.perf_counter() - start)
            result.meta["truncated_words"][gold.name] = sum(truncated)
            if sum(truncated):
                pairs = sum(1 for t in truncated if t)
                warnings.warn(
                    f"align: {gold.name}: {sum(truncated)} words in {pairs} sentence "
                    f"pair(s) are past the model's {limit}-subword limit and were "
                    f"left unaligned (their gold links count as missed); raise "
                    f"max_length if the model allows",
                    TruncationWarning,
                    stacklevel=2,
                )
        return result

    def _meta(self, model: str) -> dict[str, Any]:
        return {
            "model": model,
            "options": asdict(self.config),
            "per_example": "per-sentence AER (its mean is not the corpus AER; compare "
            "tests the corpus AER from counts)",
            "pairs": {},
            "out_of_range": {},
            "truncated_words": {},
            "seconds": {},
        }

    @staticmethod
    def _add(result: TaskResult, gold: GoldSet, pred: list[Links], seconds: float) -> None:
        """Record one set's scores, per-sentence AER and provenance."""
        scores = alignment_scores(pred, gold.sure, gold.possible)
        result.scores[gold.name] = {k: float(v) for k, v in scores.items()}
        result.scores[gold.name]["n_sentences"] = float(len(gold))
        matched, total = sentence_counts(pred, gold)
        result.per_example[gold.name] = sentence_aer(matched, total)
        result.counts[gold.name] = xalign.ItemCounts(matched, total)
        result.languages[gold.name] = gold.src_lang
        meta = result.meta
        meta["pairs"][gold.name] = f"{gold.src_lang}-{gold.tgt_lang}"
        meta["out_of_range"][gold.name] = [[n, i, j] for n, (i, j) in gold.out_of_range]
        meta["seconds"][gold.name] = round(seconds, 3)


@xalign.hookimpl
def register_tasks(register) -> None:
    register(AlignTask)
