"""Data-access utilities shared by task plugins: local-first lookup, the Hub fallback and the
SQuAD v1.1 JSON format. No dataset loader lives here: each task plugin owns its data
(``xalign_xnli.data``, ``xalign_xquad.data``, ``xalign_tatoeba.data``, ...).

:func:`find_data_file` looks for local files (``data_dir``, or the shared data folder found by
:func:`xalign.data_root`); :func:`load_hub_dataset` falls back to the Hugging Face Hub through
``datasets`` and raises :class:`DataUnavailableError` naming both options when neither works.
The Hub is probed with a short socket connection first, so an offline machine fails fast
instead of retrying. :func:`read_squad_json` and :func:`squad_examples` read the SQuAD v1.1
format that several QA test sets share (XQuAD, TyDiQA-GoldP, MLQA, SQuAD itself).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from xalign.errors import XalignError
from xalign.languages import check_language_map, language_key
from xalign.paths import DATA_ENV, data_root, describe_data_root

__all__ = [
    "ENV_VAR",
    "DataUnavailableError",
    "check_test_files",
    "chosen_test_file",
    "find_data_file",
    "load_hub_dataset",
    "read_squad_json",
    "squad_examples",
]

logger = logging.getLogger(__name__)

ENV_VAR = DATA_ENV
PathLike = str | os.PathLike[str]
Example = dict[str, Any]

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


def find_data_file(
    data_dir: PathLike | None, subdirs: Sequence[str], names: Sequence[str]
) -> tuple[Path | None, list[Path]]:
    """The first existing ``folder/name`` and the folders searched (for error messages).

    Folders, in order: ``data_dir`` itself and ``data_dir/SUB`` for each of ``subdirs`` when
    ``data_dir`` is given (so it may be the task folder or its parent), else the shared data
    folder's ``SUB`` folders (:func:`xalign.data_root`). Returns ``(None, searched)`` when no
    folder holds any of ``names``; pass ``searched`` on to :func:`load_hub_dataset`.
    """
    folders = _search_dirs(data_dir, subdirs)
    for folder in folders:
        for name in names:
            if (folder / name).is_file():
                return folder / name, folders
    return None, folders


def check_test_files(
    test_files: Any, task: str, kind: str = "file", languages: Sequence[str] = ()
) -> dict[str, str]:
    """A task's ``test_files`` option (language -> path of the user's own test file) checked
    by :func:`xalign.check_language_map`: keys are language codes, each value a non-empty
    string, and each of ``languages`` served by at most one key. ``kind`` names the format in
    the message (``"CoNLL-U file"``, ``"XNLI TSV file"``).

    Raises:
        LanguageCodeError: a key that is not a language code (message: ``TASK: test_files``).
        LanguageMapError: not a mapping, a value that is not a non-empty string, one code
            written twice, or two keys that could serve one of ``languages``. Both are
            ``ValueError``: the config check turns them into an error naming the task option.
    """
    return check_language_map(
        test_files, where=f"{task}: test_files", kind=f"{kind} path", languages=languages
    )


def chosen_test_file(
    test_files: Mapping[str, str], lang: str, languages: Sequence[str], task: str
) -> Path | None:
    """The file ``test_files`` names for ``lang`` (None: the task reads its usual test data):
    the key :func:`xalign.language_key` picks (its own entry, else the one entry of its
    primary language: ``test_files.de`` serves ``de-DE``, ``test_files.de_DE`` serves ``de``).

    ``languages``: the task's ``languages`` option. Every ``test_files`` key must serve one
    of them (a key outside them is a typo or a forgotten language, never silently unread);
    ``--languages`` only picks among them, and the file of a language not picked is not read.

    Raises:
        DataUnavailableError: a ``test_files`` language is not among ``languages``, or its
            file does not exist.
        LanguageMapError: two keys could serve ``lang`` and neither is ``lang`` itself.
    """
    where = f"{task}: test_files"
    used = {language_key(lg, test_files, where=where, languages=languages) for lg in languages}
    extra = sorted(k for k in test_files if k not in used)  # no language reads it
    if extra:
        raise DataUnavailableError(
            f"{task}: test_files names {', '.join(extra)}, not among the task's languages "
            f"({', '.join(languages)}); add it to them (--option "
            f"{task}.languages=[{','.join([*languages, *extra])}])"
        )
    key = language_key(lang, test_files, where=where, languages=languages)
    if key is None:
        return None
    path = Path(test_files[key]).expanduser()
    if not path.is_file():
        raise DataUnavailableError(f"{task}: test_files.{key}: no such file: {path}")
    return path


def _check_limit(limit: int | None) -> None:
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")


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
    """The Hub fallback of a task plugin's loader, after :func:`find_data_file` found nothing.

    ``datasets.load_dataset(hub_id, config, split=split)`` after a quick reachability probe;
    on any failure raises :class:`DataUnavailableError` naming the local folders ``searched``,
    the files expected there (``local_hint``) and the Hub dataset, so the user sees both ways
    to provide the data in one message.
    """
    return _from_hub(task, hub_id, config, split, local_hint, searched)


# --------------------------------------------------------------------------------------------
# SQuAD v1.1 format (a file format shared by XQuAD, TyDiQA-GoldP, MLQA and SQuAD)
# --------------------------------------------------------------------------------------------


def _unique_id(qid: str, seen: set[str]) -> str:
    """``qid`` itself, or ``qid_k`` with the smallest unused k when it was seen before."""
    new_id, k = qid, 0
    while new_id in seen:
        k += 1
        new_id = f"{qid}_{k}"
    seen.add(new_id)
    return new_id


def _question_id(value: Any) -> str:
    """A question id as a string (SQuAD's are strings; TyDiQA-GoldP's may be integers)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise TypeError(f"id {value!r} is not a string")
    return str(value)


