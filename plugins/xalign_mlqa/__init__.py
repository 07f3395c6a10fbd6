"""MLQA zero-shot transfer (XTREME): fine-tune extractive QA on English SQuAD, test on MLQA.

The cross-lingual setting of XTREME: context and question in the same language
(``test-context-L-question-L.json``) for the 7 MLQA languages en ar de es hi vi zh. Training
is ``xquad``'s XTREME recipe, unchanged (SQuAD v1.1 train, lr 3e-5, 3 epochs, length 384,
doc stride 128, ...): :class:`Mlqa` subclasses the public :class:`xalign.ExtractiveQaTask`
(the recipe's windowing, span decoding and SQuAD training data), as ``xquad`` does. Only the
test data and the scorer differ: answers are
scored with MLQA's official normalisation for the context language
(:func:`xalign.normalize_mlqa`: Unicode punctuation, per-language articles, character-level
Chinese), not SQuAD's. ``per_example`` is the per-question F1 in [0, 1].

Data: MLQA v1 JSON (SQuAD v1.1 format) from a local folder in the MLQA release layout
(``MLQA_V1/{dev,test}/{split}-context-{c}-question-{q}.json``; ``data_dir``, ``data_dir/mlqa``,
``data_dir/MLQA_V1`` or ``data_dir/mlqa/MLQA_V1``, or the files directly in ``data_dir``), else
the Hub dataset ``facebook/mlqa`` (configs ``mlqa.{c}.{q}``); one error names both when neither
has it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import xalign
from xalign import (
    MLQA_LANGS,
    ExtractiveQaConfig,
    ExtractiveQaTask,
    TaskContext,
    data_root,
    load_hub_dataset,
    mlqa_f1,
    mlqa_scores,
    normalize_mlqa,
    read_squad_json,
    squad_examples,
)

__all__ = [
    "MLQA_LANGS",
    "Mlqa",
    "MlqaConfig",
    "load_mlqa",
    "mlqa_f1",
    "mlqa_scores",
    "normalize_mlqa",
    "register_tasks",
]

MLQA_HUB_ID = "facebook/mlqa"
_HUB_SPLITS = {"dev": "validation", "test": "test"}
Example = dict[str, Any]


@dataclass
class MlqaConfig(ExtractiveQaConfig):
    """Options of ``mlqa``: XTREME's QA recipe (:class:`xalign.ExtractiveQaConfig`, as
    ``xquad``; each option documented there), and:

    - ``languages``: MLQA languages tested, context = question language (en ar de es hi vi
      zh); ``xalign eval --languages`` evaluates a subset of them.
    - ``test_limit``: first N questions of each language's MLQA file; null = all.
    - ``split``: the MLQA split tested: ``test`` (as XTREME) or ``dev``.
    - ``scoring``: ``mlqa`` (the official MLQA normalisation, default) or ``squad``.
    - ``test_files``: language -> a SQuAD v1.1 JSON file tested instead of MLQA's (e.g. a
      cross-lingual ``test-context-de-question-en.json``, under its context language ``de``:
      answers are scored by the rules of the key's language, as MLQA's script scores by the
      context language); see :class:`xalign.ExtractiveQaConfig`.
    """

    TASK: ClassVar[str] = "mlqa"
    languages: list[str] = field(default_factory=lambda: list(MLQA_LANGS))
    split: str = "test"
    scoring: str = "mlqa"

    def __post_init__(self) -> None:
        # MLQA's own languages first: the error names the data set, not the scoring rules
        self.languages = xalign.parse_languages(self.languages)
        if self.split not in _HUB_SPLITS:
            raise ValueError(f"split must be 'test' or 'dev', got {self.split!r}")
        unknown = [
            lang
            for lang in self.languages
            if xalign.primary_language(lang, where="mlqa: languages") not in MLQA_LANGS
        ]
        if unknown:
            raise ValueError(
                f"MLQA has no language {', '.join(unknown)}; it has {', '.join(MLQA_LANGS)}"
            )
        super().__post_init__()


def mlqa_file_name(split: str, context_lang: str, question_lang: str) -> str:
    """``test-context-de-question-de.json`` (the MLQA v1 release names)."""
    return f"{split}-context-{context_lang}-question-{question_lang}.json"


def mlqa_folders(data_dir: Path | str | None, split: str) -> list[Path]:
    """Folders searched for MLQA JSON files, most specific first."""
    if data_dir is not None:
        roots = [Path(data_dir).expanduser()]
    else:
        shared = data_root()
        roots = [shared / "mlqa"] if shared is not None else []
    folders = []
    for root in roots:
        for base in (root, root / "mlqa", root / "MLQA_V1", root / "mlqa" / "MLQA_V1"):
            folders += [base / split, base]
    return list(dict.fromkeys(folders))


def load_mlqa(
    lang: str,
    split: str = "test",
    data_dir: Path | str | None = None,
    limit: int | None = None,
    question_lang: str | None = None,
) -> list[Example]:
    """MLQA questions of one context language (question language = ``lang`` unless given), in
    the HF ``squad`` schema; first ``limit`` questions. Codes are read by their primary
    language (``de-DE`` -> ``de``, :func:`xalign.primary_language`).

    Raises ``ValueError`` for an unknown language or split and
    :class:`xalign.DataUnavailableError` naming the folders searched and the Hub
    dataset when neither has the file.
    """
    lang = xalign.primary_language(lang, where="mlqa: languages")  # de-DE reads de
    question_lang = xalign.primary_language(question_lang or lang, where="mlqa: question_lang")
    for code in (lang, question_lang):
        if code not in MLQA_LANGS:
            raise ValueError(f"MLQA has no language {code!r}; it has {', '.join(MLQA_LANGS)}")
    if split not in _HUB_SPLITS:
        raise ValueError(f"unknown MLQA split {split!r}; use test or dev")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    name = mlqa_file_name(split, lang, question_lang)
    folders = mlqa_folders(data_dir, split)
    for folder in folders:
        if (folder / name).is_file():
            return read_squad_json(folder / name, limit)
    hub_split = _HUB_SPLITS[split] if limit is None else f"{_HUB_SPLITS[split]}[:{limit}]"
    rows = load_hub_dataset(
        f"MLQA {lang}",
        MLQA_HUB_ID,
        f"mlqa.{lang}.{question_lang}",
        hub_split,
        local_hint=f"MLQA_V1/{split}/{name}",
        searched=folders,
    )
    return squad_examples(rows)


class Mlqa(ExtractiveQaTask):
    """MLQA (XTREME): SQuAD v1.1 fine-tuning as ``xquad``, MLQA-scored EM/F1 on 7 languages."""

    name = "mlqa"
    description = (
        "MLQA (XTREME): fine-tune extractive QA on SQuAD v1.1, zero-shot EM/F1 "
        "with MLQA's normalisation on 7 languages (context = question language)"
    )
    Config = MlqaConfig
    data_folders = ("squad", "mlqa", "MLQA_V1")  # what Task.inputs hashes for reuse keys

    def test_examples(self, lang: str, context: TaskContext) -> list[Example]:
        c = self.config
        return load_mlqa(lang, c.split, context.data_dir, c.test_limit)

    def extra_meta(self, scores: dict[str, dict[str, float]]) -> dict[str, Any]:
        return {
            "setting": "cross-lingual transfer: context language = question language",
            "split": self.config.split,
        }


@xalign.hookimpl
def register_tasks(register) -> None:
    register(Mlqa)
