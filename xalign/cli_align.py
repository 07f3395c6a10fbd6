"""``xalign align``: word alignments of one sentence pair and a heatmap of the OT plan.

Registered on the app in :mod:`xalign.cli`. The model may be a run's model dir (or the run's
output dir), a hub id or local dir, ``packaged:NAME``, ``base`` or an MLflow training run id
(its ``xalign.model_dir`` tag).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console

from xalign.word_align import PLAN_METHODS, OTOptions, PairAlignment

err = Console(stderr=True)
_ERRORS = ("EncoderLoadError", "EvaluationError", "ValueError", "FileNotFoundError")


def _fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def resolve_align_model(ref: str, tracking_uri: str | None = None) -> str:
    """Model path or name for ``ref``; a run output dir means its ``model`` subfolder."""
    from xalign.evaluate import resolve_model

    local = Path(ref).expanduser()
    if (local / "model" / "config.json").exists() and not (local / "config.json").exists():
        ref = str(local / "model")
    return resolve_model(ref, tracking_uri=tracking_uri)[0]


def short_name(ref: str) -> str:
    """A model reference short enough for a plot title (last two path parts)."""
    parts = Path(ref).parts
    return "/".join(parts[-2:]) if len(parts) > 1 else ref


def format_links(alignment: PairAlignment) -> str:
    """``src - tgt`` lines for the OT links, then for the mutual-argmax links."""
    lines = ["# OT plan"]
    lines += [f"{s} - {t}" for s, t in alignment.pairs(alignment.ot_links)]
    lines.append("# mutual argmax (cosine)")
    lines += [f"{s} - {t}" for s, t in alignment.pairs(alignment.argmax_links)]
    return "\n".join(lines)


def align(
    src: str = typer.Argument(..., help="Source sentence (Moses-tokenised for --src-lang)."),
    tgt: str = typer.Argument(..., help="Target sentence (Moses-tokenised for --tgt-lang)."),
    model: str = typer.Option("packaged:multilingual-e5-small", "--model", "-m",
                              help="Model dir, run output dir, hub id, packaged:NAME, base or "
                                   "MLflow training run id."),
    src_lang: str = typer.Option("de", "--src-lang", help="Source language code."),
    tgt_lang: str = typer.Option("en", "--tgt-lang", help="Target language code."),
    layer: int = typer.Option(-1, "--layer", help="Hidden-state index (-1 = last)."),
    pooling: str = typer.Option("mean", "--pooling", help="Subwords -> word: mean|first|last."),
    method: str = typer.Option("argmax", "--method",
                               help="OT links: argmax (mutual argmax of the plan) or "
                                    "threshold (plan*n >= --threshold)."),
    threshold: float = typer.Option(0.5, "--threshold", help="For --method threshold."),
    blur: float = typer.Option(0.05, "--blur", help="geomloss blur (eps = blur^p)."),
    p: int = typer.Option(2, "--p", help="Cost exponent: |x-y|^p / p."),
    scaling: float = typer.Option(0.9, "--scaling", help="geomloss eps-annealing ratio."),
    reach: float | None = typer.Option(None, "--reach", help="Unbalanced OT reach (none = "
                                                              "balanced)."),
    normalize: bool = typer.Option(True, "--normalize/--raw",
                                   help="L2-normalise word vectors before OT."),
    out: Path | None = typer.Option(None, "--out", "-o",
                                    help="Heatmap PNG (default: plan.png)."),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri",
                                            help="MLflow tracking URI (for run ids)."),
    as_json: bool = typer.Option(False, "--json", help="Print links and plan as JSON."),
) -> None:
    """Align the words of a sentence pair (OT plan and mutual argmax); save the plan heatmap."""
    from xalign.data import tokenize_words
    from xalign.encoders import load_encoder
    from xalign.word_align import align_words, plot_plan

    if method not in PLAN_METHODS:
        _fail(f"--method must be one of {PLAN_METHODS}, got {method!r}")
    out = out or Path("plan.png")
    options = OTOptions(p=p, blur=blur, scaling=scaling, reach=reach, normalize=normalize)
    try:
        path = resolve_align_model(model, tracking_uri)
        encoder = load_encoder(path, layer=layer, max_length=512).eval()
        alignment = align_words(encoder, tokenize_words(src, src_lang),
                                tokenize_words(tgt, tgt_lang), src_lang, tgt_lang,
                                pooling=pooling, options=options, method=method,
                                threshold=threshold)
    except Exception as exc:
        if any(c.__name__ in _ERRORS for c in type(exc).__mro__):
            _fail(str(exc))
        raise
    plot_plan(alignment.plan, alignment.src_words, alignment.tgt_words, out,
              ot_links=alignment.ot_links, argmax_links=alignment.argmax_links,
              title=f"{short_name(model)}, layer {layer}: OT plan (□ OT, ● argmax)",
              src_label=f"source ({src_lang})", tgt_label=f"target ({tgt_lang})")
    if as_json:
        typer.echo(json.dumps({"model": path, "layer": layer, "out": str(out),
                               **alignment.to_dict()}, ensure_ascii=False))
    else:
        typer.echo(format_links(alignment))
        err.print(f"plan heatmap: {out}", highlight=False)
