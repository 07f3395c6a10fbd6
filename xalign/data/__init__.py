"""Parallel data: readers, Moses word tokenisation, equal per-pair sampling."""

from xalign.data.corpus import CorpusError, read_parallel
from xalign.data.sampler import PairExample, ParallelData
from xalign.data.text import tokenize_words

__all__ = [
    "CorpusError",
    "PairExample",
    "ParallelData",
    "read_parallel",
    "tokenize_words",
]
