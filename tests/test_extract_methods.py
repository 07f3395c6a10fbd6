"""The ``softmax`` (awesome-align) and ``itermax`` (SimAlign) extraction methods.

Hand-computed cases pin each rule; the reference tests run the original implementations
(``awesome-align`` 0.1.7's guide head, ``simalign`` 0.4's ``SentenceAligner.iter_max``; the
``test`` extra) on the same word vectors: random ones, and the embedded model's on every shared
gold test set (integration).
"""

from __future__ import annotations

import math
import os

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from xalign import ExtractConfig, align_pair
from xalign.alignment.extract import (
    METHODS,
    ExtractError,
    encode_words,
    itermax_links,
    itermax_matrix,
    method_links,
    softmax_links,
)


# ------------------------------------------------------------------------ by hand
def test_softmax_links_by_hand() -> None:
    # S = x·yᵀ = [[2, 0], [0, 1]]; row softmax: [[e²/(e²+1), 1/(e²+1)], [1/(1+e), e/(1+e)]]
    # = [[.881, .119], [.269, .731]]; the column softmax is the same matrix (S is diagonal)
    x = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    y = torch.eye(2)
    assert 1 / (math.e**2 + 1) < 0.2 < 1 / (1 + math.e)
    assert softmax_links(x, y, 0.2) == {(0, 0), (1, 1)}  # (1, 0) passes rows, not columns
    assert softmax_links(x, y, 0.1) == {(0, 0), (0, 1), (1, 0), (1, 1)}
    assert softmax_links(x, y, 0.9) == set()  # strict: .881 is not > .9
    assert softmax_links(torch.zeros(0, 2), y) == set()


def test_softmax_uses_unnormalised_dot_products() -> None:
    # cosine would tie both targets for source 0; the dot product prefers the longer vector
    x = torch.tensor([[1.0, 1.0]])
    y = torch.tensor([[1.0, 0.0], [0.0, 5.0]])
    assert softmax_links(x, y, 0.5) == {(0, 1)}


def test_itermax_matrix_by_hand() -> None:
    sim = torch.tensor([[0.9, 0.8, 0.1], [0.85, 0.2, 0.1], [0.1, 0.1, 0.7]], dtype=torch.float64)
    # round 1, mutual argmax: (0, 0), (2, 2). Round 2 masks: 0 where both aligned, 0.9 where
    # one is, 1 at (1, 1): row argmax 0->1 (.72), 1->0 (.765); column argmax 0->1, 1->0
    links = {tuple(p) for p in itermax_matrix(sim, 2).nonzero().tolist()}
    assert links == {(0, 0), (2, 2), (0, 1), (1, 0)}
    one = {tuple(p) for p in itermax_matrix(sim, 1).nonzero().tolist()}
    assert one == {(0, 0), (2, 2)}
    # a side with <= 2 words stops after round 1 (simalign)
    two = {tuple(p) for p in itermax_matrix(sim[:2, :2], 5).nonzero().tolist()}
    assert two == {(0, 0)}


def test_itermax_first_index_on_ties() -> None:
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    assert itermax_links(x, y, 1) == {(0, 0), (2, 1)}


@pytest.mark.parametrize("method", METHODS)
def test_every_method_keeps_positions_of_masked_words(method: str) -> None:
    concepts = torch.nn.functional.one_hot(torch.tensor([0, 1, 2, 3]), 8).float() * 4
    x, y = concepts.clone(), concepts[[2, 0, 3, 1]].clone()  # tgt j holds concept [2,0,3,1][j]
    x_mask = torch.tensor([True, False, True, True])  # word 1 has no vector
    y_mask = torch.ones(4, dtype=torch.bool)
    config = ExtractConfig(method=method)
    out = align_pair(x, x_mask, y, y_mask, config)
    assert out.links == {(0, 1), (2, 0), (3, 2)}
    assert out.scores is not None and out.scores.shape == (4, 4)
    assert torch.isnan(out.scores[1]).all()


