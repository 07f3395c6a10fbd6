"""Gradient balance (issue 24, part 1): per-term gradient norms, clipped fraction, warning."""

from __future__ import annotations

import math
import warnings

import pytest
import torch


def test_term_grads_are_the_hand_gradients():
    """Two terms over two micro-steps: each term's norm is the norm of its own summed
    gradient, and ``.grad`` is the gradient of the sum (as one backward would give)."""
    from xalign.recipe import TermGrads

    w = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))
    v = torch.nn.Parameter(torch.tensor([3.0]))  # used by term "b" only
    xs = [torch.tensor([0.5, 1.0, 2.0]), torch.tensor([-1.0, 0.0, 3.0])]

    def parts(x):
        return {"a": (w * x).sum() ** 2, "b": 5 * (w**2).sum() + v.sum() ** 3}

    terms = TermGrads(["a", "b"], [w, v])
    for x in xs:
        terms.backward(parts(x), 0.5, lambda t: t.backward())
    norms = terms.norms(world=1)
    # by hand: d/dw (w·x)² = 2(w·x)x, d/dw 5‖w‖² = 10w, d/dv v³ = 3v²; each times 0.5, twice
    ga = sum(2 * float(w.detach() @ x) * x for x in xs) * 0.5
    gb_w, gb_v = 2 * 10 * w.detach() * 0.5, torch.tensor([2 * 3 * 9.0 * 0.5])
    assert norms["a"] == pytest.approx(float(ga.norm()), rel=1e-6)
    assert norms["b"] == pytest.approx(math.hypot(float(gb_w.norm()), float(gb_v.norm())), rel=1e-6)
    assert torch.allclose(w.grad, ga + gb_w) and torch.allclose(v.grad, gb_v)
    total = math.hypot(float((ga + gb_w).norm()), float(gb_v.norm()))
    assert norms["total"] == pytest.approx(total, rel=1e-6)


def test_one_term_needs_no_buffer():
    from xalign.recipe import TermGrads

    w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    terms = TermGrads(["only"], [w])
    assert terms.buffers == {}
    terms.backward({"only": (w**2).sum()}, 1.0, lambda t: t.backward())
    assert terms.norms(1) == pytest.approx({"only": 2 * math.sqrt(5), "total": 2 * math.sqrt(5)})


@pytest.mark.parametrize(
    ("history", "alignment", "expected"),
    [
        ([{"sinkhorn": 1.0, "reg": 11.0}] * 3, ["sinkhorn"], ("reg", ["sinkhorn"])),
        ([{"sinkhorn": 1.0, "reg": 11.0}, {"sinkhorn": 1.0, "reg": 8.0}], ["sinkhorn"], None),
        # medians: a zero first step (dropout off: c = c0) does not hide a huge drift
        (
            [{"sinkhorn": 2.0, "reg": 0.0}] + [{"sinkhorn": 2.0, "reg": 90.0}] * 2,
            ["sinkhorn"],
            ("reg", ["sinkhorn"]),
        ),
        (
            [{"sinkhorn": 2.0, "reg": 0.0}] * 2 + [{"sinkhorn": 2.0, "reg": 90.0}],
            ["sinkhorn"],
            None,
        ),
        ([{"sinkhorn": 1.0, "reg": 10.0}], ["sinkhorn"], None),  # not MORE than 10x
        ([{"a": 1.0, "b": 30.0, "reg": 20.0}], ["a", "b"], ("b", ["a"])),  # b swamps a
        ([{"a": 1.0, "b": 30.0, "reg": 2.0}], ["a", "b"], ("b", ["a"])),
        ([{"sinkhorn": 5.0}], ["sinkhorn"], None),  # nothing to compare with
        ([{"sinkhorn": 0.0, "reg": 1e-3}], ["sinkhorn"], ("reg", ["sinkhorn"])),
        ([], ["sinkhorn"], None),
    ],
)
def test_dominant_term(history, alignment, expected):
    from xalign.recipe import dominant_term

    assert dominant_term(history, alignment) == expected


