"""Translation language modelling, TLM (Conneau & Lample 2019, "Cross-lingual Language Model
Pretraining", NeurIPS, §3.3), as awesome-align fine-tunes with it (Dou & Neubig 2021, EACL,
§2.2 "Translation Language Modeling"; reference code: PyPI ``awesome-align`` 0.1.7,
``run_train.py``: ``mask_tokens`` and ``--train_tlm``).

Each sentence pair's subword ids are concatenated, ``[CLS] x [SEP] [CLS] y [SEP]`` (each half
cut at ``model.max_length // 2`` subwords, its last token kept, as awesome-align's
``half_block_size``), in one order per batch (``order: random``: source first or English first
with probability ½, awesome-align's default; ``both``: both orders, its ``--train_tlm_full``).
Two masked passes follow, each masking one language only (awesome-align's ``langid``): BERT's
rule (Devlin et al. 2019, §3.1) picks each maskable subword with probability p = 0.15
(``probability``; special and padding tokens never) and replaces it by ``[MASK]`` (80 %), a
random id of the vocabulary (10 %) or keeps it (10 %). With M_b the picked positions of
sentence b and q the MLM head's distribution, each pass gives::

    L_pass = 1/B · Σ_b [ Σ_{t ∈ M_b} −log q(x_t | masked input) / (|M_b| + 1e-9) ]

and ``L_tlm`` is the sum over the passes (2, or 4 with ``both``), as awesome-align sums its
backward calls. Masks are drawn from torch's CPU generator in awesome-align's call order, so a
seed gives the same masks as its ``mask_tokens``. Needs the model's masked-LM head
(``Needs(mlm=True)``): a model without a trained one (the embedded e5) is an error at setup.
Each pass is one more forward and backward of the whole encoder.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

import xalign
from xalign import AlignmentBatch, MaskedLM, Needs, Objective, Side

ORDERS = ("random", "src_first", "tgt_first", "both")


def sentence_ids(side: Side, pad_id: int, limit: int) -> list[Tensor]:
    """Each sentence's subword ids without padding (CPU), cut at ``limit`` keeping the last."""
    if side.input_ids is None:
        raise ValueError("tlm needs the subword ids (Side.input_ids), which this batch lacks")
    out = []
    for row in side.input_ids.cpu():
        ids = row[row != pad_id]
        if len(ids) > limit:
            ids = torch.cat([ids[: limit - 1], ids[-1:]])
        out.append(ids)
    return out


def concatenate(first: list[Tensor], second: list[Tensor], pad_id: int) -> tuple[Tensor, Tensor]:
    """``[first_b; second_b]`` right-padded with ``pad_id`` ``[B, T]`` and the language id of
    each position (1 first, 2 second, ``pad_id`` on padding: awesome-align's ``langid``)."""
    rows = [torch.cat([a, b]) for a, b in zip(first, second, strict=True)]
    langs = [
        torch.cat([torch.ones_like(a), torch.full_like(b, 2)])
        for a, b in zip(first, second, strict=True)
    ]
    pad = torch.nn.utils.rnn.pad_sequence
    return (
        pad(rows, batch_first=True, padding_value=pad_id),
        pad(langs, batch_first=True, padding_value=pad_id),
    )


def mask_tokens(
    ids: Tensor, maskable: Tensor, mlm: MaskedLM, probability: float = 0.15
) -> tuple[Tensor, Tensor]:
    """BERT's 80/10/10 masking of CPU ids ``[B, T]`` where ``maskable`` (bool): returns the
    masked ids and the labels (-100 where not picked). The same draws, in the same order, as
    awesome-align's ``run_train.mask_tokens`` (torch's default CPU generator)."""
    labels = ids.clone()
    prob = torch.full(labels.shape, probability)
    prob.masked_fill_(~maskable, 0.0)
    picked = torch.bernoulli(prob).bool()
    labels[~picked] = -100
    inputs = ids.clone()
    replaced = torch.bernoulli(torch.full(labels.shape, 0.8)).bool() & picked
    inputs[replaced] = mlm.mask_token_id
    randomised = torch.bernoulli(torch.full(labels.shape, 0.5)).bool() & picked & ~replaced
    words = torch.randint(mlm.vocab_size, labels.shape, dtype=torch.long)
    inputs[randomised] = words[randomised]
    return inputs, labels