@pytest.mark.parametrize(
    ("option", "value"),
    [("softmax_threshold", 0.0), ("softmax_threshold", 1.0), ("itermax_rounds", 0)],
)
def test_bad_method_options_name_the_option(option: str, value: float) -> None:
    with pytest.raises(ExtractError) as err:
        ExtractConfig(**{option: value})
    assert err.value.option == option and option in str(err.value)


def test_unknown_method_lists_the_new_ones() -> None:
    with pytest.raises(ExtractError, match="itermax") as err:
        ExtractConfig(method="mwmf")
    assert err.value.option == "method"


# ------------------------------------------------------------------------ reference code
def awesome_links(x: torch.Tensor, y: torch.Tensor, threshold: float = 1e-3) -> set:
    """awesome-align 0.1.7's extraction (BertGuideHead.forward) on word vectors as states."""
    modeling = pytest.importorskip(
        "awesome_align.modeling", reason="awesome-align is not installed (pip install .[test])"
    )

    def wrap(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        zero = torch.zeros(1, v.shape[1])
        ids = [modeling.CLS_ID] + [5] * len(v) + [modeling.SEP_ID]
        return torch.cat([zero, v.float(), zero])[None], torch.tensor([ids])

    (hx, ix), (hy, iy) = wrap(x), wrap(y)
    head = modeling.BertGuideHead(None)
    matrix = head(hx, hy, ix, iy, extraction="softmax", softmax_threshold=threshold)
    return {tuple(p) for p in matrix[0, 0, 1:-1, 1:-1].nonzero().tolist()}


def simalign_links(x: torch.Tensor, y: torch.Tensor) -> set:
    """simalign 0.4's IterMax (get_similarity, iter_max) on the same word vectors."""
    simalign = pytest.importorskip(
        "simalign.simalign", reason="simalign is not installed (pip install .[test])"
    )
    aligner = simalign.SentenceAligner
    sim = aligner.get_similarity(x.numpy(), y.numpy())
    return {tuple(p) for p in torch.from_numpy(aligner.iter_max(sim)).nonzero().tolist()}


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 9), m=st.integers(1, 9), seed=st.integers(0, 2**16), scale=st.floats(0.1, 8)
)
def test_random_vectors_match_the_reference_code(n: int, m: int, seed: int, scale: float) -> None:
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, 6, generator=g) * scale, torch.randn(m, 6, generator=g) * scale
    assert softmax_links(x, y) == awesome_links(x, y)
    assert itermax_links(x, y) == simalign_links(x, y)


@pytest.mark.integration
@pytest.mark.parametrize("layer", [8, -1])
def test_gold_sets_match_the_reference_code(shared_data, layer: int) -> None:
    """The embedded model's word vectors on every gold test set (first 24 pairs each; all
    with XALIGN_ORACLE_FULL=1): xalign's links equal the reference implementations'."""
    pytest.importorskip("simalign.simalign", reason="simalign is not installed")
    pytest.importorskip("awesome_align.modeling", reason="awesome-align is not installed")
    from xalign import available_gold_sets, load_encoder, load_gold

    sets = [s for s in available_gold_sets(shared_data) if not s.endswith("-dev")]
    if not sets:
        pytest.skip(f"no gold alignment sets under {shared_data}/align")
    limit = None if os.environ.get("XALIGN_ORACLE_FULL") else 24
    encoder = load_encoder("packaged:multilingual-e5-small", layer=layer).eval()
    compared = 0
    for name in sets:
        gold = load_gold(name, root=shared_data)
        pairs = [n for n in range(len(gold))[:limit] if gold.src_sents[n] and gold.tgt_sents[n]]
        with torch.inference_mode():
            xs = encode_words(encoder, [gold.src_sents[n] for n in pairs], gold.src_lang)
            ys = encode_words(encoder, [gold.tgt_sents[n] for n in pairs], gold.tgt_lang)
        for b in range(len(pairs)):
            x, y = xs.vectors[b][xs.mask[b]], ys.vectors[b][ys.mask[b]]
            ours = {m: method_links(x, y, ExtractConfig(method=m))[0] for m in METHODS}
            assert ours["softmax"] == awesome_links(x, y), (name, pairs[b])
            assert ours["itermax"] == simalign_links(x, y), (name, pairs[b])
            compared += 1
    assert compared >= 60
