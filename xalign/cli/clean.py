"""``xalign clean [DIR]``: remove old run output folders (or all but their models)."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import typer

from xalign.cli.common import err, user_errors
from xalign.cli.sync_tracking import is_run_dir
from xalign.errors import XalignError

DAY = 86400.0


@dataclass(frozen=True)
class Removal:
    """One thing ``clean`` removes: a path, its size in bytes and its age in days."""

    path: Path
    size: int
    age_days: float


def _files(path: Path) -> list[Path]:
    return [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]


def size_of(path: Path) -> int:
    """Bytes of the files under ``path`` (links not followed)."""
    return sum(p.lstat().st_size for p in _files(path))


def last_change(path: Path) -> float:
    """The newest modification time (s since the epoch) of ``path`` and the files under it."""
    return max([path.stat().st_mtime, *(p.lstat().st_mtime for p in _files(path))])


def plan(root: Path, older_than_days: float, keep_models: bool, now: float) -> list[Removal]:
    """What to remove under ``root``: each run folder (a child holding ``config.yaml``,
    ``checkpoints/`` or ``model/``) last changed more than ``older_than_days`` ago; with
    ``keep_models`` its ``checkpoints/`` only, and only where ``model/`` exists (a run without
    a saved model keeps the weights of its checkpoints).

    Raises:
        XalignError: ``root`` is not a folder.
    """
    if not root.is_dir():
        raise XalignError(f"{root}: no such folder (give the runs' train.output_dir)")
    found = []
    for run in sorted(p for p in root.iterdir() if p.is_dir() and is_run_dir(p)):
        age = (now - last_change(run)) / DAY
        if age < older_than_days:
            continue
        target = run
        if keep_models:
            target = run / "checkpoints"
            if not ((run / "model").is_dir() and target.is_dir()):
                continue
        found.append(Removal(target, size_of(target), age))
    return found


def human(size: float) -> str:
    """Bytes as ``512 B``, ``1.4 GB`` (powers of 1000, as ``du --si``)."""
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


def clean_command(
    directory: Path = typer.Argument(Path("outputs"), help="Folder holding run folders."),
    older_than: float = typer.Option(
        7.0, "--older-than", min=0, help="Only runs unchanged for more than DAYS days."
    ),
    keep_models: bool = typer.Option(
        False, "--keep-models", help="Remove only checkpoints/ of runs that saved model/."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would go; remove nothing."),
) -> None:
    """Remove old run output folders (MLflow records stay; a removed run cannot be resumed)."""
    with user_errors():
        removals = plan(directory, older_than, keep_models, time.time())
    verb = "would remove" if dry_run else "removed"
    for r in removals:
        if not dry_run:
            shutil.rmtree(r.path)
        typer.echo(f"{verb} {r.path} ({human(r.size)}, {r.age_days:.1f} days old)")
    total = human(sum(r.size for r in removals))
    err.print(
        f"{verb} {len(removals)} folder(s), {total}"
        + (f" (runs newer than {older_than:g} days kept)" if older_than else ""),
        highlight=False,
    )
