"""``xalign.alignment.extract``: the one link extraction behind ``xalign align`` and the task.

Index mapping is tested with stub vectors where the right links are forced (one-hot concepts),
so a word without a vector that shifted its neighbours would produce visibly wrong links.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import xalign
from xalign import ExtractConfig, Side, TruncationWarning, XalignError
from xalign.alignment.extract import (
    ExtractError,
    align_pair,
    cosine_similarity,
    display_word,
    encode_words,
    extract_links,
    mutual_links,
    ot_plan,
    subword_counts,
)

METHODS = ("argmax", "ot")


def one_hot(concepts: list[int], dim: int = 8) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(concepts), dim).float()


# ------------------------------------------------------------------------ the three steps


def test_mutual_links_argmax_ties_and_relative_threshold() -> None:
    sim = torch.tensor(
        [
            [0.9, 0.1, 0.0],
            [0.8, 0.2, 0.1],  # prefers column 0, which prefers row 0: no link
            [0.0, 0.3, 0.7],
        ]
    )
    assert mutual_links(sim) == {(0, 0), (2, 2)} and mutual_links(sim.T) == {(0, 0), (2, 2)}
    tie = torch.tensor([[0.5, 0.5], [0.1, 0.2]])  # row 0 ties: every tied mutual link is kept
    assert mutual_links(tie) == {(0, 0), (0, 1)}
    plan = torch.tensor([[1 / 3, 0.0], [1 / 6, 1 / 6], [0.0, 1 / 3]])
    assert mutual_links(plan, 1.0) == {(0, 0), (2, 1)}
    # >= half of the row max and of the column max: row 1 links to both columns
    assert mutual_links(plan, 0.5) == {(0, 0), (1, 0), (1, 1), (2, 1)}
    assert mutual_links(torch.zeros(0, 3)) == set()


def test_cosine_similarity_values() -> None:
    x = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    y = torch.tensor([[2.0, 0.0], [0.0, -3.0]])
    expected = torch.tensor([[1.0, 0.0], [2**-0.5, -(2**-0.5)]])
    assert torch.allclose(cosine_similarity(x, y), expected)
    assert cosine_similarity(x.double(), y).dtype == torch.float32


def test_ot_plan_is_a_coupling_and_recovers_a_permutation() -> None:
    g = torch.Generator().manual_seed(0)
    y = torch.randn(5, 16, generator=g)
    perm = [3, 0, 4, 1, 2]
    x = y[perm] + 0.05 * torch.randn(5, 16, generator=g)
    plan = ot_plan(x, y, ExtractConfig(blur=0.05, sinkhorn_iters=1000))
    assert torch.allclose(plan.sum(1), torch.full((5,), 0.2), atol=1e-4)
    assert torch.allclose(plan.sum(0), torch.full((5,), 0.2), atol=1e-4)
    ones = torch.ones(5, dtype=torch.bool)
    expected = set(enumerate(perm))
    for method in METHODS:
        assert extract_links(x, ones, y, ones, ExtractConfig(method=method)) == expected


def test_config_defaults_and_errors() -> None:
    c = ExtractConfig()
    assert (
        c.method,
        c.layer,
        c.pooling,
        c.max_length,
        c.blur,
        c.threshold,
        c.normalize,
        c.sinkhorn_iters,
        c.scaling,
    ) == ("argmax", -1, "mean", 512, 0.1, 1.0, True, 0, 0.5)
    for option, value in [
        ("method", "mwmf"),
        ("pooling", "max"),
        ("threshold", 0.0),
        ("threshold", 1.5),
        ("blur", -1.0),
        ("scaling", 1.0),
        ("sinkhorn_iters", -1),
        ("max_length", 0),
    ]:
        with pytest.raises(ExtractError, match=f"^{option} must be") as info:
            ExtractConfig(**{option: value})
        assert info.value.option == option and isinstance(info.value, XalignError)


# ------------------------------------------------------------------------ positions are kept


@pytest.mark.parametrize("method", METHODS)
def test_masked_words_never_shift_their_neighbours(method: str) -> None:
    # source: concepts 0 1 2 with masked words at start, middle and end; a masked word's
    # vector equals a target word's (it would steal that link if it took part)
    x = one_hot([1, 0, 5, 1, 2, 2])
    x_mask = torch.tensor([False, True, False, True, True, False])
    y = one_hot([0, 0, 1, 2, 5])  # target word 0 masked (start), word 4 unmatched
    y_mask = torch.tensor([False, True, True, True, True])
    pair = align_pair(x, x_mask, y, y_mask, ExtractConfig(method=method), both=True)
    assert pair.links == {(1, 1), (3, 2), (4, 3)}
    assert pair.argmax_links == pair.ot_links == pair.links
    for matrix in (pair.similarity, pair.plan):
        assert matrix.shape == (6, 5)
        assert torch.isnan(matrix[[0, 2, 5]]).all() and torch.isnan(matrix[:, 0]).all()
        assert not torch.isnan(matrix[[1, 3, 4]][:, 1:]).any()


def test_only_the_chosen_method_is_computed_unless_both() -> None:
    x, mask = one_hot([0, 1]), torch.ones(2, dtype=torch.bool)
    pair = align_pair(x, mask, x, mask, ExtractConfig(method="argmax"))
    assert pair.plan is None and pair.ot_links is None and pair.links == {(0, 0), (1, 1)}
    pair = align_pair(x, mask, x, mask, ExtractConfig(method="ot"))
    assert pair.similarity is None and pair.argmax_links is None and pair.plan is not None


def test_no_word_with_a_vector_gives_no_links() -> None:
    x = one_hot([0, 1])
    none, some = torch.zeros(2, dtype=torch.bool), torch.ones(2, dtype=torch.bool)
    for method in METHODS:
        pair = align_pair(x, none, x, some, ExtractConfig(method=method), both=True)
        assert pair.links == pair.argmax_links == pair.ot_links == set()
        assert pair.plan.shape == (2, 2) and torch.isnan(pair.plan).all()


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_links_are_those_of_the_kept_words_mapped_back(data) -> None:
    n = data.draw(st.integers(1, 7))
    m = data.draw(st.integers(1, 7))
    x_mask = torch.tensor(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    y_mask = torch.tensor(data.draw(st.lists(st.booleans(), min_size=m, max_size=m)))
    seed = data.draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, 6, generator=g), torch.randn(m, 6, generator=g)
    src, tgt = x_mask.nonzero().flatten().tolist(), y_mask.nonzero().flatten().tolist()
    for method in METHODS:
        config = ExtractConfig(method=method)
        links = extract_links(x, x_mask, y, y_mask, config)
        assert all(x_mask[i] and y_mask[j] for i, j in links)
        if src and tgt:  # the same extraction on the compacted vectors, mapped back
            compact = extract_links(
                x[src],
                torch.ones(len(src), dtype=torch.bool),
                y[tgt],
                torch.ones(len(tgt), dtype=torch.bool),
                config,
            )
            assert links == {(src[i], tgt[j]) for i, j in compact}
        else:
            assert links == set()


# ------------------------------------------------------------------------ from an encoder


class DroppingStub:
    """One subword per word except words in ``empty`` (no subword, as a tokenizer that
    normalises them away); a word's vector is the one-hot of its concept."""

    def __init__(self, lexicon: dict[str, int], empty: set[str]) -> None:
        self.lexicon, self.empty = lexicon, empty

    def encode(self, sentences, langs, *, pooling="mean", device=None) -> Side:
        toks = [[(w, k) for k, w in enumerate(s) if w not in self.empty] for s in sentences]
        longest = max(len(t) for t in toks) + 2
        hidden = torch.zeros(len(sentences), longest, 8)
        word_index = torch.full((len(sentences), longest), -1)
        n_words = torch.zeros(len(sentences), dtype=torch.long)
        for b, words in enumerate(toks):
            for pos, (w, k) in enumerate(words, start=1):  # position 0 = [CLS]
                hidden[b, pos, self.lexicon[w]] = 1.0
                word_index[b, pos] = k
            n_words[b] = max((k for _, k in words), default=-1) + 1
        return Side(hidden, word_index, n_words, sentences, langs, pooling)


