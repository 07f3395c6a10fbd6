"""Locate and load Universal Dependencies splits: local CoNLL-U files first, then the Hub.

Local files keep UD's release names, ``{lang}_{treebank}-ud-{split}.conllu`` with split
``train``/``dev``/``test``, either directly in a searched folder or one level down (the
``UD_English-EWT/`` folders of a UD release or of ``../shared/data/ud``). Searched folders:
``data_dir`` and ``data_dir/ud`` when a data folder is given, else the shared data folder's
``ud/``. Without a treebank, every treebank of the language found there is pooled (sorted by
file name), as XTREME pools all treebanks of a language.

Hub fallback: a named treebank (``en_ewt``) loads that config of
``universal-dependencies/universal_dependencies``; otherwise the language's XTREME config
``udpos.<Language>`` of ``google/xtreme`` (XTREME's pooled data). When neither works, one
:class:`xalign.DataUnavailableError` names the folders searched, the file names
expected there and the Hub dataset.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import xalign
from xalign import DataUnavailableError, data_root, load_hub_dataset
from xalign_udpos.conllu import ConlluError, TaggedSentence, read_conllu, sentences_from_rows

UD_HUB_ID = "universal-dependencies/universal_dependencies"
XTREME_HUB_ID = "google/xtreme"
SPLITS = {"train": "train", "dev": "validation", "test": "test"}  # local name -> Hub split

#: Language code -> XTREME's ``udpos.<Language>`` config name (the 33 XTREME POS languages).
XTREME_UDPOS_NAMES: dict[str, str] = {
    "af": "Afrikaans", "ar": "Arabic", "bg": "Bulgarian", "de": "German", "el": "Greek",
    "en": "English", "es": "Spanish", "et": "Estonian", "eu": "Basque", "fa": "Persian",
    "fi": "Finnish", "fr": "French", "he": "Hebrew", "hi": "Hindi", "hu": "Hungarian",
    "id": "Indonesian", "it": "Italian", "ja": "Japanese", "kk": "Kazakh", "ko": "Korean",
    "mr": "Marathi", "nl": "Dutch", "pt": "Portuguese", "ru": "Russian", "ta": "Tamil",
    "te": "Telugu", "th": "Thai", "tl": "Tagalog", "tr": "Turkish", "ur": "Urdu",
    "vi": "Vietnamese", "yo": "Yoruba", "zh": "Chinese",
}  # fmt: skip
_LANG = re.compile(r"[a-z]{2,3}\Z")
_TREEBANK = re.compile(r"[a-z]{2,3}_[a-z0-9]+\Z")
T = TypeVar("T")


@dataclass
class UdSplit:
    """Sentences of one language and split, and where they came from (files or Hub id)."""

    lang: str
    split: str
    sentences: list[TaggedSentence]
    sources: list[str]
    total: int  # sentences available before ``limit``

    @property
    def n_words(self) -> int:
        return sum(len(s) for s in self.sentences)


def spread(items: Sequence[T], limit: int | None) -> list[T]:
    """``limit`` items evenly spaced over ``items`` (index ``i * n // limit``), in order.

    Deterministic and seed-free; unlike the first N it covers every document and genre of a
    treebank file (EWT train runs through answers, email, newsgroups, reviews and weblogs).
    ``None`` or a limit >= ``len(items)`` keeps everything.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    n = len(items)
    if limit is None or limit >= n:
        return list(items)
    return [items[i * n // limit] for i in range(limit)]


def ud_folders(data_dir: Path | str | None) -> list[Path]:
    """Folders searched for CoNLL-U files (see the module docstring)."""
    if data_dir is not None:
        root = Path(data_dir).expanduser()
        return [root, root / "ud"]
    shared = data_root()
    return [shared / "ud"] if shared is not None else []


def find_conllu(folders: Sequence[Path], pattern: str) -> list[Path]:
    """Files matching ``pattern`` in the first folder that has any (itself or one level down)."""
    for folder in folders:
        if not folder.is_dir():
            continue
        found = sorted(
            p for p in {*folder.glob(pattern), *folder.glob(f"*/{pattern}")} if p.is_file()
        )
        if found:
            return found
    return []


def conllu_pattern(lang: str, split: str, treebank: str | None = None) -> str:
    """File-name pattern of a split: ``de_gsd-ud-test.conllu``, or ``de_*-ud-test.conllu``.

    Raises ``ValueError`` for an unknown split or a malformed language/treebank code.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown UD split {split!r}; use one of {', '.join(SPLITS)}")
    if not _LANG.match(lang):
        raise ValueError(f"{lang!r} is not a language code (2-3 lowercase letters, e.g. en)")
    if treebank is not None and not _TREEBANK.match(treebank):
        raise ValueError(f"{treebank!r} is not a UD treebank code (LANG_NAME, e.g. en_ewt)")
    if treebank is not None and not treebank.startswith(f"{lang}_"):
        raise ValueError(f"treebank {treebank!r} is not a {lang!r} treebank ({lang}_NAME)")
    return f"{treebank or lang + '_*'}-ud-{split}.conllu"


def local_conllu(
    lang: str, split: str, data_dir: Path | str | None = None, treebank: str | None = None
) -> list[Path]:
    """The local files :func:`load_ud` would read (empty: it would go to the Hub)."""
    lang = xalign.primary_language(lang, where="UD languages")
    return find_conllu(ud_folders(data_dir), conllu_pattern(lang, split, treebank))


def load_ud(
    lang: str,
    split: str,
    data_dir: Path | str | None = None,
    *,
    treebank: str | None = None,
    limit: int | None = None,
) -> UdSplit:
    """UPOS-tagged sentences of ``lang`` (one ``treebank`` or all pooled), ``limit`` spread.

    Raises ``ValueError`` for an unknown split or a malformed language/treebank code,
    :class:`~xalign_udpos.conllu.ConlluError` for a malformed file and
    :class:`xalign.DataUnavailableError` when neither local files nor the Hub
    provide the data. ``lang`` is read by its primary language (``de-DE``, ``de_DE`` -> ``de``:
    :func:`xalign.primary_language`).
    """
    lang = xalign.primary_language(lang, where="UD languages")
    pattern = conllu_pattern(lang, split, treebank)
    files = local_conllu(lang, split, data_dir, treebank)
    if files:
        sentences = [s for path in files for s in read_conllu(path)]
        return UdSplit(
            lang,
            split,
            spread(sentences, limit),
            [str(p.absolute()) for p in files],
            len(sentences),
        )
    sentences, source = _from_hub(lang, split, treebank, ud_folders(data_dir), pattern)
    return UdSplit(lang, split, spread(sentences, limit), [source], len(sentences))


def check_test_files(
    test_files: Mapping[str, Any], task: str, languages: Sequence[str] = ()
) -> dict[str, str]:
    """``test_files`` (language -> CoNLL-U file) checked by :func:`xalign.check_test_files`."""
    return xalign.check_test_files(test_files, task, "CoNLL-U file", languages)


def check_treebanks(
    treebanks: Mapping[str, Any], task: str, languages: Sequence[str] = ()
) -> dict[str, str]:
    """``treebanks`` (language -> UD treebank code) checked by
    :func:`xalign.check_language_map`: language-code keys, one key per language of
    ``languages`` (``ValueError`` subclasses naming ``TASK: treebanks``)."""
    where = f"{task}: treebanks"
    return xalign.check_language_map(
        treebanks, where=where, kind="UD treebank code (de_gsd)", languages=languages
    )


@dataclass(frozen=True)
class UdSource:
    """Where one UD task reads each (language, split): a ``test_files`` entry, else the
    task's treebank choice in the data folder (or the Hub). Shared by ``udpos``, ``pos-mini``
    and ``pos-probe``."""

    task: str
    treebanks: Mapping[str, str]
    test_files: Mapping[str, str]
    #: the task's ``languages`` option: every ``test_files`` key must serve one of them
    #: (``--languages`` only picks among them; a file of a language not picked is not read)
    languages: Sequence[str]

    def treebank(self, lang: str) -> str | None:
        """The ``treebanks`` entry that serves ``lang`` (:func:`xalign.language_key`: its own,
        else the one of its primary language: ``de`` for ``de-DE``, ``de_DE`` for ``de``);
        None: every treebank of the language.

        Raises:
            xalign.LanguageMapError: two keys could serve ``lang``, neither ``lang`` itself.
        """
        xalign.primary_language(lang, where=f"{self.task}: languages")
        key = xalign.language_key(
            lang, self.treebanks, where=f"{self.task}: treebanks", languages=self.languages
        )
        return None if key is None else self.treebanks[key]

    def test_file(self, lang: str, split: str) -> Path | None:
        """The ``test_files`` entry read for this split instead of the data folder's."""
        if split != "test" or not self.test_files:
            return None
        return xalign.chosen_test_file(self.test_files, lang, self.languages, self.task)

    def load(
        self,
        lang: str,
        split: str,
        data_dir: Path | None,
        limit: int | None,
    ) -> UdSplit:
        """One split of one language; :class:`ConlluError` naming its sources if empty."""
        path = self.test_file(lang, split)
        if path is not None:
            data = read_test_file(path, lang, limit)
        else:
            data = load_ud(lang, split, data_dir, treebank=self.treebank(lang), limit=limit)
        if not data.sentences:
            raise ConlluError(
                f"{self.task}: no tagged sentence in UD {lang} {split} ({', '.join(data.sources)})"
            )
        return data

    def inputs(self, splits: Sequence[tuple[str, str]], data_dir: Path | None) -> list[Path]:
        """The local CoNLL-U files the ``splits`` read (for the evaluation's reuse key)."""
        files: set[Path] = set()
        for lang, split in splits:
            chosen = self.test_file(lang, split)
            treebank = self.treebank(lang)
            files |= {chosen} if chosen else set(local_conllu(lang, split, data_dir, treebank))
        return sorted(files)


def read_test_file(path: Path, lang: str, limit: int | None) -> UdSplit:
    """The test split of ``lang`` read from one CoNLL-U file (``test_files``)."""
    sentences = read_conllu(path)
    return UdSplit(lang, "test", spread(sentences, limit), [str(path.absolute())], len(sentences))


def _from_hub(
    lang: str, split: str, treebank: str | None, folders: list[Path], pattern: str
) -> tuple[list[TaggedSentence], str]:
    hint = f"{pattern} (directly or in a UD_*/ subfolder)"
    if treebank is not None:
        hub_id, config = UD_HUB_ID, treebank
    elif lang in XTREME_UDPOS_NAMES:
        hub_id, config = XTREME_HUB_ID, f"udpos.{XTREME_UDPOS_NAMES[lang]}"
    else:
        where = ", ".join(str(p) for p in folders) or "no data_dir given, no shared data folder"
        raise DataUnavailableError(
            f"UD {lang} {split}: no local file {pattern} (searched: {where}), and XTREME's "
            f"udpos on the Hub has no {lang!r} config (it has {', '.join(XTREME_UDPOS_NAMES)}); "
            f"pass --data-dir FOLDER with {hint}, or name a treebank (--option "
            f"TASK.treebanks.{lang}={lang}_NAME) to load it from {UD_HUB_ID}"
        )
    rows = load_hub_dataset(
        f"UD {lang} {split}", hub_id, config, SPLITS[split], local_hint=hint, searched=folders
    )
    source = f"hub:{hub_id}/{config}/{SPLITS[split]}"
    return sentences_from_rows(rows, _tag_names(rows), source), source


def _tag_names(rows: Any) -> list[str] | None:
    """ClassLabel names of the ``upos``/``pos_tags`` column, when the tags are ids."""
    features = getattr(rows, "features", None) or {}
    for key in ("upos", "pos_tags"):
        inner = getattr(features.get(key), "feature", None) if key in features else None
        names = getattr(inner, "names", None)
        if names:
            return list(names)
    return None
