"""Evaluate a model on a task, one MLflow run per seed, reusing finished identical runs.

A model reference is a local path, a hub id, ``packaged:NAME``, ``base`` (the configured,
unaligned encoder) or the MLflow run id of a training run (its saved model). Each evaluation
run is keyed by ``xalign.eval_key``, a hash of the CONTENT of everything it reads:

- the model: sha256 of every file of its folder (a model retrained into the same folder gets
  a new key), of the shipped file for ``packaged:NAME``, the cached snapshot's commit for a
  hub id (:func:`xalign.provenance.model_identity`);
- the task's data: sha256 of every file ``Task.inputs(context)`` declares (gold files, XNLI /
  XQuAD / Tatoeba files under ``--data-dir``, files named by options);
- the task name, its resolved options, the seed and the language restriction
  (``--languages``, checked against the task's ``languages`` option by
  :func:`check_languages`);
- the task plugin's distribution and version, and xalign's version;
- for a plugin whose code is not in site-packages (installed editable with ``pip install -e``,
  or a module on ``sys.path``), the sha256 of its source: every ``.py`` file of the task's
  top-level package and the module of each class the task inherits from (:func:`task_code`).
  Editing a task while developing it therefore re-evaluates, even with an unchanged version;
  a released install is keyed by its version alone.

File digests are computed once per (path, size, mtime) and cached on disk, so an unchanged
input costs a ``stat``. A FINISHED run with the same key is reused (``reuse=False`` /
``xalign eval --no-reuse`` recomputes); its ``inputs.json`` artifact lists the files hashed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xalign._version import __version__
from xalign.errors import XalignError
from xalign.languages import duplicate_code, language_in, primary_language
from xalign.plugins import PluginError, PluginRegistry, get_registry
from xalign.redact import redact_uri
from xalign.task import (
    RESULT_SCHEMA,
    ResultContractError,
    TaskContext,
    TaskResult,
    check_metric_declaration,
    stamp_result,
)
from xalign.tracking import (
    KIND_EVAL,
    PARAM_VERSION,
    TAG_EVAL_KEY,
    TAG_KIND,
    TAG_MODEL_DIR,
    TAG_MODEL_REF,
    TAG_OBJECTIVE,
    TAG_SEED,
    TAG_TASK,
    TAG_TRAIN_RUN_ID,
    Tracker,
    TrackingWarning,
    get_run,
    resolve_tracking_uri,
    terminal_status,
)

BASE = "base"
DEFAULT_EXPERIMENT = "xalign"
RESULT_FILE = "result.json"
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


class EvaluationError(XalignError, RuntimeError):
    """A model reference or an evaluation could not be resolved; the message says why."""


@dataclass
class ModelSpec:
    """A resolved model reference."""

    ref: str
    path: str
    train_run_id: str | None = None
    objective: str = BASE
    identity: str = ""


@dataclass
class EvalRun:
    """One seed's result plus the MLflow run that holds it."""

    result: TaskResult
    task: str
    run_id: str
    seed: int
    reused: bool
    eval_key: str
    objective: str = BASE
    train_run_id: str | None = None


def default_base_model() -> str:
    """``model.name`` of the default configuration (the unaligned encoder)."""
    from xalign.config import load_config

    return load_config(None).model.name


def resolve_model(
    ref: str, *, tracking_uri: str | None = None, base_model: str | None = None
) -> tuple[str, str | None]:
    """``(model path or name, training run id or None)`` for a model reference."""
    spec = resolve_spec(ref, tracking_uri=tracking_uri, base_model=base_model)
    return spec.path, spec.train_run_id


def resolve_spec(
    ref: str, *, tracking_uri: str | None = None, base_model: str | None = None
) -> ModelSpec:
    """Resolve a reference to a :class:`ModelSpec` (path, training run, identity)."""
    if ref == BASE:
        name = base_model or default_base_model()
        return ModelSpec(ref, name, None, BASE, _plain_identity(name))
    local = Path(ref).expanduser()
    if local.exists():
        run = _run_of_model_dir(local, tracking_uri)
        if run is not None:
            return _from_run(ref, run)
        return ModelSpec(ref, str(local), None, BASE, _plain_identity(str(local)))
    if _RUN_ID.match(ref):
        run = get_run(ref, tracking_uri)
        if run is None:
            raise EvaluationError(
                f"{ref!r} is neither a local path nor an MLflow run in "
                f"{redact_uri(resolve_tracking_uri(tracking_uri))}"
            )
        return _from_run(ref, run)
    return ModelSpec(ref, ref, None, BASE, _plain_identity(ref))


