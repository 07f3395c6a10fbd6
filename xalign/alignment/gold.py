"""Loaders for gold word-alignment test sets, normalised to one structure.

Every set comes back 0-based with the non-English language as SOURCE and English as TARGET
(when one side is English), possible links including the sure ones, UTF-8 BOMs stripped,
every word NFC-normalised (the words are the file's whitespace tokens: gold text is never
re-tokenised), and links that point outside their sentence removed from ``sure``/``possible``
but listed in ``out_of_range`` (with a :class:`GoldAlignmentWarning`).

Formats (``format=``), with their defaults:

- ``awesome`` (awesome-align): ``X.src-tgt`` with ``first ||| second`` per line and ``X.gold``
  with ``i-j`` (sure) / ``ipj`` (possible) links, 1-based, first side first.
- ``xlwa`` (XL-WA): one TSV ``english \\t other \\t links``, 0-based, English first; blank
  lines are skipped (counted).
- ``bicici`` / ``pharaoh``: two sentence files, one sentence per line, and a links file with
  one Pharaoh line per sentence pair (``i-j``, ``ipj``/``i?j``), 0-based. ``bicici`` is the
  folder layout ``test.<x>``, ``test.<y>``, ``<x>-<y>.wa``.
- ``wpt`` (HLT-NAACL 2003 / ACL 2005 word-alignment shared tasks, Mihalcea & Pedersen 2003;
  Martin et al. 2005 — Hansards en-fr, Romanian-English, English-Hindi): sentence files with
  ``<s snum=N> words </s>`` lines (``FilePairs.*`` lists ``L1-file L2-file`` pairs) and a
  links file (``*.wa``, ``*.wa.nullalign``, ``*.wa.nonullalign``) with one link per line,
  ``snum position_L1 position_L2 [S|P] [confidence]``, 1-based, a missing S|P meaning S,
  position 0 meaning NULL (such links are dropped and counted; the NULL-free
  ``.wa.nonullalign`` file therefore gives the same set). The Hansards and Romanian files are
  ISO-8859-1: pass ``encoding="latin-1"``. Without ``FilePairs.*`` (the raw WPT-05 release)
  the links file's name gives the sentence files: ``test.eng.hin.wa`` -> ``test.eng`` (L1),
  ``test.hin`` (L2), when both exist with ``<s snum=N>`` lines.

More than 5 % of the links outside their sentence is not worked around: the file is read
the wrong way round (``first``, ``index_base``) or does not belong to the sentences, and
:class:`GoldFormatError` names the file, the share and the reading that fits.

Every bad input raises :class:`GoldFormatError` (an :class:`~xalign.errors.XalignError` and a
``ValueError``) naming the file and line, or :class:`GoldFileNotFoundError` for a missing
file; problems the loader can work around (NULL links, blank XL-WA lines, links outside their
sentence) are counted in a :class:`GoldAlignmentWarning` and in ``GoldSet.skipped``.
"""

from __future__ import annotations

import codecs
import dataclasses
import re
import unicodedata
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xalign.alignment.text_languages import Side, contradiction
from xalign.errors import XalignError
from xalign.languages import LanguageCodeError, primary_language
from xalign.links import Links, PharaohSyntaxError, iter_pharaoh, transpose
from xalign.paths import data_root, describe_data_root

GOLD_FORMATS: tuple[str, ...] = ("awesome", "xlwa", "bicici", "pharaoh", "wpt")
_DEFAULT_BASE = {"awesome": 1, "xlwa": 0, "bicici": 0, "pharaoh": 0, "wpt": 1}
_MAX_DIGITS = 9  # a longer index is a format error (and keeps int() away from huge strings)
# One-letter extensions of the WPT sentence files -> language codes.
_WPT_EXT = {"e": "en", "f": "fr", "r": "ro", "h": "hi", "i": "iu"}
_ENGLISH = {"en", "eng", "english"}


class GoldAlignmentWarning(UserWarning):
    """A gold alignment file has a problem that the loader worked around (counted)."""


class GoldFormatError(XalignError, ValueError):
    """A gold alignment file (or the options describing it) is malformed.

    ``path`` and ``line`` (1-based; None when the problem is not on one line) say where.
    """

    def __init__(
        self, message: str, *, path: str | Path | None = None, line: int | None = None
    ) -> None:
        super().__init__(message)
        self.path = None if path is None else Path(path)
        self.line = line


class GoldFileNotFoundError(XalignError, FileNotFoundError):
    """A file of a gold alignment set does not exist."""


@dataclass
class GoldSet:
    """A gold word-alignment set; source = non-English side, target = English.

    ``skipped`` counts what the loader dropped (``null_links``, ``blank_lines``,
    ``out_of_range``); ``out_of_range`` lists the removed out-of-range links as
    ``(sentence, (i, j))``.
    """

    name: str
    src_lang: str
    tgt_lang: str
    src_sents: list[list[str]]
    tgt_sents: list[list[str]]
    sure: list[Links]
    possible: list[Links]
    out_of_range: list[tuple[int, tuple[int, int]]] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.src_sents)


@dataclass(frozen=True)
class _Spec:
    """Where a named set lives (relative to ``align/``), its layout and file languages."""

    kind: str
    path: str
    first_lang: str
    second_lang: str


_SPECS: dict[str, _Spec] = {
    "awesome-enfr": _Spec("awesome", "awesome/enfr", "en", "fr"),
    "awesome-roen": _Spec("awesome", "awesome/roen", "ro", "en"),
    "bicici-deen": _Spec("bicici", "deen_bicici100", "de", "en"),
    **{
        f"xlwa-{lang}-{split}": _Spec("xlwa", f"xlwa/{lang}/{split}.tsv", "en", lang)
        for lang in ("bg", "es")
        for split in ("test", "dev")
    },
}
GOLD_SETS: tuple[str, ...] = tuple(_SPECS)
_NO_GOLD = {"awesome-deen": "awesome/deen.src-tgt has sentences but no gold alignments"}


@dataclass
class _Raw:
    """A set in file orientation (src = first text side), 0-based, with skip counts."""

    src: list[list[str]] = field(default_factory=list)
    tgt: list[list[str]] = field(default_factory=list)
    sure: list[Links] = field(default_factory=list)
    possible: list[Links] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    origin: Path | None = None  # the (first) sentence file, for "no sentence pairs"
    links_origin: Path | None = None  # the links file (the XL-WA TSV), for out-of-range links
    described: bool = False  # read by path/options (not a named set): hint at index_base/first
    index_base: int = 0  # how the links were read (for naming the likely misreading)
    first: str = "src"

    def add(self, src: list[str], tgt: list[str], links: tuple[Links, Links]) -> None:
        self.src.append(src)
        self.tgt.append(tgt)
        self.sure.append(links[0])
        self.possible.append(links[1])

    def skip(self, what: str, count: int, note: str) -> None:
        if count:
            self.skipped[what] = self.skipped.get(what, 0) + count
            self.notes.append(note)


