"""The ``tlm`` objective and ``Needs.mlm``: hand-computed loss and concatenation, masking
against awesome-align 0.1.7's ``mask_tokens`` (same seed, same draws), the MLM head contract
(gradients, saving, the error for a model without a head) and two training steps."""

from __future__ import annotations

import math
from argparse import Namespace
from pathlib import Path

import pytest
import torch
from conftest import as_sets, build_tiny_encoder, run_json
from xalign_tlm import TranslationLM, concatenate, mask_tokens, mlm_loss

from xalign import MaskedLM
from xalign.encoders import load_encoder
from xalign.encoders.encoder import EncoderLoadError


@pytest.fixture(scope="module")
def tiny_mlm(tmp_path_factory) -> Path:
    """The tiny BERT of conftest saved with a (random) masked-LM head."""
    from transformers import BertConfig, BertForMaskedLM

    path = build_tiny_encoder(tmp_path_factory.mktemp("tiny-mlm"))
    torch.manual_seed(1)
    BertForMaskedLM(BertConfig.from_pretrained(path)).save_pretrained(path)
    return path


def fake_mlm(vocab: int = 7, logits: torch.Tensor | None = None) -> MaskedLM:
    """A head that returns fixed logits (uniform by default) for the selected positions."""

    def run(ids, attention_mask, select=None):
        out = torch.zeros(*ids.shape, vocab) if logits is None else logits.clone()
        out = out.requires_grad_()
        return out[select] if select is not None else out

    return MaskedLM(run, mask_token_id=4, pad_token_id=0, vocab_size=vocab, max_length=16)


def test_loss_is_per_sentence_mean_then_batch_mean():
    # sentence 0: 2 picked positions under uniform logits (CE = ln 7 each); sentence 1: none
    labels = torch.tensor([[-100, 3, 5, -100], [-100, -100, -100, -100]])
    ids = torch.tensor([[2, 4, 4, 3], [2, 6, 3, 0]])
    loss = mlm_loss(fake_mlm(), ids, labels)
    assert loss.item() == pytest.approx((math.log(7) + 0.0) / 2)


def test_loss_by_hand_with_peaked_logits():
    # position (0, 1): logits ln 3 on its label, 0 elsewhere (7 ids): p = 3 / (3 + 6) = 1/3
    logits = torch.zeros(1, 2, 7)
    logits[0, 1, 5] = math.log(3)
    labels = torch.tensor([[-100, 5]])
    loss = mlm_loss(fake_mlm(logits=logits), torch.tensor([[2, 4]]), labels)
    assert loss.item() == pytest.approx(math.log(3), rel=1e-6)


def test_concatenation_and_language_ids():
    first = [torch.tensor([2, 10, 3]), torch.tensor([2, 11, 12, 3])]
    second = [torch.tensor([2, 20, 21, 3]), torch.tensor([2, 22, 3])]
    ids, langs = concatenate(first, second, pad_id=0)
    assert ids.tolist() == [[2, 10, 3, 2, 20, 21, 3], [2, 11, 12, 3, 2, 22, 3]]
    assert langs.tolist() == [[1, 1, 1, 2, 2, 2, 2], [1, 1, 1, 1, 2, 2, 2]]
    ids, langs = concatenate(first[:1], [torch.tensor([2, 3])], pad_id=0)
    assert ids.tolist() == [[2, 10, 3, 2, 3]]


def test_masking_rates_follow_bert():
    torch.manual_seed(0)
    ids = torch.full((200, 200), 9)
    inputs, labels = mask_tokens(ids, torch.ones_like(ids, dtype=torch.bool), fake_mlm(50))
    picked = labels != -100
    assert 0.14 < picked.float().mean() < 0.16
    as_mask = (inputs == 4) & picked
    kept = (inputs == 9) & picked
    assert 0.78 < as_mask.sum() / picked.sum() < 0.82
    assert 0.08 < kept.sum() / picked.sum() < 0.13  # 10 % kept + random draws of id 9
    assert (labels[picked] == 9).all() and (inputs[~picked] == 9).all()


def awesome_run_train():
    from test_objective_so_co import import_awesome

    return import_awesome("run_train")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_masking_equals_awesome_align(tiny_mlm, seed):
    """The same concatenated batch, seed and language: identical masked ids and labels."""
    run_train = awesome_run_train()
    enc = load_encoder(str(tiny_mlm))
    tok = enc.tokenizer
    if not hasattr(tok, "_pad_token"):  # awesome-align reads transformers 2's private name
        object.__setattr__(tok, "_pad_token", tok.pad_token)
    side_a = enc.tokenize_words([["Das", "ist", "gut"], ["Ja"]]).input_ids
    side_b = enc.tokenize_words([["That", "is", "good", "."], ["Yes", "!"]]).input_ids
    pad = tok.pad_token_id
    first = [r[r != pad] for r in side_a]
    second = [r[r != pad] for r in side_b]
    ids, langs = concatenate(first, second, pad)
    mlm = MaskedLM(
        lambda *a: None,
        mask_token_id=tok.mask_token_id,
        pad_token_id=pad,
        vocab_size=len(tok),
        max_length=enc.max_length,
        special_ids=frozenset(tok.all_special_ids),
    )
    special = torch.isin(ids, torch.tensor(sorted(mlm.special_ids)))
    for lang_id in (1, 2):
        torch.manual_seed(seed)
        ref_inputs, ref_labels = run_train.mask_tokens(
            ids.clone(), tok, Namespace(mlm_probability=0.5), langs, lang_id
        )
        torch.manual_seed(seed)
        inputs, labels = mask_tokens(ids, ~special & (ids != pad) & (langs != lang_id), mlm, 0.5)
        assert torch.equal(labels, ref_labels) and torch.equal(inputs, ref_inputs)
        assert (labels[langs == lang_id] == -100).all()  # one language masked per pass


