"""LoRA through peft: config, parameter counts, merge, c0 = base model, exact resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import as_sets, run_json
from safetensors import safe_open
from safetensors.torch import load_file
from typer.testing import CliRunner

from xalign.cli import app
from xalign.config import load_config
from xalign.encoders import load_encoder
from xalign.encoders.lora import LoraSettings, add_lora, is_peft, merged, trainable_count
from xalign.errors import ConfigError

SENTS = [["Das", "ist", "ein", "Haus", "."], ["Hallo", "Welt"]]


def _lora_encoder(tiny_model: Path, settings: LoraSettings, seed: int = 1):
    enc = load_encoder(str(tiny_model))
    enc.model = add_lora(enc.model, settings, base_name=str(tiny_model))
    torch.manual_seed(seed)
    with torch.no_grad():  # B starts at 0 (step 0 = base model): give the adapters a value
        for name, p in enc.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    return enc.eval()


def _states(enc) -> torch.Tensor:
    batch = enc.tokenize_words(SENTS)
    with torch.no_grad():
        return enc(batch.input_ids, batch.attention_mask)


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("model.lora={r: 0}", "model.lora: r must be >= 1"),
        ("model.lora={alpha: 0}", "model.lora: alpha must be > 0"),
        ("model.lora.dropout=1.0", "model.lora: dropout must be in [0, 1)"),
        ("model.lora={target_modules: []}", "target_modules must be null"),
        ("model.lora.r=two", "model.lora.r: expected an integer, got 'two'"),
        ("model.lora={rank: 4}", "model.lora.rank: unknown option 'rank'"),
    ],
)
def test_bad_lora_settings_are_config_errors(override: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    assert needle in str(info.value)


def test_lora_absent_keeps_the_fingerprint_and_present_changes_it() -> None:
    plain = load_config(None)
    assert "lora" not in json.dumps(plain.fingerprint())
    assert load_config(None, ["model.lora=null"]).fingerprint() == plain.fingerprint()
    with_lora = load_config(None, ["model.lora.r=4"])
    assert with_lora.model.lora == LoraSettings(r=4)
    assert with_lora.fingerprint() != plain.fingerprint()
    assert with_lora.flat()["model.lora.r"] == 4


@pytest.mark.parametrize(
    ("r", "targets"), [(4, None), (2, ["query", "key", "value"]), (3, ["dense"])]
)
def test_trainable_parameters_are_the_adapters(tiny_model, r, targets) -> None:
    """r·(in + out) per adapted Linear; the tiny BERT: 2 layers, hidden 32, intermediate 64."""
    enc = load_encoder(str(tiny_model))
    total_before = sum(p.numel() for p in enc.model.parameters())
    enc.model = add_lora(enc.model, LoraSettings(r=r, target_modules=targets), base_name="x")
    # peft's BERT default is query + value; "dense" matches attention.output (32->32),
    # intermediate (32->64) and output (64->32) of each layer
    per_layer = {
        None: 2 * (32 + 32),
        ("query", "key", "value"): 3 * (32 + 32),
        ("dense",): (32 + 32) + (32 + 64) + (64 + 32),
    }[None if targets is None else tuple(targets)]
    trainable, total = trainable_count(enc.model)
    assert trainable == 2 * per_layer * r
    assert total == total_before + trainable
    assert is_peft(enc.model)


def test_unknown_target_module_names_the_linear_layers(tiny_model) -> None:
    enc = load_encoder(str(tiny_model))
    with pytest.raises(ConfigError, match="model.lora.target_modules") as info:
        add_lora(enc.model, LoraSettings(target_modules=["q_proj"]), base_name="x")
    assert "query" in str(info.value) and "dense" in str(info.value)


def test_merge_folds_the_scaled_low_rank_update_in(tiny_model) -> None:
    """merge_and_unload: W' = W + (alpha/r)·B·A, and the merged model gives the same states."""
    settings = LoraSettings(r=4, alpha=6.0)
    enc = _lora_encoder(tiny_model, settings)
    layer = enc.model.base_model.model.encoder.layer[0].attention.self.query
    w = layer.base_layer.weight.detach().clone()
    a, b = layer.lora_A["default"].weight.detach(), layer.lora_B["default"].weight.detach()
    expected = w + (6.0 / 4) * b @ a
    before = _states(enc)
    enc.model = merged(enc.model)
    assert not is_peft(enc.model)
    assert torch.allclose(enc.model.encoder.layer[0].attention.self.query.weight, expected)
    assert torch.allclose(_states(enc), before, atol=1e-5)


