from pathlib import Path

import pytest

from xalign.config import ConfigError, RunConfig, load_config, parse_override

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_match_configs_default_yaml():
    """configs/default.yaml documents the built-in defaults (the README demo)."""
    from_file = load_config(ROOT / "configs" / "default.yaml").to_dict()
    defaults = RunConfig().to_dict()
    for section in ("model", "data", "train", "tracking"):
        assert from_file[section] == defaults[section], section
    assert set(from_file["objectives"]) == set(defaults["objectives"]) == {"sinkhorn"}


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "configs").glob("*.yaml")))
def test_shipped_configs_parse(name):
    cfg = load_config(ROOT / "configs" / f"{name}.yaml")
    assert cfg.objectives


def test_chosen_selflinks_settings_are_the_screening_base_plus_the_documented_overrides():
    """docs/training-settings.md: run J2 = flores-selflinks-l2.yaml plus these overrides, and
    flores-selflinks.yaml holds J2's settings; the two must give the same resolved config."""
    chosen = load_config(ROOT / "configs" / "flores-selflinks.yaml").to_dict()
    overrides = [
        "objectives.contrastive.pooling=mean",
        "objectives.contrastive.temperature=0.05",
        "train.lr=2e-4",
        "train.reg_reduction=mean",
    ]
    screened = load_config(
        ROOT / "configs" / "flores-selflinks-l2.yaml", overrides, objectives=["contrastive"]
    ).to_dict()
    assert chosen == screened
    assert set(chosen["objectives"]) == {"contrastive"}


def test_paper_settings_in_wordot():
    cfg = load_config(ROOT / "configs" / "wordot.yaml")
    t = cfg.train
    assert (t.lr, t.batch_size, t.grad_accum, t.epochs, t.reg_weight) == (5e-5, 24, 2, 1, 1.0)
    assert cfg.data.pairs_per_language == 250_000
    assert cfg.data.languages == ["bg", "de", "el", "es", "fr"]
    assert cfg.model.name == "bert-base-multilingual-cased" and cfg.model.pooling == "last"
    assert cfg.objective_options("sinkhorn")["level"] == "word"


def test_subot_and_large_variants_differ_from_wordot_only_where_they_say():
    word = load_config(ROOT / "configs" / "wordot.yaml").to_dict()
    sub = load_config(ROOT / "configs" / "subot.yaml").to_dict()
    large = load_config(ROOT / "configs" / "wordot-large.yaml").to_dict()
    assert sub["objectives"]["sinkhorn"]["level"] == "subword"
    sub["objectives"]["sinkhorn"]["level"] = "word"
    assert sub == word
    assert len(large["data"]["languages"]) == 14 and "en" not in large["data"]["languages"]
    assert set(word["data"]["languages"]) < set(large["data"]["languages"])
    large["data"]["languages"] = word["data"]["languages"]
    assert large == word


def test_overrides_are_typed_and_nested():
    cfg = load_config(
        None,
        [
            "train.lr=1e-4",
            "data.languages=[de, fr]",
            "train.max_steps=3",
            "objectives.sinkhorn.blur=0.1",
            "model.revision=null",
        ],
    )
    assert cfg.train.lr == pytest.approx(1e-4) and isinstance(cfg.train.lr, float)
    assert cfg.data.languages == ["de", "fr"]
    assert cfg.train.max_steps == 3
    assert cfg.objective_options("sinkhorn") == {"blur": 0.1}
    assert cfg.model.revision is None