@dataclass(frozen=True)
class _Options:
    """Explicit description of a gold set (see :func:`load_gold`)."""

    format: str
    src_file: Path | None = None
    tgt_file: Path | None = None
    text_file: Path | None = None
    links_file: Path | None = None
    src_lang: str | None = None
    tgt_lang: str | None = None
    english: str | None = None
    index_base: int = 0
    first: str = "src"
    encoding: str = "utf-8"


# ---------------------------------------------------------------- locating the data


def _align_dir(root: str | Path | None) -> Path:
    """The ``align/`` folder under ``root`` (``root`` may also be that folder itself)."""
    base = data_root(root)
    if base is None:
        raise GoldFileNotFoundError(f"no gold data folder: {describe_data_root(root)}")
    return base / "align" if (base / "align").is_dir() else base


def _spec_files(spec: _Spec, align_dir: Path) -> list[Path]:
    """The files a spec needs."""
    base = align_dir / spec.path
    if spec.kind == "awesome":
        return [base.with_suffix(".src-tgt"), base.with_suffix(".gold")]
    if spec.kind == "bicici":
        return [
            base / f"test.{spec.first_lang}",
            base / f"test.{spec.second_lang}",
            base / f"{spec.first_lang}-{spec.second_lang}.wa",
        ]
    return [base]


def available_gold_sets(root: str | Path | None = None) -> list[str]:
    """Names of the known gold sets whose files exist under ``root``."""
    try:
        align_dir = _align_dir(root)
    except FileNotFoundError:
        return []
    return [
        name
        for name, spec in _SPECS.items()
        if all(p.is_file() for p in _spec_files(spec, align_dir))
    ]


# ---------------------------------------------------------------- text and link primitives


