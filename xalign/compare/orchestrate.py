"""Orchestration of ``xalign compare``: which runs to train, evaluate or reuse.

For each objective and seed ``s`` the training config is the given config with
``train.seed=s`` (and ``train.save_model=true``: evaluation needs the model); a FINISHED
training run is reused only when its content identity (tag ``xalign.identity``: config
fingerprint, corpus content, initial model content, word-link digests, xalign and plugin
versions; :func:`expected_components`) equals what a new run would train on now, else the
model is trained (and the log says what differed). Every task
is then evaluated with task seed ``s`` (the base encoder: task seeds only). These are the
"sequential" rows (align, then fine-tune). With ``modes`` holding ``joint``, each objective also
gets a row ``joint:NAME``: the base encoder evaluated on every task that fine-tunes
(its options have ``joint``, :class:`xalign.evaluation.finetune.FinetuneSettings`) with
NAME as an auxiliary loss during fine-tuning on the same config's corpus (joint realignment,
Gaschi et al. 2023); tasks that do not fine-tune have no joint result. All new runs are
nested under one MLflow parent run tagged ``xalign.kind=compare``, which also holds the report
(``compare.md``, ``compare.csv``, ``compare.png``, ``compare.json``).

The numbers are computed by :mod:`xalign.compare.statistics` and rendered by
:mod:`xalign.compare.report`; run queries and tag names are :mod:`xalign.tracking`'s.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from xalign.compare.correlation import alignment_transfer
from xalign.compare.correlation import fine_tunes as correlation_fine_tunes
from xalign.compare.references import reference_results
from xalign.compare.report import CompareReport, write_report
from xalign.compare.statistics import Results, Summary, summarize
from xalign.config import ConfigError, RunConfig, load_config, parse_override
from xalign.evaluation.runs import BASE, EvalRun, evaluate_runs, resolve_spec
from xalign.plugins import PluginError, PluginRegistry, get_registry
from xalign.redact import redact_uri
from xalign.task import TaskContext, check_metric_declaration
from xalign.tracking import (
    KIND_COMPARE,
    TAG_IDENTITY,
    TAG_KIND,
    TAG_LINK_SYMMETRIZATIONS,
    TAG_MODEL_DIR,
    TAG_OBJECTIVE,
    TAG_OBJECTIVES,
    TAG_SEED,
    TAG_TASKS,
    Tracker,
    resolve_tracking_uri,
    terminal_status,
)

MODES = ("sequential", "joint")
#: Row label prefix of joint realignment rows (``joint:sinkhorn``).
JOINT = "joint:"


def joint_row(objective: str) -> str:
    """The row label of ``objective`` (``NAME`` or ``NAME:WEIGHT``) as a joint loss."""
    return JOINT + objective.partition(":")[0]


def joint_options(
    objective: str,
    config_path: str | Path | None,
    overrides: Sequence[str],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``joint`` task option of ``objective`` (``NAME`` or ``NAME:WEIGHT``, the weight
    the auxiliary loss's) on the comparison's config and overrides (:func:`cell_overrides`),
    plus ``extra``
    (``schedule``, ``every``, ``batch_size``, ``options``, ``weight``)."""
    name, _, weight = objective.partition(":")
    out: dict[str, Any] = {
        "objective": name,
        "config": str(config_path) if config_path else None,
        "overrides": cell_overrides(overrides, objective),
        **(extra or {}),
    }
    if weight:
        out["weight"] = float(weight)
    return out


def fine_tunes(registry: PluginRegistry, task: str) -> bool:
    """Whether ``task``'s options have ``joint`` (its Config extends FinetuneSettings)."""
    return correlation_fine_tunes(registry.task(task).cls)


def training_config(
    config_path: str | Path | None, overrides: Sequence[str], objective: str, seed: int
) -> RunConfig:
    """The training config of one (objective, seed) cell of the comparison: the comparison's
    overrides, less those of the other compared objectives (:func:`cell_overrides`)."""
    return load_config(
        config_path,
        [*cell_overrides(overrides, objective), f"train.seed={seed}", "train.save_model=true"],
        objectives=[objective],
    )


def objective_name(objective: str) -> str:
    """``NAME`` of a compared objective written ``NAME`` or ``NAME:WEIGHT``."""
    return objective.partition(":")[0].strip()


