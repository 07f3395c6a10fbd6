"""The one rule that finds the data folder (evaluation sets, gold alignments, treebanks, ...).

Order (first match wins):

1. an explicit folder (``--data-dir`` on the command line, ``data_dir=`` in Python,
   ``TaskContext.data_dir`` in a task): returned as given, whether or not it exists, so that
   an error names the folder the user chose instead of silently reading another one;
2. ``$XALIGN_SHARED_DATA`` when set (non-empty): that folder if it exists, else *nothing* — a
   variable pointing at a missing folder is not replaced by ``../shared/data``
   (:func:`describe_data_root` says so in error messages);
3. ``../shared/data`` beside the current directory (``./../shared/data``);
4. ``../shared/data`` beside the source checkout that holds the ``xalign`` package (so tests
   and commands run from a sub-folder still find it).

Before this module three functions applied three variants of this rule (the evaluation
loaders: 2-4; the gold sets: 2 without the existence check, then 4; the test fixtures: 2, 4).

The cache root (:func:`cache_root`, ``$XALIGN_CACHE_DIR``) is defined here too, once: the
prepared data (``prepared/``), eflomal's links (``eflomal/``, ``links-index/``) and converted
models (``models/``) live under it.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CACHE_ENV", "DATA_ENV", "cache_root", "data_root", "describe_data_root"]

#: Environment variable naming the shared data folder.
DATA_ENV = "XALIGN_SHARED_DATA"

#: Environment variable naming the cache root (:func:`cache_root`).
CACHE_ENV = "XALIGN_CACHE_DIR"

#: The folder holding the ``xalign`` package's checkout (``<checkout>/xalign/paths.py``);
#: a module attribute so tests can point it elsewhere.
CHECKOUT = Path(__file__).resolve().parents[1]


def _beside(base: Path) -> Path:
    """``base/../shared/data``."""
    return base.parent / "shared" / "data"


def data_root(data_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The data folder by the module's rule: ``data_dir`` > ``$XALIGN_SHARED_DATA`` >
    ``../shared/data`` beside the current directory > beside the checkout.

    Returns None when ``data_dir`` is None and no rule finds an existing folder (callers then
    fall back to the Hugging Face Hub or raise an error using :func:`describe_data_root`).
    ``data_dir`` is returned ``expanduser()``-ed even when it does not exist.
    """
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get(DATA_ENV)
    if env:
        path = Path(env).expanduser()
        return path if path.is_dir() else None
    for base in (Path.cwd(), CHECKOUT):
        candidate = _beside(base)
        if candidate.is_dir():
            return candidate
    return None


def describe_data_root(data_dir: str | os.PathLike[str] | None = None) -> str:
    """One phrase for error messages: which folder the rule picked and why, or where it looked.

    E.g. ``"--data-dir /d"``, ``"no data_dir given; $XALIGN_SHARED_DATA=/x is not a folder"``,
    ``"no data_dir given, $XALIGN_SHARED_DATA unset, no ../shared/data beside /cwd or /repo"``.
    """
    if data_dir is not None:
        return f"--data-dir {Path(data_dir).expanduser()}"
    env = os.environ.get(DATA_ENV)
    if env:
        path = Path(env).expanduser()
        return f"no data_dir given; ${DATA_ENV}={path}" + (
            "" if path.is_dir() else " is not a folder"
        )
    found = data_root()
    if found is not None:
        return f"no data_dir given, ${DATA_ENV} unset; ../shared/data: {found}"
    bases = " or ".join(dict.fromkeys(str(b) for b in (Path.cwd(), CHECKOUT)))
    return f"no data_dir given, ${DATA_ENV} unset, no ../shared/data beside {bases}"


def cache_root() -> Path:
    """xalign's cache folder: ``$XALIGN_CACHE_DIR`` when set (non-empty, ``~`` expanded), else
    ``platformdirs.user_cache_dir("xalign")`` (e.g. ``~/.cache/xalign`` on Linux). Not
    created here: each writer creates its sub-folder."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("xalign"))
