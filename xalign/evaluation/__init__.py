"""Evaluation: metrics (SQuAD EM/F1, accuracy, retrieval, significance) and data loaders."""

from xalign.evaluation.data import (
    ENV_VAR,
    TATOEBA_ISO3,
    UNLABELED,
    XNLI_LABELS,
    XNLI_LANGS,
    DataUnavailableError,
    load_hub_dataset,
    load_mnli_train,
    load_squad_json,
    load_tatoeba,
    load_tydiqa_goldp,
    load_xnli,
    load_xquad,
    tatoeba_code,
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
    "TATOEBA_ISO3",
    "UNLABELED",
    "XNLI_LABELS",
    "XNLI_LANGS",
    "DataUnavailableError",
    "accuracy",
    "exact_match",
    "f1",
    "load_hub_dataset",
    "load_mnli_train",
    "load_squad_json",
    "load_tatoeba",
    "load_tydiqa_goldp",
    "load_xnli",
    "load_xquad",
    "normalize_answer",
    "seed_summary",
    "squad_scores",
    "tatoeba_code",
]
