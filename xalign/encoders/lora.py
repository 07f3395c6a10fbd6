"""LoRA adapters (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models") through
``peft``: ``model.lora: {r, alpha, dropout, target_modules}`` trains ``W + (alpha/r)·B·A`` with
``W`` frozen, ``A`` [r, in] and ``B`` [out, r] (``B`` starts at 0, so step 0 is the base model).

An adapter folder is peft's own layout (``adapter_config.json``, ``adapter_model.safetensors``)
plus the tokenizer; its ``base_model_name_or_path`` is the run's ``model.name`` as given
(``packaged:...`` included), so :func:`xalign.load_encoder` can rebuild the model from it.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from xalign.errors import ConfigError

ADAPTER_CONFIG = "adapter_config.json"


@dataclass
class LoraSettings:
    """``model.lora``: rank ``r`` (>= 1), scale numerator ``alpha`` (> 0; the update is scaled
    by alpha/r), ``dropout`` on the adapter input (in [0, 1)), ``target_modules``: names of
    the linear layers to adapt (null: peft's default for the architecture, e.g. BERT's
    ``query``/``value``)."""

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: list[str] | None = None

    def __post_init__(self) -> None:
        if self.r < 1:
            raise ValueError(f"r must be >= 1, got {self.r}")
        if not self.alpha > 0:
            raise ValueError(f"alpha must be > 0, got {self.alpha}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.target_modules is not None and not self.target_modules:
            raise ValueError("target_modules must be null (peft's default) or non-empty")

    def as_dict(self) -> dict[str, Any]:
        return {
            "r": self.r,
            "alpha": self.alpha,
            "dropout": self.dropout,
            "target_modules": self.target_modules,
        }


@contextlib.contextmanager
def quiet_peft() -> Iterator[None]:
    """Without transformers' ``is_gradient_checkpointing`` deprecation, which peft triggers
    (a library matter, not the user's)."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*is_gradient_checkpointing", category=FutureWarning
        )
        yield


def is_peft(model: nn.Module) -> bool:
    """Is ``model`` a peft ``PeftModel`` (an encoder with adapters)?"""
    try:
        from peft import PeftModel
    except ImportError:  # peft is a dependency; without it nothing can be a PeftModel
        return False
    return isinstance(model, PeftModel)


def add_lora(
    model: nn.Module,
    settings: LoraSettings,
    *,
    base_name: str | None = None,
    revision: str | None = None,
    modules_to_save: list[str] | None = None,
    key: str = "model.lora",
) -> nn.Module:
    """``model`` wrapped by ``peft.get_peft_model``: only the adapter weights train, and the
    modules named in ``modules_to_save`` (a task head: peft trains a copy of each, in full).
    LoRA layers and head copies are injected into ``model`` itself (it is the wrapper's base).

    Raises:
        ConfigError: a ``target_modules`` name matches no layer of the model, or peft has no
            default targets for its architecture (the message names ``key`` and lists the
            linear layers).
    """
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=settings.target_modules,
        revision=revision,
        modules_to_save=modules_to_save or None,
    )
    try:
        with quiet_peft():
            wrapped = get_peft_model(model, config)
    except ValueError as exc:
        linear = sorted(
            {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)}
        )
        raise ConfigError(
            f"{key}.target_modules={settings.target_modules}: {exc}; linear layers of "
            f"{type(model).__name__}: {', '.join(linear)}"
        ) from exc
    if base_name is not None:  # peft records the resolved path; keep it as given (packaged:NAME)
        wrapped.peft_config["default"].base_model_name_or_path = base_name
    return wrapped


def without_adapters(model: nn.Module) -> nn.Module:
    """The base model of a PeftModel with the LoRA layers taken out (not merged): the weights
    the run started from. Changes ``model`` in place; use on a copy."""
    return model.unload() if is_peft(model) else model


def merged(model: nn.Module) -> nn.Module:
    """A plain transformers model with ``W + (alpha/r)·B·A`` folded in (peft
    ``merge_and_unload``); changes ``model`` in place; use on a copy."""
    return model.merge_and_unload() if is_peft(model) else model


def trainable_count(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts of ``model``."""
    total = sum(p.numel() for p in model.parameters())
    return sum(p.numel() for p in model.parameters() if p.requires_grad), total


def adapter_base(directory: Path) -> tuple[str, str | None] | None:
    """``(base model reference, revision)`` of an adapter folder; None for a plain model folder.

    Raises:
        ConfigError: ``adapter_config.json`` is unreadable or names no base model.
    """
    import json

    path = Path(directory) / ADAPTER_CONFIG
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        base = data["base_model_name_or_path"]
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"{path}: unreadable adapter config ({exc})") from exc
    if not base:
        raise ConfigError(f"{path}: base_model_name_or_path is empty")
    return str(base), data.get("revision")


def lora_settings_of(data: Any) -> LoraSettings | None:
    """``model.lora`` of a stored config dict (None when absent)."""
    if not data:
        return None
    return data if isinstance(data, LoraSettings) else LoraSettings(**data)


__all__ = [
    "ADAPTER_CONFIG",
    "LoraSettings",
    "add_lora",
    "adapter_base",
    "is_peft",
    "lora_settings_of",
    "merged",
    "trainable_count",
    "without_adapters",
]
