"""``xalign export`` (registered on the app in :mod:`xalign.cli`): a training run's model as a
Hugging Face folder with a model card (:mod:`xalign.export`, :mod:`xalign.model_card`)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from xalign.cli.common import user_errors
from xalign.progress import stderr_console


def export_command(
    run: str = typer.Argument(
        ..., help="Training run: its MLflow run id, its output folder or its model folder."
    ),
    to: Path = typer.Option(..., "--to", help="New (or empty) folder to write."),
    sentence_transformers: bool = typer.Option(
        False,
        "--sentence-transformers",
        help="Also loadable with SentenceTransformer(DIR): mean pooling + normalisation.",
    ),
    merge: bool | None = typer.Option(
        None,
        "--merge/--no-merge",
        help="LoRA runs: merge the adapter into a plain model (default) or keep the adapter.",
    ),
    push_to_hub: str | None = typer.Option(
        None,
        "--push-to-hub",
        metavar="REPO",
        help="Upload the folder to this Hub model repo (token: HF_TOKEN or `hf auth login`).",
    ),
    private: bool = typer.Option(False, "--private", help="Create the Hub repo private."),
    tracking_uri: str | None = typer.Option(
        None, "--tracking-uri", help="MLflow store of the run (default: the run's own)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Export a training run's model: safetensors, tokenizer and a model card (README.md)
    whose figures come from the run's stored records and its comparisons."""
    from xalign.export import export_run

    with user_errors():
        result = export_run(
            run,
            to,
            sentence_transformers=sentence_transformers,
            merge=merge,
            push_to_hub=push_to_hub,
            private=private,
            tracking_uri=tracking_uri,
        )
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "folder": str(result.folder),
                    "merged": result.merged,
                    "sentence_transformers": result.sentence_transformers,
                    "compare_run_id": result.compare_run_id,
                    "pushed_url": result.pushed_url,
                    "files": result.files,
                }
            )
        )
        return
    err = stderr_console()
    source = f"; card rows from compare {result.compare_run_id}" if result.compare_run_id else ""
    err.print(f"exported {len(result.files)} files{source}", highlight=False)
    if result.pushed_url:
        err.print(f"pushed to {result.pushed_url}", highlight=False)
    typer.echo(str(result.folder))
