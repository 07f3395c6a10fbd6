"""Parallel data: readers, Moses word tokenisation, equal per-pair sampling."""

from xalign.data.corpus import CorpusError, read_parallel
from xalign.data.sampler import PairExample, ParallelData, build_parallel_data
from xalign.data.text import tokenize_words

__all__ = [
    "CorpusError",
    "PairExample",
    "ParallelData",
    "build_parallel_data",
    "read_parallel",
    "tokenize_words",
]
