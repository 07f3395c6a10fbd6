"""A plain PyTorch fine-tuning loop for downstream tasks (XNLI, QA), shared by task plugins.

Features are dicts of model inputs: token-id lists (``input_ids`` and optionally
``token_type_ids``, padded per batch; the attention mask is built from the lengths) and integer
targets (``labels``, ``start_positions``,
``end_positions``). The loop is AdamW (no decay on biases / norms) with a linear schedule and
warmup, gradient accumulation, gradient clipping, seeded shuffling (optionally grouped by length
to cut padding), bf16 autocast on CUDA and optional per-epoch checkpoint selection kept in
memory.
"""

from __future__ import annotations

import contextlib
import difflib
import math
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from xalign.encoders.encoder import fit_max_length  # re-exported for task plugins
from xalign.encoders.freeze import freeze_layers
from xalign.encoders.lora import LoraSettings
from xalign.errors import ConfigError
from xalign.evaluation.joint import GRAD_RATIO_WARNING, JointLoss, JointSettings, JointWarning
from xalign.languages import duplicate_code, primary_language
from xalign.progress import progress_bar

__all__ = [
    "FinetuneLog",
    "FinetuneSettings",
    "IGNORE_INDEX",
    "JointSettings",
    "collate",
    "finetune",
    "fit_max_length",
    "head_modules",
    "load_for_finetuning",
    "model_input_names",
    "parse_languages",
    "predict",
    "seed_everything",
]

Feature = dict[str, Any]
_PADDED = {"input_ids", "attention_mask", "token_type_ids"}
_TARGETS = {"labels", "start_positions", "end_positions"}
IGNORE_INDEX = -100  # torch CrossEntropyLoss's ignore_index: positions without a token label


@dataclass
class FinetuneSettings:
    """Optimiser and schedule; ``batch_size`` is per optimiser step (= micro-batch x accum).

    A fine-tuned task's ``Config`` extends it (``@dataclass class XnliConfig(FinetuneSettings)``)
    and re-declares only the settings whose default differs, by their exact name: a subclass
    field that is a near-miss of a setting (``learning_rat``, ``epoch``) raises ``TypeError``
    when the class is defined, instead of leaving the setting at its default unnoticed.
    A subclass's ``__post_init__`` calls ``super().__post_init__()`` (the checks below).

    - ``learning_rate``: AdamW peak learning rate (after warmup, then linear decay to 0).
    - ``epochs``: passes over the training data (>= 1).
    - ``batch_size``: examples per optimiser step, a multiple of ``grad_accum``.
    - ``grad_accum``: micro-batches per optimiser step (``batch_size / grad_accum`` each).
    - ``warmup_steps``: linear warmup steps; 0 = ``warmup_ratio`` of all steps.
    - ``warmup_ratio``: warmup as a fraction of all optimiser steps (when ``warmup_steps`` is 0).
    - ``weight_decay``: AdamW weight decay (not on 1-d parameters: biases, norm weights).
    - ``adam_epsilon``: AdamW epsilon.
    - ``max_grad_norm``: clip the gradient norm to this value before each step (> 0).
    - ``group_by_length``: batch examples of similar length (less padding, faster).
    - ``freeze_embeddings``: keep the word-embedding matrix fixed (faster steps: it holds most
      of a multilingual encoder's parameters).
    - ``freeze_layers``: k > 0 keeps the embeddings and the first k transformer layers fixed.
    - ``lora``: LoRA adapters through peft, ``{r, alpha, dropout, target_modules}`` as
      ``model.lora`` (null: every weight trains); the encoder stays fixed, its adapters and
      the task head train, and the adapters are merged into the weights after training.
    - ``joint``: joint realignment (Gaschi et al. 2023), ``{objective, options, weight,
      schedule, every, batch_size, max_grad_ratio, config, overrides}``
      (:class:`JointSettings`): the objective on the run config's parallel corpus as an
      auxiliary loss at every optimiser step (null: the task loss alone).
    """

    learning_rate: float = 2e-5
    epochs: int = 3
    batch_size: int = 32
    grad_accum: int = 1
    warmup_steps: int = 0
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    adam_epsilon: float = 1e-8
    max_grad_norm: float = 1.0
    group_by_length: bool = False
    freeze_embeddings: bool = False
    freeze_layers: int = 0
    lora: LoraSettings | None = None
    joint: JointSettings | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _check_setting_names(cls.__qualname__, cls.__dict__.get("__annotations__", {}))

    def __post_init__(self) -> None:
        if self.freeze_layers < 0:
            raise ValueError(f"freeze_layers must be >= 0, got {self.freeze_layers}")
        if self.batch_size < 1 or self.grad_accum < 1 or self.batch_size % self.grad_accum:
            raise ValueError("batch_size must be a positive multiple of grad_accum")
        if self.epochs < 1:
            raise ValueError("epochs must be >= 1")
        if isinstance(self.lora, Mapping):  # a plain mapping (schema-built configs are typed)
            self.lora = LoraSettings(**self.lora)
        if isinstance(self.joint, Mapping):
            self.joint = JointSettings(**self.joint)

    @classmethod
    def from_options(cls, options: object) -> FinetuneSettings:
        """The settings of a task's options: exactly the :class:`FinetuneSettings` fields of a
        config that extends it; for another options object, every setting it has (defaults
        for the rest), and ``TypeError`` for an attribute that is a near-miss of a setting."""
        names = [f.name for f in fields(FinetuneSettings)]
        if not isinstance(options, FinetuneSettings):
            own = vars(options) if hasattr(options, "__dict__") else {}
            _check_setting_names(type(options).__qualname__, own)
        return FinetuneSettings(**{n: getattr(options, n) for n in names if hasattr(options, n)})

    def warmup(self, total_steps: int) -> int:
        """Warmup steps: ``warmup_steps`` if set, else ``warmup_ratio`` of the total."""
        steps = self.warmup_steps or round(self.warmup_ratio * total_steps)
        return min(steps, total_steps)


