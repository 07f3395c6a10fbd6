"""Correctness of ``xalign.ot`` (geomloss Sinkhorn) against POT, and the ``sinkhorn`` plugin.

Conventions checked: cost C = ½‖x−y‖² (p=2), ε = blur², geomloss's raw value (debias=False) is
the entropic OT value OT_ε = ⟨π, C⟩ + ε KL(π | a⊗b) (its dual ⟨a, f⟩ + ⟨b, g⟩ at
convergence) and the debiased one S_ε = OT_ε(a,b) − ½OT_ε(a,a) − ½OT_ε(b,b). geomloss only
converges along its annealing schedule, so reference comparisons use ``scaling`` near 1.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import ot
import pytest
import torch
from xalign_sinkhorn import (
    Sinkhorn,
    idf_from_sentences,
    subword_weights,
    tfidf,
    word_weights,
)

import xalign
from xalign import AlignmentBatch, Side, testing
from xalign.ot import sinkhorn_updates

F64 = torch.float64


def clouds(
    n: int, m: int, dim: int = 3, seed: int = 0, shift: float = 0.5, scale: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = scale * torch.randn(n, dim, generator=g, dtype=F64)
    y = scale * torch.randn(m, dim, generator=g, dtype=F64) + shift
    return x, y


def ones(n: int) -> torch.Tensor:
    return torch.ones(n, dtype=torch.bool)


def div(x: torch.Tensor, y: torch.Tensor, **kw) -> float:
    x, y = x.detach(), y.detach()
    return float(xalign.sinkhorn_divergence(x, ones(len(x)), y, ones(len(y)), **kw))


def half_sq(x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    return (0.5 * torch.cdist(x, y) ** 2).numpy()


def uniform(n: int) -> np.ndarray:
    return np.full(n, 1.0 / n)


def pot_plan(x: torch.Tensor, y: torch.Tensor, eps: float) -> np.ndarray:
    """Entropic plan from POT (log-domain Sinkhorn, same ε and cost).

    Self-transport problems (x vs x) converge slowly with POT's alternating updates; 5000
    iterations leave a marginal error ~1e-7, i.e. a value error ~1e-9 (second order).
    """
    a, b = uniform(len(x)), uniform(len(y))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Sinkhorn did not converge" at stopThr=1e-13
        return ot.bregman.sinkhorn_log(a, b, half_sq(x, y), reg=eps, numItermax=5000, stopThr=1e-13)


def pot_entropic_ot(x: torch.Tensor, y: torch.Tensor, eps: float) -> float:
    """OT_ε = ⟨π, C⟩ + ε KL(π | a⊗b) at POT's converged plan."""
    a, b = uniform(len(x)), uniform(len(y))
    plan = pot_plan(x, y, eps)
    kl = float(np.sum(plan * np.log(np.maximum(plan, 1e-300) / (a[:, None] * b[None, :]))))
    return float(np.sum(plan * half_sq(x, y))) + eps * kl


# ------------------------------------------------------------------ values vs POT


@pytest.mark.parametrize("blur", [0.5, 0.2])
def test_raw_value_is_entropic_ot_value(blur):
    x, y = clouds(7, 5)
    got = div(x, y, blur=blur, scaling=0.999, debias=False)
    ref = pot_entropic_ot(x, y, blur**2)
    assert abs(got - ref) / ref < 1e-5
    # POT's own solver uses the same convention (KL regularisation w.r.t. a⊗b).
    res = ot.solve(
        half_sq(x, y), uniform(7), uniform(5), reg=blur**2, reg_type="KL", max_iter=5000, tol=1e-13
    )
    assert float(res.value) == pytest.approx(ref, rel=1e-9)


def test_debiased_value_matches_pot_three_terms():
    x, y = clouds(6, 4, seed=1)
    eps = 0.3**2
    ref = (
        pot_entropic_ot(x, y, eps)
        - 0.5 * pot_entropic_ot(x, x, eps)
        - 0.5 * pot_entropic_ot(y, y, eps)
    )
    got = div(x, y, blur=0.3, scaling=0.999)
    assert abs(got - ref) / ref < 1e-5


def test_default_scaling_is_only_approximately_converged():
    # Documents why reference tests use scaling≈1: geomloss runs a fixed annealing schedule.
    x, y = clouds(7, 5)
    ref = pot_entropic_ot(x, y, 0.2**2)
    err = abs(div(x, y, blur=0.2, scaling=0.5, debias=False) - ref) / ref
    assert 1e-3 < err < 0.1


