"""Offline-first loaders for the evaluation data (XNLI, MNLI, XQuAD, TyDiQA-GoldP, Tatoeba).

Every loader looks for local files first (``data_dir``, or the shared data folder found by
:func:`xalign.data_root`), then falls back to the Hugging Face Hub through ``datasets``, and
raises :class:`DataUnavailableError` naming both options when neither works. The Hub is probed
with a short socket connection first, so an offline machine fails fast instead of retrying.

Local layouts are those of XTREME / the shared folder: ``xnli/dev-L.tsv`` (labeled),
``xnli/test-L.tsv`` (unlabeled, labels from ``DERIVED_test-labels.txt`` when present),
``xquad/xquad.L.json``, ``tydiqa/tydiqa.goldp.L.{train,dev}.json`` and
``tatoeba/tatoeba.xxx-eng.{xxx,eng}``. ``data_dir`` may point at the task folder itself or at
its parent. ``limit`` keeps the first N examples (deterministic).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from xalign.errors import XalignError
from xalign.paths import DATA_ENV, data_root, describe_data_root

__all__ = [
    "ENV_VAR",
    "TATOEBA_ISO3",
    "UNLABELED",
    "XNLI_LABELS",
    "XNLI_LANGS",
    "DataUnavailableError",
    "load_hub_dataset",
    "load_mnli_train",
    "load_squad_json",
    "load_tatoeba",
    "load_tydiqa_goldp",
    "load_xnli",
    "load_xquad",
    "tatoeba_code",
]

logger = logging.getLogger(__name__)

ENV_VAR = DATA_ENV
PathLike = str | os.PathLike[str]
Example = dict[str, Any]

# Label ids of the HF ``facebook/xnli`` / ``nyu-mll/multi_nli`` ClassLabel features.
XNLI_LABELS: tuple[str, ...] = ("entailment", "neutral", "contradiction")
_LABEL2ID = {name: i for i, name in enumerate(XNLI_LABELS)} | {"contradictory": 2}
UNLABELED = -1
XNLI_LANGS: tuple[str, ...] = (
    "ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh",
)  # fmt: skip
_XNLI_HUB_SPLIT = {"train": "train", "dev": "validation", "validation": "validation",
                   "test": "test"}  # fmt: skip
_XNLI_TEST_LABELS = "DERIVED_test-labels.txt"

# ISO 639-1 -> the ISO 639-3 codes of the Tatoeba files, for the 36 XTREME languages.
TATOEBA_ISO3: dict[str, str] = {
    "af": "afr", "ar": "ara", "bg": "bul", "bn": "ben", "de": "deu", "el": "ell",
    "es": "spa", "et": "est", "eu": "eus", "fa": "pes", "fi": "fin", "fr": "fra",
    "he": "heb", "hi": "hin", "hu": "hun", "id": "ind", "it": "ita", "ja": "jpn",
    "jv": "jav", "ka": "kat", "kk": "kaz", "ko": "kor", "ml": "mal", "mr": "mar",
    "nl": "nld", "pt": "por", "ru": "rus", "sw": "swh", "ta": "tam", "te": "tel",
    "th": "tha", "tl": "tgl", "tr": "tur", "ur": "urd", "vi": "vie", "zh": "cmn",
}  # fmt: skip

# TyDiQA ids on the Hub start with the language name, e.g. "english-123-1".
_TYDIQA_NAMES = {
    "ar": "arabic", "bn": "bengali", "en": "english", "fi": "finnish", "id": "indonesian",
    "ko": "korean", "ru": "russian", "sw": "swahili", "te": "telugu",
}  # fmt: skip

_TRUTHY = {"1", "true", "yes", "on"}


class DataUnavailableError(XalignError, FileNotFoundError):
    """Neither local files nor the Hugging Face Hub could provide a dataset."""


# --------------------------------------------------------------------------------------------
# Locating local files
# --------------------------------------------------------------------------------------------


def _search_dirs(data_dir: PathLike | None, subdirs: Sequence[str]) -> list[Path]:
    """Folders to search: ``data_dir`` and its task subfolders, or the shared folder's."""
    if data_dir is not None:
        root = Path(data_dir).expanduser()
        return [root, *(root / sub for sub in subdirs)]
    shared = data_root()
    return [shared / sub for sub in subdirs] if shared is not None else []


