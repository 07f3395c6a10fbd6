"""Joint realignment: an alignment objective as an auxiliary loss while a task fine-tunes.

Gaschi et al. (Findings of ACL 2023, "Exploring the relationship between alignment and
cross-lingual transfer in multilingual transformers", §3.2 "joint" realignment): every task
optimiser step also takes one batch of the parallel corpus and adds the realignment loss to
the task loss, instead of realigning first and fine-tuning after ("sequential"). Here any
objective plugin is the realignment loss, on the data path of ``xalign run``: the run
config's corpus is prepared (:func:`xalign.data.prepare.prepare_run_data`: words, filters,
cached word links), planned per language pair, and each pair's batch is encoded by the
task model's own encoder (shared weights) and scored by the plugin through
:func:`xalign.recipe.objective_loss` (float32).

Step ``t`` of ``T`` task optimiser steps adds ``w(t) · Σ_p ℓ_p`` (``ℓ_p`` the objective on
language pair ``p``'s batch), with ``w(t)``:

- ``constant``: ``weight``;
- ``linear``: ``weight · (1 − t/T)`` (decays to 0 over training);
- ``every``: ``weight`` on every ``every``-th step (``t mod every = 0``), else 0 (the
  corpus batch is then not encoded at all).

No drift regulariser: the task loss is what keeps the encoder from drifting.

The two gradients are summed before one optimiser step. Under Adam their relative norm
decides more than the weight does: the fine-tuning log records the ratio
‖w(t)·∇ℓ‖ / ‖∇L_task‖ per epoch, and ``max_grad_ratio`` caps it
(:func:`xalign.evaluation.finetune.add_auxiliary_gradient`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from xalign.errors import ConfigError, XalignWarning

SCHEDULES = ("constant", "linear", "every")


@dataclass
class JointSettings:
    """Task option ``joint``: the objective trained as an auxiliary loss during fine-tuning.

    - ``objective``: an objective plugin's name (``xalign plugins``).
    - ``options``: its options (over those of ``objectives.<name>`` in ``config``).
    - ``weight``: the loss weight ``w`` (>= 0) of the schedule.
    - ``schedule``: ``constant``, ``linear`` (w·(1 − t/T)) or ``every`` (w every ``every``-th
      optimiser step, else no corpus batch).
    - ``every``: k of the ``every`` schedule (>= 1).
    - ``batch_size``: sentence pairs per language pair per optimiser step (>= 1).
    - ``max_grad_ratio``: null, or r > 0: scale the weighted auxiliary gradient down so that
      its norm is at most r times the task gradient's (never up).
    - ``config``: the run config (YAML) whose ``data.*`` names the parallel corpus, languages,
      filters and word links, and ``model.layer``/``max_length`` the aligned layer; null:
      xalign's defaults (the demo corpus).
    - ``overrides``: ``KEY=VALUE`` overrides of that config (as ``xalign run --set``).
    """

    objective: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    weight: float = 1.0
    schedule: str = "constant"
    every: int = 1
    batch_size: int = 8
    max_grad_ratio: float | None = None
    config: str | None = None
    overrides: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.objective:
            raise ValueError("joint.objective: name an objective plugin (e.g. sinkhorn)")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"joint.schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        weight = _real(self.weight)
        if weight is None or not weight >= 0:
            raise ValueError(f"joint.weight must be >= 0 and finite, got {self.weight!r}")
        self.weight = weight
        for key in ("every", "batch_size"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"joint.{key} must be >= 1 (an integer), got {value!r}")
        if self.max_grad_ratio is not None:
            ratio = _real(self.max_grad_ratio)
            if ratio is None or not ratio > 0:
                raise ValueError(
                    f"joint.max_grad_ratio must be > 0 and finite, or null (no cap), got "
                    f"{self.max_grad_ratio!r}"
                )
            self.max_grad_ratio = ratio

    def inputs(self) -> list[Path]:
        """The local files this loss reads (:func:`joint_inputs`); what
        :meth:`xalign.Task.inputs` adds for a task with a ``joint`` option."""
        return joint_inputs(self)

    def weight_at(self, step: int, total: int) -> float:
        """``w(t)`` of optimiser step ``step`` (0-based) of ``total`` (module docstring)."""
        if self.schedule == "linear":
            return self.weight * max(0.0, 1.0 - step / max(1, total))
        if self.schedule == "every":
            return self.weight if step % self.every == 0 else 0.0
        return self.weight

    def run_config(self, seed: int) -> Any:
        """The :class:`xalign.config.RunConfig` of the corpus: ``config`` + ``overrides``, the
        plan's batch (``batch_size`` per pair, no accumulation) and seed ``seed``."""
        from xalign.config import load_config

        return load_config(
            self.config,
            [
                *self.overrides,
                f"train.batch_size={self.batch_size}",
                "train.grad_accum=1",
                f"train.seed={seed}",
            ],
            objectives=[self.objective],
        )


