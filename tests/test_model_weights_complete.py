"""A model whose files do not give every encoder weight (missing tensors, a tensor of another
shape, NaN/Inf values, no readable weight file) is an xalign error naming the file and the
tensor: transformers would fill the gap with random weights and only log it."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from xalign.cli import app
from xalign.encoders import load_encoder
from xalign.encoders.encoder import EncoderLoadError

pytestmark = pytest.mark.usefixtures("one_thread")

State = dict[str, torch.Tensor]


def _variant(tiny: Path, dst: Path, change: Callable[[State], State]) -> Path:
    shutil.copytree(tiny, dst)
    state = load_file(str(tiny / "model.safetensors"))
    save_file(change(state), str(dst / "model.safetensors"))
    return dst


def _refused(folder: Path) -> str:
    with pytest.raises(EncoderLoadError) as exc:
        load_encoder(str(folder))
    return str(exc.value)


@pytest.mark.parametrize(
    ("dropped", "first"),
    [
        ("layer.1.", "encoder.layer.1.attention.output.LayerNorm.bias"),
        ("layer.0.intermediate", "encoder.layer.0.intermediate.dense.bias"),
        ("embeddings.word_embeddings", "embeddings.word_embeddings.weight"),
        ("query.weight", "encoder.layer.0.attention.self.query.weight"),
    ],
)
def test_missing_encoder_weights_are_named(tiny_model, tmp_path, dropped, first):
    state = load_file(str(tiny_model / "model.safetensors"))
    gone = sorted(k for k in state if dropped in k)
    folder = _variant(
        tiny_model, tmp_path / "m", lambda s: {k: v for k, v in s.items() if dropped not in k}
    )
    message = _refused(folder)
    assert message.startswith(
        f"model {folder}: {folder / 'model.safetensors'} lacks {len(gone)} encoder weight(s)"
    ), message
    assert f"needs: {first}" in message


@pytest.mark.parametrize(
    ("key", "cut"),
    [
        ("embeddings.word_embeddings.weight", lambda v: v[:10]),
        ("embeddings.position_embeddings.weight", lambda v: v[:, :16]),
        ("encoder.layer.1.output.dense.bias", lambda v: v[:-1]),
    ],
)
def test_a_tensor_of_another_shape_names_both_shapes(tiny_model, tmp_path, key, cut):
    state = load_file(str(tiny_model / "model.safetensors"))
    wanted, saved = tuple(state[key].shape), tuple(cut(state[key]).shape)
    folder = _variant(
        tiny_model,
        tmp_path / "m",
        lambda s: {k: (cut(v).contiguous() if k == key else v) for k, v in s.items()},
    )
    message = _refused(folder)
    assert f"{folder / 'model.safetensors'}: tensor {key} has shape {saved}" in message
    assert f"config.json needs {wanted}" in message


@pytest.mark.parametrize(
    ("key", "value", "count"),
    [
        ("encoder.layer.0.attention.self.query.weight", float("nan"), 1),
        ("embeddings.LayerNorm.weight", float("inf"), 3),
        ("encoder.layer.1.output.dense.bias", float("-inf"), 32),
    ],
)
def test_non_finite_weights_are_named(tiny_model, tmp_path, key, value, count):
    def poison(state: State) -> State:
        state[key].view(-1)[:count] = value
        return state

    folder = _variant(tiny_model, tmp_path / "m", poison)
    message = _refused(folder)
    assert f"{folder / 'model.safetensors'}: tensor {key} holds {count:,} non-finite" in message


def test_weights_that_are_not_a_file_or_in_another_format(tiny_model, tmp_path):
    folder = tmp_path / "dir"
    shutil.copytree(tiny_model, folder)
    (folder / "model.safetensors").unlink()
    (folder / "model.safetensors").mkdir()
    assert _refused(folder) == (
        f"model {folder}: {folder / 'model.safetensors'} is not a file: copy or download it again"
    )
    for name in ("model.pt", "weights.ckpt"):
        other = tmp_path / name
        shutil.copytree(tiny_model, other)
        (other / "model.safetensors").rename(other / name)
        message = _refused(other)
        assert message.startswith(f"model {other}: {other} has no weight file xalign reads")
        assert f"found {name}" in message


def test_a_complete_model_loads_and_align_reports_missing_weights(tiny_model, tmp_path):
    assert load_encoder(str(tiny_model)).model.config.hidden_size == 32  # a pooler-less save
    folder = _variant(
        tiny_model, tmp_path / "m", lambda s: {k: v for k, v in s.items() if "layer.1." not in k}
    )
    args = ["align", "Das Haus", "the house", "--model", str(folder), "--no-plot"]
    result = CliRunner().invoke(app, [*args, "--src-lang", "de"])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "lacks 16 encoder weight(s)" in " ".join(result.output.split())


@pytest.mark.integration
def test_the_embedded_e5_loads_without_complaint():
    encoder = load_encoder("packaged:multilingual-e5-small")
    assert encoder.model.config.num_hidden_layers == 12


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda s: {k: v for k, v in s.items() if "layer.1." not in k}, "lacks 16 encoder weight"),
        (
            lambda s: {k: (v[:10].contiguous() if "word_emb" in k else v) for k, v in s.items()},
            "tensor embeddings.word_embeddings.weight has shape (10, 32)",
        ),
        (
            lambda s: {
                k: (v.fill_(float("nan")) if k.endswith("query.bias") else v) for k, v in s.items()
            },
            "tensor encoder.layer.0.attention.self.query.bias holds 32 non-finite",
        ),
    ],
)
def test_fine_tuning_tasks_refuse_incomplete_encoders_too(tiny_model, tmp_path, change, says):
    from transformers import AutoModelForSequenceClassification

    from xalign.evaluation.finetune import load_for_finetuning

    folder = _variant(tiny_model, tmp_path / "m", change)
    with pytest.raises(EncoderLoadError) as exc:
        load_for_finetuning(str(folder), AutoModelForSequenceClassification, num_labels=3)
    assert f"{folder / 'model.safetensors'}" in str(exc.value) and says in str(exc.value)
    net, _, new = load_for_finetuning(
        str(tiny_model), AutoModelForSequenceClassification, num_labels=3
    )
    assert new and all(not k.startswith(net.base_model_prefix + ".encoder") for k in new)
