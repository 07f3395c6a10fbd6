"""Evaluation: metrics (SQuAD EM/F1, accuracy, mean ± std over seeds) and data utilities.

Dataset loaders live in the task plugins (``xalign_xnli.data``, ``xalign_xquad.data``,
``xalign_tatoeba.data``, ...); :mod:`xalign.evaluation.data` holds what they share.
"""

from xalign.evaluation.data import (
    ENV_VAR,
    DataUnavailableError,
    check_test_files,
    chosen_test_file,
    find_data_file,
    load_hub_dataset,
    read_squad_json,
    squad_examples,
)
from xalign.evaluation.metrics import (
    accuracy,
    exact_match,
    f1,
    normalize_answer,
    seed_summary,
    squad_scores,
)

__all__ = [
    "ENV_VAR",
    "DataUnavailableError",
    "accuracy",
    "check_test_files",
    "chosen_test_file",
    "exact_match",
    "f1",
    "find_data_file",
    "load_hub_dataset",
    "normalize_answer",
    "read_squad_json",
    "seed_summary",
    "squad_examples",
    "squad_scores",
]
