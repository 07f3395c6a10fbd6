"""Corpus readers: one RawPair per line/row with its origin, CorpusError naming file and line/row
for every kind of bad input, and a fuzz test of every format."""

from __future__ import annotations

import gzip
import io
import json
import os
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xalign.data.corpus import CorpusError, RawPair, read_parallel
from xalign.errors import XalignError

BOM = b"\xef\xbb\xbf"


def write(path: Path, data: bytes) -> Path:
    if path.suffix == ".gz":
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def texts(pairs: list[RawPair]) -> list[tuple[str, str]]:
    return [(p.src, p.tgt) for p in pairs]


# --- what comes back ---------------------------------------------------------------------------


def test_corpus_error_is_a_user_facing_error_and_still_a_value_error():
    assert issubclass(CorpusError, XalignError) and issubclass(CorpusError, ValueError)


@pytest.mark.parametrize(
    ("name", "line"),
    [
        ("de-en.tsv", "{s}\t{t}"),
        ("de-en.txt", "{s} ||| {t}"),
        ("de-en.tsv.gz", "{s}\t{t}"),
        ("de-en.txt.gz", "{s}|||{t}"),
        ("de-en.TSV", "{s}\t{t}"),
    ],
)
def test_separated_files_keep_every_line_with_its_number(tmp_path, name, line):
    body = "\n".join(
        [
            line.format(s="Das ist gut.", t="That is good."),
            "",
            line.format(s="  Ich bin hier. ", t=" I am here."),
        ]
    )
    path = write(tmp_path / name, (body + "\n").encode())
    assert read_parallel(str(path), "de", "en") == [
        RawPair("Das ist gut.", "That is good.", f"{path}:1"),
        RawPair("", "", f"{path}:2"),  # a blank line is an empty pair, not dropped
        RawPair("Ich bin hier.", "I am here.", f"{path}:3"),
    ]


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_two_files_name_the_source_file_and_line(tmp_path, suffix):
    src = write(tmp_path / f"c.de{suffix}", b"eins\n\ndrei\n")
    write(tmp_path / f"c.en{suffix}", b"one\ntwo\n\n")
    assert read_parallel(str(tmp_path / f"c.{{lang}}{suffix}"), "de", "en") == [
        RawPair("eins", "one", f"{src}:1"),
        RawPair("", "two", f"{src}:2"),
        RawPair("drei", "", f"{src}:3"),
    ]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"a\tb", [("a", "b")]),  # no final newline
        (b"a\tb\n", [("a", "b")]),  # a final newline adds no pair
        (b"a\tb\n\n", [("a", "b"), ("", "")]),  # ... but a blank last line does
        (b"a\tb\r\nc\td\r\n", [("a", "b"), ("c", "d")]),  # CRLF loses its CR
        (b"a\rx\tb\n", [("a\rx", "b")]),  # a stray CR does not split the line
        (b"a\tb\r", [("a", "b")]),
    ],
)
def test_lines_are_split_on_newline_only(tmp_path, data, expected):
    path = write(tmp_path / "de-en.tsv", data)
    assert texts(read_parallel(str(path), "de", "en")) == expected


