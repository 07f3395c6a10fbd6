"""Encoders: any Hugging Face encoder, or the embedded multilingual-e5-small."""

from xalign.encoders.encoder import PACKAGED_PREFIX, EncodedWords, Encoder, load_encoder

__all__ = ["PACKAGED_PREFIX", "EncodedWords", "Encoder", "load_encoder"]
