"""A model folder whose weights cannot be read safely is an xalign error naming the file and
what to do, at every entry point that loads a model; no code in a pickle runs."""

from __future__ import annotations

import json
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import as_sets
from typer.testing import CliRunner

from xalign.cli import app
from xalign.encoders import load_encoder
from xalign.encoders.encoder import EncoderLoadError

pytestmark = pytest.mark.usefixtures("one_thread")

MARKER = Path("/tmp") / "xalign-test-pickle-ran"


class RunsCode:
    """An object whose unpickling would call ``Path.touch(MARKER)``."""

    def __reduce__(self):
        return (Path.touch, (MARKER,))


def _with_bin(src: Path, dst: Path, state: dict | bytes) -> Path:
    """``src`` copied to ``dst`` with pytorch_model.bin instead of model.safetensors."""
    shutil.copytree(src, dst)
    (dst / "model.safetensors").unlink()
    if isinstance(state, bytes):
        (dst / "pytorch_model.bin").write_bytes(state)
    else:
        torch.save(state, dst / "pytorch_model.bin")
    return dst


def _state(model_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


@pytest.fixture(scope="module")
def broken(tiny_model, tmp_path_factory) -> dict[str, tuple[Path, str, str]]:
    """name -> (model folder, file at fault, what the message must say)."""
    root = tmp_path_factory.mktemp("broken-models")
    state = _state(tiny_model)
    weights = (tiny_model / "model.safetensors").read_bytes()
    out: dict[str, tuple[Path, str, str]] = {}

    folder = _with_bin(tiny_model, root / "code-pickle", {**state, "x": RunsCode()})
    out["code-pickle"] = (folder, "pytorch_model.bin", "convert it to safetensors")
    folder = _with_bin(tiny_model, root / "not-a-pickle", b"plain text, not a torch file\n" * 9)
    out["not-a-pickle"] = (folder, "pytorch_model.bin", "not a torch.save file: it is a text")
    folder = _with_bin(tiny_model, root / "empty-bin", b"")
    out["empty-bin"] = (folder, "pytorch_model.bin", "is empty (0 bytes)")
    folder = _with_bin(tiny_model, root / "bin-not-pickled", b"\x80\x02" + bytes(range(256)) * 4)
    out["bin-not-pickled"] = (folder, "pytorch_model.bin", "not a complete torch.save file")
    folder = _with_bin(tiny_model, root / "cut-bin", b"")
    torch.save(state, folder / "full.bin")
    data = (folder / "full.bin").read_bytes()
    (folder / "full.bin").unlink()
    (folder / "pytorch_model.bin").write_bytes(data[: len(data) // 2])
    out["cut-bin"] = (folder, "pytorch_model.bin", "not a complete torch.save file")
    plain_pickle = pickle.dumps({k: v.tolist() for k, v in list(state.items())[:2]})
    folder = _with_bin(tiny_model, root / "old-pickle", plain_pickle)
    out["old-pickle"] = (folder, "pytorch_model.bin", "written by pickle.dump, not by torch.save")
    numpy_pickle = pickle.dumps({k: v.numpy() for k, v in state.items()}, protocol=4)
    folder = _with_bin(tiny_model, root / "numpy-pickle", numpy_pickle)
    out["numpy-pickle"] = (folder, "pytorch_model.bin", "written by pickle.dump, not by torch.save")

    out.update(_sharded(tiny_model, root, state))
    out.update(_wrong_content(tiny_model, root, state))
    for name, data in [
        ("cut-safetensors", weights[: len(weights) // 2]),
        ("cut-safetensors-header", weights[:5]),
        ("zero-safetensors", b"\0" * 64),
    ]:
        folder = root / name
        shutil.copytree(tiny_model, folder)
        (folder / "model.safetensors").write_bytes(data)
        out[name] = (folder, "model.safetensors", "not a complete safetensors file")
    return out


def _halves(state: dict[str, torch.Tensor]) -> list[list[str]]:
    keys = sorted(state)
    return [keys[: len(keys) // 2], keys[len(keys) // 2 :]]


def _sharded_bin(src: Path, dst: Path, state: dict[str, torch.Tensor]) -> Path:
    """``src`` with its weights as two pickled shards and their index (as transformers
    writes them with ``safe_serialization=False``)."""
    shutil.copytree(src, dst)
    (dst / "model.safetensors").unlink()
    weight_map = {}
    for i, keys in enumerate(_halves(state), 1):
        shard = f"pytorch_model-0000{i}-of-00002.bin"
        torch.save({k: state[k] for k in keys}, dst / shard)
        weight_map.update(dict.fromkeys(keys, shard))
    index = {"metadata": {}, "weight_map": weight_map}
    (dst / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    return dst


def _sharded_safetensors(src: Path, dst: Path, state: dict[str, torch.Tensor]) -> Path:
    from safetensors.torch import save_file

    shutil.copytree(src, dst)
    (dst / "model.safetensors").unlink()
    weight_map = {}
    for i, keys in enumerate(_halves(state), 1):
        shard = f"model-0000{i}-of-00002.safetensors"
        save_file({k: state[k] for k in keys}, str(dst / shard), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(keys, shard))
    index = {"metadata": {}, "weight_map": weight_map}
    (dst / "model.safetensors.index.json").write_text(json.dumps(index))
    return dst


def _cut(file: Path) -> None:
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])


def _sharded(tiny_model: Path, root: Path, state: dict) -> dict[str, tuple[Path, str, str]]:
    """Sharded checkpoints, each with one shard (or the index) at fault."""
    out = {}
    second_bin, first_bin = "pytorch_model-00002-of-00002.bin", "pytorch_model-00001-of-00002.bin"
    folder = _sharded_bin(tiny_model, root / "shard-code-pickle", state)
    keys = _halves(state)[1]
    torch.save({**{k: state[k] for k in keys}, "x": RunsCode()}, folder / second_bin)
    out["shard-code-pickle"] = (folder, second_bin, "convert it to safetensors")
    folder = _sharded_bin(tiny_model, root / "shard-cut-bin", state)
    _cut(folder / second_bin)
    out["shard-cut-bin"] = (folder, second_bin, "not a complete torch.save file")
    folder = _sharded_bin(tiny_model, root / "shard-html-bin", state)
    (folder / first_bin).write_bytes(b"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>")
    out["shard-html-bin"] = (folder, first_bin, "it is an HTML/XML page")
    folder = _sharded_bin(tiny_model, root / "shard-missing-bin", state)
    (folder / first_bin).unlink()
    out["shard-missing-bin"] = (folder, first_bin, "are missing (2 shards in all)")
    folder = _sharded_bin(tiny_model, root / "shard-bad-index-bin", state)
    (folder / "pytorch_model.bin.index.json").write_text('{"weight_map": ')
    out["shard-bad-index-bin"] = (folder, "pytorch_model.bin.index.json", "not a shard index")

    second_st = "model-00002-of-00002.safetensors"
    folder = _sharded_safetensors(tiny_model, root / "shard-cut-st", state)
    _cut(folder / second_st)
    out["shard-cut-st"] = (folder, second_st, "not a complete safetensors file")
    folder = _sharded_safetensors(tiny_model, root / "shard-corrupt-st", state)
    data = bytearray((folder / second_st).read_bytes())
    data[8:24] = b"\xff" * 16  # the JSON header
    (folder / second_st).write_bytes(bytes(data))
    out["shard-corrupt-st"] = (folder, second_st, "not a complete safetensors file")
    folder = _sharded_safetensors(tiny_model, root / "shard-missing-st", state)
    (folder / second_st).unlink()
    out["shard-missing-st"] = (folder, second_st, "are missing (2 shards in all)")
    folder = _sharded_safetensors(tiny_model, root / "shard-lfs-st", state)
    (folder / second_st).write_bytes(LFS_POINTER)
    out["shard-lfs-st"] = (folder, second_st, "Git LFS pointer file (134 bytes)")
    folder = _sharded_safetensors(tiny_model, root / "shard-index-list", state)
    (folder / "model.safetensors.index.json").write_text("[]")
    out["shard-index-list"] = (folder, "model.safetensors.index.json", "not a shard index")
    return out


LFS_POINTER = (
    b"version https://git-lfs.github.com/spec/v1\n"
    b"oid sha256:" + b"4d7a" * 16 + b"\nsize 133466304\n"
)


def _wrong_content(tiny_model: Path, root: Path, state: dict) -> dict[str, tuple[Path, str, str]]:
    """A file of another kind saved as model.safetensors / pytorch_model.bin."""
    from safetensors.torch import save_file

    out = {}
    html = b"\n<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head></html>\n"
    for name, write, says in [
        ("st-is-torch-zip", lambda f: torch.save(state, f), "it is a zip archive (the torch.save"),
        (
            "st-is-old-torch",
            lambda f: torch.save(state, f, _use_new_zipfile_serialization=False),
            "it is a Python pickle",
        ),
        ("st-is-pickle", lambda f: f.write_bytes(pickle.dumps([1, 2])), "it is a Python pickle"),
        ("st-is-html", lambda f: f.write_bytes(html), "it is an HTML/XML page (72 bytes)"),
        ("st-is-json", lambda f: f.write_bytes(b'{"error": "not found"}'), "it is a JSON text"),
        ("st-is-lfs", lambda f: f.write_bytes(LFS_POINTER), "it is a Git LFS pointer file"),
        ("st-is-empty", lambda f: f.write_bytes(b""), "is empty (0 bytes)"),
    ]:
        folder = root / name
        shutil.copytree(tiny_model, folder)
        write(folder / "model.safetensors")
        out[name] = (folder, "model.safetensors", says)
    for name, write, says in [
        ("bin-is-lfs", lambda f: f.write_bytes(LFS_POINTER), "it is a Git LFS pointer file"),
        ("bin-is-html", lambda f: f.write_bytes(html), "it is an HTML/XML page"),
        (
            "bin-is-safetensors",
            lambda f: save_file(state, str(f)),
            "is a safetensors file under a PyTorch pickle name: rename it to model.safetensors",
        ),
    ]:
        folder = _with_bin(tiny_model, root / name, b"")
        write(folder / "pytorch_model.bin")
        out[name] = (folder, "pytorch_model.bin", says)
    return out


CASES = [
    "code-pickle",
    "not-a-pickle",
    "empty-bin",
    "bin-not-pickled",
    "cut-bin",
    "old-pickle",
    "numpy-pickle",
    "cut-safetensors",
    "cut-safetensors-header",
    "zero-safetensors",
    "shard-code-pickle",
    "shard-cut-bin",
    "shard-html-bin",
    "shard-missing-bin",
    "shard-bad-index-bin",
    "shard-cut-st",
    "shard-corrupt-st",
    "shard-missing-st",
    "shard-lfs-st",
    "shard-index-list",
    "st-is-torch-zip",
    "st-is-old-torch",
    "st-is-pickle",
    "st-is-html",
    "st-is-json",
    "st-is-lfs",
    "st-is-empty",
    "bin-is-lfs",
    "bin-is-html",
    "bin-is-safetensors",
]


@pytest.mark.parametrize("case", CASES)
def test_load_encoder_names_the_file_and_what_to_do(broken, case):
    folder, file, says = broken[case]
    MARKER.unlink(missing_ok=True)
    with pytest.raises(EncoderLoadError) as exc:
        load_encoder(str(folder))
    message = str(exc.value)
    assert str(folder / file) in message and says in message, message
    assert not MARKER.exists(), "the pickle ran code"
    if "code-pickle" in case:
        assert "holds more than tensors (it calls " in message and "weights_only=False" in message
    if case.startswith("st-is-"):  # another kind of file: not blamed on a cut download
        assert "cut short" not in message, message
    if case.startswith("shard-") and "index" not in case:
        assert ".index.json is" not in message, "the index is blamed for its shard"


class Prints:
    """A harmless object that a ``weights_only`` load still refuses (it calls ``print``)."""

    def __reduce__(self):
        return (print, ("unpickled",))


@pytest.mark.parametrize("sharded", [False, True])
def test_the_conversion_command_in_the_message_works(tiny_model, tmp_path, sharded):
    """The command the code-pickle error suggests turns the pickled weights (one file or
    every shard) into a model.safetensors that loads with the original tensors."""
    state = _state(tiny_model)
    if sharded:
        folder = _sharded_bin(tiny_model, tmp_path / "m", state)
        shard = folder / "pytorch_model-00001-of-00002.bin"
        torch.save({**torch.load(shard, weights_only=True), "x": Prints()}, shard)
    else:
        folder = _with_bin(tiny_model, tmp_path / "m", {**state, "x": Prints()})
    with pytest.raises(EncoderLoadError) as exc:
        load_encoder(str(folder))
    command = re.search(r'python -c "([^"]+)"', str(exc.value)).group(1)
    subprocess.run([sys.executable, "-c", command], check=True, capture_output=True)
    encoder = load_encoder(str(folder))
    for key in ("embeddings.word_embeddings.weight", "encoder.layer.1.output.dense.weight"):
        assert torch.equal(dict(encoder.model.named_parameters())[key], state[key])


def test_a_pickle_of_tensors_only_still_loads(tiny_model, tmp_path):
    folder = _with_bin(tiny_model, tmp_path / "bin", _state(tiny_model))
    encoder = load_encoder(str(folder))
    assert torch.equal(
        encoder.model.embeddings.word_embeddings.weight,
        _state(tiny_model)["embeddings.word_embeddings.weight"],
    )


@pytest.mark.parametrize("case", ["code-pickle", "cut-safetensors"])
def test_fine_tuning_tasks_name_the_file_too(broken, case):
    from transformers import AutoModelForSequenceClassification

    from xalign.evaluation.finetune import load_for_finetuning

    folder, file, says = broken[case]
    with pytest.raises(EncoderLoadError) as exc:
        load_for_finetuning(str(folder), AutoModelForSequenceClassification, num_labels=3)
    assert str(folder / file) in str(exc.value) and says in str(exc.value)


@pytest.mark.parametrize("command", ["align", "eval", "run", "compare"])
@pytest.mark.parametrize("case", ["code-pickle", "cut-safetensors"])
def test_every_command_that_loads_a_model_reports_it(broken, command, case, tmp_path, tracking_uri):
    folder, file, says = broken[case]
    sets = as_sets(
        [
            f"model.name={folder}",
            "data.limit=6",
            "data.languages=[de]",
            f"train.output_dir={tmp_path / 'out'}",
        ]
    )
    args = {
        "align": ["align", "Das Haus", "the house", "--model", str(folder), "--no-plot"]
        + ["--src-lang", "de"],
        "eval": ["eval", str(folder), "--task", "align", "--tracking-uri", tracking_uri],
        "run": ["run", "-q", "-o", "sinkhorn", *sets, "--tracking-uri", tracking_uri],
        "compare": [
            "compare",
            "sinkhorn",
            "--tasks",
            "align",
            *sets,
            "--tracking-uri",
            tracking_uri,
        ],
    }[command]
    MARKER.unlink(missing_ok=True)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    flat = "".join(result.output.split())
    assert "error:" in result.output and "Traceback" not in result.output
    assert "".join(f"{folder / file}".split()) in flat and "".join(says.split()) in flat
    assert not MARKER.exists()
