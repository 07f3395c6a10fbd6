"""XQuAD and TyDiQA-GoldP test / training data of the ``xquad`` and ``qa-mini`` tasks.

Local files first (XTREME names: ``xquad/xquad.L.json``, ``tydiqa/tydiqa.goldp.L.{train,dev}
.json``; ``data_dir`` may be the task folder or its parent), read with
:func:`xalign.read_squad_json`; then the Hub through :func:`xalign.load_hub_dataset`.
``limit`` keeps the first N questions.
"""

from __future__ import annotations

import os
from typing import Any

from xalign import (
    find_data_file,
    load_hub_dataset,
    primary_language,
    read_squad_json,
    squad_examples,
)

__all__ = ["load_tydiqa_goldp", "load_xquad"]

PathLike = str | os.PathLike[str]
Example = dict[str, Any]

#: TyDiQA ids on the Hub start with the language name, e.g. "english-123-1".
_TYDIQA_NAMES = {
    "ar": "arabic", "bn": "bengali", "en": "english", "fi": "finnish", "id": "indonesian",
    "ko": "korean", "ru": "russian", "sw": "swahili", "te": "telugu",
}  # fmt: skip


def _check_limit(limit: int | None) -> None:
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")


def load_xquad(
    lang: str, data_dir: PathLike | None = None, limit: int | None = None
) -> list[Example]:
    """XQuAD questions (``xquad.L.json``) in the HF ``squad`` schema; Hub: ``google/xquad``.
    ``lang`` is read by its primary language (``de-DE`` -> ``de``,
    :func:`xalign.primary_language`)."""
    _check_limit(limit)
    lang = primary_language(lang, where="xquad: languages")
    path, searched = find_data_file(data_dir, ("xquad",), (f"xquad.{lang}.json",))
    if path is not None:
        return read_squad_json(path, limit)
    split = "validation" if limit is None else f"validation[:{limit}]"
    rows = load_hub_dataset(
        "XQuAD", "google/xquad", f"xquad.{lang}", split,
        local_hint=f"xquad.{lang}.json", searched=searched,
    )  # fmt: skip
    examples = squad_examples(rows)
    return examples if limit is None else examples[:limit]


def load_tydiqa_goldp(
    split: str, lang: str, data_dir: PathLike | None = None, limit: int | None = None
) -> list[Example]:
    """TyDiQA-GoldP (``train`` or ``dev``/``validation``) for one language, ``squad`` schema.

    Local: ``tydiqa.goldp.L.{train,dev}.json`` (XTREME names). Hub fallback:
    ``google-research-datasets/tydiqa`` config ``secondary_task``, filtered by id prefix.
    """
    if split not in ("train", "dev", "validation"):
        raise ValueError(f"unknown TyDiQA split {split!r}; use train or dev")
    _check_limit(limit)
    lang = primary_language(lang, where="tydiqa: languages")
    local_split = "dev" if split == "validation" else split
    names = (f"tydiqa.goldp.{lang}.{local_split}.json", f"tydiqa.{lang}.{local_split}.json")
    subdirs = ("tydiqa", *(f"{p}tydiqa-goldp-v1.1-{s}" for p in ("", "tydiqa/")
                           for s in ("train", "dev")))  # fmt: skip
    path, searched = find_data_file(data_dir, subdirs, names)
    if path is not None:
        return read_squad_json(path, limit)
    rows = load_hub_dataset(
        "TyDiQA-GoldP", "google-research-datasets/tydiqa", "secondary_task",
        "train" if local_split == "train" else "validation",
        local_hint=f"tydiqa.goldp.{lang}.{local_split}.json", searched=searched,
    )  # fmt: skip
    prefix = f"{_TYDIQA_NAMES.get(lang, lang)}-"
    examples = squad_examples(r for r in rows if str(r["id"]).startswith(prefix))
    return examples if limit is None else examples[:limit]