def _read_lines(path: Path, encoding: str = "utf-8") -> list[str]:
    """Lines of a text file, split on ``\\n`` only (``\\r`` and BOMs removed).

    ``str.splitlines`` is avoided on purpose: it also breaks on U+001C-U+001E, U+0085 and
    U+2028, which would shift every later line against its parallel file.
    Raises :class:`GoldFileNotFoundError` or :class:`GoldFormatError` (with the line of the
    first byte that does not decode).
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise GoldFileNotFoundError(f"{path}: gold file not found") from None
    except OSError as err:
        raise GoldFormatError(f"{path}: cannot read ({err.strerror or err})", path=path) from None
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        hint = " (pass encoding='latin-1' for ISO-8859-1 files such as the WPT Hansards)"
        raise GoldFormatError(
            f"{path} line {line}: not valid {encoding}: byte 0x{data[err.start]:02X} at "
            f"column {column}{hint if encoding.lower().replace('_', '-') == 'utf-8' else ''}",
            path=path,
            line=line,
        ) from None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r").lstrip("\ufeff") for line in lines]


def read_gold_lines(path: str | Path, encoding: str = "utf-8") -> list[str]:
    """Lines of a gold / evaluation data file, with the gold loaders' guarantees.

    Split on ``\\n`` only, ``\\r`` and BOMs removed; a missing file raises
    :class:`GoldFileNotFoundError`, undecodable bytes a :class:`GoldFormatError` naming the
    file and line.
    """
    return _read_lines(Path(path), encoding)


def _words(text: str) -> list[str]:
    """Whitespace tokens of ``text``, each NFC-normalised (never re-tokenised)."""
    return [unicodedata.normalize("NFC", word) for word in text.split()]


def _parse_links(text: str, base: int, first: str, path: Path, line: int) -> tuple[Links, Links]:
    """One Pharaoh line -> 0-based ``(sure, possible ⊇ sure)`` in (src, tgt) orientation.

    ``i-j`` is sure, ``ipj`` and ``i?j`` possible; ``first="tgt"`` means ``i`` is a target
    index. Index digits are ASCII only (:func:`xalign.links.iter_pharaoh`).
    """
    sure: Links = set()
    possible: Links = set()
    try:
        for found in iter_pharaoh(text, base=base, max_digits=_MAX_DIGITS):
            link = (found.i, found.j) if first == "src" else (found.j, found.i)
            possible.add(link)
            if found.sure:
                sure.add(link)
    except PharaohSyntaxError as err:
        raise GoldFormatError(_link_error(err, base, path, line), path=path, line=line) from None
    return sure, possible | sure


def _link_error(err: PharaohSyntaxError, base: int, path: Path, line: int) -> str:
    """The message of a bad link token of a gold links file."""
    token = err.token
    if err.kind == "too_large":
        return f"{path} line {line}: index {err.digits[:12]}... in {token!r} is too large"
    if err.kind == "below_base":
        return (
            f"{path} line {line}: link {token!r} has index 0, but the file is read as "
            f"{base}-based (index_base={base}); pass index_base=0 if it is 0-based"
        )
    shown = token if len(token) <= 40 else token[:40] + "..."
    return (
        f"{path} line {line}: malformed link {shown!r}; expected i-j (sure) or "
        f"ipj / i?j (possible) with {base}-based indices"
    )


def _check_counts(*files: tuple[Path, int]) -> None:
    """Raise if parallel files have different line counts, naming every file and count."""
    counts = [n for _, n in files]
    if len(set(counts)) > 1:
        shown = ", ".join(f"{path} has {n}" for path, n in files)
        line = min(counts) + 1
        longest = max(files, key=lambda f: f[1])[0]
        raise GoldFormatError(
            f"parallel gold files have different line counts: {shown} lines (line {line} of "
            f"{longest} has no counterpart)",
            path=longest,
            line=line,
        )


# ---------------------------------------------------------------- readers (file orientation)


def _read_awesome(text_file: Path, links_file: Path, opts: _Options) -> _Raw:
    """``first ||| second`` lines and one Pharaoh line per pair."""
    text = _read_lines(text_file, opts.encoding)
    gold = _read_lines(links_file, opts.encoding)
    _check_counts((text_file, len(text)), (links_file, len(gold)))
    raw = _Raw(origin=text_file, links_origin=links_file)
    for n, (line, links) in enumerate(zip(text, gold, strict=True), start=1):
        sides = line.split("|||")
        if len(sides) != 2:
            raise GoldFormatError(
                f"{text_file} line {n}: expected one '|||' between the two sentences, found "
                f"{len(sides) - 1}",
                path=text_file,
                line=n,
            )
        raw.add(
            _words(sides[0]),
            _words(sides[1]),
            _parse_links(links, opts.index_base, opts.first, links_file, n),
        )
    return raw


def _read_parallel(src_file: Path, tgt_file: Path, links_file: Path, opts: _Options) -> _Raw:
    """Two sentence files and a links file, line by line (bicici / plain Pharaoh)."""
    src = _read_lines(src_file, opts.encoding)
    tgt = _read_lines(tgt_file, opts.encoding)
    gold = _read_lines(links_file, opts.encoding)
    _check_counts((src_file, len(src)), (tgt_file, len(tgt)), (links_file, len(gold)))
    raw = _Raw(origin=src_file, links_origin=links_file)
    for n, (s, t, links) in enumerate(zip(src, tgt, gold, strict=True), start=1):
        raw.add(
            _words(s), _words(t), _parse_links(links, opts.index_base, opts.first, links_file, n)
        )
    return raw


def _read_xlwa(path: Path, opts: _Options) -> _Raw:
    """XL-WA TSV: ``first \\t second \\t links`` (blank trailing fields allowed)."""
    raw = _Raw(origin=path, links_origin=path)
    blank = 0
    for n, line in enumerate(_read_lines(path, opts.encoding), start=1):
        if not line.strip():
            blank += 1
            continue
        fields = line.split("\t")
        if len(fields) < 2 or any(f.strip() for f in fields[3:]):
            raise GoldFormatError(
                f"{path} line {n}: expected 3 tab-separated fields (sentence, sentence, "
                f"links), found {len(fields)}",
                path=path,
                line=n,
            )
        links = fields[2] if len(fields) > 2 else ""
        raw.add(
            _words(fields[0]),
            _words(fields[1]),
            _parse_links(links, opts.index_base, opts.first, path, n),
        )
    raw.skip("blank_lines", blank, f"skipped {blank} blank line(s) of {path}")
    return raw


_SNUM_LINE = re.compile(r'\s*<s\s+snum\s*=\s*"?([0-9]+)"?\s*>(.*)</s>\s*', re.DOTALL)


def _read_wpt_sentences(paths: list[Path], encoding: str) -> dict[int, tuple[Path, int, list[str]]]:
    """``snum -> (file, line, words)`` from ``<s snum=N> ... </s>`` lines, in file order.

    snums must be unique and increasing across the files (the links refer to them).
    """
    out: dict[int, tuple[Path, int, list[str]]] = {}
    last: tuple[int, Path, int] | None = None
    for path in paths:
        for n, line in enumerate(_read_lines(path, encoding), start=1):
            if not line.strip():
                continue
            match = _SNUM_LINE.fullmatch(line)
            if match is None:
                raise GoldFormatError(
                    f"{path} line {n}: expected '<s snum=N> words </s>'", path=path, line=n
                )
            if len(match[1]) > _MAX_DIGITS:
                raise GoldFormatError(
                    f"{path} line {n}: snum {match[1][:12]}... is too large", path=path, line=n
                )
            snum = int(match[1])
            if snum in out:
                where = f"{out[snum][0]} line {out[snum][1]}"
                raise GoldFormatError(
                    f"{path} line {n}: duplicate snum={snum} (also {where})", path=path, line=n
                )
            if last is not None and snum < last[0]:
                raise GoldFormatError(
                    f"{path} line {n}: snum={snum} out of order (after snum={last[0]} at "
                    f"{last[1]} line {last[2]}); sentences must come in increasing snum order",
                    path=path,
                    line=n,
                )
            out[snum] = (path, n, _words(match[2]))
            last = (snum, path, n)
    return out


def _read_wpt(
    src_files: list[Path], tgt_files: list[Path], links_file: Path, opts: _Options
) -> _Raw:
    """WPT sentence files and ``snum i j [S|P] [confidence]`` links (see module doc)."""
    src = _read_wpt_sentences(src_files, opts.encoding)
    tgt = _read_wpt_sentences(tgt_files, opts.encoding)
    for a, b in ((src, tgt), (tgt, src)):
        for snum, (path, n, _) in a.items():
            if snum not in b:
                other = ", ".join(str(p) for p in (tgt_files if a is src else src_files))
                raise GoldFormatError(
                    f"{path} line {n}: sentence snum={snum} has no counterpart in {other}",
                    path=path,
                    line=n,
                )
    if not src:
        shown = ", ".join(str(p) for p in src_files)
        raise GoldFormatError(
            f"{shown} line 1: no '<s snum=N> ... </s>' sentences", path=src_files[0], line=1
        )
    order = {snum: k for k, snum in enumerate(src)}
    sure: list[Links] = [set() for _ in order]
    possible: list[Links] = [set() for _ in order]
    nulls = 0
    for n, line in enumerate(_read_lines(links_file, opts.encoding), start=1):
        fields = line.split()
        if not fields:
            continue
        snum, i, j, is_sure = _wpt_link(fields, opts.index_base, links_file, n)
        if snum not in order:
            raise GoldFormatError(
                f"{links_file} line {n}: sentence snum={snum} is not in the sentence files "
                f"({', '.join(str(p) for p in src_files + tgt_files)})",
                path=links_file,
                line=n,
            )
        if opts.index_base == 1 and i < 0 and j < 0:
            raise GoldFormatError(
                f"{links_file} line {n}: link {line.strip()[:40]!r} aligns NULL to NULL "
                f"(position 0 on both sides), which a WPT file never has: the file looks "
                f"0-based; pass index_base: 0",
                path=links_file,
                line=n,
            )
        if opts.index_base == 1 and (i < 0 or j < 0):  # position 0 = NULL
            nulls += 1
            continue
        link = (i, j) if opts.first == "src" else (j, i)
        possible[order[snum]].add(link)
        if is_sure:
            sure[order[snum]].add(link)
    raw = _Raw(origin=src_files[0], links_origin=links_file)
    for snum, k in order.items():
        raw.add(src[snum][2], tgt[snum][2], (sure[k], possible[k] | sure[k]))
    raw.skip("null_links", nulls, f"dropped {nulls} NULL link(s) (position 0) of {links_file}")
    return raw


def _wpt_link(fields: list[str], base: int, path: Path, line: int) -> tuple[int, int, int, bool]:
    """``snum i j [S|P] [confidence]`` -> (snum, i, j, sure); NULL (0) gives index -1."""
    shown = " ".join(fields)[:60]
    if not 3 <= len(fields) <= 5:
        raise GoldFormatError(
            f"{path} line {line}: expected 'snum position_L1 position_L2 [S|P] [confidence]', "
            f"got {shown!r}",
            path=path,
            line=line,
        )
    numbers = []
    for value in fields[:3]:
        if not value.isascii() or not value.isdigit() or len(value) > _MAX_DIGITS:
            raise GoldFormatError(
                f"{path} line {line}: {value[:20]!r} is not a sentence number "
                f"or word position in {shown!r}",
                path=path,
                line=line,
            )
        numbers.append(int(value))
    snum, i, j = numbers
    rest = fields[3:]
    is_sure = True
    if rest and rest[0].upper() in ("S", "P"):
        is_sure = rest.pop(0).upper() == "S"
    if len(rest) > 1 or (rest and not _is_number(rest[0])):
        raise GoldFormatError(
            f"{path} line {line}: expected S, P and/or a confidence after the "
            f"positions, got {shown!r}",
            path=path,
            line=line,
        )
    return snum, i - base, j - base, is_sure


def _is_number(text: str) -> bool:
    """Whether ``text`` is an ASCII decimal number (a WPT confidence)."""
    return re.fullmatch(r"[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?", text) is not None


# ---------------------------------------------------------------- normalisation


def _split_out_of_range(
    src: list[list[str]], tgt: list[list[str]], sure: list[Links], possible: list[Links]
) -> list[tuple[int, tuple[int, int]]]:
    """Remove links outside their sentence from sure/possible, in place; return them."""
    bad: list[tuple[int, tuple[int, int]]] = []
    for n, (s_words, t_words, s, p) in enumerate(zip(src, tgt, sure, possible, strict=True)):
        outside = {(i, j) for i, j in p | s if i >= len(s_words) or j >= len(t_words)}
        bad.extend((n, link) for link in sorted(outside))
        s -= outside
        p -= outside
    return bad


#: A larger share of links outside their sentence is a misread file, not annotation slips.
_MAX_OUT_OF_RANGE = 0.05


def _outside(src: list[list[str]], tgt: list[list[str]], links: list[Links], move: Any) -> int:
    """How many links ``move(i, j)`` puts outside their sentence pair."""
    n = 0
    for s_words, t_words, lk in zip(src, tgt, links, strict=True):
        for i, j in lk:
            a, b = move(i, j)
            n += not (0 <= a < len(s_words) and 0 <= b < len(t_words))
    return n


def _refuse_misread(
    name: str,
    raw: _Raw,
    src: list[list[str]],
    tgt: list[list[str]],
    links: list[Links],
    langs: tuple[str, str],
) -> None:
    """Raise :class:`GoldFormatError` when more than 5 % of the links (``links``, oriented
    like ``src``/``tgt``) fall outside their sentence and either at least 10 do or another
    reading of the file (the other ``first``, ``index_base: 1``) halves their number: the
    file is read the wrong way round (or is not the links file of these sentences), and the
    links that still fit would be scored as if they were right."""
    total = sum(len(lk) for lk in links)
    bad = _outside(src, tgt, links, lambda i, j: (i, j))
    if not total or bad <= _MAX_OUT_OF_RANGE * total:
        return
    other = "tgt" if raw.first == "src" else "src"
    readings = [(f"first: {other}", lambda i, j: (j, i))]
    if raw.index_base == 0:
        readings += [
            ("index_base: 1", lambda i, j: (i - 1, j - 1)),
            (f"first: {other} and index_base: 1", lambda i, j: (j - 1, i - 1)),
        ]
    counts = [(_outside(src, tgt, links, move), option) for option, move in readings]
    best, option = min(counts)
    explained = 2 * best <= bad
    if not explained and bad < _BASE_EVIDENCE:
        return  # a few stray links in a small set: warned and dropped by the caller
    where = raw.links_origin or raw.origin
    read = f"read {raw.index_base}-based with first: {raw.first}"
    if explained and raw.described:
        cause = (
            f"with {option}, {best} would be ({best / total:.1%}): the file most likely "
            f"{_CAUSES[option.split(' and ')[0].split(':')[0]]}; set the gold set's option "
            f"{option} (load_gold(..., {_as_kwargs(option)}), or in an align.sets entry)"
        )
    elif explained:
        cause = f"with {option}, {best} would be: this named set's files look damaged"
    else:
        cause = (
            f"no other reading fits better (first: {other}: {counts[0][0]}): the links file "
            f"does not seem to belong to these sentences (a missing, extra or reordered line?)"
        )
    raise GoldFormatError(
        f"{where}: {bad} of {total} gold links ({bad / total:.1%}) of {name} "
        f"({langs[0]}-{langs[1]}, {read}) point outside their sentence pair, more than "
        f"{_MAX_OUT_OF_RANGE:.0%}: the AER would score the rest as if they were right; {cause}",
        path=where,
    )


_CAUSES = {
    "first": "lists the other side's word index first (direction)",
    "index_base": "is 1-based (its indices start at 1)",
}


def _as_kwargs(option: str) -> str:
    """``first: tgt and index_base: 1`` -> ``first='tgt', index_base=1``."""
    parts = [p.split(": ") for p in option.split(" and ")]
    return ", ".join(f"{k}={v!r}" if k == "first" else f"{k}={v}" for k, v in parts)


def _is_english(lang: str) -> bool:
    if lang.lower() in _ENGLISH:
        return True
    try:
        return primary_language(lang) in _ENGLISH  # en-GB, EN_us
    except LanguageCodeError:
        return False


def _check_languages(name: str, src_lang: str, tgt_lang: str, raw: _Raw, opts: _Options) -> None:
    """Refuse a set whose text clearly contradicts its declared languages
    (:func:`xalign.alignment.text_languages.contradiction`: the scripts of the letters, the
    English side's function words), naming the files, the options and the likely cause."""
    if opts.english in ("src", "tgt", "neither"):
        english = (opts.english == "src", opts.english == "tgt")
    else:
        english = (_is_english(src_lang), _is_english(tgt_lang))
    why = contradiction(
        Side("src_lang", src_lang, raw.src, english[0]),
        Side("tgt_lang", tgt_lang, raw.tgt, english[1]),
        english_option=opts.english if opts.english in ("src", "tgt") else None,
    )
    if why is None:
        return
    files = [f for f in (opts.src_file, opts.tgt_file) if f is not None] or [raw.origin]
    raise GoldFormatError(
        f"{' / '.join(map(str, files))}: the text of gold set {name} contradicts its declared "
        f"languages (src_lang: {src_lang}, tgt_lang: {tgt_lang}): {why}",
        path=files[0],
    )


def _normalise(
    name: str, src_lang: str, tgt_lang: str, raw: _Raw, english: str | None = None
) -> GoldSet:
    """Put English on the target side, make possible ⊇ sure and report what was dropped."""
    src, tgt, sure = raw.src, raw.tgt, raw.sure
    possible = [p | s for s, p in zip(sure, raw.possible, strict=True)]
    if english is None:  # by language code; "tgt" and "neither" keep the file orientation
        english = "src" if _is_english(src_lang) and not _is_english(tgt_lang) else "tgt"
    if english == "src":
        src, tgt = tgt, src
        sure, possible = [transpose(s) for s in sure], [transpose(p) for p in possible]
        src_lang, tgt_lang = tgt_lang, src_lang
    _refuse_misread(name, raw, src, tgt, possible, (src_lang, tgt_lang))
    out_of_range = _split_out_of_range(src, tgt, sure, possible)
    skipped = dict(raw.skipped)
    notes = list(raw.notes)
    hint = (
        " (a 1-based file read as 0-based, or one listing the target's index first, gives "
        "such links: see the index_base and first options)"
        if raw.described
        else ""
    )
    if out_of_range:
        skipped["out_of_range"] = len(out_of_range)
        shown = ", ".join(f"sentence {n} link {i}-{j}" for n, (i, j) in out_of_range[:5])
        notes.append(
            f"{len(out_of_range)} gold link(s) out of range (0-based, "
            f"{src_lang}-{tgt_lang}) removed and listed in out_of_range: {shown}{hint}"
        )
    unannotated = sum(1 for p in possible if not p)
    if unannotated and any(possible):
        notes.append(
            f"{unannotated} sentence pair(s) have no gold link: every link predicted there "
            f"counts as wrong (remove pairs that were not annotated)"
        )
    if not any(possible):
        dropped = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in skipped.items() if v)
        raise GoldFormatError(
            f"{name}: no gold links in its {len(src)} sentence pair(s)"
            f"{f' after dropping {dropped}' if dropped else ''} ({raw.origin}): AER would be "
            f"1 whatever the aligner does; check the links file{hint}",
            path=raw.origin,
        )
    if notes:
        _warn_once(f"{name}: " + "; ".join(notes), key=str(raw.origin), stacklevel=4)
    return GoldSet(name, src_lang, tgt_lang, src, tgt, sure, possible, out_of_range, skipped)