def _check_setting_names(owner: str, names: Iterable[str]) -> None:
    """``TypeError`` for a name that is not a setting but close to one (difflib ratio >= 0.85:
    ``learning_rat``, ``epoch``, ``batchsize``; ``eval_batch_size`` is 0.8, not a typo)."""
    settings = [f.name for f in fields(FinetuneSettings)]
    for name in names:
        close = difflib.get_close_matches(name, settings, n=1, cutoff=0.85)
        if name not in settings and close:
            raise TypeError(
                f"{owner}.{name} is not a fine-tuning setting; did you mean {close[0]!r}? "
                f"(a task config overrides a FinetuneSettings default by its exact name)"
            )


@dataclass
class FinetuneLog:
    """What happened: optimiser steps, mean loss and selection score per epoch, best epoch,
    and the number of parameters that trained (with LoRA: the adapters and the head);
    with ``joint``, per epoch over the steps that took a corpus batch (None for an epoch
    without one): the mean unweighted auxiliary loss (``joint_losses``) and the median ratio
    ‖w(t)·∇ℓ‖₂ / ‖∇L_task‖₂ of the weighted auxiliary gradient's norm to the task gradient's,
    over all trainable parameters, before clipping and before ``joint.max_grad_ratio``
    scales it (``joint_grad_ratios``; :func:`add_auxiliary_gradient`)."""

    steps: int = 0
    epoch_losses: list[float] = field(default_factory=list)
    epoch_scores: list[float] = field(default_factory=list)
    best_epoch: int | None = None
    seconds: float = 0.0
    trainable_parameters: int = 0
    joint_losses: list[float | None] = field(default_factory=list)
    joint_grad_ratios: list[float | None] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(
            steps=self.steps,
            epoch_losses=self.epoch_losses,
            epoch_scores=self.epoch_scores,
            best_epoch=self.best_epoch,
            seconds=round(self.seconds, 2),
            trainable_parameters=self.trainable_parameters,
            joint_losses=self.joint_losses,
            joint_grad_ratios=self.joint_grad_ratios,
        )


