"""``xalign align``: word alignments of one sentence pair and a heatmap of the OT plan.

Registered on the app in :mod:`xalign.cli`. The extraction options are built from the fields
of the ``align`` task's :class:`xalign.ExtractConfig` (same names, defaults and help), and so
are the links: the
command prints exactly what the task scores for the pair. The model may be a run's model dir
(or the run's output dir), a hub id or local dir, ``packaged:NAME``, ``base`` or an MLflow
training run id (its ``xalign.model_dir`` tag).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from xalign.alignment.extract import (
    ExtractConfig,
    ExtractError,
    SentenceAlignment,
    display_word,
)
from xalign.cli.common import check_model_ref, dataclass_options, err, user_errors
from xalign.errors import ConfigError
from xalign.progress import fail

#: Where the heatmap goes without ``--out``: a new file in the system's temporary folder
#: (``$TMPDIR``), never the working directory; its path is printed.
DEFAULT_OUT_PREFIX = "xalign-plan-"


def default_out() -> Path:
    """A new ``xalign-plan-XXXX.png`` in the temporary folder (one per call: no clobbering)."""
    import os
    import tempfile

    fd, name = tempfile.mkstemp(prefix=DEFAULT_OUT_PREFIX, suffix=".png")
    os.close(fd)
    return Path(name)


def require_src_lang(src_lang: str | None) -> str:
    """``--src-lang`` as given; missing, an error: the source sentence is tokenised by the
    rules of its language (Moses: non-breaking prefixes, apostrophes), and a language guessed
    from one short sentence is too often wrong to be used silently."""
    if src_lang is None or not src_lang.strip():
        raise ConfigError(
            "--src-lang is required: the source sentence is tokenised by its language's rules "
            "(e.g. --src-lang de for German; --tgt-lang defaults to en)"
        )
    return src_lang.strip()


_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def resolve_align_model(ref: str, tracking_uri: str | None = None) -> str:
    """Model path or name for ``ref``; a run output dir means its ``model`` subfolder."""
    from xalign.evaluation.runs import resolve_model

    local = Path(ref).expanduser()
    if (local / "model" / "config.json").exists() and not (local / "config.json").exists():
        ref = str(local / "model")
    if not local.exists() and _RUN_ID.match(ref):  # a run id: say so if the store is down
        from xalign.tracking import check_tracking

        check_tracking(tracking_uri)
    return resolve_model(ref, tracking_uri=tracking_uri)[0]


def short_name(ref: str) -> str:
    """A model reference short enough for a plot title (last two path parts)."""
    parts = Path(ref).parts
    return "/".join(parts[-2:]) if len(parts) > 1 else ref


def _section(alignment: SentenceAlignment, links: set, header: str) -> list[str]:
    return [header] + [f"{display_word(s)} - {display_word(t)}" for s, t in alignment.pairs(links)]


def format_links(alignment: SentenceAlignment) -> str:
    """``src - tgt`` lines: first the ``--method`` links (scored by the align task), then the
    mutual argmax and OT-plan links (those not already shown) for comparison."""
    c, r = alignment.config, alignment.result
    headers = {
        "argmax": "# mutual argmax (cosine)",
        "ot": f"# OT plan (threshold {c.threshold:g})",
        "softmax": f"# softmax, awesome-align (threshold {c.softmax_threshold:g})",
        "itermax": f"# itermax, SimAlign ({c.itermax_rounds} rounds)",
    }
    scored = f" [--method {c.method}: the links the align task scores]"
    lines = _section(alignment, r.links, headers[c.method] + scored)
    for other, links in (("argmax", r.argmax_links), ("ot", r.ot_links)):
        if other != c.method:
            lines += _section(alignment, links or set(), headers[other])
    return "\n".join(lines)


def unaligned_notes(alignment: SentenceAlignment, limit: int) -> list[str]:
    """One line per side and kind of word left without a vector (stderr notes/warnings)."""
    notes = []
    sides = (
        ("source", alignment.src_words, alignment.src_no_subwords, alignment.src_truncated),
        ("target", alignment.tgt_words, alignment.tgt_no_subwords, alignment.tgt_truncated),
    )
    for side, words, empty, cut in sides:
        if cut:
            notes.append(
                f"warning: {side}: {len(cut)} of {len(words)} words are past the "
                f"model's {limit}-subword limit and are left unaligned (truncated, "
                f"from word {cut[0]} '{display_word(words[cut[0]])}')"
            )
        if empty:
            shown = ", ".join(f"{k} '{display_word(words[k])}'" for k in empty[:5])
            more = f" and {len(empty) - 5} more" if len(empty) > 5 else ""
            notes.append(
                f"note: {side}: {len(empty)} word(s) with no subwords are left "
                f"unaligned: {shown}{more}"
            )
    return notes


@dataclass_options(ExtractConfig)
def align_command(
    src: str = typer.Argument(..., help="Source sentence (Moses-tokenised for --src-lang)."),
    tgt: str = typer.Argument(..., help="Target sentence (Moses-tokenised for --tgt-lang)."),
    model: str = typer.Option(
        "packaged:multilingual-e5-small",
        "--model",
        "-m",
        help="Model dir, run output dir, hub id, packaged:NAME, base or MLflow training run id.",
    ),
    src_lang: str | None = typer.Option(
        None, "--src-lang", help="Source language code (required: it picks the tokeniser)."
    ),
    tgt_lang: str = typer.Option("en", "--tgt-lang", help="Target language code."),
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        help="Heatmap PNG (default: a new xalign-plan-*.png in the temporary folder; with "
        "--json only when given).",
    ),
    no_plot: bool = typer.Option(False, "--no-plot", help="Draw no heatmap."),
    tracking_uri: str | None = typer.Option(
        None, "--tracking-uri", help="MLflow tracking URI (for run ids)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print links and plan as JSON."),
    unescape: bool = typer.Option(
        True, "--unescape/--no-unescape", help='Undo Moses XML escaping (&quot; -> ") first.'
    ),
    options: dict[str, Any] | None = None,
) -> None:
    """Align the words of a sentence pair (--method, mutual argmax and OT plan); save the plan
    heatmap."""
    from xalign.alignment.extract import align_sentences
    from xalign.alignment.plot import plot_alignment
    from xalign.data.text import normalize_text, tokenize_words
    from xalign.encoders import load_encoder

    try:
        config = ExtractConfig(**(options or {}))
    except ExtractError as exc:
        fail(f"--{(exc.option or 'option').replace('_', '-')}: {exc}")
    layer, max_length = config.layer, config.max_length
    draw = not no_plot and not (as_json and out is None)
    with user_errors():  # user-facing errors only; anything else is a bug
        check_model_ref(model)
        src_lang = require_src_lang(src_lang)
        path = resolve_align_model(model, tracking_uri)
        encoder = load_encoder(path, layer=layer, max_length=max_length, setting="--model").eval()
        alignment = align_sentences(
            encoder,
            tokenize_words(normalize_text(src, unescape=unescape)[0], src_lang),
            tokenize_words(normalize_text(tgt, unescape=unescape)[0], tgt_lang),
            src_lang,
            tgt_lang,
            config,
        )
    plot_to = (out or default_out()) if draw else None
    for note in unaligned_notes(alignment, encoder.max_length):
        err.print(escape(note), highlight=False, soft_wrap=True)
    if plot_to is not None:
        plot_alignment(
            alignment,
            plot_to,
            title=f"{short_name(model)}, layer {layer}: OT plan (□ OT, ● argmax)",
            src_label=f"source ({src_lang})",
            tgt_label=f"target ({tgt_lang})",
        )
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "model": path,
                    "layer": layer,
                    "options": vars(config),
                    "max_length": encoder.max_length,
                    "out": None if plot_to is None else str(plot_to),
                    **alignment.to_dict(),
                },
                ensure_ascii=False,
            )
        )
    else:
        typer.echo(format_links(alignment))
        if plot_to is not None:
            err.print(f"plan heatmap: {escape(str(plot_to))}", highlight=False, soft_wrap=True)
