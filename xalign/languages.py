"""Language codes: the one definition of a code's primary language, for every option that
takes a language (training ``data.languages``, ``--languages``, each task's ``languages``,
gold sets, Tatoeba, BUCC, the Moses rules).

A code is a BCP-47 tag (RFC 5646, section 2.1) written with ``-`` or ``_``: a primary language
subtag of 2-3 letters (ISO 639-1 or 639-3), then optional subtags of 1-8 letters or digits
(script ``Hant``, region ``DE``/``419``, variant). Case does not matter (section 2.1.1). The
primary language is the first subtag, lower case: ``de-DE``, ``de_DE``, ``DE`` -> ``de``;
``zh-Hant-TW`` -> ``zh``; ``sr-Latn`` -> ``sr``; FLORES-200 ``deu_Latn`` -> ``deu``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from xalign.errors import XalignError

__all__ = [
    "LanguageCodeError",
    "LanguageMapError",
    "check_language_map",
    "language_in",
    "language_key",
    "primary_language",
    "same_language",
    "script_subtag",
]

_CODE = re.compile(r"([A-Za-z]{2,3})(?:[-_][A-Za-z0-9]{1,8})*\Z")


class LanguageCodeError(XalignError, ValueError):
    """A string that is not a language code (BCP-47 syntax); the message names the code and,
    when the caller gives it, the task and option."""


class LanguageMapError(XalignError, ValueError):
    """A per-language option map (``treebanks``, ``test_files``: language -> value) that is
    not a mapping of codes to non-empty strings, holds one code twice (``de-DE`` and
    ``de_DE``), or has two keys that could both serve a language; the message names the task
    and the option."""


def primary_language(code: str, *, where: str = "") -> str:
    """The primary language subtag of a BCP-47 code, lower case (RFC 5646 section 2.2.1).

    ``code``: ``de``, ``de-DE``, ``de_DE``, ``EN-us``, ``pt-BR``, ``zh-Hans``, ``zh-Hant-TW``,
    ``sr-Latn``, ``deu_Latn`` (surrounding spaces ignored). ``where`` (e.g. ``"xnli:
    languages"``) starts the error message.

    Raises:
        LanguageCodeError: ``code`` is not a string of that form (empty, spaces or other signs
            inside, a primary subtag of 1 or 4+ letters, an empty or 9+ character subtag).
    """
    text = code.strip() if isinstance(code, str) else ""
    match = _CODE.match(text)
    if match is None:
        prefix = f"{where}: " if where else ""
        raise LanguageCodeError(
            f"{prefix}{code!r} is not a language code (a BCP-47 tag: 2-3 letters, then "
            "optional script/region subtags after '-' or '_', e.g. de, de-DE, zh-Hant-TW)"
        )
    return match.group(1).lower()


def script_subtag(code: str) -> str | None:
    """The script subtag of a BCP-47 code (RFC 5646 section 2.2.3: 4 letters, title case),
    or None: ``sr-Latn`` -> ``Latn``, ``zh_hant_TW`` -> ``Hant``, ``de-DE`` -> None.

    Raises:
        LanguageCodeError: ``code`` is not a language code (see :func:`primary_language`).
    """
    primary_language(code)
    for part in re.split(r"[-_]", code.strip())[1:]:
        if len(part) == 4 and part.isalpha():
            return part.title()
    return None


def language_in(code: str, available: Iterable[str], *, where: str = "") -> str | None:
    """The entry of ``available`` that ``code`` stands for: the same code (case and ``-``/``_``
    ignored), else the entry that is the primary language itself (``de-DE`` -> ``de``), else
    the one entry with the same primary language (``de`` -> ``de-CH`` when that is the only
    German entry). None: no entry, or several with that primary language and none of them
    equal to ``code`` or to its primary language.

    Raises:
        LanguageCodeError: ``code`` is not a language code (see :func:`primary_language`).
    """
    primary = primary_language(code, where=where)
    entries = [str(a) for a in available]
    key = code.strip().replace("_", "-").lower()
    for entry in entries:
        if entry.strip().replace("_", "-").lower() == key:
            return entry
    bare = [e for e in entries if e.strip().lower() == primary]
    same = bare or [e for e in entries if _primary_or_none(e) == primary]
    return same[0] if len(same) == 1 else None


def same_language(a: str, b: str) -> bool:
    """Whether two codes have the same primary language (``de-DE``, ``de``); a string that is
    not a language code (a gold set name) is the same only as itself."""
    pa, pb = _primary_or_none(a), _primary_or_none(b)
    return a == b if pa is None or pb is None else pa == pb


def _primary_or_none(code: str) -> str | None:
    try:
        return primary_language(code)
    except LanguageCodeError:
        return None


def duplicate_code(codes: Iterable[str]) -> tuple[str, str] | None:
    """The first two of ``codes`` that are the same tag (``de`` and ``DE``, ``de-DE`` and
    ``de_de``), or None."""
    seen: list[str] = []
    for code in codes:
        twin = next((s for s in seen if _same_code(s, code)), None)
        if twin is not None:
            return twin, code
        seen.append(code)
    return None


def _same_code(a: str, b: str) -> bool:
    """Whether two codes are the same tag (RFC 5646 section 2.1.1: case does not matter;
    ``-`` and ``_`` are the same separator here)."""
    return a.strip().replace("_", "-").lower() == b.strip().replace("_", "-").lower()


def check_language_map(
    value: Any, *, where: str, kind: str = "value", languages: Sequence[str] = ()
) -> dict[str, str]:
    """A per-language option (``{de: de_gsd}``, ``{de-DE: mine.conllu}``) checked: a mapping
    of language codes to non-empty strings, each code given once, and every one of
    ``languages`` (the task's) served by at most one key (:func:`language_key`). ``where``
    (``"udpos: treebanks"``) starts each message; ``kind`` names the value (``"UD treebank
    code"``).

    Raises:
        LanguageCodeError: a key that is not a language code (``deutsch``, ``de DE``).
        LanguageMapError: not a mapping, a value that is not a non-empty string, one code
            written twice (``de-DE``, ``de_DE``), or two keys that could both serve one of
            ``languages``.
    """
    if not isinstance(value, Mapping):
        raise LanguageMapError(f"{where} must map a language to a {kind}, got {value!r}")
    checked: dict[str, str] = {}
    for key, item in value.items():
        if not (isinstance(item, str) and item.strip()):
            raise LanguageMapError(f"{where}.{key}: expected a {kind}, got {item!r}")
        primary_language(key, where=where)
        twin = next((k for k in checked if _same_code(k, key)), None)
        if twin is not None:
            raise LanguageMapError(f"{where}: {twin} and {key} are the same language: keep one")
        checked[key] = item
    for code in languages:
        language_key(code, checked, where=where, languages=languages)
    return checked


def language_key(
    code: str, keys: Iterable[str], *, where: str = "", languages: Sequence[str] = ()
) -> str | None:
    """The key of a per-language option map that serves ``code``: the key written as ``code``
    (case and ``-``/``_`` ignored), else the one key with the same primary language
    (``de-DE`` -> ``de``, ``de`` -> ``de_DE``, ``zh-Hant-TW`` -> ``zh``); None: no key of
    that language. For ``code`` among ``languages`` (the task's), a key written as another of
    them with a region or script (``de-AT`` in a task evaluating ``de-DE`` and ``de-AT``)
    serves only that language.
    The one rule of the built-in tasks' ``treebanks`` and ``test_files``
    (:func:`xalign.chosen_test_file`). ``where`` (``"udpos: treebanks"``) starts messages.

    Raises:
        LanguageCodeError: ``code`` or a key is not a language code.
        LanguageMapError: no key is ``code`` and several keys have its primary language
            (``de`` and ``de-AT`` for ``de-DE``): which one serves it is ambiguous.
    """
    primary = primary_language(code, where=where)
    entries = [str(k) for k in keys]
    for entry in entries:
        if entry.strip() == code.strip():
            return entry
    same = [e for e in entries if _same_code(e, code)]
    if not same:
        # for a task language, a key written as another regional task language (de-AT) is
        # that language's own; a bare primary code (de) serves every code of its language
        mine = any(_same_code(lg, code) for lg in languages)
        regional = [
            lg
            for lg in languages
            if mine
            and not _same_code(lg, code)
            and not _same_code(lg, primary_language(lg, where=where))
        ]
        same = [
            e
            for e in entries
            if primary_language(e, where=where) == primary
            and not any(_same_code(e, lg) for lg in regional)
        ]
    if len(same) > 1:
        raise LanguageMapError(
            f"{where}: {', '.join(same)} could all serve language {code.strip()} (keys are "
            f"matched by their primary language, {primary}): keep one, or add a key {code.strip()}"
        )
    return same[0] if same else None
