"""Head-to-head comparison of alignment objectives against the unaligned base encoder.

Three modules, one job each:

- :mod:`xalign.compare.orchestrate`: which runs to train, evaluate or reuse (:func:`compare`,
  :func:`find_training_run`, :func:`expected_components`);
- :mod:`xalign.compare.statistics`: the typed :class:`Summary` (per-cell mean, std, n, Δ and
  p-values vs base, best-vs-runner-up) and the paired bootstrap over (seed, example) pairs;
- :mod:`xalign.compare.report`: Markdown, CSV, PNG, JSON and terminal rendering of a Summary.

MLflow tag names and run queries are in :mod:`xalign.tracking`.
"""

from xalign.compare.orchestrate import (  # noqa: F401  (_check_inputs: for tests)
    ContentMemo,
    _check_inputs,
    compare,
    expected_components,
    find_training_run,
    training_config,
)
from xalign.compare.report import (
    CompareReport,
    format_p,
    print_report,
    table_cells,
    to_csv,
    to_markdown,
    write_report,
)
from xalign.compare.statistics import (
    ALPHA,
    BOOT_SEED,
    N_BOOT,
    Average,
    Cell,
    HeadToHead,
    PairedTest,
    Results,
    Significance,
    Summary,
    TaskInfo,
    eval_summary,
    paired_test,
    summarize,
)

__all__ = [
    "ALPHA",
    "BOOT_SEED",
    "N_BOOT",
    "Average",
    "Cell",
    "CompareReport",
    "ContentMemo",
    "HeadToHead",
    "PairedTest",
    "Results",
    "Significance",
    "Summary",
    "TaskInfo",
    "compare",
    "eval_summary",
    "expected_components",
    "find_training_run",
    "format_p",
    "paired_test",
    "print_report",
    "summarize",
    "table_cells",
    "to_csv",
    "to_markdown",
    "training_config",
    "write_report",
]
