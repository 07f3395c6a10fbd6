"""translation_ranking (LaBSE): hand-computed values, sentence-transformers as reference,
gradients, sentence pooling, training through ``xalign run`` and 2 gloo ranks = 1 rank."""

from __future__ import annotations

import math

import pytest
import torch
from _launch import two_ranks_vs_one
from conftest import as_sets, run_json
from xalign_translation_ranking import TranslationRanking, ranking_losses

import xalign
from xalign.errors import XalignError


def side(vectors: torch.Tensor, lang: str = "de") -> xalign.Side:
    """A side whose sentence i is one token (its [CLS]) holding ``vectors[i]``."""
    n = vectors.shape[0]
    return xalign.Side(
        vectors[:, None, :],
        torch.zeros(n, 1, dtype=torch.long),
        torch.ones(n, dtype=torch.long),
        [["w"]] * n,
        [lang] * n,
        attention_mask=torch.ones(n, 1, dtype=torch.long),
    )


def batch(x: torch.Tensor, y: torch.Tensor) -> xalign.AlignmentBatch:
    return xalign.AlignmentBatch("de-en", side(x), side(y, "en"))


def objective(**options) -> TranslationRanking:
    return TranslationRanking.from_options(options, hidden_size=2)


# ------------------------------------------------------------------ values by hand
def test_two_orthogonal_sentences_by_hand():
    """cos = I: each row's logits are s(1 − m) (positive) and 0, in both directions."""
    x = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    y = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    for margin, scale in ((0.3, 1.0), (0.0, 20.0), (0.5, 5.0)):
        value = objective(margin=margin, scale=scale).loss(batch(x, y))
        one_direction = math.log(1 + math.exp(-scale * (1 - margin)))
        assert value.item() == pytest.approx(2 * one_direction, rel=1e-6, abs=1e-7)


def test_three_sentences_by_hand_both_directions():
    """x = (1,0), (0,1), (1,1); y = (1,0), (1,1), (0,1): cosines by hand, m = 0.3, s = 2."""
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    y = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    r = 1 / math.sqrt(2)
    cos = [[1, r, 0], [0, r, 1], [r, 1, r]]
    m, s = 0.3, 2.0

    def ce(row: list[float], i: int) -> float:
        logits = [s * (c - m) if j == i else s * c for j, c in enumerate(row)]
        return -logits[i] + math.log(sum(math.exp(v) for v in logits))

    cols = [[cos[k][i] for k in range(3)] for i in range(3)]
    forward = [ce(cos[i], i) for i in range(3)]
    backward = [ce(cols[i], i) for i in range(3)]
    want = sum(f + b for f, b in zip(forward, backward, strict=True)) / 3
    got = objective(margin=m, scale=s).loss(batch(x, y)).item()
    assert got == pytest.approx(want, rel=1e-6)
    one_way = objective(margin=m, scale=s, bidirectional=False).loss(batch(x, y)).item()
    assert one_way == pytest.approx(sum(forward) / 3, rel=1e-6)


def test_defaults_are_labse():
    c = TranslationRanking.Config()
    assert (c.margin, c.scale, c.pooling, c.bidirectional) == (0.3, 1.0, "cls", True)
    assert TranslationRanking(hidden_size=4).needs() == xalign.Needs(gathers=True)
    mixed = objective(mixed_languages=True).needs()
    assert mixed.mixed_languages and mixed.gathers


# ------------------------------------------------------- sentence-transformers as reference
def st_ranking(x: torch.Tensor, y: torch.Tensor, *, margin: float, scale: float, **kw):
    """sentence-transformers' MultipleNegativesRankingLoss on the given vectors; the additive
    margin enters through its similarity function (cosine − m on the diagonal)."""
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.util import cos_sim

    def sim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return cos_sim(a, b) - margin * torch.eye(a.shape[0], b.shape[0])

    loss = MultipleNegativesRankingLoss(None, scale=scale, similarity_fct=sim, **kw)
    return loss.compute_loss_from_embeddings([x, y], None)


