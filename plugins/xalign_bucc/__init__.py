"""BUCC 2018 bitext mining (XTREME protocol): F1 of margin-mined parallel sentence pairs.

For each language xx ∈ {de, fr, ru, zh} the task embeds every xx and English sentence of a
split (mean of one layer's token states, including the special tokens as XTREME's
``evaluate_retrieval.py`` does; ``pooling: cls`` takes the first token, the setting of
XTREME's ``run_bucc2018.sh``), mines candidate pairs with the ratio margin (k = 4) and
``max`` retrieval (forward and backward candidates, kept one-to-one by decreasing margin:
see :mod:`xalign_bucc.mining`), and keeps candidates whose margin is at least a threshold:

- ``threshold: dev`` (default): the threshold maximising F1 on the dev split (BUCC
  "sample"), applied to the test split (BUCC "training" with gold) — no test gold is used;
- ``threshold: test``: the F1-optimal threshold on the test gold itself (what XTREME's
  ``bucc_eval`` computes when given a gold file; an oracle upper bound);
- a number: that threshold, and no dev split is read.

Sentences are deduplicated before embedding (XTREME's ``text_load_unify``); a sentence text
that occurs under several ids cannot be mapped back to one id and its candidates are dropped
(XTREME's ``read_sent2id``; counted in ``scores[xx]["ambiguous_candidates"]``).

Scores per language (keyed by the language code, as compare needs): ``f1`` (main metric),
``precision``, ``recall`` (percent), ``threshold``, ``dev_f1``, counts. ``per_example[xx]`` has
one value per xx sentence of the test pool (file order): ``100·N·matched_s / Σ total`` with
matched_s = 2·|predicted ∩ gold| and total_s = |predicted| + |gold| for pairs of that
sentence, so its mean is exactly F1; a bootstrap over it would hold each model's
denominator fixed. The exact terms are in ``counts`` and the ``f1`` metric is declared with
the ``ratio`` aggregation (F1 = 100·Σmatched / Σtotal), which ``compare`` recomputes
on every resample of sentences.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

import xalign
from xalign import TaskContext, TaskResult
from xalign_bucc.data import BuccData, find_local, load_bucc
from xalign_bucc.mining import RETRIEVALS, mine, optimise_threshold, prf, source_counts

LANGUAGES = ("de", "fr", "ru", "zh")
POOLINGS = ("mean", "cls")


def _as_list(value: Any) -> list[str]:
    """A list, or a comma-separated string (from the command line) -> list."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return list(value)