def parse_languages(value: Any) -> list[str]:
    """Accept a list/tuple or a comma-separated string of language codes (BCP-47: ``de``,
    ``de-DE``, ``zh-Hant-TW``; see :func:`xalign.primary_language`).

    Raises:
        ValueError: no language, a string that is not a language code (an
            :class:`xalign.XalignError` naming the ``languages`` option), or one code given
            twice (``de`` and ``DE``, ``de-DE`` and ``de_de``: evaluated twice, it would count
            twice in every average).
    """
    langs = value.split(",") if isinstance(value, str) else list(value)
    langs = [str(lang).strip() for lang in langs if str(lang).strip()]
    if not langs:
        raise ValueError("at least one language is needed")
    for lang in langs:
        primary_language(lang, where="languages")
    twins = duplicate_code(langs)
    if twins is not None:
        raise ValueError(f"languages: {twins[0]} and {twins[1]} are the same language: keep one")
    return langs


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_for_finetuning(
    model: str, auto_class: type, **config_kwargs: Any
) -> tuple[nn.Module, Any, list[str]]:
    """Load ``model`` (as :func:`xalign.load_encoder` accepts it) with a fresh task head.

    ``auto_class`` is e.g. ``AutoModelForSequenceClassification``. Returns the model, its fast
    tokenizer and the names of the newly initialised parameters (also kept on the model, for
    :func:`finetune` to train them under LoRA). Seed before calling: the head is initialised
    from torch's global RNG.
    """
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    from xalign.encoders.encoder import (
        EncoderLoadError,
        _hub_offline,
        _load_hint,
        model_files,
        plain_model_dir,
        resolve_model_dir,
    )

    # as load_encoder: HF_HUB_OFFLINE read now (no retries until timeouts), and a hub id that
    # cannot be loaded says how to point at a local copy
    offline = {"local_files_only": _hub_offline()}
    with plain_model_dir(resolve_model_dir(model)) as path:  # a LoRA run's adapter: merged
        try:
            with model_files(path, model):  # an unreadable weight file: an error naming it
                tokenizer = AutoTokenizer.from_pretrained(path, **offline)
        except (OSError, ValueError) as exc:
            raise EncoderLoadError(_load_hint(model, exc)) from exc
        if not getattr(tokenizer, "is_fast", False):
            raise EncoderLoadError(f"{model}: fine-tuning needs a fast tokenizer (offsets)")
        verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()  # the "newly initialized head" report is expected
        hf_logging.disable_progress_bar()
        try:
            with model_files(path, model):
                net, info = auto_class.from_pretrained(
                    path,
                    output_loading_info=True,
                    ignore_mismatched_sizes=True,
                    **offline,
                    **config_kwargs,
                )
        finally:
            hf_logging.set_verbosity(verbosity)
            if bars:
                hf_logging.enable_progress_bar()
        _check_encoder_part(net, info, path, model)
    new = sorted(info.get("missing_keys", []))
    net._xalign_new_parameters = new  # what finetune() keeps trainable under LoRA
    net._xalign_tokenizer = tokenizer  # what finetune() encodes a joint corpus with
    return net, tokenizer, new


def _check_encoder_part(net: nn.Module, info: dict, path: str, model: str) -> None:
    """The encoder inside task model ``net`` came whole and finite from the files (its task
    head is new: missing or resized head weights are expected); see ``check_loaded``."""
    from xalign.encoders.weight_files import check_loaded

    prefix = net.base_model_prefix + "."
    inner = {
        "missing_keys": [
            k.removeprefix(prefix) for k in info.get("missing_keys", ()) if k.startswith(prefix)
        ],
        "mismatched_keys": [
            (k.removeprefix(prefix), *shapes)
            for k, *shapes in info.get("mismatched_keys", ())
            if k.startswith(prefix)
        ],
    }
    check_loaded(getattr(net, "base_model", net), inner, path, model)


