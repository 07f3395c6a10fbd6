"""Run configuration: dataclass defaults <- YAML file <- ``--set key=value`` overrides.

The defaults are the README demo (embedded model, demo corpus, minutes on 2 CPU cores);
``configs/wordot.yaml`` holds the paper's settings.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from xalign.batch import POOLINGS
from xalign.encoders.lora import LoraSettings
from xalign.errors import ConfigError
from xalign.schema import (
    SHOW_MAX,
    build_dataclass,
    check_value,
    coerce_options,
    config_error,
    show,
)
from xalign.self_links import SelfLinksConfig, is_self

if TYPE_CHECKING:
    from xalign.plugins import PluginRegistry


@dataclass
class ModelConfig:
    name: str = "packaged:multilingual-e5-small"
    layer: int = -1
    pooling: str = "last"
    max_length: int = 128
    revision: str | None = None
    # LoRA adapters through peft (xalign.encoders.lora); null: full fine-tuning
    lora: LoraSettings | None = None


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
    # Precomputed training word links instead of eflomal: a path template with {src}, {tgt},
    # {symmetrization} (e.g. links/{src}-{tgt}.{symmetrization}.txt) or a mapping "de-en" ->
    # template; 0-based Pharaoh i-j, one line per kept sentence pair (xalign.links). Or
    # self: links the model being trained extracts (xalign.self_links, data.self_links).
    links: Any = None
    # With links: self, how the model being trained extracts them (xalign.self_links).
    self_links: SelfLinksConfig = field(default_factory=SelfLinksConfig)
    # Moses XML unescaping (&amp; -> &, &#124; -> |) of every line; counted per file in
    # data_stats.json (unescaped_lines). false keeps the text as read.
    unescape: bool = True


#: ``train.reg_reduction``: how the drift term reduces over each English sentence's words
DRIFT_REDUCTIONS = ("sum", "mean")


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
    # the drift term per sentence: sum over its English words (the paper's Eq. 2) or mean
    reg_reduction: str = "sum"
    dropout: bool = True
    freeze_embeddings: bool = False
    freeze_layers: int = 0
    gradient_checkpointing: bool = False
    num_threads: int | None = None  # torch CPU threads (null: XALIGN_NUM_THREADS, else cores)
    mixed_precision: str = "no"
    # gradient balance (docs/training.md): per-term gradient norms on the first
    # grad_terms_first optimizer steps and every grad_terms_every-th step after (0: never)
    log_grad_terms: bool = True
    grad_terms_first: int = 20
    grad_terms_every: int = 100
    checkpoint_every: int = 0
    keep_checkpoints: int = 2
    output_dir: str = "outputs"
    save_model: bool = True
    # Keep the optimizer (Adam: twice the weights) and the checkpoints of a FINISHED run. false:
    # once the run ends, checkpoints/ is removed when model/ was saved, else only the final
    # checkpoint's weights stay. Checkpoints of an unfinished run are never touched (--resume).
    keep_optimizer_state: bool = False


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
        """The config as YAML, credentials redacted (:func:`xalign.redact.redact`): what
        ``config.yaml`` files and artifacts hold. A redacted ``tracking.uri`` read back is
        completed by ``MLFLOW_TRACKING_URI`` or ``--tracking-uri``."""
        from xalign.redact import redact

        return yaml.safe_dump(redact(self.to_dict()), sort_keys=False, allow_unicode=True)

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
        d["train"].pop("keep_optimizer_state")  # what is kept on disk after the run
        # recomputes activations instead of keeping them: the same weights, bit for bit, on
        # CPU (tests/test_train_lean.py), so a run may be resumed or reused with it switched
        d["train"].pop("gradient_checkpointing")
        d["train"].pop("num_threads")  # where the work runs, not what it computes
        # measuring: the per-term backward passes change float sums by rounding only
        for key in ("log_grad_terms", "grad_terms_first", "grad_terms_every"):
            d["train"].pop(key)
        if not is_self(self.data.links):  # read only then: other runs keep their fingerprint
            d["data"].pop("self_links")
        if d["model"].get("lora") is None:  # absent: the fingerprints of runs before LoRA
            d["model"].pop("lora", None)
        blob = json.dumps(d, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def objective_weights(self) -> dict[str, float]:
        return {n: float((o or {}).get("weight", 1.0)) for n, o in self.objectives.items()}

    def objective_options(self, name: str) -> dict[str, Any]:
        return {k: v for k, v in (self.objectives.get(name) or {}).items() if k != "weight"}


SECTIONS = {
    "model": ModelConfig,
    "data": DataConfig,
    "train": TrainConfig,
    "tracking": TrackingConfig,
}


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


# -- YAML -------------------------------------------------------------------------------------
class Yaml12Loader(yaml.SafeLoader):
    """PyYAML's safe loader with the scalars of the YAML 1.2 core schema
    (https://yaml.org/spec/1.2.2/#103-core-schema): only ``true``/``false`` are booleans, so
    ``no`` (Norwegian) and ``mixed_precision: no`` stay strings; ``5e-5`` is a float; ``010``
    is 10 (not octal 8); dates and ``1:30`` stay strings. A duplicate key is an error."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[str, int] = {}
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value != "<<":
                if key_node.value in seen:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"found duplicate key {key_node.value!r} (first at line "
                        f"{seen[key_node.value]})",
                        key_node.start_mark,
                    )
                seen[key_node.value] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        """Count the values as they are read: a document with more than
        :data:`MAX_YAML_VALUES` written out is refused there, before the rest is parsed (the
        pure-Python parser composes some 20,000 values per CPU second)."""
        self.composed = getattr(self, "composed", 0) + 1
        if self.composed > MAX_YAML_VALUES:
            where = (
                "the files of this extends chain hold"
                if getattr(self, "earlier", 0)
                else "this value holds"
            )
            raise ConfigError(
                f"{self.name}:{self.get_mark().line + 1}: {where} more than "
                f"{MAX_YAML_VALUES:,} values; refused (a config is small by nature: data "
                f"belongs in data.corpus / data.links files)"
            )
        return super().compose_node(parent, index)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        """A value that a tag cannot build (``!!int 0x``, ``!!timestamp 2020-13-45``) is a
        YAML error at that value's line, not a ``ValueError`` from deep inside PyYAML."""
        try:
            return super().construct_object(node, deep=deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, ArithmeticError, LookupError) as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read this {node.tag} value: {exc}", node.start_mark
            ) from exc