def test_approaches_exact_emd_as_blur_vanishes():
    x, y = clouds(6, 6, seed=3)
    emd = float(ot.emd2(uniform(6), uniform(6), half_sq(x, y)))
    raw = div(x, y, blur=1e-3, scaling=0.99, debias=False)
    debiased = div(x, y, blur=1e-3, scaling=0.99)
    assert abs(raw - emd) / emd < 1e-5
    assert abs(debiased - emd) / emd < 1e-5  # self terms OT_ε(α,α) -> 0
    x, y = clouds(7, 5)  # unequal sizes: fractional matching, slower convergence
    emd = float(ot.emd2(uniform(7), uniform(5), half_sq(x, y)))
    assert abs(div(x, y, blur=1e-3, scaling=0.99, debias=False) - emd) / emd < 1e-3


# ------------------------------------------------------------------ gradients


@pytest.mark.parametrize("debias", [True, False])
def test_gradcheck_float64(debias):
    # Converged regime (clouds small vs blur): the envelope-theorem gradient is then exact.
    x, y = clouds(4, 3, dim=2, scale=0.1, shift=0.05)
    x.requires_grad_()
    y.requires_grad_()

    def f(x, y):
        return xalign.sinkhorn_divergence(
            x, ones(4), y, ones(3), blur=1.0, scaling=0.9, diameter=2.0, debias=debias
        )

    assert torch.autograd.gradcheck(f, (x, y))


def test_gradient_is_barycentric_map_of_converged_plan():
    # geomloss's gradient comes from its last Sinkhorn update (envelope theorem), so it is
    # exact only at convergence. With C = ½‖x−y‖², ∇_{x_i} OT_ε = a_i x_i − Σ_j π_ij y_j
    # (π: POT's converged plan).
    x, y = clouds(5, 4, seed=2)
    x.requires_grad_()
    value = xalign.sinkhorn_divergence(
        x, ones(5), y, ones(4), blur=0.5, scaling=0.999, debias=False
    )
    (grad,) = torch.autograd.grad(value, x)
    plan = torch.from_numpy(pot_plan(x.detach(), y, 0.25))
    ref = x.detach() / 5 - plan @ y
    # Only approximately: the error shrinks like (1 − scaling) (0.019 at 0.9, 6e-4 at 0.999).
    assert (grad - ref).abs().max() < 2e-3


# ------------------------------------------------------------------ batching and invariances


