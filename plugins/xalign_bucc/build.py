"""Build a BUCC-format mining set from line-aligned parallel files (e.g. FLORES-200).

BUCC 2018's corpora are not redistributable; any two line-aligned files make a set in the same
layout, which the ``bucc`` task reads like the official one::

    python -m xalign_bucc.build SRC_FILE EN_FILE --lang de --out DATA_DIR \\
        [--gold 250] [--src-only 100] [--en-only 150] [--seed 0]

writes ``DATA_DIR/bucc2018/de-en.{dev,test}.{de,en,gold}``. Per split, ``gold`` lines give both
sides (the parallel pairs to find), ``src-only`` lines only the xx sentence and ``en-only``
lines only the English one (sentences with no translation in the other pool, as in BUCC's
comparable corpora); dev and test use disjoint lines. Ids are assigned in shuffled order
(``de-000001``, ``en-000001``, ...), so file order says nothing about the pairs. Then::

    xalign eval MODEL --task bucc --data-dir DATA_DIR --option bucc.languages=[de]

(add ``--option bucc.split=dev --option bucc.threshold=oracle`` to score the dev split with
its F1-optimal threshold, an oracle; or a number for ``threshold``).
With FLORES devtest (1012 lines) the defaults use 2 × 500 lines; a set made this way is much
easier than BUCC (every English sentence is a fluent translation or an unrelated FLORES
sentence), so its F1 is for comparing models, not for XTREME's table.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from xalign import XalignError, primary_language, read_gold_lines

SPLITS = ("dev", "test")


def write_bucc_set(
    src_lines: list[str],
    en_lines: list[str],
    out: str | Path,
    lang: str,
    *,
    n_gold: int,
    n_src_only: int,
    n_en_only: int,
    seed: int = 0,
) -> Path:
    """Write ``out/bucc2018/{lang}-en.{dev,test}.{lang,en,gold}`` from line-aligned
    ``src_lines``/``en_lines`` (see the module docstring); returns ``out``.

    ``lang`` is written as its primary language subtag (``de-DE`` -> ``de``), the name the
    ``bucc`` task looks for.

    Raises:
        ValueError: the files differ in length, a count is negative, ``n_gold`` is 0, or
            the two splits need more lines than the files have, or a line they use is
            empty (blank); ``LanguageCodeError`` (a
            ``ValueError``) for a ``lang`` that is not a language code.
    """
    # the task reads files by the primary language (de-DE -> de-en.dev.de): write those names
    lang = primary_language(lang, where="bucc set: --lang")
    if len(src_lines) != len(en_lines):
        raise ValueError(
            f"bucc set: the files are not line-aligned ({len(src_lines)} vs {len(en_lines)} lines)"
        )
    if n_gold < 1 or n_src_only < 0 or n_en_only < 0:
        raise ValueError("bucc set: need gold >= 1, src-only >= 0 and en-only >= 0")
    size = n_gold + n_src_only + n_en_only
    if len(SPLITS) * size > len(src_lines):
        raise ValueError(
            f"bucc set: dev and test need {len(SPLITS)} x {size} lines, the files have "
            f"{len(src_lines)}"
        )
    for side, lines in (("source", src_lines), ("English", en_lines)):
        blank = next((n for n in range(len(SPLITS) * size) if not lines[n].strip()), None)
        if blank is not None:  # an empty sentence: no text to mine, or a trivial pair of two
            raise ValueError(
                f"bucc set: line {blank + 1} of the {side} file is empty; remove empty lines "
                "(from both files, to keep them aligned)"
            )
    folder = Path(out) / "bucc2018"
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    for s, split in enumerate(SPLITS):
        lines = list(range(s * size, (s + 1) * size))
        src_side = lines[: n_gold + n_src_only]
        en_side = lines[:n_gold] + lines[n_gold + n_src_only :]
        rng.shuffle(src_side)
        rng.shuffle(en_side)
        src_id = {n: f"{lang}-{k:06d}" for k, n in enumerate(src_side, start=1)}
        en_id = {n: f"en-{k:06d}" for k, n in enumerate(en_side, start=1)}
        stem = folder / f"{lang}-en.{split}"
        _write(Path(f"{stem}.{lang}"), [f"{src_id[n]}\t{src_lines[n]}" for n in src_side])
        _write(Path(f"{stem}.en"), [f"{en_id[n]}\t{en_lines[n]}" for n in en_side])
        _write(Path(f"{stem}.gold"), [f"{src_id[n]}\t{en_id[n]}" for n in lines[:n_gold]])
    return Path(out)


def _write(path: Path, lines: list[str]) -> None:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m xalign_bucc.build", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("src_file", type=Path, help="non-English side, one sentence per line")
    parser.add_argument("en_file", type=Path, help="English side, line-aligned")
    parser.add_argument("--lang", required=True, help="language code of src_file (e.g. de)")
    parser.add_argument("--out", required=True, type=Path, help="data folder to write into")
    parser.add_argument("--gold", type=int, default=250, help="parallel pairs per split")
    parser.add_argument("--src-only", type=int, default=100, help="xx-only lines per split")
    parser.add_argument("--en-only", type=int, default=150, help="English-only lines per split")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        # split on "\n" only, as the task reads the files it writes (str.splitlines would also
        # break a sentence at U+2028 or U+0085 and shift every later pair)
        read = [read_gold_lines(p) for p in (args.src_file, args.en_file)]
        out = write_bucc_set(
            *read,
            args.out,
            args.lang,
            n_gold=args.gold,
            n_src_only=args.src_only,
            n_en_only=args.en_only,
            seed=args.seed,
        )
    except (ValueError, XalignError) as exc:  # bad counts or bytes, a missing file
        parser.error(str(exc))
    lang = primary_language(args.lang)
    print(f"wrote {out / 'bucc2018'}/{lang}-en.{{dev,test}}.{{{lang},en,gold}}")


if __name__ == "__main__":
    main()
