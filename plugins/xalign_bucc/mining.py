"""Margin-based bitext mining and BUCC scoring (LASER / XTREME ``utils_retrieve.py`` recipe).

Ratio margin (Artetxe & Schwenk, 2019, "Margin-based Parallel Corpus Mining with Multilingual
Sentence Embeddings", eq. 2-3), with cosine similarity and ``k`` nearest neighbours::

    margin(x, y) = cos(x, y) / ( Σ_{z ∈ NN_k(x)} cos(x, z) / 2k + Σ_{z ∈ NN_k(y)} cos(y, z) / 2k )

``NN_k(x)`` are the k nearest targets of source x and ``NN_k(y)`` the k nearest sources of
target y (k is capped at the pool size). As in LASER's ``mine_bitexts.py``, which XTREME
copies, each sentence's candidates are its k cosine nearest neighbours and its best candidate
is the one of highest margin among them:

- ``forward``: every source with its best target;
- ``backward``: every target with its best source;
- ``intersect``: forward pairs that are also backward pairs;
- ``max`` (XTREME's BUCC setting): forward and backward pairs together, sorted by decreasing
  margin, kept greedily when neither sentence is already used (one-to-one).

XTREME then keeps candidates above a threshold chosen to maximise F1 against a gold set
(``bucc_optimize``): here :func:`optimise_threshold`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

RETRIEVALS = ("max", "forward", "backward", "intersect")


@dataclass(frozen=True)
class Candidate:
    """A mined pair: source row, target row and its margin score."""

    src: int
    tgt: int
    score: float


def knn(
    queries: Tensor, keys: Tensor, k: int, max_elements: int = 1 << 24
) -> tuple[Tensor, Tensor]:
    """Cosine k nearest neighbours of each query among ``keys`` (both L2-normalised).

    ``queries`` ``[N, H]``, ``keys`` ``[M, H]`` -> similarities and indices ``[N, min(k, M)]``
    in decreasing similarity. Computed in row chunks of at most ``max_elements`` scores.
    """
    k = min(k, keys.shape[0])
    rows = max(1, max_elements // max(1, keys.shape[0]))
    sims, idx = [], []
    for start in range(0, queries.shape[0], rows):
        block = queries[start : start + rows] @ keys.T
        top = block.topk(k, dim=1, largest=True, sorted=True)
        sims.append(top.values)
        idx.append(top.indices)
    if not sims:
        return queries.new_zeros(0, k), torch.zeros(0, k, dtype=torch.long)
    return torch.cat(sims), torch.cat(idx)


@dataclass
class MarginScores:
    """Forward/backward candidates with their margins (see the module docstring).

    ``fwd_idx``/``fwd_score`` ``[N, k]``: each source's k nearest targets and the margins;
    ``bwd_idx``/``bwd_score`` ``[M, k]`` likewise for targets; ``src_mean``/``tgt_mean``: the
    mean cosine to the k nearest neighbours (the two halves of the denominator, times 2).
    """

    fwd_idx: Tensor
    fwd_score: Tensor
    bwd_idx: Tensor
    bwd_score: Tensor
    src_mean: Tensor
    tgt_mean: Tensor

    def forward_best(self) -> tuple[Tensor, Tensor]:
        """Best target and its margin per source."""
        best = self.fwd_score.argmax(dim=1)
        rows = torch.arange(len(best))
        return self.fwd_idx[rows, best], self.fwd_score[rows, best]

    def backward_best(self) -> tuple[Tensor, Tensor]:
        """Best source and its margin per target."""
        best = self.bwd_score.argmax(dim=1)
        rows = torch.arange(len(best))
        return self.bwd_idx[rows, best], self.bwd_score[rows, best]


def margin_scores(src: Tensor, tgt: Tensor, k: int = 4) -> MarginScores:
    """Ratio-margin scores of every source's and target's k nearest neighbours.

    ``src`` ``[N, H]``, ``tgt`` ``[M, H]`` (any scale: cosine is used), in float64.
    """
    x = torch.nn.functional.normalize(src.double(), dim=-1)
    y = torch.nn.functional.normalize(tgt.double(), dim=-1)
    x2y_sim, x2y_idx = knn(x, y, k)
    y2x_sim, y2x_idx = knn(y, x, k)
    x_mean, y_mean = x2y_sim.mean(dim=1), y2x_sim.mean(dim=1)
    fwd = x2y_sim / ((x_mean[:, None] + y_mean[x2y_idx]) / 2)
    bwd = y2x_sim / ((y_mean[:, None] + x_mean[y2x_idx]) / 2)
    return MarginScores(x2y_idx, fwd, y2x_idx, bwd, x_mean, y_mean)


def mine(src: Tensor, tgt: Tensor, k: int = 4, retrieval: str = "max") -> list[Candidate]:
    """Candidate pairs of a source and a target pool (module docstring), best first.

    ``max`` keeps LASER's order: forward entries (by source row) before backward ones (by
    target row), then a stable sort by decreasing margin.
    """
    if retrieval not in RETRIEVALS:
        raise ValueError(f"retrieval must be one of {RETRIEVALS}, got {retrieval!r}")
    if src.shape[0] == 0 or tgt.shape[0] == 0:
        return []
    scores = margin_scores(src, tgt, k)
    fwd_best, fwd_score = scores.forward_best()
    bwd_best, bwd_score = scores.backward_best()
    forward = [
        Candidate(i, int(j), float(s))
        for i, (j, s) in enumerate(zip(fwd_best.tolist(), fwd_score.tolist(), strict=True))
    ]
    backward = [
        Candidate(int(i), j, float(s))
        for j, (i, s) in enumerate(zip(bwd_best.tolist(), bwd_score.tolist(), strict=True))
    ]
    if retrieval == "forward":
        chosen = forward
    elif retrieval == "backward":
        chosen = backward
    elif retrieval == "intersect":
        chosen = [c for c in forward if backward[c.tgt].src == c.src]
    else:
        chosen = _one_to_one(forward + backward)
    return sorted(chosen, key=lambda c: -c.score)


def _one_to_one(candidates: Sequence[Candidate]) -> list[Candidate]:
    """Greedy by decreasing score (stable), keeping a pair when both sides are unused."""
    used_src: set[int] = set()
    used_tgt: set[int] = set()
    kept = []
    for cand in sorted(candidates, key=lambda c: -c.score):
        if cand.src not in used_src and cand.tgt not in used_tgt:
            used_src.add(cand.src)
            used_tgt.add(cand.tgt)
            kept.append(cand)
    return kept


# ------------------------------------------------------------------------ scoring


def prf(predicted: Iterable[tuple[str, str]], gold: set[tuple[str, str]]) -> dict[str, float]:
    """Precision, recall and F1 (percent) of predicted id pairs against gold id pairs."""
    predicted = set(predicted)
    correct = len(predicted & gold)
    precision = correct / len(predicted) if predicted else 0.0
    recall = correct / len(gold) if gold else 0.0
    f1 = 2 * correct / (len(predicted) + len(gold)) if correct else 0.0
    return {
        "f1": 100 * f1,
        "precision": 100 * precision,
        "recall": 100 * recall,
        "n_predicted": float(len(predicted)),
        "n_correct": float(correct),
        "n_gold": float(len(gold)),
    }


def optimise_threshold(
    scored: dict[tuple[str, str], float], gold: set[tuple[str, str]]
) -> tuple[float, float]:
    """The margin threshold that maximises F1 of ``{pair: score >= threshold}``, and that F1.

    XTREME's ``bucc_optimize``: walk the candidates by decreasing score and keep the cut with
    the best F1 (the first, i.e. highest, on ties); the threshold is the midpoint between the
    last kept score and the next one. Here cuts fall only between distinct scores (so the
    F1 returned is the one the threshold gives) and a cut after the last candidate uses its
    score. Without any correct candidate the threshold is 0.0 (XTREME's initial value).
    """
    levels = sorted(set(scored.values()), reverse=True)
    hits: dict[float, list[int]] = {s: [0, 0] for s in levels}
    for pair, score in scored.items():
        hits[score][0] += 1
        hits[score][1] += pair in gold
    best_f1, threshold = 0.0, 0.0
    extracted = correct = 0
    for n, score in enumerate(levels):
        extracted += hits[score][0]
        correct += hits[score][1]
        f1 = 2 * correct / (extracted + len(gold)) if correct else 0.0
        if f1 > best_f1:
            best_f1 = f1
            threshold = (score + levels[n + 1]) / 2 if n + 1 < len(levels) else score
    return threshold, 100 * best_f1


def source_counts(
    units: Sequence[str], predicted: Iterable[tuple[str, str]], gold: Iterable[tuple[str, str]]
) -> tuple[list[int], list[int]]:
    """Per source id: matched = 2·|predicted ∩ gold| and total = |predicted| + |gold|.

    F1 = Σ matched / Σ total over any set of sources (F1 = 2·tp / (|pred| + |gold|)).
    """
    predicted, gold = set(predicted), set(gold)
    position = {unit: n for n, unit in enumerate(units)}
    matched, total = [0] * len(units), [0] * len(units)
    for pair in predicted | gold:
        n = position.get(pair[0])
        if n is None:
            continue
        total[n] += (pair in predicted) + (pair in gold)
        matched[n] += 2 * (pair in predicted and pair in gold)
    return matched, total
