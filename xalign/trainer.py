"""The alignment recipe (torchtune style): ``setup()``, ``train()``, ``cleanup()``.

Per optimizer step, for each micro-step and each language pair: encode source and target,
compute every objective's loss plus the English drift regulariser λ·Σ‖c(t) − c0(t)‖², and
backpropagate right away (streaming: the same gradient as summing first, but memory does not
grow with the number of language pairs). Gradients are summed across data-parallel ranks once
per optimizer step, each rank's loss weighted by its share of the global batch, so N ranks
reproduce the 1-rank run with the same global batch.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

import xalign
from xalign.batch import AlignmentBatch, Side
from xalign.checkpoint import (
    finalize_checkpoint,
    find_checkpoint,
    load_checkpoint,
    write_rank_state,
)
from xalign.config import RunConfig
from xalign.data.sampler import PairExample, ParallelData, build_parallel_data
from xalign.encoders import Encoder, load_encoder
from xalign.links import LinkSpec
from xalign.objective import Objective
from xalign.plugins import PluginError, PluginRegistry, Registered, get_registry
from xalign.progress import progress_bar
from xalign.tracking import Tracker, git_sha


class TrainingDiverged(RuntimeError):
    """A loss became NaN/inf; the last checkpoint is kept."""


@dataclass
class RunResult:
    run_id: str | None
    metrics: dict[str, float]
    output_dir: Path
    steps: int
    model_dir: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class AlignmentModule(nn.Module):
    """Everything that is trained: the encoder and any objective parameters."""

    def __init__(self, encoder: Encoder, objectives: dict[str, Objective]) -> None:
        super().__init__()
        self.encoder = encoder
        self.objectives = nn.ModuleDict(objectives)


def drift_regulariser(tgt: Side, frozen: Side) -> torch.Tensor:
    """Σ_t ‖c(t) − c0(t)‖² over each English sentence's words, averaged over sentences."""
    c, mask = tgt.words_vectors()
    c0, _ = frozen.words_vectors()
    sq = ((c - c0) ** 2).sum(-1) * mask
    return sq.sum(-1).mean()


def _all_reduce_grads(params: list[nn.Parameter], bucket: int = 1 << 24) -> None:
    """Sum gradients across ranks in flat buckets (a missing grad counts as zero)."""
    import torch.distributed as dist

    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    group: list[nn.Parameter] = []
    size = 0
    for p in params + [None]:  # type: ignore[list-item]
        if p is not None:
            group.append(p)
            size += p.numel()
        if group and (p is None or size >= bucket):
            flat = torch.cat([g.grad.reshape(-1) for g in group])
            dist.all_reduce(flat)
            offset = 0
            for g in group:
                n = g.numel()
                g.grad.copy_(flat[offset:offset + n].view_as(g.grad))
                offset += n
            group, size = [], 0