def cell_overrides(overrides: Sequence[str], objective: str) -> list[str]:
    """The ``--set`` overrides one objective's cells train with: ``objectives.OTHER...``
    overrides configure the rows of objective OTHER only (each row trains its objective
    alone), every other override holds for every row."""
    name = objective_name(objective)
    out = []
    for item in overrides:
        keys, _ = parse_override(item)
        if keys[0] == "objectives" and len(keys) > 1 and keys[1] != name:
            continue
        out.append(item)
    return out


def check_objective_overrides(overrides: Sequence[str], objectives: Sequence[str]) -> None:
    """Every ``--set objectives.NAME...`` override names a compared objective.

    Raises:
        ConfigError: ``--set objectives=...`` (the rows are the compared objectives), or an
            override of an objective that is not compared (a typo, or one meant to be added
            to every row: compare trains each objective alone).
    """
    names = [objective_name(o) for o in objectives]
    for item in overrides:
        keys, _ = parse_override(item)
        if keys[0] != "objectives":
            continue
        if len(keys) == 1 or keys[1] not in names:
            raise ConfigError(
                f"--set {item.split('=', 1)[0].strip()}: compare trains each of "
                f"{', '.join(names)} alone; --set objectives.NAME.KEY=VALUE sets an option "
                f"of one of them (name it among the compared objectives to add a row)"
            )


ContentMemo = dict[Any, Any]


def expected_components(
    cfg: RunConfig,
    symmetrizations: Sequence[str] = (),
    *,
    registry: PluginRegistry | None = None,
    memo: ContentMemo | None = None,
) -> tuple[dict[str, Any] | None, str]:
    """The identity components a training run of ``cfg`` would record now, or (None, why).

    ``symmetrizations``: the link symmetrisations the run reads (from a candidate run's
    ``xalign.link_symmetrizations`` tag). eflomal links are looked up in the cache without
    tokenising the corpus; uncached links cannot be known before training (eflomal draws new
    ones), and then no run can be reused. ``memo`` shares corpus/model digests between the
    cells of one comparison.
    """
    from xalign.data.links import corpus_key, known_links_digests, pair_name
    from xalign.data.prepare import corpus_options
    from xalign.links import combined_digest
    from xalign.provenance import corpus_digest, model_identity, training_components

    memo = {} if memo is None else memo
    registry = registry or get_registry()
    plugins = {}
    for name in cfg.objectives:
        src = registry.objective(name).source
        plugins[name] = f"{src.distribution} {src.version}"
    model_key = ("model", cfg.model.name, cfg.model.revision)
    if model_key not in memo:
        memo[model_key] = model_identity(cfg.model.name, cfg.model.revision)
    model_id = memo[model_key]
    target = cfg.data.target
    corpus = {}
    pairs = [(lang, target) for lang in cfg.data.languages]  # (src, tgt): never a split name
    for lang, _ in pairs:
        key = ("corpus", json.dumps(cfg.data.corpus, sort_keys=True), lang, target, cfg.data.limit)
        if key not in memo:
            memo[key] = corpus_digest(cfg.data.corpus, lang, target, cfg.data.limit)
        corpus[pair_name((lang, target))] = memo[key]
    links = {}
    from xalign.self_links import is_self

    # data.links: self: the links follow from the config (fingerprint), as the run recorded
    if symmetrizations and not is_self(cfg.data.links):
        for pair in pairs:
            name, digest = pair_name(pair), corpus[pair_name(pair)]
            index = (
                None if cfg.data.links else corpus_key(pair, digest, corpus_options(cfg, model_id))
            )
            found = known_links_digests(
                pair, symmetrizations, option=cfg.data.links, index_key=index
            )
            if found is None:
                return None, (
                    f"the {'/'.join(symmetrizations)} word links of {name} are not "
                    f"in the cache (a new eflomal run draws new links; set data.links "
                    f"to a run's links artifacts to reuse its links)"
                )
            links[name] = combined_digest(found)
    return training_components(
        cfg, plugins=plugins, links=links, corpus_digests=corpus, model_id=model_id
    ), ""


