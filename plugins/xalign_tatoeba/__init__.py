"""Tatoeba sentence retrieval (XTREME protocol): top-1 accuracy of cosine nearest neighbours.

Each sentence is embedded as the mean of one layer's token states, weighted by the attention
mask — as XTREME's ``evaluate_retrieval.py``, that includes the special tokens (CLS/SEP,
<s>/</s>) unless ``pool_special_tokens: false`` (XTREME's ``--pool_skip_special_token``).
Every sentence of language xx queries all English sentences of its test file (1000 pairs per
language; gold = the same line) and is correct when its cosine nearest neighbour is the gold
(ties go to the first line). ``directions`` adds en→xx (or uses only it).

Layers: XTREME takes ``--specific_layer 7`` of the 12 transformer layers (0-based, embeddings
excluded), i.e. ``hidden_states[8]`` here, for mBERT / XLM-R base. The default here is the
last layer (``-1``), the layer that the alignment objectives tune; set ``layer: 8`` for the
XTREME number.

Accuracy is in percent; ``per_example[lang]`` is 1.0/0.0 per query (xx→en queries first,
then en→xx ones with ``directions: both``).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

import xalign
from xalign import TaskContext, TaskResult
from xalign import mean_pool as mean_pool  # the pooling of `embed` (re-exported)
from xalign_tatoeba.data import load_tatoeba, tatoeba_code

SEEN_LANGUAGES = ("bg", "de", "el", "es", "fr")
DIRECTIONS = ("xx-en", "en-xx", "both")


def _as_list(value: Any) -> list[str]:
    """A list, or a comma-separated string (from the command line) -> list."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return list(value)


@dataclass
class TatoebaConfig:
    """Options of the ``tatoeba`` task.

    - ``languages``: ISO 639-1 codes of the 36 XTREME languages or ISO 639-3 codes of any of
      the 112 Tatoeba files; ``xalign eval --languages`` evaluates a subset of them.
    - ``layer``: hidden-state index (``-1`` = last; XTREME = 8 for 12-layer models).
    - ``directions``: ``xx-en`` (XTREME: each xx sentence queries the English ones),
      ``en-xx`` or ``both`` (main metric = mean of the two).
    - ``pool_special_tokens``: include CLS/SEP in the mean-pooled sentence vector (XTREME's
      ``evaluate_retrieval.py``); false = XTREME's ``--pool_skip_special_token``.
    - ``limit``: first N sentence pairs per language; null = all (1000 in each XTREME file).
    - ``batch_size``: sentences per encoder forward pass (speed and memory only).
    - ``max_length``: subwords per sentence (longer ones are cut; capped at the model's limit).
    """

    languages: list[str] = field(default_factory=lambda: list(SEEN_LANGUAGES))
    layer: int = -1
    directions: str = "xx-en"
    pool_special_tokens: bool = True
    limit: int | None = None
    batch_size: int = 32
    max_length: int = 512

    def __post_init__(self) -> None:
        self.languages = _as_list(self.languages)
        for lang in self.languages:
            tatoeba_code(lang)  # refused now, naming the option, not after loading the model
        if self.directions not in DIRECTIONS:
            raise ValueError(
                f"tatoeba: directions must be one of {DIRECTIONS}, got {self.directions!r}"
            )
        if self.batch_size < 1 or (self.limit is not None and self.limit < 0):
            raise ValueError("tatoeba: need batch_size >= 1 and limit >= 0")


# ------------------------------------------------------------------------ embedding


def embed(
    encoder: xalign.Encoder, texts: list[str], config: TatoebaConfig, device: str = "cpu"
) -> Tensor:
    """Sentence embeddings ``[N, H]`` (:func:`xalign.embed_sentences`: masked mean pooling)."""
    return xalign.embed_sentences(
        encoder,
        texts,
        batch_size=config.batch_size,
        pool_special_tokens=config.pool_special_tokens,
        device=device,
    )


# ------------------------------------------------------------------------ retrieval


