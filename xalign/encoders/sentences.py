"""Sentence embeddings: the masked mean of one layer's token states (XTREME's retrieval
protocol, ``evaluate_retrieval.py``), the definition the ``tatoeba`` task and an exported
sentence-transformers folder (``xalign export --sentence-transformers``) share."""

from __future__ import annotations

import torch
from torch import Tensor

from xalign.batch import SENTENCE_POOLINGS
from xalign.encoders.encoder import Encoder


def mean_pool(hidden: Tensor, mask: Tensor) -> Tensor:
    """Masked mean of token states ``[B, T, H]`` with mask ``[B, T]`` -> ``[B, H]`` (zeros for
    an empty mask)."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def _embed_batch(
    encoder: Encoder,
    texts: list[str],
    pool_special_tokens: bool,
    device: torch.device | str,
    pooling: str = "mean",
) -> Tensor:
    enc = encoder.tokenizer(
        texts,
        padding=True,
        truncation=True,
        max_length=encoder.max_length,
        return_tensors="pt",
        return_special_tokens_mask=True,
    )
    mask = enc["attention_mask"]
    if not pool_special_tokens:
        mask = mask * (1 - enc["special_tokens_mask"])
    hidden = encoder(enc["input_ids"].to(device), enc["attention_mask"].to(device))
    if pooling == "cls":
        return hidden[:, 0].float().cpu()
    return mean_pool(hidden.float(), mask.to(device)).cpu()


@torch.inference_mode()
def embed_sentences(
    encoder: Encoder,
    texts: list[str],
    *,
    batch_size: int = 32,
    pool_special_tokens: bool = True,
    device: torch.device | str | None = None,
    pooling: str = "mean",
) -> Tensor:
    """Embeddings ``[N, H]`` (float32, CPU) of raw sentences: the mean of ``encoder.layer``'s
    token states over the attention mask, special tokens (CLS/SEP, <s>/</s>) included unless
    ``pool_special_tokens`` is false (XTREME's ``--pool_skip_special_token``); sentences are
    truncated at ``encoder.max_length`` subwords and encoded in length-sorted batches of
    ``batch_size`` (less padding; the result is in the input order). Not normalised: cosine
    similarity divides by the norms. ``pooling="cls"`` takes the first token's state instead.
    Raises ``ValueError`` for an unknown pooling or ``batch_size < 1``."""
    if pooling not in SENTENCE_POOLINGS:
        raise ValueError(f"unknown sentence pooling {pooling!r}; choose one of {SENTENCE_POOLINGS}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = device or next(encoder.parameters()).device
    order = sorted(range(len(texts)), key=lambda n: -len(texts[n]))
    out = torch.zeros(len(texts), encoder.hidden_size)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        out[idx] = _embed_batch(
            encoder, [texts[n] for n in idx], pool_special_tokens, device, pooling
        )
    return out