class JointWarning(XalignWarning):
    """A joint fine-tuning whose auxiliary loss is likely to hold the task back: its gradient
    outgrew the task's (:func:`xalign.evaluation.finetune.add_auxiliary_gradient`), or the
    objective reads the frozen initial model, which nothing keeps the encoder near."""


#: a median auxiliary/task gradient-norm ratio at or above this warns (docs/joint.md: at
#: 1.13, English pos-mini fell 16 points)
GRAD_RATIO_WARNING = 1.0


def _real(value: Any) -> float | None:
    """``value`` as a finite float (a number, or a string such as YAML's ``1e-9``), else None;
    booleans are not numbers here."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def joint_inputs(settings: JointSettings) -> list[Path]:
    """Local files the joint loss reads: the config file and the corpus files of its
    languages (for an evaluation's reuse key; ``demo`` and ``hf:`` corpora have none)."""
    from xalign.data.corpus import language_spec, spec_files

    cfg = settings.run_config(0)
    out = [Path(settings.config)] if settings.config else []
    for lang in cfg.data.languages:
        files = spec_files(language_spec(cfg.data.corpus, lang), lang, cfg.data.target)
        out += [f for f in files or [] if f.is_file()]
    return out


class JointLoss(nn.Module):
    """The auxiliary loss of one fine-tuning: the objective, its corpus plan and the encoder
    view of the task model (``model.base_model``, the same parameters).

    ``parameters()`` are the objective's own (a projection head, if any): the fine-tuning
    optimiser trains them with the model.

    Raises:
        ConfigError: bad settings, an objective that needs the masked-LM head (a task model
            has none), or a config that does not load.
        PluginError: the objective's options or ``prepare`` fail (naming the plugin).
    """

    def __init__(
        self,
        settings: JointSettings,
        model: nn.Module,
        tokenizer: Any,
        *,
        seed: int = 0,
        registry: Any = None,
    ) -> None:
        super().__init__()
        from xalign.data.prepare import prepare_run_data
        from xalign.encoders.encoder import Encoder
        from xalign.plugins import PluginError, build_objective, get_registry
        from xalign.recipe import frozen_upto_layer

        self.settings = settings
        cfg = settings.run_config(seed)
        self.cfg = cfg
        registry = registry or get_registry()
        entry = registry.objective(settings.objective)
        self.where = entry.where()
        base = getattr(model, "base_model", model)
        self.encoder = _SharedEncoder(
            Encoder(
                base,
                tokenizer,
                name=cfg.model.name,
                layer=cfg.model.layer,
                max_length=cfg.model.max_length,
            )
        )
        options = {**cfg.objective_options(settings.objective), **settings.options}
        self.objective = build_objective(entry, options, hidden_size=base.config.hidden_size)
        needs = self.objective.needs()
        if needs.mlm:
            raise ConfigError(
                f"joint.objective {settings.objective!r} needs the masked-LM head, which a "
                f"fine-tuned task model does not have; pick another objective"
            )
        self.links = sorted(needs.links, key=repr)
        if needs.frozen_target and settings.weight > 0:
            import warnings

            warnings.warn(
                f"joint.objective {settings.objective!r} reads the frozen initial model's "
                f"vectors (Needs.frozen_target; e.g. l2's target: frozen, distill's default "
                f"teacher), and joint fine-tuning has no drift term: the task moves English "
                f"away from them while the objective pins the other languages to them (on "
                f"pos-mini, joint l2 with max_grad_ratio 0.1 lost 31 points on the trained "
                f"languages with target frozen, 0.5 with target tuned; docs/joint.md); where "
                f"the objective offers a tuned target, use it (objectives.l2.target=tuned)",
                JointWarning,
                stacklevel=2,
            )
        self.mixed = needs.mixed_languages
        enc = self.encoder.inner
        self._frozen = [frozen_upto_layer(enc)] if needs.frozen_target else []
        self._teachers: dict[str, Any] = {}
        if needs.teacher is not None:
            from xalign.encoders import load_encoder

            teacher = load_encoder(needs.teacher, max_length=cfg.model.max_length, setting=None)
            teacher.eval().requires_grad_(False)
            self._teachers[needs.teacher] = teacher
        self.data, _, prepared = prepare_run_data(cfg, enc, self.links)
        self.self_links = self._setup_self_links(prepared)
        try:
            self.objective.prepare(self.data)
        except Exception as exc:
            raise PluginError(
                f"{self.where} failed in prepare(): {type(exc).__name__}: {exc}"
            ) from exc

    def _setup_self_links(self, prepared: Any) -> Any:
        """``data.links: self``: the task model's own links, extracted before its first step
        (:mod:`xalign.self_links`, the same extraction as alignment training), then every
        ``data.self_links.refresh_every`` auxiliary steps from the model as the task has
        moved it; None for the other link sources or without links."""
        from xalign.self_links import SelfLinks, is_self

        self.refreshed: list[int] = []
        if not (self.links and is_self(self.cfg.data.links)):
            return None
        self_links = SelfLinks(
            self.cfg.data.self_links,
            self.cfg.model.layer,
            prepared.pairs,
            self.links,
            target=self.cfg.data.target,
        )
        self_links.refresh(self.encoder.inner, 0, device=_device_of(self.encoder.inner))
        self.refreshed.append(0)
        return self_links

    def forward(self, step: int, *, device: str | torch.device = "cpu") -> Tensor:
        """``Σ_p ℓ_p`` over the language pairs' batches of plan micro-step ``step`` (the plan
        wraps around: a new epoch of the corpus when the task outlasts it); float32 scalar.
        With ``data.links: self``, the links are extracted again first when ``step`` is a
        positive multiple of ``data.self_links.refresh_every`` (``refreshed`` lists the
        steps)."""
        from xalign.batch import AlignmentBatch
        from xalign.recipe import objective_loss

        every = self.cfg.data.self_links.refresh_every
        if self.self_links is not None and every > 0 and step > 0 and step % every == 0:
            if step not in self.refreshed:
                with torch.autocast(torch.device(device).type, enabled=False):
                    self.self_links.refresh(self.encoder.inner, step, device=device)
                self.refreshed.append(step)
        data, enc, target = self.data, self.encoder.inner, self.cfg.data.target
        pooling = self.cfg.model.pooling
        batches = []
        for pair in data.pairs:
            examples = data.batch(pair, step % data.micro_steps)
            if examples:
                batches.append((pair.name, examples, [pair.src] * len(examples)))
        if self.mixed and batches:
            batches = [
                (
                    "mixed",
                    [e for _, ex, _ in batches for e in ex],
                    [lang for *_, langs in batches for lang in langs],
                )
            ]
        total = torch.zeros((), device=device)
        for name, examples, langs in batches:
            tgt_words = [e.tgt_words for e in examples]
            tgt_langs = [target] * len(examples)
            src = enc.encode([e.src_words for e in examples], langs, pooling=pooling, device=device)
            tgt = enc.encode(tgt_words, tgt_langs, pooling=pooling, device=device)
            with torch.no_grad():
                frozen = (
                    self._frozen[0].to(device).encode(tgt_words, tgt_langs, pooling=pooling)
                    if self._frozen
                    else None
                )
                teachers = {
                    k: t.to(device).encode(tgt_words, tgt_langs, pooling=pooling)
                    for k, t in self._teachers.items()
                }
            links = {spec: [e.links.get(spec, set()) for e in examples] for spec in self.links}
            batch = AlignmentBatch(name, src, tgt, frozen, links, teachers)
            try:
                value = objective_loss(self.objective, batch)
            except Exception as exc:
                from xalign.plugins import PluginError

                raise PluginError(
                    f"{self.where} failed in loss() on {name}: {type(exc).__name__}: {exc}"
                ) from exc
            total = total + value
        return total


class _SharedEncoder:
    """Holds the encoder view outside ``nn.Module`` registration, so the task model's
    parameters are not listed twice (they are the fine-tuning's own)."""

    def __init__(self, encoder: Any) -> None:
        self.inner = encoder


def _device_of(module: nn.Module) -> torch.device:
    """The device of ``module``'s first parameter (CPU for a module without any)."""
    return next((p.device for p in module.parameters()), torch.device("cpu"))