# ---------------------------------------------------------------- layouts and options


#: file name parts that name a format, a role or a processing step, never a language here
_NOT_LANGUAGES = {
    "txt", "tsv", "csv", "tok", "raw", "out", "dat", "gz", "bz2", "xz", "xml", "json", "snt",
    "wa", "src", "tgt", "ref", "hyp", "sent", "text", "links", "align", "gold", "test", "dev",
    "in", "inp", "lc", "tc", "bpe", "spm", "tmp", "old", "new", "all", "ids",
}  # fmt: skip


def _code(part: str, *, last: bool = False) -> str | None:
    """``part`` of a file name as a language code: 2-3 letters and not a format or role
    name; a last suffix of one letter is WPT's (``e`` -> en)."""
    if last and part in _WPT_EXT:
        return _WPT_EXT[part]
    if re.fullmatch(r"[a-z]{2,3}", part) and part not in _NOT_LANGUAGES:
        return part
    return None


def _lang_of(path: Path, default: str) -> str:
    """A language code from one file name: its only part that can be a code (``test.de``,
    ``test.de.txt``, ``de.txt`` -> de; WPT ``test.e`` -> en), English when it is one of
    several (``en.lc.txt``). When the name tells none or several, ``default`` with a
    :class:`GoldAlignmentWarning` asking for ``src_lang``/``tgt_lang``: English is moved to
    the target side only when it is recognised."""
    parts = path.name.lower().split(".")
    found = [c for i, part in enumerate(parts) if (c := _code(part, last=i == len(parts) - 1))]
    if len(set(found)) == 1:
        return found[0]
    english = [c for c in found if c in _ENGLISH]
    if english:
        return english[0]
    what = "no language" if not found else f"several possible languages ({', '.join(found)})"
    _warn_name(path, f"tells {what}; it is called {default!r}", default)
    return default