#: Most values (mappings, lists and scalars, counted after alias expansion) a config document
#: may hold, and how deeply it may nest: a config holds hundreds; a YAML alias bomb ("billion
#: laughs": each line repeats the alias of the line above) expands to billions from a few
#: hundred bytes.
MAX_YAML_VALUES = 20_000
MAX_YAML_DEPTH = 64
#: Largest config file read (bytes): checked before parsing, which is slow for megabytes of
#: YAML; a real config is a few kilobytes.
MAX_CONFIG_BYTES = 1 << 20
#: Longest ``extends:`` chain.
MAX_EXTENDS = 32


def _check_expansion(root: yaml.Node, name: str) -> None:
    """Refuse a composed document that refers to itself (``&a [*a]``), expands to more than
    :data:`MAX_YAML_VALUES` values or nests deeper than :data:`MAX_YAML_DEPTH`, before it is
    built. Linear in the number of distinct nodes (aliases share theirs).

    Raises:
        ConfigError: ``NAME:LINE: ...`` at the first (innermost) value at fault.
    """
    done: dict[int, tuple[int, int]] = {}  # id(node) -> (values, depth) once finished
    open_: set[int] = set()  # expanded, not finished: the path from the root (a cycle if met)
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    aliased = False  # a node met twice: an alias repeats it
    while stack:
        node, finished = stack.pop()
        children = _children(node)
        if finished:
            values = 1 + sum(done[id(c)][0] for c in children)
            depth = 1 + max((done[id(c)][1] for c in children), default=0)
            open_.discard(id(node))
            done[id(node)] = (values, depth)
            at = f"{name}:{node.start_mark.line + 1}"
            if values > MAX_YAML_VALUES:
                if aliased:
                    why = (
                        f"expands to more than {MAX_YAML_VALUES:,} values (YAML aliases "
                        f"'*NAME' repeat an anchored value each time they are used); refused"
                    )
                else:
                    why = (
                        f"holds more than {MAX_YAML_VALUES:,} values; refused (a config is "
                        f"small by nature: data belongs in data.corpus / data.links files)"
                    )
                raise ConfigError(f"{at}: this value {why}")
            if depth > MAX_YAML_DEPTH:
                raise ConfigError(f"{at}: values nested more than {MAX_YAML_DEPTH} deep; refused")
            continue
        if id(node) in done:
            aliased = True
            continue
        if id(node) in open_:
            raise ConfigError(
                f"{name}:{node.start_mark.line + 1}: this value contains itself (a YAML alias "
                f"'*NAME' inside the value anchored '&NAME'); a config must be finite"
            )
        open_.add(id(node))
        stack.append((node, True))
        stack.extend((c, False) for c in children)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _yaml12_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    text = str(loader.construct_scalar(node))
    sign = -1 if text.startswith("-") else 1
    digits = text.lstrip("+-")
    if digits.startswith(("0o", "0x")):
        return sign * int(digits[2:], 8 if digits[1] == "o" else 16)
    return sign * int(digits)


_YAML11_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("bool", "int", "float", "timestamp")}
Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in _YAML11_TAGS]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
    list("-+0123456789"),
)
Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+.0123456789"),
)
Yaml12Loader.add_constructor("tag:yaml.org,2002:int", _yaml12_int)


