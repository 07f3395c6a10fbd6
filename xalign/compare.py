"""Head-to-head comparison of alignment objectives against the unaligned base encoder.

For each objective and seed ``s`` the training config is the given config with
``train.seed=s`` (and ``train.save_model=true``: evaluation needs the model); a FINISHED
training run is reused only when its content identity (tag ``xalign.identity``: config
fingerprint, corpus content, initial model content, word-link digests, xalign and plugin
versions; :func:`expected_components`) equals what a new run would train on now, else the
model is trained (and the log says what differed). Every task
is then evaluated with task seed ``s`` (the base encoder: task seeds only). All new runs are
nested under one MLflow parent run tagged ``xalign.kind=compare``, which also holds the report
(``compare.md``, ``compare.csv``, ``compare.png``, ``compare.json``).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xalign.config import ConfigError, RunConfig, load_config
from xalign.evaluate import BASE, EvalRun, evaluate_runs, resolve_spec
from xalign.evaluation.metrics import paired_bootstrap, seed_summary
from xalign.plugins import PluginError, PluginRegistry, get_registry
from xalign.task import TaskContext, TaskResult
from xalign.tracking import Tracker, resolve_tracking_uri, terminal_status

N_BOOT = 1000
BOOT_SEED = 0
ALPHA = 0.05
SCOPES = ("seen", "all")

# row -> task -> seed -> result
Results = dict[str, dict[str, dict[int, TaskResult]]]


@dataclass
class CompareReport:
    """Numbers, run ids and artifact paths of one comparison."""

    parent_run_id: str
    summary: dict[str, Any]
    runs: dict[str, Any]
    artifacts: dict[str, str] = field(default_factory=dict)
    markdown: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "parent_run_id": self.parent_run_id,
            **self.summary,
            "runs": self.runs,
            "artifacts": self.artifacts,
        }


# ------------------------------------------------------------------------------ orchestration
def training_config(
    config_path: str | Path | None, overrides: Sequence[str], objective: str, seed: int
) -> RunConfig:
    """The training config of one (objective, seed) cell of the comparison."""
    return load_config(
        config_path,
        [*overrides, f"train.seed={seed}", "train.save_model=true"],
        objectives=[objective],
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
    from xalign.links import combined_digest, corpus_key, corpus_options, known_links_digests
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
    for lang in cfg.data.languages:
        key = ("corpus", json.dumps(cfg.data.corpus, sort_keys=True), lang, target, cfg.data.limit)
        if key not in memo:
            memo[key] = corpus_digest(cfg.data.corpus, lang, target, cfg.data.limit)
        corpus[f"{lang}-{target}"] = memo[key]
    links = {}
    if symmetrizations:
        for pair, digest in corpus.items():
            index = (
                None if cfg.data.links else corpus_key(pair, digest, corpus_options(cfg, model_id))
            )
            found = known_links_digests(
                pair, symmetrizations, option=cfg.data.links, index_key=index
            )
            if found is None:
                return None, (
                    f"the {'/'.join(symmetrizations)} word links of {pair} are not "
                    f"in the cache (a new eflomal run draws new links; set data.links "
                    f"to a run's links artifacts to reuse its links)"
                )
            links[pair] = combined_digest(found)
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

    runs = tracker.client.search_runs(
        [tracker.experiment_id],
        f"tags.`xalign.fingerprint` = '{cfg.fingerprint()}' and tags.`xalign.kind` = 'train' "
        f"and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
    )
    memo = {} if memo is None else memo
    reasons: list[str] = []
    for run in runs:
        run_id, tags = run.info.run_id, run.data.tags
        model_dir = tags.get("xalign.model_dir")
        if not (model_dir and Path(model_dir).exists()):
            continue
        identity = tags.get("xalign.identity")
        if not identity:
            reasons.append(
                f"run {run_id} recorded no content identity (trained by an older xalign)"
            )
            continue
        syms = tuple(sorted(filter(None, tags.get("xalign.link_symmetrizations", "").split(","))))
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
) -> CompareReport:
    """Train (or reuse) each objective per seed, evaluate every task, write the report."""
    say = log or (lambda _msg: None)
    objectives, tasks = list(dict.fromkeys(objectives)), list(dict.fromkeys(tasks))
    registry = registry or get_registry()
    options = _check_inputs(objectives, tasks, seeds, task_options or {}, registry)
    cfg0 = training_config(config_path, overrides, objectives[0], 0)
    uri = resolve_tracking_uri(tracking_uri or cfg0.tracking.uri)
    experiment = cfg0.tracking.experiment
    tracker = Tracker(uri, experiment)
    rows = [BASE, *objectives]
    parent = str(
        tracker.start(
            run_name=f"compare {' vs '.join(objectives)}",
            tags={
                "xalign.kind": "compare",
                "xalign.objectives": ",".join(objectives),
                "xalign.tasks": ",".join(tasks),
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
                "seen_languages": list(cfg0.data.languages),
            }
        )
        root = Path(cfg0.train.output_dir)
        ctx = TaskContext(data_dir=data_dir, output_dir=root / "eval", show_progress=show_progress)
        common = {
            "context": ctx,
            "tracking_uri": uri,
            "parent_run_id": parent,
            "reuse": reuse,
            "experiment": experiment,
            "registry": registry,
        }
        train_runs: list[dict[str, Any]] = []
        memo: ContentMemo = {}  # corpus/model digests, computed once per comparison
        eval_runs: list[tuple[str, EvalRun]] = []
        base = resolve_spec(BASE, tracking_uri=uri, base_model=cfg0.model.name)
        for t in tasks:
            say(f"evaluating base on {t} ({seeds} seed(s))")
            eval_runs += [
                (BASE, r) for r in evaluate_runs(base, t, options=options[t], seeds=seeds, **common)
            ]
        for obj in objectives:
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
                    say(f"evaluating {obj} (seed {seed}) on {t}")
                    eval_runs += [
                        (obj, r)
                        for r in evaluate_runs(spec, t, options=options[t], seeds=[seed], **common)
                    ]
        results: Results = {row: {t: {} for t in tasks} for row in rows}
        for row, r in eval_runs:
            results[row][r.task][r.seed] = r.result
        summary = summarize(
            results,
            rows=rows,
            tasks=tasks,
            seen_languages=cfg0.data.languages,
            seeds=seeds,
            target_language=cfg0.data.target,
        )
        runs = {
            "parent": parent,
            "tracking_uri": uri,
            "experiment": experiment,
            "train": train_runs,
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
        write_report(report, root / "compare" / parent)
        for name in ("markdown", "csv", "png", "json"):
            tracker.log_artifact(Path(report.artifacts[name]))
        tracker.log_metrics(_parent_metrics(summary), step=0)
    except BaseException as exc:
        tracker.end(terminal_status(exc))
        raise
    tracker.end("FINISHED")
    return report


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
        try:
            entry.cls.from_options(options[t])
        except Exception as exc:
            raise PluginError(f"{entry.where()}: bad options: {exc}") from exc
    return options


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
    from xalign.trainer import run_training

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
        extra_tags={"xalign.seed": str(cfg.train.seed)},
    )
    return str(result.run_id), False


def _parent_metrics(summary: dict[str, Any]) -> dict[str, float]:
    out = {
        f"{r['task']}/{r['objective']}/{r['language']}": r["mean"]
        for r in summary["rows"]
        if r["mean"] is not None
    }
    out.update(
        {
            f"{a['task']}/{a['objective']}/avg_{a['scope']}": a["mean"]
            for a in summary["averages"]
            if a["mean"] is not None
        }
    )
    return out


# ------------------------------------------------------------------------------ statistics
def summarize(
    results: Results,
    *,
    rows: Sequence[str],
    tasks: Sequence[str],
    seen_languages: Sequence[str],
    seeds: int | None = None,
    target_language: str = "en",
) -> dict[str, Any]:
    """Per-language and averaged mean ± std over seeds, Δ vs base, best, significance.

    "seen" languages are the training sources (``data.languages``), not the target.
    """
    out: dict[str, Any] = {
        "objectives": list(rows),
        "tasks": {},
        "seeds": seeds,
        "seen_languages": list(seen_languages),
        "target_language": target_language,
        "rows": [],
        "averages": [],
        "significance": {
            "test": "paired bootstrap",
            "alternative": "two-sided",
            "resamples": N_BOOT,
            "seed": BOOT_SEED,
            "alpha": ALPHA,
            "pairing": "per-example main-metric scores concatenated across seeds, "
            "paired by (seed, example)",
            "vs": BASE,
            "results": [],
        },
        "head_to_head": [],
    }
    for task in tasks:
        info = _task_info(task, {r: results[r][task] for r in rows}, seen_languages)
        out["tasks"][task] = info
        hib = info["higher_is_better"]
        for key in info["languages"]:
            stats = {
                r: _stats(
                    [
                        res.main()[key]
                        for _, res in sorted(results[r][task].items())
                        if key in res.scores
                    ]
                )
                for r in rows
            }
            best = _best({r: s["mean"] for r, s in stats.items()}, hib)
            for r in rows:
                test = None if r == BASE else _paired(results[r][task], results[BASE][task], key)
                if test is not None:
                    out["significance"]["results"].append(
                        {"task": task, "language": key, "objective": r, **test}
                    )
                out["rows"].append(
                    {
                        "task": task,
                        "language": key,
                        "objective": r,
                        **stats[r],
                        **_delta(stats[r], stats[BASE], r),
                        "p_value": test["p_value"] if test else None,
                        "significant": bool(test and test["p_value"] < ALPHA),
                        "best": r in best,
                    }
                )
            out["head_to_head"] += _head_to_head(task, key, stats, results, rows, hib)
        for scope in SCOPES:
            keys = info["seen"] if scope == "seen" else info["languages"]
            if not keys:
                continue
            stats = {r: _stats(_seed_averages(results[r][task], keys)) for r in rows}
            best = _best({r: s["mean"] for r, s in stats.items()}, hib)
            for r in rows:
                out["averages"].append(
                    {
                        "task": task,
                        "scope": scope,
                        "languages": list(keys),
                        "objective": r,
                        **stats[r],
                        **_delta(stats[r], stats[BASE], r),
                        "best": r in best,
                    }
                )
    return out


def _task_info(
    task: str, by_row: dict[str, dict[int, TaskResult]], seen_languages: Sequence[str]
) -> dict[str, Any]:
    first = [res for seeds in by_row.values() for _, res in sorted(seeds.items())]
    if not first:
        raise ValueError(f"no results for task {task!r}")
    keys: list[str] = []
    language_of: dict[str, str] = {}
    for res in first:
        mapping = res.meta.get("languages") if isinstance(res.meta, dict) else None
        for key in res.scores:
            if key not in keys:
                keys.append(key)
            if isinstance(mapping, dict) and key in mapping:
                language_of[key] = str(mapping[key])
    seen = [k for k in keys if language_of.get(k, k) in set(seen_languages)]
    return {
        "main_metric": first[0].main_metric,
        "higher_is_better": bool(first[0].meta.get("higher_is_better", True)),
        "languages": keys,
        "seen": seen,
        "language_of": {k: language_of.get(k, k) for k in keys},
    }


def _stats(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"mean": None, "std": None, "n_seeds": 0, "values": []}
    mean, std = seed_summary(values)
    return {"mean": mean, "std": std, "n_seeds": len(values), "values": [float(v) for v in values]}


def _delta(stats: dict[str, Any], base: dict[str, Any], row: str) -> dict[str, Any]:
    ok = row != BASE and stats["mean"] is not None and base["mean"] is not None
    return {"delta_vs_base": stats["mean"] - base["mean"] if ok else None}


def _best(means: dict[str, float | None], higher_is_better: bool) -> set[str]:
    valid = {r: m for r, m in means.items() if m is not None}
    if not valid:
        return set()
    top = max(valid.values()) if higher_is_better else min(valid.values())
    return {r for r, m in valid.items() if abs(m - top) <= 1e-12}


def _seed_averages(by_seed: dict[int, TaskResult], keys: Sequence[str]) -> list[float]:
    """Per seed, the main metric averaged over ``keys`` (seeds missing one are skipped)."""
    out = []
    for _, res in sorted(by_seed.items()):
        main = res.main()
        if all(k in main for k in keys):
            out.append(sum(main[k] for k in keys) / len(keys))
    return out


def _paired(a: dict[int, TaskResult], b: dict[int, TaskResult], key: str) -> dict[str, Any] | None:
    """Paired bootstrap of a vs b on ``key``'s per-example scores over the shared seeds."""
    xs: list[float] = []
    ys: list[float] = []
    used = []
    for seed in sorted(set(a) & set(b)):
        x, y = a[seed].per_example.get(key), b[seed].per_example.get(key)
        if x and y and len(x) == len(y):
            xs += list(x)
            ys += list(y)
            used.append(seed)
    if not xs:
        return None
    test = paired_bootstrap(xs, ys, n=N_BOOT, seed=BOOT_SEED, alternative="two-sided")
    return {
        "delta_examples": test["delta"],
        "p_value": test["p_value"],
        "ci_low": test["ci_low"],
        "ci_high": test["ci_high"],
        "n_examples": len(xs),
        "seeds": used,
    }