def _warn_name(path: Path, what: str, default: str) -> None:
    _warn_once(
        f"{path}: the file name {what} (pass {default}_lang: English is moved to the "
        f"target side only when it is recognised)",
        key=str(path),
        stacklevel=6,
    )


#: (key, message) pairs already warned about in this process.
_WARNED: set[tuple[str, str]] = set()


def _warn_once(message: str, *, key: str, stacklevel: int) -> None:
    """A :class:`GoldAlignmentWarning` the first time this process reads the same gold set
    (``key``: its origin) with the same problem, whatever warning filters other code resets:
    a set shared by every evaluation of a comparison is described once, not per evaluation."""
    if (key, message) in _WARNED:
        return
    _WARNED.add((key, message))
    warnings.warn(message, GoldAlignmentWarning, stacklevel=stacklevel)


def _langs_of_files(src: Path, tgt: Path) -> tuple[str, str]:
    """Languages of two sentence files: the one part in which their names differ when both
    are codes (``en.lc.txt``/``de.lc.txt``, ``test.de``/``test.en``), else each name's own
    (:func:`_lang_of`)."""
    sp, tp = src.name.lower().split("."), tgt.name.lower().split(".")
    if len(sp) == len(tp):
        diff = [i for i, (a, b) in enumerate(zip(sp, tp, strict=True)) if a != b]
        if len(diff) == 1:
            last = diff[0] == len(sp) - 1
            a, b = _code(sp[diff[0]], last=last), _code(tp[diff[0]], last=last)
            if a and b:
                return a, b
    return _lang_of(src, "src"), _lang_of(tgt, "tgt")


def _pair_of_stem(path: Path, src_lang: str | None, tgt_lang: str | None) -> tuple[str, str]:
    """Languages of a one-file set from its stem: ``de-en``/``de_en``, or 4 letters of which
    one half is English (awesome-align's ``deen``, ``enfr``); else src/tgt, warned unless
    both are given."""
    stem = path.stem.lower()
    guess = None
    if m := re.fullmatch(r"([a-z]{2,3})[-_]([a-z]{2,3})", stem):
        guess = (m.group(1), m.group(2))
    elif re.fullmatch(r"[a-z]{4}", stem) and "en" in (stem[:2], stem[2:]):
        guess = (stem[:2], stem[2:])
    if guess is None:
        guess = ("src", "tgt")
        if src_lang is None or tgt_lang is None:
            _warn_name(path, "tells no language pair; they are called src and tgt", "src/tgt")
    return src_lang or guess[0], tgt_lang or guess[1]


def _resolve(base: Path | None, value: str | Path | None) -> Path | None:
    """An option path, relative to the gold folder ``base`` when one was given."""
    if value is None:
        return None
    path = Path(value).expanduser()
    if base is not None and not path.is_absolute() and not path.exists():
        return base / path
    return path


_WPT_LINKS = re.compile(r"\.wa(\.(no)?nullalign)?$")


