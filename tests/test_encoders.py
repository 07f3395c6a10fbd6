import pytest
import torch

from xalign.encoders import load_encoder
from xalign.encoders.encoder import EncoderLoadError, resolve_model_dir


@pytest.mark.parametrize("value", ["1", "true", "YES", "on"])
def test_offline_hub_error_says_how_to_use_a_local_copy(value, monkeypatch, tmp_path):
    """HF_HUB_OFFLINE set after huggingface_hub was imported is honoured: no network
    attempt (no retries until timeouts), and the error says how to use a local copy."""
    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(EncoderLoadError) as err:
        load_encoder("bert-base-multilingual-cased", setting="model.name")
    msg = str(err.value)
    assert "bert-base-multilingual-cased" in msg and "--local-dir" in msg
    assert "model.name=" in msg and "HF_HUB_OFFLINE=1" in msg


@pytest.mark.parametrize(
    ("setting", "says"),
    [
        ("model.name", "pass `--set model.name=./models/nope-model`"),
        ("objectives.x.teacher", "pass `--set objectives.x.teacher=./models/nope-model`"),
        ("--model", "pass `--model ./models/nope-model`"),
        (None, "name ./models/nope-model instead of 'org/nope-model'"),
    ],
)
def test_the_local_copy_hint_names_the_setting_that_named_the_model(
    setting, says, monkeypatch, tmp_path
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(EncoderLoadError) as err:
        load_encoder("org/nope-model", setting=setting)
    msg = str(err.value)
    assert says in msg and "hf download org/nope-model --local-dir ./models/nope-model" in msg
    if setting != "model.name":
        assert "model.name" not in msg


def test_unknown_packaged_model():
    with pytest.raises(EncoderLoadError, match="available: multilingual-e5-small"):
        resolve_model_dir("packaged:nope")


def test_word_index_maps_subwords_to_words(tiny_model):
    enc = load_encoder(str(tiny_model))
    sents = [["Das", "Haus", "ist", "unglaublich", "klein", "."], ["Ja"]]
    enc_words = enc.tokenize_words(sents)
    assert enc_words.n_words.tolist() == [6, 1]
    for b, words in enumerate(sents):
        ids = enc_words.input_ids[b]
        for w, word in enumerate(words):
            pieces = ids[enc_words.word_index[b] == w].tolist()
            text = enc.tokenizer.decode(pieces).replace(" ", "")
            assert text == word
        assert (enc_words.word_index[b][enc_words.attention_mask[b] == 0] == -1).all()


def test_truncation_drops_whole_words(tiny_model):
    enc = load_encoder(str(tiny_model), max_length=6)
    out = enc.tokenize_words([["eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben"]])
    kept = int(out.n_words[0])
    assert 1 <= kept < 7
    assert set(out.word_index[0].tolist()) - {-1} == set(range(kept))


def test_layer_choice(tiny_model):
    words = [["Das", "Haus", "."]]
    last = load_encoder(str(tiny_model)).encode(words, ["de"]).hidden
    first = load_encoder(str(tiny_model), layer=1).encode(words, ["de"]).hidden
    also_last = load_encoder(str(tiny_model), layer=2).encode(words, ["de"]).hidden
    assert not torch.allclose(last, first)
    torch.testing.assert_close(last, also_last)
    with pytest.raises(ValueError, match="out of range"):
        load_encoder(str(tiny_model), layer=7)


def test_frozen_copy_is_independent(tiny_model):
    enc = load_encoder(str(tiny_model))
    frozen = enc.frozen_copy()
    assert not any(p.requires_grad for p in frozen.parameters())
    with torch.no_grad():
        next(enc.parameters()).add_(1.0)
    assert not torch.equal(next(enc.parameters()), next(frozen.parameters()))


def test_saved_model_reloads(tiny_model, tmp_path):
    enc = load_encoder(str(tiny_model))
    enc.save(tmp_path / "m")
    again = load_encoder(str(tmp_path / "m"))
    words = [["Das", "Haus", "."]]
    enc.eval()
    torch.testing.assert_close(enc.encode(words, ["de"]).hidden, again.encode(words, ["de"]).hidden)


def test_a_task_loading_the_model_of_xalign_eval_does_not_hint_at_set(
    monkeypatch, tmp_path, tracking_uri
):
    """xalign eval MODEL has no --set: a task plugin's load_encoder(model) must not tell the
    user to pass `--set model.name=...` (the hint names the folder to give instead)."""
    from typer.testing import CliRunner

    from xalign.cli import app

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    args = ["eval", "org/nope-model", "--task", "tatoeba", "--tracking-uri", tracking_uri]
    out = " ".join(CliRunner().invoke(app, args).output.split())
    assert "hf download org/nope-model --local-dir ./models/nope-model" in out
    assert "model.name" not in out
    assert "name ./models/nope-model instead of 'org/nope-model'" in out
    # a plugin's own call names no setting either
    with pytest.raises(EncoderLoadError) as err:
        load_encoder("org/nope-model")
    assert "model.name" not in str(err.value)


def test_the_run_config_model_hint_names_model_name(monkeypatch, tmp_path):
    """The model of a run config (xalign prepare/run/compare) is set with model.name."""
    from xalign.config import load_config
    from xalign.data.prepare import prepare_config

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    cfg = load_config(None, ["model.name=org/nope-model"], objectives=["sinkhorn"])
    with pytest.raises(EncoderLoadError, match=r"--set model.name=./models/nope-model"):
        prepare_config(cfg)


def test_a_task_model_for_fine_tuning_gets_the_local_copy_hint(monkeypatch, tmp_path):
    """load_for_finetuning (xnli, pos: xalign eval MODEL --task xnli-mini) on a hub id it
    cannot reach says how to use a local copy, like load_encoder (not a bare OSError)."""
    from transformers import AutoModelForSequenceClassification

    from xalign.evaluation.finetune import load_for_finetuning

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(EncoderLoadError) as err:
        load_for_finetuning("org/nope-model", AutoModelForSequenceClassification, num_labels=2)
    msg = str(err.value)
    assert "hf download org/nope-model --local-dir ./models/nope-model" in msg
    assert "HF_HUB_OFFLINE=1" in msg and "model.name" not in msg


def test_a_lora_folder_whose_base_is_out_of_reach_names_its_adapter_config(monkeypatch, tmp_path):
    """A LoRA run's model folder names its base model in adapter_config.json: that is where
    a local copy goes (the user named the folder, not the base)."""
    import json

    folder = tmp_path / "run-model"
    folder.mkdir()
    config = folder / "adapter_config.json"
    config.write_text(json.dumps({"base_model_name_or_path": "org/nope-model"}))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(EncoderLoadError) as err:
        load_encoder(str(folder))
    msg = " ".join(str(err.value).split())
    assert f"set base_model_name_or_path in {config} to ./models/nope-model" in msg
    assert "instead of 'org/nope-model'" not in msg and "model.name" not in msg


@pytest.mark.parametrize("ref", ["./models/nope", "/no/such/model", "~/no-such-model-xyz"])
def test_a_model_path_that_does_not_exist_is_not_sent_to_the_hub(ref, monkeypatch, tmp_path):
    """A path-like model reference (xalign.load_encoder, xalign prepare --set model.name=...)
    that does not exist: the message says so, not 'hf download ./models/nope'."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(EncoderLoadError) as err:
        load_encoder(ref, setting="model.name")
    msg = str(err.value)
    assert f"{ref}: no such folder" in msg and "hf download" not in msg
