"""Run configuration: dataclass defaults <- YAML file <- ``--set key=value`` overrides.

The defaults are the README demo (embedded model, demo corpus, minutes on 2 CPU cores);
``configs/wordot.yaml`` holds the paper's settings.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from xalign.objective import build_dataclass


class ConfigError(ValueError):
    """Bad configuration; the message names the file or override."""


@dataclass
class ModelConfig:
    name: str = "packaged:multilingual-e5-small"
    layer: int = -1
    pooling: str = "last"
    max_length: int = 128
    revision: str | None = None


@dataclass
class DataConfig:
    corpus: Any = "demo"
    languages: list[str] = field(default_factory=lambda: ["bg", "de", "el", "es", "fr"])
    target: str = "en"
    pairs_per_language: int | None = None
    min_words: int = 1
    max_words: int = 64
    max_ratio: float | None = None
    limit: int | None = None


@dataclass
class TrainConfig:
    batch_size: int = 24
    grad_accum: int = 2
    lr: float = 5e-5
    optimizer: str = "adam"
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    max_grad_norm: float | None = 1.0
    schedule: str = "constant"
    warmup_steps: int = 0
    epochs: int = 1
    max_steps: int | None = None
    seed: int = 42
    reg_weight: float = 1.0
    dropout: bool = True
    mixed_precision: str = "no"
    checkpoint_every: int = 0
    keep_checkpoints: int = 2
    output_dir: str = "outputs"
    save_model: bool = True


@dataclass
class TrackingConfig:
    uri: str | None = None
    experiment: str = "xalign"
    run_name: str | None = None


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    objectives: dict[str, dict[str, Any]] = field(default_factory=lambda: {"sinkhorn": {}})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    def flat(self) -> dict[str, Any]:
        """Flattened ``section.key`` view (MLflow params)."""
        return flatten(self.to_dict())

    def fingerprint(self) -> str:
        """Hash of everything that changes results (not where they are logged or written)."""
        d = self.to_dict()
        d.pop("tracking")
        d["train"].pop("output_dir")
        d["train"].pop("checkpoint_every")
        d["train"].pop("keep_checkpoints")
        blob = json.dumps(d, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def objective_weights(self) -> dict[str, float]:
        return {n: float((o or {}).get("weight", 1.0)) for n, o in self.objectives.items()}

    def objective_options(self, name: str) -> dict[str, Any]:
        return {k: v for k, v in (self.objectives.get(name) or {}).items() if k != "weight"}


SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig,
            "tracking": TrackingConfig}


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def parse_override(item: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` -> (["a", "b", "c"], parsed YAML value)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r}: expected key=value (e.g. train.lr=1e-4)")
    key, raw = item.split("=", 1)
    if not key.strip():
        raise ConfigError(f"override {item!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {item!r}: cannot parse value: {exc}") from exc
    if isinstance(value, str) and _looks_numeric(value):
        value = float(value)
    return key.strip().split("."), value


def _looks_numeric(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _set_path(d: dict[str, Any], path: list[str], value: Any) -> None:
    for part in path[:-1]:
        node = d.get(part)
        if not isinstance(node, dict):
            node = {}
            d[part] = node
        d = node
    d[path[-1]] = value


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (),
                objectives: list[str] | None = None) -> RunConfig:
    """Build a :class:`RunConfig`: defaults, then the YAML file, then overrides.

    ``objectives`` (from ``--objective NAME[:WEIGHT]``) replaces the objective set, keeping
    options that the file gives for the same names.
    """
    raw: dict[str, Any] = {}
    where = "defaults"
    if path is not None:
        where = str(path)
        raw = read_config_file(Path(path))
    if objectives:
        chosen: dict[str, Any] = {}
        for item in objectives:
            name, _, weight = item.partition(":")
            opts = dict((raw.get("objectives") or {}).get(name) or {})
            if weight:
                try:
                    opts["weight"] = float(weight)
                except ValueError:
                    raise ConfigError(f"--objective {item!r}: weight must be a number") from None
            chosen[name] = opts
        raw["objectives"] = chosen
    for item in overrides:
        keys, value = parse_override(item)
        _set_path(raw, keys, value)
    return build_config(raw, where=where)


def read_config_file(path: Path, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A YAML config as a dict. ``extends: FILE`` (relative to this file) starts from FILE:
    mappings merge key by key, anything else (lists included) is replaced."""
    if not path.exists():
        raise ConfigError(f"config file not found: {path}"
                          + (f" (extended by {_chain[-1]})" if _chain else ""))
    if path.resolve() in _chain:
        raise ConfigError(f"{path}: 'extends' cycle: {' -> '.join(map(str, _chain))} -> {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    parent = raw.pop("extends", None)
    if parent is None:
        return raw
    base = read_config_file(path.parent / str(parent), (*_chain, path.resolve()))
    return _merged(base, raw)


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def build_config(raw: dict[str, Any], *, where: str = "config") -> RunConfig:
    unknown = sorted(set(raw) - set(SECTIONS) - {"objectives"})
    if unknown:
        raise ConfigError(f"{where}: unknown section(s) {unknown}; "
                          f"known: {sorted(SECTIONS) + ['objectives']}")
    kwargs: dict[str, Any] = {}
    for name, cls in SECTIONS.items():
        try:
            kwargs[name] = build_dataclass(cls, raw.get(name) or {}, where=f"{where}: {name}")
        except (ValueError, TypeError) as exc:
            raise ConfigError(str(exc)) from exc
    objectives = raw.get("objectives", {"sinkhorn": {}})
    if isinstance(objectives, list):
        objectives = {o: {} for o in objectives}
    if not isinstance(objectives, dict) or not objectives:
        raise ConfigError(f"{where}: objectives must be a non-empty mapping name -> options")
    kwargs["objectives"] = {k: dict(v or {}) for k, v in objectives.items()}
    cfg = RunConfig(**kwargs)
    _validate(cfg, where)
    return cfg


def _validate(cfg: RunConfig, where: str) -> None:
    t = cfg.train
    checks = [
        (t.batch_size >= 1, "train.batch_size must be >= 1"),
        (t.grad_accum >= 1, "train.grad_accum must be >= 1"),
        (t.optimizer in ("adam", "adamw", "sgd"), "train.optimizer must be adam, adamw or sgd"),
        (t.schedule in ("constant", "linear"), "train.schedule must be constant or linear"),
        (t.mixed_precision in ("no", "bf16", "fp16"), "train.mixed_precision: no|bf16|fp16"),
        (cfg.model.pooling in ("last", "first", "mean"), "model.pooling: last|first|mean"),
        (bool(cfg.data.languages), "data.languages must not be empty"),
    ]
    for ok, msg in checks:
        if not ok:
            raise ConfigError(f"{where}: {msg}")