class AlignmentRecipe:
    """Fine-tune an encoder with one or more alignment objectives."""

    def __init__(self, cfg: RunConfig, *, registry: PluginRegistry | None = None,
                 resume: str | Path | None = None, show_progress: bool = True,
                 parent_run_id: str | None = None,
                 extra_tags: dict[str, str] | None = None) -> None:
        self.cfg = cfg
        self.parent_run_id = parent_run_id
        self.extra_tags = extra_tags or {}
        self.registry = registry or get_registry()
        self.resume_from = Path(resume) if resume else None
        self.show_progress = show_progress

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        cfg, t = self.cfg, self.cfg.train
        if t.mixed_precision == "fp16":
            raise ValueError("train.mixed_precision=fp16 is not supported (use bf16 or no)")
        # Without an accelerator device, accelerate forms a gloo (MULTI_CPU) process group only
        # when asked for the CPU explicitly; with one device it changes nothing.
        self.accelerator = Accelerator(mixed_precision=t.mixed_precision, cpu=_no_accelerator())
        self.rank = self.accelerator.process_index
        self.world = self.accelerator.num_processes
        self.is_main = self.accelerator.is_main_process
        set_seed(t.seed, device_specific=True)

        self.entries: dict[str, Registered] = {
            name: self.registry.objective(name) for name in cfg.objectives}
        self.weights = cfg.objective_weights()
        self.encoder = load_encoder(cfg.model.name, layer=cfg.model.layer,
                                    max_length=cfg.model.max_length, revision=cfg.model.revision)
        hidden = self.encoder.hidden_size
        self.objectives: dict[str, Objective] = {}
        for name, entry in self.entries.items():
            try:
                self.objectives[name] = entry.cls.from_options(cfg.objective_options(name),
                                                               hidden_size=hidden)
            except PluginError:
                raise
            except Exception as exc:
                raise PluginError(f"{entry.where()}: bad options: {exc}") from exc
        needs = {name: obj.needs() for name, obj in self.objectives.items()}
        self.link_specs: list[LinkSpec] = sorted({s for n in needs.values() for s in n.links},
                                                 key=repr)
        self.mixed = any(n.mixed_languages for n in needs.values())
        if self.mixed and not all(n.mixed_languages for n in needs.values()):
            raise ValueError("objectives that need mixed-language batches cannot be combined "
                             "with per-language-pair objectives in one run")
        self.need_frozen = t.reg_weight > 0 or any(n.frozen_target for n in needs.values())
        self.frozen = self.encoder.frozen_copy() if self.need_frozen else None

        self.data: ParallelData = build_parallel_data(
            cfg.data.corpus, cfg.data.languages, cfg.data.target,
            pairs_per_language=cfg.data.pairs_per_language, batch_size=t.batch_size,
            seed=t.seed, min_words=cfg.data.min_words, max_words=cfg.data.max_words,
            max_ratio=cfg.data.max_ratio, limit=cfg.data.limit)
        if self.link_specs:
            attach_links(self.data, self.link_specs, seed=t.seed)
        for name, objective in self.objectives.items():
            try:
                objective.prepare(self.data)
            except Exception as exc:
                raise PluginError(f"{self.entries[name].where()} failed in prepare(): "
                                  f"{type(exc).__name__}: {exc}") from exc

        device = self.accelerator.device
        self.module = AlignmentModule(self.encoder, self.objectives).to(device)
        # Dropout on (standard fine-tuning) or off; the frozen copy c0 is always in eval mode,
        # so with dropout the drift regulariser is not zero even before the first update.
        self.module.train(t.dropout)
        if self.frozen is not None:
            self.frozen.to(device)
        self.params = [p for p in self.module.parameters() if p.requires_grad]
        if t.optimizer == "sgd":
            self.optimizer = torch.optim.SGD(self.params, lr=t.lr, weight_decay=t.weight_decay)
        else:
            opt_cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
            self.optimizer = opt_cls(self.params, lr=t.lr, betas=tuple(t.betas), eps=t.eps,
                                     weight_decay=t.weight_decay)
        self.micro_total = self.data.micro_steps * t.epochs
        self.total_steps = math.ceil(self.micro_total / t.grad_accum)
        if t.max_steps is not None:
            self.total_steps = min(self.total_steps, t.max_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_lambda)

        self.start_step = 0
        run_id = None
        ckpt = None
        if self.resume_from is not None:
            ckpt = find_checkpoint(self.resume_from)
            state = load_checkpoint(ckpt, module=self.module, optimizer=self.optimizer,
                                    scheduler=self.scheduler, rank=self.rank)
            if state.get("fingerprint") != cfg.fingerprint():
                raise ValueError(f"{ckpt}: checkpoint was written with a different config "
                                 f"(fingerprint {state.get('fingerprint')} vs "
                                 f"{cfg.fingerprint()}); resume with the same config")
            self.start_step = int(state["step"])
            run_id = state.get("run_id")
            self.history = state.get("metrics", {})
        else:
            self.history = {}
        self.tracker = Tracker(cfg.tracking.uri, cfg.tracking.experiment, enabled=self.is_main)
        if self.is_main:
            run_id = self._start_tracking(run_id)
        run_id = _broadcast(run_id, self.world)
        self.run_id = run_id
        out = Path(t.output_dir) / (run_id or "run")
        self.output_dir = Path(self.resume_from_output(ckpt) or out)
        self.ckpt_dir = self.output_dir / "checkpoints"
        if self.is_main:
            self.ckpt_dir.mkdir(parents=True, exist_ok=True)
            (self.output_dir / "config.yaml").write_text(cfg.to_yaml(), encoding="utf-8")
            self.tracker.set_tags({"xalign.output_dir": str(self.output_dir.resolve())})

    def resume_from_output(self, ckpt: Path | None) -> Path | None:
        return ckpt.parent.parent if ckpt is not None else None

    def _lr_lambda(self, step: int) -> float:
        t = self.cfg.train
        if t.warmup_steps and step < t.warmup_steps:
            return (step + 1) / t.warmup_steps
        if t.schedule == "linear":
            span = max(1, self.total_steps - t.warmup_steps)
            return max(0.0, 1.0 - (step - t.warmup_steps) / span)
        return 1.0

    def _start_tracking(self, run_id: str | None) -> str | None:
        cfg = self.cfg
        tags = {**self.extra_tags, "xalign.objective": "+".join(cfg.objectives),
                "xalign.fingerprint": cfg.fingerprint(),
                "xalign.kind": "train"}
        for name, entry in self.entries.items():
            tags[f"xalign.plugin.{name}"] = f"{entry.source.distribution} {entry.source.version}"
        name = cfg.tracking.run_name or "+".join(cfg.objectives)
        resumed = run_id is not None
        run_id = self.tracker.start(run_name=name, run_id=run_id, tags=tags,
                                    parent_run_id=self.parent_run_id)
        if not resumed:
            params = cfg.flat()
            params["xalign.version"] = xalign.__version__
            params["xalign.git_sha"] = git_sha() or "none"
            params["data.pairs"] = ",".join(p.name for p in self.data.pairs)
            params["train.world_size"] = self.world
            params["train.total_steps"] = self.total_steps
            for n, entry in self.entries.items():
                params[f"plugin.{n}.version"] = entry.source.version
                params[f"plugin.{n}.distribution"] = entry.source.distribution
            self.tracker.log_params(params)
            self.tracker.log_text(cfg.to_yaml(), "config.yaml")
            self.tracker.log_json(self.data.stats(), "data_stats.json")
        return run_id

    # ------------------------------------------------------------------ train
    def _batches(self, micro: int) -> list[tuple[str, list[PairExample], list[str], int]]:
        """(name, local examples, source languages, global batch size) for one micro-step."""
        out = []
        for pair in self.data.pairs:
            ex = self.data.batch(pair, micro, self.rank, self.world)
            out.append((pair.name, ex, [pair.src] * len(ex), self.data.global_batch_size(micro)))
        if not self.mixed:
            return out
        examples = [e for _, ex, _, _ in out for e in ex]
        langs = [lang for _, _, ls, _ in out for lang in ls]
        return [("mixed", examples, langs, sum(g for *_, g in out))]

    def _encode_batch(self, name: str, examples: list[PairExample], langs: list[str]
                      ) -> AlignmentBatch:
        pooling = self.cfg.model.pooling
        device = self.accelerator.device
        target = self.cfg.data.target
        src = self.encoder.encode([e.src_words for e in examples], langs, pooling=pooling,
                                  device=device)
        tgt_words = [e.tgt_words for e in examples]
        tgt = self.encoder.encode(tgt_words, [target] * len(examples), pooling=pooling,
                                  device=device)
        frozen = None
        if self.frozen is not None:
            with torch.no_grad():
                frozen = self.frozen.encode(tgt_words, [target] * len(examples),
                                            pooling=pooling, device=device)
        links = {}
        for spec in self.link_specs:
            links[spec] = [_clip_links(e.links.get(spec, set()), int(src.n_words[i]),
                                       int(tgt.n_words[i])) for i, e in enumerate(examples)]
        return AlignmentBatch(name, src, tgt, frozen, links)

    def _objective_loss(self, name: str, batch: AlignmentBatch) -> torch.Tensor:
        entry = self.entries[name]
        try:
            value = self.objectives[name].loss(batch)
        except Exception as exc:
            raise PluginError(f"{entry.where()} failed in loss() on {batch.pair}: "
                              f"{type(exc).__name__}: {exc}") from exc
        if not isinstance(value, torch.Tensor) or value.dim() != 0:
            raise PluginError(f"{entry.where()}: loss() must return a scalar tensor, "
                              f"got {type(value).__name__} {getattr(value, 'shape', '')}")
        return value

    def _micro_step(self, micro: int, scale_micro: float, sums: dict[str, torch.Tensor]) -> None:
        lam = self.cfg.train.reg_weight
        for name, examples, langs, global_n in self._batches(micro):
            if not examples:
                continue
            share = len(examples) / global_n
            with self.accelerator.autocast():
                batch = self._encode_batch(name, examples, langs)
                total = torch.zeros((), device=self.accelerator.device)
                for obj_name in self.objectives:
                    value = self._objective_loss(obj_name, batch)
                    _accumulate(sums, f"{name}/{obj_name}", value, share * scale_micro)
                    total = total + self.weights[obj_name] * value
                if lam > 0:
                    reg = drift_regulariser(batch.tgt, batch.tgt_frozen)
                    _accumulate(sums, f"{name}/reg", reg, share * scale_micro)
                    total = total + lam * reg
            _accumulate(sums, f"{name}/total", total, share * scale_micro)
            if torch.isfinite(total):
                (total * share * scale_micro).backward()
            else:
                _accumulate(sums, "nonfinite", torch.ones(()), 1.0)

    def train(self) -> RunResult:
        t = self.cfg.train
        progress = progress_bar(self.is_main and self.show_progress, "loss")
        task = progress.add_task("align", total=self.total_steps, completed=self.start_step,
                                 loss=float("nan"))
        step = self.start_step
        metrics: dict[str, float] = dict(self.history)
        started = time.perf_counter()
        with progress:
            for step in range(self.start_step, self.total_steps):
                first = step * t.grad_accum
                micros = list(range(first, min(first + t.grad_accum, self.micro_total)))
                sums: dict[str, torch.Tensor] = {}
                for micro in micros:
                    self._micro_step(micro, 1.0 / len(micros), sums)
                metrics = self._reduce_metrics(sums)
                if metrics.pop("nonfinite", 0.0) > 0:
                    self._diverged(step, metrics)
                if self.world > 1:
                    _all_reduce_grads(self.params)
                grad_norm = None
                if t.max_grad_norm:
                    grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params,
                                                                     t.max_grad_norm))
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
                metrics["loss"] = sum(v for k, v in metrics.items() if k.endswith("/total"))
                metrics["lr"] = self.scheduler.get_last_lr()[0]
                if grad_norm is not None:
                    metrics["grad_norm"] = grad_norm
                self.tracker.log_metrics(metrics, step + 1)
                progress.update(task, advance=1, loss=metrics["loss"])
                done = step + 1
                if t.checkpoint_every and done % t.checkpoint_every == 0 and \
                        done < self.total_steps:
                    self.save_checkpoint(done, metrics)
        self.save_checkpoint(self.total_steps, metrics)
        model_dir = None
        if t.save_model and self.is_main:
            model_dir = self.output_dir / "model"
            self.encoder.save(model_dir)
            self.tracker.set_tags({"xalign.model_dir": str(model_dir.resolve())})
        final = {k: round(v, 6) for k, v in metrics.items()}
        final["train_seconds"] = round(time.perf_counter() - started, 2)
        self.tracker.log_json(final, "final_metrics.json")
        return RunResult(self.run_id, final, self.output_dir, self.total_steps, model_dir)

    def _metric_keys(self) -> list[str]:
        """The same ordered keys on every rank, whatever its shard of the batch held."""
        names = ["mixed"] if self.mixed else [p.name for p in self.data.pairs]
        parts = [*self.objectives, "total"] + (["reg"] if self.cfg.train.reg_weight > 0 else [])
        return sorted([f"{n}/{p}" for n in names for p in parts] + ["nonfinite"])

    def _reduce_metrics(self, sums: dict[str, torch.Tensor]) -> dict[str, float]:
        """Sum the per-rank weighted loss sums across ranks (keys are identical on all ranks)."""
        keys = self._metric_keys()
        unexpected = set(sums) - set(keys)
        if unexpected:  # a bug, not user error: every rank must reduce the same vector
            raise RuntimeError(f"unexpected metric keys {sorted(unexpected)}")
        vec = torch.stack([sums.get(k, torch.zeros(())).detach().float().cpu() for k in keys])
        if self.world > 1:
            import torch.distributed as dist

            vec = vec.to(self.accelerator.device)
            dist.all_reduce(vec)
            vec = vec.cpu()
        return {k: float(v) for k, v in zip(keys, vec.tolist(), strict=True)}

    def _diverged(self, step: int, metrics: dict[str, float]) -> None:
        bad = sorted(k for k, v in metrics.items() if not math.isfinite(v))
        self.tracker.set_tags({"xalign.failure": f"non-finite loss at step {step + 1}: {bad}"})
        self.tracker.end("FAILED")
        owners = [self.entries[k.split("/")[1]].where() for k in bad
                  if k.split("/")[1] in self.entries]
        raise TrainingDiverged(
            f"non-finite loss at step {step + 1} in {', '.join(bad) or 'the total'}"
            f"{' from ' + '; '.join(sorted(set(owners))) if owners else ''}. The run stopped "
            f"without applying this step; the last checkpoint in {self.ckpt_dir} is kept "
            f"(try a lower train.lr or a larger blur).")

    def save_checkpoint(self, step: int, metrics: dict[str, float]) -> None:
        write_rank_state(self.ckpt_dir, step, self.rank)
        self.accelerator.wait_for_everyone()
        if self.is_main:
            state = {"step": step, "micro_step": step * self.cfg.train.grad_accum,
                     "run_id": self.run_id, "fingerprint": self.cfg.fingerprint(),
                     "world_size": self.world, "metrics": metrics}
            finalize_checkpoint(self.ckpt_dir, step, module=self.module,
                                optimizer=self.optimizer, scheduler=self.scheduler,
                                state=state, config_yaml=self.cfg.to_yaml(),
                                keep=self.cfg.train.keep_checkpoints)
        self.accelerator.wait_for_everyone()

    # ---------------------------------------------------------------- cleanup
    def cleanup(self, status: str = "FINISHED") -> None:
        self.tracker.end(status)
        self.accelerator.end_training()