def _wpt_folder_files(folder: Path, opts: _Options) -> tuple[list[Path], list[Path], Path]:
    """Sentence files and the links file of a WPT folder: the sentence files from
    ``FilePairs.*``, or else from the links file's name (:func:`_wpt_files_of_links`)."""
    if (opts.src_file is None) != (opts.tgt_file is None):
        raise GoldFormatError(
            "format 'wpt' needs both src_file and tgt_file (or neither, "
            f"with a FilePairs.* file in {folder})",
            path=folder,
        )
    links = opts.links_file
    if links is None:
        found_links = sorted(p for p in folder.iterdir() if _WPT_LINKS.search(p.name))
        stems = {p.name.split(".wa")[0] for p in found_links}
        if len(stems) != 1:
            shown = ", ".join(p.name for p in found_links) or "none"
            raise GoldFormatError(
                f"{folder}: need exactly one WPT links file (*.wa, "
                f"*.wa.nullalign, *.wa.nonullalign), found {shown}; pass "
                "links_file",
                path=folder,
            )
        links = found_links[-1]  # nonullalign sorts after nullalign; both give the same set
    if opts.src_file and opts.tgt_file:
        return [opts.src_file], [opts.tgt_file], links
    pairs = sorted(folder.glob("FilePairs.*"))
    src_files: list[Path] = []
    tgt_files: list[Path] = []
    if len(pairs) == 1:
        for n, line in enumerate(_read_lines(pairs[0], opts.encoding), start=1):
            names = line.split()
            if not names:
                continue
            if len(names) != 2:
                raise GoldFormatError(
                    f"{pairs[0]} line {n}: expected '<L1 file> <L2 file>'", path=pairs[0], line=n
                )
            src_files.append(folder / names[0])
            tgt_files.append(folder / names[1])
    if src_files:
        return src_files, tgt_files, links
    inferred, tried = _wpt_files_of_links(links, opts.encoding)
    if inferred is not None:
        return [inferred[0]], [inferred[1]], links
    found = ", ".join(p.name for p in pairs) or "no FilePairs.* file"
    looked = f"; from the name of {links.name}, looked for {tried}" if tried else ""
    raise GoldFormatError(
        f"{folder}: cannot tell the WPT sentence files ({found}{looked}); pass "
        "src_file and tgt_file (src = the L1 side of the links)",
        path=folder,
    )


def _wpt_files_of_links(links: Path, encoding: str) -> tuple[tuple[Path, Path] | None, str]:
    """The L1 and L2 sentence files a WPT links file's name points at, when both exist and
    hold ``<s snum=N>`` lines: ``test.eng.hin.wa`` -> ``test.eng``, ``test.hin`` (the
    WPT-05 release; also ``trial.*``, ``.wa.nullalign``/``.wa.nonullalign``) and
    ``test.rom-eng.wa`` -> ``test.rom``, ``test.eng``. Returns (files or None, what was
    looked for, for the error message)."""
    base = _WPT_LINKS.sub("", links.name)
    parts = base.split(".")
    if len(parts) >= 3:
        stem, l1, l2 = ".".join(parts[:-2]), parts[-2], parts[-1]
    elif len(parts) == 2 and parts[1].count("-") == 1:
        stem, (l1, l2) = parts[0], parts[1].split("-")
    else:
        return None, ""
    files = (links.parent / f"{stem}.{l1}", links.parent / f"{stem}.{l2}")
    tried = " and ".join(p.name for p in files)
    if not all(p.is_file() and _looks_like_wpt_sentences(p, encoding) for p in files):
        return None, f"{tried} (missing, or without '<s snum=N>' lines)"
    return files, tried


def _looks_like_wpt_sentences(path: Path, encoding: str) -> bool:
    """Whether the first non-blank line of ``path`` is a ``<s snum=N> ... </s>`` line."""
    try:
        with path.open(encoding=encoding, errors="replace") as fh:
            for line in fh:
                if line.strip():
                    return _SNUM_LINE.fullmatch(line.lstrip("\ufeff")) is not None
    except OSError:
        return False
    return False


def _guess_format(path: Path) -> str:
    """The layout of a gold file or folder given without ``format``."""
    if path.is_dir():
        names = [p.name for p in path.iterdir()]
        if any(n.startswith("FilePairs.") or re.search(r"\.wa\.(no)?nullalign$", n) for n in names):
            return "wpt"
        if any(re.fullmatch(r"\w+-\w+\.wa", n) for n in names):
            return "bicici"
        if any(_WPT_LINKS.search(n) for n in names):  # the WPT-05 release: test.eng.hin.wa
            return "wpt"
        raise GoldFormatError(
            f"{path}: folder without a '<src>-<tgt>.wa' gold file (bicici) "
            "or FilePairs.* / *.wa / *.wa.nullalign (WPT); pass format=",
            path=path,
        )
    if path.suffix == ".tsv":
        return "xlwa"
    if path.suffix in (".src-tgt", ".gold"):
        return "awesome"
    if re.search(r"\.wa(\.(no)?nullalign)?$", path.name):
        return "wpt"
    raise GoldFormatError(
        f"{path}: unrecognised gold alignment file; pass format= (one of "
        f"{', '.join(GOLD_FORMATS)}) and the files",
        path=path,
    )


def _build_options(fmt: str, path: Path | None, values: dict[str, Any]) -> _Options:
    """Validate the keyword options of :func:`load_gold` into an :class:`_Options`."""
    if fmt not in GOLD_FORMATS:
        raise GoldFormatError(
            f"unknown gold format {fmt!r}; choose one of {', '.join(GOLD_FORMATS)}"
        )
    base = values["index_base"]
    if base is None:
        base = _DEFAULT_BASE[fmt]
    if base not in (0, 1):
        raise GoldFormatError(f"index_base must be 0 or 1, got {base!r}")
    if values["first"] not in ("src", "tgt"):
        raise GoldFormatError(f"first must be 'src' or 'tgt', got {values['first']!r}")
    if values["english"] not in (None, "src", "tgt", "neither"):
        raise GoldFormatError(
            f"english must be 'src', 'tgt' or 'neither', got {values['english']!r}"
        )
    try:
        codecs.lookup(values["encoding"])
    except LookupError:
        raise GoldFormatError(f"unknown encoding {values['encoding']!r}") from None
    folder = path if path is not None and path.is_dir() else None
    files = {
        k: _resolve(folder, values[k]) for k in ("src_file", "tgt_file", "text_file", "links_file")
    }
    return _Options(
        fmt,
        **files,
        src_lang=values["src_lang"],
        tgt_lang=values["tgt_lang"],
        english=values["english"],
        index_base=base,
        first=values["first"],
        encoding=values["encoding"],
    )


def _need(value: Path | None, what: str, fmt: str) -> Path:
    if value is None:
        raise GoldFormatError(f"format {fmt!r} needs {what}")
    return value


