"""A template xalign task: retrieve each sentence's translation among a handful of pairs.

`xalign plugins` lists it and `xalign eval --task pair_retrieval MODEL` runs it; it needs no
data files (the pairs are below), so a copy works offline as it is.
"""

from __future__ import annotations

import torch
import xalign

#: Parallel pairs per language (source, English); replace with your task's test data.
PAIRS: dict[str, list[tuple[str, str]]] = {
    "de": [
        ("Das Haus ist klein.", "The house is small."),
        ("Ich trinke gern Kaffee.", "I like to drink coffee."),
        ("Der Zug kommt morgen an.", "The train arrives tomorrow."),
        ("Sie liest ein Buch.", "She is reading a book."),
    ],
}


def retrieval_hits(src: torch.Tensor, tgt: torch.Tensor) -> list[float]:
    """Per source row of ``src`` [N, H]: 1.0 if its most cosine-similar row of ``tgt`` [N, H]
    is the same row (its translation), else 0.0 (Artetxe & Schwenk 2019's Tatoeba accuracy)."""
    sims = torch.nn.functional.normalize(src, dim=-1) @ torch.nn.functional.normalize(tgt, dim=-1).T
    return (sims.argmax(dim=1) == torch.arange(len(src))).float().tolist()


class PairRetrieval(xalign.Task):
    """Translation retrieval accuracy (%) among the pairs of each language."""

    name = "pair_retrieval"
    description = "accuracy (%) of finding each sentence's English translation by cosine"
    # accuracy in percent = 100 * the mean of the 1/0 items in per_example
    metrics = (xalign.Metric("accuracy", higher_is_better=True, scale=100.0),)
    kind = "alignment"  # measures cross-lingual alignment (compare's alignment-vs-transfer)
    uses_seed = False  # no sampling, no training: one result serves every seed

    def run(self, model: str, context: xalign.TaskContext) -> xalign.TaskResult:
        encoder = xalign.load_encoder(model).to(context.device).eval()
        scores, per_example = {}, {}
        languages = context.languages or sorted(PAIRS)
        for lang in xalign.track(languages, "pair_retrieval", enabled=context.show_progress):
            src = xalign.embed_sentences(encoder, [s for s, _ in PAIRS[lang]])
            tgt = xalign.embed_sentences(encoder, [t for _, t in PAIRS[lang]])
            per_example[lang] = retrieval_hits(src, tgt)
            scores[lang] = {"accuracy": 100.0 * sum(per_example[lang]) / len(per_example[lang])}
        return xalign.TaskResult(
            task=self.name, main_metric="accuracy", scores=scores, per_example=per_example
        )


@xalign.hookimpl
def register_tasks(register) -> None:
    register(PairRetrieval)
