"""BUCC 2018 bitext mining (XTREME protocol): F1 of margin-mined parallel sentence pairs.

For each language xx ∈ {de, fr, ru, zh} the task embeds every xx and English sentence of a
split (mean of one layer's token states, including the special tokens as XTREME's
``evaluate_retrieval.py`` does; ``pooling: cls`` takes the first token, the setting of
XTREME's ``run_bucc2018.sh``), mines candidate pairs with the ratio margin (k = 4) and
``max`` retrieval (forward and backward candidates, kept one-to-one by decreasing margin:
see :mod:`xalign_bucc.mining`), and keeps candidates whose margin is at least a threshold.

``split`` is the split scored: ``test`` (default; BUCC "training", whose gold is public) or
``dev`` (BUCC "sample": the small files, for a quick look, when the test split is not at
hand, or to tune settings without touching test). ``threshold`` says how the threshold is
set; a threshold that maximises F1 on the gold of the scored split itself is an *oracle*
(an upper bound, not a held-out score) and ``meta["threshold"]["oracle"]`` says so:

- ``threshold: dev`` (default): F1-optimal on the dev split, applied to the test split — no
  test gold is used. With ``split: dev`` it would be the oracle and is refused (pass
  ``oracle`` to ask for that);
- ``threshold: test``: F1-optimal on the test split: with ``split: test`` the oracle XTREME's
  ``bucc_eval`` computes when given a gold file; with ``split: dev`` chosen on test and
  applied to dev (not an oracle, but it reads the test gold);
- ``threshold: oracle``: F1-optimal on the scored split (= ``test`` with ``split: test``);
- a number: that threshold, fixed; only the scored split is read.

Sentences are deduplicated before embedding (XTREME's ``text_load_unify``); a sentence text
that occurs under several ids cannot be mapped back to one id and its candidates are dropped
(XTREME's ``read_sent2id``; counted in ``scores[xx]["ambiguous_candidates"]``).

Scores per language (keyed by the language code, as compare needs): ``f1`` (main metric),
``precision``, ``recall`` (percent), ``threshold``, ``{split}_f1`` (the F1 on the split where
the threshold was chosen: ``dev_f1``, or ``test_f1``), counts. ``per_example[xx]`` has one
value per xx sentence of the scored pool (file order): ``100·N·matched_s / Σ total`` with
matched_s = 2·|predicted ∩ gold| and total_s = |predicted| + |gold| for pairs of that
sentence, so its mean is exactly F1; a bootstrap over it would hold each model's
denominator fixed. The exact terms are in ``counts`` and the ``f1`` metric is declared with
the ``ratio`` aggregation (F1 = 100·Σmatched / Σtotal), which ``compare`` recomputes
on every resample of sentences.
"""

from __future__ import annotations

import math
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
SPLITS = ("test", "dev")  # XTREME's names of BUCC 2018's "training" and "sample" files
THRESHOLDS = ("dev", "test", "oracle")


