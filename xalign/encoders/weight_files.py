"""Check a model folder's weight files and name the one at fault (docs/failures.md).

transformers reads ``model.safetensors``, else the shards of ``model.safetensors.index.json``,
else ``pytorch_model.bin``, else the shards of ``pytorch_model.bin.index.json``. A file of that
set that is missing, cut short, corrupt, of another format (a ``torch.save`` file or an HTML
error page saved as ``model.safetensors``, a Git LFS pointer, an empty file) or a pickle that
holds more than tensors becomes an :class:`EncoderLoadError` naming that file (a shard, not
its index) and saying what to do; so does a tensor of a non-floating dtype (int8, bool, ...:
:func:`non_float_tensors`), which transformers would cast silently.
"""

from __future__ import annotations

import contextlib
import json
import pickle
import re
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from xalign.errors import XalignError


class EncoderLoadError(XalignError, RuntimeError):
    """The model could not be loaded; the message says how to point at a local copy."""


#: Weight files transformers reads from a model folder, preferred first.
SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
PICKLED_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")
_RETRY = "copy or download it again"
#: Suffixes of weight files in formats transformers does not read from a folder.
_OTHER_WEIGHTS = (".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".npz", ".onnx", ".gguf")


@contextlib.contextmanager
def model_files(path: str, name: str | None = None) -> Iterator[None]:
    """Load a model from folder ``path`` inside this block: an unreadable weight file is an
    :class:`EncoderLoadError` naming the file and what to do, not a library traceback.

    Before the block: the index (if the folder is sharded) is valid JSON and every shard it
    lists is there; every ``*.safetensors`` file is a complete safetensors file (header and
    the tensors it lists); no weight file the loader will read is of another kind (empty, an
    HTML/JSON page, a Git LFS pointer, a zip or pickle under a ``.safetensors`` name); then no
    weight file the loader reads holds a non-float tensor (:func:`non_float_problem`). Inside
    it, a failure while loading is traced to the pickled file (``pytorch_model.bin`` or a
    shard) that PyTorch's ``weights_only`` loader refuses (a pickle that calls code: no code
    runs) or cannot read. ``path`` that is not a local folder (a hub id): unchanged.
    """
    folder = Path(path).expanduser()
    if not folder.is_dir():
        yield
        return
    shown = name or path
    for weights in (*SAFE_WEIGHTS, *PICKLED_WEIGHTS):
        if (folder / weights).exists() and not (folder / weights).is_file():
            raise EncoderLoadError(f"model {shown}: {folder / weights} is not a file: {_RETRY}")
    files = weight_files(folder, shown)
    if not files and (folder / "config.json").is_file():
        found = sorted(p.name for p in folder.iterdir() if p.suffix in _OTHER_WEIGHTS)
        raise EncoderLoadError(
            f"model {shown}: {folder} has no weight file xalign reads ("
            f"{', '.join((*SAFE_WEIGHTS, *PICKLED_WEIGHTS))})"
            + (
                f"; found {', '.join(found)}: save the model with save_pretrained(..., "
                f"safe_serialization=True), or if it is a torch.save'd state dict of this "
                f"model, rename it to pytorch_model.bin"
                if found
                else ""
            )
        )
    for file in sorted({*folder.glob("*.safetensors"), *files}):
        problem = (
            _safetensors_problem(file) if file.suffix == ".safetensors" else _sniff_pickle(file)
        )
        if problem:
            raise EncoderLoadError(f"model {shown}: {file} {problem}")
    for file in files:
        problem = non_float_problem(file)
        if problem:
            raise EncoderLoadError(f"model {shown}: {file}: {problem}")
    try:
        yield
    except EncoderLoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - a user's files: any failure to read them
        raise EncoderLoadError(_load_problem(folder, shown, files, exc)) from exc


def weight_files(folder: Path, shown: str) -> list[Path]:
    """The weight files transformers will read from ``folder`` (the first of
    :data:`SAFE_WEIGHTS` + :data:`PICKLED_WEIGHTS` there; an index: its shards).

    Raises:
        EncoderLoadError: the index is not a JSON mapping with a ``weight_map``, or a shard
            it lists is missing (all missing ones are named).
    """
    for name in (*SAFE_WEIGHTS, *PICKLED_WEIGHTS):
        file = folder / name
        if not file.is_file():
            continue
        if not name.endswith(".index.json"):
            return [file]
        try:
            index = json.loads(file.read_text(encoding="utf-8"))
            shards = sorted(set(index["weight_map"].values()))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise EncoderLoadError(
                f"model {shown}: {file} is not a shard index (a JSON mapping with a "
                f"'weight_map': {type(exc).__name__}: {exc}); {_RETRY}"
            ) from exc
        missing = [s for s in shards if not (folder / s).is_file()]
        if missing:
            raise EncoderLoadError(
                f"model {shown}: shard file(s) {', '.join(str(folder / s) for s in missing)} "
                f"listed in {file} are missing ({len(shards)} shards in all); copy or "
                f"download every shard the index lists"
            )
        return [folder / s for s in shards]
    return []


def content_kind(file: Path) -> str | None:
    """What ``file`` holds when its first bytes show it is no weight file of either format
    (``"empty (0 bytes)"``, ``"an HTML page ..."``, ``"a Git LFS pointer ..."``) or which
    other weight format it is (``"a zip archive (the torch.save format)"``, ``"a Python
    pickle"``, ``"a safetensors file"``); None when the bytes give no sign."""
    size = file.stat().st_size
    if size == 0:
        return "empty (0 bytes)"
    with file.open("rb") as handle:
        head = handle.read(512)
    start = head.lstrip()[:64].lower()
    if start.startswith(b"version https://git-lfs"):
        return (
            f"a Git LFS pointer file ({size} bytes), not the weights: the repository was "
            f"cloned without them; run `git lfs pull` there, or download the file"
        )
    if start.startswith((b"<!doctype", b"<html", b"<?xml", b"<head", b"<body")):
        return (
            f"an HTML/XML page ({size} bytes), not weights: probably an error or login page "
            f"saved by a download; download the file again"
        )
    if start.startswith((b"{", b"[")) and _is_text(head):
        return (
            f"a JSON text ({size} bytes), not weights: probably an error reply saved by a "
            f"download; download the file again"
        )
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive (the torch.save format)"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a Python pickle (the old torch.save format)"
    if _looks_safetensors(head, size):
        return "a safetensors file"
    if head.startswith(b"\x1f\x8b"):
        return "a gzip archive, not weights: unpack it"
    if head.startswith(b"\x89HDF"):
        return (
            "an HDF5 file (TensorFlow/Keras weights), not PyTorch weights: give the model's "
            "PyTorch weights (model.safetensors or pytorch_model.bin)"
        )
    if _is_text(head):
        return f"a text file ({size} bytes), not weights; {_RETRY}"
    return None


def _is_text(head: bytes) -> bool:
    """Printable UTF-8 (a multi-byte character cut at the end of ``head`` allowed)."""
    for cut in range(4):
        try:
            text = head[: len(head) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
        return all(c.isprintable() or c in "\n\r\t" for c in text)
    return False


def _looks_safetensors(head: bytes, size: int) -> bool:
    """An 8-byte little-endian header length that fits the file, then ``{``."""
    if len(head) < 9:
        return False
    (length,) = struct.unpack("<Q", head[:8])
    return 0 < length <= size - 8 and head[8:9] == b"{"


def _safetensors_problem(file: Path) -> str | None:
    """Why ``file`` (named ``*.safetensors``) cannot be read, or None when it can."""
    from safetensors import SafetensorError, safe_open

    kind = content_kind(file)
    if kind == "empty (0 bytes)":
        return f"is empty (0 bytes): the download or copy did not finish; {_RETRY}"
    if kind is not None and kind != "a safetensors file":
        if kind.startswith(("a zip", "a Python pickle")):
            return (
                f"is not a safetensors file: it is {kind}. Save the model again with "
                f"save_pretrained(..., safe_serialization=True), or rename the file to "
                f"pytorch_model.bin (xalign then reads only its tensors)"
            )
        return f"is not a safetensors file: it is {kind}"
    try:
        with safe_open(str(file), framework="pt") as handle:
            handle.keys()
    except (SafetensorError, OSError, ValueError) as exc:
        return (
            f"is not a complete safetensors file ({exc}): it was probably cut short or "
            f"corrupted by an interrupted download or copy; {_RETRY}"
        )
    return None


#: safetensors dtype code -> torch's name (the floating-point codes start with F or BF).
_DTYPE_NAMES = {
    "BOOL": "bool", "U8": "uint8", "I8": "int8", "U16": "uint16", "I16": "int16",
    "U32": "uint32", "I32": "int32", "U64": "uint64", "I64": "int64",
}  # fmt: skip
#: Integer buffers a float model's checkpoint may hold (BERT's ``embeddings.position_ids``).
_INTEGER_BUFFERS = ("_ids", "num_batches_tracked")


def non_float_tensors(file: Path) -> list[tuple[str, str]]:
    """``(tensor name, dtype)`` of each tensor of weight ``file`` whose dtype is not floating
    point (``int8``, ``int32``, ``uint8``, ``bool``, ...), in name order, integer index buffers
    (names ending in ``_ids``, ``num_batches_tracked``) left out. A safetensors file: read from
    its header; a ``torch.save`` file (``pytorch_model.bin``): loaded with ``weights_only=True``
    (no code run) onto the meta device, memory-mapped where the file allows it so that its
    data is not read (an unreadable file gives ``[]``: loading it names the problem)."""
    return [
        (key, dtype)
        for key, (is_float, dtype) in sorted(_dtypes(file).items())
        if not is_float and not key.endswith(_INTEGER_BUFFERS)
    ]


def _dtypes(file: Path) -> dict[str, tuple[bool, str]]:
    """Tensor name -> (floating point?, dtype name) of each tensor of a weight file."""
    if file.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(file), framework="pt") as handle:
            codes = {key: handle.get_slice(key).get_dtype() for key in handle.keys()}
        return {
            key: (code.startswith(("F", "BF")), _DTYPE_NAMES.get(code, code))
            for key, code in codes.items()
        }
    import warnings

    import torch

    state = None
    for mmap in (True, False):  # mmap: zip-format files only (torch >= 1.6's default)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                state = torch.load(file, weights_only=True, map_location="meta", mmap=mmap)
            break
        except Exception:  # noqa: BLE001, S112 - _load_problem names an unreadable file
            continue
    if not isinstance(state, dict):
        return {}
    return {
        str(key): (t.is_floating_point(), str(t.dtype).removeprefix("torch."))
        for key, t in state.items()
        if isinstance(t, torch.Tensor)
    }


def non_float_problem(file: Path) -> str | None:
    """Why weight ``file`` cannot be loaded as a float model's weights: its first tensor
    of a non-floating dtype (transformers would cast it silently, or refuse a model whose
    tensors are all integers with no file named), or None."""
    found = non_float_tensors(file)
    if not found:
        return None
    key, dtype = found[0]
    more = f" (and {len(found) - 1} more non-float tensor(s))" if len(found) > 1 else ""
    return (
        f"tensor {key} has dtype {dtype}, not a floating-point dtype{more}: xalign loads "
        f"float weights (float32, float16, bfloat16). A quantized or integer checkpoint "
        f"cannot be used as is: save the model in floating point "
        f"(model.to(torch.float32).save_pretrained(DIR, safe_serialization=True))"
    )


def _sniff_pickle(file: Path) -> str | None:
    """Why ``file`` (a ``.bin`` weight file) is clearly not a ``torch.save`` file, or None."""
    kind = content_kind(file)
    if kind is None or kind.startswith(("a zip", "a Python pickle")):
        return None
    if kind == "empty (0 bytes)":
        return f"is empty (0 bytes): the download or copy did not finish; {_RETRY}"
    if kind == "a safetensors file":
        return (
            "is a safetensors file under a PyTorch pickle name: rename it to "
            "model.safetensors (a shard: rename the shards and the index to model*.safetensors)"
        )
    return f"is not a torch.save file: it is {kind}"


def _pickle_problem(file: Path) -> tuple[str, str | None] | None:
    """Loads ``file`` as PyTorch does (``weights_only=True``, on the meta device): None when
    it loads, else (the reason, the global it would call when it is a code pickle)."""
    import warnings

    import torch

    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error says it
            warnings.simplefilter("ignore", UserWarning)
            torch.load(file, weights_only=True, map_location="meta")
    except Exception as exc:  # noqa: BLE001 - any failure to read the user's file
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        if isinstance(exc, pickle.UnpicklingError) and found:
            return str(exc), found.group(1)
        first = str(exc).splitlines()[0] if str(exc) else ""
        return f"{type(exc).__name__}: {first}".strip(), None
    return None


#: The number torch.save's old (pre-zip) format pickles first.
_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def _plain_pickle(file: Path) -> bool:
    """Whether ``file`` starts as a well-formed pickle that is not torch.save's old format
    (whose first pickle is :data:`_TORCH_LEGACY_MAGIC`): read as opcodes, nothing is run."""
    import pickletools

    with file.open("rb") as handle:
        try:
            ops = []
            for op, arg, _ in pickletools.genops(handle):
                ops.append((op.name, arg))
                if len(ops) == 3 or op.name == "STOP":
                    break
        except (ValueError, EOFError):  # not opcodes: cut or corrupt
            return False
    return (
        len(ops) >= 2
        and ops[0][0] == "PROTO"
        and not (ops[1][0] == "LONG1" and ops[1][1] == _TORCH_LEGACY_MAGIC)
    )


def _load_problem(folder: Path, shown: str, files: list[Path], exc: Exception) -> str:
    """The message for a failure inside :func:`model_files`: the pickled weight file that
    PyTorch refuses, named, or the library's reason."""
    for file in files:
        if file.suffix != ".bin":
            continue
        problem = _pickle_problem(file)
        if problem is None:
            continue
        reason, calls = problem
        if calls is None and _plain_pickle(file):
            return (
                f"model {shown}: {file} is a Python pickle written by pickle.dump, not by "
                f"torch.save ({reason}): save the weights with torch.save(state_dict) or "
                f"model.save_pretrained(DIR, safe_serialization=True)"
            )
        if calls is None:
            return (
                f"model {shown}: cannot read the PyTorch weights {file} ({reason}): not a "
                f"complete torch.save file; {_RETRY}, or give the model as model.safetensors"
            )
        pattern = str(folder / "pytorch_model*.bin")
        return (
            f"model {shown}: {file} is a pickle that holds more than tensors (it calls "
            f"{calls}), so it was not loaded: loading it could run code it contains. Only if "
            f"you trust its source, convert it to safetensors once (every file "
            f'{pattern} into one model.safetensors): python -c "import glob, torch; '
            f"from safetensors.torch import save_file; sd = {{}}; "
            f"[sd.update(torch.load(f, weights_only=False)) for f in sorted(glob.glob("
            f"{pattern!r}))]; save_file({{k: v.contiguous().clone() for k, v in sd.items() "
            f'if isinstance(v, torch.Tensor)}}, {str(folder / "model.safetensors")!r})" '
            f"(or save the model with save_pretrained(..., safe_serialization=True))"
        )
    return f"could not load the model at {folder}: {type(exc).__name__}: {exc}"


#: Missing checkpoint keys that are no error for an encoder: the pooler is never used.
_UNUSED_MODULES = ("pooler.",)


def check_loaded(model, info: dict, path: str, shown: str) -> None:
    """Refuse a model whose weights did not all come from its files (transformers fills
    those with random values and only logs it): missing encoder weights (a pooler excepted),
    a tensor whose shape differs from the config's, or a non-finite (NaN/Inf) value.

    ``info`` is ``from_pretrained(..., output_loading_info=True)``'s report (load with
    ``ignore_mismatched_sizes=True`` so that a shape mismatch is reported here).

    Raises:
        EncoderLoadError: naming the weight file, the first tensors at fault and, for a shape
            mismatch, both shapes.
    """

    folder = Path(path).expanduser()
    missing = sorted(
        key
        for key in info.get("missing_keys", ())
        if not any(key.startswith(m) or f".{m}" in key for m in _UNUSED_MODULES)
    )
    if missing:
        shown_keys = ", ".join(missing[:3]) + (
            f" (+{len(missing) - 3} more)" if len(missing) > 3 else ""
        )
        raise EncoderLoadError(
            f"model {shown}: {_file_of(folder, missing[0])} lacks {len(missing)} encoder "
            f"weight(s) the model's config needs: {shown_keys}; they would be random. Copy or "
            f"save the complete model (save_pretrained)"
        )
    for key, saved, wanted in sorted(info.get("mismatched_keys", ()), key=lambda m: m[0]):
        raise EncoderLoadError(
            f"model {shown}: {_file_of(folder, key)}: tensor {key} has shape "
            f"{tuple(saved)} but the model's config.json needs {tuple(wanted)}; the file and "
            f"config.json belong to different models (or the file was cut); {_RETRY}"
        )
    check_finite(model.state_dict().items(), path, shown)


def check_finite(tensors: Iterable[tuple[str, Any]], path: str, shown: str) -> None:
    """Refuse the first floating-point tensor of ``(checkpoint key, tensor)`` pairs holding a
    NaN or Inf (a model's weights, or a head loaded beside them).

    Raises:
        EncoderLoadError: naming the weight file, the tensor and how many values are bad.
    """
    import torch

    folder = Path(path).expanduser()
    with torch.no_grad():
        for key, tensor in tensors:
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                bad = int((~torch.isfinite(tensor)).sum())
                raise EncoderLoadError(
                    f"model {shown}: {_file_of(folder, key)}: tensor {key} holds {bad:,} "
                    f"non-finite value(s) (NaN/Inf) of {tensor.numel():,}: the weights are "
                    f"corrupt or diverged in training; use an earlier checkpoint or {_RETRY}"
                )


def _file_of(folder: Path, key: str) -> str:
    """The weight file of ``folder`` that holds (or should hold) tensor ``key``: the one file,
    or the shard an index maps it to (the key possibly behind a model prefix)."""
    if not folder.is_dir():
        return str(folder)
    try:
        files = weight_files(folder, str(folder))
    except EncoderLoadError:
        files = []
    if len(files) == 1:
        return str(files[0])
    for index in (SAFE_WEIGHTS[1], PICKLED_WEIGHTS[1]):
        try:
            weight_map = json.loads((folder / index).read_text(encoding="utf-8"))["weight_map"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        for name, shard in weight_map.items():
            if name == key or name.endswith("." + key):
                return str(folder / shard)
    return str(files[0]) if files else str(folder)
