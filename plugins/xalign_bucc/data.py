"""BUCC 2018 data: local XTREME files first, then the Hugging Face Hub.

Local layout (XTREME's ``download_data.sh`` renames the BUCC 2018 archives: ``sample`` ->
``dev``, ``training`` -> ``test``), under ``--data-dir``, ``--data-dir/bucc2018`` or the shared
data folder's ``bucc2018/``::

    {xx}-en.{split}.{xx}     xx_id <TAB> sentence      (e.g. de-000001<TAB>...)
    {xx}-en.{split}.en       en_id <TAB> sentence
    {xx}-en.{split}.gold     xx_id <TAB> en_id         (the parallel pairs)

XTREME's script deletes ``*test.gold`` (its test scores come from a leaderboard); the
``bucc2018-xx-en.training-gold`` archives of the shared task hold that file.

Hub fallback: ``google/xtreme`` config ``bucc18.xx`` (splits ``validation`` = dev, ``test``).
It holds only the gold pairs (the ids are in its ``source_lang``/``target_lang`` columns), not
the non-parallel sentences of the corpora, so mining over it is much easier than the
official task; ``BuccData.source`` says which one was read.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from xalign import (
    DataUnavailableError,
    GoldFileNotFoundError,
    GoldFormatError,
    data_root,
    describe_data_root,
    primary_language,
    read_gold_lines,
)

HUB_ID = "google/xtreme"
HUB_SPLITS = {"dev": "validation", "test": "test"}


@dataclass
class BuccData:
    """One language and split: sentence pools (id, text) in file order and gold id pairs."""

    lang: str
    split: str
    src: list[tuple[str, str]]
    eng: list[tuple[str, str]]
    gold: set[tuple[str, str]]
    source: str
    dropped_gold: int = 0
    notes: list[str] = field(default_factory=list)

    def limited(self, limit: int | None) -> BuccData:
        """The first ``limit`` sentences of each pool and the gold pairs inside them."""
        if limit is None:
            return self
        src, eng = self.src[:limit], self.eng[:limit]
        src_ids, eng_ids = {i for i, _ in src}, {i for i, _ in eng}
        gold = {(s, e) for s, e in self.gold if s in src_ids and e in eng_ids}
        return BuccData(
            self.lang,
            self.split,
            src,
            eng,
            gold,
            self.source,
            len(self.gold) - len(gold),
            self.notes,
        )


def _read_sentences(path: Path) -> list[tuple[str, str]]:
    """``id <TAB> sentence`` lines (the sentence may itself hold tabs)."""
    rows: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    for n, line in enumerate(read_gold_lines(path), start=1):
        if not line.strip():
            continue
        ident, tab, text = line.partition("\t")
        ident = ident.strip()
        if not tab or not ident:
            raise GoldFormatError(f"{path} line {n}: expected 'id<TAB>sentence'", path=path, line=n)
        if ident in seen:
            raise GoldFormatError(
                f"{path} line {n}: duplicate id {ident!r} (also line {seen[ident]})",
                path=path,
                line=n,
            )
        seen[ident] = n
        rows.append((ident, text.strip()))
    return rows


def _read_gold(
    path: Path, src: list[tuple[str, str]], eng: list[tuple[str, str]]
) -> set[tuple[str, str]]:
    """``xx_id <TAB> en_id`` lines; every id must be in its sentence file."""
    src_ids, eng_ids = {i for i, _ in src}, {i for i, _ in eng}
    gold: set[tuple[str, str]] = set()
    for n, line in enumerate(read_gold_lines(path), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2:
            raise GoldFormatError(f"{path} line {n}: expected 'xx_id<TAB>en_id'", path=path, line=n)
        if fields[0] not in src_ids or fields[1] not in eng_ids:
            missing = fields[0] if fields[0] not in src_ids else fields[1]
            raise GoldFormatError(
                f"{path} line {n}: id {missing!r} is not in the sentence files", path=path, line=n
            )
        gold.add((fields[0], fields[1]))
    return gold


def _search_dirs(data_dir: str | Path | None) -> list[Path]:
    if data_dir is not None:
        root = Path(data_dir).expanduser()
        return [root, root / "bucc2018"]
    shared = data_root()
    return [shared / "bucc2018"] if shared is not None else []


def find_local(
    lang: str, split: str, data_dir: str | Path | None
) -> tuple[tuple[Path, Path, Path] | None, list[Path]]:
    """``(xx file, en file, gold file)`` of the first folder holding the xx file (``lang``:
    its :func:`xalign.primary_language`)."""
    lang = primary_language(lang, where="bucc: languages")
    folders = _search_dirs(data_dir)
    stem = f"{lang}-en.{split}"
    for folder in folders:
        if (folder / f"{stem}.{lang}").is_file():
            return (
                folder / f"{stem}.{lang}",
                folder / f"{stem}.en",
                folder / f"{stem}.gold",
            ), folders
    return None, folders


def read_local(lang: str, split: str, files: tuple[Path, Path, Path]) -> BuccData:
    """Read the three files of one language and split."""
    src_path, eng_path, gold_path = files
    for path in (eng_path, gold_path):
        if not path.is_file():
            hint = (
                " (XTREME's download script deletes *test.gold; the BUCC 2018 "
                "'training-gold' archive has it)"
                if path is gold_path
                else ""
            )
            raise GoldFileNotFoundError(f"bucc: {src_path} found but {path} is missing{hint}")
    src, eng = _read_sentences(src_path), _read_sentences(eng_path)
    gold = _read_gold(gold_path, src, eng)
    # absolute: the result's meta names the file even when --data-dir was relative
    return BuccData(lang, split, src, eng, gold, f"local:{src_path.absolute()}")


def _hub_address() -> tuple[str, int]:
    proxy_vars = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
    proxy = next((os.environ[v] for v in proxy_vars if os.environ.get(v)), None)
    url = proxy or os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    parts = urlsplit(url if "://" in url else f"http://{url}")
    return parts.hostname or "huggingface.co", parts.port or (
        443 if parts.scheme == "https" else 80
    )


def _load_hub_rows(lang: str, split: str) -> Any:
    """Rows of ``google/xtreme`` ``bucc18.{lang}``; fails fast when the Hub is unreachable."""
    offline = any(
        os.environ.get(v, "").strip().lower() in {"1", "true", "yes", "on"}
        for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )
    if not offline:
        host, port = _hub_address()
        try:
            socket.create_connection((host, port), timeout=2.0).close()
        except OSError as err:
            raise ConnectionError(
                f"cannot reach the Hugging Face Hub at {host}:{port} "
                "(HF_HUB_OFFLINE=1 uses the local HF cache)"
            ) from err
    import datasets  # lazy: slow import, only for the Hub fallback

    return datasets.load_dataset(HUB_ID, f"bucc18.{lang}", split=HUB_SPLITS[split])


def from_hub_rows(lang: str, split: str, rows: Any) -> BuccData:
    """Pools and gold from Hub rows (``source_lang``/``target_lang`` hold the ids)."""
    src: dict[str, str] = {}
    eng: dict[str, str] = {}
    gold: set[tuple[str, str]] = set()
    for row in rows:
        sid, eid = str(row["source_lang"]).strip(), str(row["target_lang"]).strip()
        src.setdefault(sid, str(row["source_sentence"]).strip())
        eng.setdefault(eid, str(row["target_sentence"]).strip())
        gold.add((sid, eid))
    note = (
        "Hub copy: gold pairs only, no non-parallel sentences (easier than the official "
        "task; not comparable to published BUCC F1)"
    )
    return BuccData(
        lang,
        split,
        list(src.items()),
        list(eng.items()),
        gold,
        f"hub:{HUB_ID}/bucc18.{lang}/{HUB_SPLITS[split]}",
        notes=[note],
    )


def load_bucc(lang: str, split: str, data_dir: str | Path | None = None) -> BuccData:
    """BUCC 2018 ``lang``-en, ``split`` (``dev`` or ``test``): local files, else the Hub.
    ``lang`` with a region or script subtag (``de-DE``, ``de_DE``) reads its primary subtag.

    Raises :class:`DataUnavailableError` naming both the folders searched and the Hub
    dataset when neither works, :class:`GoldFormatError` / :class:`GoldFileNotFoundError`
    (file and line) for bad or incomplete local files.
    """
    if split not in HUB_SPLITS:
        raise ValueError(f"bucc: split must be 'dev' or 'test', got {split!r}")
    lang = primary_language(lang, where="bucc: languages")
    files, searched = find_local(lang, split, data_dir)
    if files is not None:
        return read_local(lang, split, files)
    try:
        rows = _load_hub_rows(lang, split)
    except Exception as err:  # network, cache, unknown config: all mean "unavailable"
        where = ", ".join(str(p) for p in searched) or describe_data_root()
        raise DataUnavailableError(
            f"bucc: no local files {lang}-en.{split}.{{{lang},en,gold}} (searched: {where}) and "
            f"the Hugging Face dataset {HUB_ID!r} (config 'bucc18.{lang}', split "
            f"{HUB_SPLITS[split]!r}) could not be loaded ({type(err).__name__}: {err}). Pass "
            f"--data-dir FOLDER holding bucc2018/{lang}-en.{split}.{lang} (XTREME layout) or "
            "make the Hub dataset available."
        ) from err
    return from_hub_rows(lang, split, rows)