def _text(value: Any, what: str) -> str:
    """``value`` if it is a string, else a ``TypeError`` (an empty string is kept: TyDiQA-GoldP
    dev has empty gold answers)."""
    if not isinstance(value, str):
        raise TypeError(f"{what} {value!r} is not a string")
    return value


def _answer_start(value: Any) -> int:
    """A character offset: an integer (or an integral float or digit string), else a
    ``TypeError`` (``true``, ``null``, ``13.7``, ``"x"`` and NaN are refused)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:  # "x", "1.5", "²": the TypeError below names the place
            pass
    raise TypeError(f"answer_start {value!r} is not an integer")


def _qa_example(qid: str, title: str, context: Any, qa: dict[str, Any]) -> Example:
    answers = qa.get("answers", [])
    return {
        "id": qid,
        "title": title,
        "context": _text(context, "context"),
        "question": _text(qa["question"], "question"),
        "answers": {
            "text": [_text(a["text"], "answer text") for a in answers],
            "answer_start": [_answer_start(a["answer_start"]) for a in answers],
        },
    }


def read_squad_json(path: PathLike, limit: int | None = None) -> list[Example]:
    """Flatten a SQuAD v1.1 JSON file into the HF ``squad`` schema (first ``limit`` questions).

    A format reader, not a dataset loader: the QA task plugins find their files and call it.

    Each example is ``{id, title, context, question, answers: {text, answer_start}}``.
    Duplicate question ids (TyDiQA-GoldP English train reuses small integers) are made unique
    by suffixing ``_1``, ``_2``, ... to later occurrences, so ids can key prediction dicts.
    Raises ``ValueError`` naming the file and the place (``data[a].paragraphs[p].qas[q]``, or
    the JSON or UTF-8 line) for malformed input (also a field of the wrong type: a context,
    question or answer text that is not a string, an ``answer_start`` that is not an integer),
    a file that is not UTF-8, an empty file, or an answer that is not its context's text at
    ``answer_start``.
    """
    _check_limit(limit)
    raw = Path(path).read_bytes()
    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ValueError(
            f"{path}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}; "
            "SQuAD JSON files are UTF-8: re-encode the file)"
        ) from None
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
                    qid = _unique_id(_question_id(qa["id"]), seen)
                    example = _qa_example(qid, title, paragraph["context"], qa)
                    if qa.get("is_impossible") is True:  # SQuAD 2.0 (answers: [])
                        raise ValueError(
                            f"{path}: {where} (id {qid}): an unanswerable SQuAD 2.0 question "
                            "(is_impossible: true); QA tasks read SQuAD v1.1, where every "
                            "question has an answer: drop the unanswerable ones"
                        )
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
        raise ValueError(f"{path}: no questions (SQuAD v1.1 JSON whose 'data' holds no 'qas')")
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


def squad_examples(rows: Iterable[dict[str, Any]]) -> list[Example]:
    """Rows of a Hub dataset in the ``squad`` schema (``google/xquad``, ``facebook/mlqa``,
    ``rajpurkar/squad``, ...) as plain examples ``{id, title, context, question, answers:
    {text, answer_start}}`` (ids as strings, answer starts as ints)."""
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