def find_training_run(
    tracker: Tracker,
    cfg: RunConfig,
    *,
    registry: PluginRegistry | None = None,
    memo: ContentMemo | None = None,
) -> tuple[Any, list[str]]:
    """(the newest FINISHED training run of ``cfg`` with the same content identity whose saved
    model still exists, or None; why each other candidate was not reusable).

    Candidates share the config fingerprint; each is checked against
    :func:`expected_components` for the link symmetrisations it recorded.
    """
    from xalign.provenance import input_differences, training_identity

    runs = tracker.training_runs(cfg.fingerprint())
    memo = {} if memo is None else memo
    reasons: list[str] = []
    for run in runs:
        run_id, tags = run.info.run_id, run.data.tags
        model_dir = tags.get(TAG_MODEL_DIR)
        if not (model_dir and Path(model_dir).exists()):
            continue
        identity = tags.get(TAG_IDENTITY)
        if not identity:
            reasons.append(
                f"run {run_id} recorded no content identity (trained by an older xalign)"
            )
            continue
        syms = tuple(sorted(filter(None, tags.get(TAG_LINK_SYMMETRIZATIONS, "").split(","))))
        key = ("components", cfg.fingerprint(), syms)
        components, why = memo.get(key) or expected_components(
            cfg, syms, registry=registry, memo=memo
        )
        if components is not None:  # links a later training caches are looked up again
            memo[key] = (components, why)
        if components is None:
            reasons.append(f"run {run_id}: {why}")
        elif training_identity(components) == identity:
            return run, reasons
        else:
            diffs = input_differences(run.data.params, components) or [
                "its recorded content identity differs"
            ]
            reasons.append(f"run {run_id} trained on other inputs: {'; '.join(diffs)}")
    return None, reasons