def padded(clouds_: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    n = max(len(c) for c in clouds_)
    out = torch.zeros(len(clouds_), n, clouds_[0].shape[1], dtype=clouds_[0].dtype)
    mask = torch.zeros(len(clouds_), n, dtype=torch.bool)
    for i, c in enumerate(clouds_):
        out[i, : len(c)] = c
        mask[i, : len(c)] = True
    return out, mask


def batch_vs_pairs(diameter: float | None, **kw) -> torch.Tensor:
    """Relative differences between one padded batched call and per-pair unpadded calls."""
    sizes, scales = [(3, 4), (6, 2), (5, 5)], [1.0, 10.0, 3.0]
    pairs = [
        clouds(n, m, dim=8, seed=k, scale=s, shift=1.0)
        for k, ((n, m), s) in enumerate(zip(sizes, scales, strict=True))
    ]
    x, xm = padded([p[0] for p in pairs])
    y, ym = padded([p[1] for p in pairs])
    batched = xalign.sinkhorn_divergence(x, xm, y, ym, diameter=diameter, **kw)
    single = torch.tensor([div(a, b, diameter=diameter, **kw) for a, b in pairs], dtype=F64)
    return (batched - single).abs() / single.abs()


@pytest.mark.parametrize("kw", [{}, {"debias": False}, {"reach": 5.0}])
def test_batched_with_padding_equals_per_pair_with_fixed_diameter(kw):
    assert batch_vs_pairs(200.0, **kw).max() < 1e-12


def test_without_fixed_diameter_batch_mates_change_the_value():
    # geomloss estimates ONE annealing start from the whole batched call (incl. the zeroed
    # padding), so the small-scale pairs get a longer schedule than alone: values differ.
    assert batch_vs_pairs(None).max() > 1e-5


def test_batched_float32_padding_is_harmless():
    x, y = clouds(5, 3, dim=16, scale=8.0)
    xb, xm = padded([x.float(), x[:2].float()])
    yb, ym = padded([y.float(), y[:1].float()])
    got = xalign.sinkhorn_divergence(xb, xm, yb, ym, diameter=100.0)
    ref = xalign.sinkhorn_divergence(x.float(), ones(5), y.float(), ones(3), diameter=100.0)
    assert float(got[0]) == pytest.approx(float(ref), rel=1e-5)


def test_permutation_invariance():
    x, y = clouds(7, 5)
    base = div(x, y, blur=0.1, diameter=10.0)
    g = torch.Generator().manual_seed(5)
    shuffled = div(
        x[torch.randperm(7, generator=g)],
        y[torch.randperm(5, generator=g)],
        blur=0.1,
        diameter=10.0,
    )
    assert shuffled == pytest.approx(base, rel=1e-10)


def test_unbalanced_tends_to_balanced_as_reach_grows():
    x, y = clouds(7, 5)
    balanced = div(x, y, blur=0.2)
    errors = [abs(div(x, y, blur=0.2, reach=r) - balanced) / balanced for r in (10.0, 1e3)]
    assert errors[1] < 1e-5 < errors[0]  # reach=10 still relaxes the marginals


@pytest.mark.parametrize("seed", range(4))
def test_divergence_is_nonnegative_and_zero_on_the_diagonal(seed):
    x, y = clouds(6, 5, seed=seed, shift=0.05)  # nearby clouds: the raw OT_ε bias is large
    assert div(x, y, blur=0.5) >= 0
    assert div(x, y, blur=0.5, debias=False) > div(x, y, blur=0.5)
    assert abs(div(x, x.clone(), blur=0.5)) < 1e-12


def test_weights_are_used_and_renormalised():
    x, y = clouds(4, 3)
    w = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=F64)
    a = xalign.sinkhorn_divergence(x, ones(4), y, ones(3), x_weights=w, blur=0.3)
    b = xalign.sinkhorn_divergence(x, ones(4), y, ones(3), x_weights=10 * w, blur=0.3)
    assert float(a) == pytest.approx(float(b), rel=1e-12)
    assert abs(float(a) - div(x, y, blur=0.3)) > 1e-3
    duplicated = torch.cat([x, x[3:]])  # weight 2 on a point == the point twice
    w2 = torch.tensor([1.0, 1.0, 1.0, 2.0], dtype=F64)
    dup = div(duplicated, y, blur=0.3, diameter=10.0)
    weighted = float(
        xalign.sinkhorn_divergence(x, ones(4), y, ones(3), x_weights=w2, blur=0.3, diameter=10.0)
    )
    assert weighted == pytest.approx(dup, rel=1e-5)


# ------------------------------------------------------------------ transport plan


def test_transport_plan_marginals_and_pot_plan():
    x, y = clouds(6, 4, seed=4)
    plan = xalign.transport_plan(x, y, blur=0.3, scaling=0.9, max_iter=10_000, tol=1e-13)
    assert plan.shape == (6, 4)
    assert torch.allclose(plan.sum(1), torch.full((6,), 1 / 6, dtype=F64), atol=1e-10)
    assert torch.allclose(plan.sum(0), torch.full((4,), 1 / 4, dtype=F64), atol=1e-10)
    assert np.abs(plan.numpy() - pot_plan(x, y, 0.09)).max() < 1e-8


def test_transport_plan_without_refinement_is_approximate():
    x, y = clouds(7, 5)
    rough = xalign.transport_plan(x, y)  # 2-D inputs (geomloss 0.3 returns [1, N] potentials)
    assert rough.shape == (7, 5) and float(rough.sum()) == pytest.approx(1.0, abs=0.3)
    assert (rough.sum(0) - 0.2).abs().max() > 1e-2  # geomloss's schedule alone: loose marginals
    close = xalign.transport_plan(x, y, scaling=0.99, max_iter=2000)
    assert (close.sum(0) - 0.2).abs().max() < 1e-8
    assert (close.sum(1) - 1 / 7).abs().max() < 1e-6


def test_transport_plan_weights_and_updates():
    x, y = clouds(3, 3, seed=6)
    a = torch.tensor([0.5, 0.25, 0.25], dtype=F64)
    plan = xalign.transport_plan(x, y, a=2 * a, blur=0.5, scaling=0.9, max_iter=5000)
    assert torch.allclose(plan.sum(1), a, atol=1e-9)
    f, g = torch.zeros(3, dtype=F64), torch.zeros(3, dtype=F64)
    cost = 0.5 * torch.cdist(x, y) ** 2
    f, g = sinkhorn_updates(f, g, cost, a, torch.full((3,), 1 / 3, dtype=F64), 0.25, max_iter=5000)
    manual = a[:, None] / 3 * torch.exp((f[:, None] + g[None, :] - cost) / 0.25)
    assert torch.allclose(manual, plan, atol=1e-9)


