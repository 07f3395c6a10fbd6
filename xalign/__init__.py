"""xalign: cross-lingual alignment objectives for multilingual encoders, compared head-to-head.

This module is the public API that plugins import; everything else is internal.
"""

from xalign.alignment.extract import (
    ExtractConfig,
    TruncationWarning,
    WordVectors,
    align_pair,
    encode_words,
    extract_links,
)
from xalign.batch import AlignmentBatch, Links, Side, linked_positions, pool_words
from xalign.encoders import Encoder, load_encoder
from xalign.errors import XalignError
from xalign.hookspecs import hookimpl
from xalign.links import LinkSpec
from xalign.objective import Needs, NoOptions, Objective
from xalign.ot import masked_weights, sinkhorn_divergence, transport_plan
from xalign.progress import track
from xalign.task import Task, TaskContext, TaskResult

__version__ = "0.1.0"

__all__ = [
    "AlignmentBatch",
    "Encoder",
    "ExtractConfig",
    "LinkSpec",
    "Links",
    "Needs",
    "NoOptions",
    "Objective",
    "Side",
    "Task",
    "TaskContext",
    "TaskResult",
    "XalignError",
    "TruncationWarning",
    "WordVectors",
    "__version__",
    "align_pair",
    "encode_words",
    "extract_links",
    "hookimpl",
    "linked_positions",
    "load_encoder",
    "masked_weights",
    "pool_words",
    "sinkhorn_divergence",
    "track",
    "transport_plan",
]