def _head_to_head(
    task: str,
    key: str,
    stats: dict[str, dict[str, Any]],
    results: Results,
    rows: Sequence[str],
    hib: bool,
) -> list[dict[str, Any]]:
    """Best objective vs the runner-up (base excluded) on one language."""
    ranked = sorted(
        (r for r in rows if r != BASE and stats[r]["mean"] is not None),
        key=lambda r: stats[r]["mean"],
        reverse=hib,
    )
    if len(ranked) < 2:
        return []
    best, second = ranked[0], ranked[1]
    test = _paired(results[best][task], results[second][task], key)
    return [
        {
            "task": task,
            "language": key,
            "best": best,
            "runner_up": second,
            "delta": stats[best]["mean"] - stats[second]["mean"],
            "p_value": test["p_value"] if test else None,
            "significant": bool(test and test["p_value"] < ALPHA),
        }
    ]


# ------------------------------------------------------------------------------ rendering
def decimals(summary: dict[str, Any], task: str) -> int:
    """3 decimals for metrics in [0, 1], else 2."""
    means = [
        r["mean"]
        for r in summary["rows"] + summary["averages"]
        if r["task"] == task and r["mean"] is not None
    ]
    return 3 if all(abs(m) <= 1.0 for m in means) else 2


def cell_parts(entry: dict[str, Any], d: int) -> tuple[str, str, bool]:
    """(``mean ± std``, `` (+Δ)*`` suffix, bold?) of one table cell."""
    if entry["mean"] is None:
        return "–", "", False
    core = f"{entry['mean']:.{d}f} ± {entry['std']:.{d}f}"
    suffix = ""
    if entry.get("delta_vs_base") is not None:
        suffix = f" ({entry['delta_vs_base']:+.{d}f})"
    if entry.get("significant"):
        suffix += "*"
    return core, suffix, bool(entry.get("best"))