def tiny_recipe(tiny_model, tmp_path, tracking_uri, *extra: str):
    from xalign.config import load_config
    from xalign.recipe import AlignmentRecipe

    cfg = load_config(
        objectives=["sinkhorn"],
        overrides=[
            f"model.name={tiny_model}",
            "data.limit=8",
            "data.languages=[de]",
            "train.batch_size=4",
            "train.grad_accum=1",
            "train.max_steps=2",
            "train.grad_terms_first=2",
            "train.save_model=false",
            f"train.output_dir={tmp_path / 'out'}",
            f"tracking.uri={tracking_uri}",
            *extra,
        ],
    )
    recipe = AlignmentRecipe(cfg, show_progress=False)
    recipe.setup()
    return recipe


def train_recording(recipe) -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            recipe.train()
        finally:
            recipe.cleanup()
    return caught


def history(recipe, tracking_uri, key):
    from mlflow.tracking import MlflowClient

    return {
        m.step: m.value for m in MlflowClient(tracking_uri).get_metric_history(recipe.run_id, key)
    }


def test_huge_drift_weight_warns_and_logs(tiny_model, tmp_path, tracking_uri, one_thread):
    from xalign import XalignWarning
    from xalign.recipe import GradientBalanceWarning

    recipe = tiny_recipe(
        tiny_model, tmp_path, tracking_uri, "train.reg_weight=1e4", "train.max_grad_norm=1.0"
    )
    caught = train_recording(recipe)
    found = [w for w in caught if issubclass(w.category, GradientBalanceWarning)]
    assert len(found) == 1, [str(w.message) for w in caught]
    assert issubclass(GradientBalanceWarning, XalignWarning)
    text = str(found[0].message)
    assert "drift" in text and "train.reg_weight" in text and "first 2" in text
    reg = history(recipe, tracking_uri, "grad_norm/reg")
    sink = history(recipe, tracking_uri, "grad_norm/sinkhorn")
    total = history(recipe, tracking_uri, "grad_norm/total")
    clip = history(recipe, tracking_uri, "grad_norm")
    assert sorted(reg) == sorted(sink) == sorted(total) == [1, 2]
    assert reg[2] > 10 * sink[2] > 0  # (the tiny model has no dropout: step 1's drift is 0)
    for step in (1, 2):
        # the total before clipping is the one clip_grad_norm_ saw
        assert total[step] == pytest.approx(clip[step], rel=1e-4)
        # triangle inequality between the terms and their sum
        assert abs(reg[step] - sink[step]) <= total[step] * (1 + 1e-5)
        assert total[step] <= (reg[step] + sink[step]) * (1 + 1e-5)
    assert history(recipe, tracking_uri, "grad_clipped_fraction") == {1: 1.0, 2: 1.0}


def test_no_drift_no_drift_metric(tiny_model, tmp_path, tracking_uri, one_thread):
    from xalign.recipe import GradientBalanceWarning

    recipe = tiny_recipe(
        tiny_model, tmp_path, tracking_uri, "train.reg_weight=0", "train.max_grad_norm=1e9"
    )
    caught = train_recording(recipe)
    assert not [w for w in caught if issubclass(w.category, GradientBalanceWarning)]
    assert history(recipe, tracking_uri, "grad_norm/reg") == {}
    sink = history(recipe, tracking_uri, "grad_norm/sinkhorn")
    total = history(recipe, tracking_uri, "grad_norm/total")
    assert sorted(sink) == [1, 2]
    for step in (1, 2):  # one term: its gradient is the whole gradient
        assert sink[step] == pytest.approx(total[step], rel=1e-5) and sink[step] > 0
    assert history(recipe, tracking_uri, "grad_clipped_fraction") == {1: 0.0, 2: 0.0}


def test_measured_steps_follow_the_options(tiny_model, tmp_path, tracking_uri):
    recipe = tiny_recipe(tiny_model, tmp_path, tracking_uri, "train.grad_terms_every=5")
    try:
        assert [s for s in range(12) if recipe._measured(s)] == [0, 1, 4, 9]
        recipe.cfg.train.grad_terms_every = 0
        assert [s for s in range(12) if recipe._measured(s)] == [0, 1]
        recipe.cfg.train.log_grad_terms = False
        assert not any(recipe._measured(s) for s in range(12))
    finally:
        recipe.cleanup()