def _no_accelerator() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return not torch.cuda.is_available() and not (mps is not None and mps.is_available())


def _accumulate(sums: dict[str, torch.Tensor], key: str, value: torch.Tensor, w: float) -> None:
    sums[key] = sums.get(key, torch.zeros(())) + value.detach().float().cpu() * w


def _clip_links(links: set[tuple[int, int]], n_src: int, n_tgt: int) -> set[tuple[int, int]]:
    """Drop links to words cut off by subword truncation."""
    return {(i, j) for i, j in links if i < n_src and j < n_tgt}


def _broadcast(value: Any, world: int) -> Any:
    if world <= 1:
        return value
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([value])[0]


def attach_links(data: ParallelData, specs: list[LinkSpec], *, seed: int) -> None:
    """Align each pair's corpus once with eflomal and attach the filtered links per spec."""
    from xalign.alignment import align_corpus, drop_identical, one_to_one

    for pair in data.pairs:
        src = [e.src_words for e in pair.examples]
        tgt = [e.tgt_words for e in pair.examples]
        for spec in specs:
            links = align_corpus(src, tgt, symmetrization=spec.symmetrization,
                                 max_words=spec.max_words, seed=seed)
            for ex, lk in zip(pair.examples, links, strict=True):
                if spec.drop_identical:
                    lk = drop_identical(lk, ex.src_words, ex.tgt_words)
                if spec.one_to_one:
                    lk = one_to_one(lk)
                ex.links[spec] = lk


def run_training(cfg: RunConfig, *, resume: str | Path | None = None,
                 registry: PluginRegistry | None = None, show_progress: bool = True,
                 parent_run_id: str | None = None, extra_tags: dict[str, str] | None = None
                 ) -> RunResult:
    """setup -> train -> cleanup, marking the MLflow run FAILED on errors."""
    recipe = AlignmentRecipe(cfg, registry=registry, resume=resume, show_progress=show_progress,
                             parent_run_id=parent_run_id, extra_tags=extra_tags)
    recipe.setup()
    try:
        result = recipe.train()
    except BaseException:
        recipe.cleanup("FAILED")
        raise
    recipe.cleanup("FINISHED")
    return result
