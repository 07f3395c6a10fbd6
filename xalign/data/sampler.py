"""The deterministic per-language-pair batch plan over word-tokenised parallel examples.

The examples of a run come from :func:`xalign.data.prepare.prepare` (words, filters and
statistics: :mod:`xalign.data.filters`). The plan: every pair is upsampled (reshuffled
repeats) or subsampled to ``pairs_per_language`` sentence pairs (the paper: 250k per
language), or keeps its own size when that is ``None``. An epoch has ``max_p ceil(n_p /
batch_size)`` micro-steps; micro-step ``m`` of pair ``p`` is ``order_p[m·B:(m+1)·B]``, so every
sampled sentence pair of every language pair is used exactly once per epoch, and a pair whose
batches are exhausted contributes nothing to the later micro-steps of the epoch. The plan is a
pure function of the seed, so a run is resumed by its micro-step number alone, and
data-parallel ranks take disjoint shards of each global batch.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xalign.data.filters import PairStats
from xalign.links import Links, LinkSpec


@dataclass
class PairExample:
    """One word-tokenised sentence pair, with eflomal links per requested spec.

    ``where`` is the pair's source location (``path:line`` or ``ref:row i``).
    """

    src_words: list[str]
    tgt_words: list[str]
    links: dict[LinkSpec, Links] = field(default_factory=dict)
    where: str = ""


@dataclass
class PairData:
    """All examples of one language pair plus its upsampled, shuffled order."""

    src: str
    tgt: str
    examples: list[PairExample]
    order: np.ndarray
    stats: PairStats = field(default_factory=PairStats)

    @property
    def name(self) -> str:
        return f"{self.src}-{self.tgt}"

    @property
    def n_read(self) -> int:
        return self.stats.read

    @property
    def n_filtered(self) -> int:
        return self.stats.n_filtered


@dataclass
class ParallelData:
    """Per-pair data plus the global batch plan (``batch_size`` = global micro-batch per pair)."""

    pairs: list[PairData]
    batch_size: int

    def pair_micro_steps(self, pair: PairData) -> int:
        """Non-empty micro-batches of ``pair`` in one epoch: ``ceil(len(order) / batch_size)``."""
        return math.ceil(len(pair.order) / self.batch_size)

    @property
    def micro_steps(self) -> int:
        """Micro-steps in one epoch: the most any pair needs to use all its sentences once."""
        return max(self.pair_micro_steps(p) for p in self.pairs)

    def _indices(self, pair: PairData, micro_step: int) -> np.ndarray:
        """Global micro-batch ``micro_step`` of ``pair`` (empty once the pair is exhausted)."""
        start = (micro_step % self.micro_steps) * self.batch_size
        return pair.order[start : start + self.batch_size]

    def batch(
        self, pair: PairData, micro_step: int, rank: int = 0, world: int = 1
    ) -> list[PairExample]:
        """This rank's shard of global micro-batch ``micro_step`` of ``pair``.

        Shard ``rank`` holds positions ``rank, rank + world, ...`` of the global batch, so the
        ``world`` shards are disjoint and together are the global batch.
        """
        idx = self._indices(pair, micro_step)
        return [pair.examples[i] for i in idx[rank::world]]

    def global_batch_size(self, micro_step: int, pair: PairData | None = None) -> int:
        """Sentence pairs in ``pair``'s global micro-batch ``micro_step`` (0 once exhausted).

        Without ``pair``, the pairs must all have the same size (else ValueError: the sizes
        differ per pair, ask per pair).
        """
        if pair is not None:
            return len(self._indices(pair, micro_step))
        sizes = {len(self._indices(p, micro_step)) for p in self.pairs}
        if len(sizes) != 1:
            raise ValueError(
                f"micro-step {micro_step}: global batch sizes differ per language "
                f"pair ({sorted(sizes)}); call global_batch_size(micro, pair)"
            )
        return sizes.pop()

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per pair: read, kept, sampled, batches per epoch, what was dropped and why
        (count and first ``file:line`` per reason), unescaped lines per file, truncation."""
        out: dict[str, dict[str, Any]] = {}
        for p in self.pairs:
            s = p.stats
            out[p.name] = {
                "read": s.read,
                "kept": len(p.examples),
                "sampled": len(p.order),
                "batches_per_epoch": self.pair_micro_steps(p),
                "filtered_total": s.n_filtered,
                "filtered": {r: t.as_dict() for r, t in s.filtered.items()},
                "unescaped_lines": dict(s.unescaped_lines),
                "truncated_words": {
                    "words": s.truncated_words,
                    "sentences": s.truncated_sentences.count,
                    "first": list(s.truncated_sentences.first),
                },
                "no_subword_words": s.no_subword_words.as_dict(),
            }
        return out


def _pair_seed(seed: int, name: str) -> int:
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def sample_order(n_examples: int, n_target: int | None, seed: int, name: str) -> np.ndarray:
    """Concatenated independent permutations, cut to ``n_target`` (upsampling if needed)."""
    rng = np.random.default_rng(_pair_seed(seed, name))
    n_target = n_target or n_examples
    reps = math.ceil(n_target / n_examples)
    return np.concatenate([rng.permutation(n_examples) for _ in range(reps)])[:n_target]
