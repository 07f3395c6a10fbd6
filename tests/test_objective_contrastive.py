"""The ``contrastive`` objective (Wu & Dredze 2020): hand-computed values, heads, needs, runs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner
from xalign_contrastive import ContrastiveAlignment

from xalign import AlignmentBatch, LinkSpec, Side, testing
from xalign.cli import app

GDFA = LinkSpec("grow-diag-final-and", one_to_one=True, drop_identical=True, max_words=64)


def make_side(
    sentences: list[list[list[float]]], lang: str, *, last: list[list[list[float]]] | None = None
) -> Side:
    """``[CLS] w0a w0b w1a w1b ... [SEP]``: two subwords per word, first = given vector.

    The second subword holds ``last`` (default: a large decoy that must not be used).
    """
    subwords = [
        [[vec, last[b][w] if last else [-50.0 * (w + 1)] * len(vec)] for w, vec in enumerate(words)]
        for b, words in enumerate(sentences)
    ]
    return testing.make_side(vectors=subwords, lang=lang, pad_value=0.0)


def make_batch(src, tgt, links, *, src_last=None, tgt_last=None) -> AlignmentBatch:
    return AlignmentBatch(
        "de-en",
        make_side(src, "de", last=src_last),
        make_side(tgt, "en", last=tgt_last),
        None,
        {GDFA: links},
    )


def objective(**options) -> ContrastiveAlignment:
    return ContrastiveAlignment.from_options(options, hidden_size=2)


# ---------------------------------------------------------------- closed forms
ORTHO_SRC = [[[1.0, 0.0]], [[0.0, 3.0]]]  # scaled: cosine ignores the norm
ORTHO_TGT = [[[2.0, 0.0]], [[0.0, 1.0]]]
ORTHO_LINKS = [{(0, 0)}, {(0, 0)}]


@pytest.mark.parametrize("tau", [1.0, 0.1])
def test_weak_closed_form(tau):
    # S = I / tau: each row's CE is log(1 + e^{-1/tau}), in both directions
    loss = objective(temperature=tau).loss(make_batch(ORTHO_SRC, ORTHO_TGT, ORTHO_LINKS))
    assert loss.item() == pytest.approx(math.log1p(math.exp(-1 / tau)), abs=1e-6)


@pytest.mark.parametrize("tau", [1.0, 0.1])
def test_strong_closed_form(tau):
    # each item: partner cos 1, the two other items cos 0 -> log(1 + 2 e^{-1/tau})
    loss = objective(variant="strong", temperature=tau).loss(
        make_batch(ORTHO_SRC, ORTHO_TGT, ORTHO_LINKS)
    )
    assert loss.item() == pytest.approx(math.log1p(2 * math.exp(-1 / tau)), abs=1e-6)


# ---------------------------------------------------------------- independent numpy reference
SRC = [[[1.0, 2.0], [0.5, -1.0], [2.0, 0.3]], [[-1.0, 1.0], [0.2, 0.9]]]
TGT = [[[0.8, 1.5], [1.0, 1.0], [-0.3, -1.2]], [[-0.5, 0.7], [0.1, 2.0], [3.0, 0.0]]]
LINKS = [{(0, 0), (1, 2)}, {(0, 1), (1, 0)}]  # pairs in (sentence, src-word) order


def np_pairs(w: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    u = np.array([SRC[0][0], SRC[0][1], SRC[1][0], SRC[1][1]])
    v = np.array([TGT[0][0], TGT[0][2], TGT[1][1], TGT[1][0]])
    return (u, v) if w is None else (u @ w.T, v @ w.T)


def np_cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return a @ b.T


def np_ce(logits: np.ndarray, goal: np.ndarray) -> float:
    out = []
    for row, g in zip(logits, goal, strict=True):
        finite = row[np.isfinite(row)]
        out.append(np.log(np.exp(finite).sum()) - row[g])
    return float(np.mean(out))


def np_weak(u, v, tau):
    s = np_cos(u, v) / tau
    goal = np.arange(len(u))
    return (np_ce(s, goal) + np_ce(s.T, goal)) / 2


def np_strong(u, v, tau):
    z = np.concatenate([u, v])
    s = np_cos(z, z) / tau
    np.fill_diagonal(s, -np.inf)
    n = len(u)
    return np_ce(s, np.concatenate([np.arange(n) + n, np.arange(n)]))


@pytest.mark.parametrize("variant,ref", [("weak", np_weak), ("strong", np_strong)])
@pytest.mark.parametrize("tau", [0.1, 0.7])
def test_matches_numpy_reference(variant, ref, tau):
    loss = objective(variant=variant, temperature=tau).loss(make_batch(SRC, TGT, LINKS))
    assert loss.item() == pytest.approx(ref(*np_pairs(), tau), rel=1e-5)


def test_default_pooling_is_first_subword_and_option_changes_it():
    src_last = [[[0.0, 1.0], [1.0, 1.0], [2.0, -1.0]], [[1.0, 0.0], [-1.0, -2.0]]]
    tgt_last = [[[1.0, 0.0], [0.0, 1.0], [1.0, -1.0]], [[2.0, 1.0], [0.0, -1.0], [1.0, 2.0]]]
    b = make_batch(SRC, TGT, LINKS, src_last=src_last, tgt_last=tgt_last)
    assert objective().loss(b).item() == pytest.approx(np_weak(*np_pairs(), 0.1), rel=1e-5)
    u = np.array([src_last[0][0], src_last[0][1], src_last[1][0], src_last[1][1]])
    v = np.array([tgt_last[0][0], tgt_last[0][2], tgt_last[1][1], tgt_last[1][0]])
    got = objective(pooling="last").loss(b).item()
    assert got == pytest.approx(np_weak(u, v, 0.1), rel=1e-5)
    assert abs(got - np_weak(*np_pairs(), 0.1)) > 1e-2


def test_linear_projection_matches_numpy():
    obj = objective(projection="linear", proj_dim=3, variant="strong")
    w = obj.head.weight.detach().numpy().astype(np.float64)
    assert w.shape == (3, 2) and obj.head.bias is None
    loss = obj.loss(make_batch(SRC, TGT, LINKS))
    assert loss.item() == pytest.approx(np_strong(*np_pairs(w), 0.1), rel=1e-4)


@pytest.mark.parametrize(
    "projection,dims,n_params",
    [("id", 16, 0), ("linear", 128, 16 * 128), ("nn", 128, 16 * 16 + 16 * 128)],
)
def test_projection_shapes(projection, dims, n_params):
    obj = ContrastiveAlignment.from_options({"projection": projection}, hidden_size=16)
    assert obj.head(torch.randn(5, 16)).shape == (5, dims)
    assert sum(p.numel() for p in obj.parameters()) == n_params
    assert all(getattr(m, "bias", None) is None for m in obj.head.modules())


def test_nn_projection_is_linear_relu_linear_and_hidden_width_option():
    obj = ContrastiveAlignment.from_options(
        {"projection": "nn", "proj_hidden": 128}, hidden_size=16
    )
    first, relu, second = obj.head
    assert isinstance(relu, torch.nn.ReLU)
    assert first.weight.shape == (128, 16) and second.weight.shape == (128, 128)
    x = torch.randn(4, 16)
    expected = torch.relu(x @ first.weight.T) @ second.weight.T
    torch.testing.assert_close(obj.head(x), expected)


def test_head_receives_gradient():
    obj = objective(projection="nn")
    obj.loss(make_batch(SRC, TGT, LINKS)).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in obj.parameters())


def test_masked_words_are_dropped_from_pairs():
    b = make_batch(SRC, TGT, LINKS)
    b.tgt.word_index[1, 3:5] = -1  # English word 1 of sentence 1 lost its subwords
    u, v = np_pairs()
    keep = [0, 1, 3]
    got = objective(variant="strong").loss(b).item()
    assert got == pytest.approx(np_strong(u[keep], v[keep], 0.1), rel=1e-5)


@pytest.mark.parametrize("links", [[set(), set()], [{(0, 0)}, set()]])
def test_fewer_than_two_pairs_gives_connected_zero(links):
    b = make_batch(SRC, TGT, links)
    loss = objective(projection="linear").loss(b)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert b.src.hidden.grad is not None


def test_needs_follow_options():
    needs = ContrastiveAlignment(hidden_size=8).needs()
    assert needs.links == (GDFA,)
    assert not needs.frozen_target and not needs.mixed_languages
    other = ContrastiveAlignment.from_options(
        {"symmetrization": "intersection", "drop_identical": False}, hidden_size=8
    ).needs()
    assert other.links == (LinkSpec("intersection", one_to_one=True, drop_identical=False),)


@pytest.mark.parametrize(
    "bad",
    [{"variant": "medium"}, {"projection": "mlp"}, {"temperature": 0}, {"symmetrization": "x"}],
)
def test_bad_options_rejected(bad):
    with pytest.raises(ValueError):
        ContrastiveAlignment.from_options(bad, hidden_size=4)


# ---------------------------------------------------------------- training through the CLI
runner = CliRunner()


@pytest.mark.parametrize("variant,projection", [("weak", "id"), ("strong", "nn")])
def test_training_decreases_contrastive_loss(
    variant, projection, smoke_overrides, tracking_uri, tmp_path, monkeypatch
):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("XALIGN_CACHE_DIR", str(tmp_path / "cache"))
    sets = sum((["--set", o] for o in smoke_overrides), [])
    result = runner.invoke(
        app,
        [
            "run",
            "-q",
            "--json",
            "-o",
            "contrastive",
            *sets,
            "--set",
            "train.lr=1e-3",
            "--set",
            "train.epochs=5",
            "--set",
            "train.reg_weight=0",
            "--set",
            f"objectives.contrastive.variant={variant}",
            "--set",
            f"objectives.contrastive.projection={projection}",
        ],
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    out = json.loads(result.stdout.strip().splitlines()[-1])
    hist = MlflowClient(tracking_uri).get_metric_history(out["run_id"], "de-en/contrastive")
    values = [m.value for m in sorted(hist, key=lambda m: m.step)]
    assert len(values) >= 6 and all(v > 0 for v in values), values
    assert sum(values[-2:]) < 0.85 * sum(values[:2]), values
