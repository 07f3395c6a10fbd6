"""``data.links: self``: links from the model being trained, with the ``align`` extraction,
refreshed during training, recorded per refresh, reproducible, usable by link objectives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import as_sets, run_json

from xalign.alignment.extract import align_sentences
from xalign.config import load_config
from xalign.encoders import load_encoder
from xalign.errors import ConfigError
from xalign.self_links import SelfLinksConfig, extract_config, is_self, model_links

SRC = [["Das", "Haus", "ist", "klein", "."], ["Ich", "bin", "hier"], ["Ja"]]
TGT = [["The", "house", "is", "small", "."], ["I", "am", "here"], ["Yes", "!"]]


@pytest.mark.parametrize("method", ["argmax", "ot"])
def test_links_are_the_align_extraction(tiny_model, method):
    """Batched extraction during training = ``xalign align``'s on each pair (same code)."""
    enc = load_encoder(str(tiny_model), layer=-1)
    enc.train()
    before = [m.training for m in enc.modules()]
    cfg = SelfLinksConfig(layer=1, method=method, threshold=0.5)
    config = extract_config(cfg, model_layer=-1)
    got = model_links(enc, SRC, TGT, "de", "en", config, batch_size=2)
    enc1 = load_encoder(str(tiny_model), layer=1)
    for s, t, links in zip(SRC, TGT, got, strict=True):
        assert links == align_sentences(enc1, s, t, "de", "en", config).links
    assert enc.layer == -1 and [m.training for m in enc.modules()] == before  # restored


def test_layer_defaults_to_the_model_layer():
    assert extract_config(SelfLinksConfig(), model_layer=3).layer == 3
    assert extract_config(SelfLinksConfig(layer=1), model_layer=3).layer == 1


def test_is_self():
    assert is_self("self") and is_self(" self ")
    assert not is_self("links/{src}-{tgt}.txt") and not is_self(None) and not is_self({})


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("data.self_links.method", "sinkhorn"),
        ("data.self_links.refresh_every", "-1"),
        ("data.self_links.threshold", "0"),
        ("data.self_links.batch_size", "0"),
        ("data.self_links.pooling", "max"),
    ],
)
def test_bad_options_name_the_key(key, value):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, ["data.links=self", f"{key}={value}"])


def test_fingerprint_unchanged_unless_self():
    plain = load_config(None, [])
    other = load_config(None, ["data.self_links.layer=3"])
    assert plain.fingerprint() == other.fingerprint()  # not read: not part of the identity
    own = load_config(None, ["data.links=self"])
    own3 = load_config(None, ["data.links=self", "data.self_links.layer=3"])
    assert own.fingerprint() != own3.fingerprint()


def _artifacts(tracking_uri: str, run_id: str) -> Path:
    from mlflow.tracking import MlflowClient

    return Path(MlflowClient(tracking_uri).download_artifacts(run_id, "links/self"))


def test_l2_trains_on_self_links_refreshed_and_recorded(
    smoke_overrides, tracking_uri, tmp_path, monkeypatch
):
    monkeypatch.setenv("XALIGN_CACHE_DIR", str(tmp_path / "cache"))
    args = [
        "-o",
        "l2",
        *as_sets(smoke_overrides),
        "--set",
        "data.languages=[de]",
        "--set",
        "train.epochs=2",
        "--set",
        "train.lr=1e-2",
        "--set",
        "data.links=self",
        "--set",
        "data.self_links.refresh_every=2",
    ]
    out = run_json(args)
    assert out["metrics"]["de-en/l2"] > 0  # links were found and used
    folder = _artifacts(tracking_uri, out["run_id"])
    steps = sorted(p.name for p in folder.iterdir())
    assert steps == ["step-0000000", "step-0000002"]  # at the start, then every 2 steps
    first = json.loads((folder / steps[0] / "digests.json").read_text())
    text = (folder / steps[0] / "de-en.txt").read_text()
    import hashlib

    assert first["digests"]["de-en"] == hashlib.sha256(text.encode()).hexdigest()
    assert first["ranks"] == {"0": first["digests"]}
    assert "layer -1, argmax" in first["source"]
    later = json.loads((folder / steps[1] / "digests.json").read_text())
    assert later["digests"] != first["digests"]  # recomputed from the trained weights
    # compare reuses the run: its links follow from the config, nothing to look up
    from xalign.compare.orchestrate import find_training_run
    from xalign.tracking import Tracker

    sets = [a for a in args if a not in ("-o", "--set", "l2")]
    cfg = load_config(None, sets, objectives=["l2"])
    found, why = find_training_run(Tracker(tracking_uri, cfg.tracking.experiment), cfg)
    assert found is not None and found.info.run_id == out["run_id"], why
    # the same seed and config: the same links at every refresh (no eflomal randomness)
    again = run_json([*args[:-6], "--set", f"train.output_dir={tmp_path / 'again'}", *args[-6:]])
    folder2 = _artifacts(tracking_uri, again["run_id"])
    for step in steps:
        a = json.loads((folder / step / "digests.json").read_text())["digests"]
        b = json.loads((folder2 / step / "digests.json").read_text())["digests"]
        assert a == b