def test_encode_words_keeps_positions_with_a_stub_encoder() -> None:
    stub = DroppingStub({"a": 0, "b": 1, "c": 2}, empty={"~"})
    out = encode_words(stub, [["~", "a", "~", "b", "~"], ["c"], ["~"]], "de")
    assert out.vectors.shape == (3, 5, 8)
    assert out.mask.tolist() == [
        [False, True, False, True, False],
        [True, False, False, False, False],
        [False] * 5,
    ]
    assert out.no_subwords == [[0, 2, 4], [], [0]] and out.truncated == [[], [], []]
    assert torch.equal(out.vectors[0, 3], one_hot([1])[0]) and not out.vectors[0, 4].any()


# Characters the tiny model's BERT normaliser removes (controls and zero-width/format chars)
INVISIBLE = ["\x7f", "\x01", "\x85", "\u200b", "\u200d", "\u2060", "\ufeff"]


@pytest.fixture(scope="module")
def tiny_encoder(tiny_model):
    return xalign.load_encoder(str(tiny_model), max_length=512).eval()


@pytest.mark.parametrize("char", INVISIBLE)
def test_zero_subword_words_with_the_tiny_tokenizer(tiny_encoder, char: str) -> None:
    clean = ["the", "house", "is", "small", "."]
    # the invisible word at the start, in the middle and at the end
    sents = [[char, *clean], [*clean[:2], char, *clean[2:]], [*clean, char], clean]
    out = encode_words(tiny_encoder, sents, "en", pooling="mean")
    assert out.no_subwords == [[0], [2], [5], []] and out.n_truncated == 0
    ref = out.vectors[3, :5]
    for b, skip in enumerate((0, 2, 5)):
        kept = [k for k in range(6) if k != skip]
        assert out.mask[b].tolist() == [k != skip for k in range(6)]
        assert torch.allclose(out.vectors[b, kept], ref, atol=1e-5)
        assert not out.vectors[b, skip].any()