def _load_with_options(
    path: Path | None, opts: _Options, name: str | None
) -> tuple[str, str, str, _Raw]:
    """Read a set described by a path and/or explicit options: (name, src, tgt, raw)."""
    fmt = opts.format
    if fmt == "awesome":
        if opts.src_file or opts.tgt_file:
            raise GoldFormatError(
                "format 'awesome' reads one 'src ||| tgt' file: pass it as "
                "text_file (and the links as links_file)"
            )
        text = opts.text_file or (path.with_suffix(".src-tgt") if path else None)
        links = opts.links_file or (path.with_suffix(".gold") if path else None)
        text, links = _need(text, "text_file", fmt), _need(links, "links_file", fmt)
        src_lang, tgt_lang = _pair_of_stem(text, opts.src_lang, opts.tgt_lang)
        raw = _read_awesome(text, links, opts)
        return name or text.stem, src_lang, tgt_lang, raw
    if fmt == "xlwa":
        tsv = _need(opts.text_file or path, "a .tsv path (or text_file)", fmt)
        lang = tsv.parent.name  # XL-WA's layout: data/<lang>/<split>.tsv
        if opts.tgt_lang is None and not re.fullmatch(
            r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*", lang
        ):
            _warn_once(
                f"{tsv}: its folder {lang!r} tells no language (XL-WA keeps each language's "
                f"files in a folder named by its code); the language is called 'tgt' (pass "
                f"tgt_lang)",
                key=str(tsv),
                stacklevel=5,
            )
            lang = "tgt"
        src_lang, tgt_lang = opts.src_lang or "en", opts.tgt_lang or lang
        default = f"xlwa-{lang}-{tsv.stem}" if opts.tgt_lang is None else f"xlwa-{tgt_lang}"
        return name or default, src_lang, tgt_lang, _read_xlwa(tsv, opts)
    if fmt == "bicici" and path is not None and path.is_dir() and not opts.links_file:
        was = [p for p in sorted(path.glob("*-*.wa")) if re.fullmatch(r"\w+-\w+\.wa", p.name)]
        if not was:
            raise GoldFormatError(f"{path}: folder without a '<src>-<tgt>.wa' gold file", path=path)
        first, second = was[0].stem.split("-")
        src_file = opts.src_file or path / f"test.{first}"
        tgt_file = opts.tgt_file or path / f"test.{second}"
        raw = _read_parallel(src_file, tgt_file, was[0], opts)
        return name or path.name, opts.src_lang or first, opts.tgt_lang or second, raw
    if fmt in ("bicici", "pharaoh"):
        links = opts.links_file or (path if path is not None and path.is_file() else None)
        src_file = _need(opts.src_file, "src_file (one sentence per line)", fmt)
        tgt_file = _need(opts.tgt_file, "tgt_file (one sentence per line)", fmt)
        links = _need(links, "links_file (one Pharaoh line per sentence pair)", fmt)
        src_lang, tgt_lang = _given_or_guessed(opts, src_file, tgt_file)
        raw = _read_parallel(src_file, tgt_file, links, opts)
        return name or f"{fmt}-{src_lang}{tgt_lang}", src_lang, tgt_lang, raw
    # wpt
    if path is not None and path.is_dir():
        src_files, tgt_files, links = _wpt_folder_files(path, opts)
    else:
        links = _need(opts.links_file or path, "links_file (snum i j [S|P] lines)", fmt)
        if not (opts.src_file and opts.tgt_file):
            src_files, tgt_files, links = _wpt_folder_files(
                links.parent, _replace_links(opts, links)
            )
        else:
            src_files, tgt_files = [opts.src_file], [opts.tgt_file]
    src_lang, tgt_lang = _given_or_guessed(opts, src_files[0], tgt_files[0])
    raw = _read_wpt(src_files, tgt_files, links, opts)
    return name or f"wpt-{src_lang}{tgt_lang}", src_lang, tgt_lang, raw


def _given_or_guessed(opts: _Options, src_file: Path, tgt_file: Path) -> tuple[str, str]:
    """``src_lang``/``tgt_lang`` as given, the others from the file names."""
    if opts.src_lang and opts.tgt_lang:
        return opts.src_lang, opts.tgt_lang
    if not opts.src_lang and not opts.tgt_lang:
        return _langs_of_files(src_file, tgt_file)
    if opts.src_lang:
        return opts.src_lang, _lang_of(tgt_file, "tgt")
    return _lang_of(src_file, "src"), opts.tgt_lang


def _replace_links(opts: _Options, links: Path) -> _Options:
    return dataclasses.replace(opts, links_file=links)


# ---------------------------------------------------------------- public loader


def _read_spec(spec: _Spec, align_dir: Path) -> _Raw:
    """Read a named set's files in file orientation."""
    base = align_dir / spec.path
    opts = _Options(spec.kind, index_base=_DEFAULT_BASE[spec.kind])
    if spec.kind == "awesome":
        raw = _read_awesome(base.with_suffix(".src-tgt"), base.with_suffix(".gold"), opts)
    elif spec.kind == "bicici":
        first, second = spec.first_lang, spec.second_lang
        raw = _read_parallel(
            base / f"test.{first}", base / f"test.{second}", base / f"{first}-{second}.wa", opts
        )
    else:
        raw = _read_xlwa(base, opts)
    raw.index_base = opts.index_base
    return raw