@pytest.mark.parametrize(
    "separator", ["\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]
)
def test_no_other_line_break_splits_a_line(tmp_path, separator):
    """str.splitlines() breaks at all of these; the readers must not."""
    src = f"one{separator}half\ntwo\n"
    tgt = f"eins\nzwei{separator}drei\n"  # the same count of breaks: old readers paired wrongly
    (tmp_path / "x.de").write_bytes(src.encode())
    (tmp_path / "x.en").write_bytes(tgt.encode())
    pairs = read_parallel(str(tmp_path / "x.{lang}"), "de", "en")
    assert texts(pairs) == [(f"one{separator}half", "eins"), ("two", f"zwei{separator}drei")]
    tsv = write(tmp_path / "de-en.tsv", f"a{separator}b\tc\nd\te{separator}f\n".encode())
    assert texts(read_parallel(str(tsv), "de", "en")) == [
        (f"a{separator}b", "c"),
        ("d", f"e{separator}f"),
    ]


def test_bom_is_removed_at_the_start_of_a_file_only(tmp_path):
    tsv = write(tmp_path / "de-en.tsv", BOM + b"a\tb\n" + BOM + b"c\td\n")
    assert texts(read_parallel(str(tsv), "de", "en")) == [("a", "b"), ("\ufeffc", "d")]
    write(tmp_path / "x.de.gz", BOM + b"eins\n")
    write(tmp_path / "x.en.gz", BOM + b"one\n")
    assert texts(read_parallel(str(tmp_path / "x.{lang}.gz"), "de", "en")) == [("eins", "one")]
    jsonl = write(tmp_path / "de-en.jsonl", BOM + b'{"de": "a", "en": "b"}\n')
    assert texts(read_parallel(str(jsonl), "de", "en")) == [("a", "b")]
    js = write(tmp_path / "de-en.json", BOM + b'[{"de": "a", "en": "b"}]')
    assert texts(read_parallel(str(js), "de", "en")) == [("a", "b")]


def test_limit_keeps_the_first_pairs_but_still_checks_the_whole_file(tmp_path):
    path = write(tmp_path / "de-en.tsv", b"a\tb\nc\td\ne\tf\n")
    assert texts(read_parallel(str(path), "de", "en", limit=2)) == [("a", "b"), ("c", "d")]
    write(tmp_path / "de-en.tsv", b"a\tb\nc\td\n\xff\n")
    with pytest.raises(CorpusError, match=r"de-en\.tsv:3: invalid UTF-8"):
        read_parallel(str(path), "de", "en", limit=1)


# --- JSON, JSON Lines, parquet, hub ------------------------------------------------------------


def test_jsonl_rows_both_layouts_and_blank_lines(tmp_path):
    rows = [{"translation": {"de": "a", "en": "b"}}, {"de": " c ", "en": "d", "id": 3}]
    body = "\n".join([json.dumps(rows[0]), "", json.dumps(rows[1], ensure_ascii=False)]) + "\n"
    path = write(tmp_path / "de-en.jsonl.gz", body.encode())
    assert read_parallel(str(path), "de", "en") == [
        RawPair("a", "b", f"{path}:1"),
        RawPair("", "", f"{path}:2"),
        RawPair("c", "d", f"{path}:3"),
    ]


@pytest.mark.parametrize(
    "document",
    [
        [{"translation": {"de": "a", "en": "b"}}, {"translation": {"de": "c", "en": "d"}}],
        {"de": ["a", "c"], "en": ["b", "d"]},  # columns
        {"translation": [{"de": "a", "en": "b"}, {"de": "c", "en": "d"}]},
    ],
)
def test_json_documents(tmp_path, document):
    path = write(tmp_path / "de-en.json", json.dumps(document, indent=1).encode())
    assert read_parallel(str(path), "de", "en") == [
        RawPair("a", "b", f"{path}:row 0"),
        RawPair("c", "d", f"{path}:row 1"),
    ]


def test_json_file_holding_json_lines_as_datasets_writes_it(tmp_path):
    path = write(tmp_path / "de-en.json", b'{"de": "a", "en": "b"}\n{"de": "c", "en": "d"}\n')
    assert read_parallel(str(path), "de", "en") == [
        RawPair("a", "b", f"{path}:1"),
        RawPair("c", "d", f"{path}:2"),
    ]


@pytest.mark.parametrize(
    ("line2", "message"),
    [
        (
            "null",
            r":2: expected an object with a 'translation' field or 'de' and 'en' fields, got null",
        ),
        ('{"translation": ', r":2: not valid JSON \(Expecting value at column 17\)"),
        ('{"de": "a"}', r":2: no 'translation' column and no 'de'/'en' columns \(has \['de'\]\)"),
        ('{"translation": {"de": "a"}}', r":2: 'translation' has \['de'\], needs 'de' and 'en'"),
        ('{"translation": {"de": "a", "en": null}}', r":2: 'translation.en' is null"),
        ('{"de": 5, "en": "b"}', r":2: 'de' is a number, expected a string"),
        ('{"translation": ["a", "b"]}', r":2: 'translation' is a list"),
        ('{"de": "\\ud800", "en": "b"}', r":2: 'de' contains the unpaired surrogate U\+D800"),
        ("[" * 100_000, r":2: not valid JSON \(RecursionError"),
        ('{"de": 1' + "0" * 5000 + ', "en": "b"}', r":2: not valid JSON \(ValueError"),
    ],
)
@pytest.mark.parametrize("name", ["de-en.jsonl", "de-en.json"])
def test_bad_json_rows_name_the_line(tmp_path, line2, message, name):
    path = write(tmp_path / name, ('{"de": "a", "en": "b"}\n' + line2 + "\n").encode())
    with pytest.raises(CorpusError, match=re.escape(str(path)) + message):
        read_parallel(str(path), "de", "en")


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ('[{"de": "a", "en": "b"}, null]', r":row 1: expected an object"),
        ('[{"de": "a", "en": "b"},\n {"de": "a"}]', r":row 1: no 'translation' column"),
        ('[{"de": "a",\n "en": "b"},\n {"de": ]', r":3: not valid JSON \(Expecting value"),
        ('"just a string"', r": expected a JSON array of rows \(or JSON Lines\), got a string"),
        ('{"de": ["a", "b"], "en": ["c"]}', r": columns have different lengths"),
    ],
)
def test_bad_json_documents_name_the_row_or_line(tmp_path, document, message):
    path = write(tmp_path / "de-en.json", document.encode())
    with pytest.raises(CorpusError, match=re.escape(str(path)) + message):
        read_parallel(str(path), "de", "en")