def table_cells(summary: dict[str, Any], task: str) -> tuple[list[str], list[list[tuple]]]:
    """Header and per-objective rows of ``cell_parts`` for one task."""
    info = summary["tasks"][task]
    d = decimals(summary, task)
    scopes = [
        s for s in SCOPES if any(a["task"] == task and a["scope"] == s for a in summary["averages"])
    ]
    header = ["objective", *info["languages"], *(f"avg {s}" for s in scopes)]
    body = []
    for row in summary["objectives"]:
        cells = [
            next(
                r
                for r in summary["rows"]
                if r["task"] == task and r["language"] == k and r["objective"] == row
            )
            for k in info["languages"]
        ]
        cells += [
            next(
                a
                for a in summary["averages"]
                if a["task"] == task and a["scope"] == s and a["objective"] == row
            )
            for s in scopes
        ]
        body.append([row, *(cell_parts(c, d) for c in cells)])
    return header, body


def footer(summary: dict[str, Any]) -> list[str]:
    sig = summary["significance"]
    seen = ", ".join(summary["seen_languages"])
    target = summary.get("target_language", "en")
    return [
        "mean ± std: mean and sample standard deviation (ddof=1) over seeds; seed s trains "
        "with train.seed=s and evaluates with task seed s (base: task seed s only).",
        "(Δ): objective mean − base mean, in the metric's units (for lower-is-better metrics "
        "a negative Δ is an improvement). Bold: best mean in the column (ties all bold).",
        f"avg seen: mean over the source languages the objectives were trained on "
        f"(data.languages: {seen}); the alignment target {target} (also the task-training "
        f"language) is not counted as seen. avg all: mean over every language the task "
        f"reports, {target} included. Each average is computed per seed, then mean ± std over "
        f"seeds; averages are not tested.",
        f"*: p < {sig['alpha']} in a two-sided paired bootstrap test (Koehn 2004; "
        f"{sig['resamples']} resamples, seed {sig['seed']}) of the objective vs base on the "
        f"task's per-example main-metric scores, concatenated across seeds and paired by "
        f"(seed, example), resampling (seed, example) pairs; p = min(1, 2·min(P(Δ*≤0), "
        f"P(Δ*≥0))), reported as <{1 / sig['resamples']:g} when no resample crosses 0. "
        f"Best vs runner-up: the same test between the two best objectives (base excluded). "
        f"No correction for multiple comparisons.",
    ]


