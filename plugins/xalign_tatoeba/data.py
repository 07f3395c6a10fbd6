"""Tatoeba test pairs of the ``tatoeba`` task: local files first, then the Hub.

Local: ``tatoeba.xxx-eng.xxx`` / ``tatoeba.xxx-eng.eng`` (XTREME names) in ``data_dir``,
``data_dir/tatoeba`` or the shared data folder's ``tatoeba/``; Hub fallback: ``google/xtreme``
config ``tatoeba.xxx`` through :func:`xalign.load_hub_dataset`.
"""

from __future__ import annotations

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

__all__ = ["TATOEBA_ISO3", "TatoebaDataError", "load_tatoeba", "tatoeba_code"]

PathLike = str | os.PathLike[str]

#: ISO 639-1 -> the ISO 639-3 codes of the Tatoeba files, for the 36 XTREME languages.
TATOEBA_ISO3: dict[str, str] = {
    "af": "afr", "ar": "ara", "bg": "bul", "bn": "ben", "de": "deu", "el": "ell",
    "es": "spa", "et": "est", "eu": "eus", "fa": "pes", "fi": "fin", "fr": "fra",
    "he": "heb", "hi": "hin", "hu": "hun", "id": "ind", "it": "ita", "ja": "jpn",
    "jv": "jav", "ka": "kat", "kk": "kaz", "ko": "kor", "ml": "mal", "mr": "mar",
    "nl": "nld", "pt": "por", "ru": "rus", "sw": "swh", "ta": "tam", "te": "tel",
    "th": "tha", "tl": "tgl", "tr": "tur", "ur": "urd", "vi": "vie", "zh": "cmn",
    # the other LASER test sets with an ISO 639-1 code (beyond XTREME's 36)
    "am": "amh", "az": "aze", "be": "bel", "br": "bre", "bs": "bos", "ca": "cat",
    "ch": "cha", "cs": "ces", "cy": "cym", "da": "dan", "eo": "epo", "fo": "fao",
    "fy": "fry", "ga": "gle", "gd": "gla", "gl": "glg", "hr": "hrv", "hy": "hye",
    "ia": "ina", "ie": "ile", "io": "ido", "is": "isl", "km": "khm", "ku": "kur",
    "kw": "cor", "la": "lat", "lt": "lit", "lv": "lvs", "mk": "mkd", "mn": "mon",
    "ms": "zsm", "nb": "nob", "nn": "nno", "no": "nob", "oc": "oci", "pl": "pol",
    "ro": "ron", "sk": "slk", "sl": "slv", "sq": "sqi", "sr": "srp", "sv": "swe",
    "tk": "tuk", "tt": "tat", "ug": "uig", "uk": "ukr", "uz": "uzb", "xh": "xho",
    "yi": "yid",
}  # fmt: skip


class TatoebaDataError(XalignError, ValueError):
    """Tatoeba files whose two sides do not line up (the message names both files), or a
    language with no Tatoeba code."""


def tatoeba_code(lang: str) -> str:
    """ISO 639-3 code of the Tatoeba files for a language code: an XTREME ISO 639-1 code
    (``de`` -> ``deu``, :data:`TATOEBA_ISO3`) or a 3-letter code (passed through), also with
    a region or script subtag (BCP-47 ``de-DE``, ``de_DE``, FLORES ``deu_Latn``: its
    :func:`xalign.primary_language` counts).

    Raises:
        TatoebaDataError: no Tatoeba file code for ``lang`` (the message names the option).
        ValueError: ``lang`` is not a language code (an :class:`xalign.XalignError` naming
            the task and option).
    """
    primary = primary_language(lang, where="tatoeba: languages")
    if len(primary) == 3:
        return primary
    try:
        return TATOEBA_ISO3[primary]
    except KeyError:
        raise TatoebaDataError(
            f"tatoeba: languages: no Tatoeba code for {lang!r}; pass an ISO 639-3 code or one "
            f"of {sorted(TATOEBA_ISO3)} (a region or script subtag, de-DE, is allowed)"
        ) from None


def _read_parallel(src_path: Path, tgt_path: Path) -> tuple[list[str], list[str]]:
    if not tgt_path.is_file():
        raise FileNotFoundError(f"{src_path} found but its English side {tgt_path} is missing")
    src, tgt = read_gold_lines(src_path), read_gold_lines(tgt_path)
    if len(src) != len(tgt):
        raise TatoebaDataError(f"{src_path} ({len(src)} lines) and {tgt_path} ({len(tgt)}) differ")
    return src, tgt


def _pairs_from_hub_rows(rows: Iterable[dict[str, Any]]) -> tuple[list[str], list[str]]:
    pairs = [(r["source_sentence"].strip(), r["target_sentence"].strip()) for r in rows]
    return [s for s, _ in pairs], [t for _, t in pairs]


def load_tatoeba(
    lang: str, data_dir: PathLike | None = None, limit: int | None = None
) -> tuple[list[str], list[str]]:
    """Line-aligned Tatoeba test pairs ``(sentences in lang, English sentences)``.

    ``lang`` is ISO 639-3 (``deu``) or an XTREME ISO 639-1 code (``de``, mapped with
    :data:`TATOEBA_ISO3`); ``limit`` keeps the first N pairs.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    code = tatoeba_code(lang)
    stem = f"tatoeba.{code}-eng"
    src_path, searched = find_data_file(data_dir, ("tatoeba", "tatoeba/v1"), (f"{stem}.{code}",))
    if src_path is not None:
        src, eng = _read_parallel(src_path, src_path.with_name(f"{stem}.eng"))
    else:
        split = "validation" if limit is None else f"validation[:{limit}]"
        rows = load_hub_dataset(
            "Tatoeba", "google/xtreme", f"tatoeba.{code}", split,
            local_hint=f"{stem}.{code} and {stem}.eng", searched=searched,
        )  # fmt: skip
        src, eng = _pairs_from_hub_rows(rows)
    return (src, eng) if limit is None else (src[:limit], eng[:limit])