def parquet_bytes(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("name", ["de-en.parquet", "de-en.parquet.gz"])
def test_parquet_both_layouts(tmp_path, name):
    table = pa.table({"translation": [{"de": "a", "en": "b"}, {"de": " c", "en": "d "}]})
    path = write(tmp_path / name, parquet_bytes(table))
    assert read_parallel(str(path), "de", "en") == [
        RawPair("a", "b", f"{path}:row 0"),
        RawPair("c", "d", f"{path}:row 1"),
    ]
    table = pa.table({"id": [1, 2], "de": ["a", "c"], "en": ["b", "d"]})
    path = write(tmp_path / name, parquet_bytes(table))
    assert texts(read_parallel(str(path), "de", "en")) == [("a", "b"), ("c", "d")]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (pa.table({"de": ["a", None], "en": ["b", "d"]}), r":row 1: 'de' is null"),
        (
            pa.table({"de": ["a", "c"], "en": [1, 2]}),
            r":row 0: 'en' is a number, expected a string",
        ),
        (
            pa.table({"fr": ["a"], "en": ["b"]}),
            r": no 'translation' column and no 'de'/'en' columns \(has \['fr', 'en'\]\)",
        ),
        (
            pa.table({"translation": [{"de": "a", "en": "b"}, {"de": "c", "en": None}]}),
            r":row 1: 'translation.en' is null",
        ),
    ],
)
def test_bad_parquet_rows_name_the_row(tmp_path, table, message):
    path = write(tmp_path / "de-en.parquet", parquet_bytes(table))
    with pytest.raises(CorpusError, match=re.escape(str(path)) + message):
        read_parallel(str(path), "de", "en")