def _as_list(value: Any) -> list[str]:
    """A list, or a comma-separated string (from the command line) -> list."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return list(value)


def _fixed_threshold(value: Any) -> float:
    """A number ``threshold`` as a finite float (NaN or infinity would keep no pair, or every
    pair, with no error; ``true`` is not a number)."""
    number = None
    if not isinstance(value, bool):
        try:
            number = float(value)
        except (TypeError, ValueError):
            pass
    if number is None or not math.isfinite(number):
        finite = "" if number is None else " (a finite one: NaN or infinity keeps no pair or all)"
        raise ValueError(
            f"bucc: threshold must be 'dev', 'test', 'oracle' or a number, got {value!r}{finite}"
        )
    return number


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
    - ``split``: the split scored: ``test`` (BUCC "training" files) or ``dev`` (BUCC
      "sample"); only its files (and those of the split the threshold is chosen on) are read.
    - ``threshold``: minimum margin of a kept pair: ``dev`` (F1-optimal on the dev split;
      refused with ``split: dev``), ``test`` (F1-optimal on the test split), ``oracle``
      (F1-optimal on the scored split: an upper bound, flagged in the result's meta) or a
      number (fixed).
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
    split: str = "test"
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
        if self.split not in SPLITS:
            raise ValueError(
                f"bucc: split must be 'test' or 'dev' (XTREME's names of BUCC's 'training' "
                f"and 'sample' files), got {self.split!r}"
            )
        if self.threshold not in THRESHOLDS:
            self.threshold = _fixed_threshold(self.threshold)
        if self.split == "dev" and self.threshold == "dev":
            raise ValueError(
                "bucc: split: dev with threshold: dev (the default) would choose the threshold "
                "on the gold of the split it scores, an oracle rather than a held-out choice; "
                "pass threshold: oracle to report that upper bound as such, threshold: NUMBER "
                "to fix it, or threshold: test to choose it on the test split"
            )
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
    """BUCC 2018 bitext mining F1 (%) with margin scoring over mean-pooled vectors, on the
    test split or (``split: dev``) the dev split."""

    name = "bucc"
    description = "BUCC 2018 bitext mining F1 (XTREME protocol: ratio margin k=4, max retrieval)"
    Config = BuccConfig
    uses_seed = False  # no training, no sampling: one evaluation serves every seed
    #: 4: meta "split"/"threshold"; 3: typed counts/metrics (2: meta keys), compare tests
    #: corpus F1
    result_version = "4"
    #: F1 = 100·2|P∩G| / (|P| + |G|) over the pooled pairs: compare recomputes it from the
    #: per-sentence counts; precision/recall (%) beside it.
    metrics = (
        xalign.Metric("f1", higher_is_better=True, aggregation="ratio", offset=0.0, scale=100.0),
        xalign.Metric("precision", higher_is_better=True),
        xalign.Metric("recall", higher_is_better=True),
    )

    def chosen_on(self) -> str | None:
        """The split whose gold sets the threshold (None for a number): ``oracle`` is the
        scored split itself."""
        setting = self.config.threshold
        if not isinstance(setting, str):
            return None
        return self.config.split if setting == "oracle" else setting

    def oracle(self) -> bool:
        """Whether the threshold is F1-optimal on the gold of the scored split."""
        return self.chosen_on() == self.config.split

    def inputs(self, context: TaskContext) -> list[Path]:
        """The local BUCC files a run reads (for the evaluation's reuse key): per language the
        scored split's three files, and those of the split the threshold is chosen on."""
        splits = {self.config.split, self.chosen_on() or self.config.split}
        files: list[Path] = []
        for lang in context.languages or self.config.languages:
            for split in sorted(splits):
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
        scored_split: BuccData,
        scored: dict[tuple[str, str], float],
    ) -> tuple[float, float | None, str]:
        """(threshold, F1 on the split where it was chosen or None, that split's source)."""
        on = self.chosen_on()
        if on is None:
            return float(self.config.threshold), None, ""
        if self.oracle():  # F1-optimal on the scored split's own gold
            th, f1 = optimise_threshold(scored, scored_split.gold)
            return th, f1, scored_split.source
        other = _with_gold(load_bucc(lang, on, context.data_dir), self.config.limit)
        candidates, _ = mine_split(
            encoder, other, self.config, context.device, context.show_progress
        )
        th, f1 = optimise_threshold(candidates, other.gold)
        if f1 <= 0.0:  # every threshold scores 0: "keep all" would be an arbitrary pick
            raise xalign.GoldFormatError(
                f"bucc: {lang} {on}: none of the {len(candidates)} mined candidates is a gold "
                f"pair at any threshold ({other.source}; {len(other.gold)} gold pairs), so "
                f"the threshold cannot be chosen on {on}: check that the {on} gold file "
                f"matches its sentence files, or pass threshold: NUMBER"
            )
        return th, f1, other.source

    def _language(
        self, result: TaskResult, encoder: xalign.Encoder, lang: str, context: TaskContext
    ) -> None:
        split = self.config.split
        data = _with_gold(load_bucc(lang, split, context.data_dir), self.config.limit)
        scored, ambiguous = mine_split(
            encoder, data, self.config, context.device, context.show_progress
        )
        threshold, chosen_f1, chosen_from = self._threshold(encoder, lang, context, data, scored)
        predicted = {pair for pair, score in scored.items() if score >= threshold}
        scores = prf(predicted, data.gold)
        scores.update(
            {
                "threshold": threshold,
                "n_candidates": float(len(scored)),
                "ambiguous_candidates": float(ambiguous),
                "n_src": float(len(data.src)),
                "n_en": float(len(data.eng)),
            }
        )
        if chosen_f1 is not None:
            scores[f"{self.chosen_on()}_f1"] = chosen_f1
        result.scores[lang] = scores
        units = [ident for ident, _ in data.src]
        matched, total = source_counts(units, predicted, data.gold)
        denom = sum(total)
        result.per_example[lang] = [
            100.0 * len(units) * m / denom if denom else 0.0 for m in matched
        ]
        result.counts[lang] = xalign.ItemCounts(matched, total)
        result.meta["data"][lang] = {
            split: data.source,
            "threshold_from": chosen_from or "option",
            "notes": data.notes,
            "gold_outside_limit": data.dropped_gold,
        }

    def _threshold_meta(self) -> dict[str, Any]:
        """How the threshold was set, in words and flags (``result.meta["threshold"]``)."""
        split, on = self.config.split, self.chosen_on()
        if on is None:
            how = f"fixed at {self.config.threshold} (option threshold)"
        elif self.oracle():
            how = (
                f"F1-optimal on the {split} gold, the split scored: an oracle upper bound, "
                "not a held-out score"
            )
        else:
            how = f"F1-optimal on the {on} split, applied to the {split} split"
        return {
            "setting": self.config.threshold,
            "chosen_on": on,
            "oracle": self.oracle(),
            "how": how,
        }

    def _meta(self, model: str, encoder: xalign.Encoder) -> dict[str, Any]:
        return {
            "model": model,
            "options": asdict(self.config),
            "layer": encoder.layer,
            "split": self.config.split,
            "threshold": self._threshold_meta(),
            "per_example": (
                f"per xx sentence of the {self.config.split} pool: 100*N*matched/sum(total) "
                "(mean = F1; exact terms in counts)"
            ),
            "data": {},
            "seconds": {},
        }


@xalign.hookimpl
def register_tasks(register) -> None:
    register(BuccTask)