# ------------------------------------------------------------------ the sinkhorn plugin


def make_side(
    sentences: list[list[torch.Tensor]], lang: str, words: list[list[str]] | None = None
) -> Side:
    """``sentences[b][w]`` is a ``[k, D]`` tensor: the k subword vectors of word w."""
    return testing.make_side(words, sentences, lang=lang, pad_value=7.0)


def random_batch(seed: int = 0, subwords: tuple[int, ...] = (1,), dim: int = 4) -> AlignmentBatch:
    g = torch.Generator().manual_seed(seed)

    def sentence(n: int, k: int) -> list[torch.Tensor]:
        return [torch.randn(subwords[(i + k) % len(subwords)], dim, generator=g) for i in range(n)]

    src = make_side([sentence(3, 0), sentence(5, 1)], "de")
    tgt = make_side([sentence(4, 2), sentence(2, 0)], "en")
    return AlignmentBatch("de-en", src, tgt)


def test_sentence_scope_is_mean_of_per_pair_divergences():
    batch = random_batch()
    obj = Sinkhorn.from_options({"diameter": 50.0}, hidden_size=4)
    x, xm = batch.src.words_vectors()
    y, ym = batch.tgt.words_vectors()
    per = [div(x[b][xm[b]].double(), y[b][ym[b]].double(), diameter=50.0) for b in range(2)]
    assert obj.loss(batch).item() == pytest.approx(sum(per) / 2, rel=1e-4)


def test_batch_scope_is_one_divergence_over_concatenated_clouds():
    batch = random_batch(1)
    obj = Sinkhorn.from_options({"scope": "batch"}, hidden_size=4)
    x, xm = batch.src.words_vectors()
    y, ym = batch.tgt.words_vectors()
    ref = div(x[xm].detach().double(), y[ym].detach().double())
    loss = obj.loss(batch)
    assert loss.item() == pytest.approx(ref, rel=1e-4)
    loss.backward()
    assert batch.src.hidden.grad[:, 1:4].abs().sum() > 0


def test_subword_level_uses_every_subword_and_word_level_pools():
    batch = random_batch(2, subwords=(1, 3, 2))
    sub = Sinkhorn.from_options({"level": "subword", "scope": "batch"}, hidden_size=4)
    x, xm = batch.src.subwords()
    y, ym = batch.tgt.subwords()
    assert sub.loss(batch).item() == pytest.approx(div(x[xm].double(), y[ym].double()), rel=1e-4)
    word = Sinkhorn.from_options({"scope": "batch", "pooling": "mean"}, hidden_size=4)
    xw, xwm = batch.src.words_vectors("mean")
    yw, ywm = batch.tgt.words_vectors("mean")
    assert int(xm.sum()) > int(xwm.sum())
    assert word.loss(batch).item() == pytest.approx(
        div(xw[xwm].double(), yw[ywm].double()), rel=1e-4
    )


def test_one_subword_per_word_makes_levels_agree():
    batch = random_batch(3)
    word = Sinkhorn.from_options({}, hidden_size=4).loss(batch).item()
    sub = Sinkhorn.from_options({"level": "subword"}, hidden_size=4).loss(batch).item()
    assert word == pytest.approx(sub, rel=1e-5)


def test_options_reach_geomloss():
    batch = random_batch(4)
    opts = {"p": 1, "blur": 0.3, "debias": False, "reach": 2.0, "scaling": 0.8}
    obj = Sinkhorn.from_options(opts, hidden_size=4)
    x, xm = batch.src.words_vectors()
    y, ym = batch.tgt.words_vectors()
    ref = xalign.sinkhorn_divergence(
        x.detach(), xm, y.detach(), ym, p=1, blur=0.3, scaling=0.8, debias=False, reach=2.0
    ).mean()
    assert obj.loss(batch).item() == pytest.approx(float(ref), rel=1e-6)


@pytest.mark.parametrize(
    "bad",
    [
        {"level": "char"},
        {"scope": "corpus"},
        {"point_weights": "idf"},
        {"p": 3},
        {"blur": 0.0},
        {"scaling": 1.0},
        {"reach": -1.0},
        {"colour": "red"},
    ],
)
def test_bad_options_are_rejected(bad):
    with pytest.raises(ValueError):
        Sinkhorn.from_options(bad, hidden_size=4)


