"""Loaders for gold word-alignment test sets, normalised to one structure.

Every set comes back 0-based with the non-English language as SOURCE and English as
TARGET, possible links including the sure ones, UTF-8 BOMs stripped, and links that point
outside their sentence removed from ``sure``/``possible`` but listed in ``out_of_range``
(with a :class:`GoldAlignmentWarning`).

Supported layouts (under the shared data folder's ``align/``):

- ``awesome/{enfr,roen}.src-tgt`` + ``.gold``: ``first ||| second`` tokens, 1-based
  ``i-j`` (sure) / ``ipj`` (possible) links, first side first (enfr is English ||| French).
- ``deen_bicici100/``: ``test.de`` (BOM), ``test.en``, ``de-en.wa`` 0-based sure links.
- ``xlwa/{bg,es}/{dev,test}.tsv``: ``english \\t other \\t i-j ...``, 0-based, English first.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from xalign.alignment.links import Links, parse_pharaoh, transpose

DATA_ENV = "XALIGN_SHARED_DATA"


class GoldAlignmentWarning(UserWarning):
    """A gold alignment file has a problem that the loader worked around (e.g. bad links)."""


@dataclass
class GoldSet:
    """A gold word-alignment set; source = non-English side, target = English."""

    name: str
    src_lang: str
    tgt_lang: str
    src_sents: list[list[str]]
    tgt_sents: list[list[str]]
    sure: list[Links]
    possible: list[Links]
    out_of_range: list[tuple[int, tuple[int, int]]] = field(default_factory=list)

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

_Raw = tuple[list[list[str]], list[list[str]], list[Links], list[Links]]


# ---------------------------------------------------------------- locating the data


def default_data_root() -> Path | None:
    """The shared data folder: ``$XALIGN_SHARED_DATA``, else ``../shared/data`` beside a
    source checkout if it exists, else None."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env)
    checkout = Path(__file__).resolve().parents[3] / "shared" / "data"
    return checkout if checkout.is_dir() else None


def _align_dir(root: str | Path | None) -> Path:
    """The ``align/`` folder under ``root`` (``root`` may also be that folder itself)."""
    base = Path(root) if root is not None else default_data_root()
    if base is None:
        raise FileNotFoundError(f"no gold data root given and ${DATA_ENV} is not set")
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


# ---------------------------------------------------------------- readers (file orientation)


def _read_lines(path: Path) -> list[str]:
    """Lines of a UTF-8 file without line ends or BOMs."""
    with open(path, encoding="utf-8-sig") as f:
        return [line.rstrip("\r\n").lstrip("\ufeff") for line in f]


def _check_counts(path: Path, *counts: int) -> None:
    """Raise if parallel files have different line counts."""
    if len(set(counts)) != 1:
        raise ValueError(f"{path}: parallel files have different line counts {counts}")


def _read_awesome(base: Path) -> _Raw:
    """``base.src-tgt`` (``a ||| b``) and ``base.gold`` (1-based ``i-j``/``ipj``)."""
    text, gold = _read_lines(base.with_suffix(".src-tgt")), _read_lines(base.with_suffix(".gold"))
    _check_counts(base, len(text), len(gold))
    firsts, seconds, sure, possible = [], [], [], []
    for n, (line, links) in enumerate(zip(text, gold, strict=True)):
        sides = line.split("|||")
        if len(sides) != 2:
            raise ValueError(f"{base}.src-tgt line {n + 1}: expected one '|||'")
        firsts.append(sides[0].split())
        seconds.append(sides[1].split())
        s, p = parse_pharaoh(links, one_based=True)
        sure.append(s)
        possible.append(p)
    return firsts, seconds, sure, possible


def _read_bicici(folder: Path, first: str, second: str) -> _Raw:
    """``test.<first>``, ``test.<second>`` and 0-based ``<first>-<second>.wa``."""
    firsts = [line.split() for line in _read_lines(folder / f"test.{first}")]
    seconds = [line.split() for line in _read_lines(folder / f"test.{second}")]
    gold = [parse_pharaoh(line) for line in _read_lines(folder / f"{first}-{second}.wa")]
    _check_counts(folder, len(firsts), len(seconds), len(gold))
    return firsts, seconds, [s for s, _ in gold], [p for _, p in gold]