def _load_yaml(
    text: str, name: str, counted: list[int] | None = None
) -> tuple[Any, dict[str, tuple[int, bool]]]:
    """(data, {dotted key: (line, value is a mapping)}) of one YAML document; the key ``""``
    is the line of the document itself.

    Raises:
        yaml.YAMLError: not YAML (the error's marks name ``name`` and the line).
        ConfigError: ``NAME:LINE:`` a document that refers to itself, expands too far or nests
            too deeply (:func:`_check_expansion`).
    """
    loader = Yaml12Loader(text)
    loader.name = name  # marks (and so error messages) name the file
    if counted is not None:  # the values of the files read before (an extends chain)
        loader.composed = loader.earlier = counted[0]
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:  # brackets nested thousands deep: the composer recurses
            line = loader.get_mark().line + 1
            raise ConfigError(
                f"{name}:{line}: values nested more than {MAX_YAML_DEPTH} deep; refused"
            ) from None
        if node is not None:
            _check_expansion(node, name)
        data = loader.construct_document(node) if node is not None else None
        lines: dict[str, tuple[int, bool]] = {}
        if node is not None:
            lines[""] = (node.start_mark.line + 1, isinstance(node, yaml.MappingNode))
        _key_lines(node, "", lines, loader)
    finally:
        if counted is not None:
            counted[0] = getattr(loader, "composed", counted[0])
        loader.dispose()
    return data, lines


def _key_lines(
    node: yaml.Node | None, prefix: str, out: dict[str, tuple[int, bool]], loader: Yaml12Loader
) -> None:
    """The line of each dotted key, the key spelled as the loaded dict has it (``~:`` is
    ``None``, ``010:`` is ``10``)."""
    if not isinstance(node, yaml.MappingNode):
        return
    for key_node, value_node in node.value:
        if isinstance(key_node, yaml.ScalarNode):
            name = key_node.value
            if not key_node.tag.endswith(":merge"):
                name = loader.construct_object(key_node)
            key = prefix + str(name)
            out[key] = (key_node.start_mark.line + 1, isinstance(value_node, yaml.MappingNode))
            _key_lines(value_node, key + ".", out, loader)


# -- where each value came from ---------------------------------------------------------------
class Origins:
    """Where each dotted config key was set: ``FILE:LINE``, ``--set KEY=VALUE`` or
    ``--objective NAME:WEIGHT``. A key set nowhere is a default (lookup gives None).

    ``texts`` keeps the text of ``--set`` values that YAML read as a number or boolean, so a
    string option given ``--set tracking.run_name=2024`` gets ``"2024"``.
    """

    def __init__(self) -> None:
        self._at: dict[str, str] = {}
        self.texts: dict[str, str] = {}

    def set(self, key: str, where: str) -> None:
        """``key`` and everything below it now come from ``where`` (a replaced value)."""
        for table in (self._at, self.texts):
            for k in [k for k in table if k == key or k.startswith(key + ".")]:
                del table[k]
        self._at[key] = where

    def merge(self, key: str, where: str) -> None:
        """``key`` is a mapping merged into an existing one: keys below keep their origins."""
        self._at.setdefault(key, where)

    def __call__(self, key: str) -> str | None:
        parts = key.split(".")
        while parts:
            found = self._at.get(".".join(parts))
            if found:
                return found
            parts.pop()
        return None

    def within(self, key: str) -> list[str]:
        """Distinct origins of ``key`` and of every key below it."""
        found = [self(key)] + [w for k, w in self._at.items() if k.startswith(key + ".")]
        return list(dict.fromkeys(w for w in found if w))


