"""Read parallel sentences (X -> en) from any supported source through one interface.

A corpus spec is a string; ``{src}``/``{tgt}`` are replaced by the language codes:

- ``demo`` - the demo corpus shipped in the package (bg de el es fr -> en)
- ``path/train.{src}-{tgt}.{lang}`` - two line-aligned files (``{lang}`` -> src, tgt), plain or .gz
- ``path/{src}-{tgt}.tsv[.gz]`` - ``source<TAB>target`` per line
- ``path/{src}-{tgt}.txt[.gz]`` (any other name) - ``source ||| target`` per line
- ``path/{src}-{tgt}.jsonl|.json|.parquet[.gz]`` - rows with a ``translation`` column
  (``{src: ..., tgt: ...}``) or ``src``/``tgt`` columns, e.g. saved with HF ``datasets``
- ``hf:DATASET_ID[:CONFIG][@SPLIT]`` - a hub dataset with such columns,
  e.g. ``hf:Helsinki-NLP/europarl:{src}-{tgt}``

``data.corpus`` is one spec for every language, or a mapping from each source language to its
own spec - a string as above, or ``{src: FILE, tgt: FILE}`` for two line-aligned files whose
names are not language codes (FLORES ``deu_Latn.devtest``/``eng_Latn.devtest``, OPUS
``de-en.de``/``de-en.en``); see :func:`language_spec`.

Reader policy: every input line or row becomes exactly one :class:`RawPair` that says where it
came from (``path:line``, lines from 1; ``path:row i``, rows from 0 as in ``datasets``). Lines
are split on ``\\n`` only (a ``\\r\\n`` ending loses its ``\\r``; a ``\\r`` inside a line stays
in the text), each line is decoded as strict UTF-8 on its own, a UTF-8 BOM is removed at the
start of a file only, and a blank line is a pair of empty sentences (the length filter counts
it) - nothing is dropped or merged silently. Anything unreadable raises :class:`CorpusError`
naming the file and line or row. Sentences are returned as read, minus surrounding whitespace;
NFC and Moses unescaping are :func:`xalign.data.text.normalize_text`'s job.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import zlib
from collections.abc import Iterator, Mapping
from importlib import resources
from itertools import zip_longest
from pathlib import Path
from typing import IO, Any, NamedTuple

from xalign.errors import XalignError

DEMO_LANGUAGES = ("bg", "de", "el", "es", "fr")

_BOM = b"\xef\xbb\xbf"
_SURROGATE = re.compile("[\ud800-\udfff]")


class CorpusError(XalignError, ValueError):
    """Bad parallel input; the message names the file and line (or row)."""


class RawPair(NamedTuple):
    """One sentence pair as read: source text, target text and ``"<path>:<line>"`` of origin.

    ``where`` is the source file and 1-based line for line formats (two files: the source
    file's line), ``"<path or hf:ref>:row <i>"`` (0-based) for JSON arrays, parquet and hub
    datasets. Either side may be empty (a blank line).
    """

    src: str
    tgt: str
    where: str


#: One language pair's spec: a spec string or two line-aligned files ``{"src": .., "tgt": ..}``.
PairSpec = str | Mapping[str, str]


def language_spec(corpus: Any, src: str, *, key: str = "data.corpus") -> PairSpec:
    """The spec of source language ``src`` in ``data.corpus`` (``corpus`` itself when it is one
    spec for every language, ``corpus[src]`` when it maps languages to specs).

    Raises:
        CorpusError: ``corpus`` is neither a string nor a mapping, maps no spec for ``src``
            (the message lists the languages it has), or the entry is not a spec string or a
            ``{src: FILE, tgt: FILE}`` mapping. The message names ``key``.
    """
    if isinstance(corpus, str):
        spec: Any = corpus
        where = key
    elif isinstance(corpus, Mapping):
        if src not in corpus:
            have = ", ".join(sorted(map(str, corpus))) or "none"
            raise CorpusError(
                f"{key}: no corpus for source language {src!r} (the mapping has: {have}); "
                "give one spec for every language, or one entry per language in data.languages"
            )
        spec = corpus[src]
        where = f"{key}.{src}"
    else:
        raise CorpusError(
            f"{key}: must be a corpus spec string or a mapping language -> spec, "
            f"got {_describe(corpus)}"
        )
    if isinstance(spec, str) and spec.strip():
        return spec
    if isinstance(spec, Mapping):
        if set(spec) != {"src", "tgt"} or not all(
            isinstance(v, str) and v.strip() for v in spec.values()
        ):
            raise CorpusError(
                f"{where}: a two-file entry needs exactly the keys 'src' and 'tgt', each a "
                f"file path, got {dict(spec)!r}"
            )
        return {"src": spec["src"], "tgt": spec["tgt"]}
    raise CorpusError(
        f"{where}: must be a corpus spec string or {{src: FILE, tgt: FILE}}, got {_describe(spec)}"
    )


def spec_files(spec: PairSpec, src: str, tgt: str) -> list[Path] | None:
    """The local files a spec reads: ``[source, target]`` for two line-aligned files, one
    file for the one-file formats, None for ``demo`` and ``hf:`` specs."""
    if isinstance(spec, Mapping):
        return [Path(spec["src"]), Path(spec["tgt"])]
    spec = spec.replace("{src}", src).replace("{tgt}", tgt)
    if spec == "demo" or spec.startswith("hf:"):
        return None
    if "{lang}" in spec:
        return [Path(spec.replace("{lang}", src)), Path(spec.replace("{lang}", tgt))]
    return [Path(spec)]


def read_parallel(spec: PairSpec, src: str, tgt: str, *, limit: int | None = None) -> list[RawPair]:
    """Read the sentence pairs of one language pair, in file order, one per line or row.

    ``spec`` is one spec string (``{src}``/``{tgt}``/``{lang}`` filled in from the codes) or
    ``{"src": FILE, "tgt": FILE}``: two line-aligned files named as they are (no templating).

    ``limit`` (if truthy) keeps the first ``limit`` pairs; files are still read to the end so
    that an unreadable line or two files of different lengths are reported.

    Raises:
        CorpusError: missing file or directory, invalid UTF-8, corrupt or truncated gzip, a
            line without exactly two fields, line-based files of different lengths, malformed
            JSON, a null/non-string/missing column, an unreadable parquet file, a hub dataset
            that cannot be loaded, or no pairs at all. The message starts with the place.
    """
    if isinstance(spec, Mapping):
        src_path, tgt_path = Path(spec["src"]), Path(spec["tgt"])
        pairs = list(_read_two_files(src_path, tgt_path))
        if not pairs:
            raise CorpusError(f"{src_path} and {tgt_path}: no sentence pairs (the files are empty)")
        return pairs[:limit] if limit else pairs
    spec = spec.replace("{src}", src).replace("{tgt}", tgt)
    if spec == "demo":
        pairs = _read_demo(src, tgt)
        label = spec
    elif spec.startswith("hf:"):
        pairs = list(_read_hf(spec, src, tgt, limit))
        label = spec
    elif "{lang}" in spec:
        src_path, tgt_path = Path(spec.replace("{lang}", src)), Path(spec.replace("{lang}", tgt))
        pairs = list(_read_two_files(src_path, tgt_path))
        label = f"{src_path} and {tgt_path}"
    else:
        path = Path(spec)
        label = str(path)
        kind = _kind(path)
        if kind == ".parquet":
            pairs = list(_read_parquet(path, src, tgt))
        elif kind == ".jsonl":
            pairs = list(_read_jsonl(path, src, tgt))
        elif kind == ".json":
            pairs = list(_read_json(path, src, tgt))
        elif kind == ".tsv":
            pairs = list(_read_separated(path, "\t"))
        else:
            pairs = list(_read_separated(path, "|||"))
    if not pairs:
        raise CorpusError(f"{label}: no sentence pairs for {src}-{tgt} (the input is empty)")
    return pairs[:limit] if limit else pairs


def _kind(path: Path) -> str:
    """The format suffix, ignoring a final ``.gz``: ``a.de-en.tsv.gz`` -> ``.tsv``."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    return suffixes[-1] if suffixes else ""


def _check_file(path: Path) -> None:
    if path.is_dir():
        raise CorpusError(f"{path}: is a directory, expected a corpus file")
    if not path.exists():
        raise CorpusError(f"{path}: file not found")


def _open_binary(path: Path) -> IO[bytes]:
    """The file's bytes, decompressed on the fly when the name ends in ``.gz``."""
    _check_file(path)
    try:
        if path.suffix.lower() == ".gz":
            return gzip.open(path, "rb")
        return path.open("rb")
    except OSError as exc:
        raise CorpusError(f"{path}: cannot open ({exc.strerror or exc})") from exc


def _read_error(path: Path, lineno: int, exc: BaseException) -> CorpusError:
    """A CorpusError for a failure while reading (gzip damage, I/O error) near ``lineno``."""
    if path.suffix.lower() == ".gz" and isinstance(exc, (EOFError, zlib.error, gzip.BadGzipFile)):
        what = "truncated or corrupt gzip data"
    else:
        what = "read error"
    return CorpusError(f"{path}:{lineno}: {what} ({type(exc).__name__}: {exc})")


def _decode(raw: bytes, path: Path, lineno: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        hint = ""
        if lineno == 1 and raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
            hint = " - the file starts with a UTF-16 byte-order mark"
        raise CorpusError(
            f"{path}:{lineno}: invalid UTF-8 at byte {exc.start + 1} of the line "
            f"({raw[exc.start : exc.start + 4]!r}: {exc.reason}){hint}; re-encode the file as UTF-8"
        ) from None


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number from 1, text)`` per line: split on ``\\n`` only, ``\\r\\n`` -> line,
    strict UTF-8 per line, BOM removed on line 1 only. A final newline adds no empty line."""
    lineno = 0
    with _open_binary(path) as handle:
        while True:
            try:
                raw = handle.readline()  # binary readline splits on b"\n" only
            except (OSError, EOFError, zlib.error) as exc:
                raise _read_error(path, lineno + 1, exc) from exc
            if not raw:
                return
            lineno += 1
            if raw.endswith(b"\n"):
                raw = raw[:-1]
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            if lineno == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM) :]
            yield lineno, _decode(raw, path, lineno)


def _read_bytes(path: Path) -> bytes:
    with _open_binary(path) as handle:
        try:
            return handle.read()
        except (OSError, EOFError, zlib.error) as exc:
            raise _read_error(path, 1, exc) from exc


def _read_demo(src: str, tgt: str) -> list[RawPair]:
    if tgt != "en" or src not in DEMO_LANGUAGES:
        raise CorpusError(f"the demo corpus has {', '.join(DEMO_LANGUAGES)} -> en, not {src}-{tgt}")
    ref = resources.files("xalign") / "data" / "demo" / f"{src}-en.tsv"
    with resources.as_file(ref) as path:
        return list(_read_separated(Path(path), "\t"))


def _read_separated(path: Path, sep: str) -> Iterator[RawPair]:
    shown = "source<TAB>target" if sep == "\t" else f"source {sep} target"
    for lineno, line in _lines(path):
        where = f"{path}:{lineno}"
        if not line.strip():
            yield RawPair("", "", where)
            continue
        parts = line.split(sep)
        if len(parts) != 2:
            raise CorpusError(f"{where}: expected '{shown}' (2 fields), got {len(parts)}")
        yield RawPair(parts[0].strip(), parts[1].strip(), where)


def _read_two_files(src_path: Path, tgt_path: Path) -> Iterator[RawPair]:
    for s, t in zip_longest(_lines(src_path), _lines(tgt_path)):
        if s is None or t is None:
            longer, shorter, (lineno, _) = (
                (tgt_path, src_path, t) if s is None else (src_path, tgt_path, s)
            )
            raise CorpusError(
                f"{longer}:{lineno}: files are not line-aligned ({shorter} ends "
                f"after line {lineno - 1}, {longer} goes on)"
            )
        yield RawPair(s[1].strip(), t[1].strip(), f"{src_path}:{s[0]}")


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    names = {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
    }
    return names.get(type(value), f"a {type(value).__name__}")


def _columns(keys: Any) -> str:
    keys = [str(k) for k in keys]
    shown = ", ".join(repr(k) for k in keys[:10])
    return f"[{shown}{', ...' if len(keys) > 10 else ''}]"


def _row_pair(row: Any, src: str, tgt: str, where: str) -> RawPair:
    """One row (a mapping) -> RawPair, from ``translation[src|tgt]`` or ``src``/``tgt``."""
    if not isinstance(row, dict):
        raise CorpusError(
            f"{where}: expected an object with a 'translation' field or "
            f"{src!r} and {tgt!r} fields, got {_describe(row)}"
        )
    if "translation" in row:
        table, prefix = row["translation"], "translation."
        if not isinstance(table, dict):
            raise CorpusError(
                f"{where}: 'translation' is {_describe(table)}, expected an "
                f"object with {src!r} and {tgt!r}"
            )
        if src not in table or tgt not in table:
            raise CorpusError(
                f"{where}: 'translation' has {_columns(table)}, needs {src!r} and {tgt!r}"
            )
    elif src in row and tgt in row:
        table, prefix = row, ""
    else:
        raise CorpusError(
            f"{where}: no 'translation' column and no {src!r}/{tgt!r} columns (has {_columns(row)})"
        )
    texts = []
    for lang in (src, tgt):
        value = table[lang]
        if not isinstance(value, str):
            raise CorpusError(f"{where}: '{prefix}{lang}' is {_describe(value)}, expected a string")
        bad = _SURROGATE.search(value)
        if bad:
            raise CorpusError(
                f"{where}: '{prefix}{lang}' contains the unpaired surrogate "
                f"U+{ord(bad.group()):04X}, which is not text"
            )
        texts.append(value.strip())
    return RawPair(texts[0], texts[1], where)


def _json_value(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CorpusError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    except (ValueError, RecursionError) as exc:  # e.g. a 5000-digit number, deep nesting
        raise CorpusError(f"{where}: not valid JSON ({type(exc).__name__}: {exc})") from None


def _read_jsonl(path: Path, src: str, tgt: str) -> Iterator[RawPair]:
    """JSON Lines: one object per line; a blank line is an empty pair."""
    for lineno, line in _lines(path):
        where = f"{path}:{lineno}"
        if not line.strip():
            yield RawPair("", "", where)
            continue
        yield _row_pair(_json_value(line, where), src, tgt, where)


def _read_json(path: Path, src: str, tgt: str) -> Iterator[RawPair]:
    """A JSON array of rows, an object of equal-length columns, one row object, or JSON Lines
    (what ``Dataset.to_json`` writes by default)."""
    text = "\n".join(line for _, line in _lines(path))  # line numbers stay those of the file
    if not text.strip():
        return  # an empty file: no pairs (read_parallel says so)
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg != "Extra data":
            raise CorpusError(
                f"{path}:{exc.lineno}: not valid JSON ({exc.msg} at column {exc.colno})"
            ) from None
        yield from _json_lines(text, path, src, tgt)
        return
    except (ValueError, RecursionError) as exc:
        raise CorpusError(f"{path}: not valid JSON ({type(exc).__name__}: {exc})") from None
    if isinstance(document, list):
        rows = document
    elif (
        isinstance(document, dict)
        and document
        and all(isinstance(v, list) for v in document.values())
    ):
        lengths = {k: len(v) for k, v in document.items()}
        if len(set(lengths.values())) != 1:
            raise CorpusError(f"{path}: columns have different lengths {lengths}")
        columns = list(document.values())
        rows = [dict(zip(document, values, strict=True)) for values in zip(*columns, strict=True)]
    elif isinstance(document, dict):
        rows = [document]
    else:
        raise CorpusError(
            f"{path}: expected a JSON array of rows (or JSON Lines), got {_describe(document)}"
        )
    for i, row in enumerate(rows):
        yield _row_pair(row, src, tgt, f"{path}:row {i}")


def _json_lines(text: str, path: Path, src: str, tgt: str) -> Iterator[RawPair]:
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for lineno, line in enumerate(lines, 1):
        where = f"{path}:{lineno}"
        line = line.removesuffix("\r")
        if not line.strip():
            yield RawPair("", "", where)
            continue
        yield _row_pair(_json_value(line, where), src, tgt, where)


def _read_parquet(path: Path, src: str, tgt: str) -> Iterator[RawPair]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    source: Any = path
    if path.suffix.lower() == ".gz":
        source = io.BytesIO(_read_bytes(path))
    else:
        _check_file(path)
    row = 0
    try:
        parquet = pq.ParquetFile(source if isinstance(source, io.BytesIO) else str(source))
        names = parquet.schema_arrow.names
        if "translation" in names:
            columns = ["translation"]
        elif src in names and tgt in names:
            columns = [src, tgt]
        else:
            raise CorpusError(
                f"{path}: no 'translation' column and no {src!r}/{tgt!r} columns "
                f"(has {_columns(names)})"
            )
        for batch in parquet.iter_batches(batch_size=4096, columns=columns):
            for record in batch.to_pylist():
                yield _row_pair(record, src, tgt, f"{path}:row {row}")
                row += 1
    except CorpusError:
        raise
    except (
        pa.ArrowException,
        OSError,
        ValueError,
        EOFError,
        KeyError,
        IndexError,
        TypeError,
    ) as exc:
        raise CorpusError(
            f"{path}:row {row}: not a readable parquet file ({type(exc).__name__}: {exc})"
        ) from exc


def _read_hf(spec: str, src: str, tgt: str, limit: int | None) -> Iterator[RawPair]:
    import datasets

    ref, split = spec[3:], "train"
    if "@" in ref:
        ref, split = ref.rsplit("@", 1)
    name, _, config = ref.partition(":")
    try:
        ds = datasets.load_dataset(name, config or None, split=split)
    except Exception as exc:  # the hub, the cache and the builders raise anything
        raise CorpusError(
            f"{spec}: could not load the dataset ({type(exc).__name__}: {exc}). Offline? Save "
            f"it elsewhere with `datasets` (ds.to_parquet('{src}-{tgt}.parquet')) and use the "
            f"local path as the corpus spec."
        ) from exc
    names = ds.column_names
    if "translation" in names:
        ds = ds.select_columns(["translation"])
    elif src in names and tgt in names:
        ds = ds.select_columns([src, tgt])
    else:
        raise CorpusError(
            f"{spec}: no 'translation' column and no {src!r}/{tgt!r} columns "
            f"(has {_columns(names)})"
        )
    if limit:
        ds = ds.select(range(min(limit, len(ds))))
    for i, record in enumerate(ds):
        yield _row_pair(record, src, tgt, f"{spec}:row {i}")