def _read_xlwa(path: Path) -> _Raw:
    """XL-WA TSV: ``first \\t second \\t i-j ...`` (0-based), blank trailing fields allowed."""
    firsts, seconds, sure, possible = [], [], [], []
    for n, line in enumerate(_read_lines(path)):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or any(f.strip() for f in fields[3:]):
            raise ValueError(f"{path} line {n + 1}: expected 3 tab-separated fields")
        firsts.append(fields[0].split())
        seconds.append(fields[1].split())
        s, p = parse_pharaoh(fields[2] if len(fields) > 2 else "")
        sure.append(s)
        possible.append(p)
    return firsts, seconds, sure, possible


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


def _normalise(name: str, first_lang: str, second_lang: str, raw: _Raw) -> GoldSet:
    """Put English on the target side, make possible ⊇ sure and report bad links."""
    firsts, seconds, sure, possible = raw
    possible = [p | s for s, p in zip(sure, possible, strict=True)]
    src_lang, tgt_lang = first_lang, second_lang
    if first_lang == "en" and second_lang != "en":
        firsts, seconds = seconds, firsts
        sure, possible = [transpose(s) for s in sure], [transpose(p) for p in possible]
        src_lang, tgt_lang = second_lang, first_lang
    out_of_range = _split_out_of_range(firsts, seconds, sure, possible)
    if out_of_range:
        shown = ", ".join(f"sentence {n} link {i}-{j}" for n, (i, j) in out_of_range[:5])
        warnings.warn(
            f"{name}: {len(out_of_range)} gold link(s) out of range (0-based, "
            f"{src_lang}-{tgt_lang}) removed and listed in out_of_range: {shown}",
            GoldAlignmentWarning,
            stacklevel=3,
        )
    return GoldSet(name, src_lang, tgt_lang, firsts, seconds, sure, possible, out_of_range)


# ---------------------------------------------------------------- public loader


def _read_spec(spec: _Spec, align_dir: Path) -> _Raw:
    """Read a named set's files in file orientation."""
    base = align_dir / spec.path
    if spec.kind == "awesome":
        return _read_awesome(base)
    if spec.kind == "bicici":
        return _read_bicici(base, spec.first_lang, spec.second_lang)
    return _read_xlwa(base)


def _spec_for_path(path: Path) -> tuple[str, _Spec]:
    """Guess the layout, name and file languages of a gold file or folder."""
    if path.is_dir():
        was = [p for p in sorted(path.glob("*-*.wa")) if re.fullmatch(r"\w+-\w+\.wa", p.name)]
        if not was:
            raise ValueError(f"{path}: folder without a '<src>-<tgt>.wa' gold file")
        first, second = was[0].stem.split("-")
        return path.name, _Spec("bicici", str(path), first, second)
    if path.suffix == ".tsv":
        lang = path.parent.name
        return f"xlwa-{lang}-{path.stem}", _Spec("xlwa", str(path), "en", lang)
    if path.suffix in (".src-tgt", ".gold"):
        stem = path.stem
        first, second = (stem[:2], stem[2:]) if re.fullmatch(r"[a-z]{4}", stem) else ("src", "tgt")
        return stem, _Spec("awesome", str(path.with_suffix("")), first, second)
    raise ValueError(f"{path}: unrecognised gold alignment file")


def load_gold(name_or_path: str | Path, root: str | Path | None = None) -> GoldSet:
    """Load a gold set by name (see :data:`GOLD_SETS`) or by file/folder path.

    ``root`` is the shared data folder (or its ``align/`` subfolder); it defaults to
    :func:`default_data_root`. Paths are recognised by layout: a ``.tsv`` (XL-WA, language
    from the parent folder), ``<xxyy>.src-tgt``/``.gold`` (awesome-align, languages from the
    stem) or a folder with ``test.<x>``, ``test.<y>`` and ``<x>-<y>.wa`` (bicici).
    """
    key = str(name_or_path)
    if key in _NO_GOLD:
        raise ValueError(f"{key}: {_NO_GOLD[key]}")
    if isinstance(name_or_path, str) and key in _SPECS:
        spec, name = _SPECS[key], key
        align_dir = _align_dir(root)
        missing = [str(p) for p in _spec_files(spec, align_dir) if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"{name}: missing {', '.join(missing)}")
    elif Path(name_or_path).exists():
        name, spec = _spec_for_path(Path(name_or_path))
        align_dir = Path()
    else:
        raise ValueError(f"unknown gold set {key!r}; known: {', '.join(GOLD_SETS)} or a path")
    return _normalise(name, spec.first_lang, spec.second_lang, _read_spec(spec, align_dir))