def load_gold(
    name_or_path: str | Path | Mapping[str, Any] | None = None,
    root: str | Path | None = None,
    *,
    format: str | None = None,  # noqa: A002 - the user-facing option name
    src_file: str | Path | None = None,
    tgt_file: str | Path | None = None,
    text_file: str | Path | None = None,
    links_file: str | Path | None = None,
    src_lang: str | None = None,
    tgt_lang: str | None = None,
    english: str | None = None,
    index_base: int | None = None,
    first: str = "src",
    encoding: str = "utf-8",
    name: str | None = None,
) -> GoldSet:
    """Load a gold set by name (see :data:`GOLD_SETS`), by path, or from explicit files.

    ``root`` is the shared data folder (or its ``align/`` subfolder) for named sets; it
    defaults to :func:`xalign.data_root`. Without ``format`` a path is recognised by its
    layout: ``.tsv`` (XL-WA, language from the parent folder), ``<xxyy>.src-tgt``/``.gold``
    (awesome-align, languages from the stem), a folder with ``<x>-<y>.wa`` (bicici), a
    folder with ``FilePairs.*`` or a ``*.wa[.nullalign|.nonullalign]`` file (WPT).

    Explicit options describe any set without renaming files (the module docstring lists
    the formats). "src" is the first text side (left of ``|||``, first TSV column,
    ``src_file``, the WPT L1 file):

    - ``format``: ``awesome``, ``xlwa``, ``bicici``, ``pharaoh`` or ``wpt``.
    - ``src_file``/``tgt_file`` (pharaoh, wpt), ``text_file`` (awesome ``|||`` file, XL-WA
      TSV), ``links_file`` (awesome, pharaoh, wpt). Relative to ``name_or_path`` when that
      is a folder.
    - ``src_lang``/``tgt_lang``: language codes (defaults from the layout / file
      extensions); ``english``: which side is English (``src``, ``tgt`` or ``neither``;
      default: the side whose code is ``en``). The English side becomes the target.
    - ``index_base``: 0 or 1 (defaults: awesome 1, wpt 1, others 0); ``first``: which side
      the first index of a link refers to (``src`` default, or ``tgt``); ``encoding``
      (default utf-8); ``name`` of the returned set.

    ``name_or_path`` may also be a mapping of these options with a ``path`` key (as in a
    YAML list of sets). Raises :class:`GoldFormatError` (file and line) for malformed input
    and :class:`GoldFileNotFoundError` for missing files; warns with
    :class:`GoldAlignmentWarning` (and counts in ``GoldSet.skipped``) for dropped links.
    """
    values = {
        "src_file": src_file,
        "tgt_file": tgt_file,
        "text_file": text_file,
        "links_file": links_file,
        "src_lang": src_lang,
        "tgt_lang": tgt_lang,
        "english": english,
        "index_base": index_base,
        "first": first,
        "encoding": encoding,
    }
    if isinstance(name_or_path, Mapping):
        return _load_mapping(name_or_path, root)
    explicit = format is not None or any(
        v is not None for k, v in values.items() if k not in ("first", "encoding")
    )
    key = None if name_or_path is None else str(name_or_path)
    if key in _NO_GOLD:
        raise GoldFormatError(f"{key}: {_NO_GOLD[key]}")
    if isinstance(name_or_path, str) and key in _SPECS and not Path(key).exists():
        if explicit:
            raise GoldFormatError(f"{key} is a named gold set; format options apply to paths")
        spec, set_name = _SPECS[key], key
        align_dir = _align_dir(root)
        missing = [str(p) for p in _spec_files(spec, align_dir) if not p.is_file()]
        if missing:
            raise GoldFileNotFoundError(f"{set_name}: missing {', '.join(missing)}")
        raw = _read_spec(spec, align_dir)
        return _normalise(name or set_name, spec.first_lang, spec.second_lang, raw)
    path = None if name_or_path is None else Path(name_or_path).expanduser()
    if path is not None and not path.exists():
        if format is None and not explicit and (len(path.parts) > 1 or path.suffix):
            raise GoldFileNotFoundError(f"{path}: gold file or folder not found")
        if format is None and not explicit:
            raise GoldFormatError(
                f"unknown gold set {key!r}; known: {', '.join(GOLD_SETS)} or a path"
            )
        if not (format == "awesome" and path.suffix == ""):  # awesome may take a bare stem
            raise GoldFileNotFoundError(f"{path}: gold file or folder not found")
    if path is None and format is None:
        raise GoldFormatError("load_gold needs a set name, a path, or format= with its files")
    fmt = format or _guess_format(path)  # type: ignore[arg-type]
    opts = _build_options(fmt, path, values)
    set_name, src, tgt, raw = _load_with_options(path, opts, name)
    if not raw.src:
        raise GoldFormatError(f"{raw.origin} line 1: no sentence pairs", path=raw.origin, line=1)
    raw.described = True
    raw.index_base, raw.first = opts.index_base, opts.first
    _check_index_base(raw, opts)
    _check_languages(set_name, src, tgt, raw, opts)
    return _normalise(set_name, src, tgt, raw, opts.english)


#: Links a 0-based set needs before "no link touches word 0" is taken as a sign of a 1-based file.
_BASE_EVIDENCE = 10


def _check_index_base(raw: _Raw, opts: _Options) -> None:
    """Refuse a file read with the other ``index_base``, or note a likely one.

    Read 0-based, a 1-based file never uses word 0 and puts its links to the last word one
    past the end (index == sentence length): when no link uses index 0 on either side, some
    links are past the end and one less on both sides puts (nearly) all of them inside,
    :class:`GoldFormatError` names the file and ``index_base: 1``. No link past the end: a
    note (warned with the set). Read 1-based, a 0-based WPT file turns its links to word 0
    into NULL links (dropped) and never reaches the last word: refused, naming
    ``index_base: 0``. A 0-based Pharaoh file read 1-based fails at its first index 0.
    """
    links = [link for p, s in zip(raw.possible, raw.sure, strict=True) for link in p | s]
    if len(links) < _BASE_EVIDENCE:
        return
    where = raw.links_origin or raw.origin
    if opts.index_base == 1:
        nulls = raw.skipped.get("null_links", 0)
        last = any(
            i == len(s) - 1 or j == len(t) - 1
            for s, t, lk in zip(raw.src, raw.tgt, raw.possible, strict=True)
            for i, j in lk
        )
        if nulls and not last:
            raise GoldFormatError(
                f"{where}: read 1-based (index_base: 1), {nulls} link(s) use position 0 "
                f"(NULL, dropped) and none of the other {len(links)} uses the last word of "
                f"its sentence on either side: the file is 0-based; pass index_base: 0 "
                f"(load_gold(..., index_base=0), or in an align.sets entry)",
                path=where,
            )
        return
    if any(i == 0 or j == 0 for i, j in links):
        return
    past_end = _outside(raw.src, raw.tgt, raw.possible, lambda i, j: (i, j))
    shifted = _outside(raw.src, raw.tgt, raw.possible, lambda i, j: (i - 1, j - 1))
    if past_end and shifted * 10 <= past_end:
        first = next(
            (n, i, j)
            for n, (s, t, lk) in enumerate(zip(raw.src, raw.tgt, raw.possible, strict=True))
            for i, j in sorted(lk)
            if i >= len(s) or j >= len(t)
        )
        raise GoldFormatError(
            f"{where}: {past_end} of {len(links)} gold links ({past_end / len(links):.1%}) "
            f"point past the end of their sentence (sentence {first[0]} link "
            f"{first[1]}-{first[2]}: {len(raw.src[first[0]])} and "
            f"{len(raw.tgt[first[0]])} words) and none uses index 0 on either side: the file "
            f"is 1-based but read as 0-based (index_base: 0), which would drop those links "
            f"and shift every other one by a word; pass index_base: 1 "
            f"(load_gold(..., index_base=1), or in an align.sets entry)",
            path=where,
        )
    raw.notes.append(
        f"none of its {len(links)} links uses the first word (index 0) of any sentence on "
        f"either side: the file looks 1-based but is read as 0-based; pass index_base: 1 "
        f"if so"
    )


def _load_mapping(spec: Mapping[str, Any], root: str | Path | None) -> GoldSet:
    """``load_gold({"path": ..., "format": ..., ...})`` (a set described in a config)."""
    options = dict(spec)
    target = options.pop("path", None)
    if target is None:
        target = options.pop("name_or_path", None)
    allowed = {
        "format",
        "src_file",
        "tgt_file",
        "text_file",
        "links_file",
        "src_lang",
        "tgt_lang",
        "english",
        "index_base",
        "first",
        "encoding",
        "name",
    }
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise GoldFormatError(
            f"gold set {dict(spec)}: unknown option(s) {unknown}; known: "
            f"path, {', '.join(sorted(allowed))}"
        )
    return load_gold(target, root, **options)
