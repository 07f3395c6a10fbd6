"""The ``so`` and ``co`` objectives (awesome-align): hand-computed values, the awesome-align
0.1.7 reference on the same tensors, gradients, and two training steps."""

from __future__ import annotations

import math
import sys
import types

import pytest
import torch
from conftest import run_json
from xalign_co import Consistency, co_loss
from xalign_so import (
    SelfTraining,
    SoConfig,
    directional_probabilities,
    subword_guide,
    threshold_word_links,
)

from xalign import AlignmentBatch, LinkSpec, Side

LN3 = math.log(3.0)


def make_side(rows: list[list[tuple[int, list[float]]]], lang: str = "de") -> Side:
    """``[CLS] subwords... [SEP] pad``: each subword is (word index, vector); specials 99."""
    dim = len(rows[0][0][1])
    length = max(len(r) for r in rows) + 2
    hidden = torch.full((len(rows), length, dim), 99.0)
    word_index = torch.full((len(rows), length), -1)
    for b, row in enumerate(rows):
        for t, (w, vec) in enumerate(row):
            hidden[b, t + 1] = torch.tensor(vec)
            word_index[b, t + 1] = w
    n_words = torch.tensor([max(w for w, _ in r) + 1 for r in rows])
    words = [[f"w{i}" for i in range(int(n))] for n in n_words]
    return Side(hidden.requires_grad_(), word_index, n_words, words, [lang] * len(rows))


# sentence 0: x0=(1,0), x1=(0,1); y0=(ln3,0), y1=(0,0): S = [[ln3, 0], [0, 0]], so
# P→ = [[3/4, 1/4], [1/2, 1/2]] and P← = [[3/4, 1/2], [1/4, 1/2]]
SRC0 = [(0, [1.0, 0.0]), (1, [0.0, 1.0])]
TGT0 = [(0, [LN3, 0.0]), (1, [0.0, 0.0])]
# sentence 1: one source word, two English words with equal scores: P→ = P← ... see tests
SRC1 = [(0, [1.0, 0.0])]
TGT1 = [(0, [0.0, 0.0]), (1, [0.0, 0.0])]


def batch(src=(SRC0,), tgt=(TGT0,), links=None) -> AlignmentBatch:
    spec = SelfTraining(SoConfig(guide="links"), hidden_size=2).link_spec()
    return AlignmentBatch(
        "de-en", make_side(list(src)), make_side(list(tgt), "en"), None, {spec: links or []}
    )


def test_probabilities_by_hand():
    fwd, bwd, valid = directional_probabilities(batch().src, batch().tgt)
    real = valid[0]
    assert real.sum() == 4  # specials and padding excluded
    s = fwd[0][real].reshape(2, 2)
    assert torch.allclose(s, torch.tensor([[0.75, 0.25], [0.5, 0.5]]))
    assert torch.allclose(bwd[0][real].reshape(2, 2), torch.tensor([[0.75, 0.5], [0.25, 0.5]]))
    assert fwd[~valid].abs().sum() == 0 and bwd[~valid].abs().sum() == 0


def test_so_default_threshold_links_everything_gives_minus_two():
    # every probability > 1e-3: all four links; each direction sums to n/n = 1
    loss = SelfTraining(hidden_size=2).loss(batch())
    assert loss.item() == pytest.approx(-2.0)


def test_so_threshold_keeps_links_above_it_in_both_directions():
    # threshold 0.3: P→ keeps (0,0),(1,0),(1,1); P← keeps (0,0),(0,1),(1,1): both = diagonal
    loss = SelfTraining(SoConfig(threshold=0.3), hidden_size=2).loss(batch())
    assert loss.item() == pytest.approx(-((0.75 + 0.5) / 2 + (0.75 + 0.5) / 2))


def test_so_is_batch_mean_of_sentences():
    # sentence 1: P→ = [1/2, 1/2] (1 row), P← = [1, 1]; threshold 0.6 keeps nothing there
    # (P→ 0.5 < 0.6) and the diagonal of sentence 0 is kept only where P→,P← > 0.6: (0,0)
    b = batch(src=(SRC0, SRC1), tgt=(TGT0, TGT1))
    loss = SelfTraining(SoConfig(threshold=0.6), hidden_size=2).loss(b)
    s0 = 0.75 / 2 + 0.75 / 2
    assert loss.item() == pytest.approx(-(s0 + 0.0) / 2)


def test_guide_spans_every_subword_of_linked_words():
    # source word 0 has two subwords; one of them links: the guide covers both
    src = make_side([[(0, [1.0, 0.0]), (0, [0.0, 0.0]), (1, [0.0, 1.0])]])
    tgt = make_side([[(0, [5.0, 0.0]), (1, [0.0, 5.0])]], "en")
    fwd, bwd, _ = directional_probabilities(src, tgt)
    words = threshold_word_links(fwd, bwd, src, tgt, 0.6)
    assert words[0].tolist() == [[True, False], [False, True]]
    guide = subword_guide(words, src, tgt)[0]
    assert guide[1:4, 1:3].tolist() == [[1, 0], [1, 0], [0, 1]]
    assert guide.sum() == 3  # nothing on specials or padding


