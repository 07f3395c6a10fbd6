"""Base class for evaluation tasks (registered through ``register_tasks``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

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


@dataclass
class TaskResult:
    """Scores of one task on one model and seed.

    ``scores[language][metric]``; ``main_metric`` names the one compared head-to-head;
    ``per_example[language]`` holds per-example scores of the main metric (for paired
    bootstrap significance), when the task can provide them. A corpus-level ratio metric
    (AER, F1 over pooled counts) is not a mean of per-example values: such a task also sets
    ``meta["sentence_counts"][language] = {"matched": [...], "total": [...]}`` (one entry
    per test item) and ``meta["metric_from_counts"] = {"offset": o, "scale": k}`` with
    main metric = o + k·Σmatched/Σtotal, and ``compare`` tests that value itself.
    """

    task: str
    main_metric: str
    scores: dict[str, dict[str, float]]
    per_example: dict[str, list[float]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def main(self) -> dict[str, float]:
        """Main metric per language."""
        return {lang: s[self.main_metric] for lang, s in self.scores.items()}


class Task:
    """An evaluation task: options dataclass + ``run(model, context) -> TaskResult``.

    ``model`` is anything :func:`xalign.load_encoder` accepts: a model directory written by
    ``xalign run`` (``outputs/<run_id>/model``), a hub id / local HF dir, or ``packaged:...``.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    Config: ClassVar[type] = NoOptions
    #: Sub-folders of the data folder this task reads (XTREME layout, e.g. ``("xnli",)``);
    #: ``None`` = any file of the data folder may matter. Used by the default :meth:`inputs`.
    data_folders: ClassVar[tuple[str, ...] | None] = None
    #: False when ``run`` gives the same result for every ``context.seed`` (no fine-tuning,
    #: no sampling: AER, retrieval): ``xalign eval``/``compare`` then evaluate a model once and
    #: use that result for every seed instead of repeating the same computation.
    uses_seed: ClassVar[bool] = True
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
        same-stem siblings, e.g. ``deen.src-tgt`` + ``deen.gold``; a folder's files).
        Override to be more precise; data fetched from the Hugging Face Hub is not covered.
        """
        from xalign.provenance import data_files, option_files

        return data_files(context.data_dir, self.data_folders) + option_files(self.config)

    @classmethod
    def options(cls) -> dict[str, Any]:
        return dataclasses.asdict(cls.Config())

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> Task:
        return cls(build_dataclass(cls.Config, options, where=f"task {cls.name!r}"))