def _find_local(
    data_dir: PathLike | None, subdirs: Sequence[str], names: Sequence[str]
) -> tuple[Path | None, list[Path]]:
    """First existing ``folder/name``, plus the folders searched (for error messages)."""
    folders = _search_dirs(data_dir, subdirs)
    for folder in folders:
        for name in names:
            if (folder / name).is_file():
                return folder / name, folders
    return None, folders


def _read_lines(path: Path) -> list[str]:
    """Lines of a UTF-8 file (BOM dropped), split on ``\\n`` only.

    ``str.splitlines`` is avoided on purpose: it also breaks on control characters such as
    U+001D, which occur inside XNLI sentences (``test-el.tsv``).
    """
    lines = path.read_text(encoding="utf-8-sig").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def _check_limit(limit: int | None) -> None:
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")


def _take(items: list[Any], limit: int | None) -> list[Any]:
    return items if limit is None else items[:limit]


# --------------------------------------------------------------------------------------------
# Hugging Face Hub fallback
# --------------------------------------------------------------------------------------------


def _hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` or ``HF_DATASETS_OFFLINE`` is set to a truthy value."""
    names = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    return any(os.environ.get(name, "").strip().lower() in _TRUTHY for name in names)


def _hub_address() -> tuple[str, int]:
    """Host and port that a Hub request would connect to first (proxy if configured)."""
    proxy_vars = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
    proxy = next((os.environ[v] for v in proxy_vars if os.environ.get(v)), None)
    url = proxy or os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    parts = urlsplit(url if "://" in url else f"http://{url}")
    default_port = 443 if parts.scheme == "https" else 80
    return parts.hostname or "huggingface.co", parts.port or default_port


@functools.lru_cache(maxsize=1)
def _hub_reachable(timeout: float = 2.0) -> bool:
    """Quick TCP probe of the Hub (or proxy); cached for the process."""
    try:
        with socket.create_connection(_hub_address(), timeout=timeout):
            return True
    except OSError:
        return False


def _load_hub(path: str, name: str | None, split: str) -> Any:
    """``datasets.load_dataset`` that fails fast when the Hub is unreachable.

    In offline mode (``HF_HUB_OFFLINE=1``) the call goes straight to ``datasets``, which then
    serves its local cache or fails immediately.
    """
    if not _hub_offline() and not _hub_reachable():
        host, port = _hub_address()
        raise ConnectionError(
            f"cannot reach the Hugging Face Hub at {host}:{port} "
            "(set HF_HUB_OFFLINE=1 to use datasets already in the local HF cache)"
        )
    import datasets  # lazy: slow import, only needed for the Hub fallback

    return datasets.load_dataset(path, name, split=split)


def _from_hub(
    task: str,
    hub_id: str,
    config: str | None,
    split: str,
    local_hint: str,
    searched: Iterable[Path],
) -> Any:
    """Load from the Hub or raise :class:`DataUnavailableError` naming both options."""
    try:
        rows = _load_hub(hub_id, config, split)
    except Exception as err:  # hub, network, cache, or unknown config: all mean "unavailable"
        where = ", ".join(str(p) for p in searched) or describe_data_root()
        raise DataUnavailableError(
            f"{task}: no local files found (searched: {where}) and the Hugging Face dataset "
            f"{hub_id!r} (config={config!r}, split={split!r}) could not be loaded "
            f"({type(err).__name__}: {err}). Either pass --data-dir FOLDER with {local_hint} "
            f"(data_dir= in Python, or set ${ENV_VAR}), or make the Hub dataset {hub_id!r} "
            "available (network access, or a local HF cache with HF_HUB_OFFLINE=1)."
        ) from err
    logger.info("%s: loaded from the Hugging Face Hub (%s, %s, %s)", task, hub_id, config, split)
    return rows


def load_hub_dataset(
    task: str,
    hub_id: str,
    config: str | None,
    split: str,
    *,
    local_hint: str,
    searched: Iterable[Path],
) -> Any:
    """The Hub fallback of the loaders above, for task plugins with their own local layout.

    ``datasets.load_dataset(hub_id, config, split=split)`` after a quick reachability probe;
    on any failure raises :class:`DataUnavailableError` naming the local folders ``searched``,
    the files expected there (``local_hint``) and the Hub dataset, so the user sees both ways
    to provide the data in one message.
    """
    return _from_hub(task, hub_id, config, split, local_hint, searched)


# --------------------------------------------------------------------------------------------
# XNLI / MNLI
# --------------------------------------------------------------------------------------------


def _parse_label(raw: str) -> int | None:
    return _LABEL2ID.get(raw.strip().lower())


def _read_nli_tsv(path: Path) -> list[Example]:
    """``premise \\t hypothesis [\\t label]`` rows; a header line is skipped; no label -> -1."""
    rows: list[Example] = []
    for lineno, line in enumerate(_read_lines(path), start=1):
        fields = line.split("\t")
        if len(fields) not in (2, 3):
            raise ValueError(f"{path}:{lineno}: expected 2 or 3 tab-separated fields")
        label = UNLABELED
        if len(fields) == 3:
            parsed = _parse_label(fields[2])
            if parsed is None:
                if lineno == 1:  # header such as "premise\thypo\tlabel"
                    continue
                raise ValueError(f"{path}:{lineno}: unknown label {fields[2]!r}")
            label = parsed
        rows.append({"premise": fields[0], "hypothesis": fields[1], "label": label})
    return rows


def _read_label_file(path: Path) -> list[int]:
    labels = []
    for lineno, line in enumerate(_read_lines(path), start=1):
        parsed = _parse_label(line)
        if parsed is None:
            raise ValueError(f"{path}:{lineno}: unknown label {line!r}")
        labels.append(parsed)
    return labels


def _attach_labels(rows: list[Example], labels_path: Path) -> None:
    """Fill ``label`` of unlabeled rows from a one-label-per-line file (same order)."""
    labels = _read_label_file(labels_path)
    if len(labels) != len(rows):
        raise ValueError(f"{labels_path} has {len(labels)} labels for {len(rows)} examples")
    for row, label in zip(rows, labels, strict=True):
        row["label"] = label


def _nli_from_hub_rows(rows: Iterable[dict[str, Any]]) -> list[Example]:
    return [
        {"premise": r["premise"], "hypothesis": r["hypothesis"], "label": int(r["label"])}
        for r in rows
    ]


def _hub_split(split: str, limit: int | None) -> str:
    """HF split string, sliced to the first ``limit`` rows when given."""
    return split if limit is None else f"{split}[:{limit}]"


def load_xnli(
    lang: str,
    split: str,
    data_dir: PathLike | None = None,
    limit: int | None = None,
    test_labels: PathLike | None = None,
) -> list[Example]:
    """XNLI examples ``{premise, hypothesis, label}`` with the ``facebook/xnli`` label ids.

    ``split`` is ``dev`` (alias ``validation``), ``test`` or ``train``. Local files:
    ``dev-L.tsv``, ``test-L.tsv``, ``train-L.tsv`` / ``multinli.train.L.tsv``. Unlabeled
    test rows take their labels from ``test_labels`` or ``DERIVED_test-labels.txt`` beside
    the file; without either they keep ``label = -1``. Hub fallback: ``facebook/xnli``.
    """
    if split not in _XNLI_HUB_SPLIT:
        raise ValueError(f"unknown XNLI split {split!r}; use one of {sorted(_XNLI_HUB_SPLIT)}")
    _check_limit(limit)
    local_split = "dev" if split == "validation" else split
    names = [f"{local_split}-{lang}.tsv"]
    if local_split == "train":
        names.append(f"multinli.train.{lang}.tsv")
    subdirs = ("xnli", "XNLI-MT-1.0/multinli", "xnli/XNLI-MT-1.0/multinli")
    path, searched = _find_local(data_dir, subdirs, names)
    if path is not None:
        rows = _read_nli_tsv(path)
        labels_path = Path(test_labels) if test_labels else path.parent / _XNLI_TEST_LABELS
        if local_split == "test" and rows and all(r["label"] == UNLABELED for r in rows):
            if labels_path.is_file():
                _attach_labels(rows, labels_path)
            else:
                logger.warning("%s has no labels and %s is missing", path, labels_path)
        return _take(rows, limit)
    hub_split = _XNLI_HUB_SPLIT[split]
    hint = f"{names[0]} (XTREME layout: dev-L.tsv/test-L.tsv + DERIVED_test-labels.txt)"
    rows = _from_hub("XNLI", "facebook/xnli", lang, _hub_split(hub_split, limit), hint, searched)
    return _take(_nli_from_hub_rows(rows), limit)


def load_mnli_train(data_dir: PathLike | None = None, limit: int | None = None) -> list[Example]:
    """English MultiNLI training set (the XTREME XNLI training data).

    Local: XTREME's ``multinli.train.en.tsv`` (header, ``contradictory`` label) or
    ``train-en.tsv``. Hub fallback: ``nyu-mll/multi_nli`` (same label ids as XNLI).
    """
    _check_limit(limit)
    names = ("multinli.train.en.tsv", "train-en.tsv")
    subdirs = ("xnli", "multinli", "XNLI-MT-1.0/multinli", "xnli/XNLI-MT-1.0/multinli")
    path, searched = _find_local(data_dir, subdirs, names)
    if path is not None:
        return _take(_read_nli_tsv(path), limit)
    hint = "multinli.train.en.tsv (XTREME) or train-en.tsv"
    rows = _from_hub("MNLI", "nyu-mll/multi_nli", None, _hub_split("train", limit), hint, searched)
    return _take(_nli_from_hub_rows(rows), limit)


# --------------------------------------------------------------------------------------------
# SQuAD-format QA (XQuAD, TyDiQA-GoldP, SQuAD v1.1)
# --------------------------------------------------------------------------------------------


def _unique_id(qid: str, seen: set[str]) -> str:
    """``qid`` itself, or ``qid_k`` with the smallest unused k when it was seen before."""
    new_id, k = qid, 0
    while new_id in seen:
        k += 1
        new_id = f"{qid}_{k}"
    seen.add(new_id)
    return new_id


def _qa_example(qid: str, title: str, context: str, qa: dict[str, Any]) -> Example:
    answers = qa.get("answers", [])
    return {
        "id": qid,
        "title": title,
        "context": context,
        "question": qa["question"],
        "answers": {
            "text": [a["text"] for a in answers],
            "answer_start": [int(a["answer_start"]) for a in answers],
        },
    }


def load_squad_json(path: PathLike, limit: int | None = None) -> list[Example]:
    """Flatten a SQuAD v1.1 JSON file into the HF ``squad`` schema.

    Each example is ``{id, title, context, question, answers: {text, answer_start}}``.
    Duplicate question ids (TyDiQA-GoldP English train reuses small integers) are made unique
    by suffixing ``_1``, ``_2``, ... to later occurrences, so ids can key prediction dicts.
    """
    _check_limit(limit)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}:{exc.lineno}: not JSON ({exc.msg}, column {exc.colno})") from None
    examples: list[Example] = []
    seen: set[str] = set()
    where = "top level"
    try:
        for a, article in enumerate(data["data"]):
            where = f"data[{a}]"
            title = article.get("title", "")
            for p, paragraph in enumerate(article["paragraphs"]):
                where = f"data[{a}].paragraphs[{p}]"
                for q, qa in enumerate(paragraph["qas"]):
                    where = f"data[{a}].paragraphs[{p}].qas[{q}]"
                    if limit is not None and len(examples) >= limit:
                        return examples
                    qid = _unique_id(str(qa["id"]), seen)
                    example = _qa_example(qid, title, paragraph["context"], qa)
                    _check_answers(example, path, where)
                    examples.append(example)
    except (KeyError, TypeError, AttributeError) as exc:
        what = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
        raise ValueError(
            f"{path}: {where}: not SQuAD v1.1 JSON ({what}; expected "
            f"{{data: [{{title, paragraphs: [{{context, qas: [{{id, question, answers: "
            f"[{{text, answer_start}}]}}]}}]}}]}})"
        ) from None
    if not examples:
        raise ValueError(f"{path}: no questions (SQuAD v1.1 JSON with an empty 'data' list)")
    return examples


def _check_answers(example: Example, path: PathLike, where: str) -> None:
    """A question has answers and every answer is its context's text at ``answer_start``
    (else training would learn a wrong span and scoring would have no reference)."""
    context, at = example["context"], f"{path}: {where} (id {example['id']})"
    answers = example["answers"]
    if not answers["text"]:
        raise ValueError(f"{at}: no answers (SQuAD v1.1 gives every question at least one)")
    for text, start in zip(answers["text"], answers["answer_start"], strict=True):
        if not 0 <= start <= start + len(text) <= len(context):
            raise ValueError(
                f"{at}: answer {text[:30]!r} at answer_start {start} is outside its "
                f"context ({len(context)} characters)"
            )
        if context[start : start + len(text)] != text:
            found = context[start : start + len(text)]
            raise ValueError(
                f"{at}: answer {text[:30]!r} does not match the context at answer_start "
                f"{start} ({found[:30]!r})"
            )


def _qa_from_hub_rows(rows: Iterable[dict[str, Any]]) -> list[Example]:
    return [
        {
            "id": str(r["id"]),
            "title": r.get("title", ""),
            "context": r["context"],
            "question": r["question"],
            "answers": {
                "text": list(r["answers"]["text"]),
                "answer_start": [int(s) for s in r["answers"]["answer_start"]],
            },
        }
        for r in rows
    ]


def load_xquad(
    lang: str, data_dir: PathLike | None = None, limit: int | None = None
) -> list[Example]:
    """XQuAD questions (``xquad.L.json``) in the HF ``squad`` schema; Hub: ``google/xquad``."""
    _check_limit(limit)
    path, searched = _find_local(data_dir, ("xquad",), (f"xquad.{lang}.json",))
    if path is not None:
        return load_squad_json(path, limit)
    rows = _from_hub(
        "XQuAD", "google/xquad", f"xquad.{lang}", _hub_split("validation", limit),
        f"xquad.{lang}.json", searched,
    )  # fmt: skip
    return _take(_qa_from_hub_rows(rows), limit)


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
    local_split = "dev" if split == "validation" else split
    names = (f"tydiqa.goldp.{lang}.{local_split}.json", f"tydiqa.{lang}.{local_split}.json")
    subdirs = ("tydiqa", *(f"{p}tydiqa-goldp-v1.1-{s}" for p in ("", "tydiqa/")
                           for s in ("train", "dev")))  # fmt: skip
    path, searched = _find_local(data_dir, subdirs, names)
    if path is not None:
        return load_squad_json(path, limit)
    hub_split = "train" if local_split == "train" else "validation"
    rows = _from_hub(
        "TyDiQA-GoldP", "google-research-datasets/tydiqa", "secondary_task", hub_split,
        f"tydiqa.goldp.{lang}.{local_split}.json", searched,
    )  # fmt: skip
    prefix = f"{_TYDIQA_NAMES.get(lang, lang)}-"
    return _take(_qa_from_hub_rows(r for r in rows if str(r["id"]).startswith(prefix)), limit)


# --------------------------------------------------------------------------------------------
# Tatoeba
# --------------------------------------------------------------------------------------------


def tatoeba_code(lang: str) -> str:
    """ISO 639-3 code of the Tatoeba files for an ISO 639-1 code (3-letter codes pass through)."""
    lang = lang.lower()
    if len(lang) == 3:
        return lang
    try:
        return TATOEBA_ISO3[lang]
    except KeyError:
        raise KeyError(
            f"no Tatoeba code for {lang!r}; pass the ISO 639-3 code or one of "
            f"{sorted(TATOEBA_ISO3)}"
        ) from None


def _read_parallel(src_path: Path, tgt_path: Path) -> tuple[list[str], list[str]]:
    if not tgt_path.is_file():
        raise FileNotFoundError(f"{src_path} found but its English side {tgt_path} is missing")
    src, tgt = _read_lines(src_path), _read_lines(tgt_path)
    if len(src) != len(tgt):
        raise ValueError(f"{src_path} ({len(src)} lines) and {tgt_path} ({len(tgt)}) differ")
    return src, tgt


def _pairs_from_hub_rows(rows: Iterable[dict[str, Any]]) -> tuple[list[str], list[str]]:
    pairs = [(r["source_sentence"].strip(), r["target_sentence"].strip()) for r in rows]
    return [s for s, _ in pairs], [t for _, t in pairs]


def load_tatoeba(
    lang: str, data_dir: PathLike | None = None, limit: int | None = None
) -> tuple[list[str], list[str]]:
    """Line-aligned Tatoeba test pairs ``(sentences in lang, English sentences)``.

    ``lang`` is ISO 639-3 (``deu``) or an XTREME ISO 639-1 code (``de``, mapped with
    :data:`TATOEBA_ISO3`). Local: ``tatoeba.xxx-eng.xxx`` / ``.eng``. Hub fallback:
    ``google/xtreme`` config ``tatoeba.xxx``.
    """
    _check_limit(limit)
    code = tatoeba_code(lang)
    stem = f"tatoeba.{code}-eng"
    src_path, searched = _find_local(data_dir, ("tatoeba", "tatoeba/v1"), (f"{stem}.{code}",))
    if src_path is not None:
        src, eng = _read_parallel(src_path, src_path.with_name(f"{stem}.eng"))
    else:
        rows = _from_hub(
            "Tatoeba", "google/xtreme", f"tatoeba.{code}", _hub_split("validation", limit),
            f"{stem}.{code} and {stem}.eng", searched,
        )  # fmt: skip
        src, eng = _pairs_from_hub_rows(rows)
    return _take(src, limit), _take(eng, limit)
