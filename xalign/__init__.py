"""xalign: cross-lingual alignment objectives for multilingual encoders, compared head-to-head.

This module is xalign's public API, defined once: ``__all__`` below is the complete list of
what a plugin (the built-in objectives and tasks under ``plugins/`` included) may import,
as ``from xalign import NAME`` or ``xalign.NAME``. Every other module and name (``xalign.<sub>``,
``xalign.alignment``, ``xalign.evaluation``, ...) is internal and may change without notice.
``tests/test_plugins.py`` fails when a built-in plugin uses anything else and when a name
below is not documented in ``docs/plugins.md``.
"""

from xalign import (
    _wait_policy,  # noqa: F401  first: OMP_WAIT_POLICY before torch starts
    testing,  # the public test helpers (xalign.testing)
)
from xalign._version import __version__
from xalign.alignment import (
    GOLD_SETS,
    ExtractError,
    GoldFileNotFoundError,
    GoldFormatError,
    GoldSet,
    WordEncoder,
    alignment_scores,
    available_gold_sets,
    cosine_similarity,
    load_gold,
    mutual_links,
    ot_plan,
    read_gold_lines,
)
from xalign.alignment.eflomal_aligner import ReferenceLinks, corpus_words, eflomal_reference_links
from xalign.alignment.extract import (
    ExtractConfig,
    TruncationWarning,
    WordVectors,
    align_pair,
    encode_words,
    encode_words_layers,
    extract_links,
)
from xalign.batch import (
    AlignmentBatch,
    Links,
    MaskedLM,
    Side,
    gather_rows,
    global_mean,
    linked_positions,
    pool_sentences,
    pool_words,
)
from xalign.encoders import Encoder, load_encoder
from xalign.encoders.sentences import embed_sentences, mean_pool
from xalign.errors import XalignError, XalignWarning
from xalign.evaluation import (
    DataUnavailableError,
    check_test_files,
    chosen_test_file,
    find_data_file,
    load_hub_dataset,
    read_squad_json,
    squad_examples,
    squad_scores,
)
from xalign.evaluation import f1 as squad_f1
from xalign.evaluation.finetune import (
    IGNORE_INDEX,
    FinetuneLog,
    FinetuneSettings,
    finetune,
    fit_max_length,
    load_for_finetuning,
    model_input_names,
    parse_languages,
    predict,
    seed_everything,
)
from xalign.evaluation.probe import LinearProbe, ProbeSettings, fit_linear_probe, pair_features
from xalign.evaluation.qa import (
    MLQA_LANGS,
    ExtractiveQaConfig,
    ExtractiveQaTask,
    mlqa_exact_match,
    mlqa_f1,
    mlqa_scores,
    normalize_mlqa,
)
from xalign.hookspecs import hookimpl
from xalign.languages import (
    LanguageMapError,
    check_language_map,
    language_key,
    primary_language,
)
from xalign.links import LinkSpec
from xalign.objective import (
    Needs,
    NoOptions,
    Objective,
    PreparedCorpus,
    PreparedExample,
    PreparedPair,
)
from xalign.ot import masked_weights, sinkhorn_divergence, transport_plan
from xalign.paths import data_root, describe_data_root
from xalign.progress import track
from xalign.task import ItemCounts, Metric, ResultContractError, Task, TaskContext, TaskResult

# Grouped as in docs/plugins.md ("Public API"); keep the two in step (a test checks).
__all__ = [
    "__version__",
    # plugin basics
    "hookimpl",
    "XalignError",
    "XalignWarning",
    "track",
    # objectives
    "Objective",
    "NoOptions",
    "Needs",
    "LinkSpec",
    "Links",
    "AlignmentBatch",
    "Side",
    "MaskedLM",
    "linked_positions",
    "pool_words",
    "pool_sentences",
    "gather_rows",
    "global_mean",
    "PreparedCorpus",
    "PreparedPair",
    "PreparedExample",
    "sinkhorn_divergence",
    "transport_plan",
    "masked_weights",
    # tasks
    "Task",
    "TaskContext",
    "TaskResult",
    "Metric",
    "ItemCounts",
    "ResultContractError",
    "testing",
    "Encoder",
    "load_encoder",
    "embed_sentences",
    "mean_pool",
    "data_root",
    "describe_data_root",
    "DataUnavailableError",
    "load_hub_dataset",
    "find_data_file",
    "check_test_files",
    "chosen_test_file",
    "primary_language",
    "check_language_map",
    "language_key",
    "LanguageMapError",
    # word alignment (the align task, xalign align)
    "ExtractConfig",
    "ExtractError",
    "TruncationWarning",
    "WordEncoder",
    "WordVectors",
    "align_pair",
    "encode_words",
    "encode_words_layers",
    "ReferenceLinks",
    "corpus_words",
    "eflomal_reference_links",
    "extract_links",
    "cosine_similarity",
    "mutual_links",
    "ot_plan",
    "GOLD_SETS",
    "GoldSet",
    "GoldFileNotFoundError",
    "GoldFormatError",
    "available_gold_sets",
    "load_gold",
    "read_gold_lines",
    "alignment_scores",
    # SQuAD-format QA (xquad, qa-mini, mlqa): the file format, SQuAD and MLQA EM/F1, the recipe
    "read_squad_json",
    "squad_examples",
    "squad_f1",
    "squad_scores",
    "MLQA_LANGS",
    "normalize_mlqa",
    "mlqa_exact_match",
    "mlqa_f1",
    "mlqa_scores",
    "ExtractiveQaTask",
    "ExtractiveQaConfig",
    # fine-tuning building blocks (xnli, xquad, mlqa, udpos)
    "FinetuneSettings",
    "FinetuneLog",
    "IGNORE_INDEX",
    "load_for_finetuning",
    "finetune",
    "predict",
    "fit_max_length",
    "model_input_names",
    "parse_languages",
    "seed_everything",
    # frozen-encoder probes (xnli-probe, pos-probe)
    "ProbeSettings",
    "pair_features",
    "fit_linear_probe",
    "LinearProbe",
]
