"""A content-keyed store of cache entries: one folder per key, published whole or not at all.

An entry ``<root>/<key>/`` is built into a temporary folder beside it and renamed into place
(atomic), under a file lock per key so that one process builds it while the others wait;
every file's size and sha256 is recorded in its ``manifest.json`` (with the entry's format
and key) and checked before use, so a damaged or partial entry is rebuilt, never used. Used
by the prepared data (:mod:`xalign.data.prepare`); :func:`write_atomic` publishes one file
the same way (the links index of :mod:`xalign.data.links`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from xalign.errors import XalignError
from xalign.provenance import file_digest

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"


class PreparedDataError(XalignError, RuntimeError):
    """Prepared data cannot be built or read (e.g. the cache folder is not writable)."""


def _files_of(folder: Path) -> dict[str, list[Any]]:
    """``{relative path: [size, sha256]}`` of every file under ``folder`` but the manifest."""
    out = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel != MANIFEST:
            out[rel] = [path.stat().st_size, file_digest(path)]
    return out


def check_entry(folder: Path, key: str, fmt: str) -> tuple[dict[str, Any] | None, str]:
    """The manifest of a complete, undamaged entry, or ``(None, why not)``.

    Checks: the manifest parses and names format ``fmt`` and this key; every file it lists
    exists with its recorded size and sha256 (read again in every process:
    :func:`xalign.provenance.file_digest` keeps no digest across processes); no data file is
    missing from the manifest's list.
    """
    if not folder.is_dir():
        return None, "absent"
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return None, f"unreadable {MANIFEST} ({type(exc).__name__})"
    if not isinstance(manifest, dict) or manifest.get("format") != fmt:
        return None, "another format"
    if manifest.get("key") != key:
        return None, "manifest of another key"
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        return None, "no file list"
    for rel, (size, sha) in files.items():
        path = folder / rel
        try:
            if path.stat().st_size != size:
                return None, f"{rel}: size {path.stat().st_size}, expected {size}"
            if file_digest(path) != sha:
                return None, f"{rel}: content changed (sha256 differs)"
        except OSError:
            return None, f"{rel}: missing"
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    extra = sorted(present - set(files) - {MANIFEST})
    if extra:
        return None, f"unexpected file {extra[0]}"
    return manifest, "ok"


@contextlib.contextmanager
def _entry_lock(root: Path, key: str) -> Iterator[None]:
    from filelock import FileLock

    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PreparedDataError(
            f"cannot create the prepared-data cache {root}: {exc.strerror or exc} (set "
            "XALIGN_CACHE_DIR to a writable folder)"
        ) from None
    with FileLock(str(root / f"{key}.lock")):
        yield


def _publish(tmp: Path, folder: Path) -> None:
    """Rename a finished temporary entry into place, replacing a damaged one."""
    if folder.exists():
        trash = folder.with_name(f".trash-{folder.name}-{uuid.uuid4().hex[:8]}")
        os.replace(folder, trash)
        shutil.rmtree(trash, ignore_errors=True)
    os.replace(tmp, folder)


def _write_manifest(tmp: Path, manifest: dict[str, Any]) -> None:
    manifest = {**manifest, "files": _files_of(tmp)}
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, ensure_ascii=False), "utf-8")


def cached_entry(
    root: Path, key: str, fmt: str, build: Callable[[Path], dict[str, Any]]
) -> tuple[dict[str, Any], bool]:
    """The manifest of entry ``key`` (built by ``build(tmp_folder) -> manifest`` on a miss,
    under the entry's file lock) and whether it was a hit. An exception out of ``build``
    leaves nothing behind. Raises PreparedDataError when ``root`` cannot be created or the
    entry just written does not check out."""
    folder = root / key
    manifest, why = check_entry(folder, key, fmt)
    if manifest is not None:
        return manifest, True
    with _entry_lock(root, key):
        manifest, why = check_entry(folder, key, fmt)  # another process may have built it
        if manifest is not None:
            return manifest, True
        if why != "absent":
            logger.warning("prepared data %s is damaged (%s): rebuilding it", folder, why)
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".tmp-{key[:16]}-"))
        try:
            manifest = build(tmp)
            manifest = {"format": fmt, "key": key, **manifest}
            _write_manifest(tmp, manifest)
            _publish(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        manifest, why = check_entry(folder, key, fmt)
        if manifest is None:
            raise PreparedDataError(f"{folder}: the entry just written does not check out ({why})")
        return manifest, False


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file renamed into place (readers see
    the old file or the new one, never a part). Raises OSError."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