def test_head_gradients_save_and_reload(tiny_mlm, tmp_path):
    enc = load_encoder(str(tiny_mlm))
    enc.attach_mlm_head(str(tiny_mlm), ["tlm"])
    decoder = enc.__dict__["_mlm_model"].get_output_embeddings()
    assert decoder.weight is enc.model.get_input_embeddings().weight  # tied to the encoder
    ids = enc.tokenize_words([["Das", "ist", "gut"]]).input_ids
    select = torch.zeros_like(ids, dtype=torch.bool)
    select[0, 2] = True
    logits = enc.masked_lm().logits(ids, ids != 0, select)
    assert logits.shape == (1, len(enc.tokenizer))
    logits.logsumexp(-1).sum().backward()
    assert enc.model.encoder.layer[0].attention.self.query.weight.grad.abs().sum() > 0
    assert any(p.grad is not None for p in enc.mlm_head.parameters())
    enc.save(tmp_path / "saved")
    again = load_encoder(str(tmp_path / "saved"))  # the plain encoder loads it
    again.attach_mlm_head(str(tmp_path / "saved"), ["tlm"])  # and the head comes back
    for (n, a), (_, b) in zip(
        enc.mlm_head.state_dict().items(), again.mlm_head.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), n


def test_model_without_head_is_an_error_naming_model_and_objective(tiny_model):
    enc = load_encoder(str(tiny_model))
    with pytest.raises(EncoderLoadError) as info:
        enc.attach_mlm_head(str(tiny_model), ["tlm"])
    assert str(tiny_model) in str(info.value) and "tlm" in str(info.value)
    assert "masked-LM head" in str(info.value)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_head_with_non_finite_weights_is_refused_naming_the_tensor(bad, tiny_mlm, tmp_path):
    """The encoder's weights are checked when it loads; the head's (not part of the encoder's
    model, ignored there) must be checked when it is attached."""
    import shutil

    from transformers import BertForMaskedLM

    path = Path(shutil.copytree(tiny_mlm, tmp_path / "m"))
    model = BertForMaskedLM.from_pretrained(path)
    with torch.no_grad():
        model.cls.predictions.transform.dense.weight[0, :3] = bad
    model.save_pretrained(path)
    enc = load_encoder(str(path))  # the encoder's own tensors are all finite
    with pytest.raises(EncoderLoadError) as info:
        enc.attach_mlm_head(str(path), ["tlm"])
    text = " ".join(str(info.value).split())
    assert "cls.predictions.transform.dense.weight holds 3 non-finite value(s)" in text
    assert str(path / "model.safetensors") in text


def test_batch_without_head_is_an_error():
    from test_objective_so_co import batch

    with pytest.raises(ValueError, match="mlm"):
        TranslationLM(hidden_size=2).loss(batch())


@pytest.mark.parametrize("bad", [{"order": "x"}, {"probability": 0.0}, {"probability": 1.0}])
def test_bad_options_rejected(bad):
    with pytest.raises(ValueError):
        TranslationLM.from_options(bad, hidden_size=2)


@pytest.mark.parametrize("order", ["random", "both"])
def test_two_training_steps(order, tiny_mlm, smoke_overrides, tmp_path, monkeypatch):
    monkeypatch.setenv("XALIGN_CACHE_DIR", str(tmp_path / "cache"))
    overrides = [o for o in smoke_overrides if not o.startswith("model.name=")]
    out = run_json(
        [
            "-o",
            "tlm",
            *as_sets(overrides),
            "--set",
            f"model.name={tiny_mlm}",
            "--set",
            "train.max_steps=2",
            "--set",
            "data.languages=[de]",
            "--set",
            f"objectives.tlm.order={order}",
        ]
    )
    # a random head: each pass's CE ≈ ln V; 2 passes per order
    passes = 2 if order == "random" else 4
    value = out["metrics"]["de-en/tlm"]
    assert value == pytest.approx(passes * math.log(600), rel=0.1)
    model = Path(out["output_dir"]) / "model"  # saved with its trained head
    load_encoder(str(model)).attach_mlm_head(str(model), ["tlm"])


@pytest.mark.integration
def test_embedded_e5_gets_a_clear_error(smoke_overrides, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from xalign.cli import app

    monkeypatch.setenv("XALIGN_CACHE_DIR", str(tmp_path / "cache"))
    overrides = [o for o in smoke_overrides if not o.startswith("model.name=")]
    result = CliRunner().invoke(
        app,
        ["run", "-q", "-o", "tlm", *as_sets(overrides), "--set", "data.languages=[de]"],
    )
    assert result.exit_code != 0
    text = result.output + str(result.exception)
    assert "packaged:multilingual-e5-small" in text and "tlm" in text
    assert "no trained masked-LM head" in text