@pytest.mark.parametrize("margin, scale", [(0.0, 20.0), (0.3, 1.0), (0.3, 20.0), (0.1, 7.5)])
def test_matches_sentence_transformers(margin, scale):
    """To 1e-6: the per-pair formula in float64 (absolute) and the objective (float32
    pooling, relative) against MultipleNegativesRankingLoss on the same vectors."""
    g = torch.Generator().manual_seed(int(10 * scale + 100 * margin))
    x = torch.randn(6, 8, generator=g, dtype=torch.float64)
    y = torch.randn(6, 8, generator=g, dtype=torch.float64)
    ref_forward = st_ranking(x, y, margin=margin, scale=scale)
    ref_backward = st_ranking(y, x, margin=margin, scale=scale)
    # its symmetric variant averages the two directions (ours sums them, LaBSE's L + L')
    sym = st_ranking(
        x,
        y,
        margin=margin,
        scale=scale,
        directions=("query_to_doc", "doc_to_query"),
        partition_mode="per_direction",
    )
    exact = ranking_losses(x, y, margin=margin, scale=scale).mean()
    assert exact.item() == pytest.approx((ref_forward + ref_backward).item(), abs=1e-6)
    assert exact.item() == pytest.approx(2 * sym.item(), abs=1e-6)
    one_way = ranking_losses(x, y, margin=margin, scale=scale, bidirectional=False).mean()
    assert one_way.item() == pytest.approx(ref_forward.item(), abs=1e-6)

    b = xalign.AlignmentBatch("de-en", side(x.float()), side(y.float(), "en"))
    obj = TranslationRanking.from_options({"margin": margin, "scale": scale}, hidden_size=8)
    assert obj.loss(b).item() == pytest.approx((ref_forward + ref_backward).item(), rel=1e-6)


# -------------------------------------------------------------------------- gradients
def test_gradient_reaches_only_the_pooled_tokens():
    """cls: only each sentence's first attended token gets a gradient; mean: every attended
    token, padding none; both sides are trained."""
    g = torch.Generator().manual_seed(0)
    hidden = [torch.randn(3, 4, 5, generator=g, requires_grad=True) for _ in range(2)]
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [0, 1, 1, 1]])  # row 2: left padding
    sides = [
        xalign.Side(h, torch.zeros(3, 4, dtype=torch.long), torch.ones(3), [["w"]] * 3, ["de"] * 3)
        for h in hidden
    ]
    for s in sides:
        s.attention_mask = mask
    first = torch.tensor([[1, 0, 0, 0], [1, 0, 0, 0], [0, 1, 0, 0]])
    obj = TranslationRanking.from_options({"pooling": "cls", "scale": 5.0}, hidden_size=5)
    obj.loss(xalign.AlignmentBatch("de-en", *sides)).backward()
    for h in hidden:
        assert torch.equal((h.grad.abs().sum(-1) > 0).long(), first)
        h.grad = None
    obj = TranslationRanking.from_options({"pooling": "mean", "scale": 5.0}, hidden_size=5)
    obj.loss(xalign.AlignmentBatch("de-en", *sides)).backward()
    for h in hidden:
        assert torch.equal((h.grad.abs().sum(-1) > 0).long(), mask)


def test_pool_sentences_by_hand():
    hidden = torch.tensor(
        [[[1.0, 2.0], [3.0, 4.0], [9.0, 9.0]], [[7.0, 7.0], [5.0, 6.0], [1.0, 0]]]
    )
    word_index = torch.tensor([[-1, 0, -1], [-1, -1, 0]])
    s = xalign.Side(hidden, word_index, torch.ones(2), [["a"], ["b"]], ["de", "de"])
    s.attention_mask = torch.tensor([[1, 1, 0], [0, 1, 1]])  # row 1 left-padded
    assert torch.equal(xalign.pool_sentences(s, "mean"), torch.tensor([[2.0, 3.0], [3.0, 3.0]]))
    assert torch.equal(s.sentence_vectors("cls"), torch.tensor([[1.0, 2.0], [5.0, 6.0]]))
    s.attention_mask = None  # built by hand without one: mean over the real subwords
    assert torch.equal(s.sentence_vectors("mean"), torch.tensor([[3.0, 4.0], [1.0, 0.0]]))
    empty = xalign.Side(torch.zeros(1, 2, 2), torch.full((1, 2), -1), torch.zeros(1), [[]], ["de"])
    empty.attention_mask = torch.zeros(1, 2)
    for pooling in ("mean", "cls"):
        assert torch.equal(empty.sentence_vectors(pooling), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="sentence pooling 'max'"):
        s.sentence_vectors("max")


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_empty_batch_gives_zero_with_its_graph(pooling):
    """What the trainer passes on a rank whose shard is empty: 0 sentences, 0 tokens."""
    none = xalign.Side(
        torch.zeros(0, 0, 4, requires_grad=True),
        torch.zeros(0, 0, dtype=torch.long),
        torch.zeros(0, dtype=torch.long),
        [],
        [],
        attention_mask=torch.zeros(0, 0, dtype=torch.long),
    )
    assert none.sentence_vectors(pooling).shape == (0, 4)
    obj = TranslationRanking.from_options({"pooling": pooling}, hidden_size=4)
    value = obj.loss(xalign.AlignmentBatch("de-en", none, none))
    assert value.item() == 0.0 and value.dim() == 0