def test_truncated_words_are_masked_and_counted(tiny_encoder, tiny_model) -> None:
    encoder = xalign.load_encoder(str(tiny_model), max_length=12)  # 10 content subwords
    long = ["the", "is", "very", "and", "Kindergarten", "and", "very", "the", "."]
    counts = subword_counts(encoder.tokenizer, [long])[0]
    assert counts == [1, 1, 1, 1, 6, 1, 1, 1, 1]  # K ##ind ##er ##g ##ar ##ten
    out = encode_words(encoder, [long, ["the", "is"]], "en")
    # 4 words + 6 of Kindergarten's subwords fit exactly: nothing after it survives
    assert out.truncated == [[5, 6, 7, 8], []] and out.n_truncated == 4
    assert out.mask[0].tolist() == [True] * 5 + [False] * 4
    encoder = xalign.load_encoder(str(tiny_model), max_length=9)  # 7: Kindergarten cut
    out = encode_words(encoder, [long], "en")
    assert out.truncated == [[4, 5, 6, 7, 8]] and out.mask[0].tolist() == [True] * 4 + [False] * 5
    assert issubclass(TruncationWarning, UserWarning)


def test_display_word_shows_invisible_characters() -> None:
    assert display_word("\x7f") == "<U+007F>" and display_word("a\u200bb") == "a<U+200B>b"
    assert display_word("Haus") == "Haus" and display_word("") == "<empty>"
    assert display_word("\u00a0") == "<U+00A0>"