@pytest.mark.parametrize("objective", ["contrastive", "so"])
def test_other_link_objectives_train_on_self_links(
    objective, smoke_overrides, tmp_path, monkeypatch
):
    monkeypatch.setenv("XALIGN_CACHE_DIR", str(tmp_path / "cache"))
    extra = ["--set", "objectives.so.guide=links"] if objective == "so" else []
    out = run_json(
        [
            "-o",
            objective,
            *as_sets(smoke_overrides),
            "--set",
            "data.languages=[de]",
            "--set",
            "train.max_steps=2",
            "--set",
            "data.links=self",
            *extra,
        ]
    )
    value = out["metrics"][f"de-en/{objective}"]
    assert value != 0.0


@pytest.mark.distributed
def test_two_ranks_match_one_rank_on_self_links(tiny_model, tmp_path):
    """so + co + l2 on self links: per-sentence losses, so 2 gloo ranks (links computed on
    rank 0 and broadcast) end with the 1-rank weights."""
    from _launch import assert_same_training, launch, model_weights
    from conftest import migrated_sqlite_uri

    common = ["-o", "so", "-o", "co", "-o", "l2"]
    for o in (
        f"model.name={tiny_model}",
        "data.limit=16",
        "data.languages=[de]",
        "train.batch_size=8",
        "train.optimizer=sgd",
        "train.lr=0.05",
        "train.max_grad_norm=null",
        "data.links=self",
        "data.self_links.refresh_every=1",
        f"tracking.uri={migrated_sqlite_uri(tmp_path / 'm.db')}",
    ):
        common += ["--set", o]
    a, b = (
        model_weights(launch([*common, "--set", f"train.output_dir={tmp_path / d}"], w))
        for w, d in ((1, "a"), (2, "b"))
    )
    assert_same_training(a, b, tiny_model)


def test_run_says_where_its_links_came_from(smoke_overrides, tracking_uri, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from xalign.cli import app

    monkeypatch.setenv("XALIGN_CACHE_DIR", str(tmp_path / "cache"))
    args = ["run", "-o", "l2", *as_sets(smoke_overrides), "--set", "data.languages=[de]"]
    result = CliRunner().invoke(app, [*args, "--set", "data.links=self"])
    assert result.exit_code == 0, result.output
    line = next(x for x in result.stderr.splitlines() if x.startswith("word links:"))
    assert line.startswith("word links: intersection: self (step 0") and "de-en " in line
    assert line.endswith(" per sentence")


def test_a_layer_out_of_range_names_the_key(tiny_model):
    """data.self_links.layer beyond the model's hidden states: a ConfigError naming the key
    (not an IndexError from deep in the extraction), checked before any pair is encoded."""
    from xalign.self_links import SelfLinks

    enc = load_encoder(str(tiny_model))
    n = enc.model.config.num_hidden_layers
    for layer in (n + 1, -n - 2):
        links = SelfLinks(SelfLinksConfig(layer=layer), -1, [], [], target="en")
        with pytest.raises(ConfigError, match=rf"data\.self_links\.layer {layer} out of range"):
            links.refresh(enc, 0)
    for layer in (n, -n - 1):  # the last and the embeddings: in range
        SelfLinks(SelfLinksConfig(layer=layer), -1, [], [], target="en").refresh(enc, 0)