# ------------------------------------------------------------------ tf-idf weights


def test_idf_and_tfidf_values():
    idf = idf_from_sentences([["Das", "Haus"], ["das", "Auto"], ["ein", "Haus", "Haus"]])
    assert idf["das"] == pytest.approx(math.log(4 / 3) + 1)
    assert idf["auto"] == pytest.approx(math.log(4 / 2) + 1)
    assert idf["never-seen"] == pytest.approx(math.log(4) + 1)
    assert tfidf(["Haus", "ist", "haus"], idf) == pytest.approx(
        [2 * idf["haus"], idf.unseen, 2 * idf["haus"]]
    )


def test_subword_weights_split_word_mass():
    batch = random_batch(5, subwords=(1, 3, 2))
    words = torch.tensor([[1.0, 2.0, 3.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0, 5.0]])
    sub = subword_weights(batch.src, words)
    for b in range(2):
        idx = batch.src.word_index[b]
        for w in range(int(batch.src.n_words[b])):
            assert float(sub[b][idx == w].sum()) == pytest.approx(float(words[b, w]))
    assert float(sub[batch.src.word_index < 0].abs().sum()) == 0


def tfidf_batch() -> AlignmentBatch:
    g = torch.Generator().manual_seed(7)
    src_words = [["das", "Haus", "das"], ["ein", "Auto"]]
    tgt_words = [["the", "house"], ["a", "car", "."]]

    def side(words: list[list[str]], lang: str) -> Side:
        vecs = [[torch.randn(1, 4, generator=g) for _ in s] for s in words]
        return make_side(vecs, lang, words)

    return AlignmentBatch("de-en", side(src_words, "de"), side(tgt_words, "en"))


class FakePair:
    def __init__(self, src: str, tgt: str, examples: list) -> None:
        self.src, self.tgt, self.examples = src, tgt, examples


class FakeExample:
    def __init__(self, src_words: list[str], tgt_words: list[str]) -> None:
        self.src_words, self.tgt_words = src_words, tgt_words


def test_tfidf_loss_uses_explicit_weights():
    batch = tfidf_batch()
    corpus = [
        FakeExample(["das", "Haus"], ["the", "house"]),
        FakeExample(["das", "Auto"], ["the", "car", "."]),
    ]
    obj = Sinkhorn.from_options({"point_weights": "tf-idf", "diameter": 50.0}, hidden_size=4)
    obj.prepare(type("Data", (), {"pairs": [FakePair("de", "en", corpus)]})())
    idf_de, idf_en = obj.idf[("de", "en")]
    xw = word_weights(batch.src, [idf_de, idf_de])
    assert xw[0].tolist() == pytest.approx([2 * idf_de["das"], idf_de["haus"], 2 * idf_de["das"]])
    yw = word_weights(batch.tgt, [idf_en, idf_en])
    x, xm = batch.src.words_vectors()
    y, ym = batch.tgt.words_vectors()
    ref = xalign.sinkhorn_divergence(
        x.detach(), xm, y.detach(), ym, x_weights=xw, y_weights=yw, diameter=50.0
    ).mean()
    uniform_loss = Sinkhorn.from_options({"diameter": 50.0}, hidden_size=4).loss(batch).item()
    got = obj.loss(batch).item()
    assert got == pytest.approx(float(ref), rel=1e-6)
    assert abs(got - uniform_loss) > 1e-4


def test_tfidf_needs_prepare_and_works_at_subword_level():
    batch = tfidf_batch()
    obj = Sinkhorn.from_options({"point_weights": "tf-idf", "level": "subword"}, hidden_size=4)
    with pytest.raises(ValueError, match=r"prepare\(data\)"):
        obj.loss(batch)
    corpus = [FakeExample(["das", "Haus"], ["the", "house"])]
    obj.prepare(type("Data", (), {"pairs": [FakePair("de", "en", corpus)]})())
    word = Sinkhorn.from_options({"point_weights": "tf-idf"}, hidden_size=4)
    word.idf = obj.idf
    # one subword per word: subword level == word level, also with tf-idf masses
    assert obj.loss(batch).item() == pytest.approx(word.loss(batch).item(), rel=1e-5)


# ------------------------------------------------------------------ degenerate clouds
# Clouds whose points all coincide have a zero bounding diameter; geomloss starts its
# ε-annealing at log(diameter) and fails. xalign.ot floors that diameter (see its docstring).


