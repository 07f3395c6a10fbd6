"""CoNLL-U reading for UPOS tagging: words (FORM) and their universal POS tags (UPOS).

Format (https://universaldependencies.org/format.html): UTF-8 text; ``#`` lines are comments;
a blank line ends a sentence; every other line has 10 tab-separated columns ID, FORM, LEMMA,
UPOS, XPOS, FEATS, HEAD, DEPREL, DEPS, MISC. Only lines whose ID is an integer are syntactic
words: a range ID ``6-7`` is a multiword token (its surface form ``del``, UPOS ``_``; the words
``de``/``el`` that follow carry the tags) and a decimal ID ``8.1`` is an empty node of the
enhanced graph; both are skipped. Lines are split on tabs only: a FORM may contain spaces
(Vietnamese ``bắt chuyện``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from xalign import XalignError

#: The 17 universal POS tags (UD v2), in UD's alphabetical order; a tagger's label ids.
UPOS_TAGS: tuple[str, ...] = (
    "ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN",
    "PUNCT", "SCONJ", "SYM", "VERB", "X",
)  # fmt: skip
_INTEGER = re.compile(r"[1-9][0-9]*\Z")
_RANGE = re.compile(r"[1-9][0-9]*-[1-9][0-9]*\Z")
_EMPTY_NODE = re.compile(r"(0|[1-9][0-9]*)\.[1-9][0-9]*\Z")


class ConlluError(XalignError, ValueError):
    """A malformed CoNLL-U line; the message names the file and line."""


@dataclass(frozen=True)
class TaggedSentence:
    """One sentence: its words (FORMs), their UPOS tags, and where it starts (``file:line``)."""

    words: tuple[str, ...]
    tags: tuple[str, ...]
    source: str = ""

    def __len__(self) -> int:
        return len(self.words)


def parse_conllu(text: str, source: str = "<string>") -> list[TaggedSentence]:
    """Sentences of a CoNLL-U document with at least one word.

    Sentences whose FORMs are all ``_`` (treebanks distributed without their text) are
    dropped. Raises :class:`ConlluError` naming ``source:line`` for a line without 10 tab-
    separated columns, an ID that is neither an integer, a range nor an empty node, or a UPOS
    outside :data:`UPOS_TAGS` on a word line.
    """
    sentences: list[TaggedSentence] = []
    words: list[str] = []
    tags: list[str] = []
    start = 0

    def flush() -> None:
        if words and any(w != "_" for w in words):
            sentences.append(TaggedSentence(tuple(words), tuple(tags), f"{source}:{start}"))
        words.clear()
        tags.clear()

    lines = text.removeprefix("\ufeff").split("\n")
    for number, raw in enumerate(lines, start=1):
        line = raw.removesuffix("\r")
        if not line.strip():
            flush()
            continue
        if line.startswith("#"):
            continue
        columns = line.split("\t")
        if len(columns) != 10:
            raise ConlluError(
                f"{source}:{number}: expected 10 tab-separated columns (ID FORM "
                f"LEMMA UPOS ...), found {len(columns)}: {line[:80]!r}"
            )
        ident, form, upos = columns[0], columns[1], columns[3]
        if _RANGE.match(ident) or _EMPTY_NODE.match(ident):
            continue  # multiword token or empty node: not a word to tag
        if not _INTEGER.match(ident):
            raise ConlluError(
                f"{source}:{number}: ID {ident!r} is not a word index (N), a "
                "multiword range (N-M) or an empty node (N.M)"
            )
        if upos not in UPOS_TAGS:
            raise ConlluError(
                f"{source}:{number}: UPOS {upos!r} of word {form!r} is not one "
                f"of the 17 universal tags ({' '.join(UPOS_TAGS)})"
            )
        if not words:
            start = number
        words.append(form)
        tags.append(upos)
    flush()
    return sentences


def read_conllu(path: str | Path) -> list[TaggedSentence]:
    """:func:`parse_conllu` of a UTF-8 file (a BOM is dropped); errors name the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConlluError(f"{path}: not UTF-8 text ({err})") from err
    return parse_conllu(text, str(path))


def sentences_from_rows(
    rows: Iterable[dict], tag_names: Sequence[str] | None, source: str
) -> list[TaggedSentence]:
    """Sentences from Hugging Face rows with ``tokens`` and ``upos`` or ``pos_tags``.

    Tags are ClassLabel ids (``tag_names`` maps them to names) or names. Tokens tagged ``_``
    (the multiword-token surface forms that the ``universal_dependencies`` loader keeps) are
    dropped, like range lines in CoNLL-U.
    """
    out = []
    for i, row in enumerate(rows):
        key = "upos" if "upos" in row else "pos_tags"
        raw = row[key]
        names = [
            tag_names[t] if tag_names is not None and isinstance(t, int) else str(t) for t in raw
        ]
        pairs = [(w, t) for w, t in zip(row["tokens"], names, strict=True) if t != "_"]
        bad = [t for _, t in pairs if t not in UPOS_TAGS]
        if bad:
            raise ConlluError(f"{source} row {i}: tag {bad[0]!r} is not a universal POS tag")
        if pairs and any(w != "_" for w, _ in pairs):
            out.append(
                TaggedSentence(
                    tuple(w for w, _ in pairs), tuple(t for _, t in pairs), f"{source} row {i}"
                )
            )
    return out