def test_objective_flags_with_weights(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("objectives:\n  sinkhorn: {blur: 0.2}\n  l2: {}\n")
    cfg = load_config(f, objectives=["sinkhorn:2", "other:0.5"])
    assert cfg.objective_weights() == {"sinkhorn": 2.0, "other": 0.5}
    assert cfg.objective_options("sinkhorn") == {"blur": 0.2}


@pytest.mark.parametrize(
    "bad, msg",
    [
        (["train.nope=1"], "unknown option"),
        (["nosection.x=1"], "unknown section"),
        (["train.lr"], "key=value"),
        (["train.optimizer=rmsprop"], "adam, adamw or sgd"),
    ],
)
def test_bad_overrides_are_named(bad, msg):
    with pytest.raises(ConfigError, match=msg):
        load_config(None, bad)


def test_bad_yaml_names_file(tmp_path):
    f = tmp_path / "broken.yaml"
    f.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml"):
        load_config(f)


def test_fingerprint_ignores_where_results_go():
    a = load_config(None, ["train.output_dir=/x", "tracking.uri=sqlite:///a.db"])
    b = load_config(None, ["train.output_dir=/y"])
    c = load_config(None, ["train.lr=1e-3"])
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_fingerprint_ignores_gradient_checkpointing_but_not_dropout():
    """Checkpointing changes memory, not weights (bit-identical: tests/test_train_lean.py), so
    a run trained without it is reused or resumed with it; dropout changes the weights."""
    plain = load_config(None, ["train.gradient_checkpointing=false"])
    ckpt = load_config(None, ["train.gradient_checkpointing=true"])
    assert plain.fingerprint() == ckpt.fingerprint()
    assert plain.fingerprint() != load_config(None, ["train.dropout=false"]).fingerprint()


def test_parse_override_value_kinds():
    assert parse_override("a.b=3") == (["a", "b"], 3)
    assert parse_override("a=true") == (["a"], True)
    assert parse_override("a=5e-5")[1] == pytest.approx(5e-5)


def test_extends_merges_mappings_and_replaces_the_rest(tmp_path):
    (tmp_path / "base.yaml").write_text(
        "data: {languages: [de, fr], limit: 10}\ntrain: {lr: 1.0e-4}\n"
        "objectives: {sinkhorn: {blur: 0.1, level: word}}\n"
    )
    (tmp_path / "sub").mkdir()
    child = tmp_path / "sub" / "child.yaml"
    child.write_text(
        "extends: ../base.yaml\ndata: {languages: [el]}\nobjectives: {sinkhorn: {level: subword}}\n"
    )
    cfg = load_config(child, ["train.seed=3"])
    assert cfg.data.languages == ["el"] and cfg.data.limit == 10
    assert cfg.train.lr == pytest.approx(1e-4) and cfg.train.seed == 3
    assert cfg.objective_options("sinkhorn") == {"blur": 0.1, "level": "subword"}


def test_extends_errors_name_the_files(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("extends: b.yaml\n")
    b.write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="'extends' cycle"):
        load_config(a)
    a.write_text("extends: missing.yaml\n")
    with pytest.raises(ConfigError, match=r"missing\.yaml \(extended by .*a\.yaml\)"):
        load_config(a)


def test_saved_config_round_trips_words_yaml11_reads_as_booleans(tmp_path):
    """The resolved config.yaml a run writes (and --resume reads) keeps 'no', 'on', 'off'."""
    cfg = load_config(
        None,
        [
            "data.languages=[no, on, de]",
            "train.mixed_precision=no",
            "tracking.run_name=off",
            "train.dropout=no",
        ],
    )
    saved = tmp_path / "config.yaml"
    saved.write_text(cfg.to_yaml())
    again = load_config(saved)
    assert again.to_dict() == cfg.to_dict()
    assert again.data.languages == ["no", "on", "de"] and again.train.dropout is False


@pytest.mark.parametrize(
    "spelling",
    [
        ["train.batch_size=24.0"],
        ["data.languages=bg,de,el,es,fr"],
        ["train.lr=5e-5"],
        ["train.dropout=yes"],
        ["train.betas=0.9, 0.999"],
        ["model.max_length='128'"],
    ],
)
def test_equivalent_spellings_give_the_default_fingerprint(spelling):
    assert load_config(None, spelling).fingerprint() == load_config(None).fingerprint()