def compare(
    objectives: Sequence[str],
    *,
    config_path: str | Path | None = None,
    overrides: Sequence[str] = (),
    tasks: Sequence[str] = (),
    seeds: int = 1,
    task_options: dict[str, dict[str, Any]] | None = None,
    data_dir: Path | None = None,
    tracking_uri: str | None = None,
    reuse: bool = True,
    registry: PluginRegistry | None = None,
    show_progress: bool = True,
    log: Callable[[str], None] | None = None,
    modes: Sequence[str] = ("sequential",),
    joint: dict[str, Any] | None = None,
    reuse_evaluations: bool = True,
    languages: Sequence[str] | None = None,
) -> CompareReport:
    """Train (or reuse) each objective per seed, evaluate every task, write the report.

    ``modes``: ``sequential`` (align, then fine-tune: a row per objective) and/or ``joint``
    (a ``joint:NAME`` row per objective, see the module docstring); ``joint``: settings of
    every joint row (``weight``, ``schedule``, ``every``, ``batch_size``, ``options``).
    ``reuse_evaluations=False`` re-evaluates every model while still reusing training runs;
    ``languages`` restricts every task to those languages (``TaskContext.languages``).
    """
    say = log or (lambda _msg: None)
    objectives, tasks = list(dict.fromkeys(objectives)), list(dict.fromkeys(tasks))
    registry = registry or get_registry()
    options = _check_inputs(objectives, tasks, seeds, task_options or {}, registry)
    check_objective_overrides(overrides, objectives)
    modes = _check_modes(modes, objectives, tasks, registry, joint or {}, config_path, overrides)
    cfg0 = training_config(config_path, overrides, objectives[0], 0)
    uri = resolve_tracking_uri(tracking_uri or cfg0.tracking.uri)
    experiment = cfg0.tracking.experiment
    tracker = Tracker(uri, experiment)
    sequential = objectives if "sequential" in modes else []
    joints = [joint_row(o) for o in objectives] if "joint" in modes else []
    rows = [BASE, *sequential, *joints]
    parent = str(
        tracker.start(
            run_name=f"compare {' vs '.join(objectives)}",
            tags={
                TAG_KIND: KIND_COMPARE,
                TAG_OBJECTIVES: ",".join(rows[1:]),
                TAG_TASKS: ",".join(tasks),
            },
        )
    )
    try:
        tracker.log_params(
            {
                "objectives": objectives,
                "tasks": tasks,
                "seeds": seeds,
                "config": str(config_path),
                "overrides": list(overrides),
                "task_options": options,
                "data_dir": str(data_dir),
                "base_model": cfg0.model.name,
                "reuse": reuse,
                "reuse_evaluations": reuse and reuse_evaluations,
                "languages": list(languages or []),
                "seen_languages": list(cfg0.data.languages),
                "modes": list(modes),
                "joint": dict(joint or {}),
            }
        )
        root = Path(cfg0.train.output_dir)
        ctx = TaskContext(
            data_dir=data_dir,
            output_dir=root / "eval",
            show_progress=show_progress,
            languages=list(languages) if languages else None,
        )
        common = {
            "context": ctx,
            "tracking_uri": uri,
            "parent_run_id": parent,
            "reuse": reuse and reuse_evaluations,
            "experiment": experiment,
            "registry": registry,
        }
        train_runs: list[dict[str, Any]] = []
        memo: ContentMemo = {}  # corpus/model digests, computed once per comparison
        eval_runs: list[tuple[str, EvalRun]] = []
        base = resolve_spec(BASE, tracking_uri=uri, base_model=cfg0.model.name)
        for t in tasks:
            done = evaluate_runs(
                base,
                t,
                options=options[t],
                seeds=seeds,
                announce=_announcer(BASE, t, say),
                **common,
            )
            eval_runs += [(BASE, r) for r in done]
        references = reference_results(tasks, options, registry, ctx, cfg0.data, rows)
        for obj in objectives:
            if obj not in sequential:
                continue
            for seed in range(seeds):
                cfg = training_config(config_path, overrides, obj, seed)
                cfg.tracking.uri = uri
                cfg.tracking.run_name = f"train {obj} seed={seed}"
                run_id, reused = _train_or_reuse(
                    cfg,
                    tracker,
                    parent,
                    reuse=reuse,
                    registry=registry,
                    show_progress=show_progress,
                    say=say,
                    memo=memo,
                )
                train_runs.append(
                    {
                        "objective": obj,
                        "seed": seed,
                        "run_id": run_id,
                        "reused": reused,
                        "fingerprint": cfg.fingerprint(),
                    }
                )
                spec = resolve_spec(run_id, tracking_uri=uri)
                for t in tasks:
                    done = evaluate_runs(
                        spec,
                        t,
                        options=options[t],
                        seeds=[seed],
                        announce=_announcer(obj, t, say),
                        **common,
                    )
                    eval_runs += [(obj, r) for r in done]
        for obj in objectives:
            if joint_row(obj) not in joints:
                continue
            row = joint_row(obj)
            for t in tasks:
                if not fine_tunes(registry, t):
                    continue
                opts = {**options[t], "joint": joint_options(obj, config_path, overrides, joint)}
                done = evaluate_runs(
                    base,
                    t,
                    options=opts,
                    seeds=seeds,
                    extra_tags={TAG_OBJECTIVE: row},
                    announce=_announcer(row, t, say, f" with {obj} as a joint loss"),
                    **common,
                )
                eval_runs += [(row, r) for r in done]
        results: Results = {row: {t: {} for t in tasks} for row in [*rows, *references]}
        for row, r in eval_runs:
            results[row][r.task][r.seed] = r.result
        for row, by_task in references.items():  # one result, shown as seed 0
            for t, result in by_task.items():
                results[row][t][0] = result
        summary = summarize(
            results,
            rows=[*rows, *references],
            tasks=tasks,
            seen_languages=cfg0.data.languages,
            seeds=seeds,
            target_language=cfg0.data.target,
            task_options=options,
        )
        runs = {
            "parent": parent,
            "tracking_uri": redact_uri(uri),  # the report is written and logged
            "experiment": experiment,
            "train": train_runs,
            "references": {
                row: {t: res.meta.get("reference", {}) for t, res in by_task.items()}
                for row, by_task in references.items()
            },
            "eval": [
                {
                    "objective": row,
                    "task": r.task,
                    "seed": r.seed,
                    "run_id": r.run_id,
                    "reused": r.reused,
                    "eval_key": r.eval_key,
                }
                for row, r in eval_runs
            ],
        }
        report = CompareReport(parent, summary, runs)
        # with alignment and transfer tasks: Δalignment vs Δtransfer (compare_correlation.*)
        report.correlation = alignment_transfer(summary, registry)
        write_report(report, root / "compare" / parent)
        for name, artifact in report.artifacts.items():  # the tables, plots and figures
            if name != "output_dir":
                tracker.log_artifact(Path(artifact))
        tracker.log_metrics(_parent_metrics(summary), step=0)
    except BaseException as exc:
        tracker.end(terminal_status(exc))
        raise
    tracker.end("FINISHED")
    return report