@pytest.mark.parametrize("damage", ["text", "truncated", "empty"])
def test_unreadable_parquet_names_the_file(tmp_path, damage):
    good = parquet_bytes(pa.table({"de": ["a"] * 100, "en": ["b"] * 100}))
    data = {"text": b"de\ten\n", "truncated": good[: len(good) // 2], "empty": b""}[damage]
    path = write(tmp_path / "de-en.parquet", data)
    with pytest.raises(CorpusError, match=re.escape(str(path)) + r":row 0: not a readable parquet"):
        read_parallel(str(path), "de", "en")


def test_hub_datasets_go_through_the_same_row_checks(monkeypatch):
    datasets = pytest.importorskip("datasets")
    calls = []

    def fake_load(name, config, split):
        calls.append((name, config, split))
        return datasets.Dataset.from_dict(
            {
                "translation": [
                    {"de": "a", "en": "b"},
                    {"de": "c", "en": "d"},
                    {"de": "e", "en": "f"},
                ]
            }
        )

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    spec = "hf:org/europarl:{src}-{tgt}@train"
    assert read_parallel(spec, "de", "en", limit=2) == [
        RawPair("a", "b", "hf:org/europarl:de-en@train:row 0"),
        RawPair("c", "d", "hf:org/europarl:de-en@train:row 1"),
    ]
    assert calls == [("org/europarl", "de-en", "train")]

    monkeypatch.setattr(
        datasets,
        "load_dataset",
        lambda *a, **k: datasets.Dataset.from_dict({"de": ["a", None], "en": ["b", "c"]}),
    )
    with pytest.raises(CorpusError, match=r"^hf:x:row 1: 'de' is null"):
        read_parallel("hf:x", "de", "en")

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(CorpusError, match=r"^hf:x: could not load the dataset \(ConnectionError"):
        read_parallel("hf:x", "de", "en")


# --- bad input of every other kind ------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["de-en.tsv", "de-en.txt", "de-en.tsv.gz", "de-en.jsonl", "de-en.json"]
)
def test_invalid_utf8_names_file_line_and_byte(tmp_path, name):
    sep = "\t" if ".tsv" in name else " ||| "
    line3 = '{"de": "Stra\xdfe", "en": "street"}' if ".json" in name else f"Stra\xdfe{sep}street"
    good = '{"de": "a", "en": "b"}' if ".json" in name else f"a{sep}b"
    data = f"{good}\n{good}\n".encode() + line3.encode("latin-1") + b"\n"
    path = write(tmp_path / name, data)
    byte = line3.index("\xdf") + 1
    with pytest.raises(CorpusError, match=re.escape(f"{path}:3: invalid UTF-8 at byte {byte} ")):
        read_parallel(str(path), "de", "en")


def test_invalid_utf8_in_the_target_file_names_the_target_file(tmp_path):
    (tmp_path / "x.de").write_bytes(b"eins\nzwei\n")
    (tmp_path / "x.en").write_bytes(b"one\ntw\xe9\n")
    with pytest.raises(CorpusError, match=re.escape(f"{tmp_path / 'x.en'}:2: invalid UTF-8")):
        read_parallel(str(tmp_path / "x.{lang}"), "de", "en")


def test_utf16_file_gets_a_hint(tmp_path):
    path = tmp_path / "de-en.tsv"
    path.write_text("a\tb\n", encoding="utf-16")
    with pytest.raises(CorpusError, match=r"de-en\.tsv:1: invalid UTF-8 .*UTF-16 byte-order mark"):
        read_parallel(str(path), "de", "en")


def _gzip_lines(n: int) -> bytes:
    return gzip.compress("".join(f"Satz {i}\tsentence {i}\n" for i in range(n)).encode())


def _flip(data: bytes, start: int, n: int) -> bytes:
    flipped = bytearray(data)
    for i in range(start, start + n):
        flipped[i] ^= 0x55
    return bytes(flipped)


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        ("truncated", "truncated or corrupt gzip data (EOFError"),
        ("checksum", "truncated or corrupt gzip data (BadGzipFile: CRC check failed"),
        ("not gzip", "truncated or corrupt gzip data (BadGzipFile: Not a gzipped file"),
        ("trailing garbage", "truncated or corrupt gzip data (BadGzipFile: Not a gzipped file"),
        ("data", ""),  # the garbage may first fail as text: any error naming a line will do
    ],
)
def test_damaged_gzip_names_the_file(tmp_path, damage, problem):
    good = _gzip_lines(20_000)
    data = {
        "truncated": good[: len(good) // 2],
        "checksum": _flip(good, len(good) - 8, 1),
        "not gzip": b"Satz\tsentence\n",
        "trailing garbage": good + b"garbage!",
        "data": _flip(good, len(good) // 2, 40),
    }[damage]
    path = tmp_path / "de-en.tsv.gz"
    path.write_bytes(data)
    with pytest.raises(CorpusError, match=re.escape(str(path)) + r":\d+: " + re.escape(problem)):
        read_parallel(str(path), "de", "en")


def test_truncated_gzip_in_two_files(tmp_path):
    good = gzip.compress("".join(f"w{i}\n" for i in range(30_000)).encode())
    (tmp_path / "x.de.gz").write_bytes(good)
    (tmp_path / "x.en.gz").write_bytes(good[:-20])
    with pytest.raises(CorpusError, match=re.escape(f"{tmp_path / 'x.en.gz'}:") + r"\d+: trunc"):
        read_parallel(str(tmp_path / "x.{lang}.gz"), "de", "en")


@pytest.mark.parametrize(
    "spec", ["dir.tsv", "dir.txt", "dir.jsonl", "dir.json", "dir.parquet", "dir.tsv.gz", "{lang}"]
)
def test_a_directory_is_named(tmp_path, spec):
    for name in (
        "dir.tsv",
        "dir.txt",
        "dir.jsonl",
        "dir.json",
        "dir.parquet",
        "dir.tsv.gz",
        "de",
        "en",
    ):
        (tmp_path / name).mkdir()
    with pytest.raises(CorpusError, match=r": is a directory, expected a corpus file"):
        read_parallel(str(tmp_path / spec), "de", "en")


@pytest.mark.parametrize(
    "spec",
    [
        "nothere.tsv",
        "nothere.txt.gz",
        "nothere.jsonl",
        "nothere.json",
        "nothere.parquet",
        "nothere.{lang}",
    ],
)
def test_a_missing_file_is_named(tmp_path, spec):
    with pytest.raises(CorpusError, match=re.escape(str(tmp_path)) + r"/nothere\.\S*: file not"):
        read_parallel(str(tmp_path / spec), "de", "en")


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        (
            "de-en.tsv",
            b"a\tb\nonly one field\n",
            r":2: expected 'source<TAB>target' \(2 fields\), got 1",
        ),
        ("de-en.tsv", b"a\tb\tc\n", r":1: expected 'source<TAB>target' \(2 fields\), got 3"),
        ("de-en.txt", b"a ||| b\na ||| b ||| c\n", r":2: expected 'source \|\|\| target' .*got 3"),
        ("de-en.txt.gz", b"a ||| b\n\nno separator\n", r":3: expected 'source \|\|\| target'"),
    ],
)
def test_wrong_field_counts_name_the_line(tmp_path, name, data, message):
    path = write(tmp_path / name, data)
    with pytest.raises(CorpusError, match=re.escape(str(path)) + message):
        read_parallel(str(path), "de", "en")


