"""Word alignments: link algebra, eflomal alignment, gold test sets and AER."""

from xalign.alignment.eflomal_aligner import (
    EflomalResult,
    EflomalSettings,
    align_corpus,
    align_directions,
    default_cache_dir,
)
from xalign.alignment.gold import (
    GOLD_SETS,
    GoldAlignmentWarning,
    GoldSet,
    available_gold_sets,
    default_data_root,
    load_gold,
)
from xalign.alignment.links import (
    SYMMETRIZATION_METHODS,
    Links,
    drop_identical,
    format_pharaoh,
    one_to_one,
    parse_pharaoh,
    symmetrize,
    transpose,
)
from xalign.alignment.metrics import alignment_scores

__all__ = [
    "GOLD_SETS",
    "SYMMETRIZATION_METHODS",
    "EflomalResult",
    "EflomalSettings",
    "GoldAlignmentWarning",
    "GoldSet",
    "Links",
    "align_corpus",
    "align_directions",
    "alignment_scores",
    "available_gold_sets",
    "default_cache_dir",
    "default_data_root",
    "drop_identical",
    "format_pharaoh",
    "load_gold",
    "one_to_one",
    "parse_pharaoh",
    "symmetrize",
    "transpose",
]