# -- loading ----------------------------------------------------------------------------------
def parse_override(item: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` -> (["a", "b", "c"], value read as YAML 1.2: ``no`` stays a string)."""
    shown = short_override(item)
    if "=" not in item:
        raise ConfigError(f"override {shown!r}: expected key=value (e.g. train.lr=1e-4)")
    key, raw = item.split("=", 1)
    keys = [k.strip() for k in key.split(".")]
    if not key.strip():
        raise ConfigError(f"override {shown!r}: empty key")
    if not all(keys):
        raise ConfigError(f"override {shown!r}: empty part in key {short_override(key.strip())!r}")
    try:
        value = _load_yaml(raw, f"--set {shown}")[0] if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {shown!r}: cannot parse value: {_no_snippet(exc)}") from exc
    except ConfigError as exc:  # "--set ITEM:1: why" -> "override 'ITEM': why"
        why = re.sub(r"^\d+: ", "", str(exc)[len(f"--set {shown}:") :])
        raise ConfigError(f"override {shown!r}: {why}") from exc
    return keys, value


def _no_snippet(exc: yaml.YAMLError) -> yaml.YAMLError:
    """``exc`` without the excerpt of the line under its marks: the excerpt is a window cut
    at a fixed width, which can cut a credential in two past recognition (FILE:LINE:COLUMN
    stay)."""
    for name in ("problem_mark", "context_mark"):
        mark = getattr(exc, name, None)
        if mark is not None:
            mark.buffer = None
    return exc


def short_override(item: str) -> str:
    """``item`` (a ``--set KEY=VALUE``) as an error message quotes it: at most
    :data:`~xalign.schema.SHOW_MAX` characters, the length said when cut; credentials are
    masked before the cut (a secret cut in two is no longer recognisable)."""
    from xalign.redact import redact_text

    shown = redact_text(item)
    if len(shown) <= SHOW_MAX:
        return shown
    return f"{shown[: SHOW_MAX - 20]}... ({len(item):,} chars)"


def _set_path(d: dict[str, Any], path: list[str], value: Any) -> None:
    for part in path[:-1]:
        node = d.get(part)
        if not isinstance(node, dict):
            node = {}
            d[part] = node
        d = node
    d[path[-1]] = value


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    objectives: list[str] | None = None,
    *,
    registry: PluginRegistry | None = None,
    paths_from_file: bool = True,
) -> RunConfig:
    """Build a :class:`RunConfig`: defaults, then the YAML file, then overrides.

    Relative ``data.corpus``/``data.links`` paths in the file are read against its folder
    (:func:`_resolve_file_paths`); ``paths_from_file=False`` keeps them relative to the
    working directory, as a run's saved ``config.yaml`` from before that rule holds them.

    ``objectives`` (from ``--objective NAME[:WEIGHT]``) replaces the objective set, keeping
    options that the file gives for the same names.

    Every value is checked before anything heavy runs: against its declared type (the
    dataclass annotations; the options of each objective the plugin ``registry`` knows,
    default the process-wide one, against that objective's ``Config``) and against the range
    rules of :func:`_validate`. A :class:`ConfigError` names the dotted key and the
    ``FILE:LINE`` or ``--set`` override it came from; every problem found is in the one
    error, a line each (types first: the range rules run once every section has its types
    right). Unknown objective names are left to the
    caller's ``registry.objective(name)``, which lists the available ones.
    """
    origins = Origins()
    raw: dict[str, Any] = {}
    where = "defaults"
    if path is not None:
        where = str(path)
        raw = read_config_file(Path(path), origins=origins, paths_from_file=paths_from_file)
    if objectives:
        raw["objectives"] = _objective_flags(objectives, raw.get("objectives"), origins)
    for item in overrides:
        keys, value = parse_override(item)
        if objectives:
            _check_objective_override(item, keys, raw["objectives"])
        _set_path(raw, keys, value)
        dotted = ".".join(keys)
        origins.set(dotted, f"--set {short_override(item)}")
        if isinstance(value, (bool, int, float)):
            origins.texts[dotted] = item.split("=", 1)[1].strip()
    problems: list[str] = []
    cfg = None
    try:
        cfg = build_config(raw, where=where, origins=origins)
        objectives: dict[str, dict[str, Any]] | None = cfg.objectives
    except ConfigError as exc:  # the objective options are still checked, for one report
        problems.extend(_problems(exc))
        raw_objectives = raw.get("objectives", {"sinkhorn": {}})
        objectives = _parse_objectives(raw_objectives, where, origins)[0]  # problems: above
    if objectives:
        try:
            _check_options(objectives, registry, origins=origins, where=where)
        except ConfigError as exc:
            problems.extend(_problems(exc))
    if problems or cfg is None:
        raise config_error(_in_config_order(problems))
    return cfg


def _in_config_order(problems: list[str]) -> list[str]:
    """Problems that start with ``FILE:LINE:`` sorted by line within their file (files in
    the order they first appear), then the others (overrides, defaults) as found."""
    files: dict[str, int] = {}

    def key(item: tuple[int, str]) -> tuple[int, int, int, int]:
        index, text = item
        match = re.match(r"(.+?):(\d+): ", text)
        if match is None:
            return (1, 0, 0, index)
        return (0, files.setdefault(match.group(1), len(files)), int(match.group(2)), index)

    return [text for _, text in sorted(enumerate(problems), key=key)]


def _objective_flags(items: list[str], from_file: Any, origins: Origins) -> dict[str, Any]:
    """``--objective NAME[:WEIGHT]`` flags -> objectives mapping (file options kept)."""
    if isinstance(from_file, (list, tuple)):
        from_file = {str(name): {} for name in from_file}
    from_file = from_file if isinstance(from_file, dict) else {}
    chosen: dict[str, Any] = {}
    for item in items:
        name, _, weight = item.partition(":")
        name = name.strip()
        if not name:
            raise ConfigError(f"--objective {item!r}: empty objective name (NAME or NAME:WEIGHT)")
        opts = from_file.get(name)
        opts = dict(opts) if isinstance(opts, dict) else {}
        origins.merge(f"objectives.{name}", f"--objective {item}")
        if weight:
            try:
                opts["weight"] = float(weight)
            except ValueError:
                raise ConfigError(f"--objective {item!r}: weight must be a number") from None
            origins.set(f"objectives.{name}.weight", f"--objective {item}")
        chosen[name] = opts
    return chosen


def _check_objective_override(item: str, keys: list[str], chosen: dict[str, Any]) -> None:
    """With ``--objective`` flags, a ``--set objectives.NAME...`` override must name a chosen
    objective: otherwise it would add NAME to the objective set the flags chose."""
    if keys[0] != "objectives":
        return
    names = ", ".join(chosen)
    if len(keys) == 1:
        raise ConfigError(
            f"--set {short_override(item)}: --objective chose the objectives ({names}); "
            f"set them with --objective, not --set objectives"
        )
    if keys[1] not in chosen:
        raise ConfigError(
            f"--set {short_override(item)}: objective {keys[1]!r} is not among those "
            f"--objective chose ({names}); add --objective {keys[1]} to train it too"
        )


def _read_capped(path: Path) -> bytes:
    """At most ``MAX_CONFIG_BYTES`` of ``path``, whatever the file type: a pipe (``-c <(...)``),
    a device (``/dev/zero``) or a FIFO is read up to the cap + 1 byte, never to its end; a FIFO
    nobody writes to gives no data (opened non-blocking) and is refused, not waited on.

    Raises ConfigError naming the file when it is larger than the cap, a directory, unreadable,
    or a pipe/device that gave no data."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    mode = os.fstat(fd).st_mode
    if stat.S_ISDIR(mode):
        os.close(fd)
        raise ConfigError(f"{path}: is a directory, not a config file")
    with os.fdopen(fd, "rb", buffering=0) as file:
        regular = stat.S_ISREG(mode)
        size = os.fstat(fd).st_size
        if regular and size > MAX_CONFIG_BYTES:
            raise ConfigError(_too_big(path, f"of {size:,} bytes"))
        os.set_blocking(fd, True)  # a FIFO without writer now reads as end of file
        chunks: list[bytes] = []
        got = 0
        try:
            while got <= MAX_CONFIG_BYTES:
                chunk = file.read(MAX_CONFIG_BYTES + 1 - got)
                if not chunk:
                    break
                chunks.append(chunk)
                got += len(chunk)
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if got > MAX_CONFIG_BYTES:
        what = "of more than" if regular else "(not a regular file) of more than"
        raise ConfigError(_too_big(path, f"{what} {MAX_CONFIG_BYTES:,} bytes"))
    if not regular and not got:
        kind = "FIFO/pipe" if stat.S_ISFIFO(mode) else "device or special file"
        raise ConfigError(f"{path}: {kind} gave no data (nothing wrote to it); expected a config")
    return b"".join(chunks)


def _too_big(path: Path, size: str) -> str:
    return (
        f"{path}: config file {size} is larger than {MAX_CONFIG_BYTES:,}; refused "
        f"(a config is small by nature: data belongs in data.corpus / data.links files)"
    )


def read_config_file(
    path: Path,
    _chain: tuple[Path, ...] = (),
    *,
    origins: Origins | None = None,
    paths_from_file: bool = True,
    _counted: list[int] | None = None,
) -> dict[str, Any]:
    """A YAML config (read as YAML 1.2, see :class:`Yaml12Loader`) as a dict.
    ``extends: FILE`` (relative to this file) starts from FILE: mappings merge key by key,
    anything else (lists included) is replaced. ``origins`` records each key's FILE:LINE."""
    if not path.exists():
        raise ConfigError(
            f"config file not found: {path}" + (f" (extended by {_chain[-1]})" if _chain else "")
        )
    if path.resolve() in _chain:
        raise ConfigError(f"{path}: 'extends' cycle: {' -> '.join(map(str, _chain))} -> {path}")
    if len(_chain) >= MAX_EXTENDS:
        raise ConfigError(
            f"{path}: 'extends' chain longer than {MAX_EXTENDS} files "
            f"({_chain[0]} -> ... -> {_chain[-1]} -> {path})"
        )
    data = _read_capped(path)
    counted = [0] if _counted is None else _counted  # :data:`MAX_YAML_VALUES` for the chain
    try:
        raw, lines = _load_yaml(data.decode("utf-8"), str(path), counted)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        if mark is not None:
            line = f":{mark.line + 1}"
        elif isinstance(exc, yaml.reader.ReaderError):  # a character YAML does not allow
            line = f":{data.decode('utf-8')[: exc.position].count(chr(10)) + 1}"
        else:
            line = ""
        raise ConfigError(f"{path}{line}: invalid YAML: {_no_snippet(exc)}") from exc
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"{path}:{line}: not UTF-8 text (byte {data[exc.start]:#04x}); save the config as UTF-8"
        ) from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}:{lines.get('', (1, False))[0]}: top level must be a mapping "
            f"(section: options), got {show(raw)}"
        )
    if paths_from_file:
        _resolve_file_paths(raw, path.parent)
    parent = raw.pop("extends", None)
    if parent is not None:
        if not isinstance(parent, str) or not parent.strip():
            raise ConfigError(
                f"{path}:{lines['extends'][0]}: extends: expected a file name, got {show(parent)}"
            )
        base = read_config_file(
            path.parent / parent,
            (*_chain, path.resolve()),
            origins=origins,
            paths_from_file=paths_from_file,
            _counted=counted,
        )
        raw = _merged(base, raw)
    if origins is not None:
        for key, (line, is_mapping) in lines.items():
            if key not in ("", "extends"):
                (origins.merge if is_mapping else origins.set)(key, f"{path}:{line}")
    return raw


def _is_local_path(value: Any) -> bool:
    """A string naming a local file (not ``demo``, an ``hf:`` dataset or ``self`` links)."""
    return (
        isinstance(value, str)
        and bool(value.strip())
        and value.strip() not in ("demo", "self")
        and not value.startswith("hf:")
    )


def _anchored(value: str, folder: Path) -> str:
    """``value`` (a path or a template with ``{src}``-style fields) made absolute against
    ``folder``; ``~`` is expanded first and absolute paths are returned as given."""
    expanded = os.path.expanduser(value)
    if os.path.isabs(expanded):
        return value
    return os.path.normpath(os.path.join(folder.resolve(), expanded))


def _resolve_file_paths(raw: dict[str, Any], folder: Path) -> None:
    """Make the relative paths a config file gives in ``data.corpus`` (a spec, a mapping of
    specs or ``{src: FILE, tgt: FILE}`` entries) and ``data.links`` (a template or a mapping
    of templates) absolute against ``folder``, the config file's folder, in place: a config
    reads the same files from any working directory. ``--set`` values are not passed here
    and stay relative to the working directory. Values of the wrong type are left for the
    type check to report."""
    data = raw.get("data")
    if not isinstance(data, dict):
        return
    corpus = data.get("corpus")
    if _is_local_path(corpus):
        data["corpus"] = _anchored(corpus, folder)
    elif isinstance(corpus, dict):
        for lang, spec in corpus.items():
            if _is_local_path(spec):
                corpus[lang] = _anchored(spec, folder)
            elif isinstance(spec, dict):
                for side, file in spec.items():
                    if _is_local_path(file):
                        spec[side] = _anchored(file, folder)
    links = data.get("links")
    if _is_local_path(links):
        data["links"] = _anchored(links, folder)
    elif isinstance(links, dict):
        for pair, template in links.items():
            if _is_local_path(template):
                links[pair] = _anchored(template, folder)


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def build_config(
    raw: dict[str, Any], *, where: str = "config", origins: Origins | None = None
) -> RunConfig:
    """A :class:`RunConfig` from a raw mapping, every section value checked against its type
    and range (objective options: :func:`check_objective_options`). ``where`` names the
    source when ``origins`` does not know a key."""
    origins = origins or Origins()
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: top level must be a mapping (section: options)")
    known = [*SECTIONS, "objectives"]
    problems: list[str] = []  # every section is checked; all problems are reported at once
    for name in raw:
        if name not in known:
            close = difflib.get_close_matches(str(name), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            places = origins.within(str(name))
            more = f" (+{len(places) - 3} more)" if len(places) > 3 else ""
            at = ", ".join(places[:3]) + more if places else where
            problems.append(f"{at}: unknown section {name!r}{hint}; known: {', '.join(known)}")
    kwargs: dict[str, Any] = {}
    for name, cls in SECTIONS.items():
        try:
            kwargs[name] = build_dataclass(
                cls,
                raw.get(name),
                where=origins(name) or where,
                key=name,
                origin=origins,
                texts=origins.texts,
            )
        except ConfigError as exc:
            problems.extend(_problems(exc))
    try:
        kwargs["objectives"] = _objectives(raw.get("objectives", {"sinkhorn": {}}), where, origins)
    except ConfigError as exc:
        problems.extend(_problems(exc))
    if len(kwargs) == len(known):  # every section typed: the range rules can run too
        cfg = RunConfig(**kwargs)
        try:
            _validate(cfg, where, origins)
        except ConfigError as exc:
            problems.extend(_problems(exc))
    if problems:
        raise config_error(problems)
    return cfg


def _problems(exc: ConfigError) -> list[str]:
    """The problems of a :func:`~xalign.schema.config_error`, or the message of another."""
    return list(getattr(exc, "problems", None) or [str(exc)])


def _objectives(value: Any, where: str, origins: Origins) -> dict[str, dict[str, Any]]:
    """The objectives section: a mapping name -> options (or a list / comma list of names).
    Raises one ConfigError with every problem."""
    out, problems = _parse_objectives(value, where, origins)
    if problems:
        raise config_error(problems)
    return out


def _parse_objectives(
    value: Any, where: str, origins: Origins
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """:func:`_objectives`, leniently: the objectives that parsed, and the problems of the
    others (so that the options of the good ones can still be checked)."""
    at = origins("objectives") or where
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, (list, tuple)):
        if not all(isinstance(v, str) and v for v in value):
            return {}, [f"{at}: objectives: expected objective names, got {show(value)}"]
        value = {v: {} for v in value}
    if not isinstance(value, dict) or not value:
        return {}, [
            f"{at}: objectives: expected a non-empty mapping name -> options "
            f"(e.g. {{sinkhorn: {{blur: 0.05}}}}), got {show(value)}"
        ]
    out: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for name, opts in value.items():
        key = f"objectives.{name}"
        if not isinstance(name, str) or not name.strip():
            problems.append(
                f"{at}: objectives: objective names must be non-empty strings, got {show(name)}"
            )
            continue
        if opts is None:
            opts = {}
        if not isinstance(opts, dict):
            problems.append(
                f"{origins(key) or where}: {key}: expected a mapping of options "
                f"(key: value), got {show(opts)}"
            )
            continue
        opts = dict(opts)
        if "weight" in opts:
            wkey = f"{key}.weight"
            try:
                weight = check_value(opts["weight"], float, wkey)
            except ConfigError as exc:
                problems.append(f"{origins(wkey) or where}: {exc}")
                continue
            if not (math.isfinite(weight) and weight >= 0):
                problems.append(
                    f"{origins(wkey) or where}: {wkey}: must be a finite number "
                    f">= 0, got {show(weight)}"
                )
                continue
            opts["weight"] = weight
        out[name] = opts
    return out, problems


def check_objective_options(
    cfg: RunConfig,
    registry: PluginRegistry | None = None,
    *,
    origins: Origins | None = None,
    where: str = "config",
) -> None:
    """Check (and coerce in place) each objective's options against its ``Config`` dataclass:
    types as for the sections, plus the plugin's own ``__post_init__`` checks. Objectives the
    registry does not know are skipped (their lookup reports them)."""
    _check_options(cfg.objectives, registry, origins=origins, where=where)


def _check_options(
    objectives: dict[str, dict[str, Any]],
    registry: PluginRegistry | None = None,
    *,
    origins: Origins | None = None,
    where: str = "config",
) -> None:
    """:func:`check_objective_options` on the objectives mapping (name -> options)."""
    from xalign.objective import Needs
    from xalign.plugins import get_registry, mixed_batches, objective_needs

    origins = origins or Origins()
    known = (registry or get_registry()).objectives()
    needs: dict[str, Needs | None] = {}
    problems: list[str] = []  # of every objective, reported together
    for name, given in objectives.items():
        entry = known.get(name)
        if entry is None:
            continue
        key = f"objectives.{name}"
        at = ", ".join(origins.within(key)) or where
        if entry.cls.renamed_options:  # deprecated option names -> current (warns once each)
            for old, new in entry.cls.renamed_options.items():
                if old in given and new not in given and origins(f"{key}.{old}"):
                    text = origins.texts.get(f"{key}.{old}")
                    origins.set(f"{key}.{new}", origins(f"{key}.{old}") or at)
                    if text is not None:
                        origins.texts[f"{key}.{new}"] = text
            given = entry.cls.upgrade_options(given, owner=entry.where(), at=origins)
            objectives[name] = given
        try:
            opts = coerce_options(
                entry.cls.Config,
                {k: v for k, v in (given or {}).items() if k != "weight"},
                where=at,
                key=key,
                origin=origins,
                texts=origins.texts,
                also_known=("weight",),  # every objective's, checked above
            )
        except ConfigError as exc:
            problems.extend(_problems(exc))
            continue
        objectives[name] = {k: opts.get(k, v) for k, v in given.items()}
        if len(objectives) > 1:  # from the options, no model built (Objective.needs_for)
            try:
                needs[name] = objective_needs(entry.cls, entry.cls.Config(**opts))
            except Exception:  # noqa: BLE001 - the trainer reports it with the real encoder
                continue
    if problems:
        raise config_error(problems)
    mixed_batches(
        needs, where=origins("objectives") or ", ".join(origins.within("objectives")) or where
    )


# -- range rules ------------------------------------------------------------------------------
def _at_least(n: int) -> Callable[[Any], bool]:
    return lambda v: v >= n


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


def _positive(v: float) -> bool:
    return math.isfinite(v) and v > 0


def _non_negative(v: float) -> bool:
    return math.isfinite(v) and v >= 0


def _filled(v: str) -> bool:
    return bool(v.strip())


#: (dotted key, check, what the value must be); checked in order after the types.
_RULES: list[tuple[str, Callable[[Any], bool], str]] = [
    ("model.name", _filled, "must not be empty"),
    ("model.max_length", _at_least(3), "must be >= 3 (special tokens plus one subword)"),
    ("data.languages", bool, "must list at least one source language"),
    ("data.languages", lambda v: all(s.strip() for s in v), "must not contain empty names"),
    ("data.languages", lambda v: len(set(v)) == len(v), "must not repeat a language"),
    ("data.target", _filled, "must not be empty"),
    ("data.pairs_per_language", _optional(_at_least(1)), "must be null or >= 1"),
    ("data.min_words", _at_least(1), "must be >= 1"),
    ("data.max_ratio", _optional(_at_least(1)), "must be null or >= 1 (longer / shorter side)"),
    ("data.limit", _optional(_at_least(1)), "must be null or >= 1"),
    ("train.batch_size", _at_least(1), "must be >= 1"),
    ("train.grad_accum", _at_least(1), "must be >= 1"),
    ("train.lr", _positive, "must be a finite number > 0"),
    ("train.weight_decay", _non_negative, "must be a finite number >= 0"),
    (
        "train.betas",
        lambda v: len(v) == 2 and all(0 <= b < 1 for b in v),
        "must be two numbers in [0, 1), e.g. [0.9, 0.999]",
    ),
    ("train.eps", _positive, "must be a finite number > 0"),
    (
        "train.max_grad_norm",
        _optional(lambda v: v >= 0),
        "must be null or >= 0 (0 or null: no clipping)",
    ),
    ("train.warmup_steps", _at_least(0), "must be >= 0"),
    ("train.epochs", _at_least(1), "must be >= 1"),
    ("train.freeze_layers", _at_least(0), "must be >= 0 (0: tune every layer)"),
    ("train.num_threads", _optional(_at_least(1)), "must be null or >= 1 (null: every core)"),
    ("train.max_steps", _optional(_at_least(1)), "must be null or >= 1"),
    ("train.seed", lambda v: 0 <= v < 2**32, "must be in [0, 2**32)"),
    ("train.reg_weight", _non_negative, "must be a finite number >= 0"),
    ("train.grad_terms_first", _at_least(0), "must be >= 0 (0: no first steps measured)"),
    ("train.grad_terms_every", _at_least(0), "must be >= 0 (0: only the first steps)"),
    ("train.checkpoint_every", _at_least(0), "must be >= 0 (0: only the final checkpoint)"),
    ("train.keep_checkpoints", _at_least(0), "must be >= 0 (0: keep all)"),
    ("train.output_dir", _filled, "must not be empty"),
    ("tracking.experiment", _filled, "must not be empty"),
    ("data.self_links.refresh_every", _at_least(0), "must be >= 0 (0: computed once)"),
    ("data.self_links.batch_size", _at_least(1), "must be >= 1"),
    ("data.self_links.threshold", lambda v: 0 < v <= 1, "must be in (0, 1]"),
    ("data.self_links.blur", _positive, "must be a finite number > 0"),
]

#: Keys with a fixed set of values.
_CHOICES: dict[str, tuple[str, ...]] = {
    "model.pooling": POOLINGS,
    "train.optimizer": ("adam", "adamw", "sgd"),
    "train.schedule": ("constant", "linear"),
    "train.mixed_precision": ("no", "bf16"),
    "train.reg_reduction": DRIFT_REDUCTIONS,
    "data.self_links.method": ("argmax", "ot"),
    "data.self_links.pooling": POOLINGS,
}


def _get(cfg: RunConfig, key: str) -> Any:
    value: Any = cfg
    for name in key.split("."):  # section.key or section.sub.key
        value = getattr(value, name)
    return value


def _validate(cfg: RunConfig, where: str, origins: Origins | None = None) -> None:
    """Range rules (:data:`_RULES`, :data:`_CHOICES`, min_words <= max_words)."""
    origins = origins or Origins()

    problems: list[str] = []  # all of them, one per key, reported together
    failed: set[str] = set()

    def fail(key: str, problem: str, value: Any) -> None:
        failed.add(key)
        problems.append(f"{origins(key) or where}: {key}: {problem}, got {show(value)}")

    for key, ok, problem in _RULES:
        if key not in failed and not ok(_get(cfg, key)):  # data.languages has several rules
            fail(key, problem, _get(cfg, key))
    for key, allowed in _CHOICES.items():
        value = _get(cfg, key)
        if value not in allowed:
            extra = (
                " (fp16 is not supported: use bf16, or no on a CPU)"
                if key == "train.mixed_precision" and value == "fp16"
                else ""
            )
            fail(key, f"must be {', '.join(allowed[:-1])} or {allowed[-1]}{extra}", value)
    from xalign.data.corpus import CorpusError, language_spec

    for lang in cfg.data.languages:
        try:
            language_spec(cfg.data.corpus, lang)
        except CorpusError as exc:
            problems.append(f"{origins('data.corpus') or where}: {exc}")
            break
    if cfg.data.max_words < cfg.data.min_words:
        fail(
            "data.max_words",
            f"must be >= data.min_words ({cfg.data.min_words}, from "
            f"{origins('data.min_words') or 'the defaults'})",
            cfg.data.max_words,
        )
    if problems:
        raise config_error(problems)