def _check_modes(
    modes: Sequence[str],
    objectives: list[str],
    tasks: list[str],
    registry: PluginRegistry,
    joint: dict[str, Any],
    config_path: str | Path | None,
    overrides: Sequence[str],
) -> list[str]:
    """The modes, checked before any training: known names, a task that fine-tunes for
    joint rows, and joint settings that build (``JointSettings``)."""
    from xalign.evaluation.joint import JointSettings

    modes = list(dict.fromkeys(modes))
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise ConfigError(f"--mode: expected one or more of {', '.join(MODES)}, got {modes}")
    if "joint" not in modes:
        if joint:
            raise ConfigError("--joint-option needs --mode joint")
        return modes
    if not any(fine_tunes(registry, t) for t in tasks):
        raise ConfigError(
            f"--mode joint: none of the tasks {tasks} fine-tunes (joint rows exist only for "
            f"tasks whose options have 'joint', e.g. xnli-mini, pos-mini)"
        )
    for obj in objectives:
        try:
            JointSettings(**joint_options(obj, config_path, overrides, joint))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"--joint-option: {exc}") from exc
    return modes


def _check_inputs(
    objectives: list[str],
    tasks: list[str],
    seeds: int,
    task_options: dict[str, dict[str, Any]],
    registry: PluginRegistry,
) -> dict[str, dict[str, Any]]:
    """Fail before any training on unknown objectives/tasks or bad task options."""
    if not objectives:
        raise ConfigError("compare needs at least one objective")
    if not tasks:
        raise ConfigError("compare needs at least one task (--tasks)")
    if seeds < 1:
        raise ConfigError("--seeds must be >= 1")
    for name in task_options:
        if name not in tasks:
            raise ConfigError(f"--option for task {name!r}, which is not in --tasks")
    for obj in objectives:
        registry.objective(obj.partition(":")[0])
    options = {t: dict(task_options.get(t) or {}) for t in tasks}
    for t in tasks:
        entry = registry.task(t)
        check_metric_declaration(entry.cls, entry.where())  # not after training and base eval
        try:
            entry.cls.from_options(options[t])
        except Exception as exc:
            raise PluginError(f"{entry.where()}: bad options: {exc}") from exc
    return options


def _announcer(
    row: str, task: str, say: Callable[[str], None], how: str = ""
) -> Callable[[int, str | None], None]:
    """One line per seed of a row's evaluation on ``task``, once it is known whether it is
    evaluated (``evaluating ROW on TASK, seed S``) or reused (as for reused training runs)."""

    def announce(seed: int, reused: str | None) -> None:
        if reused is None:
            say(f"evaluating {row} on {task}, seed {seed}{how}")
        else:
            say(f"reusing evaluation run {reused} ({row} on {task}, seed {seed})")

    return announce


def _train_or_reuse(
    cfg: RunConfig,
    tracker: Tracker,
    parent: str,
    *,
    reuse: bool,
    registry: PluginRegistry,
    show_progress: bool,
    say: Callable[[str], None],
    memo: ContentMemo | None = None,
) -> tuple[str, bool]:
    """(training run id, reused?) for one config; new runs are nested under ``parent``.

    A run is reused only with the same content identity (:func:`find_training_run`); the
    reasons other runs of the same config were not reused are logged.
    """
    from xalign.recipe import run_training

    found, reasons = (
        find_training_run(tracker, cfg, registry=registry, memo=memo) if reuse else (None, [])
    )
    if found is not None:
        say(f"reusing training run {found.info.run_id} ({cfg.tracking.run_name})")
        return found.info.run_id, True
    for reason in reasons:
        say(f"not reusing {reason}")
    say(f"training: {cfg.tracking.run_name}")
    result = run_training(
        cfg,
        registry=registry,
        show_progress=show_progress,
        parent_run_id=parent,
        extra_tags={TAG_SEED: str(cfg.train.seed)},
    )
    return str(result.run_id), False


def _parent_metrics(summary: Summary) -> dict[str, float]:
    """The parent run's metrics: every mean, as ``TASK/OBJECTIVE/LANGUAGE|avg_SCOPE``."""
    out = {
        f"{c.task}/{c.objective}/{c.language}": c.mean for c in summary.rows if c.mean is not None
    }
    out.update(
        {
            f"{a.task}/{a.objective}/avg_{a.scope}": a.mean
            for a in summary.averages
            if a.mean is not None
        }
    )
    return out
