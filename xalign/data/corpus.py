"""Read parallel sentences (X -> en) from any supported source through one interface.

A corpus spec is a string; ``{src}``/``{tgt}`` are replaced by the language codes:

- ``demo`` - the demo corpus shipped in the package (bg de el es fr -> en)
- ``path/train.{src}-{tgt}.{lang}`` - two line-aligned files (``{lang}`` -> src, tgt), plain or .gz
- ``path/{src}-{tgt}.tsv[.gz]`` - ``source<TAB>target`` per line
- ``path/{src}-{tgt}.txt[.gz]`` (any other name) - ``source ||| target`` per line
- ``path/{src}-{tgt}.parquet|.json|.jsonl`` - local files read with HF ``datasets``
- ``hf:DATASET_ID[:CONFIG][@SPLIT]`` - a hub dataset with a ``translation`` column
  (``{src: ..., tgt: ...}``) or ``src``/``tgt`` columns,
  e.g. ``hf:Helsinki-NLP/europarl:{src}-{tgt}``
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from importlib import resources
from itertools import zip_longest
from pathlib import Path

DEMO_LANGUAGES = ("bg", "de", "el", "es", "fr")


class CorpusError(ValueError):
    """Bad parallel input; the message names the file and line."""


def read_parallel(spec: str, src: str, tgt: str, *, limit: int | None = None
                  ) -> list[tuple[str, str]]:
    """Read ``(source sentence, target sentence)`` pairs for one language pair."""
    spec = spec.replace("{src}", src).replace("{tgt}", tgt)
    if spec == "demo":
        pairs = _read_demo(src, tgt)
    elif spec.startswith("hf:"):
        pairs = list(_read_hf(spec[3:], src, tgt))
    elif "{lang}" in spec:
        pairs = list(_read_two_files(Path(spec.replace("{lang}", src)),
                                     Path(spec.replace("{lang}", tgt))))
    else:
        path = Path(spec)
        suffixes = [s for s in path.suffixes if s != ".gz"]
        kind = suffixes[-1] if suffixes else ""
        if kind in (".parquet", ".json", ".jsonl"):
            pairs = list(_read_local_dataset(path, kind, src, tgt))
        elif kind == ".tsv":
            pairs = list(_read_separated(path, "\t"))
        else:
            pairs = list(_read_separated(path, "|||"))
    if not pairs:
        raise CorpusError(f"{spec}: no sentence pairs for {src}-{tgt}")
    return pairs[:limit] if limit else pairs


def _open_text(path: Path):
    if not path.exists():
        raise CorpusError(f"{path}: file not found")
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8-sig")
    return path.open(encoding="utf-8-sig")


def _read_demo(src: str, tgt: str) -> list[tuple[str, str]]:
    if tgt != "en" or src not in DEMO_LANGUAGES:
        raise CorpusError(f"the demo corpus has {', '.join(DEMO_LANGUAGES)} -> en, not {src}-{tgt}")
    ref = resources.files("xalign") / "data" / "demo" / f"{src}-en.tsv"
    with resources.as_file(ref) as path:
        return list(_read_separated(Path(path), "\t"))


def _read_separated(path: Path, sep: str) -> Iterator[tuple[str, str]]:
    with _open_text(path) as handle:
        for lineno, line in enumerate(handle, 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            parts = line.split(sep)
            if len(parts) != 2:
                raise CorpusError(
                    f"{path}:{lineno}: expected 'source{sep!s}target' (2 fields), got {len(parts)}"
                )
            yield parts[0].strip(), parts[1].strip()


def _read_two_files(src_path: Path, tgt_path: Path) -> Iterator[tuple[str, str]]:
    with _open_text(src_path) as fs, _open_text(tgt_path) as ft:
        for lineno, (s, t) in enumerate(zip_longest(fs, ft), 1):
            if s is None or t is None:
                longer = src_path if t is None else tgt_path
                raise CorpusError(f"{longer}:{lineno}: files are not line-aligned "
                                  f"({src_path} and {tgt_path} differ in length)")
            yield s.strip(), t.strip()


def _rows_to_pairs(rows, where: str, src: str, tgt: str) -> Iterator[tuple[str, str]]:
    for i, row in enumerate(rows):
        if "translation" in row:
            tr = row["translation"]
            if src not in tr or tgt not in tr:
                raise CorpusError(f"{where}: row {i}: translation has {sorted(tr)}, "
                                  f"needs {src!r} and {tgt!r}")
            yield tr[src], tr[tgt]
        elif src in row and tgt in row:
            yield row[src], row[tgt]
        else:
            raise CorpusError(f"{where}: row {i}: no 'translation' column and no "
                              f"{src!r}/{tgt!r} columns (has {sorted(row)})")


def _read_local_dataset(path: Path, kind: str, src: str, tgt: str) -> Iterator[tuple[str, str]]:
    import datasets

    if not path.exists():
        raise CorpusError(f"{path}: file not found")
    builder = "parquet" if kind == ".parquet" else "json"
    ds = datasets.load_dataset(builder, data_files=str(path), split="train")
    yield from _rows_to_pairs(ds, str(path), src, tgt)


def _read_hf(ref: str, src: str, tgt: str) -> Iterator[tuple[str, str]]:
    import datasets

    split = "train"
    if "@" in ref:
        ref, split = ref.rsplit("@", 1)
    name, _, config = ref.partition(":")
    try:
        ds = datasets.load_dataset(name, config or None, split=split)
    except Exception as exc:
        raise CorpusError(
            f"hf:{ref}: could not load the dataset ({type(exc).__name__}: {exc}). Offline? Save "
            f"it elsewhere with `datasets` (ds.to_parquet('{src}-{tgt}.parquet')) and use the "
            f"local path as the corpus spec."
        ) from exc
    yield from _rows_to_pairs(ds, f"hf:{ref}", src, tgt)