@pytest.mark.parametrize(
    ("de", "en", "longer", "line"),
    [
        (b"a\nb\nc\n", b"a\nb\n", "x.de", 3),
        (b"a\n", b"a\nb\n\n", "x.en", 2),
        (b"", b"\n", "x.en", 1),
    ],
)
def test_unaligned_files_name_the_longer_file_and_line(tmp_path, de, en, longer, line):
    (tmp_path / "x.de").write_bytes(de)
    (tmp_path / "x.en").write_bytes(en)
    with pytest.raises(
        CorpusError, match=re.escape(f"{tmp_path / longer}:{line}: files are not line-aligned")
    ):
        read_parallel(str(tmp_path / "x.{lang}"), "de", "en")


@pytest.mark.parametrize("name", ["de-en.tsv", "de-en.txt.gz", "de-en.jsonl", "de-en.json"])
def test_an_empty_file_is_named(tmp_path, name):
    path = write(tmp_path / name, b"")
    with pytest.raises(CorpusError, match=re.escape(str(path)) + ": no sentence pairs for de-en"):
        read_parallel(str(path), "de", "en")


# --- fuzz: every format, arbitrary bytes -------------------------------------------------------

PIECES = [
    b"\t",
    b"|||",
    b" ||| ",
    b"\n",
    b"\n",
    b"\r\n",
    b"\r",
    BOM,
    b"\xff",
    b"\xc3",
    b"\xc3\xa9",
    b"\xe2\x80\xa8",
    b"\xc2\x85",
    b"\x0b",
    b"\x1c",
    b"\x00",
    b" ",
    b"Haus",
    "ง่าย".encode(),
    b"&amp;",
    b"\xed\xa0\x80",
    b"{",
    b"}",
    b'"de"',
    b'"en"',
    b":",
    b"null",
    b"[",
    b"]",
]
noise = st.lists(
    st.one_of(st.sampled_from(PIECES), st.binary(max_size=4), st.text(max_size=5).map(str.encode)),
    max_size=25,
).map(b"".join)
word = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\t|\n"), max_size=8
)