def test_frozen_copy_is_the_base_model_without_adapters(tiny_model) -> None:
    from xalign.recipe import frozen_upto_layer

    base = _states(load_encoder(str(tiny_model)).eval())
    enc = _lora_encoder(tiny_model, LoraSettings(r=2))
    assert not torch.allclose(_states(enc), base, atol=1e-4)  # the adapters change the output
    frozen = enc.frozen_copy()
    assert not is_peft(frozen.model)
    assert not any("lora" in n for n, _ in frozen.model.named_parameters())
    assert torch.equal(_states(frozen), base)
    assert is_peft(enc.model)  # the copy was unloaded, not the trained encoder
    enc.layer = 1  # the cut copy (layers above the one read removed) too
    cut = frozen_upto_layer(enc)
    assert not any("lora" in n for n, _ in cut.model.named_parameters())
    plain = load_encoder(str(tiny_model), layer=1).eval()
    assert torch.allclose(_states(cut), _states(plain), atol=1e-6)


def _weights(out: dict) -> dict[str, torch.Tensor]:
    return load_file(str(Path(out["output_dir"]) / "model" / "adapter_model.safetensors"))


def test_lora_run_checkpoints_adapters_and_resumes_exactly(
    tiny_model, tmp_path, tracking_uri, monkeypatch, one_thread
) -> None:
    """4 steps in one go == 2 steps, a crash, and 2 resumed steps (bit for bit)."""
    from xalign import recipe as trainer

    common = [
        "--objective",
        "sinkhorn",
        *as_sets(
            [
                f"model.name={tiny_model}",
                "model.lora={r: 4, alpha: 8, dropout: 0.1}",
                "data.limit=24",
                "data.languages=[de,fr]",
                "train.batch_size=12",
                "train.grad_accum=1",
                "train.lr=1e-2",
                "train.checkpoint_every=2",
                f"tracking.uri={tracking_uri}",
            ]
        ),
    ]
    full = run_json([*common, "--set", f"train.output_dir={tmp_path / 'full'}"])
    original = trainer.AlignmentRecipe.save_checkpoint

    def crash_after_first_checkpoint(self, step, metrics):
        original(self, step, metrics)
        raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(trainer.AlignmentRecipe, "save_checkpoint", crash_after_first_checkpoint)
    cut = CliRunner().invoke(
        app, ["run", "-q", *common, "--set", f"train.output_dir={tmp_path / 'cut'}"]
    )
    assert cut.exit_code != 0
    monkeypatch.setattr(trainer.AlignmentRecipe, "save_checkpoint", original)
    (run_dir,) = (tmp_path / "cut").iterdir()
    ckpt = run_dir / "checkpoints" / "step-0000002"

    # the checkpoint: adapter weights only, and the base model's identity
    with safe_open(str(ckpt / "model.safetensors"), framework="pt") as fh:
        keys = list(fh.keys())
        assert fh.metadata()["xalign.weights"] == "trainable"
    assert keys and all("lora_" in k for k in keys)
    assert len(keys) == 2 * 2 * 2  # 2 layers x (query, value) x (A, B)
    state = json.loads((ckpt / "state.json").read_text())
    from xalign.provenance import model_identity

    assert state["base_model"]["name"] == str(tiny_model)
    assert state["base_model"]["identity"] == model_identity(str(tiny_model))

    resumed = run_json(["--resume", str(run_dir)])
    a, b = _weights(full), _weights(resumed)
    assert a.keys() == b.keys() and a
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert any(float(v.abs().max()) > 0 for k, v in a.items() if "lora_B" in k)

    # the run's model folder is the adapter; load_encoder merges it onto its base
    model_dir = Path(full["output_dir"]) / "model"
    assert (model_dir / "adapter_config.json").is_file()
    assert not (model_dir / "model.safetensors").exists()
    loaded = load_encoder(str(model_dir)).eval()
    assert not is_peft(loaded.model)
    reference = _lora_encoder(tiny_model, LoraSettings(r=4, alpha=8))
    with torch.no_grad():
        for name, p in reference.model.named_parameters():
            if "lora_" in name:
                p.copy_(a[name.replace(".default", "")])
    assert torch.allclose(_states(loaded), _states(reference), atol=1e-5)