def head_modules(model: nn.Module, new_parameters: Iterable[str] = ()) -> list[str]:
    """Dotted names of the task head of a transformers task model: its top-level children
    with parameters outside ``model.base_model`` (``classifier``, ``qa_outputs``), and the
    modules of newly initialised parameters (``new_parameters``, e.g. from
    :func:`load_for_finetuning`: a pooler missing from the checkpoint). Nested names under a
    listed module are dropped."""
    base = getattr(model, "base_model", model)
    names = {
        name
        for name, child in model.named_children()
        if base is not model and child is not base and any(True for _ in child.parameters())
    }
    names |= {key.rsplit(".", 1)[0] for key in new_parameters if "." in key}
    return sorted(n for n in names if not any(n.startswith(a + ".") for a in names))


def model_input_names(model: nn.Module, tokenizer: Any) -> set[str]:
    """Token-id lists a feature should keep: ``input_ids`` and, when the tokenizer makes them
    and the model has several token types, ``token_type_ids`` (the attention mask is rebuilt
    from the lengths)."""
    names = {"input_ids"}
    if (
        "token_type_ids" in tokenizer.model_input_names
        and getattr(model.config, "type_vocab_size", 0) >= 2
    ):
        names.add("token_type_ids")
    return names


def collate(features: Sequence[Feature], pad_id: int) -> dict[str, Tensor]:
    """Pad token-id lists to the longest feature, build the attention mask, stack targets.

    A target given as a list per feature (token ``labels`` of a tagger, one per token id) is
    padded with :data:`IGNORE_INDEX` to ``[batch, longest]``.
    """
    lengths = [len(f["input_ids"]) for f in features]
    longest = max(lengths)
    batch = {"attention_mask": torch.tensor([[1] * n + [0] * (longest - n) for n in lengths])}
    for key in features[0]:
        if key in _PADDED and key != "attention_mask":
            fill = pad_id if key == "input_ids" else 0
            rows = [list(f[key]) + [fill] * (longest - len(f[key])) for f in features]
            batch[key] = torch.tensor(rows, dtype=torch.long)
        elif key in _TARGETS:
            values = [f[key] for f in features]
            if isinstance(values[0], (list, tuple)):  # token-level targets
                values = [list(v) + [IGNORE_INDEX] * (longest - len(v)) for v in values]
            batch[key] = torch.tensor(values, dtype=torch.long)
    return batch


def _autocast(device: str) -> contextlib.AbstractContextManager:
    if device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _optimizer(params: list[nn.Parameter], s: FinetuneSettings) -> torch.optim.Optimizer:
    """AdamW; biases and normalisation weights (1-d parameters) get no weight decay."""
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": s.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=s.learning_rate, eps=s.adam_epsilon)