def _structured(sep: str):
    line = st.one_of(st.tuples(word, word).map(lambda p: p[0] + sep + p[1]), word)
    return st.tuples(
        st.lists(line, max_size=6), st.sampled_from(["\n", "\r\n"]), st.booleans(), st.booleans()
    ).map(lambda t: (BOM if t[3] else b"") + (t[1].join(t[0]) + (t[1] if t[2] else "")).encode())


def _gzip_variant(data: bytes, how: int, cut: float) -> bytes:
    packed = gzip.compress(data)
    if how == 0:
        return packed
    if how == 1:
        return packed[: int(len(packed) * cut)]
    if how == 2:
        flipped = bytearray(packed)
        flipped[int((len(packed) - 1) * cut)] ^= 0xA5
        return bytes(flipped)
    return data  # not gzip at all


def _lines_oracle(data: bytes) -> tuple[list[str] | None, int | None]:
    """(decoded lines, None) or (None, number of the first line that is not UTF-8)."""
    pieces = data.split(b"\n")
    if pieces[-1] == b"":
        pieces.pop()
    lines = []
    for n, raw in enumerate(pieces, 1):
        raw = raw.removesuffix(b"\r")
        if n == 1:
            raw = raw.removeprefix(BOM)
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            return None, n
    return lines, None


def _separated_oracle(data: bytes, sep: str, path: Path) -> list[RawPair] | str:
    """The expected pairs, or the expected start of the error message."""
    pairs = []
    pieces = data.split(b"\n")
    if pieces[-1] == b"":
        pieces.pop()
    for n, raw in enumerate(pieces, 1):
        raw = raw.removesuffix(b"\r")
        if n == 1:
            raw = raw.removeprefix(BOM)
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            return f"{path}:{n}: invalid UTF-8"
        if not line.strip():
            pairs.append(RawPair("", "", f"{path}:{n}"))
            continue
        parts = line.split(sep)
        if len(parts) != 2:
            return f"{path}:{n}: expected"
        pairs.append(RawPair(parts[0].strip(), parts[1].strip(), f"{path}:{n}"))
    return pairs or f"{path}: no sentence pairs"


def check_contract(call, paths: list[Path]):
    """Either RawPairs whose ``where`` is file:line / file:row, or a CorpusError that starts
    with one of the files (and its line or row where there is one). Nothing else."""
    try:
        pairs = call()
    except CorpusError as exc:
        message = str(exc)
        assert any(
            re.match(re.escape(str(p)) + r"(:\d+|:row \d+)?( and \S+)?: \S", message) for p in paths
        ), message
        return exc
    assert isinstance(pairs, list) and pairs
    for pair in pairs:
        assert type(pair) is RawPair and isinstance(pair.src, str) and isinstance(pair.tgt, str)
        assert re.fullmatch(re.escape(str(paths[0])) + r":(\d+|row \d+)", pair.where), pair.where
    return pairs