def test_one_process_gather_is_the_identity_and_global_mean_the_mean():
    x = torch.randn(4, 3, requires_grad=True)
    rows, mine = xalign.gather_rows(x)
    assert rows is x and mine == slice(0, 4)
    per_row = (rows**2).sum(-1)
    assert xalign.global_mean(per_row, mine).item() == pytest.approx(per_row.mean().item())


def test_global_mean_value_is_local_and_gradient_is_global():
    """Rank 1 of 2 holding rows 2..4 of N = 5: value = mean of its rows; share (3/5) times the
    gradient = the global mean's gradient restricted to its rows."""
    x = torch.randn(5, 3, requires_grad=True)
    per_row = ranking_losses(x, x.flip(0), margin=0.3, scale=4.0)
    mine = slice(2, 5)
    value = xalign.global_mean(per_row, mine)
    assert value.item() == pytest.approx(per_row[2:].mean().item())
    (g,) = torch.autograd.grad(value * 3 / 5, x, retain_graph=True)
    (full,) = torch.autograd.grad(per_row.mean(), x)
    assert torch.allclose(g, full, atol=1e-6)
    empty = xalign.global_mean(per_row, slice(5, 5))
    assert empty.item() == 0.0


@pytest.mark.parametrize(
    "options, key",
    [({"pooling": "max"}, "pooling"), ({"scale": 0}, "scale"), ({"margin": -1}, "margin")],
)
def test_bad_options_name_the_key(options, key):
    with pytest.raises((ValueError, XalignError), match=f"translation_ranking.*{key}"):
        TranslationRanking.from_options(options, hidden_size=4)


# --------------------------------------------------------------------------- training
def test_trains_the_tiny_encoder(tiny_model, tmp_path, tracking_uri, one_thread):
    """Per-pair and mixed batches through ``xalign run``; the loss is logged per batch kind."""
    common = [
        f"model.name={tiny_model}",
        "data.limit=16",
        "data.languages=[de,fr]",
        "train.batch_size=8",
        "train.max_steps=2",
        "train.save_model=false",
        f"tracking.uri={tracking_uri}",
        "objectives.translation_ranking.scale=20",
    ]
    out = run_json(
        ["-o", "translation_ranking", *as_sets([*common, f"train.output_dir={tmp_path}/a"])]
    )
    assert math.isfinite(out["metrics"]["de-en/translation_ranking"])
    assert 0 < out["metrics"]["fr-en/translation_ranking"] < 2 * math.log(8) + 2 * 20 * 2.3
    mixed = [*common, "objectives.translation_ranking.mixed_languages=true"]
    out = run_json(
        ["-o", "translation_ranking", *as_sets([*mixed, f"train.output_dir={tmp_path}/b"])]
    )
    assert math.isfinite(out["metrics"]["mixed/translation_ranking"])


@pytest.mark.distributed
def test_two_ranks_match_one_rank(tiny_model, tmp_path):
    """Negatives from the whole global batch: the 2-rank run equals the 1-rank run."""
    two_ranks_vs_one(
        "translation_ranking",
        tiny_model,
        tmp_path,
        [
            "objectives.translation_ranking.scale=20",
            # mean pooling: a random model's [CLS] vectors are all alike (tiny gradients)
            "objectives.translation_ranking.pooling=mean",
            "train.reg_weight=0",
            "train.lr=0.1",
        ],
    )
