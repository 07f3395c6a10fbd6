"""``Objective.prepare(data)`` takes a :class:`xalign.PreparedCorpus`: the trainer's
``ParallelData`` satisfies it structurally, a minimal other implementation works with the
built-in objective that reads it (``sinkhorn``'s tf-idf), and a wrong shape is reported.

``check_prepared_corpus`` is reusable by any other source of training data (e.g. an on-disk
prepared dataset): ``assert check_prepared_corpus(obj) == []``.
"""

from __future__ import annotations

import collections.abc as abc
import math
import typing
from dataclasses import dataclass
from typing import Any

import pytest
from _pipeline import build_parallel_data
from xalign_sinkhorn import Sinkhorn

import xalign


def _protocol_members(proto: type) -> dict[str, Any]:
    """name -> return annotation of every property a protocol declares."""
    return {
        name: typing.get_type_hints(member.fget)["return"]
        for name, member in vars(proto).items()
        if isinstance(member, property)
    }


def conforms(value: Any, annotation: Any, where: str) -> list[str]:
    """Problems of ``value`` against ``annotation`` (str, Sequence[str], Iterable[X], or one of
    the ``Prepared*`` protocols, recursively); an Iterable must give the same items twice."""
    origin = typing.get_origin(annotation)
    if annotation is str:
        return [] if isinstance(value, str) else [f"{where}: {type(value).__name__}, not str"]
    if origin in (abc.Sequence, abc.Iterable):
        kind = "Sequence" if origin is abc.Sequence else "Iterable"
        ok = isinstance(value, abc.Sequence if origin is abc.Sequence else abc.Iterable)
        if not ok or isinstance(value, (str, bytes)):
            return [f"{where}: {type(value).__name__}, not a {kind}"]
        first, second = list(value), list(value)
        same = len(first) == len(second) and all(
            a is b or a == b for a, b in zip(first, second, strict=True)
        )
        if not same:
            return [f"{where}: a second pass gives other items"]
        (item_type,) = typing.get_args(annotation)
        out = []
        for i, item in enumerate(first):
            out += conforms(item, item_type, f"{where}[{i}]")
        return out
    problems = []
    for name, member_type in _protocol_members(annotation).items():
        if not hasattr(value, name):
            problems.append(f"{where}: no attribute {name!r} ({annotation.__name__})")
        else:
            problems += conforms(getattr(value, name), member_type, f"{where}.{name}")
    return problems


def check_prepared_corpus(data: Any) -> list[str]:
    """Every way ``data`` falls short of :class:`xalign.PreparedCorpus` (empty: it conforms)."""
    return conforms(data, xalign.PreparedCorpus, "data")


def test_protocol_declares_only_what_objectives_read():
    assert set(_protocol_members(xalign.PreparedCorpus)) == {"pairs"}
    assert set(_protocol_members(xalign.PreparedPair)) == {"src", "tgt", "examples"}
    assert set(_protocol_members(xalign.PreparedExample)) == {"src_words", "tgt_words"}


@pytest.fixture(scope="module")
def demo_data():
    return build_parallel_data(
        "demo", ["de", "el"], "en", pairs_per_language=40, batch_size=8, seed=1, limit=30
    )


def test_parallel_data_satisfies_the_protocol(demo_data):
    assert isinstance(demo_data, xalign.PreparedCorpus)
    assert isinstance(demo_data.pairs[0], xalign.PreparedPair)
    assert isinstance(demo_data.pairs[0].examples[0], xalign.PreparedExample)
    assert check_prepared_corpus(demo_data) == []
    assert [(p.src, p.tgt) for p in demo_data.pairs] == [("de", "en"), ("el", "en")]


@dataclass(frozen=True)
class Example:
    src_words: tuple[str, ...]
    tgt_words: tuple[str, ...]


class Pair:
    """Examples behind a re-iterable view (as a lazily read on-disk pair would give them)."""

    def __init__(self, src: str, tgt: str, rows: list[tuple[str, str]]) -> None:
        self.src, self.tgt, self._rows = src, tgt, rows

    @property
    def examples(self):
        return _Rows(self._rows)


class _Rows:
    def __init__(self, rows):
        self.rows = rows

    def __iter__(self):
        return (Example(tuple(s.split()), tuple(t.split())) for s, t in self.rows)


@dataclass
class Corpus:
    pairs: list[Any]


class OneShot:
    """A pair whose ``examples`` is a one-pass iterator (not allowed: prepare may read twice)."""

    src, tgt = "de", "en"

    def __init__(self, examples: list[Any] | None = None) -> None:
        self._examples = examples

    @property
    def examples(self):
        if self._examples is not None:
            return self._examples
        return self.__dict__.setdefault("_it", iter([Example(("a",), ("b",))]))


def test_a_minimal_other_corpus_satisfies_it_and_feeds_sinkhorn():
    rows = [("Das Haus", "the house"), ("das Haus das", "The house"), ("Ja", "yes")]
    corpus = Corpus([Pair("de", "en", rows), Pair("fr", "en", [("oui", "yes")])])
    assert check_prepared_corpus(corpus) == []
    obj = Sinkhorn.from_options({"point_weights": "tf-idf"}, hidden_size=4)
    obj.prepare(corpus)
    src_idf, tgt_idf = obj.idf_for("de", "en")
    # N = 3 sentences; df(das) = 2 (lower-cased, once per sentence), df(ja) = 1
    assert src_idf["das"] == pytest.approx(1 + math.log(4 / 3))
    assert src_idf["ja"] == pytest.approx(1 + math.log(4 / 2))
    assert tgt_idf["the"] == pytest.approx(1 + math.log(4 / 3))  # "the" and "The": df 2
    assert obj.idf_for("fr", "en")[0]["oui"] == pytest.approx(1 + math.log(2 / 2))


@pytest.mark.parametrize(
    "corpus, problem",
    [
        (object(), "data: no attribute 'pairs' (PreparedCorpus)"),
        (Corpus("de-en"), "data.pairs: str, not a Iterable"),  # type: ignore[arg-type]
        (Corpus([Example(("a",), ("b",))]), "data.pairs[0]: no attribute 'src' (PreparedPair)"),
        (Corpus([OneShot()]), "data.pairs[0].examples: a second pass gives other items"),
    ],
)
def test_wrong_shapes_are_reported(corpus, problem):
    assert problem in check_prepared_corpus(corpus)


def test_words_given_as_one_string_are_reported():
    @dataclass
    class TextExample:
        src_words: str
        tgt_words: list[str]

    bad = Corpus([OneShot(examples=[TextExample("Das Haus", ["the", "house"])])])
    assert check_prepared_corpus(bad) == [
        "data.pairs[0].examples[0].src_words: str, not a Sequence"
    ]