# XALIGN_FUZZ_EXAMPLES=5000 for a deep run
FUZZ = settings(
    max_examples=int(os.environ.get("XALIGN_FUZZ_EXAMPLES", "120")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@FUZZ
@given(
    data=st.one_of(noise, _structured("\t"), _structured(" ||| ")),
    fmt=st.sampled_from([(".tsv", "\t"), (".txt", "|||")]),
    gz=st.sampled_from([None, 0, 1, 2, 3]),
    cut=st.floats(0, 1),
)
def test_fuzz_separated_formats(fuzz_dir, data, fmt, gz, cut):
    suffix, sep = fmt
    path = fuzz_dir / f"de-en{suffix}{'' if gz is None else '.gz'}"
    path.write_bytes(data if gz is None else _gzip_variant(data, gz, cut))
    result = check_contract(lambda: read_parallel(str(path), "de", "en"), [path])
    expected = _separated_oracle(data, sep, path)
    if gz in (None, 0):  # intact input: exactly the oracle's answer
        if isinstance(expected, str):
            assert isinstance(result, CorpusError) and str(result).startswith(expected)
        else:
            assert result == expected
    elif isinstance(result, list):  # damaged gzip that still decoded: the same data came out
        assert result == expected


@FUZZ
@given(
    de=st.one_of(noise, _structured("")),
    en=st.one_of(noise, _structured("")),
    gz=st.sampled_from([None, 0, 1, 2]),
    cut=st.floats(0, 1),
)
def test_fuzz_two_files(fuzz_dir, de, en, gz, cut):
    ext = "" if gz is None else ".gz"
    src, tgt = fuzz_dir / f"two.de{ext}", fuzz_dir / f"two.en{ext}"
    src.write_bytes(de if gz is None else _gzip_variant(de, 0, cut))
    tgt.write_bytes(en if gz is None else _gzip_variant(en, gz, cut))
    result = check_contract(
        lambda: read_parallel(str(fuzz_dir / f"two.{{lang}}{ext}"), "de", "en"), [src, tgt]
    )
    if gz not in (None, 0):
        return
    s_lines, s_bad = _lines_oracle(de)
    t_lines, t_bad = _lines_oracle(en)
    if s_bad is None and t_bad is None:
        if len(s_lines) != len(t_lines):
            assert "not line-aligned" in str(result)
        elif not s_lines:
            assert "no sentence pairs" in str(result)
        else:
            assert result == [
                RawPair(s.strip(), t.strip(), f"{src}:{n}")
                for n, (s, t) in enumerate(zip(s_lines, t_lines, strict=True), 1)
            ]
    else:
        assert isinstance(result, CorpusError)


json_scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), word)
json_value = st.recursive(
    json_scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["de", "en", "translation", "x"]), inner, max_size=3),
    ),
    max_leaves=8,
)
json_row = st.one_of(
    json_value,
    st.fixed_dictionaries({"translation": st.fixed_dictionaries({"de": word, "en": word})}),
    st.fixed_dictionaries({"de": st.one_of(word, json_scalar), "en": word}),
)


def _mutate(data: bytes, how: int, cut: float, junk: bytes) -> bytes:
    at = int(len(data) * cut)
    return [data, data[:at], data[:at] + junk + data[at:]][how]


@FUZZ
@given(
    rows=st.lists(json_row, max_size=5),
    layout=st.sampled_from(["jsonl", "array", "columns"]),
    how=st.sampled_from([0, 0, 1, 2]),
    cut=st.floats(0, 1),
    junk=noise,
    name=st.sampled_from(["de-en.jsonl", "de-en.json", "de-en.jsonl.gz"]),
)
def test_fuzz_json_formats(fuzz_dir, rows, layout, how, cut, junk, name):
    if layout == "jsonl":
        data = "\n".join(json.dumps(r, ensure_ascii=False) for r in rows).encode()
    elif layout == "array":
        data = json.dumps(rows, indent=1).encode()
    else:
        data = json.dumps(
            {
                "de": [r.get("de") if isinstance(r, dict) else r for r in rows],
                "en": [str(i) for i in range(len(rows))],
            }
        ).encode()
    path = fuzz_dir / name
    write(path, _mutate(data, how, cut, junk))
    check_contract(lambda: read_parallel(str(path), "de", "en"), [path])


cell = st.one_of(st.none(), word)
parquet_table = st.one_of(
    st.lists(st.tuples(cell, cell), min_size=1, max_size=5).map(
        lambda rs: pa.table({"de": [r[0] for r in rs], "en": [r[1] for r in rs]})
    ),
    st.lists(st.tuples(word, cell), min_size=1, max_size=5).map(
        lambda rs: pa.table({"translation": [{"de": r[0], "en": r[1]} for r in rs]})
    ),
    st.lists(st.integers(-5, 5), min_size=1, max_size=5).map(
        lambda xs: pa.table({"de": xs, "en": xs})
    ),
)