def test_so_with_given_links_uses_them_not_the_model():
    # links (0,1) only: G has one pair; P→[0,1] = 1/4, P←[0,1] = 1/2
    so = SelfTraining(SoConfig(guide="links"), hidden_size=2)
    assert so.needs().links == (so.link_spec(),)
    loss = so.loss(batch(links=[{(0, 1)}]))
    assert loss.item() == pytest.approx(-(0.25 / 2 + 0.5 / 2))
    assert SelfTraining(hidden_size=2).needs().links == ()


def test_co_by_hand():
    # Σ P→⊙P← = 9/16 + 1/8 + 1/8 + 1/4 = 17/16, over min(2, 2)
    assert Consistency(hidden_size=2).loss(batch()).item() == pytest.approx(-17 / 32)
    # sentence 1: P→ = [1/2, 1/2], P← = [1, 1]: trace 1 over min(1, 2) = 1
    b = batch(src=(SRC0, SRC1), tgt=(TGT0, TGT1))
    assert Consistency(hidden_size=2).loss(b).item() == pytest.approx(-(17 / 32 + 1.0) / 2)


def test_gradients_reach_both_sides_only_through_probabilities():
    b = batch()
    SelfTraining(SoConfig(threshold=0.3), hidden_size=2).loss(b).backward()
    for side in (b.src, b.tgt):
        g = side.hidden.grad
        assert g[0, 1:3].abs().sum() > 0  # real subwords
        assert g[0, 0].abs().sum() == 0 and g[0, 3].abs().sum() == 0  # [CLS], [SEP]
    b = batch()
    Consistency(hidden_size=2).loss(b).backward()
    assert b.src.hidden.grad[0, 1:3].abs().sum() > 0 and b.tgt.hidden.grad[0, 0].sum() == 0


def test_empty_side_gives_finite_zero():
    b = batch(src=([(0, [1.0, 0.0])],), tgt=([(0, [1.0, 0.0])],))
    b.tgt.word_index[:] = -1  # no real English subword
    for obj in (SelfTraining(hidden_size=2), Consistency(hidden_size=2)):
        loss = obj.loss(b)
        assert loss.item() == 0.0
        loss.backward()
        assert torch.isfinite(b.src.hidden.grad).all()


@pytest.mark.parametrize("bad", [{"guide": "gold"}, {"threshold": 1.5}, {"symmetrization": "x"}])
def test_bad_options_rejected(bad):
    with pytest.raises(ValueError):
        SelfTraining.from_options(bad, hidden_size=2)


# -- awesome-align 0.1.7 as the reference -----------------------------------------------------
def import_awesome(module: str) -> types.ModuleType:
    """``awesome_align.<module>`` (0.1.7, a test extra). Its file_utils imports boto3 for S3
    downloads only: without boto3, stubs stand in during the import and are removed after
    (a stub left in sys.modules would look installed to other libraries)."""
    import importlib
    import importlib.util

    pytest.importorskip("awesome_align")
    names = ("boto3", "botocore", "botocore.config", "botocore.exceptions")
    added = [
        n
        for n in names
        if n not in sys.modules and importlib.util.find_spec(n.split(".")[0]) is None
    ]
    for name in added:
        sys.modules[name] = types.ModuleType(name)
    if "botocore.config" in added:
        sys.modules["botocore.config"].Config = object
        sys.modules["botocore.exceptions"].ClientError = Exception
    try:
        return importlib.import_module(f"awesome_align.{module}")
    finally:
        for name in added:
            sys.modules.pop(name, None)


def awesome_modeling() -> types.ModuleType:
    return import_awesome("modeling")


