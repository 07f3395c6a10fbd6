"""XNLI and MultiNLI data of the ``xnli``, ``xnli-mini`` and ``xnli-probe`` tasks.

Local files first (``data_dir``, or the shared data folder's ``xnli/``), in the XTREME layout:
``dev-L.tsv`` (labeled), ``test-L.tsv`` (unlabeled, labels from ``DERIVED_test-labels.txt``
beside it), ``multinli.train.en.tsv``; then the Hub (``facebook/xnli``, ``nyu-mll/multi_nli``)
through :func:`xalign.load_hub_dataset`. ``limit`` keeps the first N examples. A user's own
test file (``test_files``) is one ``premise<TAB>hypothesis<TAB>label`` row per line
(:func:`read_nli_file`); every error names the file and line.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from xalign import (
    XalignError,
    find_data_file,
    load_hub_dataset,
    primary_language,
    read_gold_lines,
)

__all__ = [
    "NLI_FILE",
    "UNLABELED",
    "XNLI_LABELS",
    "XNLI_LANGS",
    "XnliDataError",
    "load_mnli_train",
    "load_xnli",
    "read_nli_file",
]

logger = logging.getLogger(__name__)
PathLike = str | os.PathLike[str]
Example = dict[str, Any]

#: Label ids of the HF ``facebook/xnli`` / ``nyu-mll/multi_nli`` ClassLabel features.
XNLI_LABELS: tuple[str, ...] = ("entailment", "neutral", "contradiction")
_LABEL2ID = {name: i for i, name in enumerate(XNLI_LABELS)} | {"contradictory": 2}
UNLABELED = -1
XNLI_LANGS: tuple[str, ...] = (
    "ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh",
)  # fmt: skip
_HUB_SPLIT = {"train": "train", "dev": "validation", "validation": "validation", "test": "test"}
_TEST_LABELS = "DERIVED_test-labels.txt"
#: What a ``test_files`` entry must be (for option errors).
NLI_FILE = "premise<TAB>hypothesis<TAB>label file"
_SUBDIRS = ("xnli", "XNLI-MT-1.0/multinli", "xnli/XNLI-MT-1.0/multinli")


class XnliDataError(XalignError, ValueError):
    """A malformed XNLI / MNLI file; the message names the file and line."""


def _parse_label(raw: str) -> int | None:
    return _LABEL2ID.get(raw.strip().lower())


def _read_nli_tsv(path: Path) -> list[Example]:
    """``premise \\t hypothesis [\\t label]`` rows; a header line is skipped; no label -> -1."""
    return [row for _, row in _numbered_rows(path)]


def _numbered_rows(path: Path) -> list[tuple[int, Example]]:
    """(line number, row) of :func:`_read_nli_tsv`."""
    rows: list[tuple[int, Example]] = []
    for lineno, line in enumerate(read_gold_lines(path), start=1):
        fields = line.split("\t")
        if len(fields) not in (2, 3):
            raise XnliDataError(
                f"{path}:{lineno}: expected 2 or 3 tab-separated fields, got {len(fields)}"
            )
        label = UNLABELED
        if len(fields) == 3:
            parsed = _parse_label(fields[2])
            if parsed is None:
                if lineno == 1:  # header such as "premise\thypo\tlabel"
                    continue
                raise XnliDataError(
                    f"{path}:{lineno}: unknown label {fields[2]!r} (use one of "
                    f"{', '.join(XNLI_LABELS)})"
                )
            label = parsed
        rows.append((lineno, {"premise": fields[0], "hypothesis": fields[1], "label": label}))
    return rows


def _read_label_file(path: Path) -> list[int]:
    labels = []
    for lineno, line in enumerate(read_gold_lines(path), start=1):
        parsed = _parse_label(line)
        if parsed is None:
            raise XnliDataError(f"{path}:{lineno}: unknown label {line!r}")
        labels.append(parsed)
    return labels


def _attach_labels(rows: list[Example], labels_path: Path) -> None:
    """Fill ``label`` of unlabeled rows from a one-label-per-line file (same order)."""
    labels = _read_label_file(labels_path)
    if len(labels) != len(rows):
        raise XnliDataError(f"{labels_path} has {len(labels)} labels for {len(rows)} examples")
    for row, label in zip(rows, labels, strict=True):
        row["label"] = label


def _from_hub_rows(rows: Iterable[dict[str, Any]]) -> list[Example]:
    return [
        {"premise": r["premise"], "hypothesis": r["hypothesis"], "label": int(r["label"])}
        for r in rows
    ]


def _check_limit(limit: int | None) -> None:
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")


def _hub_split(split: str, limit: int | None) -> str:
    return split if limit is None else f"{split}[:{limit}]"


def read_nli_file(path: PathLike, limit: int | None = None) -> list[Example]:
    """A user's own labeled NLI test file (the ``test_files`` option): one
    ``premise<TAB>hypothesis<TAB>label`` row per line, label ``entailment``, ``neutral`` or
    ``contradiction`` (an optional header line is skipped); the first ``limit`` rows.

    Raises:
        XnliDataError: a row without exactly 3 fields, an unknown label, or no rows; the
            message names the file and line.
    """
    path = Path(path).expanduser()
    rows = []
    for lineno, row in _numbered_rows(path):
        if row["label"] == UNLABELED:
            raise XnliDataError(
                f"{path}:{lineno}: no label (expected premise<TAB>hypothesis<TAB>label with "
                f"label one of {', '.join(XNLI_LABELS)})"
            )
        rows.append(row)
    if not rows:
        raise XnliDataError(f"{path}: no rows (expected premise<TAB>hypothesis<TAB>label lines)")
    return rows if limit is None else rows[:limit]


def load_xnli(
    lang: str,
    split: str,
    data_dir: PathLike | None = None,
    limit: int | None = None,
    test_labels: PathLike | None = None,
) -> list[Example]:
    """XNLI examples ``{premise, hypothesis, label}`` with the ``facebook/xnli`` label ids.

    ``lang``: a language code, read by its primary language (``de-DE`` -> ``de``,
    :func:`xalign.primary_language`). ``split`` is ``dev`` (alias ``validation``), ``test``
    or ``train``. Local files:
    ``dev-L.tsv``, ``test-L.tsv``, ``train-L.tsv`` / ``multinli.train.L.tsv``. Unlabeled
    test rows take their labels from ``test_labels`` or ``DERIVED_test-labels.txt`` beside
    the file; without either they keep ``label = -1``. Hub fallback: ``facebook/xnli``.
    """
    if split not in _HUB_SPLIT:
        raise ValueError(f"unknown XNLI split {split!r}; use one of {sorted(_HUB_SPLIT)}")
    _check_limit(limit)
    local_split = "dev" if split == "validation" else split
    lang = primary_language(lang, where="xnli: languages")  # de-DE reads the de files
    names = [f"{local_split}-{lang}.tsv"]
    if local_split == "train":
        names.append(f"multinli.train.{lang}.tsv")
    path, searched = find_data_file(data_dir, _SUBDIRS, names)
    if path is not None:
        rows = _read_nli_tsv(path)
        labels_path = Path(test_labels) if test_labels else path.parent / _TEST_LABELS
        if local_split == "test" and rows and all(r["label"] == UNLABELED for r in rows):
            if labels_path.is_file():
                _attach_labels(rows, labels_path)
            else:
                logger.warning("%s has no labels and %s is missing", path, labels_path)
        return rows if limit is None else rows[:limit]
    hint = f"{names[0]} (XTREME layout: dev-L.tsv/test-L.tsv + DERIVED_test-labels.txt)"
    rows = load_hub_dataset(
        "XNLI", "facebook/xnli", lang, _hub_split(_HUB_SPLIT[split], limit),
        local_hint=hint, searched=searched,
    )  # fmt: skip
    examples = _from_hub_rows(rows)
    return examples if limit is None else examples[:limit]


def load_mnli_train(data_dir: PathLike | None = None, limit: int | None = None) -> list[Example]:
    """English MultiNLI training set (the XTREME XNLI training data).

    Local: XTREME's ``multinli.train.en.tsv`` (header, ``contradictory`` label) or
    ``train-en.tsv``. Hub fallback: ``nyu-mll/multi_nli`` (same label ids as XNLI).
    """
    _check_limit(limit)
    names = ("multinli.train.en.tsv", "train-en.tsv")
    path, searched = find_data_file(data_dir, ("xnli", "multinli", *_SUBDIRS[1:]), names)
    if path is not None:
        rows = _read_nli_tsv(path)
        return rows if limit is None else rows[:limit]
    rows = load_hub_dataset(
        "MNLI", "nyu-mll/multi_nli", None, _hub_split("train", limit),
        local_hint="multinli.train.en.tsv (XTREME) or train-en.tsv", searched=searched,
    )  # fmt: skip
    examples = _from_hub_rows(rows)
    return examples if limit is None else examples[:limit]