def retrieval_correct(queries: Tensor, keys: Tensor) -> list[float]:
    """1.0/0.0 per query: is key ``i`` the cosine nearest neighbour of query ``i``?

    ``keys`` may hold extra distractor rows after the golds; ties go to the lowest index.

    Raises:
        ValueError: fewer keys than queries, or a different vector width.
    """
    if queries.ndim != 2 or keys.ndim != 2 or queries.shape[1] != keys.shape[1]:
        raise ValueError(f"need [N, H] queries and [M, H] keys, got {queries.shape}, {keys.shape}")
    if len(keys) < len(queries):
        raise ValueError(f"need at least as many keys as queries, got {len(keys)} < {len(queries)}")
    q = torch.nn.functional.normalize(queries.double(), dim=-1)
    k = torch.nn.functional.normalize(keys.double(), dim=-1)
    nearest = (q @ k.T).argmax(dim=1)
    return (nearest == torch.arange(len(q))).double().tolist()


def language_scores(
    src: Tensor, eng: Tensor, directions: str
) -> tuple[dict[str, float], list[float]]:
    """Scores (percent) and per-query correctness of one language's retrieval."""
    correct: dict[str, list[float]] = {}
    if directions in ("xx-en", "both"):
        correct["xx_en"] = retrieval_correct(src, eng)
    if directions in ("en-xx", "both"):
        correct["en_xx"] = retrieval_correct(eng, src)
    per_query = [c for values in correct.values() for c in values]
    scores = {f"accuracy_{k}": 100.0 * sum(v) / len(v) for k, v in correct.items()}
    scores["accuracy"] = 100.0 * sum(per_query) / len(per_query)
    scores["n_pairs"] = float(len(src))
    return scores, per_query


# ------------------------------------------------------------------------ the task


class TatoebaTask(xalign.Task):
    """Tatoeba retrieval accuracy (%) with mean-pooled states and cosine nearest neighbours."""

    name = "tatoeba"
    description = "Tatoeba xx->en sentence retrieval accuracy (XTREME protocol, mean pooling)"
    Config = TatoebaConfig
    data_folders = ("tatoeba",)  # what Task.inputs hashes
    uses_seed = False  # no training, no sampling: one evaluation serves every seed
    result_version = "3"  # 3: accuracy = 100·mean(per_example) declared (scale=100)
    #: percent of queries whose nearest neighbour is the translation (per_example: 1/0)
    metrics = tuple(
        xalign.Metric(name, higher_is_better=True, scale=100.0)
        for name in ("accuracy", "accuracy_xx_en", "accuracy_en_xx")
    )

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
        result = TaskResult(self.name, "accuracy", {}, {}, self._meta(model, encoder))
        languages = context.languages or self.config.languages
        for lang in xalign.track(languages, "tatoeba", context.show_progress):
            start = time.perf_counter()
            src, eng = load_tatoeba(lang, context.data_dir, self.config.limit)
            if not src:
                raise ValueError(f"tatoeba: no sentence pairs for {lang!r}")
            src_emb = embed(encoder, src, self.config, context.device)
            eng_emb = embed(encoder, eng, self.config, context.device)
            scores, per_query = language_scores(src_emb, eng_emb, self.config.directions)
            result.scores[lang] = scores
            result.per_example[lang] = per_query
            result.meta["tatoeba_codes"][lang] = tatoeba_code(lang)
            result.meta["seconds"][lang] = round(time.perf_counter() - start, 3)
        return result

    def _meta(self, model: str, encoder: xalign.Encoder) -> dict[str, Any]:
        return {
            "model": model,
            "options": asdict(self.config),
            "layer": encoder.layer,
            "n_layers": encoder.model.config.num_hidden_layers,
            "per_example": "1/0 per query (xx->en first, then en->xx)",
            "tatoeba_codes": {},
            "seconds": {},
        }


@xalign.hookimpl
def register_tasks(register) -> None:
    register(TatoebaTask)
