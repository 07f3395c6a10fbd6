"""``train.freeze_layers`` / ``FinetuneSettings.freeze_layers``: the embeddings and the first k
transformer blocks keep their weights; everything above trains (AlignFreeze, NAACL 2025)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import as_sets, run_json
from safetensors.torch import load_file
from transformers import AutoModel, BertConfig, BertForSequenceClassification

from xalign.encoders.freeze import freeze_layers, transformer_blocks
from xalign.errors import ConfigError
from xalign.evaluation.finetune import FinetuneSettings, finetune


def _tiny_bert(layers: int = 3) -> BertForSequenceClassification:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=50, hidden_size=8, num_hidden_layers=layers, num_attention_heads=2,
        intermediate_size=16, max_position_embeddings=16, num_labels=2,
    )  # fmt: skip
    return BertForSequenceClassification(config)


def test_freezes_the_embeddings_and_the_first_k_blocks_only() -> None:
    model = _tiny_bert()
    base = model.bert
    expected = sum(p.numel() for p in base.embeddings.parameters()) + sum(
        p.numel() for block in base.encoder.layer[:2] for p in block.parameters()
    )
    assert freeze_layers(model, 2) == expected
    assert not any(p.requires_grad for p in base.embeddings.parameters())
    for i, block in enumerate(base.encoder.layer):
        assert all(p.requires_grad != (i < 2) for p in block.parameters()), i
    assert all(p.requires_grad for p in model.classifier.parameters())


def test_zero_changes_nothing_and_bad_k_is_refused() -> None:
    model = _tiny_bert()
    assert freeze_layers(model, 0) == 0
    assert all(p.requires_grad for p in model.parameters())
    for k in (-1, 4):
        with pytest.raises(ConfigError, match="train.freeze_layers: must be between 0 and"):
            freeze_layers(model, k, key="train.freeze_layers")
    with pytest.raises(ConfigError, match="cannot find the transformer blocks"):
        freeze_layers(torch.nn.Linear(2, 2), 1)


def test_finds_the_blocks_of_a_bare_encoder(tiny_model) -> None:
    assert len(transformer_blocks(AutoModel.from_pretrained(tiny_model))) == 2


def test_finetune_keeps_frozen_layers(one_thread) -> None:
    model = _tiny_bert()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    g = torch.Generator().manual_seed(0)
    features = [
        {"input_ids": torch.randint(5, 50, (6,), generator=g).tolist(), "labels": i % 2}
        for i in range(8)
    ]
    settings = FinetuneSettings(learning_rate=1e-2, epochs=1, batch_size=4, freeze_layers=1)
    finetune(model, features, settings, pad_id=0)
    after = model.state_dict()
    assert torch.equal(
        after["bert.embeddings.word_embeddings.weight"],
        before["bert.embeddings.word_embeddings.weight"],
    )
    assert torch.equal(
        after["bert.encoder.layer.0.output.dense.weight"],
        before["bert.encoder.layer.0.output.dense.weight"],
    )
    assert not torch.equal(
        after["bert.encoder.layer.1.output.dense.weight"],
        before["bert.encoder.layer.1.output.dense.weight"],
    )
    with pytest.raises(ValueError, match="freeze_layers must be >= 0"):
        FinetuneSettings(freeze_layers=-1)


def test_alignment_run_with_frozen_layers(smoke_overrides, tiny_model, one_thread) -> None:
    out = run_json(["-o", "sinkhorn", *as_sets([*smoke_overrides, "train.freeze_layers=1"])])
    tuned = load_file(str(Path(out["output_dir"]) / "model" / "model.safetensors"))
    init = load_file(str(tiny_model / "model.safetensors"))
    for key in ("embeddings.word_embeddings.weight", "embeddings.LayerNorm.weight",
                "encoder.layer.0.attention.self.query.weight"):  # fmt: skip
        assert torch.equal(tuned[key], init[key]), key
    key = "encoder.layer.1.attention.self.query.weight"
    assert not torch.equal(tuned[key], init[key])


def test_a_negative_value_is_a_config_error(smoke_overrides) -> None:
    from typer.testing import CliRunner

    from xalign.cli import app

    result = CliRunner().invoke(
        app, ["run", "-q", "-o", "sinkhorn", *as_sets([*smoke_overrides, "train.freeze_layers=-1"])]
    )
    assert result.exit_code == 1
    assert "train.freeze_layers" in result.output and "must be >= 0" in result.output