def random_case(seed: int):
    """Two sentence pairs with several subwords per word, as awesome-align ids and as Sides."""
    m = awesome_modeling()
    g = torch.Generator().manual_seed(seed)
    b2w = {"src": [[0, 0, 1, 2, 2, 2], [0, 1]], "tgt": [[0, 1, 1, 2], [0, 0, 1, 2, 3]]}
    sides, ids, hiddens = {}, {}, {}
    for key, maps in b2w.items():
        length = max(len(x) for x in maps) + 2
        hidden = torch.randn(len(maps), length, 8, generator=g) * 2
        input_ids = torch.full((len(maps), length), m.PAD_ID)
        word_index = torch.full((len(maps), length), -1)
        for b, wmap in enumerate(maps):
            input_ids[b, : len(wmap) + 2] = torch.tensor([m.CLS_ID, *[500] * len(wmap), m.SEP_ID])
            word_index[b, 1 : len(wmap) + 1] = torch.tensor(wmap)
        n_words = torch.tensor([max(x) + 1 for x in maps])
        words = [[f"w{i}" for i in range(int(n))] for n in n_words]
        sides[key] = Side(hidden.clone().requires_grad_(), word_index, n_words, words, [key] * 2)
        ids[key], hiddens[key] = input_ids, hidden
    return m, b2w, sides, ids, hiddens


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("threshold", [1e-3, 0.1])
def test_extraction_and_losses_match_awesome_align(seed, threshold):
    m, b2w, sides, ids, hiddens = random_case(seed)
    head = m.BertGuideHead(None)
    # reference extraction: subword matrix, then words (get_aligned_word's loop), then guide
    matrix = head(
        hiddens["src"], hiddens["tgt"], ids["src"], ids["tgt"], softmax_threshold=threshold
    )
    fwd, bwd, valid = directional_probabilities(sides["src"], sides["tgt"])
    ours = (fwd > threshold) & (bwd > threshold)
    assert torch.equal(ours, matrix[:, 0].bool())
    word_aligns = []
    for b in range(2):
        nz = matrix[b, 0, 1:-1, 1:-1].nonzero().tolist()
        word_aligns.append(
            {
                (b2w["src"][b][i], b2w["tgt"][b][j])
                for i, j in nz
                if i < len(b2w["src"][b]) and j < len(b2w["tgt"][b])
            }
        )
    words = threshold_word_links(fwd, bwd, sides["src"], sides["tgt"], threshold)
    for b in range(2):
        assert {tuple(x) for x in words[b].nonzero().tolist()} == word_aligns[b]
    src_len, tgt_len = ids["src"].shape[1], ids["tgt"].shape[1]
    ref_guide = m.BertForMaskedLM.get_aligned_word(
        None,
        ids["src"],
        ids["tgt"],
        b2w["src"],
        b2w["tgt"],
        "cpu",
        src_len,
        tgt_len,
        word_aligns=word_aligns,
    )
    guide = subword_guide(words, sides["src"], sides["tgt"])
    assert torch.equal(guide, ref_guide[:, 0])
    # SO and CO on the same states and guide
    so_ref = head(
        hiddens["src"], hiddens["tgt"], ids["src"], ids["tgt"], guide=ref_guide, train_so=True
    )
    b = AlignmentBatch("de-en", sides["src"], sides["tgt"])
    so = SelfTraining(SoConfig(threshold=threshold), hidden_size=8).loss(b)
    assert so.item() == pytest.approx(so_ref.item(), rel=1e-5, abs=1e-6)
    co_ref = head(
        hiddens["src"],
        hiddens["tgt"],
        ids["src"],
        ids["tgt"],
        guide=ref_guide,
        train_so=False,
        train_co=True,
    )
    assert co_loss(fwd, bwd, valid).item() == pytest.approx(co_ref.item(), rel=1e-5, abs=1e-6)


# -- training ---------------------------------------------------------------------------------
@pytest.mark.parametrize("objectives", [["so"], ["co"], ["so", "co"]])
def test_two_training_steps(objectives, smoke_overrides, tmp_path, monkeypatch):
    monkeypatch.setenv("XALIGN_CACHE_DIR", str(tmp_path / "cache"))
    sets = [a for o in smoke_overrides for a in ("--set", o)]
    flags = [a for name in objectives for a in ("-o", name)]
    out = run_json([*flags, *sets, "--set", "train.max_steps=2", "--set", "data.languages=[de]"])
    for name in objectives:
        value = out["metrics"][f"de-en/{name}"]
        assert -2.0 <= value < 0.0 and math.isfinite(value)


def test_so_with_links_guide_trains(smoke_overrides, tmp_path, monkeypatch):
    """awesome-align's supervised variant: guide links from a data.links file."""
    monkeypatch.setenv("XALIGN_CACHE_DIR", str(tmp_path / "cache"))
    sets = [a for o in smoke_overrides for a in ("--set", o)]
    from xalign.config import load_config

    n = _kept_pairs(load_config(None, [*smoke_overrides, "data.languages=[de]"]))
    links = tmp_path / "de-en.txt"
    links.write_text("0-0\n" * n, encoding="utf-8")
    out = run_json(
        [
            "-o",
            "so",
            *sets,
            "--set",
            "train.max_steps=2",
            "--set",
            "data.languages=[de]",
            "--set",
            "objectives.so.guide=links",
            "--set",
            f"data.links={links}",
        ]
    )
    assert out["metrics"]["de-en/so"] < 0


def _kept_pairs(cfg) -> int:
    from xalign.data.prepare import prepare_run_data
    from xalign.encoders import load_encoder

    enc = load_encoder(cfg.model.name, max_length=cfg.model.max_length)
    data, _, _ = prepare_run_data(cfg, enc, [])
    return len(data.pairs[0].examples)


def test_spec_is_a_linkspec():
    assert isinstance(SelfTraining(hidden_size=2).link_spec(), LinkSpec)


@pytest.mark.integration
def test_so_trains_the_embedded_model_on_the_demo_corpus(tracking_uri, tmp_path, monkeypatch):
    monkeypatch.setenv("XALIGN_CACHE_DIR", str(tmp_path / "cache"))
    out = run_json(
        [
            "-o",
            "so",
            "--set",
            "data.limit=16",
            "--set",
            "data.languages=[de]",
            "--set",
            "train.batch_size=8",
            "--set",
            "train.max_steps=2",
            "--set",
            f"train.output_dir={tmp_path / 'out'}",
            "--set",
            f"tracking.uri={tracking_uri}",
        ]
    )
    assert -2.0 <= out["metrics"]["de-en/so"] < 0.0