@FUZZ
@given(
    table=parquet_table,
    how=st.sampled_from([0, 1, 2]),
    cut=st.floats(0, 1),
    junk=noise,
    flips=st.lists(st.tuples(st.floats(0, 1), st.integers(1, 255)), max_size=4),
    name=st.sampled_from(["de-en.parquet", "de-en.parquet.gz"]),
)
def test_fuzz_parquet(fuzz_dir, table, how, cut, junk, flips, name):
    data = bytearray(_mutate(parquet_bytes(table), how, cut, junk))
    for where, xor in flips:
        if data:
            data[int((len(data) - 1) * where)] ^= xor
    path = fuzz_dir / name
    write(path, bytes(data))
    check_contract(lambda: read_parallel(str(path), "de", "en"), [path])


# --- data.corpus: one spec, or one entry per language ------------------------------------------


def test_language_spec_one_spec_for_every_language_or_one_per_language(tmp_path: Path):
    from xalign.data.corpus import language_spec

    assert language_spec("demo", "de") == "demo"
    corpus = {"de": "x/{src}-{tgt}.tsv", "fr": {"src": "a.fr", "tgt": "a.en"}}
    assert language_spec(corpus, "de") == "x/{src}-{tgt}.tsv"
    assert language_spec(corpus, "fr") == {"src": "a.fr", "tgt": "a.en"}


@pytest.mark.parametrize(
    ("corpus", "message"),
    [
        (
            {"de": "demo", "fr": "demo"},
            "data.corpus: no corpus for source language 'el' (the mapping has: de, fr)",
        ),
        ({}, "(the mapping has: none)"),
        (["demo"], "data.corpus: must be a corpus spec string or a mapping"),
        ({"el": 3}, "data.corpus.el: must be a corpus spec string or {src: FILE, tgt: FILE}, got"),
        ({"el": "  "}, "data.corpus.el: must be a corpus spec string"),
        (
            {"el": {"src": "a"}},
            "data.corpus.el: a two-file entry needs exactly the keys 'src' and 'tgt'",
        ),
        ({"el": {"src": "a", "tgt": "b", "x": "c"}}, "exactly the keys 'src' and 'tgt'"),
        ({"el": {"src": "a", "tgt": ""}}, "exactly the keys 'src' and 'tgt', each a file path"),
    ],
)
def test_language_spec_errors_name_the_key(corpus, message):
    from xalign.data.corpus import language_spec

    with pytest.raises(CorpusError) as err:
        language_spec(corpus, "el")
    assert message in str(err.value)


def test_two_file_entry_reads_files_whose_names_are_not_language_codes(tmp_path: Path):
    src = write(tmp_path / "deu_Latn.devtest", "Ein Haus .\nZwei Häuser\n".encode())
    tgt = write(tmp_path / "eng_Latn.devtest", b"A house .\nTwo houses\n")
    pairs = read_parallel({"src": str(src), "tgt": str(tgt)}, "de", "en")
    assert texts(pairs) == [("Ein Haus .", "A house ."), ("Zwei Häuser", "Two houses")]
    assert [p.where for p in pairs] == [f"{src}:1", f"{src}:2"]
    assert texts(read_parallel({"src": str(src), "tgt": str(tgt)}, "de", "en", limit=1)) == [
        ("Ein Haus .", "A house .")
    ]


def test_two_file_entry_errors_name_the_files(tmp_path: Path):
    src = write(tmp_path / "s.txt", b"a\nb\nc\n")
    tgt = write(tmp_path / "t.txt", b"a\nb\n")
    with pytest.raises(CorpusError) as err:
        read_parallel({"src": str(src), "tgt": str(tgt)}, "de", "en")
    assert str(err.value).startswith(
        f"{src}:3: files are not line-aligned ({tgt} ends after line 2"
    )
    empty_s, empty_t = write(tmp_path / "e.s", b""), write(tmp_path / "e.t", b"")
    with pytest.raises(CorpusError, match="no sentence pairs"):
        read_parallel({"src": str(empty_s), "tgt": str(empty_t)}, "de", "en")
    with pytest.raises(CorpusError, match="missing.txt"):
        read_parallel({"src": str(tmp_path / "missing.txt"), "tgt": str(tgt)}, "de", "en")
