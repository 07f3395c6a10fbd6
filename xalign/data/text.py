"""Moses word tokenisation (sacremoses), one cached tokenizer per language."""

from __future__ import annotations

from functools import lru_cache

from sacremoses import MosesPunctNormalizer, MosesTokenizer


@lru_cache(maxsize=64)
def _moses(lang: str) -> tuple[MosesPunctNormalizer, MosesTokenizer]:
    return MosesPunctNormalizer(lang=lang), MosesTokenizer(lang=lang)


def tokenize_words(text: str, lang: str) -> list[str]:
    """Split a sentence into words the way Moses does for ``lang`` (no XML escaping)."""
    normalizer, tokenizer = _moses(lang)
    return tokenizer.tokenize(normalizer.normalize(text.strip()), escape=False,
                              aggressive_dash_splits=False)