def to_markdown(summary: dict[str, Any], parent_run_id: str | None = None) -> str:
    rows = [r for r in summary["objectives"] if r != BASE]
    lines = [f"# Zero-shot transfer: {', '.join(rows)} vs base", ""]
    if parent_run_id:
        lines += [f"MLflow parent run `{parent_run_id}`; {summary['seeds']} seed(s).", ""]
    for task, info in summary["tasks"].items():
        way = "higher" if info["higher_is_better"] else "lower"
        lines += [f"## {task} ({info['main_metric']}, {way} is better)", ""]
        header, body = table_cells(summary, task)
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
        for name, *cells in body:
            texts = [(f"**{c}**" if bold else c) + s for c, s, bold in cells]
            lines.append("| " + " | ".join([name, *texts]) + " |")
        h2h = [h for h in summary["head_to_head"] if h["task"] == task]
        if h2h:
            d = decimals(summary, task)
            lines += [
                "",
                "Best objective vs runner-up (same paired bootstrap):",
                "",
                "| language | best | runner-up | Δ | p |",
                "|---|---|---|---:|---:|",
            ]
            for h in h2h:
                p = format_p(h["p_value"], summary["significance"]["resamples"])
                star = "*" if h["significant"] else ""
                lines.append(
                    f"| {h['language']} | {h['best']} | {h['runner_up']} | "
                    f"{h['delta']:+.{d}f} | {p}{star} |"
                )
        lines.append("")
    lines += ["---", ""] + [f"- {note}" for note in footer(summary)]
    return "\n".join(lines) + "\n"


