"""distill (Reimers & Gurevych 2020): hand-computed values, sentence-transformers' MSELoss as
reference, the teacher is never trained nor saved, training runs and 2 gloo ranks = 1 rank."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from _launch import two_ranks_vs_one
from conftest import as_sets, build_tiny_encoder, run_json
from test_objective_translation_ranking import side
from xalign_distill import Distill, distill_losses

import xalign
from xalign.errors import XalignError


def objective(**options) -> Distill:
    return Distill.from_options(options, hidden_size=2)


def test_two_sentences_by_hand():
    """student src (1,0), (0,2); student en (1,1), (0,0); teacher en (1,0), (0,0):
    sentence 0: 0 + (0² + 1²)/2 = 0.5; sentence 1: (0² + 2²)/2 + 0 = 2; mean 1.25."""
    src = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    en = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    teacher = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    b = xalign.AlignmentBatch("de-en", side(src), side(en, "en"), tgt_frozen=side(teacher, "en"))
    assert objective().loss(b).item() == pytest.approx(1.25)
    # without the student-English term: (0 + 2) / 2
    assert objective(student_english=False).loss(b).item() == pytest.approx(1.0)
    named = xalign.AlignmentBatch(
        "de-en", side(src), side(en, "en"), teachers={"some/teacher": side(teacher, "en")}
    )
    assert objective(teacher="some/teacher").loss(named).item() == pytest.approx(1.25)


def test_matches_sentence_transformers_mse_loss():
    """Twice MSELoss over the two columns (it averages them, the paper's Eq. 1 sums them)."""
    from sentence_transformers.sentence_transformer.losses import MSELoss

    g = torch.Generator().manual_seed(3)
    src, en, teacher = (torch.randn(5, 8, generator=g, dtype=torch.float64) for _ in range(3))
    ref = MSELoss(None).compute_loss_from_embeddings([src, en], [teacher, teacher])
    assert distill_losses(src, en, teacher).mean().item() == pytest.approx(2 * ref.item(), abs=1e-6)
    ref_src = MSELoss(None).compute_loss_from_embeddings([src], [teacher])
    assert distill_losses(src, None, teacher).mean().item() == pytest.approx(
        ref_src.item(), abs=1e-6
    )
    b = xalign.AlignmentBatch(
        "de-en", side(src.float()), side(en.float(), "en"), tgt_frozen=side(teacher.float())
    )
    got = Distill.from_options({}, hidden_size=8).loss(b).item()
    assert got == pytest.approx(2 * ref.item(), rel=1e-6)


def test_needs_follow_the_teacher_option():
    assert objective().needs() == xalign.Needs(frozen_target=True)
    named = objective(teacher="org/model").needs()
    assert named == xalign.Needs(teacher="org/model") and not named.frozen_target
    assert "teacher vectors (org/model)" in named.describe()


def test_gradient_reaches_the_student_only():
    g = torch.Generator().manual_seed(1)
    hidden = [torch.randn(3, 1, 4, generator=g, requires_grad=True) for _ in range(3)]
    src, en, teacher = (side(h[:, 0]) for h in hidden)
    for s, h in zip((src, en, teacher), hidden, strict=True):
        s.hidden = h
    b = xalign.AlignmentBatch("de-en", src, en, tgt_frozen=teacher)
    Distill.from_options({}, hidden_size=4).loss(b).backward()
    assert hidden[0].grad.abs().sum() > 0 and hidden[1].grad.abs().sum() > 0
    assert hidden[2].grad is None  # the teacher's vectors are constants


@pytest.mark.parametrize(
    "options, key",
    [
        ({"pooling": "max"}, "pooling"),
        ({"teacher": " "}, "teacher"),
        ({"teacher": "/nonexistent/model"}, "teacher"),
        ({"teacher": "./no-such-teacher"}, "teacher"),
        ({"teacher": "../no-such-teacher"}, "teacher"),
        ({"teacher": "~/no-such-teacher-xalign"}, "teacher"),
    ],
)
def test_bad_options_name_the_key(options, key):
    with pytest.raises((ValueError, XalignError), match=f"distill.*{key}"):
        objective(**options)


def overrides(tiny_model: Path, tmp_path: Path, tracking_uri: str, *extra: str) -> list[str]:
    return as_sets(
        [
            f"model.name={tiny_model}",
            "data.limit=16",
            "data.languages=[de,fr]",
            "train.batch_size=8",
            "train.max_steps=2",
            f"train.output_dir={tmp_path / 'out'}",
            f"tracking.uri={tracking_uri}",
            *extra,
        ]
    )


def test_default_teacher_is_the_frozen_initial_model(
    tiny_model, tmp_path, tracking_uri, one_thread
):
    """With the initial model as teacher and no dropout, step 1's student-English term is 0:
    the logged loss is the source term alone, which the hand formula gives from the model."""
    out = run_json(["-o", "distill", *overrides(tiny_model, tmp_path, tracking_uri)])
    assert math.isfinite(out["metrics"]["de-en/distill"]) and out["metrics"]["de-en/distill"] > 0
    from mlflow.tracking import MlflowClient

    hist = MlflowClient(tracking_uri).get_metric_history(out["run_id"], "de-en/distill")
    first = min(hist, key=lambda m: m.step).value
    assert first > 0
    # the same value without the English term: the English term is exactly 0 at step 1
    out2 = run_json(
        [
            "-o",
            "distill",
            *overrides(
                tiny_model,
                tmp_path / "b",
                tracking_uri,
                "objectives.distill.student_english=false",
            ),
        ]
    )
    hist2 = MlflowClient(tracking_uri).get_metric_history(out2["run_id"], "de-en/distill")
    assert min(hist2, key=lambda m: m.step).value == pytest.approx(first, rel=1e-5)


def test_named_teacher_is_frozen_unsaved_and_outside_the_optimizer(
    tiny_model, tmp_path, tracking_uri, one_thread
):
    from safetensors.torch import load_file

    from xalign.config import load_config
    from xalign.recipe import AlignmentRecipe

    teacher_dir = build_tiny_encoder(tmp_path / "teacher", seed=7)
    teacher_init = load_file(str(teacher_dir / "model.safetensors"))
    sets = [
        f"model.name={tiny_model}",
        "data.limit=16",
        "data.languages=[de]",
        "train.batch_size=8",
        "train.max_steps=2",
        "train.lr=0.01",
        "train.keep_optimizer_state=true",  # the final checkpoint is inspected below
        f"train.output_dir={tmp_path / 'out'}",
        f"tracking.uri={tracking_uri}",
        f"objectives.distill.teacher={teacher_dir}",
    ]
    cfg = load_config(None, overrides=sets, objectives=["distill"])
    recipe = AlignmentRecipe(cfg, show_progress=False)
    recipe.setup()
    try:
        result = recipe.train()
    finally:
        recipe.cleanup()
    teacher = recipe.teachers[str(teacher_dir)]
    assert not teacher.training
    assert not any(p.requires_grad for p in teacher.parameters())
    assert all(p.grad is None for p in teacher.parameters())
    in_optimizer = {id(p) for group in recipe.optimizer.param_groups for p in group["params"]}
    assert not in_optimizer & {id(p) for p in teacher.parameters()}
    assert not any(teacher is m for m in recipe.module.modules())
    # its weights are unchanged, the student's moved
    for name, value in teacher.model.state_dict().items():
        assert torch.equal(value, teacher_init[name]), name
    student = load_file(str(result.output_dir / "model" / "model.safetensors"))
    start = load_file(str(tiny_model / "model.safetensors"))
    assert max((student[k] - start[k]).abs().max().item() for k in start) > 1e-4
    # neither the saved model nor the checkpoint holds a second encoder
    assert set(student) == set(start)
    ckpt = sorted((result.output_dir / "checkpoints").glob("step-*"))[-1]
    keys = set(load_file(str(ckpt / "model.safetensors")))
    assert keys == set(recipe.module.state_dict()) and keys
    assert all(k.startswith("encoder.model.") for k in keys)  # the student only


def test_teacher_of_another_size_is_a_clear_error(tiny_model, tmp_path, tracking_uri, one_thread):
    from typer.testing import CliRunner

    from xalign.cli import app

    small = build_tiny_encoder(tmp_path / "small", hidden=16)
    result = CliRunner().invoke(
        app,
        [
            "run",
            "-q",
            "-o",
            "distill",
            *overrides(tiny_model, tmp_path, tracking_uri, f"objectives.distill.teacher={small}"),
        ],
    )
    assert result.exit_code != 0
    text = result.output + str(result.exception)
    assert "distill" in text and "16-dimensional" in text and "32-dimensional" in text


@pytest.mark.distributed
def test_two_ranks_match_one_rank(tiny_model, tmp_path):
    """A per-sentence loss: the 2-rank run equals the 1-rank run."""
    two_ranks_vs_one("distill", tiny_model, tmp_path, ["train.lr=0.01", "train.reg_weight=0"])
