"""A model folder whose weights cannot be read safely is an xalign error naming the file and
what to do, at every entry point that loads a model; no code in a pickle runs."""

from __future__ import annotations

import pickle
import shutil
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
    out["not-a-pickle"] = (folder, "pytorch_model.bin", "not a complete torch.save file")
    folder = _with_bin(tiny_model, root / "empty-bin", b"")
    out["empty-bin"] = (folder, "pytorch_model.bin", "not a complete torch.save file")
    folder = _with_bin(tiny_model, root / "cut-bin", b"")
    torch.save(state, folder / "full.bin")
    data = (folder / "full.bin").read_bytes()
    (folder / "full.bin").unlink()
    (folder / "pytorch_model.bin").write_bytes(data[: len(data) // 2])
    out["cut-bin"] = (folder, "pytorch_model.bin", "not a complete torch.save file")
    plain_pickle = pickle.dumps({k: v.tolist() for k, v in list(state.items())[:2]})
    folder = _with_bin(tiny_model, root / "old-pickle", plain_pickle)
    out["old-pickle"] = (folder, "pytorch_model.bin", "pytorch_model.bin")

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


CASES = [
    "code-pickle",
    "not-a-pickle",
    "empty-bin",
    "cut-bin",
    "old-pickle",
    "cut-safetensors",
    "cut-safetensors-header",
    "zero-safetensors",
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
    if case == "code-pickle":
        assert "holds more than tensors (it calls " in message and "weights_only=False" in message


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