def _linear_schedule(
    optimizer: torch.optim.Optimizer, warmup: int, total: int
) -> torch.optim.lr_scheduler.LambdaLR:
    def factor(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _batches(
    lengths: Sequence[int], size: int, generator: torch.Generator, group_by_length: bool = False
) -> list[list[int]]:
    """Shuffled batches of indices; ``group_by_length`` sorts chunks of 50 batches by length
    (less padding) and shuffles the resulting batches."""
    order = torch.randperm(len(lengths), generator=generator).tolist()
    if not group_by_length:
        return [order[start : start + size] for start in range(0, len(order), size)]
    batches = []
    for start in range(0, len(order), 50 * size):
        chunk = sorted(order[start : start + 50 * size], key=lambda i: -lengths[i])
        batches += [chunk[k : k + size] for k in range(0, len(chunk), size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def _snapshot(model: nn.Module) -> dict[str, Tensor]:
    """Copies of what training changes: the trainable parameters and the buffers."""
    state = {n: p for n, p in model.named_parameters() if p.requires_grad}
    state.update(model.named_buffers())
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


@torch.no_grad()
def _restore(model: nn.Module, snapshot: dict[str, Tensor]) -> None:
    tensors = dict(model.named_parameters()) | dict(model.named_buffers())
    for name, value in snapshot.items():
        tensors[name].copy_(value)


def _with_lora(model: nn.Module, settings: LoraSettings) -> nn.Module:
    """The peft wrapper of ``model`` (LoRA layers injected into ``model`` itself); its head
    (:func:`head_modules`) trains in full."""
    from xalign.encoders.lora import add_lora

    head = head_modules(model, getattr(model, "_xalign_new_parameters", ()))
    return add_lora(model, settings, modules_to_save=head, key="lora")


def _is_best(log: FinetuneLog, score: float) -> bool:
    """Record this epoch's selection score; True if it beats every earlier epoch."""
    better = not log.epoch_scores or score > max(log.epoch_scores)
    log.epoch_scores.append(score)
    if better:
        log.best_epoch = len(log.epoch_scores)
    return better


def _joint_loss(
    model: nn.Module, joint: JointSettings | None, tokenizer: Any, seed: int, device: str
) -> JointLoss | None:
    """The auxiliary loss of ``joint`` on ``model`` (None without ``joint``)."""
    if joint is None:
        return None
    tokenizer = tokenizer or getattr(model, "_xalign_tokenizer", None)
    if tokenizer is None:
        raise ConfigError(
            "joint: finetune() needs the model's tokenizer to encode the joint corpus: "
            "pass tokenizer=..., or load the model with load_for_finetuning"
        )
    return JointLoss(joint, model, tokenizer, seed=seed).to(device)


def add_auxiliary_gradient(
    params: Sequence[nn.Parameter], loss: Tensor, max_ratio: float | None = None
) -> float:
    """Add ``∇loss`` to the ``.grad`` of ``params``, which hold the task gradient; returns
    ``‖∇loss‖₂ / ‖∇L_task‖₂`` (norms over all of ``params``; inf when the task gradient is 0).

    The same sum as ``loss.backward()``, with the two norms measured on the way. With
    ``max_ratio`` r, the auxiliary gradient is scaled by ``min(1, r·‖∇L_task‖/‖∇loss‖)``
    first: never up, and down to r times the task gradient's norm when it is larger (gradient
    norm balancing of two losses; the returned ratio is the one before scaling).

    Why it matters: Adam divides each parameter's step by the running root mean square of its
    gradient, so where the auxiliary gradient is k times larger than the task's, the task
    moves that parameter about k times slower than it would alone, whatever the loss values.
    """
    if max_ratio is not None and not max_ratio > 0:
        raise ValueError(f"max_ratio must be > 0 or None, got {max_ratio!r}")
    params = list({id(p): p for p in params if p.requires_grad}.values())  # each once
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    task = _norm(p.grad for p in params)
    aux = _norm(grads)
    ratio = aux / task if task > 0 else math.inf
    scale = 1.0
    if max_ratio is not None and aux > 0:
        scale = min(1.0, max_ratio * task / aux)
    for p, g in zip(params, grads, strict=True):
        if g is None:
            continue
        g = g if scale == 1.0 else g * scale
        if p.grad is None:
            p.grad = g
        else:
            p.grad.add_(g)
    return ratio


def _warn_grad_ratio(ratios: list[float], label: str) -> None:
    """:class:`JointWarning` when the median of the epochs' median gradient ratios is at
    least :data:`GRAD_RATIO_WARNING`."""
    if not ratios or float(np.median(ratios)) < GRAD_RATIO_WARNING:
        return
    import warnings

    warnings.warn(
        f"{label}: the weighted joint auxiliary gradient's norm was {float(np.median(ratios)):.3g}"
        f"x the task gradient's (median; meta.train.joint_grad_ratios): under Adam the task "
        f"trained slower than alone, which lowers the joint row by itself (docs/joint.md); "
        f"lower joint.weight or cap it with joint.max_grad_ratio (e.g. 0.1)",
        JointWarning,
        stacklevel=3,
    )


def _norm(tensors: Iterable[Tensor | None]) -> float:
    """The 2-norm of all ``tensors`` together (None: absent), in float64; one device sync."""
    norms = [
        torch.linalg.vector_norm(t.detach(), dtype=torch.float64) for t in tensors if t is not None
    ]
    return float(torch.linalg.vector_norm(torch.stack(norms))) if norms else 0.0


def _train_step(
    model: nn.Module,
    features: Sequence[Feature],
    index: list[int],
    *,
    s: FinetuneSettings,
    pad_id: int,
    device: str,
) -> float:
    """Forward/backward over the micro-batches of one batch; returns the batch mean loss."""
    micro = s.batch_size // s.grad_accum
    total = 0.0
    for start in range(0, len(index), micro):
        part = index[start : start + micro]
        batch = {k: v.to(device) for k, v in collate([features[i] for i in part], pad_id).items()}
        with _autocast(device):
            loss = model(**batch).loss * (len(part) / len(index))
        loss.backward()
        total += float(loss.detach())
    return total


def finetune(
    model: nn.Module,
    features: Sequence[Feature],
    settings: FinetuneSettings,
    *,
    pad_id: int,
    seed: int = 0,
    device: str = "cpu",
    show_progress: bool = False,
    select: Callable[[], float] | None = None,
    label: str = "fine-tune",
    tokenizer: Any = None,
) -> FinetuneLog:
    """Fine-tune ``model`` (its forward returns ``.loss``) on ``features`` in place.

    ``select`` (optional) is called after every epoch and returns a score (higher is better);
    the weights of the best epoch (earliest on ties) are restored at the end.

    With ``settings.lora`` (Hu et al. 2021) only the adapters (``W + (alpha/r)·B·A``, ``W``
    fixed) and the task head (:func:`head_modules`) train; ``freeze_layers`` k then also keeps
    the adapters of the first k layers at their start (``B = 0``: no change there), and
    ``freeze_embeddings`` changes nothing (the embeddings are fixed already). ``select`` sees
    ``model`` with the adapters in place; at the end they are merged into ``model``'s weights
    (peft ``merge_and_unload``), which is again a plain transformers model.

    With ``settings.joint`` each optimiser step ``t`` of ``T`` also backpropagates
    ``w(t)·Σ_p ℓ_p`` on the next batch of the joint corpus (:mod:`xalign.evaluation.joint`),
    encoded by ``model.base_model`` with ``tokenizer`` (default: the one
    :func:`load_for_finetuning` loaded); ``freeze_layers``/``freeze_embeddings``/``lora``
    hold for both losses (one optimiser).

    Raises:
        ConfigError: a ``lora.target_modules`` name matches no layer, ``freeze_layers`` is
            larger than the model's layer count, or ``joint`` without a tokenizer.
    """
    if not features:
        raise ValueError("no training features")
    s, log, started = settings, FinetuneLog(), time.perf_counter()
    model.to(device)
    wrapper = _with_lora(model, s.lora) if s.lora is not None else None
    if s.freeze_embeddings:  # the word-embedding matrix (most of a multilingual encoder)
        model.get_input_embeddings().weight.requires_grad_(False)
    freeze_layers(model, s.freeze_layers)  # the embeddings and the first k layers
    aux = _joint_loss(model, s.joint, tokenizer, seed, device)  # before seeding: same RNG
    seed_everything(seed)
    generator = torch.Generator().manual_seed(seed)
    lengths = [len(f["input_ids"]) for f in features]
    steps_per_epoch = math.ceil(len(features) / s.batch_size)
    total = steps_per_epoch * s.epochs
    trainable = [p for p in model.parameters() if p.requires_grad]
    trainable += [p for p in aux.parameters() if p.requires_grad] if aux is not None else []
    log.trainable_parameters = sum(p.numel() for p in trainable)
    optimizer = _optimizer(trainable, s)
    scheduler = _linear_schedule(optimizer, s.warmup(total), total)
    best: dict[str, Tensor] | None = None
    aux_steps: list[float] = []
    max_ratio = s.joint.max_grad_ratio if s.joint is not None else None
    with progress_bar(show_progress, "loss") as progress:
        bar = progress.add_task(label, total=total, loss=float("nan"))
        for epoch in range(1, s.epochs + 1):
            model.train()
            losses, aux_losses, ratios = [], [], []
            for index in _batches(lengths, s.batch_size, generator, s.group_by_length):
                losses.append(
                    _train_step(model, features, index, s=s, pad_id=pad_id, device=device)
                )
                weight = s.joint.weight_at(log.steps, total) if aux is not None else 0.0
                if weight > 0:  # one corpus batch per language pair, in plan order
                    with _autocast(device):  # the encoder; the objective runs in float32
                        value = aux(len(aux_steps), device=device)
                    if not value.requires_grad:
                        raise ConfigError(
                            f"joint: the auxiliary loss {s.joint.objective!r} reaches no "
                            f"trainable parameter (is its model.layer inside freeze_layers "
                            f"{s.freeze_layers}?); unfreeze it or drop joint"
                        )
                    ratios.append(add_auxiliary_gradient(trainable, weight * value, max_ratio))
                    aux_steps.append(float(value.detach()))
                    aux_losses.append(aux_steps[-1])
                nn.utils.clip_grad_norm_(trainable, s.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                log.steps += 1
                progress.update(bar, advance=1, loss=losses[-1])
            log.epoch_losses.append(float(np.mean(losses)))
            if aux is not None:
                log.joint_losses.append(float(np.mean(aux_losses)) if aux_losses else None)
                log.joint_grad_ratios.append(float(np.median(ratios)) if ratios else None)
            if select is not None and _is_best(log, float(select())):
                best = _snapshot(model) if epoch < s.epochs else None  # last: keep as is
    if aux is not None:  # the ratio after the cap: min(median, r) = median of min(·, r)
        cap = math.inf if max_ratio is None else max_ratio
        _warn_grad_ratio([min(r, cap) for r in log.joint_grad_ratios if r is not None], label)
    if best is not None:
        _restore(model, best)
    if wrapper is not None:  # W + (alpha/r)·B·A into W, head copies back in place of the head
        from xalign.encoders.lora import merged

        merged(wrapper)
        model.__dict__.pop("peft_config", None)
    model.eval()
    log.seconds = time.perf_counter() - started
    return log


@torch.inference_mode()
def predict(
    model: nn.Module,
    features: Sequence[Feature],
    extract: Callable[[Any, dict[str, Tensor]], list[Any]],
    *,
    pad_id: int,
    batch_size: int = 64,
    device: str = "cpu",
    show_progress: bool = False,
    label: str = "predict",
) -> list[Any]:
    """Run ``model`` over ``features`` (batched by length) and return one result per feature.

    ``extract(outputs, batch)`` turns a batch's model outputs into a list of per-feature
    results (e.g. argmax labels, or logits trimmed to each feature's length); results come
    back in the order of ``features``.
    """
    model.to(device)
    model.eval()
    order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
    results: list[Any] = [None] * len(features)
    with progress_bar(show_progress) as progress:
        bar = progress.add_task(label, total=len(features))
        for start in range(0, len(order), batch_size):
            part = order[start : start + batch_size]
            batch = collate([features[i] for i in part], pad_id)
            inputs = {k: v.to(device) for k, v in batch.items() if k in _PADDED}
            with _autocast(device):
                outputs = model(**inputs)
            for i, value in zip(part, extract(outputs, batch), strict=True):
                results[i] = value
            progress.update(bar, advance=len(part))
    return results
