"""Multilingual knowledge distillation (Reimers & Gurevych, EMNLP 2020, "Making Monolingual
Sentence Embeddings Multilingual using Knowledge Distillation", §2, Eq. 1; reference code:
sentence-transformers' ``MSELoss``).

A student M̂ (the model being trained) learns to map a source sentence s_j and its English
translation t_j onto the teacher M's vector of the English sentence:

    L = 1/B · Σ_j [ ‖M(t_j) − M̂(s_j)‖² / H + ‖M(t_j) − M̂(t_j)‖² / H ]

over the B sentence pairs of the batch, with H the vector size (the squared error is a mean
over dimensions, as ``torch.nn.MSELoss`` in the reference code; the two terms are summed as in
the paper's Eq. 1, i.e. twice sentence-transformers' ``MSELoss``, which averages its two
input columns). Sentence vectors are pooled from the token states (``pooling``: ``mean`` as in
the paper, or ``cls``); the student's from the run's layer (``model.layer``).

The teacher: by default the frozen initial model (``teacher: null``; its vectors at the same
layer, ``batch.tgt_frozen``), or any encoder by name (``teacher: MODEL``, a hub id or local
path; its last layer), loaded once by the trainer, in eval mode without gradient, never
trained, not in the optimizer, the checkpoints or the saved model. Its vector size must equal
the student's. A per-sentence loss: N data-parallel ranks reproduce the 1-rank run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import Tensor

import xalign
from xalign import AlignmentBatch, Needs, Objective

POOLINGS = ("mean", "cls")


@dataclass
class DistillConfig:
    """Options (help text of ``xalign plugins distill``; the loss: module docstring).

    - ``teacher``: null = the frozen initial model (its vectors at the run's layer), else a
      model name or path (anything ``xalign eval`` loads; its last layer, same vector size
      as the student).
    - ``pooling``: sentence vector of teacher and student: ``mean`` (all attended tokens;
      Reimers & Gurevych 2020) or ``cls`` (the first token).
    - ``student_english``: keep the term ‖M(t_j) − M̂(t_j)‖² / H of Eq. 1 (the student's
      English vector onto the teacher's); false = the source term alone.
    """

    teacher: str | None = None
    pooling: str = "mean"
    student_english: bool = True

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"distill: pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.teacher is not None and not str(self.teacher).strip():
            raise ValueError("distill: teacher must be null (the initial model) or a model name")
        teacher = str(self.teacher or "")
        if teacher.startswith(("/", "./", "../", "~")) and not Path(teacher).expanduser().exists():
            raise ValueError(
                f"distill: teacher {teacher!r} is a path and does not exist (give a model "
                f"folder, a name such as packaged:multilingual-e5-small or org/model, or null)"
            )


def distill_losses(student_src: Tensor, student_en: Tensor | None, teacher_en: Tensor) -> Tensor:
    """Per-sentence losses ``[B]``: mean squared errors (over the H dimensions) of the
    student's source and English vectors ``[B, H]`` against the teacher's ``[B, H]``
    (a constant: detached here)."""
    target = teacher_en.detach()
    out = ((student_src - target) ** 2).mean(-1)
    if student_en is not None:
        out = out + ((student_en - target) ** 2).mean(-1)
    return out


class Distill(Objective):
    """Student source and English sentence vectors onto the teacher's English vector (MSE)."""

    name = "distill"
    description = "MSE to a frozen teacher's English sentence vector (Reimers & Gurevych 2020)"
    Config = DistillConfig

    def needs(self) -> Needs:
        teacher = self.config.teacher
        return Needs(frozen_target=teacher is None, teacher=teacher)

    def teacher_side(self, batch: AlignmentBatch) -> xalign.Side:
        if self.config.teacher is not None:
            return batch.teacher_for(self.config.teacher)
        if batch.tgt_frozen is None:
            raise ValueError("distill with teacher=null needs batch.tgt_frozen")
        return batch.tgt_frozen

    def loss(self, batch: AlignmentBatch) -> Tensor:
        c = self.config
        teacher = self.teacher_side(batch).sentence_vectors(c.pooling)
        if teacher.shape[-1] != self.hidden_size:
            raise ValueError(
                f"distill: teacher {c.teacher!r} gives {teacher.shape[-1]}-dimensional vectors, "
                f"the student {self.hidden_size}-dimensional ones; choose a teacher of the same "
                f"size"
            )
        src = batch.src.sentence_vectors(c.pooling)
        en = batch.tgt.sentence_vectors(c.pooling) if c.student_english else None
        return distill_losses(src, en, teacher).mean()


@xalign.hookimpl
def register_objectives(register) -> None:
    register(Distill)
