"""Weights of a non-floating dtype (int8, int32, uint8, bool) are refused naming the file, the
first such tensor and its dtype: transformers and peft would cast them silently (garbage
weights), and a file of integers only failed with a message naming no file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from xalign import checkpoint as ck
from xalign.cli import app
from xalign.encoders import load_encoder
from xalign.encoders.encoder import EncoderLoadError
from xalign.errors import XalignError

pytestmark = pytest.mark.usefixtures("one_thread")

QUERY = "encoder.layer.0.attention.self.query.weight"
DTYPES = [
    (torch.int8, "int8"),
    (torch.int32, "int32"),
    (torch.uint8, "uint8"),
    (torch.bool, "bool"),
]


def _variant(tiny: Path, dst: Path, keys: set[str] | None, dtype: torch.dtype) -> Path:
    """A copy of ``tiny`` whose tensors ``keys`` (None: all) are stored as ``dtype``."""
    shutil.copytree(tiny, dst)
    state = load_file(str(tiny / "model.safetensors"))
    state = {k: (v.to(dtype) if keys is None or k in keys else v) for k, v in state.items()}
    save_file(state, str(dst / "model.safetensors"))
    return dst


def _refused(folder: Path) -> str:
    with pytest.raises(EncoderLoadError) as exc:
        load_encoder(str(folder))
    assert isinstance(exc.value, XalignError)
    return str(exc.value)


@pytest.mark.parametrize(("dtype", "shown"), DTYPES)
@pytest.mark.parametrize("key", [QUERY, "embeddings.LayerNorm.weight"])
def test_one_integer_tensor_is_named_with_its_file_and_dtype(
    tiny_model, tmp_path, dtype, shown, key
):
    folder = _variant(tiny_model, tmp_path / "m", {key}, dtype)
    message = _refused(folder)
    assert message.startswith(
        f"model {folder}: {folder / 'model.safetensors'}: tensor {key} has dtype {shown}, "
        "not a floating-point dtype:"
    ), message
    assert "more non-float" not in message


@pytest.mark.parametrize(("dtype", "shown"), DTYPES)
def test_pytorch_bin_weights_are_checked_too(tiny_model, tmp_path, dtype, shown):
    folder = tmp_path / "bin"
    shutil.copytree(tiny_model, folder)
    state = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    state[QUERY] = state[QUERY].to(dtype)
    torch.save(state, folder / "pytorch_model.bin")
    message = _refused(folder)
    assert f"{folder / 'pytorch_model.bin'}: tensor {QUERY} has dtype {shown}, not a" in message


@pytest.mark.parametrize(("dtype", "shown"), DTYPES)
def test_a_file_of_integers_names_its_first_tensor(tiny_model, tmp_path, dtype, shown):
    n = len(load_file(str(tiny_model / "model.safetensors")))
    first = sorted(load_file(str(tiny_model / "model.safetensors")))[0]
    folder = _variant(tiny_model, tmp_path / "m", None, dtype)
    message = _refused(folder)
    assert f"model.safetensors: tensor {first} has dtype {shown}" in message
    assert f"(and {n - 1} more non-float tensor(s))" in message


def test_float_dtypes_and_integer_index_buffers_still_load(tiny_model, tmp_path):
    half = _variant(tiny_model, tmp_path / "half", None, torch.float16)
    assert load_encoder(str(half)).model.config.hidden_size == 32
    folder = tmp_path / "ids"
    shutil.copytree(tiny_model, folder)
    state = load_file(str(tiny_model / "model.safetensors"))
    state["embeddings.position_ids"] = torch.arange(64, dtype=torch.int64)[None]
    save_file(state, str(folder / "model.safetensors"))
    assert load_encoder(str(folder)).model.config.hidden_size == 32


def test_cli_and_fine_tuning_refuse_integer_weights(tiny_model, tmp_path):
    from transformers import AutoModelForSequenceClassification

    from xalign.evaluation.finetune import load_for_finetuning

    folder = _variant(tiny_model, tmp_path / "m", {QUERY}, torch.int8)
    args = ["align", "Das Haus", "the house", "--model", str(folder), "--no-plot"]
    result = CliRunner().invoke(app, [*args, "--src-lang", "de"])
    text = " ".join(result.output.split())
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert f"tensor {QUERY} has dtype int8" in text and "model.safetensors" in text
    with pytest.raises(EncoderLoadError, match=f"tensor {QUERY} has dtype int8"):
        load_for_finetuning(str(folder), AutoModelForSequenceClassification, num_labels=3)


@pytest.mark.parametrize(("dtype", "shown"), DTYPES[:2])
def test_a_lora_adapter_of_integers_is_named(tiny_model, tmp_path, dtype, shown):
    from xalign.encoders.lora import LoraSettings, add_lora

    enc = load_encoder(str(tiny_model))
    peft_model = add_lora(enc.model, LoraSettings(r=2), base_name=str(tiny_model))
    adapter = tmp_path / "adapter"
    peft_model.save_pretrained(str(adapter))
    file = adapter / "adapter_model.safetensors"
    state = load_file(str(file))
    first = sorted(state)[0]
    save_file({k: v.to(dtype) if k == first else v for k, v in state.items()}, str(file))
    message = _refused(adapter)
    assert f"LoRA adapter {adapter}: {file}: tensor {first} has dtype {shown}" in message


@pytest.mark.parametrize(("dtype", "shown"), DTYPES)
def test_resuming_a_checkpoint_of_integer_weights_names_the_tensor(tmp_path, dtype, shown):
    from test_checkpoint import make_state, write

    ckpt = write(tmp_path / "ckpt", 1, seed=0)
    file = ckpt / "model.safetensors"
    state = load_file(str(file))
    save_file({k: v.to(dtype) if k == "weight" else v for k, v in state.items()}, str(file))
    module, opt, sched = make_state(99)
    before = module.weight.detach().clone()
    with pytest.raises(ck.CheckpointError) as exc:
        ck.load_checkpoint(ckpt, module=module, optimizer=opt, scheduler=sched, rank=0)
    assert str(exc.value).startswith(f"{file}: cannot load the weights (tensor weight has dtype")
    assert f"dtype {shown}, not a floating-point dtype" in str(exc.value)
    assert torch.equal(module.weight, before)  # nothing was loaded