def _plain_identity(name: str) -> str:
    """Content identity of a model path / name (see :func:`xalign.provenance.model_identity`)."""
    from xalign.provenance import model_identity

    local = Path(name).expanduser()
    return model_identity(str(local.resolve()) if local.exists() else name)


def _run_of_model_dir(path: Path, tracking_uri: str | None):
    """The training run that saved ``path`` (``<output_dir>/<run_id>/model``), if logged."""
    run_id = path.resolve().parent.name
    if not _RUN_ID.match(run_id):
        return None
    run = get_run(run_id, tracking_uri)
    saved = run.data.tags.get(TAG_MODEL_DIR) if run else None
    return run if saved and Path(saved).resolve() == path.resolve() else None


def _from_run(ref: str, run) -> ModelSpec:
    tags = run.data.tags
    run_id = run.info.run_id
    model_dir = tags.get(TAG_MODEL_DIR)
    if not model_dir:
        raise EvaluationError(
            f"run {run_id} has no saved model (no xalign.model_dir tag: it is not a training "
            f"run, or it ran with train.save_model=false, as configs/smoke.yaml sets); to "
            f"evaluate it, train again with `--set train.save_model=true` (its checkpoints "
            f"are for `xalign run --resume`, not a model folder)"
        )
    if not Path(model_dir).exists():
        raise EvaluationError(f"run {run_id}: its saved model {model_dir} no longer exists")
    # the saved model's content, not the run's config: a retrained model differs
    return ModelSpec(
        ref, model_dir, run_id, tags.get(TAG_OBJECTIVE, "unknown"), _plain_identity(model_dir)
    )


