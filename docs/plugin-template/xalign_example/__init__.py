"""A template xalign objective: pull mean-pooled sentence vectors of a pair together.

Copy this folder, rename the package and the entry point, and `pip install -e .`:
`xalign plugins` will list the objective and `xalign run --objective mean_cosine` will use it.
The package also registers a task (``task.py``, ``xalign eval --task pair_retrieval``): one
entry point serves both hooks, as long as this module exposes both hook functions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import xalign

from xalign_example.task import PairRetrieval, register_tasks

__all__ = ["MeanCosine", "PairRetrieval", "register_objectives", "register_tasks"]


@dataclass
class MeanCosineConfig:
    """Options, settable with ``--set objectives.mean_cosine.<name>=<value>``."""

    pooling: str | None = None  # word pooling: last|first|mean (None = the run's model.pooling)


class MeanCosine(xalign.Objective):
    """1 - cosine similarity of the mean word vectors of each sentence pair."""

    name = "mean_cosine"
    description = "1 - cos(mean source word vector, mean English word vector)"
    Config = MeanCosineConfig

    def needs(self) -> xalign.Needs:
        return xalign.Needs()  # word vectors only: no links, no frozen model

    def loss(self, batch: xalign.AlignmentBatch) -> torch.Tensor:
        x, xm = batch.src.words_vectors(self.config.pooling)
        y, ym = batch.tgt.words_vectors(self.config.pooling)
        xs = (x * xm[..., None]).sum(1) / xm.sum(1, keepdim=True)
        ys = (y * ym[..., None]).sum(1) / ym.sum(1, keepdim=True)
        return (1 - torch.nn.functional.cosine_similarity(xs, ys, dim=-1)).mean()


@xalign.hookimpl
def register_objectives(register) -> None:
    register(MeanCosine)
