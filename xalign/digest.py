"""sha256 digests of files and JSON values, with the in-process memo of file digests.

The lowest layer of content identity (:mod:`xalign.provenance` builds on it; the packaged
model's converter in :mod:`xalign.encoders.e5` keys its cache with it). A file's digest is
reused within one process while its (device, inode, size, mtime_ns, ctime_ns) are unchanged,
never across processes; a file whose ctime is less than :data:`RACY_SECONDS` old is not
memoised (git's "racily clean" rule; see :mod:`xalign.provenance`).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

__all__ = ["RACY_SECONDS", "file_digest", "json_digest"]

RACY_SECONDS = 2.0
#: In-process digests by (absolute path, device, inode, size, mtime_ns, ctime_ns).
_MEMO: dict[tuple[str, int, int, int, int, int], str] = {}


def json_digest(obj: Any) -> str:
    """sha256 (hex) of ``obj`` as canonical JSON (sorted keys, no whitespace)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _sha256_file(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def file_digest(path: str | Path) -> str:
    """sha256 (hex) of a file's bytes, read now (see the module docstring for the in-process
    memo, keyed by device, inode, size, mtime_ns and ctime_ns).

    Raises FileNotFoundError / OSError like ``open``.
    """
    path = Path(path).expanduser().resolve()
    st = path.stat()
    key = (str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    cached = _MEMO.get(key)
    if cached is not None:
        return cached
    digest = _sha256_file(path)
    after = path.stat()
    same = (after.st_size, after.st_mtime_ns, after.st_ctime_ns) == key[3:]
    if same and time.time() - st.st_ctime_ns / 1e9 >= RACY_SECONDS:  # else: racily clean
        _MEMO[key] = digest
    return digest
