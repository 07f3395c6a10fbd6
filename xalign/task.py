"""Base class for evaluation tasks (registered through ``register_tasks``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from xalign.errors import XalignError
from xalign.objective import NoOptions, build_dataclass


@dataclass
class TaskContext:
    """Where a task reads data and writes outputs, and how it is seeded.

    ``data_dir``: local data folder (offline); ``None`` = the task's default lookup (e.g. the
    shared data folder, then the HF hub). ``languages``: restrict evaluation languages
    (``None`` = the task's default set). ``show_progress``: rich progress on stderr.
    """

    data_dir: Path | None = None
    output_dir: Path = Path("outputs/eval")
    seed: int = 0
    device: str = "cpu"
    languages: list[str] | None = None
    show_progress: bool = True


#: Version of the stored ``result.json`` layout: 2 = typed ``counts``/``languages``/``metrics``
#: (1, unmarked, kept them in ``meta`` keys). A stored result of another version is never read:
#: it is evaluated again (it is also part of every evaluation's reuse key).
RESULT_SCHEMA = 2

AGGREGATIONS = ("mean", "ratio")


class ResultContractError(XalignError, ValueError):
    """A :class:`TaskResult` that does not keep the task contract (an undeclared metric
    direction, counts of the wrong length, a stored result of another layout version)."""


@dataclass(frozen=True)
class Metric:
    """A metric a task reports, declared once on the task class (:attr:`Task.metrics`), as
    lm-evaluation-harness's ``register_metric(higher_is_better=..., aggregation=...)`` does.

    - ``name``: the metric's key in ``TaskResult.scores[key]``.
    - ``higher_is_better``: its direction; ``compare`` ranks rows and tests by it.
    - ``aggregation``: how a test set's value follows from its items, which ``compare``
      recomputes on each bootstrap resample: ``mean`` = ``offset + scale·`` the mean of
      ``TaskResult.per_example[key]``; ``ratio`` = ``offset + scale·Σmatched/Σtotal`` over
      ``TaskResult.counts[key]`` (a corpus-level ratio such as AER: offset 1, scale −1, Och &
      Ney 2003 eq. 11; F1 or accuracy in percent: offset 0, scale 100).
    - ``offset``, ``scale``: the affine map of either aggregation: ``mean`` is
      ``offset + scale·mean(per_example[key])`` (``scale=100`` for a percentage of item
      scores in [0, 1]); defaults 0 and 1: the plain mean.

    Raises :class:`ResultContractError` for an unknown aggregation or a non-bool direction.
    """

    name: str
    higher_is_better: bool
    aggregation: str = "mean"
    offset: float = 0.0
    scale: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.higher_is_better, bool):
            raise ResultContractError(
                f"metric {self.name!r}: higher_is_better must be True or False, "
                f"got {self.higher_is_better!r}"
            )
        if self.aggregation not in AGGREGATIONS:
            raise ResultContractError(
                f"metric {self.name!r}: aggregation must be one of {AGGREGATIONS}, "
                f"got {self.aggregation!r}"
            )

    def from_counts(self, matched: Sequence[float], total: Sequence[float]) -> float:
        """``offset + scale·Σmatched/Σtotal`` (NaN when Σtotal = 0)."""
        denominator = float(sum(total))
        ratio = float(sum(matched)) / denominator if denominator else float("nan")
        return self.offset + self.scale * ratio


@dataclass
class ItemCounts:
    """Per test item (a sentence, a query) the two terms of a ``ratio`` metric: the metric of
    any subset of items is ``offset + scale·Σmatched/Σtotal`` over it (:class:`Metric`)."""

    matched: list[float]
    total: list[float]

    def __post_init__(self) -> None:
        if len(self.matched) != len(self.total):
            raise ResultContractError(
                f"counts: {len(self.matched)} matched but {len(self.total)} total values "
                f"(one of each per test item)"
            )


@dataclass
class TaskResult:
    """Scores of one task on one model and seed.

    - ``scores[key][metric]``: a value per score key (a language code, or a test-set name
      with its language in ``languages``) and metric; ``main_metric`` names the one compared
      head-to-head.
    - ``per_example[key]``: per test item, the main metric's item scores (for the paired
      bootstrap of a ``mean`` metric), when the task can provide them.
    - ``counts[key]``: :class:`ItemCounts` per test item, for a ``ratio`` metric.
    - ``languages[key]``: the language of a score key that is not a language code itself
      (``compare`` splits seen/unseen languages by it).
    - ``metrics``: the task's :attr:`Task.metrics`; ``plugin``: which task plugin made it.
      Both are filled in by xalign (:func:`stamp_result`) when a task returns its result.
    - ``meta``: free-form extras for people (timings, data notes); xalign reads none of it.
    """

    task: str
    main_metric: str
    scores: dict[str, dict[str, float]]
    per_example: dict[str, list[float]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, ItemCounts] = field(default_factory=dict)
    languages: dict[str, str] = field(default_factory=dict)
    metrics: tuple[Metric, ...] = ()
    plugin: str = ""
    schema: int = RESULT_SCHEMA

    def main(self) -> dict[str, float]:
        """Main metric per language."""
        return {lang: s[self.main_metric] for lang, s in self.scores.items()}

    def metric(self, name: str | None = None) -> Metric:
        """The declaration of metric ``name`` (default: the main metric).

        Raises:
            ResultContractError: the task declared no such metric (naming task and plugin).
        """
        name = name or self.main_metric
        for metric in self.metrics:
            if metric.name == name:
                return metric
        declared = ", ".join(m.name for m in self.metrics) or "none"
        who = self.plugin or f"task {self.task!r} (plugin unknown)"
        raise ResultContractError(
            f"{who} does not declare the direction of its metric {name!r} (declared: "
            f"{declared}); its Task class needs "
            f"metrics = (xalign.Metric({name!r}, higher_is_better=...),), see docs/plugins.md"
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``result.json``); :meth:`from_dict` reads it back."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskResult:
        """The result stored by :meth:`to_dict`.

        Raises:
            ResultContractError: stored with another layout (:data:`RESULT_SCHEMA`), e.g. by
                an earlier xalign whose ``meta`` keys this version does not read.
        """
        schema = data.get("schema", 1)
        if schema != RESULT_SCHEMA:
            raise ResultContractError(
                f"result stored with layout version {schema}, this xalign reads "
                f"{RESULT_SCHEMA}; evaluate again"
            )
        data = dict(data)
        data["counts"] = {k: ItemCounts(**v) for k, v in (data.get("counts") or {}).items()}
        data["metrics"] = tuple(Metric(**m) for m in data.get("metrics") or ())
        return cls(**data)


def check_metric_declaration(task_cls: type, where: str) -> None:
    """Check, before any run, that a task class declares its metrics (:attr:`Task.metrics`):
    a non-empty tuple of :class:`Metric` with distinct names, so ``eval``/``compare`` can rank
    its results by their direction.

    Raises:
        ResultContractError: (naming ``where``, the task and its plugin) no metric declared,
            an entry that is not an ``xalign.Metric``, or a name declared twice.
    """
    metrics = getattr(task_cls, "metrics", ())
    fix = "its Task class needs metrics = (xalign.Metric(NAME, higher_is_better=...),)"
    if not isinstance(metrics, (tuple, list)) or not metrics:
        raise ResultContractError(
            f"{where} declares no metric directions (metrics = {metrics!r}); {fix}, "
            "one per metric run() reports, see docs/plugins.md"
        )
    bad = [m for m in metrics if not isinstance(m, Metric)]
    if bad:
        raise ResultContractError(
            f"{where}: metrics holds {bad[0]!r}, not an xalign.Metric; {fix}, see docs/plugins.md"
        )
    names = [m.name for m in metrics]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ResultContractError(f"{where} declares metric(s) {twice} more than once")


def stamp_result(result: TaskResult, task: Task, where: str) -> TaskResult:
    """``result`` with the task's declared :attr:`Task.metrics` (unless it set its own) and the
    plugin that made it (``where``, e.g. ``task 'x' (plugin 'y', distribution z 1.0)``).

    Raises:
        ResultContractError: (naming task and plugin) a ``main_metric`` not declared in
            ``metrics`` or missing from some ``scores[key]``; ``counts`` for a key without a
            score; a ``ratio`` main metric whose counts give another value than ``scores``, or
            a ``mean`` one whose ``offset + scale·mean(per_example[key])`` does (beyond 1e-6
            relative), e.g. a score in percent over item scores in [0, 1] without ``scale=100``.
    """
    metrics = result.metrics or tuple(getattr(task, "metrics", ()))
    result = dataclasses.replace(result, metrics=tuple(metrics), plugin=where)
    main = result.metric()  # raises for an undeclared main metric, naming task and plugin
    for key, scores in result.scores.items():
        if result.main_metric not in scores:
            raise ResultContractError(
                f"{where}: scores[{key!r}] has no {result.main_metric!r} (its main metric); "
                f"it has {sorted(scores)}"
            )
    for key in result.counts:
        if key not in result.scores:
            raise ResultContractError(f"{where}: counts for {key!r}, which has no scores")
    if main.aggregation == "mean":
        for key, items in result.per_example.items():
            if not items or key not in result.scores:
                continue
            value = main.offset + main.scale * sum(map(float, items)) / len(items)
            shown = float(result.scores[key][result.main_metric])
            if not _close(value, shown):
                raise ResultContractError(
                    f"{where}: {key} {result.main_metric} is {shown} but its per_example "
                    f"give {value} ({main.offset} + {main.scale}·mean of {len(items)} items); "
                    f"give per_example in the metric's unit or declare its scale, e.g. "
                    f"Metric({result.main_metric!r}, ..., scale=100.0) for a percentage of "
                    f"item scores in [0, 1]"
                )
    if main.aggregation == "ratio":
        for key, counts in result.counts.items():
            if not sum(counts.total):  # no items with a denominator: the task's own convention
                continue
            value = main.from_counts(counts.matched, counts.total)
            shown = result.scores[key].get(result.main_metric)
            if shown is not None and not _close(value, float(shown)):
                raise ResultContractError(
                    f"{where}: {key} {result.main_metric} is {shown} but its counts give "
                    f"{value} ({main.offset} + {main.scale}·Σmatched/Σtotal)"
                )
    return result


def _close(a: float, b: float) -> bool:
    return a == b or abs(a - b) <= 1e-6 * max(1.0, abs(a), abs(b)) or (a != a and b != b)


class Task:
    """An evaluation task: options dataclass + ``run(model, context) -> TaskResult``.

    ``model`` is anything :func:`xalign.load_encoder` accepts: a model directory written by
    ``xalign run`` (``outputs/<run_id>/model``), a hub id / local HF dir, or ``packaged:...``.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    Config: ClassVar[type] = NoOptions
    #: The metrics ``run`` reports, each with its direction and aggregation (:class:`Metric`),
    #: declared once; ``compare`` refuses a main metric that is not declared here.
    metrics: ClassVar[tuple[Metric, ...]] = ()
    #: Sub-folders of the data folder this task reads (XTREME layout, e.g. ``("xnli",)``);
    #: ``None`` = any file of the data folder may matter. Used by the default :meth:`inputs`.
    data_folders: ClassVar[tuple[str, ...] | None] = None
    #: False when ``run`` gives the same result for every ``context.seed`` (no fine-tuning,
    #: no sampling: AER, retrieval): ``xalign eval``/``compare`` then evaluate a model once and
    #: use that result for every seed instead of repeating the same computation.
    uses_seed: ClassVar[bool] = True
    #: What the task measures, for ``compare``'s alignment-vs-transfer report
    #: (:mod:`xalign.compare.correlation`): ``alignment`` (the encoder's cross-lingual
    #: alignment: word alignment, retrieval), ``transfer`` (train on English, test other
    #: languages), or None: ``align``/``tatoeba``/``bucc`` count as alignment, tasks whose
    #: options extend :class:`xalign.FinetuneSettings` as transfer, others as neither.
    kind: ClassVar[str | None] = None
    #: Bump when what ``run`` returns for the same inputs changes meaning (a metric defined
    #: anew, a field added that comparisons read): it is part of the evaluation's reuse key,
    #: so results stored under the old definition are computed again, not reused.
    result_version: ClassVar[str | None] = None

    def __init__(self, config: Any | None = None) -> None:
        self.config = config if config is not None else self.Config()

    def run(self, model: str, context: TaskContext) -> TaskResult:  # pragma: no cover
        raise NotImplementedError

    def inputs(self, context: TaskContext) -> list[Path]:
        """Local files whose content this task's result depends on (besides the model).

        ``xalign eval`` hashes them into the run's reuse key, so editing any of them gives a
        new evaluation instead of a stale reused one. Default: the files of the data folder
        (``context.data_dir``, else the shared data folders) under :attr:`data_folders`
        (every file when it is None), plus files named by option values (a file with its
        same-stem siblings, e.g. ``deen.src-tgt`` + ``deen.gold``; a folder's files), plus,
        with a ``joint`` option, its config and corpus files.
        Override to be more precise; data fetched from the Hugging Face Hub is not covered.
        """
        from xalign.provenance import data_files, option_files

        files = data_files(context.data_dir, self.data_folders) + option_files(self.config)
        joint = getattr(self.config, "joint", None)
        if joint is not None:  # joint realignment: its config and parallel corpus files
            files += joint.inputs()  # JointSettings.inputs (no import: it is a layer above)
        return files

    @classmethod
    def options(cls) -> dict[str, Any]:
        return dataclasses.asdict(cls.Config())

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> Task:
        return cls(build_dataclass(cls.Config, options, where=f"task {cls.name!r}"))
