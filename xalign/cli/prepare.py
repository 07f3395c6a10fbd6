"""``xalign prepare``: build the prepared training
data of a run config (:mod:`xalign.data.prepare`) ahead of ``xalign run``, e.g. on a CPU box
before a GPU job."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from xalign.cli.common import err, user_errors
from xalign.progress import stdout_console


def prepare_command(
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML config file."),
    overrides: list[str] = typer.Option([], "--set", "-s", help="Override: key.sub=value."),
    objective: list[str] = typer.Option(
        [], "--objective", "-o", help="Objective NAME or NAME:WEIGHT (its word links are prepared)."
    ),
    num_proc: int | None = typer.Option(
        None, "--num-proc", min=1, help="Moses worker processes (default: by corpus size)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Prepare a run's training data once (words, filters, statistics, word links), cached by
    content under $XALIGN_CACHE_DIR/prepared; `xalign run` with the same inputs reuses it."""
    from xalign.config import load_config
    from xalign.data.prepare import describe, prepare_config
    from xalign.plugins import get_registry

    with user_errors():
        registry = get_registry()
        cfg = load_config(config, overrides, objective or None, registry=registry)
        prepared = prepare_config(cfg, registry=registry, num_proc=num_proc)
    summary = prepared.summary()
    if as_json:
        typer.echo(json.dumps(summary, indent=2, ensure_ascii=False))
        return
    err.print(describe(prepared), highlight=False, soft_wrap=True)
    table = Table("pair", "read", "kept", "dropped", "truncated words", "links", "cache")
    for name, p in summary["pairs"].items():
        dropped = ", ".join(f"{r} {n}" for r, n in p["filtered"].items() if n) or "-"
        links = "-"
        if "links_digests" in p:
            links = ", ".join(f"{s} {d[:12]}" for s, d in p["links_digests"].items())
        hit = "hit" if p["cache_hit"] and p.get("links_cache_hit", True) else "built"
        table.add_row(
            name, str(p["read"]), str(p["kept"]), dropped, str(p["truncated_words"]), links, hit
        )
    stdout_console().print(table)