def mlm_loss(mlm: MaskedLM, inputs: Tensor, labels: Tensor) -> Tensor:
    """``L_pass`` of the module docstring: per-sentence mean CE over picked positions, mean
    over sentences (a sentence with none counts 0). ``inputs``/``labels`` on the device."""
    picked = labels != -100
    logits = mlm.logits(inputs, inputs != mlm.pad_token_id, picked)
    ce = F.cross_entropy(logits, labels[picked], reduction="none")
    rows = picked.nonzero()[:, 0]
    per = logits.new_zeros(inputs.shape[0]).index_add(0, rows, ce)
    return (per / (picked.sum(1).float() + 1e-9)).mean()


@dataclass
class TlmConfig:
    """Options (help text of ``xalign plugins tlm``; the loss: module docstring).

    - ``probability``: chance that each maskable subword is picked for prediction, in (0, 1)
      (BERT's 0.15; Devlin et al. 2019, §3.1); picked ones become [MASK] 80 %, a random id
      10 %, unchanged 10 %.
    - ``order``: concatenation order(s) per batch: ``random`` (source or English first, ½
      each; awesome-align's default), ``src_first``, ``tgt_first`` or ``both`` (both orders,
      4 masked passes instead of 2; awesome-align's ``--train_tlm_full``).
    """

    probability: float = 0.15
    order: str = "random"

    def __post_init__(self) -> None:
        if not 0.0 < self.probability < 1.0:
            raise ValueError(f"tlm: probability must be in (0, 1), got {self.probability!r}")
        if self.order not in ORDERS:
            raise ValueError(f"tlm: order must be one of {ORDERS}, got {self.order!r}")


class TranslationLM(Objective):
    """Masked-LM loss on concatenated sentence pairs (TLM), awesome-align's masking."""

    name = "tlm"
    description = "translation language modelling on concatenated pairs (needs an MLM head)"
    Config = TlmConfig

    def needs(self) -> Needs:
        return Needs(mlm=True)

    def orders(self) -> list[bool]:
        """True = source first, for each concatenation of this batch."""
        order = self.config.order
        if order == "random":
            return [bool(torch.rand(()) > 0.5)]
        return {"src_first": [True], "tgt_first": [False], "both": [True, False]}[order]

    def loss(self, batch: AlignmentBatch) -> Tensor:
        mlm = batch.mlm
        if mlm is None:
            raise ValueError("tlm needs batch.mlm: declare Needs(mlm=True)")
        device = batch.src.hidden.device
        half = mlm.max_length // 2
        src = sentence_ids(batch.src, mlm.pad_token_id, half)
        tgt = sentence_ids(batch.tgt, mlm.pad_token_id, half)
        total = batch.src.hidden.new_zeros((), dtype=torch.float32)
        for src_first in self.orders():
            ids, langs = concatenate(*((src, tgt) if src_first else (tgt, src)), mlm.pad_token_id)
            special = torch.isin(ids, torch.tensor(sorted(mlm.special_ids), dtype=ids.dtype))
            real = ~special & (ids != mlm.pad_token_id)
            for keep_lang in (1, 2):  # awesome-align: lang_id 1 masks the second part only
                inputs, labels = mask_tokens(
                    ids, real & (langs != keep_lang), mlm, self.config.probability
                )
                total = total + mlm_loss(mlm, inputs.to(device), labels.to(device))
        return total


@xalign.hookimpl
def register_objectives(register) -> None:
    register(TranslationLM)
