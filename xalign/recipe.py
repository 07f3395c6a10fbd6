"""The alignment recipe (torchtune style): ``setup()``, ``train()``, ``cleanup()``.

Per optimizer step, for each micro-step and each language pair: encode source and target,
compute every objective's loss plus the English drift regulariser λ·Σ‖c(t) − c0(t)‖², and
backpropagate right away (streaming: the same gradient as summing first, but memory does not
grow with the number of language pairs). The objective of one optimizer step over micro-steps
``M`` (``grad_accum`` of them, fewer at the end of training) is

    Σ_p (1/N_p) Σ_{m ∈ M} |batch_p(m)| · mean_{i ∈ batch_p(m)} ℓ_p(i),   N_p = Σ_m |batch_p(m)|

with ``batch_p(m)`` pair ``p``'s own global micro-batch (the last one of an epoch may be short;
a pair whose epoch is exhausted contributes nothing) and ℓ_p its weighted objectives plus
λ·drift: every sentence of the step weighs the same, whatever micro-batch it fell in (for a
per-sentence loss, each pair's term is the mean over its N_p sentences of the step).
Objectives with ``mixed_languages`` get one batch, the union over pairs.

Objectives and the drift term are computed in float32 with autocast disabled
(:func:`objective_loss`), also with ``train.mixed_precision=bf16``, where only the encoders
run in bf16 (an OT cost in bf16 cancels catastrophically, see :mod:`xalign.ot`).

Gradients are summed across data-parallel ranks once per optimizer step, each rank's loss
weighted by its share of its pair's global micro-batch (``len(shard) / len(global batch)``).
So N ranks reproduce the 1-rank run with the same global batch for per-sentence losses only
(``sinkhorn`` with ``scope: sentence``, ``l2``, the drift term): a loss that couples the
sentences of a batch (``contrastive``, ``mixed_ot``, ``sinkhorn`` with ``scope: batch``) sees
each rank's shard as its batch, so it differs from the 1-rank run (measured for contrastive
with the same global batch on 1 and 2 ranks: loss 5.46 vs 3.98), unless it gathers the global
batch (``Needs.gathers``, ``xalign.gather_rows``/``global_mean``: ``translation_ranking``), which
reproduces the 1-rank run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os
import shutil
import signal
import statistics
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from xalign._version import __version__
from xalign.batch import AlignmentBatch, Side
from xalign.checkpoint import (
    CheckpointError,
    check_writable,
    finalize_checkpoint,
    find_checkpoint,
    io_reason,
    load_checkpoint,
    slim_finished,
    write_rank_state,
)
from xalign.config import DRIFT_REDUCTIONS, ModelConfig, RunConfig, TrainConfig
from xalign.data.links import LinkSet
from xalign.data.sampler import PairExample, ParallelData
from xalign.encoders import Encoder, load_encoder
from xalign.encoders.freeze import freeze_layers
from xalign.errors import ConfigError, XalignError, XalignWarning
from xalign.links import LinkSpec
from xalign.objective import Needs, Objective
from xalign.ot import as_float32, full_precision
from xalign.plugins import (
    PluginError,
    PluginRegistry,
    Registered,
    build_objective,
    get_registry,
    mixed_batches,
)
from xalign.progress import progress_bar
from xalign.tracking import (
    KIND_TRAIN,
    PARAM_VERSION,
    TAG_FAILURE,
    TAG_FINGERPRINT,
    TAG_IDENTITY,
    TAG_KIND,
    TAG_LINK_SYMMETRIZATIONS,
    TAG_MODEL_DIR,
    TAG_OBJECTIVE,
    TAG_OUTPUT_DIR,
    TAG_PLUGIN_PREFIX,
    TAG_RESUMED_AFTER,
    Tracker,
    git_sha,
)

if TYPE_CHECKING:
    from xalign.self_links import SelfLinks


class TrainingDiverged(XalignError, RuntimeError):
    """A loss became NaN/inf; checkpoints already written are kept."""


def divergence_message(
    step: int,
    bad: Sequence[str],
    entries: Mapping[str, Any],
    ckpt_dir: Path,
) -> str:
    """The :class:`TrainingDiverged` message for non-finite metrics ``bad`` (``loss/NAME``
    keys) at 0-based ``step``: the objectives that made them (``entries``: registered
    objectives by name), the latest complete checkpoint in ``ckpt_dir`` only when there is
    one, and advice that fits those objectives (``blur`` only for one that has that option)."""
    names = sorted({k.split("/")[1] for k in bad if k.count("/") and k.split("/")[1] in entries})
    owners = sorted({entries[n].where() for n in names})
    try:
        kept = f"the last checkpoint, {find_checkpoint(ckpt_dir)}, is kept"
    except (CheckpointError, OSError):
        kept = f"no checkpoint had been written yet in {ckpt_dir} (train.checkpoint_every)"
    advice = ["a lower train.lr"]
    for name in names:  # option-specific advice only where the objective has the option
        options = entries[name].cls.options()
        if "blur" in options:
            advice.append(f"a larger objectives.{name}.blur")
    if names and len(advice) == 1:
        advice.append(f"other options of {', '.join(names)} (`xalign plugins NAME`)")
    return (
        f"non-finite loss at step {step + 1} in {', '.join(bad) or 'the total'}"
        f"{' from ' + '; '.join(owners) if owners else ''}. The run stopped "
        f"without applying this step; {kept} (try {' or '.join(advice)})."
    )


class TrainingInterrupted(XalignError):
    """SIGTERM/SIGINT stopped the run; the message says where it can be resumed from.

    ``exit_code`` is the shell convention ``128 + signal number`` (130 SIGINT, 143 SIGTERM).
    """

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


class StopRequest:
    """SIGTERM/SIGINT handling for one training run (main thread only).

    While ``deferred`` (inside the training loop) the first signal only sets ``signum``: the
    loop stops after the current optimizer step, writes a checkpoint and raises
    :class:`TrainingInterrupted`. Otherwise (setup), or on a second signal, the handler raises
    ``KeyboardInterrupt`` at once; complete checkpoints are never affected (atomic writes).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None
        self.deferred = False
        self.closing = False  # ending the run (cleanup): further signals are only noted

    def _handle(self, signum: int, frame: Any) -> None:
        if self.closing:
            return
        first = self.signum is None
        self.signum = self.signum or signum
        if self.deferred and first:
            os.write(
                2,
                f"\n{signal.Signals(signum).name} received: stopping after the current "
                f"step and writing a checkpoint (send it again to stop now)\n".encode(),
            )
            return
        self.closing = True  # stopping now: a third signal must not cut the cleanup short
        raise KeyboardInterrupt(signal.Signals(signum).name)

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopRequest]:
        """Install the handlers for the duration (no-op outside the main thread)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        old = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        try:
            yield self
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)


@dataclass
class RunResult:
    run_id: str | None
    metrics: dict[str, float]
    output_dir: Path
    steps: int
    model_dir: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunNeeds:
    """What a run's objectives need together: ``each`` objective's :class:`~xalign.Needs`, the
    union of their ``link_specs``, one ``mixed`` batch over all pairs or one per pair, the
    ``frozen`` copy c0 (``train.reg_weight > 0`` or a ``frozen_target``), the objectives
    reading the ``mlm`` head and those ``gathering`` the global batch."""

    each: dict[str, Needs]
    link_specs: list[LinkSpec]
    mixed: bool
    frozen: bool
    mlm: list[str]
    gathering: list[str]


@dataclass(frozen=True)
class Resumed:
    """Where this process starts: the ``checkpoint`` resumed from (None: a new run), its
    optimizer ``step``, its ``metrics`` and MLflow ``run_id``."""

    checkpoint: Path | None = None
    step: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    run_id: str | None = None


def lr_factor(t: TrainConfig, total_steps: int) -> Callable[[int], float]:
    """The learning-rate factor of optimizer step ``step`` (``LambdaLR``): linear warm-up over
    ``train.warmup_steps``, then constant or (``train.schedule=linear``) linear decay to 0 at
    ``total_steps``."""

    def factor(step: int) -> float:
        if t.warmup_steps and step < t.warmup_steps:
            return (step + 1) / t.warmup_steps
        if t.schedule == "linear":
            span = max(1, total_steps - t.warmup_steps)
            return max(0.0, 1.0 - (step - t.warmup_steps) / span)
        return 1.0

    return factor


def enable_gradient_checkpointing(model: nn.Module, name: str) -> None:
    """``train.gradient_checkpointing``: keep only each layer's input for the backward and
    recompute the layer then (Chen et al. 2016; Hugging Face's
    ``gradient_checkpointing_enable``, non-reentrant, which restores the RNG state so
    dropout masks and gradients are the same). Activation memory of a pair's batch then
    no longer scales with the number of layers, for about one more forward in time.

    Raises:
        ConfigError: the model (``model.name`` ``name``) does not support it.
    """
    if not getattr(model, "supports_gradient_checkpointing", False):
        raise ConfigError(
            f"train.gradient_checkpointing: {type(model).__name__} ({name}) "
            f"does not support gradient checkpointing; set it to false"
        )
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


class AlignmentModule(nn.Module):
    """Everything that is trained: the encoder and any objective parameters."""

    def __init__(self, encoder: Encoder, objectives: dict[str, Objective]) -> None:
        super().__init__()
        self.encoder = encoder
        self.objectives = nn.ModuleDict(objectives)

    def forward(self, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        """Run ``compute`` (a loss built from this module's parameters).

        The recipe computes its losses outside this method; only the one gradient-sync pass of
        each optimizer step (:meth:`AlignmentRecipe._sync_grads`) goes through the DDP wrapper,
        whose forward hooks arm the gradient all-reduce of the next backward.
        """
        return compute()


def frozen_upto_layer(encoder: Encoder) -> Encoder:
    """The frozen copy c0 of ``encoder``, computing only up to the layer that is read.

    ``encoder.layer`` indexes the hidden states (0 = embeddings, ``n`` or -1 = last layer), so
    for ``layer < n`` the layers above it never reach the regulariser: the copy keeps the first
    ``layer`` transformer blocks and returns its last hidden state (the same tensor for BERT-type
    encoders, which have no norm after the last block). For ``layer`` = -1 (the paper's, the
    default) every layer is needed and this is the plain ``encoder.frozen_copy()``; so it is for
    architectures whose block list is not ``model.encoder.layer``.
    """
    n = encoder.model.config.num_hidden_layers
    index = encoder.layer if encoder.layer >= 0 else n + 1 + encoder.layer
    holder = getattr(encoder.model, "encoder", None)
    blocks = getattr(holder, "layer", None)
    if index >= n or not isinstance(blocks, nn.ModuleList) or len(blocks) != n:
        return encoder.frozen_copy()
    holder.layer = nn.ModuleList(list(blocks)[:index])  # copy without the blocks above
    try:
        frozen = encoder.frozen_copy()
    finally:
        holder.layer = blocks
    frozen.model.config.num_hidden_layers = index
    frozen.layer = -1  # the last kept block's output is hidden state ``index``
    return frozen


def drift_regulariser(tgt: Side, frozen: Side, reduction: str = "sum") -> torch.Tensor:
    """The English drift term of a batch, averaged over its sentences: per sentence of words
    t = 1..n, ``sum``: Σ_t ‖c(t) − c0(t)‖² (the paper's Eq. 2, Alqahtani et al. 2021), or
    ``mean``: (1/n) Σ_t ‖c(t) − c0(t)‖² (on the scale of the OT objectives' mass 1).

    ``c`` (``tgt``) and ``c0`` (``frozen``) are word vectors ``[B, W, H]`` pooled by the run's
    ``model.pooling``; squared Euclidean distance in hidden-state units. Float32 with autocast
    disabled, whatever the encoders' dtype (a float32 scalar). Raises ``ValueError`` for a
    ``reduction`` outside :data:`DRIFT_REDUCTIONS` (the config rejects it first)."""
    if reduction not in DRIFT_REDUCTIONS:
        raise ValueError(f"unknown drift reduction {reduction!r}; choose one of {DRIFT_REDUCTIONS}")
    with full_precision():
        c, mask = tgt.words_vectors()
        c0, _ = frozen.words_vectors()
        per_sentence = (((c - c0) ** 2).sum(-1) * mask).sum(-1)
        if reduction == "mean":  # a sentence without words contributes 0
            per_sentence = per_sentence / mask.sum(-1).clamp(min=1)
        return per_sentence.mean()


def float32_batch(batch: AlignmentBatch) -> AlignmentBatch:
    """``batch`` with every side's ``hidden`` (teachers' included) in float32 (a
    differentiable cast; float32 and float64 sides are kept as they are)."""

    def side(s: Side | None) -> Side | None:
        return None if s is None else dataclasses.replace(s, hidden=as_float32(s.hidden))

    return dataclasses.replace(
        batch,
        src=side(batch.src),
        tgt=side(batch.tgt),
        tgt_frozen=side(batch.tgt_frozen),
        teachers={k: side(v) for k, v in batch.teachers.items()},
    )


def objective_loss(objective: Objective, batch: AlignmentBatch) -> torch.Tensor:
    """``objective.loss(batch)`` in float32: the sides' vectors cast to float32 and every
    autocast disabled while the loss runs, so a plugin's matmuls (an OT cost, a similarity
    matrix, a projection head) never run in bf16, whatever ``train.mixed_precision`` is.
    Every objective, built-in or third-party, is called through this."""
    with full_precision():
        return objective.loss(float32_batch(batch))


class GradientBalanceWarning(XalignWarning):
    """One loss term's gradient norm was > 10× every alignment term's (medians over the first
    ``train.grad_terms_first`` optimizer steps): the updates follow that term, not alignment."""


#: a term whose gradient norm is more than this times every alignment term's dominates
BALANCE_RATIO = 10.0


class TermGrads:
    """The gradient of each loss term (weighted objective, λ·drift) of one optimizer step.

    Each term gets its own backward pass (``torch.autograd.grad`` on the trainable
    parameters, the graph retained) and is added to ``.grad`` as the one backward of the total
    would; the last term runs the ordinary backward, and its gradient is read off at the end
    as ``.grad`` minus the others'. Cost of a measured step: one backward per term instead of
    one in all, and one gradient-sized buffer per term but the last.
    """

    def __init__(self, names: list[str], params: list[nn.Parameter]) -> None:
        self.names = names
        self.params = params
        self.buffers = {n: [torch.zeros_like(p) for p in params] for n in names[:-1]}

    def backward(
        self, parts: dict[str, torch.Tensor], coef: float, backward: Callable[[torch.Tensor], None]
    ) -> None:
        """Backpropagate ``coef · Σ parts`` into ``.grad``, keeping each part's gradient."""
        for name in self.names[:-1]:
            value = parts[name]
            if not value.requires_grad:
                continue
            grads = torch.autograd.grad(
                value * coef, self.params, retain_graph=True, allow_unused=True
            )
            for buf, p, g in zip(self.buffers[name], self.params, grads, strict=True):
                if g is None:
                    continue
                buf.add_(g)
                if p.grad is None:
                    p.grad = g
                else:
                    p.grad.add_(g)
        last = parts[self.names[-1]]
        if last.requires_grad:
            backward(last * coef)

    def norms(self, world: int) -> dict[str, float]:
        """L2 norm of each term's gradient (summed over ranks as DDP does), and ``total``:
        the norm of ``.grad``. Call after the gradient sync, before clipping."""
        if world > 1:
            import torch.distributed as dist

            for bufs in self.buffers.values():
                for buf in bufs:
                    dist.all_reduce(buf)
                    buf.div_(world)  # DDP's mean over ranks (the losses were scaled by world)
        sq = dict.fromkeys([*self.names, "total"], 0.0)
        for k, p in enumerate(self.params):
            grad = p.grad if p.grad is not None else torch.zeros_like(p)
            rest = grad.float().clone()
            for name, bufs in self.buffers.items():
                sq[name] += float(bufs[k].float().pow(2).sum())
                rest -= bufs[k].float()
            sq[self.names[-1]] += float(rest.pow(2).sum())
            sq["total"] += float(grad.float().pow(2).sum())
        return {name: math.sqrt(v) for name, v in sq.items()}


def dominant_term(
    history: list[dict[str, float]], alignment: list[str], ratio: float = BALANCE_RATIO
) -> tuple[str, list[str]] | None:
    """The term whose median gradient norm over ``history`` (each step's ``{term: norm}``) is
    more than ``ratio`` times the median of every OTHER alignment term, with the terms it
    dominated; None when there is none (or nothing to compare it with). The median, not every
    step: with dropout off the drift term's gradient is exactly 0 on the first step."""
    if not history:
        return None
    median = {k: statistics.median(step[k] for step in history) for k in history[0]}
    for term, value in median.items():
        others = [a for a in alignment if a != term]
        if others and all(value > ratio * median[a] for a in others):
            return term, others
    return None


class AlignmentRecipe:
    """Fine-tune an encoder with one or more alignment objectives."""

    def __init__(
        self,
        cfg: RunConfig,
        *,
        registry: PluginRegistry | None = None,
        resume: str | Path | None = None,
        show_progress: bool = True,
        parent_run_id: str | None = None,
        extra_tags: dict[str, str] | None = None,
    ) -> None:
        self.cfg = cfg
        self.parent_run_id = parent_run_id
        self.extra_tags = extra_tags or {}
        self.registry = registry or get_registry()
        self.resume_from = Path(resume) if resume else None
        self.show_progress = show_progress

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        """Build everything :meth:`train` needs: each ``_setup_*`` helper takes what it builds
        from as arguments and returns what it built, so the order reads from the signatures.

        Fails fast: the tracking store and the output folder are checked before any model is
        loaded; the MLflow run is created last, once data, links and resume state are known.
        """
        self.accelerator = self._setup_accelerator(self.cfg.train)
        self.tracker = self._setup_tracking(self.cfg, self.resume_from)
        self.encoder = self._setup_model(self.cfg.model, self.cfg.train)
        self.entries, self.objectives = self._setup_objectives(
            self.cfg, self.registry, self.encoder.hidden_size
        )
        self.needs = self._setup_needs(self.objectives, self.cfg.train.reg_weight)
        self.frozen, self.teachers = self._setup_reference_models(
            self.encoder, self.needs, self.cfg.model
        )
        self.data, self.link_set, self.prepared = self._setup_data(
            self.cfg, self.encoder, self.needs.link_specs
        )
        self._setup_prepare(self.objectives, self.data)
        self.module, self.ddp, self.params, self.optimizer = self._setup_optimizer(
            self.encoder, self.objectives, self.frozen, self.teachers, self.cfg.train
        )
        self.micro_total, self.total_steps, self.scheduler = self._setup_schedule(
            self.optimizer, self.data, self.cfg.train
        )
        self.resumed = self._setup_resume(
            self.cfg, self.resume_from, self.module, self.optimizer, self.scheduler
        )
        self.self_links = self._setup_self_links(
            self.cfg, self.prepared, self.needs.link_specs, self.resumed.step
        )
        self.run_id, self.output_dir = self._setup_output(self.cfg, self.resumed)
        self._setup_self_links_record(self.self_links, self.resumed.step)

    # what setup() built, by the names train() reads
    rank = property(lambda self: self.accelerator.process_index, doc="this process's rank")
    world = property(lambda self: self.accelerator.num_processes, doc="number of ranks")
    is_main = property(lambda self: self.accelerator.is_main_process, doc="rank 0?")
    link_specs = property(lambda self: self.needs.link_specs, doc="LinkSpecs of the objectives")
    mixed = property(lambda self: self.needs.mixed, doc="one batch mixing all pairs?")
    need_mlm = property(lambda self: self.needs.mlm, doc="objectives reading the MLM head")
    gathering = property(lambda self: self.needs.gathering, doc="objectives that gather")
    start_step = property(lambda self: self.resumed.step, doc="first step of this process")
    history = property(lambda self: self.resumed.metrics, doc="metrics of the checkpoint")
    ckpt_dir = property(lambda self: self.output_dir / "checkpoints", doc="checkpoints folder")

    @functools.cached_property
    def weights(self) -> dict[str, float]:
        """Each objective's weight in the loss (``objectives.NAME.weight``, default 1)."""
        return self.cfg.objective_weights()

    def _setup_accelerator(self, t: TrainConfig) -> Any:
        """Accelerate (device, ranks, mixed precision) for ``train.*``; seeds every rank."""
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        if t.mixed_precision == "fp16":
            raise ValueError("train.mixed_precision=fp16 is not supported (use bf16 or no)")
        # Without an accelerator device, accelerate forms a gloo (MULTI_CPU) process group only
        # when asked for the CPU explicitly; with one device it changes nothing.
        try:
            accelerator = Accelerator(mixed_precision=t.mixed_precision, cpu=_no_accelerator())
        except ValueError as exc:  # e.g. a stale WORLD_SIZE without MASTER_ADDR
            raise XalignError(_process_group_problem(exc)) from exc
        from xalign.threads import apply_num_threads

        apply_num_threads(t.num_threads)  # before any work: affinity-aware, not torch's default
        if accelerator.is_main_process:  # `accelerate launch --num_processes 2 --cpu`: one
            from xalign.launch import check_launch

            check_launch(accelerator.num_processes)
        set_seed(t.seed, device_specific=True)
        return accelerator

    def _setup_tracking(self, cfg: RunConfig, resume_from: Path | None) -> Tracker:
        """The tracker (enabled on the main process). Its store must answer (seconds, not
        minutes of HTTP retries) and the output folder must be writable, before any model is
        loaded."""
        tracker = Tracker(cfg.tracking.uri, cfg.tracking.experiment, enabled=self.is_main)
        if self.is_main:
            check_writable(
                find_checkpoint(resume_from).parent if resume_from else Path(cfg.train.output_dir)
            )
        return tracker

    def _setup_model(self, m: ModelConfig, t: TrainConfig) -> Encoder:
        """The encoder to tune (``model.*``), with its adapters and frozen parts (``train.*``)."""
        encoder = load_encoder(
            m.name,
            layer=m.layer,
            max_length=m.max_length,
            revision=m.revision,
            setting="model.name",
        )
        if m.lora is not None:  # only the adapters train (xalign.encoders.lora)
            from xalign.encoders.lora import add_lora

            encoder.model = add_lora(encoder.model, m.lora, base_name=m.name, revision=m.revision)
        if t.freeze_embeddings:
            # The word-embedding matrix, most of a multilingual encoder's parameters (96M of
            # e5-small's 118M): no gradient and no optimizer state for it. The paper tunes it.
            encoder.model.get_input_embeddings().weight.requires_grad_(False)
        # AlignFreeze: the embeddings and the first k layers keep their initial weights
        freeze_layers(encoder.model, t.freeze_layers, key="train.freeze_layers")
        if t.gradient_checkpointing:
            enable_gradient_checkpointing(encoder.model, m.name)
        return encoder

    def _setup_objectives(
        self, cfg: RunConfig, registry: PluginRegistry, hidden_size: int
    ) -> tuple[dict[str, Registered], dict[str, Objective]]:
        """Each objective's plugin entry and the objective built from its options
        (:func:`xalign.plugins.build_objective`) for vectors of ``hidden_size``."""
        entries = {name: registry.objective(name) for name in cfg.objectives}
        objectives = {
            name: build_objective(entry, cfg.objective_options(name), hidden_size=hidden_size)
            for name, entry in entries.items()
        }
        return entries, objectives

    def _setup_needs(self, objectives: dict[str, Objective], reg_weight: float) -> RunNeeds:
        """What the objectives need together (:class:`RunNeeds`); the mixed-language rule
        (:func:`xalign.plugins.mixed_batches`) raises :class:`ConfigError` on a bad mix."""
        needs = {name: obj.needs() for name, obj in objectives.items()}
        return RunNeeds(
            each=needs,
            link_specs=sorted({s for n in needs.values() for s in n.links}, key=repr),
            mixed=mixed_batches(needs),
            frozen=reg_weight > 0 or any(n.frozen_target for n in needs.values()),
            mlm=sorted(name for name, n in needs.items() if n.mlm),
            gathering=[name for name, n in needs.items() if n.gathers],
        )

    def _setup_reference_models(
        self, encoder: Encoder, needs: RunNeeds, m: ModelConfig
    ) -> tuple[Encoder | None, dict[str, Encoder]]:
        """The frozen copy c0 (cut above the layer it is read at) when needed, the MLM head
        (``Needs.mlm``, attached to ``encoder`` after the copy: c0 never needs it) and each
        ``Needs.teacher`` model, loaded once (shared by the objectives naming it) in eval mode
        without gradient; teachers stay outside :class:`AlignmentModule`, so they are never
        trained, not in the optimizer, the checkpoints or the saved model."""
        frozen = frozen_upto_layer(encoder) if needs.frozen else None
        if needs.mlm:
            encoder.attach_mlm_head(m.name, needs.mlm, m.revision)
        teachers: dict[str, Encoder] = {}
        for obj, need in needs.each.items():
            model = need.teacher
            if model is None or model in teachers:
                continue
            try:
                teacher = load_encoder(model, max_length=m.max_length, setting=None)
            except XalignError as exc:
                raise PluginError(f"{self.entries[obj].where()}: teacher {model!r}: {exc}") from exc
            teacher.eval()
            teacher.requires_grad_(False)
            teachers[model] = teacher
        return frozen, teachers

    def _setup_data(
        self, cfg: RunConfig, encoder: Encoder, link_specs: list[LinkSpec]
    ) -> tuple[ParallelData, LinkSet, Any]:
        """The parallel corpus and its word links (one set for every rank), prepared once
        (:mod:`xalign.data.prepare`): words, filters, stats and word links are cached on disk
        by content, built by the main process first and memory-mapped by every rank; the same
        examples, plan and links as the pre-prepare pipeline (``tests/_pipeline.py``)."""
        from xalign.data.prepare import prepare_run_data

        return prepare_run_data(
            cfg,
            encoder,
            link_specs,
            accelerator=self.accelerator,
            announce=self.show_progress,
        )

    def _setup_prepare(self, objectives: dict[str, Objective], data: ParallelData) -> None:
        """Each objective's ``prepare`` (corpus statistics) on the training data."""
        for name, objective in objectives.items():
            try:
                objective.prepare(data)
            except Exception as exc:
                raise PluginError(
                    f"{self.entries[name].where()} failed in prepare(): {type(exc).__name__}: {exc}"
                ) from exc

    def _setup_optimizer(
        self,
        encoder: Encoder,
        objectives: dict[str, Objective],
        frozen: Encoder | None,
        teachers: dict[str, Encoder],
        t: TrainConfig,
    ) -> tuple[AlignmentModule, nn.Module, list[nn.Parameter], torch.optim.Optimizer]:
        """The trained module on the device (and its DDP wrapper from ``accelerator.prepare``
        on several ranks; the module itself on one), its trainable parameters and the
        optimizer; the frozen copy and the teachers are moved to the device too."""
        device = self.accelerator.device
        module = AlignmentModule(encoder, objectives).to(device)
        # Dropout on (standard fine-tuning) or off; the frozen copy c0 is always in eval mode,
        # so with dropout the drift regulariser is not zero even before the first update.
        module.train(t.dropout)
        if t.gradient_checkpointing and not t.dropout:
            # HF recomputes a layer only in training mode: the checkpointed layers themselves
            # (not their dropout and attention modules) are marked as training
            for m in encoder.model.modules():
                if m is not encoder.model and getattr(m, "gradient_checkpointing", False):
                    m.training = True
        for reference in [frozen, *teachers.values()]:
            if reference is not None:
                reference.to(device)
        # Only the model is prepared: the optimizer and schedule count optimizer steps, while
        # accelerate's scheduler wrapper would step once per process (split-batch semantics).
        ddp = self.accelerator.prepare_model(module)
        params = [p for p in module.parameters() if p.requires_grad]
        if t.optimizer == "sgd":
            optimizer: torch.optim.Optimizer = torch.optim.SGD(
                params, lr=t.lr, weight_decay=t.weight_decay
            )
        else:
            opt_cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
            optimizer = opt_cls(
                params, lr=t.lr, betas=tuple(t.betas), eps=t.eps, weight_decay=t.weight_decay
            )
        return module, ddp, params, optimizer

    def _setup_schedule(
        self, optimizer: torch.optim.Optimizer, data: ParallelData, t: TrainConfig
    ) -> tuple[int, int, torch.optim.lr_scheduler.LambdaLR]:
        """Micro-steps and optimizer steps of the run (``train.epochs``, ``grad_accum``,
        ``max_steps``) and the learning-rate schedule over them (:func:`lr_factor`)."""
        micro_total = data.micro_steps * t.epochs
        total_steps = math.ceil(micro_total / t.grad_accum)
        if t.max_steps is not None:
            total_steps = min(total_steps, t.max_steps)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(t, total_steps))
        return micro_total, total_steps, scheduler

    def _setup_resume(
        self,
        cfg: RunConfig,
        resume_from: Path | None,
        module: AlignmentModule,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
    ) -> Resumed:
        """With ``--resume``: weights, optimizer and schedule loaded from the checkpoint (which
        must have been written with the same config), its step, metrics and run id.

        Raises:
            ConfigError: the checkpoint's config fingerprint differs from this run's.
        """
        if resume_from is None:
            return Resumed()
        ckpt = find_checkpoint(resume_from)
        state = load_checkpoint(
            ckpt, module=module, optimizer=optimizer, scheduler=scheduler, rank=self.rank
        )
        if state.get("fingerprint") != cfg.fingerprint():
            raise ConfigError(
                f"{ckpt}: checkpoint was written with a different config "
                f"(fingerprint {state.get('fingerprint')} vs "
                f"{cfg.fingerprint()}); resume with the same config"
            )
        base = state.get("base_model")
        if base is not None and base.get("identity") != self._base_identity():
            raise ConfigError(
                f"{ckpt}: its adapter was trained on base model {base.get('name')} "
                f"({str(base.get('identity'))[:40]}), this run loads "
                f"{cfg.model.name} ({self._base_identity()[:40]}); resume on the same base"
            )
        return Resumed(ckpt, int(state["step"]), state.get("metrics", {}), state.get("run_id"))

    # -- data.links: self (xalign.self_links) ------------------------------------------------
    def _setup_self_links(
        self, cfg: RunConfig, prepared: Any, link_specs: list[LinkSpec], start_step: int
    ) -> SelfLinks | None:
        """``data.links: self``: the model's own links, computed before the first step (of this
        process: a resumed run recomputes them from the checkpoint's weights); None for the
        other ``data.links`` sources, or when no objective needs links."""
        from xalign.self_links import SelfLinks, is_self

        if not (is_self(cfg.data.links) and link_specs):
            return None
        self_links = SelfLinks(
            cfg.data.self_links,
            cfg.model.layer,
            prepared.pairs,
            link_specs,
            target=cfg.data.target,
        )
        self._refresh_self_links(self_links, start_step)
        return self_links

    def _setup_self_links_record(self, self_links: SelfLinks | None, start_step: int) -> None:
        """Log the first self links once the MLflow run exists (``data.links: self`` only)."""
        if self_links is not None:
            self._log_self_links(start_step)

    def _self_links_due(self, step: int) -> bool:
        every = self.cfg.data.self_links.refresh_every
        return (
            getattr(self, "self_links", None) is not None
            and every > 0
            and step > self.start_step
            and step % every == 0
        )

    def _refresh_self_links(self, self_links: SelfLinks, step: int) -> None:
        """Recompute (main process, broadcast) and record which links every rank holds."""
        from xalign.data.links import gather_from_ranks

        corpus = self_links.refresh(self.encoder, step, accelerator=self.accelerator)
        self.link_set.corpus = corpus
        self.link_set.by_rank = gather_from_ranks(
            {n: cl.digest for n, cl in corpus.items()}, self.world
        )

    def _log_self_links(self, step: int) -> None:
        """Artifacts ``links/self/step-N/<pair>.txt`` (Pharaoh) and ``.../digests.json`` (sha256
        per pair and per rank) and the metric ``self_links/<pair>`` (links per sentence)."""
        import json
        import tempfile

        from xalign.links import links_text

        if not self.is_main:
            return
        folder_name = f"links/self/step-{step:07d}"
        metrics = {}
        with tempfile.TemporaryDirectory(prefix="xalign-self-links-") as tmp:
            folder = Path(tmp)
            for pair, cl in self.link_set.corpus.items():
                lk = next(iter(cl.links.values()))
                path = folder / f"{pair}.txt"
                path.write_text(links_text(lk), encoding="utf-8")
                self.tracker.log_artifact(path, folder_name)
                metrics[f"self_links/{pair}"] = sum(map(len, lk)) / max(1, len(lk))
            digests = folder / "digests.json"
            digests.write_text(
                json.dumps(
                    {
                        "step": step,
                        "digests": {p: cl.digest for p, cl in self.link_set.corpus.items()},
                        "ranks": {str(r): d for r, d in enumerate(self.link_set.by_rank)},
                        "source": self.self_links.source(step) if self.self_links else "",
                    },
                    indent=1,
                    sort_keys=True,
                ),
                encoding="utf-8",
            )
            self.tracker.log_artifact(digests, folder_name)
        self.tracker.log_metrics(metrics, step)

    def _setup_output(self, cfg: RunConfig, resumed: Resumed) -> tuple[str | None, Path]:
        """The MLflow run (new, or the resumed one; the same run id on every rank) and the
        output folder with ``config.yaml`` and ``checkpoints/``: returns both.

        Raises:
            CheckpointError: the output folder cannot be written (path and OS reason).
        """
        ckpt = resumed.checkpoint
        run_id = resumed.run_id
        if self.is_main:
            if ckpt is not None:  # first send what an earlier process of this run could not
                self.tracker.set_backlog_dir(self.resume_from_output(ckpt))
            run_id = self._start_tracking(run_id)
        run_id = _broadcast(run_id, self.world)
        output_dir = Path(
            self.resume_from_output(ckpt) or Path(cfg.train.output_dir) / (run_id or "run")
        )
        if self.is_main:
            try:
                (output_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
                (output_dir / "config.yaml").write_text(cfg.to_yaml(), encoding="utf-8")
            except OSError as exc:
                raise CheckpointError(
                    f"cannot write to the output folder {output_dir}: "
                    f"{io_reason(exc, output_dir.parent)}"
                ) from exc
            self.tracker.set_backlog_dir(output_dir)  # unsent records are kept here
            self.tracker.set_tags({TAG_OUTPUT_DIR: str(output_dir.resolve())})
        return run_id, output_dir

    def _base_identity(self) -> str:
        """Content identity of ``model.name`` (:func:`xalign.provenance.model_identity`)."""
        if getattr(self.link_set, "model_identity", None) is None:
            from xalign.provenance import model_identity

            self.link_set.model_identity = model_identity(
                self.cfg.model.name, self.cfg.model.revision
            )
        return self.link_set.model_identity

    def resume_from_output(self, ckpt: Path | None) -> Path | None:
        return ckpt.parent.parent if ckpt is not None else None

    def _start_tracking(self, run_id: str | None) -> str | None:
        cfg = self.cfg
        tags = {
            **self.extra_tags,
            TAG_OBJECTIVE: "+".join(cfg.objectives),
            TAG_FINGERPRINT: cfg.fingerprint(),
            TAG_KIND: KIND_TRAIN,
        }
        for name, entry in self.entries.items():
            src = entry.source
            tags[TAG_PLUGIN_PREFIX + name] = f"{src.distribution} {src.version}"
        # content identity (what compare reuses by): config, corpus, model, links, versions
        from xalign.provenance import (
            check_same_inputs,
            identity_params,
            training_components,
            training_identity,
        )

        links = self.link_set
        # self links change during the run: their config (in the fingerprint) identifies them
        own = getattr(self, "self_links", None) is not None
        fixed = {} if own else {n: cl.digest for n, cl in links.corpus.items()}
        components = training_components(
            cfg,
            plugins={
                n: f"{e.source.distribution} {e.source.version}" for n, e in self.entries.items()
            },
            links=fixed,
            corpus_digests=links.corpus_digests,
            model_id=links.model_identity,
        )
        tags[TAG_IDENTITY] = training_identity(components)
        tags[TAG_LINK_SYMMETRIZATIONS] = ",".join(links.symmetrizations)
        name = cfg.tracking.run_name or "+".join(cfg.objectives)
        resumed = run_id is not None
        earlier_failure = None
        if resumed:  # the inputs must be the ones the run started with
            check_same_inputs(self.tracker.run_params(run_id), components, what=f"run {run_id}")
            earlier_failure = self.tracker.run_tags(run_id).get(TAG_FAILURE)
        run_id = self.tracker.start(
            run_name=name, run_id=run_id, tags=tags, parent_run_id=self.parent_run_id
        )
        if earlier_failure:  # the run goes on: why it stopped is history, not its state
            self.tracker.set_tags({TAG_RESUMED_AFTER: earlier_failure})
            self.tracker.delete_tag(TAG_FAILURE)
        if not resumed:
            params = cfg.flat()
            params[PARAM_VERSION] = __version__
            params["xalign.git_sha"] = git_sha() or "none"
            params["data.pairs"] = ",".join(p.name for p in self.data.pairs)
            params["train.world_size"] = self.world
            params["train.total_steps"] = self.total_steps
            for n, entry in self.entries.items():
                params[f"plugin.{n}.version"] = entry.source.version
                params[f"plugin.{n}.distribution"] = entry.source.distribution
            params.update(identity_params(components))
            for pair, cl in links.corpus.items():
                params[f"data.links_source.{pair}"] = "; ".join(
                    f"{sym}: {src}" for sym, src in sorted(cl.sources.items())
                )
            self.tracker.log_params(params)
            if self.is_main and self.show_progress and links.corpus:
                sys.stderr.write(links.describe() + "\n")
            self.tracker.log_json(components, "provenance.json")
            if not own:  # self links: _log_self_links, at every refresh
                self._log_links(links)
            self.tracker.log_text(cfg.to_yaml(), "config.yaml")
            self.tracker.log_json(self.data.stats(), "data_stats.json")
        return run_id

    def _log_links(self, links: LinkSet) -> None:
        """Artifacts ``links/<pair>.<sym>.txt`` (Pharaoh, the exact training links, usable as
        ``data.links``) and ``links/ranks.json`` (each rank's links digest per pair)."""
        import json
        import tempfile

        from xalign.links import links_text

        if not links.corpus:
            return
        with tempfile.TemporaryDirectory(prefix="xalign-links-") as tmp:
            folder = Path(tmp)
            for pair, cl in links.corpus.items():
                for sym, lk in cl.links.items():
                    path = folder / f"{pair}.{sym}.txt"
                    path.write_text(links_text(lk), encoding="utf-8")
                    self.tracker.log_artifact(path, "links")
            ranks = folder / "ranks.json"
            ranks.write_text(
                json.dumps(
                    {str(r): d for r, d in enumerate(links.by_rank)}, indent=1, sort_keys=True
                ),
                encoding="utf-8",
            )
            self.tracker.log_artifact(ranks, "links")

    # ------------------------------------------------------------------ train
    def _batches(self, micro: int) -> list[tuple[str, list[PairExample], list[str], int]]:
        """(name, local examples, source languages, global batch size) for one micro-step.

        The global size is each pair's OWN global micro-batch (pairs may differ in size; a pair
        whose epoch is exhausted has none and is left out). The mixed batch is the union of the
        pairs' batches, its global size the sum of theirs.
        """
        out = []
        for pair in self.data.pairs:
            global_n = self.data.global_batch_size(micro, pair)
            if global_n == 0:
                continue
            ex = self.data.batch(pair, micro, self.rank, self.world)
            out.append((pair.name, ex, [pair.src] * len(ex), global_n))
        if not self.mixed or not out:
            return out
        examples = [e for _, ex, _, _ in out for e in ex]
        langs = [lang for _, _, ls, _ in out for lang in ls]
        return [("mixed", examples, langs, sum(g for *_, g in out))]

    def _encode_batch(
        self, name: str, examples: list[PairExample], langs: list[str]
    ) -> AlignmentBatch:
        pooling = self.cfg.model.pooling
        device = self.accelerator.device
        target = self.cfg.data.target
        src = self.encoder.encode(
            [e.src_words for e in examples], langs, pooling=pooling, device=device
        )
        tgt_words = [e.tgt_words for e in examples]
        tgt = self.encoder.encode(
            tgt_words, [target] * len(examples), pooling=pooling, device=device
        )
        frozen = None
        if self.frozen is not None:
            with torch.no_grad():
                frozen = self.frozen.encode(
                    tgt_words, [target] * len(examples), pooling=pooling, device=device
                )
        teachers = {}
        for model, teacher in self.teachers.items():
            with torch.no_grad():
                teachers[model] = teacher.encode(
                    tgt_words, [target] * len(examples), pooling=pooling, device=device
                )
        # corpus links as attached; linked_positions drops links to truncated words
        links = {spec: [e.links.get(spec, set()) for e in examples] for spec in self.link_specs}
        mlm = self.encoder.masked_lm() if self.need_mlm else None
        return AlignmentBatch(name, src, tgt, frozen, links, teachers, mlm=mlm)

    def _join_gathers(self, name: str) -> None:
        """A rank whose shard of batch ``name`` is empty still takes part in the collectives of
        the objectives that gather the global batch (``Needs.gathers``): their ``loss()`` on an
        empty batch, without gradient (this rank has no vectors of its own to train)."""
        if not self.gathering:
            return
        device = self.accelerator.device

        def empty(hidden_size: int) -> Side:
            ids = torch.zeros(0, 0, dtype=torch.long, device=device)
            none = torch.zeros(0, dtype=torch.long, device=device)
            hidden = torch.zeros(0, 0, hidden_size, device=device)
            return Side(hidden, ids, none, [], [], self.cfg.model.pooling, ids)

        h = self.encoder.hidden_size
        batch = AlignmentBatch(
            name,
            empty(h),
            empty(h),
            empty(h) if self.frozen is not None else None,
            {spec: [] for spec in self.link_specs},
            {model: empty(t.hidden_size) for model, t in self.teachers.items()},
        )
        with torch.no_grad(), self.accelerator.autocast():
            for obj_name in self.gathering:
                self._objective_loss(obj_name, batch)

    def _objective_loss(self, name: str, batch: AlignmentBatch) -> torch.Tensor:
        entry = self.entries[name]
        try:
            value = objective_loss(self.objectives[name], batch)
        except Exception as exc:
            raise PluginError(
                f"{entry.where()} failed in loss() on {batch.pair}: {type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(value, torch.Tensor) or value.dim() != 0:
            raise PluginError(
                f"{entry.where()}: loss() must return a scalar tensor, "
                f"got {type(value).__name__} {getattr(value, 'shape', '')}"
            )
        if torch.is_grad_enabled() and not value.requires_grad:
            # it would train nothing (silently, with reg_weight > 0; with 0, backward() fails)
            raise PluginError(
                f"{entry.where()}: loss() on {batch.pair} returned a tensor without a gradient "
                f"(requires_grad=False, grad_fn=None), so it would train nothing: compute it "
                f"from the batch's vectors with differentiable torch operations (no .detach(), "
                f".item(), numpy or torch.no_grad()); for a batch with nothing to align, "
                f"return e.g. x.sum() * 0.0"
            )
        return value

    def _step_sentences(self, micros: list[int]) -> dict[str, int]:
        """Sentences of each batch name (pair, or ``mixed``) in the optimizer step made of the
        micro-steps ``micros`` (global counts, the same on every rank)."""
        counts: dict[str, int] = {}
        for micro in micros:
            n = {p.name: self.data.global_batch_size(micro, p) for p in self.data.pairs}
            if self.mixed:
                n = {"mixed": sum(n.values())}
            for name, k in n.items():
                counts[name] = counts.get(name, 0) + k
        return counts

    def _micro_step(
        self,
        micro: int,
        sentences: dict[str, int],
        sums: dict[str, torch.Tensor],
        terms: TermGrads | None = None,
    ) -> None:
        """Backpropagate ``len(shard) / N_p · loss`` of every pair's shard of micro-step
        ``micro``, ``N_p = sentences[pair]`` the pair's sentences in the whole optimizer step:
        summed over micro-steps and ranks, each pair contributes the mean of its per-sentence
        losses over the step (each micro-batch mean weighted by its sentence count).

        The encoders run under the run's autocast; the losses in float32 without it
        (:func:`objective_loss`, :func:`drift_regulariser`). With ``terms`` (a measured step,
        ``train.log_grad_terms``) each loss term is backpropagated on its own
        (:class:`TermGrads`).

        Nothing here waits for the device: metrics stay device tensors in ``sums`` (reduced once
        per optimizer step) and a non-finite loss is counted, not tested. Its backward still
        runs; the step is then never applied (:meth:`_diverged` stops the run first). Each
        pair's graph is freed before the next pair is encoded, so memory does not grow with
        the number of pairs.
        """
        for name, examples, langs, global_n in self._batches(micro):
            if not examples:  # this rank's shard is empty (global batch smaller than world)
                self._join_gathers(name)
                continue
            share = len(examples) / global_n
            # this micro-batch's weight in the pair's step mean (its share of the sentences)
            weight = global_n / sentences[name]
            with self.accelerator.autocast():
                batch = self._encode_batch(name, examples, langs)
            parts = self._loss_terms(name, batch, sums, share * weight)
            total = torch.stack(list(parts.values())).sum()
            _accumulate(sums, f"{name}/total", total, share * weight)
            one = torch.ones((), device=total.device)
            _accumulate(sums, f"{name}/weight", one, share * weight)
            _accumulate(sums, "nonfinite", (~torch.isfinite(total)).float(), 1.0)
            # DDP averages over ranks; the losses here are shares of a sum over ranks
            coef = share * weight * self.world
            if terms is None:
                self.accelerator.backward(total * coef)
            else:
                terms.backward(parts, coef, self.accelerator.backward)
            # drop this pair's outputs before the next pair is encoded, and give the freed
            # activations back to the OS (else the heap keeps them: memory grows with pairs)
            del batch, total, parts
            release_freed_memory()

    def _loss_terms(
        self, name: str, batch: AlignmentBatch, sums: dict[str, torch.Tensor], w: float
    ) -> dict[str, torch.Tensor]:
        """Each weighted objective and λ·drift of ``batch`` (float32), their metrics added to
        ``sums`` with weight ``w``. Only the returned dict holds the graph (freed with it)."""
        lam = self.cfg.train.reg_weight
        parts: dict[str, torch.Tensor] = {}
        for obj_name in self.objectives:
            value = self._objective_loss(obj_name, batch)
            _accumulate(sums, f"{name}/{obj_name}", value, w)
            parts[obj_name] = self.weights[obj_name] * value
        if lam > 0:
            reg = drift_regulariser(batch.tgt, batch.tgt_frozen, self.cfg.train.reg_reduction)
            _accumulate(sums, f"{name}/reg", reg, w)
            parts["reg"] = lam * reg
        return parts

    def _term_names(self) -> list[str]:
        """The loss terms whose gradients are measured: objectives, then ``reg``."""
        return [*self.objectives, *(["reg"] if self.cfg.train.reg_weight > 0 else [])]

    def _measured(self, step: int) -> bool:
        """Is optimizer step ``step`` (0-based) one whose per-term gradients are logged?"""
        t = self.cfg.train
        if not t.log_grad_terms:
            return False
        return step < t.grad_terms_first or bool(
            t.grad_terms_every and (step + 1) % t.grad_terms_every == 0
        )

    def _check_balance(self, step: int, norms: dict[str, float]) -> None:
        """Keep the first steps' term norms; after ``train.grad_terms_first`` of them (or at
        the last step, if sooner) warn once when one term dominated all of them."""
        t = self.cfg.train
        if step >= t.grad_terms_first or self._balance_warned:
            return
        self._balance.append({k: v for k, v in norms.items() if k != "total"})
        if len(self._balance) < min(t.grad_terms_first, self.total_steps - self.start_step):
            return
        self._balance_warned = True
        alignment = [n for n in self.objectives if self.weights[n] != 0]
        found = dominant_term(self._balance, alignment)
        if found is None or not self.is_main:
            return
        term, others = found
        median = {k: statistics.median(s[k] for s in self._balance) for k in self._balance[0]}
        what = "the drift term λ·Σ‖c − c0‖²" if term == "reg" else f"objective {term!r}"
        versus = ", ".join(f"{a} {median[a]:.3g}" for a in others)
        hint = (
            "lower train.reg_weight (or set train.dropout=false: with dropout the drift "
            "target moves with every mask)"
            if term == "reg"
            else f"lower objectives.{term}.weight"
        )
        warnings.warn(
            f"train: the gradient of {what} was more than {BALANCE_RATIO:g}x every alignment "
            f"term's over the first {len(self._balance)} optimizer steps (median norms "
            f"{median[term]:.3g} vs {versus}; MLflow metrics grad_norm/*): the updates follow "
            f"it rather than alignment; {hint}",
            GradientBalanceWarning,
            stacklevel=2,
        )

    def train(self) -> RunResult:
        t = self.cfg.train
        progress = progress_bar(self.is_main and self.show_progress, "loss")
        task = progress.add_task(
            "align", total=self.total_steps, completed=self.start_step, loss=float("nan")
        )
        step = self.start_step
        metrics: dict[str, float] = dict(self.history)
        started = time.perf_counter()
        stop = getattr(self, "stop", None) or StopRequest()
        stop.deferred = True  # a signal now stops the run after the current optimizer step
        # optimizer steps clipped so far (a resumed run recovers the count from its metrics)
        clipped = round(metrics.get("grad_clipped_fraction", 0.0) * self.start_step)
        self._balance: list[dict[str, float]] = []
        self._balance_warned = self.start_step >= t.grad_terms_first
        with progress:
            for step in range(self.start_step, self.total_steps):
                if self._self_links_due(step):  # data.links: self
                    self._refresh_self_links(self.self_links, step)
                    self._log_self_links(step)
                first = step * t.grad_accum
                micros = list(range(first, min(first + t.grad_accum, self.micro_total)))
                sums: dict[str, torch.Tensor] = {}
                sentences = self._step_sentences(micros)
                terms = TermGrads(self._term_names(), self.params) if self._measured(step) else None
                with self.accelerator.no_sync(self.ddp):  # accumulate locally
                    for micro in micros:
                        self._micro_step(micro, sentences, sums, terms)
                metrics = self._reduce_metrics(sums)  # the one host sync of the step
                if metrics.pop("nonfinite", 0.0) > 0:
                    self._diverged(step, metrics)
                loss = sum(v for k, v in metrics.items() if k.endswith("/total"))
                metrics = _pair_means(metrics)
                if self.world > 1:
                    self._sync_grads()
                norms = terms.norms(self.world) if terms is not None else None
                del terms
                grad_norm = None
                if t.max_grad_norm:
                    grad_norm = float(
                        self.accelerator.clip_grad_norm_(self.params, t.max_grad_norm)
                    )
                    # clip_grad_norm_ scales by max/(norm + 1e-6) when that is below 1
                    clipped += grad_norm + 1e-6 > t.max_grad_norm
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
                metrics["loss"] = loss
                metrics["lr"] = self.scheduler.get_last_lr()[0]
                if grad_norm is not None:
                    metrics["grad_norm"] = grad_norm
                metrics["grad_clipped_fraction"] = clipped / (step + 1)
                if norms is not None:
                    metrics.update({f"grad_norm/{k}": v for k, v in norms.items()})
                    self._check_balance(step, norms)
                self.tracker.log_metrics(metrics, step + 1)
                progress.update(task, advance=1, loss=metrics["loss"])
                done = step + 1
                saved = False
                if (
                    t.checkpoint_every
                    and done % t.checkpoint_every == 0
                    and done < self.total_steps
                ):
                    self.save_checkpoint(done, metrics)
                    saved = True
                if done < self.total_steps and self._stop_requested(stop):
                    self._interrupt(done, metrics, stop, saved=saved)
        self.save_checkpoint(self.total_steps, metrics)
        model_dir = None
        if t.save_model and self.is_main:
            model_dir = self.output_dir / "model"
            self._save_model(model_dir)
            self.tracker.set_tags({TAG_MODEL_DIR: str(model_dir.resolve())})
        if self.is_main and not t.keep_optimizer_state:  # the run is complete: nothing to resume
            slim_finished(self.ckpt_dir, keep_weights=model_dir is None)
        final = {k: round(v, 6) for k, v in metrics.items()}
        final["train_seconds"] = round(time.perf_counter() - started, 2)
        self.tracker.log_json(final, "final_metrics.json")
        return RunResult(self.run_id, final, self.output_dir, self.total_steps, model_dir)

    def _metric_keys(self) -> list[str]:
        """The same ordered keys on every rank, whatever its shard of the batch held."""
        names = ["mixed"] if self.mixed else [p.name for p in self.data.pairs]
        parts = [*self.objectives, "total", "weight"]
        parts += ["reg"] if self.cfg.train.reg_weight > 0 else []
        return sorted([f"{n}/{p}" for n in names for p in parts] + ["nonfinite"])

    def _reduce_metrics(self, sums: dict[str, torch.Tensor]) -> dict[str, float]:
        """Sum the per-rank weighted loss sums across ranks (keys are identical on all ranks)."""
        keys = self._metric_keys()
        unexpected = set(sums) - set(keys)
        if unexpected:  # a bug, not user error: every rank must reduce the same vector
            raise RuntimeError(f"unexpected metric keys {sorted(unexpected)}")
        device = self.accelerator.device
        zero = torch.zeros((), device=device)
        vec = torch.stack([sums.get(k, zero).detach().float().to(device) for k in keys])
        if self.world > 1:
            import torch.distributed as dist

            dist.all_reduce(vec)
        return {k: float(v) for k, v in zip(keys, vec.cpu().tolist(), strict=True)}

    def _sync_grads(self) -> None:
        """All-reduce the gradients accumulated under ``no_sync`` with one DDP backward.

        Each pair's backward runs outside DDP (a pair's shard may be empty on one rank and not on
        another, so "the last backward of the window" is not the same call on every rank). This
        pass is: a zero loss that touches every trainable parameter, run through the DDP wrapper
        and ``accelerator.backward``, adds nothing and makes DDP reduce the accumulated
        ``.grad`` in its buckets (the mean over ranks; the losses were scaled by the world size,
        so the result is the sum the objective defines).
        """

        def zero() -> torch.Tensor:
            # sum's backward is an expanded view: the accumulation adds in place, no copy
            return torch.stack([p.sum() for p in self.params]).sum() * 0.0

        self.accelerator.backward(self.ddp(zero))

    def _diverged(self, step: int, metrics: dict[str, float]) -> None:
        bad = sorted(k for k, v in metrics.items() if not math.isfinite(v))
        self.tracker.set_tags({TAG_FAILURE: f"non-finite loss at step {step + 1}: {bad}"})
        self.tracker.end("FAILED")
        raise TrainingDiverged(divergence_message(step, bad, self.entries, self.ckpt_dir))

    def save_checkpoint(self, step: int, metrics: dict[str, float]) -> None:
        """Checkpoint ``step`` on every rank (rank states, then the main process writes the
        rest). A failure on any rank stops every rank with an error (none waits forever for a
        rank that has gone)."""
        error: Exception | None = None
        try:
            write_rank_state(self.ckpt_dir, step, self.rank)
        except Exception as exc:  # noqa: BLE001 - re-raised below, on every rank
            error = exc
        self._stop_if_any_rank_failed(error, step)
        if self.is_main:
            try:
                self._finalize_checkpoint(step, metrics)
            except Exception as exc:  # noqa: BLE001
                error = exc
        self._stop_if_any_rank_failed(error, step)

    def _stop_if_any_rank_failed(self, error: Exception | None, step: int) -> None:
        """A collective (the ranks' barrier): re-raise this rank's ``error``; a rank without
        one raises :class:`CheckpointError` when another rank failed."""
        failed = self._any_rank(error is not None)
        if error is not None:
            raise error
        if failed:
            raise CheckpointError(
                f"rank {self.rank}: another rank could not write checkpoint step {step} to "
                f"{self.ckpt_dir} (its error is above); stopping this rank too"
            )

    def _finalize_checkpoint(self, step: int, metrics: dict[str, float]) -> None:
        """The main process's part of a checkpoint: model, optimizer, schedule, state."""
        state = {
            "step": step,
            "micro_step": step * self.cfg.train.grad_accum,
            "run_id": self.run_id,
            "fingerprint": self.cfg.fingerprint(),
            "world_size": self.world,
            "metrics": metrics,
        }
        lora = self.cfg.model.lora is not None
        if lora:  # the checkpoint holds the adapter; the rest is this base model
            state["base_model"] = {
                "name": self.cfg.model.name,
                "revision": self.cfg.model.revision,
                "identity": self._base_identity(),
            }
        finalize_checkpoint(
            self.ckpt_dir,
            step,
            module=self.module,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            state=state,
            config_yaml=self.cfg.to_yaml(),
            keep=self.cfg.train.keep_checkpoints,
            trainable_only=lora,
        )

    def _stop_requested(self, stop: StopRequest) -> bool:
        """Did any rank get SIGTERM/SIGINT? (All ranks must stop after the same step.)"""
        return self._any_rank(stop.signum is not None)

    def _any_rank(self, flag: bool) -> bool:
        """``flag`` OR-ed over the ranks (a collective: every rank must call it)."""
        if self.world > 1:
            import torch.distributed as dist

            vec = torch.tensor([float(flag)], device=self.accelerator.device)
            dist.all_reduce(vec, op=dist.ReduceOp.MAX)
            flag = bool(vec.item() > 0)
        return flag

    def _interrupt(
        self, done: int, metrics: dict[str, float], stop: StopRequest, *, saved: bool
    ) -> None:
        """Checkpoint the completed step ``done`` (unless just written) and stop."""
        if not saved:
            self.save_checkpoint(done, metrics)
        stop.closing = True  # checkpointed: a second signal no longer interrupts the cleanup
        signum = stop.signum or signal.SIGTERM
        name = signal.Signals(signum).name
        raise TrainingInterrupted(
            f"interrupted by {name} after step {done} of {self.total_steps}: checkpoint "
            f"{self.ckpt_dir / f'step-{done:07d}'} written, MLflow run {self.run_id} marked "
            f"KILLED. Resume with: xalign run --resume {self.output_dir}",
            signum,
        )

    def _save_model(self, model_dir: Path) -> None:
        """Save the tuned encoder atomically (``model.partial`` renamed into place).

        Raises:
            CheckpointError: a write failed (path and OS reason); nothing partial is left.
        """
        tmp = model_dir.with_name(f"{model_dir.name}.partial")
        aside = model_dir.with_name(f"{model_dir.name}.old")
        shutil.rmtree(tmp, ignore_errors=True)
        moved = False
        try:
            self.encoder.save(tmp)
            if model_dir.exists():
                shutil.rmtree(aside, ignore_errors=True)
                os.replace(model_dir, aside)
                moved = True
            os.replace(tmp, model_dir)
        except Exception as exc:  # OSError, or a library writer's wrapped error
            reason = io_reason(exc, model_dir.parent)
            shutil.rmtree(tmp, ignore_errors=True)
            if moved and not model_dir.exists():
                os.replace(aside, model_dir)
            raise CheckpointError(
                f"cannot save the model to {model_dir}: {reason}; the final checkpoint in "
                f"{self.ckpt_dir} is complete (free space, then `xalign run --resume "
                f"{self.output_dir}` writes the model)"
            ) from exc
        shutil.rmtree(aside, ignore_errors=True)

    # ---------------------------------------------------------------- cleanup
    def cleanup(self, status: str = "FINISHED", failure: str | None = None) -> None:
        """End the MLflow run with ``status`` (tagging ``xalign.failure``) and accelerate.

        A finished multi-process run waits for every rank before the process group is torn
        down: a rank that finished first (the others still save the model, log, end the run)
        would otherwise close its links while they are open on the other side. A failed or
        interrupted run does not wait (another rank may never come).

        Safe on a recipe whose ``setup()`` stopped early (nothing started, nothing to end).
        """
        tracker = getattr(self, "tracker", None)
        if tracker is not None and tracker.run_id is not None:
            if failure:
                tracker.set_tags({TAG_FAILURE: failure[:5000]})
            tracker.end(status)
        accelerator = getattr(self, "accelerator", None)
        if accelerator is not None:
            if status == "FINISHED" and accelerator.num_processes > 1:
                accelerator.wait_for_everyone()
            accelerator.end_training()


def _libc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim`` (None elsewhere: macOS, musl, Windows)."""
    import ctypes
    import ctypes.util

    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _libc_trim()


def release_freed_memory() -> None:
    """Return the free pages of the C heap to the OS (glibc ``malloc_trim(0)``; no-op elsewhere).

    Torch's CPU tensors come from ``malloc``. Activations of a few MB are carved from the heap,
    and after a backward they are free but still resident; with the next pair's different
    shapes the heap fragments and the resident size grows with the number of pairs (measured
    with e5-small, batch 24: see docs/performance.md). ``malloc_trim`` releases every free
    page of every arena, so the peak is one pair's activations over the weights, whatever
    the number of pairs. It costs milliseconds per call.
    """
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


#: Variables torch.distributed reads to form a process group (set by accelerate launch/torchrun).
_DIST_VARS = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def _process_group_problem(exc: Exception) -> str:
    """Why accelerate could not start: the distributed variables found in the environment."""
    found = ", ".join(f"{k}={os.environ[k]}" for k in _DIST_VARS if k in os.environ) or "none"
    return (
        f"accelerate could not set up the processes of this run ({exc}); distributed "
        f"variables in the environment: {found}. Start several processes with `accelerate "
        f"launch --multi_gpu --num_processes N -m xalign.cli run ...`, or unset these variables "
        f"(left over from another launch?) for a single process"
    )


def _no_accelerator() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return not torch.cuda.is_available() and not (mps is not None and mps.is_available())


def _pair_means(metrics: dict[str, float]) -> dict[str, float]:
    """Per-pair metrics as the mean over the micro-steps the pair took part in.

    ``metrics`` holds, per pair, sums weighted by ``1/len(micro-steps)`` and the summed weight
    ``NAME/weight`` (1 when the pair was in every micro-step of the optimizer step). A pair
    whose sentences ran out this epoch (unequal sizes) is left out instead of logged as 0.
    """
    weights = {k[: -len("/weight")]: v for k, v in metrics.items() if k.endswith("/weight")}
    out = {}
    for key, value in metrics.items():
        name = key.rsplit("/", 1)[0]
        if key.endswith("/weight") or weights.get(name, 1.0) <= 0:
            continue
        out[key] = value / weights[name] if name in weights else value
    return out


def _accumulate(sums: dict[str, torch.Tensor], key: str, value: torch.Tensor, w: float) -> None:
    """``sums[key] += w · value``, detached and on ``value``'s device (no host sync)."""
    value = value.detach().float() * w
    sums[key] = sums[key] + value if key in sums else value


def _broadcast(value: Any, world: int) -> Any:
    if world <= 1:
        return value
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([value])[0]


def run_training(
    cfg: RunConfig,
    *,
    resume: str | Path | None = None,
    registry: PluginRegistry | None = None,
    show_progress: bool = True,
    parent_run_id: str | None = None,
    extra_tags: dict[str, str] | None = None,
) -> RunResult:
    """setup -> train -> cleanup; the MLflow run ends FINISHED, FAILED or KILLED.

    SIGTERM/SIGINT (when called from the main thread) stop the run after the current optimizer
    step with a checkpoint (see :class:`StopRequest`); during setup, or on a second signal, at
    once. Either way the run is marked KILLED and :class:`TrainingInterrupted` (``exit_code``
    128 + signal) says how to resume. Any other error marks it FAILED with an
    ``xalign.failure`` tag, also when ``setup()`` fails after the run was created.
    """
    recipe = AlignmentRecipe(
        cfg,
        registry=registry,
        resume=resume,
        show_progress=show_progress,
        parent_run_id=parent_run_id,
        extra_tags=extra_tags,
    )
    stop = StopRequest()
    recipe.stop = stop
    with stop.installed():
        try:
            recipe.setup()
            result = recipe.train()
        except TrainingInterrupted as exc:
            stop.closing = True
            recipe.cleanup("KILLED", str(exc))
            _UNREPORTED[:] = [exc]
            raise
        except KeyboardInterrupt:
            stop.closing = True
            exc = _interrupted_now(recipe, stop.signum or signal.SIGINT)
            recipe.cleanup("KILLED", str(exc))
            _UNREPORTED[:] = [exc]
            raise exc from None
        except BaseException as exc:
            stop.closing = True
            recipe.cleanup("FAILED", f"{type(exc).__name__}: {exc}")
            raise
        stop.closing = True
        recipe.cleanup("FINISHED")
    return result


# The interruption last raised by run_training until a caller reports it (the CLI prints it
# even when another signal lands between the handlers' restore and its ``error:`` line).
_UNREPORTED: list[TrainingInterrupted] = []


def unreported_interruption() -> TrainingInterrupted | None:
    """The :class:`TrainingInterrupted` run_training raised last, once (then forgotten)."""
    return _UNREPORTED.pop() if _UNREPORTED else None


def _interrupted_now(recipe: AlignmentRecipe, signum: int) -> TrainingInterrupted:
    """The error for a stop that could not wait for a safe point (setup, second signal)."""
    name = signal.Signals(signum).name
    run = getattr(recipe, "run_id", None)
    killed = f"MLflow run {run} marked KILLED" if run else "no MLflow run was started"
    ckpt_dir = getattr(recipe, "ckpt_dir", None)
    resume_dir = getattr(recipe, "output_dir", None) or recipe.resume_from
    try:
        ckpt = find_checkpoint(ckpt_dir or resume_dir) if (ckpt_dir or resume_dir) else None
    except FileNotFoundError:
        ckpt = None
    if ckpt is not None:
        tail = (
            f"the last complete checkpoint is {ckpt}. Resume with: xalign run --resume {resume_dir}"
        )
    else:
        tail = "no checkpoint was written yet: start the run again"
    return TrainingInterrupted(
        f"interrupted by {name} before a safe point; {killed}; {tail}", signum
    )