def test_resume_on_another_base_model_is_refused(tiny_model, tmp_path, tracking_uri) -> None:
    sets = as_sets(
        [
            f"model.name={tiny_model}",
            "model.lora.r=2",
            "data.limit=12",
            "data.languages=[de]",
            "train.batch_size=12",
            "train.keep_optimizer_state=true",  # keep the checkpoint the test edits
            f"train.output_dir={tmp_path / 'out'}",
            f"tracking.uri={tracking_uri}",
        ]
    )
    out = run_json(["--objective", "sinkhorn", *sets])
    state_file = Path(out["output_dir"]) / "checkpoints" / "step-0000001" / "state.json"
    state = json.loads(state_file.read_text())
    state["base_model"]["identity"] = "files:0000"
    state_file.write_text(json.dumps(state))
    result = CliRunner().invoke(app, ["run", "-q", "--resume", out["output_dir"]])
    assert result.exit_code != 0
    assert "trained on base model" in result.output and "files:0000" in result.output


def test_an_adapter_folder_loads_merged_for_eval_and_task_finetuning(tiny_model, tmp_path):
    """A LoRA run's model folder (adapter + base name): load_encoder and the fine-tuning
    loader (new task head) both see the base with the adapter merged in."""
    from transformers import AutoModelForSequenceClassification

    from xalign.evaluation.finetune import load_for_finetuning

    enc = _lora_encoder(tiny_model, LoraSettings(r=2, alpha=4))
    enc.save(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    expected = _states(enc)
    loaded = load_encoder(str(tmp_path / "adapter")).eval()
    assert not is_peft(loaded.model)
    assert torch.allclose(_states(loaded), expected, atol=1e-5)
    net, tok, new = load_for_finetuning(
        str(tmp_path / "adapter"), AutoModelForSequenceClassification, num_labels=3
    )
    _, _, new_plain = load_for_finetuning(
        str(tiny_model), AutoModelForSequenceClassification, num_labels=3
    )
    assert "classifier.weight" in new and new == new_plain  # as for the plain base model
    merged_query = enc.model.base_model.model.encoder.layer[1].attention.self.query
    w = merged_query.base_layer.weight + 2.0 * (
        merged_query.lora_B["default"].weight @ merged_query.lora_A["default"].weight
    )
    assert torch.allclose(net.bert.encoder.layer[1].attention.self.query.weight, w, atol=1e-6)
    assert tok.is_fast


def test_lora_with_gradient_checkpointing_trains_the_same_adapters(
    tiny_model, tmp_path, tracking_uri, one_thread
) -> None:
    """Recomputing activations (train.gradient_checkpointing) changes nothing, with LoRA too."""
    common = [
        f"model.name={tiny_model}",
        "model.lora={r: 4, alpha: 8}",
        "data.limit=12",
        "data.languages=[de]",
        "train.batch_size=6",
        "train.grad_accum=1",
        "train.lr=1e-2",
        "train.dropout=false",
        f"tracking.uri={tracking_uri}",
    ]
    runs = [
        run_json(
            [
                "-o",
                "sinkhorn",
                *as_sets(
                    [
                        *common,
                        f"train.output_dir={tmp_path / str(gc)}",
                        f"train.gradient_checkpointing={gc}",
                    ]
                ),
            ]
        )  # fmt: skip
        for gc in ("false", "true")
    ]
    plain, checkpointed = (_weights(r) for r in runs)
    assert plain.keys() == checkpointed.keys() and plain
    for k in plain:
        assert torch.allclose(plain[k], checkpointed[k], atol=1e-6), k
    assert any(float(v.abs().max()) > 0 for k, v in plain.items() if "lora_B" in k)
