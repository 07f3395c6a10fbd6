"""Rich progress on stderr (stdout stays clean for ``--json``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TypeVar

T = TypeVar("T")


def track(items: Sequence[T], description: str, enabled: bool = True) -> Iterable[T]:
    """``items``, with a transient rich progress bar on stderr when ``enabled``."""
    if not enabled:
        return items
    from rich.console import Console
    from rich.progress import track as rich_track

    return rich_track(items, description=description, console=Console(stderr=True),
                      transient=True)
