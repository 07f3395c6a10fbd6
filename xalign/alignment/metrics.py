"""Corpus-level word-alignment scores (precision, recall, F1, AER; Och & Ney 2003)."""

from __future__ import annotations

from collections.abc import Sequence

from xalign.links import Links


def _ratio(num: int, den: int) -> float:
    """``num / den``, with 0.0 for an empty denominator."""
    return num / den if den else 0.0


def alignment_scores(
    pred: Sequence[Links], sure: Sequence[Links], possible: Sequence[Links] | None = None
) -> dict[str, float]:
    """Score predicted links A against sure S and possible P gold links, summed over the corpus.

    precision = |A∩P|/|A|, recall = |A∩S|/|S|, F1 their harmonic mean and
    AER = 1 - (|A∩S| + |A∩P|) / (|A| + |S|). P is taken as P ∪ S (sure links are possible);
    ``possible=None`` means P = S. Ratios with an empty denominator are 0.0, except AER,
    which is NaN when both A and S are empty. Counts are returned as ``n_pred``, ``n_sure``,
    ``n_possible``, ``n_pred_sure`` (|A∩S|) and ``n_pred_possible`` (|A∩P|).
    """
    possible = sure if possible is None else possible
    if not len(pred) == len(sure) == len(possible):
        raise ValueError(
            f"sentence counts differ: pred {len(pred)}, sure {len(sure)}, possible {len(possible)}"
        )
    n_a = n_s = n_p = n_as = n_ap = 0
    for a, s, p in zip(pred, sure, possible, strict=True):
        a, s = set(a), set(s)
        p = set(p) | s
        n_a += len(a)
        n_s += len(s)
        n_p += len(p)
        n_as += len(a & s)
        n_ap += len(a & p)
    precision, recall = _ratio(n_ap, n_a), _ratio(n_as, n_s)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    aer = 1.0 - (n_as + n_ap) / (n_a + n_s) if n_a + n_s else float("nan")
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "aer": aer,
        "n_pred": n_a,
        "n_sure": n_s,
        "n_possible": n_p,
        "n_pred_sure": n_as,
        "n_pred_possible": n_ap,
    }