def eval_key(
    identity: str,
    task: str,
    options: dict[str, Any],
    seed: int | None,
    languages: Sequence[str] | None = None,
    *,
    inputs: dict[str, str] | None = None,
    software: dict[str, str] | None = None,
) -> str:
    """Hash of everything that changes an evaluation's result.

    ``identity``: the model's content identity; ``inputs``: ``{path: sha256}`` of the task's
    declared input files; ``software``: plugin distribution/version and xalign's version;
    ``seed``: None for a task whose result does not depend on it (``Task.uses_seed``).
    """
    blob = json.dumps(
        {
            "model": identity,
            "task": task,
            "options": options,
            "seed": seed,
            "languages": list(languages) if languages else None,
            "inputs": dict(sorted((inputs or {}).items())),
            "software": dict(sorted((software or {}).items())),
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _installed_paths() -> list[Path]:
    """The site-packages folders a release (wheel / sdist install) puts its modules in."""
    import site
    import sysconfig

    folders = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
    folders |= set(getattr(site, "getsitepackages", list)())
    folders.add(site.getusersitepackages())
    return [Path(f).resolve() for f in folders if f]


def _released(path: str | Path | None) -> bool:
    """Whether a plugin's file lives in site-packages (a released install), not in a source
    tree (``pip install -e``, a checkout on ``sys.path``, a module defined in a test)."""
    if path is None:
        return False
    resolved = Path(path).resolve()
    return any(resolved.is_relative_to(folder) for folder in _installed_paths())


def task_code(task_cls: type) -> str | None:
    """sha256 of a task's source code, or None when its plugin is a released install (its
    module in site-packages: keyed by its version alone).

    Hashed: every ``.py`` file of the task class's top-level package (the whole plugin, e.g.
    ``xalign_xnli/``), and the module file of each class in its MRO (a shared base class such
    as :class:`xalign.ExtractiveQaTask`) except :class:`xalign.Task` itself. Files are named by
    their path relative to their package, so moving a checkout keeps the key. Digests come from
    the on-disk cache of :func:`xalign.provenance.file_digest` (an unchanged file costs a stat).
    """
    import inspect
    import sys

    from xalign.provenance import file_digest
    from xalign.task import Task

    if _released(getattr(sys.modules.get(task_cls.__module__), "__file__", None)):
        return None
    files: dict[str, Path] = {}
    top = sys.modules.get(task_cls.__module__.partition(".")[0])
    if top is not None and top.__name__ != "xalign" and hasattr(top, "__path__"):
        for folder in map(Path, top.__path__):
            for path in sorted(folder.rglob("*.py")):
                files[f"{top.__name__}/{path.relative_to(folder).as_posix()}"] = path
    for cls in task_cls.__mro__:
        if cls in (Task, object) or not issubclass(cls, Task):
            continue
        try:
            source = inspect.getsourcefile(cls)
        except (TypeError, OSError):  # defined in a REPL or by exec: no file to hash
            source = None
        if source is not None:
            files.setdefault(cls.__module__, Path(source))
    if not files:
        return None
    digests = {name: file_digest(path) for name, path in sorted(files.items())}
    return hashlib.sha256(json.dumps(digests, sort_keys=True).encode()).hexdigest()[:16]


def check_languages(task: Any, entry: Any, languages: Sequence[str] | None) -> list[str] | None:
    """``languages`` (``--languages``) checked against the task's ``languages`` option.

    A code selects the entry with the same primary language (``de-DE``, ``de_DE`` -> ``de``,
    :func:`xalign.languages.language_in`) and is passed on as given. Returns None for no
    restriction. A task without a ``languages`` option (``align``: gold set
    names or source languages) checks them itself.

    Raises:
        EvaluationError: a language the task does not evaluate, naming the task, its plugin,
            its languages and the ``--option`` that adds one.
        LanguageCodeError: a string that is not a language code, naming ``--languages`` and
            the task.
    """
    if not languages:
        return None
    wanted = list(dict.fromkeys(str(lang).strip() for lang in languages if str(lang).strip()))
    available = getattr(task.config, "languages", None)
    if available is None or not wanted:
        return wanted or None
    for lang in wanted:  # not a language code: refused before the model loads
        primary_language(lang, where=f"--languages: {entry.where()}")
    twins = duplicate_code(wanted)
    if twins is not None:  # evaluated twice, it would count twice in every average
        raise EvaluationError(
            f"--languages: {twins[0]} and {twins[1]} are the same language: keep one"
        )
    # by primary language (de-DE selects de); the task reports under the code given
    unknown = [lang for lang in wanted if language_in(lang, available) is None]
    if unknown:
        raise EvaluationError(
            f"--languages {','.join(unknown)}: {entry.where()} evaluates "
            f"{', '.join(map(str, available))} (its languages option); pick among them, or add "
            f"one with --option {task.name}.languages=[{','.join([*available, *unknown])}]"
        )
    return wanted


def task_inputs(task: Any, entry: Any, context: TaskContext) -> dict[str, str]:
    """``{absolute path: sha256}`` of the files ``task.inputs(context)`` declares."""
    from xalign.provenance import files_manifest

    try:
        paths = task.inputs(context)
        return files_manifest(paths)
    except XalignError:  # says what and where already (DataUnavailableError is an OSError too)
        raise
    except OSError as exc:
        raise EvaluationError(f"{entry.where()}: cannot hash its input files: {exc}") from exc
    except Exception as exc:
        raise PluginError(
            f"{entry.where()} failed in inputs(): {type(exc).__name__}: {exc}"
        ) from exc


def task_results(
    model_ref: str,
    task_name: str,
    *,
    options: dict[str, Any] | None = None,
    seeds: int | Sequence[int] = 1,
    context: TaskContext | None = None,
    tracking_uri: str | None = None,
    parent_run_id: str | None = None,
    reuse: bool = True,
    **kwargs: Any,
) -> list[TaskResult]:
    """The :class:`TaskResult` of ``task_name`` on a model, one per seed (computed, or reused
    from a finished run): :func:`evaluate_runs` without the run records; same options."""
    runs = evaluate_runs(
        model_ref,
        task_name,
        options=options,
        seeds=seeds,
        context=context,
        tracking_uri=tracking_uri,
        parent_run_id=parent_run_id,
        reuse=reuse,
        **kwargs,
    )
    return [r.result for r in runs]


def evaluate_runs(
    model_ref: str | ModelSpec,
    task_name: str,
    *,
    options: dict[str, Any] | None = None,
    seeds: int | Sequence[int] = 1,
    context: TaskContext | None = None,
    tracking_uri: str | None = None,
    parent_run_id: str | None = None,
    reuse: bool = True,
    base_model: str | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
    registry: PluginRegistry | None = None,
    extra_tags: dict[str, str] | None = None,
    announce: Callable[[int, str | None], None] | None = None,
) -> list[EvalRun]:
    """Evaluate per seed (``seeds``: a count -> ``range(seeds)``, or explicit seeds).

    Each seed is one MLflow run tagged ``xalign.kind=eval``; with ``reuse`` a FINISHED run with
    the same ``xalign.eval_key`` is loaded from its ``result.json`` instead of recomputed.
    ``announce(seed, run_id)`` is called per seed as it is decided: ``run_id`` the reused run,
    or ``None`` just before a new evaluation starts (not for the seeds a seedless task's one
    evaluation stands for).
    """
    uri = resolve_tracking_uri(tracking_uri)
    spec = (
        model_ref
        if isinstance(model_ref, ModelSpec)
        else resolve_spec(model_ref, tracking_uri=uri, base_model=base_model)
    )
    entry = (registry or get_registry()).task(task_name)
    check_metric_declaration(entry.cls, entry.where())  # before run(), not after it
    try:
        task = entry.cls.from_options(dict(options or {}))
    except Exception as exc:
        raise PluginError(f"{entry.where()}: bad options: {exc}") from exc
    resolved = (
        dataclasses.asdict(task.config)
        if dataclasses.is_dataclass(task.config)
        else dict(options or {})
    )
    for unset in ("lora", "joint"):  # not used: the keys of runs before these options
        if resolved.get(unset, False) is None:
            resolved.pop(unset)
    base_ctx = context or TaskContext()
    restricted = check_languages(task, entry, base_ctx.languages)
    base_ctx = dataclasses.replace(base_ctx, languages=restricted)
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    tracker = Tracker(uri, experiment)
    inputs = task_inputs(task, entry, base_ctx)
    software = {
        "plugin": f"{entry.source.distribution} {entry.source.version}",
        "xalign": __version__,
    }
    if getattr(task, "result_version", None) is not None:  # absent: keys of earlier releases
        software["result_version"] = str(task.result_version)
    software["result_schema"] = str(RESULT_SCHEMA)  # results stored before it: evaluated anew
    code = task_code(type(task))
    if code is not None:  # editable / unversioned plugin: its source is part of the key
        software["code"] = code
    out: list[EvalRun] = []
    uses_seed = bool(getattr(task, "uses_seed", True))
    for seed in seed_list:
        if not uses_seed and out:  # one evaluation stands for every seed
            out.append(dataclasses.replace(out[0], seed=seed, reused=True))
            continue
        key = eval_key(
            spec.identity,
            task_name,
            resolved,
            seed if uses_seed else None,
            base_ctx.languages,
            inputs=inputs,
            software=software,
        )
        found = find_eval_run(tracker, key, prefer_train_run=spec.train_run_id) if reuse else None
        if found is not None:
            run_id, result = found
            try:
                result = stamp_result(result, task, entry.where())
            except ResultContractError as exc:  # stored before xalign checked this
                warnings.warn(
                    f"not reusing eval run {run_id} (same inputs): its result breaks the task "
                    f"contract ({exc}); evaluating again",
                    TrackingWarning,
                    stacklevel=2,
                )
                found = None
        if found is not None:
            if announce is not None:
                announce(seed, run_id)
            out.append(
                EvalRun(
                    result, task_name, run_id, seed, True, key, spec.objective, spec.train_run_id
                )
            )
            continue
        if announce is not None:
            announce(seed, None)
        tags = {
            TAG_KIND: KIND_EVAL,
            TAG_TASK: task_name,
            TAG_SEED: str(seed),
            TAG_MODEL_REF: spec.ref,
            TAG_TRAIN_RUN_ID: spec.train_run_id or "",
            TAG_OBJECTIVE: spec.objective,
            TAG_EVAL_KEY: key,
            **(extra_tags or {}),
        }
        run_id = tracker.start(
            run_name=f"eval {task_name} {spec.objective} seed={seed}",
            tags=tags,
            parent_run_id=parent_run_id,
        )
        try:
            tracker.log_params(
                {
                    **{f"task.{k}": v for k, v in resolved.items()},
                    "task": task_name,
                    "seed": seed,
                    "model": spec.path,
                    "data_dir": base_ctx.data_dir,
                    "plugin.distribution": entry.source.distribution,
                    "plugin.version": entry.source.version,
                    "model.content": spec.identity,
                    "inputs.files": len(inputs),
                    "plugin.code": code or "release",
                    PARAM_VERSION: __version__,
                }
            )
            tracker.log_text(json.dumps(inputs, indent=1), "inputs.json")
            ctx = dataclasses.replace(
                base_ctx, seed=seed, output_dir=Path(base_ctx.output_dir) / str(run_id)
            )
            try:
                result = task.run(spec.path, ctx)
            except XalignError:
                raise
            except Exception as exc:  # a bug in the plugin or input it did not check
                raise PluginError(
                    f"{entry.where()} failed in run() on {spec.ref!r}: {type(exc).__name__}: {exc}"
                ) from exc
            if not isinstance(result, TaskResult):
                raise PluginError(
                    f"{entry.where()}: run() must return a TaskResult, got {type(result).__name__}"
                )
            result = stamp_result(result, task, entry.where())
            tracker.log_metrics(_flat_scores(result), step=0)
            for artifact in result.meta.get("artifacts", []):  # files the task wrote
                tracker.log_artifact(Path(artifact))
            # not Tracker.log_json: it sorts keys, and the task's language order matters
            tracker.log_text(json.dumps(result.to_dict(), indent=1, default=str), RESULT_FILE)
        except BaseException as exc:
            tracker.end(terminal_status(exc))
            raise
        tracker.end("FINISHED")
        out.append(
            EvalRun(
                result, task_name, str(run_id), seed, False, key, spec.objective, spec.train_run_id
            )
        )
    return out


def _flat_scores(result: TaskResult) -> dict[str, float]:
    return {
        f"{lang}/{metric}": float(v)
        for lang, scores in result.scores.items()
        for metric, v in scores.items()
        if isinstance(v, (int, float))
    }


def find_eval_run(
    tracker: Tracker, key: str, *, prefer_train_run: str | None = None
) -> tuple[str, TaskResult] | None:
    """The newest FINISHED eval run with ``key`` and its loaded result, if any.

    Runs of the same training run come first (the key holds the model's content, so a run
    of another training run with the key had bit-identical weights).
    """
    runs = sorted(
        tracker.eval_runs(key),
        key=lambda r: (
            bool(prefer_train_run) and r.data.tags.get(TAG_TRAIN_RUN_ID) != prefer_train_run
        ),
    )
    for run in runs:
        try:
            return run.info.run_id, load_result(tracker, run.info.run_id)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            warnings.warn(
                f"not reusing eval run {run.info.run_id} (same inputs): its result cannot be "
                f"read ({type(exc).__name__}: {exc}); evaluating again",
                TrackingWarning,
                stacklevel=2,
            )
    return None


def load_result(tracker: Tracker, run_id: str) -> TaskResult:
    """The :class:`TaskResult` stored as ``result.json`` in an eval run."""
    with tempfile.TemporaryDirectory() as tmp, _quiet_downloads():
        path = tracker.download_artifact(run_id, RESULT_FILE, tmp)
        data = json.loads(path.read_text(encoding="utf-8"))
    return TaskResult.from_dict(data)


@contextlib.contextmanager
def _quiet_downloads() -> Iterator[None]:
    name = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    old = os.environ.get(name)
    os.environ[name] = "false"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old