@dataclass
class BuccConfig:
    """Options of the ``bucc`` task (the protocol: module docstring).

    - ``languages``: xx of the xx-en pairs (BUCC 2018: de, fr, ru, zh); ``xalign eval
      --languages`` evaluates a subset of them.
    - ``layer``: hidden-state index (``-1`` = last; XTREME uses ``hidden_states[8]`` of
      12-layer models).
    - ``pooling``: sentence vector: ``mean`` (masked mean of the token states) or ``cls``
      (the first token; XTREME's ``run_bucc2018.sh``).
    - ``pool_special_tokens``: with ``mean``, include CLS/SEP in the mean (XTREME's
      ``evaluate_retrieval.py``); false drops them.
    - ``k``: nearest neighbours in the ratio margin (Artetxe & Schwenk 2019, eq. 2-3;
      capped at the pool size).
    - ``retrieval``: candidate pairs: ``max`` (forward and backward, one-to-one; XTREME),
      ``forward``, ``backward`` or ``intersect``.
    - ``threshold``: minimum margin of a kept pair: ``dev`` (F1-optimal on the dev split),
      ``test`` (F1-optimal on the test gold: an oracle) or a number.
    - ``limit``: first N sentences of each pool (and the gold pairs inside them); null = all.
    - ``batch_size``: sentences per encoder forward pass (speed and memory only).
    - ``max_length``: subwords per sentence (longer ones are cut; capped at the model's limit).
    """

    languages: list[str] = field(default_factory=lambda: list(LANGUAGES))
    layer: int = -1
    pooling: str = "mean"
    pool_special_tokens: bool = True
    k: int = 4
    retrieval: str = "max"
    threshold: Any = "dev"
    limit: int | None = None
    batch_size: int = 32
    max_length: int = 512

    def __post_init__(self) -> None:
        self.languages = _as_list(self.languages)
        for lang in self.languages:  # refused now, naming the option, not after the model loads
            xalign.primary_language(lang, where="bucc: languages")
        if self.pooling not in POOLINGS:
            raise ValueError(f"bucc: pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.retrieval not in RETRIEVALS:
            raise ValueError(f"bucc: retrieval must be one of {RETRIEVALS}, got {self.retrieval!r}")
        if self.threshold not in ("dev", "test"):
            try:
                self.threshold = float(self.threshold)
            except (TypeError, ValueError):
                raise ValueError(
                    f"bucc: threshold must be 'dev', 'test' or a number, got {self.threshold!r}"
                ) from None
        if self.k < 1 or self.batch_size < 1 or (self.limit is not None and self.limit < 1):
            raise ValueError("bucc: need k >= 1, batch_size >= 1 and limit >= 1")


# ------------------------------------------------------------------------ embedding


@torch.inference_mode()
def embed(
    encoder: xalign.Encoder,
    texts: list[str],
    config: BuccConfig,
    device: str = "cpu",
    progress: str | None = None,
) -> Tensor:
    """Sentence vectors ``[N, H]`` (float32, CPU), encoded in length-sorted batches."""
    order = sorted(range(len(texts)), key=lambda n: -len(texts[n]))
    out = torch.zeros(len(texts), encoder.hidden_size)
    batches = [order[s : s + config.batch_size] for s in range(0, len(order), config.batch_size)]
    for idx in xalign.track(batches, progress or "bucc", progress is not None):
        enc = encoder.tokenizer(
            [texts[n] for n in idx],
            padding=True,
            truncation=True,
            max_length=encoder.max_length,
            return_tensors="pt",
            return_special_tokens_mask=True,
        )
        hidden = encoder(enc["input_ids"].to(device), enc["attention_mask"].to(device)).float()
        if config.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = enc["attention_mask"]
            if not config.pool_special_tokens:
                mask = mask * (1 - enc["special_tokens_mask"])
            weights = mask.to(device).unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        out[idx] = pooled.cpu()
    return out


def _unique(rows: list[tuple[str, str]]) -> tuple[list[str], list[str | None]]:
    """Unique texts (first-seen order) and, per text, its id (None if several ids share it)."""
    ids: dict[str, list[str]] = {}
    for ident, text in rows:
        ids.setdefault(text, []).append(ident)
    texts = list(ids)
    return texts, [v[0] if len(v) == 1 else None for v in ids.values()]


def mine_split(
    encoder: xalign.Encoder, data: BuccData, config: BuccConfig, device: str, progress: bool
) -> tuple[dict[tuple[str, str], float], int]:
    """Candidate id pairs with their margins, and the number dropped as ambiguous."""
    src_texts, src_ids = _unique(data.src)
    eng_texts, eng_ids = _unique(data.eng)
    tag = f"bucc {data.lang} {data.split}"
    x = embed(encoder, src_texts, config, device, f"{tag} {data.lang}" if progress else None)
    y = embed(encoder, eng_texts, config, device, f"{tag} en" if progress else None)
    scored: dict[tuple[str, str], float] = {}
    ambiguous = 0
    for cand in mine(x, y, config.k, config.retrieval):
        sid, eid = src_ids[cand.src], eng_ids[cand.tgt]
        if sid is None or eid is None:
            ambiguous += 1
            continue
        scored[(sid, eid)] = max(cand.score, scored.get((sid, eid), cand.score))
    return scored, ambiguous


# ------------------------------------------------------------------------ the task


def _with_gold(data: BuccData, limit: int | None) -> BuccData:
    """``data`` limited to ``limit`` sentences per pool; a split without gold pairs is an error
    (its F1 or threshold would be meaningless), naming the split and why."""
    limited = data.limited(limit)
    if not limited.gold:
        why = (
            f"the first {limit} sentences of each pool (limit) hold none of its "
            f"{len(data.gold)} gold pairs"
            if data.gold
            else "its gold file has no pairs"
        )
        raise xalign.GoldFormatError(f"bucc: {data.lang} {data.split} ({data.source}): {why}")
    return limited


class BuccTask(xalign.Task):
    """BUCC 2018 bitext mining F1 (%) with margin scoring over mean-pooled vectors."""

    name = "bucc"
    description = "BUCC 2018 bitext mining F1 (XTREME protocol: ratio margin k=4, max retrieval)"
    Config = BuccConfig
    uses_seed = False  # no training, no sampling: one evaluation serves every seed
    result_version = "3"  # 3: typed counts/metrics (2: meta keys), compare tests corpus F1
    #: F1 = 100·2|P∩G| / (|P| + |G|) over the pooled pairs: compare recomputes it from the
    #: per-sentence counts; precision/recall (%) beside it.
    metrics = (
        xalign.Metric("f1", higher_is_better=True, aggregation="ratio", offset=0.0, scale=100.0),
        xalign.Metric("precision", higher_is_better=True),
        xalign.Metric("recall", higher_is_better=True),
    )

    def inputs(self, context: TaskContext) -> list[Path]:
        """The local BUCC files a run reads (for the evaluation's reuse key): per language the
        test split's three files, and the dev split's when the threshold is chosen on it."""
        splits = ("test", "dev") if self.config.threshold == "dev" else ("test",)
        files: list[Path] = []
        for lang in context.languages or self.config.languages:
            for split in splits:
                found, _ = find_local(lang, split, context.data_dir)
                files.extend(path for path in found or () if path.is_file())
        return sorted(files)

    def run(self, model: str, context: TaskContext) -> TaskResult:
        encoder = xalign.load_encoder(
            model, layer=self.config.layer, max_length=self.config.max_length
        )
        encoder.to(context.device).eval()
        return self.evaluate(encoder, context, model=model)

    def evaluate(
        self, encoder: xalign.Encoder, context: TaskContext, model: str = ""
    ) -> TaskResult:
        """Score an already loaded encoder on every configured language."""
        result = TaskResult(self.name, "f1", {}, {}, self._meta(model, encoder))
        for lang in context.languages or self.config.languages:
            start = time.perf_counter()
            self._language(result, encoder, lang, context)
            result.meta["seconds"][lang] = round(time.perf_counter() - start, 3)
        return result

    def _threshold(
        self,
        encoder: xalign.Encoder,
        lang: str,
        context: TaskContext,
        test: BuccData,
        test_scored: dict[tuple[str, str], float],
    ) -> tuple[float, float | None, str]:
        """(threshold, F1 where it was chosen or None, data source of that split)."""
        setting = self.config.threshold
        if setting == "test":
            th, f1 = optimise_threshold(test_scored, test.gold)
            return th, f1, test.source
        if setting == "dev":
            dev = _with_gold(load_bucc(lang, "dev", context.data_dir), self.config.limit)
            scored, _ = mine_split(encoder, dev, self.config, context.device, context.show_progress)
            th, f1 = optimise_threshold(scored, dev.gold)
            if f1 <= 0.0:  # every threshold scores 0: "keep all" would be an arbitrary pick
                raise xalign.GoldFormatError(
                    f"bucc: {lang} dev: none of the {len(scored)} mined candidates is a gold "
                    f"pair at any threshold ({dev.source}; {len(dev.gold)} gold pairs), so "
                    f"the threshold cannot be chosen on dev: check that the dev gold file "
                    f"matches its sentence files, or pass threshold: NUMBER"
                )
            return th, f1, dev.source
        return float(setting), None, ""

    def _language(
        self, result: TaskResult, encoder: xalign.Encoder, lang: str, context: TaskContext
    ) -> None:
        test = _with_gold(load_bucc(lang, "test", context.data_dir), self.config.limit)
        scored, ambiguous = mine_split(
            encoder, test, self.config, context.device, context.show_progress
        )
        threshold, chosen_f1, chosen_on = self._threshold(encoder, lang, context, test, scored)
        predicted = {pair for pair, score in scored.items() if score >= threshold}
        scores = prf(predicted, test.gold)
        scores.update(
            {
                "threshold": threshold,
                "n_candidates": float(len(scored)),
                "ambiguous_candidates": float(ambiguous),
                "n_src": float(len(test.src)),
                "n_en": float(len(test.eng)),
            }
        )
        if chosen_f1 is not None:
            scores[f"{self.config.threshold}_f1"] = chosen_f1
        result.scores[lang] = scores
        units = [ident for ident, _ in test.src]
        matched, total = source_counts(units, predicted, test.gold)
        denom = sum(total)
        result.per_example[lang] = [
            100.0 * len(units) * m / denom if denom else 0.0 for m in matched
        ]
        result.counts[lang] = xalign.ItemCounts(matched, total)
        result.meta["data"][lang] = {
            "test": test.source,
            "threshold_from": chosen_on or "option",
            "notes": test.notes,
            "gold_outside_limit": test.dropped_gold,
        }

    def _meta(self, model: str, encoder: xalign.Encoder) -> dict[str, Any]:
        return {
            "model": model,
            "options": asdict(self.config),
            "layer": encoder.layer,
            "per_example": (
                "per xx sentence of the test pool: 100*N*matched/sum(total) (mean = F1; "
                "exact terms in counts)"
            ),
            "data": {},
            "seconds": {},
        }


@xalign.hookimpl
def register_tasks(register) -> None:
    register(BuccTask)
