"""Tests of the template objective with xalign's public test helpers (``xalign.testing``).

Run them with ``pytest tests/`` from the plugin's folder once it is installed
(``pip install -e .``).
"""

from __future__ import annotations

import pytest
import torch
from xalign.testing import check_loss, make_batch, make_side

from xalign_example import MeanCosine


def test_loss_by_hand():
    # pair 0: mean source vector (1, 0), English (2, 0): cos 1, loss 0;
    # pair 1: (0, 1) against (1, 0): cos 0, loss 1. The batch loss is the mean, 0.5.
    src = make_side(vectors=[[[1.0, 0.0], [1.0, 0.0]], [[0.0, 1.0]]])
    tgt = make_side(vectors=[[[2.0, 0.0]], [[1.0, 0.0]]], lang="en")
    loss = MeanCosine(hidden_size=2).loss(make_batch(src, tgt))
    assert loss.item() == pytest.approx(0.5)


def test_padding_and_special_tokens_are_not_read():
    src = make_side(vectors=[[[1.0, 0.0]], [[0.0, 1.0], [0.0, 1.0]]], pad_value=1e6)
    tgt = make_side(vectors=[[[1.0, 0.0]], [[0.0, 3.0]]], lang="en", pad_value=-1e6)
    loss = MeanCosine(hidden_size=2).loss(make_batch(src, tgt))
    assert loss.item() == pytest.approx(0.0, abs=1e-6)


def test_pooling_option_picks_the_subword():
    # one word of two subwords: first (1, 0), last (0, 1); English (1, 0)
    src = make_side(vectors=[[[[1.0, 0.0], [0.0, 1.0]]]])
    tgt = make_side(vectors=[[[1.0, 0.0]]], lang="en")
    batch = make_batch(src, tgt)
    first = MeanCosine(MeanCosine.Config(pooling="first"), hidden_size=2).loss(batch)
    last = MeanCosine(MeanCosine.Config(pooling="last"), hidden_size=2).loss(batch)
    assert (first.item(), last.item()) == (pytest.approx(0.0), pytest.approx(1.0))


def test_loss_is_finite_differentiable_and_rank_consistent():
    torch.manual_seed(0)
    aligned, unrelated = check_loss(MeanCosine(hidden_size=8))
    assert aligned == pytest.approx(0.0, abs=1e-6) and unrelated > 0.5
