"""Word-tokenised parallel examples and the deterministic per-language-pair batch plan.

Every language pair is upsampled (reshuffled repeats) or subsampled to the same number of
pairs (the paper: 250k per language). The plan is a pure function of the seed, so a run is
resumed by its micro-step number alone and data-parallel ranks take disjoint shards of each
global batch.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import numpy as np

from xalign.data.corpus import read_parallel
from xalign.data.text import tokenize_words
from xalign.links import LinkSpec

Links = set[tuple[int, int]]


@dataclass
class PairExample:
    """One word-tokenised sentence pair, with eflomal links per requested spec."""

    src_words: list[str]
    tgt_words: list[str]
    links: dict[LinkSpec, Links] = field(default_factory=dict)


@dataclass
class PairData:
    """All examples of one language pair plus its upsampled, shuffled order."""

    src: str
    tgt: str
    examples: list[PairExample]
    order: np.ndarray
    n_read: int
    n_filtered: int

    @property
    def name(self) -> str:
        return f"{self.src}-{self.tgt}"


@dataclass
class ParallelData:
    """Per-pair data plus the global batch plan (batch size, micro-steps)."""

    pairs: list[PairData]
    batch_size: int

    @property
    def micro_steps(self) -> int:
        """Micro-batches per pair in one epoch (all pairs have the same number)."""
        return math.ceil(len(self.pairs[0].order) / self.batch_size)

    def batch(self, pair: PairData, micro_step: int, rank: int = 0, world: int = 1
              ) -> list[PairExample]:
        """This rank's shard of global micro-batch ``micro_step`` of ``pair``."""
        start = (micro_step % self.micro_steps) * self.batch_size
        idx = pair.order[start:start + self.batch_size]
        return [pair.examples[i] for i in idx[rank::world]]

    def global_batch_size(self, micro_step: int) -> int:
        start = (micro_step % self.micro_steps) * self.batch_size
        return len(self.pairs[0].order[start:start + self.batch_size])

    def stats(self) -> dict[str, dict[str, int]]:
        return {p.name: {"read": p.n_read, "kept": len(p.examples), "filtered": p.n_filtered,
                         "sampled": len(p.order)} for p in self.pairs}


def _pair_seed(seed: int, name: str) -> int:
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def sample_order(n_examples: int, n_target: int | None, seed: int, name: str) -> np.ndarray:
    """Concatenated independent permutations, cut to ``n_target`` (upsampling if needed)."""
    rng = np.random.default_rng(_pair_seed(seed, name))
    n_target = n_target or n_examples
    reps = math.ceil(n_target / n_examples)
    return np.concatenate([rng.permutation(n_examples) for _ in range(reps)])[:n_target]


def keep_pair(src: list[str], tgt: list[str], *, min_words: int, max_words: int,
              max_ratio: float | None) -> bool:
    """Length filter: both sides within [min_words, max_words], length ratio bounded."""
    ls, lt = len(src), len(tgt)
    if not (min_words <= ls <= max_words and min_words <= lt <= max_words):
        return False
    return max_ratio is None or max(ls, lt) / max(1, min(ls, lt)) <= max_ratio


def build_parallel_data(corpus: str | dict[str, str], languages: list[str], target: str, *,
                        pairs_per_language: int | None, batch_size: int, seed: int,
                        min_words: int = 1, max_words: int = 64,
                        max_ratio: float | None = None, limit: int | None = None
                        ) -> ParallelData:
    """Read, Moses-tokenise, filter and plan every ``language -> target`` pair."""
    pairs = []
    for lang in languages:
        spec = corpus[lang] if isinstance(corpus, dict) else corpus
        raw = read_parallel(spec, lang, target, limit=limit)
        examples = []
        for s, t in raw:
            sw, tw = tokenize_words(s, lang), tokenize_words(t, target)
            if keep_pair(sw, tw, min_words=min_words, max_words=max_words, max_ratio=max_ratio):
                examples.append(PairExample(sw, tw))
        if not examples:
            raise ValueError(f"{lang}-{target}: every sentence pair was filtered out "
                             f"(min_words={min_words}, max_words={max_words})")
        name = f"{lang}-{target}"
        order = sample_order(len(examples), pairs_per_language, seed, name)
        pairs.append(PairData(lang, target, examples, order, len(raw), len(raw) - len(examples)))
    return ParallelData(pairs, batch_size)
