"""Freeze the bottom of a transformer encoder: the embeddings and the first k layers.

AlignFreeze (NAACL 2025) keeps the lower layers of a multilingual encoder fixed during
realignment so alignment cannot undo what they already share across languages; the same switch
for task fine-tuning keeps the lower layers' cross-lingual structure while the upper layers and
the head adapt to the task.
"""

from __future__ import annotations

from torch import nn

from xalign.errors import ConfigError


def transformer_blocks(model: nn.Module) -> nn.ModuleList:
    """The list of transformer blocks of a Hugging Face encoder (BERT, XLM-R, E5, DistilBERT…).

    Looks through a task model's base model (``model.base_model``). Raises
    :class:`~xalign.errors.ConfigError` when no block list is found."""
    base = getattr(model, "base_model", model)
    for path in ("encoder.layer", "transformer.layer", "encoder.layers", "layers"):
        node: object = base
        for part in path.split("."):
            node = getattr(node, part, None)
        if isinstance(node, nn.ModuleList) and len(node):
            return node
    raise ConfigError(
        f"freeze_layers: cannot find the transformer blocks of {type(model).__name__} "
        "(looked for encoder.layer, transformer.layer, encoder.layers, layers)"
    )


def freeze_layers(model: nn.Module, k: int, *, key: str = "freeze_layers") -> int:
    """Freeze the embeddings (word, position, type, their norm) and the first ``k`` transformer
    blocks of ``model`` (``requires_grad=False``); ``k = 0`` changes nothing.

    Returns the number of parameters frozen. Raises :class:`~xalign.errors.ConfigError`
    (naming ``key``) when ``k`` is negative or larger than the number of blocks."""
    if k == 0:
        return 0
    blocks = transformer_blocks(model)
    if not 0 < k <= len(blocks):
        raise ConfigError(f"{key}: must be between 0 and the model's {len(blocks)} layers, got {k}")
    base = getattr(model, "base_model", model)
    embeddings = getattr(base, "embeddings", None)
    frozen = [*(embeddings.parameters() if embeddings is not None else ())]
    frozen += [model.get_input_embeddings().weight] if embeddings is None else []
    for block in list(blocks)[:k]:
        frozen += list(block.parameters())
    for p in frozen:
        p.requires_grad_(False)
    return sum(p.numel() for p in frozen)