def test_geomloss_alone_fails_on_a_degenerate_cloud():
    # the root cause, kept as a test so that the floor can be dropped once geomloss copes
    from geomloss import SamplesLoss

    x = torch.ones(1, 3, dtype=F64)
    with (
        pytest.raises(ValueError, match="Maximum allowed size exceeded"),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore", RuntimeWarning)  # log(0)
        SamplesLoss("sinkhorn", p=2, blur=0.05)(x, x.clone())


DEGENERATE = {
    "one point each": ([[1.0, 2.0, 3.0]], [[1.0, 2.0, 3.0]]),
    "several identical points": ([[0.5, -1.0]] * 3, [[0.5, -1.0]] * 2),
    "all at the origin": ([[0.0] * 4] * 2, [[0.0] * 4] * 5),
    "x equals y (one repeated point)": ([[2.0, 2.0]] * 4, [[2.0, 2.0]] * 4),
}


@pytest.mark.parametrize("case", DEGENERATE)
@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("weighted", [False, True])
def test_degenerate_clouds_give_zero_with_zero_gradient(case, p, dtype, weighted):
    xs, ys = DEGENERATE[case]
    x = torch.tensor(xs, dtype=dtype, requires_grad=True)
    y = torch.tensor(ys, dtype=dtype, requires_grad=True)
    xw = torch.arange(1, len(xs) + 1, dtype=dtype) if weighted else None
    yw = torch.arange(len(ys), 0, -1, dtype=dtype) if weighted else None
    for debias, reach in ((True, None), (False, None), (True, 2.0)):
        value = xalign.sinkhorn_divergence(
            x,
            ones(len(xs)),
            y,
            ones(len(ys)),
            p=p,
            debias=debias,
            reach=reach,
            x_weights=xw,
            y_weights=yw,
        )
        # zero cost everywhere: OT_ε = 0 (plan a⊗b, no KL), hence S_ε = 0 as well; geomloss's
        # p=1 cost is sqrt(max(|x-y|², 1e-8)), so the raw p=1 value is its floor 1e-4
        expected = 1e-4 if p == 1 and not debias else 0.0
        assert abs(float(value.detach()) - expected) < 1e-6, (debias, reach, value)
        gx, gy = torch.autograd.grad(value, (x, y))
        assert torch.isfinite(gx).all() and torch.isfinite(gy).all()
        assert gx.abs().max() < 1e-6 and gy.abs().max() < 1e-6
    with torch.no_grad():
        plan = xalign.transport_plan(x, y, p=p, a=xw, b=yw, max_iter=10)
    a = torch.full((len(xs),), 1 / len(xs), dtype=dtype) if xw is None else xw / xw.sum()
    b = torch.full((len(ys),), 1 / len(ys), dtype=dtype) if yw is None else yw / yw.sum()
    assert torch.equal(plan, a[:, None] * b[None, :])


def test_one_point_each_has_the_plan_one():
    x = torch.tensor([[0.3, -0.2]])
    assert xalign.transport_plan(x, x.clone()).tolist() == [[1.0]]
    assert xalign.transport_plan(x, x.clone(), blur=0.1, scaling=0.9, reach=1.0).tolist() == [[1.0]]


def test_batch_with_one_degenerate_pair():
    # pair 0: one identical point each (degenerate on its own); pair 1: ordinary clouds
    x1, y1 = clouds(3, 4, dim=2, seed=5)
    x = torch.zeros(2, 3, 2, dtype=F64)
    y = torch.zeros(2, 4, 2, dtype=F64)
    x[0, 0] = y[0, 0] = torch.tensor([0.4, 0.4], dtype=F64)
    x[1], y[1] = x1, y1
    xm = torch.tensor([[True, False, False], [True, True, True]])
    ym = torch.tensor([[True, False, False, False], [True, True, True, True]])
    x.requires_grad_()
    values = xalign.sinkhorn_divergence(x, xm, y, ym)
    assert abs(float(values[0].detach())) < 1e-9
    # pair 1 is what a per-pair call with the batch's annealing start gives
    from xalign.ot import bounding_diameter

    diameter = bounding_diameter(x * xm[..., None], y * ym[..., None])
    assert float(values[1].detach()) == pytest.approx(div(x1, y1, diameter=diameter), rel=1e-9)
    (grad,) = torch.autograd.grad(values.sum(), x)
    assert torch.isfinite(grad).all() and grad[0].abs().max() < 1e-9 and grad[1].abs().sum() > 0
    # the whole batch at the origin (every pair degenerate, padding included)
    zero = xalign.sinkhorn_divergence(torch.zeros(2, 3, 2), xm, torch.zeros(2, 4, 2), ym)
    assert zero.tolist() == [0.0, 0.0]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("scale", [1.0, 1e-3])  # 1e-3: diameter far below blur, not degenerate
def test_non_degenerate_results_are_geomloss_unchanged(seed, scale):
    from geomloss import SamplesLoss
    from geomloss._legacy.sinkhorn_divergence import max_diameter

    from xalign.ot import annealing_diameter

    x, y = clouds(5, 4, seed=seed, scale=scale, shift=scale)
    assert annealing_diameter(x, y, p=2, blur=0.05) == max_diameter(x, y)
    for p, kw in ((2, {}), (1, {"debias": False}), (2, {"reach": 1.0, "scaling": 0.8})):
        ref = SamplesLoss("sinkhorn", p=p, blur=0.05, **{"scaling": 0.5, **kw})(x, y)
        got = xalign.sinkhorn_divergence(x, ones(5), y, ones(4), p=p, **kw)
        assert float(got) == float(ref)  # bit-identical: same diameter, same call


def test_degeneracy_threshold_and_bad_inputs():
    from xalign.ot import PointCloudError, annealing_diameter, is_degenerate

    assert is_degenerate(0.0, 2, torch.float32) and is_degenerate(1e-30, 2, torch.float32)
    assert not is_degenerate(1e-10, 2, torch.float32) and not is_degenerate(1e-30, 2, F64)
    assert not is_degenerate(float("nan"), 2, F64)
    point = torch.ones(1, 2)
    assert annealing_diameter(point, point, p=2, blur=0.07) == 0.07
    assert annealing_diameter(point, point, p=2, blur=0.07, diameter=3.0) == 3.0
    with pytest.raises(PointCloudError, match="diameter must be > 0"):
        xalign.sinkhorn_divergence(point, ones(1), point, ones(1), diameter=0.0)
    with pytest.raises(PointCloudError, match="no real points"):
        xalign.sinkhorn_divergence(point, torch.zeros(1, dtype=torch.bool), point, ones(1))
    assert issubclass(PointCloudError, xalign.XalignError)


@pytest.mark.parametrize(
    "options", [{}, {"scope": "batch"}, {"level": "subword"}, {"p": 1, "reach": 1.0}]
)
def test_sinkhorn_objective_on_identical_one_word_sentences(options):
    # "Berlin ||| Berlin" with identical vectors: used to crash training
    vec = torch.tensor([[0.2, -0.1, 0.5, 0.3]])
    batch = AlignmentBatch(
        "de-en", make_side([[vec.clone()]], "de"), make_side([[vec.clone()]], "en")
    )
    loss = Sinkhorn.from_options(options, hidden_size=4).loss(batch)
    loss.backward()
    assert abs(loss.item()) < 1e-6 and torch.isfinite(batch.src.hidden.grad).all()


@pytest.mark.parametrize("level", ["word", "subword"])
def test_mixed_ot_objective_on_a_degenerate_batch(level):
    from xalign_mixed_ot import MixedOT

    vec = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    src = make_side([[vec.clone(), vec.clone()], [vec.clone()]], "de")
    src.langs = ["de", "fr"]
    batch = AlignmentBatch("mixed", src, make_side([[vec.clone()], [vec.clone()]], "en"))
    loss = MixedOT.from_options({"level": level}, hidden_size=4).loss(batch)
    loss.backward()
    assert abs(loss.item()) < 1e-6 and torch.isfinite(batch.src.hidden.grad).all()


# ------------------------------------------------------------------ point_weights (was weights)
# ``weights`` (the mass of each point) read like ``weight`` (the objective's weight in the sum
# of objectives): ``{weight: 1.0, weights: tf-idf}`` was valid. The mass option is now
# ``point_weights``; ``weights`` still works with a deprecation warning.
import re  # noqa: E402

from xalign.config import load_config  # noqa: E402
from xalign.errors import ConfigError, DeprecatedOptionWarning, XalignWarning  # noqa: E402

OLD_KEY, NEW_KEY = "objectives.sinkhorn.weights", "objectives.sinkhorn.point_weights"
DEPRECATED = re.escape(f"{OLD_KEY} is deprecated; use {NEW_KEY}")


@pytest.mark.parametrize("value", ["tf-idf", "uniform"])
def test_old_weights_key_still_works_with_a_warning(value):
    with pytest.warns(DeprecatedOptionWarning, match=DEPRECATED) as caught:
        obj = Sinkhorn.from_options({"weights": value, "blur": 0.1}, hidden_size=4)
    assert obj.config.point_weights == value and obj.config.blur == 0.1
    assert issubclass(caught[0].category, XalignWarning)
    assert str(caught[0].message).startswith("objective 'sinkhorn': ")


def test_new_key_gives_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        obj = Sinkhorn.from_options({"point_weights": "tf-idf"}, hidden_size=4)
    assert obj.config.point_weights == "tf-idf"
    assert "weights" not in Sinkhorn.options() and Sinkhorn.options()["point_weights"] == "uniform"


@pytest.mark.parametrize("old, new", [("tf-idf", "tf-idf"), ("uniform", "tf-idf")])
def test_both_keys_are_an_error_naming_the_objective(old, new):
    with pytest.raises(ConfigError) as info:
        Sinkhorn.from_options({"weights": old, "point_weights": new}, hidden_size=4)
    assert str(info.value) == (
        "objective 'sinkhorn': objectives.sinkhorn: both 'weights' (the deprecated name) and "
        "'point_weights' are given for objective 'sinkhorn'; keep only 'point_weights'"
    )


def test_old_key_in_a_config_file_names_its_line(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text("objectives:\n  sinkhorn:\n    weight: 1.0\n    weights: tf-idf\n")
    with pytest.warns(DeprecatedOptionWarning, match=rf"^{path}:4: {DEPRECATED}"):
        old = load_config(path)
    assert old.objectives == {"sinkhorn": {"weight": 1.0, "point_weights": "tf-idf"}}
    path.write_text("objectives:\n  sinkhorn:\n    weight: 1.0\n    point_weights: tf-idf\n")
    new = load_config(path)
    assert old.fingerprint() == new.fingerprint()  # the same run, whichever key was used


def test_old_key_on_the_command_line_names_the_override():
    override = "objectives.sinkhorn.weights=tf-idf"
    with pytest.warns(DeprecatedOptionWarning, match=rf"^--set {override}: {DEPRECATED}"):
        cfg = load_config(None, [override])
    assert cfg.objectives["sinkhorn"] == {"point_weights": "tf-idf"}
    with pytest.warns(DeprecatedOptionWarning), pytest.raises(ConfigError, match="point_weights"):
        load_config(None, ["objectives.sinkhorn.weights=idf"])  # bad value: the new key named


def test_both_keys_in_a_config_name_the_plugin(tmp_path):
    path = tmp_path / "both.yaml"
    path.write_text("objectives:\n  sinkhorn:\n    weights: tf-idf\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, ["objectives.sinkhorn.point_weights=uniform"])
    message = str(info.value)
    assert message.startswith(f"{path}:3: objectives.sinkhorn: both 'weights'")
    assert "for objective 'sinkhorn' (plugin 'sinkhorn', distribution xalign " in message
    assert message.endswith("keep only 'point_weights'")


def test_cli_reports_the_conflict_without_traceback():
    from typer.testing import CliRunner

    from xalign.cli import app

    result = CliRunner().invoke(
        app,
        [
            "run",
            "-o",
            "sinkhorn",
            "--set",
            "objectives.sinkhorn.weights=tf-idf",
            "--set",
            "objectives.sinkhorn.point_weights=tf-idf",
        ],
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    err = " ".join(result.stderr.split())
    assert "both 'weights' (the deprecated name) and 'point_weights' are given" in err
    assert "plugin 'sinkhorn', distribution xalign" in err


@pytest.mark.parametrize("backend", ["online", "multiscale"])
def test_a_keops_backend_without_pykeops_says_what_to_install(backend, monkeypatch):
    """geomloss's KeOps backends failed with a raw NameError ('LazyTensor') without pykeops."""
    import builtins
    import sys

    real_import = builtins.__import__

    def no_pykeops(name, *args, **kwargs):
        if name == "pykeops" or name.startswith("pykeops."):
            raise ImportError("No module named 'pykeops'")
        return real_import(name, *args, **kwargs)

    from xalign import sinkhorn_divergence

    monkeypatch.delitem(sys.modules, "pykeops", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_pykeops)
    x, y = torch.randn(3, 4), torch.randn(2, 4)
    with pytest.raises(ValueError, match=f"backend='{backend}' needs pykeops"):
        sinkhorn_divergence(
            x, torch.ones(3, dtype=torch.bool), y, torch.ones(2, dtype=torch.bool), backend=backend
        )