def format_p(p: float | None, resamples: int = N_BOOT) -> str:
    if p is None:
        return "–"
    return f"<{1 / resamples:g}" if p == 0 else f"{p:.3f}"


def to_csv(summary: dict[str, Any]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(
        ["task", "language", "objective", "mean", "std", "n_seeds", "delta_vs_base", "p_value"]
    )
    entries = [(r["task"], r["language"], r) for r in summary["rows"]]
    entries += [(a["task"], f"avg_{a['scope']}", a) for a in summary["averages"]]
    for task, lang, e in entries:
        writer.writerow(
            [
                task,
                lang,
                e["objective"],
                _num(e["mean"]),
                _num(e["std"]),
                e["n_seeds"],
                _num(e.get("delta_vs_base")),
                _num(e.get("p_value")),
            ]
        )
    return buf.getvalue()


def _num(v: float | None) -> str:
    return "" if v is None else repr(float(v))


def plot(summary: dict[str, Any], path: Path) -> None:
    """Grouped bars per task: languages (and averages) on x, one bar per objective."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    tasks = list(summary["tasks"])
    rows = summary["objectives"]
    width = max(
        6.0,
        1.0
        + 0.5
        * max(len(i["languages"]) + 2 for i in summary["tasks"].values())
        * max(1, len(rows))
        / 2,
    )
    fig, axes = plt.subplots(len(tasks), 1, figsize=(width + 1.5, 3.2 * len(tasks)), squeeze=False)
    for ax, task in zip(axes[:, 0], tasks, strict=True):
        info = summary["tasks"][task]
        groups = list(info["languages"])
        scopes = [
            s
            for s in SCOPES
            if any(a["task"] == task and a["scope"] == s for a in summary["averages"])
        ]
        groups += [f"avg {s}" for s in scopes]
        x = np.arange(len(groups))
        bar = 0.8 / len(rows)
        for i, row in enumerate(rows):
            entries = [_entry(summary, task, g, row) for g in groups]
            means = [e["mean"] if e["mean"] is not None else np.nan for e in entries]
            stds = [e["std"] if e["std"] is not None else 0.0 for e in entries]
            ax.bar(x + (i - (len(rows) - 1) / 2) * bar, means, bar, yerr=stds, capsize=2, label=row)
        ax.set_xticks(x, groups)
        way = "higher" if info["higher_is_better"] else "lower"
        ax.set_title(f"{task}: {info['main_metric']} ({way} is better), mean ± std over seeds")
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _entry(summary: dict[str, Any], task: str, group: str, row: str) -> dict[str, Any]:
    if group.startswith("avg ") and group not in summary["tasks"][task]["languages"]:
        scope = group[4:]
        return next(
            a
            for a in summary["averages"]
            if a["task"] == task and a["scope"] == scope and a["objective"] == row
        )
    return next(
        r
        for r in summary["rows"]
        if r["task"] == task and r["language"] == group and r["objective"] == row
    )


def write_report(report: CompareReport, out_dir: Path) -> None:
    """Write compare.md/.csv/.png/.json to ``out_dir`` and record their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        name: (out_dir / f"compare.{ext}").resolve()
        for name, ext in (("markdown", "md"), ("csv", "csv"), ("png", "png"), ("json", "json"))
    }
    report.markdown = to_markdown(report.summary, report.parent_run_id)
    paths["markdown"].write_text(report.markdown, encoding="utf-8")
    paths["csv"].write_text(to_csv(report.summary), encoding="utf-8")
    plot(report.summary, paths["png"])
    report.artifacts = {k: str(v) for k, v in paths.items()}
    report.artifacts["output_dir"] = str(out_dir.resolve())
    paths["json"].write_text(json.dumps(report.to_dict(), indent=2), encoding="utf-8")
