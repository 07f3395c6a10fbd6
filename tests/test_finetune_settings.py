"""One FinetuneSettings that fine-tuned task configs extend: a near-miss of a setting's name is
an error when the config class is defined, the built-in configs keep XTREME's defaults, and a
bad combination fails at option time."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import xalign_udpos
import xalign_xnli
import xalign_xquad

from xalign import FinetuneSettings, XalignError


@pytest.mark.parametrize(
    "typo, meant",
    [("learning_rat", "learning_rate"), ("epoch", "epochs"), ("grad_acum", "grad_accum")],
)
def test_a_misspelled_setting_fails_when_the_config_is_defined(typo, meant):
    message = rf"\.{typo} is not a fine-tuning setting; did you mean '{meant}'"
    with pytest.raises(TypeError, match=message):
        type("Bad", (FinetuneSettings,), {"__annotations__": {typo: float}, typo: 1.0})


def test_own_options_and_exact_overrides_are_fine():
    @dataclass
    class Good(FinetuneSettings):
        eval_batch_size: int = 64  # close to batch_size (ratio 0.8) but its own option
        learning_rate: float = 1e-4

    settings = FinetuneSettings.from_options(Good())
    assert type(settings) is FinetuneSettings and settings.learning_rate == 1e-4


def test_from_options_of_a_plain_object_checks_near_misses():
    class Plain:
        def __init__(self, **kw):
            self.__dict__.update(kw)

    assert FinetuneSettings.from_options(Plain(epochs=7, other=1)).epochs == 7
    with pytest.raises(TypeError, match=r"Plain\.epoch is not a fine-tuning setting"):
        FinetuneSettings.from_options(Plain(epoch=7))


@pytest.mark.parametrize(
    "config, expected",
    [
        (xalign_xnli.XnliConfig, dict(learning_rate=2e-5, epochs=5, batch_size=32, warmup_steps=0)),
        (
            xalign_xquad.XquadConfig,
            dict(learning_rate=3e-5, epochs=3, warmup_steps=500, weight_decay=1e-4),
        ),
        (xalign_udpos.UdposConfig, dict(learning_rate=2e-5, epochs=10, batch_size=32)),
        (
            xalign_xnli.XnliMiniConfig,
            dict(learning_rate=1e-4, epochs=2, batch_size=16, freeze_embeddings=True),
        ),
    ],
)
def test_builtin_configs_extend_the_settings_with_xtreme_defaults(config, expected):
    assert issubclass(config, FinetuneSettings)
    settings = config().settings()
    assert {k: getattr(settings, k) for k in expected} == expected


def test_a_bad_combination_fails_at_option_time():
    with pytest.raises(XalignError, match="batch_size must be a positive multiple of grad_accum"):
        xalign_xnli.Xnli.from_options({"batch_size": 3, "grad_accum": 2})


def test_every_setting_has_help_text_for_xalign_plugins():
    from dataclasses import fields

    from xalign.cli.common import field_help

    helps = field_help(xalign_xnli.XnliConfig)
    assert all(helps[f.name] for f in fields(FinetuneSettings)), helps
    assert helps["grad_accum"].startswith("micro-batches per optimiser step")
