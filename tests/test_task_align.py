"""The ``align`` task: link extraction, AER through the task on a fake gold set, end to end."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from xalign_align_eval import (
    AlignConfig,
    AlignTask,
    extract_links,
    mutual_links,
    ot_plan,
    sentence_aer,
)

from xalign import Side, TaskContext
from xalign.alignment import GoldAlignmentWarning, available_gold_sets

# ------------------------------------------------------------------------ extraction


def test_mutual_argmax_of_a_similarity_matrix() -> None:
    sim = torch.tensor([[0.9, 0.1, 0.2],
                        [0.8, 0.3, 0.7],
                        [0.1, 0.6, 0.5]])
    # rows -> 0, 0, 1; columns -> 0, 2, 1: only (0, 0) and (2, 1) are mutual.
    assert mutual_links(sim) == {(0, 0), (2, 1)}


def test_relative_threshold_on_a_plan() -> None:
    plan = torch.tensor([[0.40, 0.10, 0.00],
                         [0.00, 0.20, 0.15],
                         [0.05, 0.00, 0.10]])
    assert mutual_links(plan, 1.0) == {(0, 0), (1, 1)}
    # >= half the row max and >= half the column max
    assert mutual_links(plan, 0.5) == {(0, 0), (1, 1), (1, 2), (2, 2)}


def test_ot_plan_is_a_coupling_and_recovers_a_permutation() -> None:
    torch.manual_seed(0)
    x = torch.randn(5, 8)
    perm = torch.tensor([3, 0, 4, 1, 2])
    y = x[perm] + 0.01 * torch.randn(5, 8)
    plan = ot_plan(x, y, blur=0.05, max_iter=100)
    assert plan.shape == (5, 5)
    assert torch.allclose(plan.sum(1), torch.full((5,), 0.2), atol=1e-3)
    assert torch.allclose(plan.sum(0), torch.full((5,), 0.2), atol=1e-3)
    expected = {(int(perm[j]), j) for j in range(5)}
    assert mutual_links(plan) == expected
    ones = torch.ones(5, dtype=torch.bool)
    assert extract_links(x, ones, y, ones, AlignConfig(method="ot")) == expected


def test_masked_words_keep_their_positions() -> None:
    x = torch.eye(3)
    y = torch.eye(3)[[2, 1, 0]]
    x_mask = torch.tensor([True, False, True])
    y_mask = torch.tensor([True, True, True])
    for method in ("argmax", "ot"):
        links = extract_links(x, x_mask, y, y_mask, AlignConfig(method=method))
        assert links == {(0, 2), (2, 0)}


def test_options_are_validated() -> None:
    assert AlignConfig(sets="bicici-deen, awesome-enfr").sets == ["bicici-deen", "awesome-enfr"]
    for bad in ({"method": "itermax"}, {"pooling": "max"}, {"threshold": 0.0}, {"limit": -1},
                {"sinkhorn_iters": -1}):
        with pytest.raises(ValueError):
            AlignConfig(**bad)


# ------------------------------------------------------------------------ AER through the task


class StubEncoder:
    """One subword per word; a word's vector is the one-hot of its concept in ``lexicon``."""

    def __init__(self, lexicon: dict[str, int], dim: int = 8, random: bool = False) -> None:
        self.lexicon, self.dim, self.random = lexicon, dim, random
        self.generator = torch.Generator().manual_seed(0)

    def _vector(self, word: str) -> torch.Tensor:
        if self.random:
            return torch.randn(self.dim, generator=self.generator)
        return torch.nn.functional.one_hot(torch.tensor(self.lexicon[word]), self.dim).float()

    def encode(self, sentences, langs, *, pooling="last", device=None) -> Side:
        longest = max(len(s) for s in sentences)
        hidden = torch.zeros(len(sentences), longest, self.dim)
        word_index = torch.full((len(sentences), longest), -1)
        for b, words in enumerate(sentences):
            for i, word in enumerate(words):
                hidden[b, i] = self._vector(word)
                word_index[b, i] = i
        n_words = torch.tensor([len(s) for s in sentences])
        return Side(hidden, word_index, n_words, sentences, langs, pooling)


LEXICON = {"ein": 0, "a": 0, "Hund": 1, "dog": 1,
           "x": 2, "X": 2, "y": 3, "Z": 3, "z": 4, "Y": 4}


@pytest.fixture
def fake_gold(tmp_path: Path) -> Path:
    """A bicici-layout folder: a perfect pair, then a pair with two crossed links."""
    folder = tmp_path / "fake-deen"
    folder.mkdir()
    (folder / "test.de").write_text("ein Hund\nx y z\n", encoding="utf-8")
    (folder / "test.en").write_text("a dog\nX Y Z\n", encoding="utf-8")
    # sentence 0 also has an out-of-range link (5-5); sentence 1: 2p1 is possible only
    (folder / "de-en.wa").write_text("0-0 1-1 5-5\n0-0 1-1 2p1\n", encoding="utf-8")
    return folder


def _evaluate(folder: Path, encoder: StubEncoder, **options):
    task = AlignTask(AlignConfig(sets=[str(folder)], **options))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GoldAlignmentWarning)
        return task.evaluate(encoder, TaskContext(show_progress=False), model="stub")


def test_perfect_alignment_has_aer_zero(fake_gold: Path) -> None:
    for method in ("argmax", "ot"):
        result = _evaluate(fake_gold, StubEncoder(LEXICON), method=method, limit=1)
        scores = result.scores["fake-deen"]
        assert scores["aer"] == 0.0 and scores["precision"] == 1.0 and scores["recall"] == 1.0
        assert result.per_example["fake-deen"] == [0.0]


def test_hand_computed_aer(fake_gold: Path) -> None:
    result = _evaluate(fake_gold, StubEncoder(LEXICON))
    # predicted: {0-0, 1-1} and {0-0, 1-2, 2-1}; gold S = {0-0, 1-1} twice, P adds 2-1 in pair 2
    # |A| = 5, |S| = 4, |A∩S| = 2 + 1, |A∩P| = 2 + 2 -> AER = 1 - 7/9
    scores = result.scores["fake-deen"]
    assert scores["aer"] == pytest.approx(2 / 9)
    assert scores["precision"] == pytest.approx(4 / 5)
    assert scores["recall"] == pytest.approx(3 / 4)
    assert result.per_example["fake-deen"] == pytest.approx([0.0, 0.4])
    meta = result.meta
    assert meta["higher_is_better"] is False and result.main_metric == "aer"
    assert meta["languages"] == {"fake-deen": "de"} and meta["pairs"] == {"fake-deen": "de-en"}
    assert meta["out_of_range"] == {"fake-deen": [[0, 5, 5]]}
    assert meta["sentence_counts"]["fake-deen"] == {"matched": [4, 3], "total": [4, 5]}


def test_languages_select_sets(fake_gold: Path) -> None:
    task = AlignTask(AlignConfig(sets=[str(fake_gold)]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GoldAlignmentWarning)
        assert task.load_sets(TaskContext(languages=["de"]))[0].name == "fake-deen"
        with pytest.raises(ValueError, match="matches languages"):
            task.load_sets(TaskContext(languages=["fr"]))


def test_sentence_aer_of_empty_sentence_is_zero() -> None:
    assert sentence_aer([0, 3], [0, 5]) == [0.0, pytest.approx(0.4)]


# ------------------------------------------------------------------------ end to end


@pytest.mark.parametrize(("method", "limit"), [("argmax", 20), ("ot", 5)])
def test_tiny_model_on_every_shared_gold_set(tiny_model, shared_data, method, limit) -> None:
    context = TaskContext(data_dir=shared_data, show_progress=method == "ot")
    config = AlignConfig(limit=limit, method=method)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GoldAlignmentWarning)
        result = AlignTask(config).run(str(tiny_model), context)
    expected = [s for s in available_gold_sets(shared_data) if not s.endswith("-dev")]
    assert sorted(result.scores) == sorted(expected) and len(expected) == 5
    for name, scores in result.scores.items():
        assert 0.0 <= scores["aer"] <= 1.0 and 0.0 <= scores["f1"] <= 1.0
        assert scores["n_sentences"] == limit and scores["n_pred"] > 0
        assert len(result.per_example[name]) == limit
        assert all(0.0 <= v <= 1.0 for v in result.per_example[name])
    assert result.meta["languages"]["bicici-deen"] == "de"


@pytest.mark.integration
def test_e5_aligns_bicici_far_better_than_random_vectors(shared_data) -> None:
    context = TaskContext(data_dir=shared_data, show_progress=False)
    task = AlignTask(AlignConfig(sets=["bicici-deen"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GoldAlignmentWarning)
        e5 = task.run("packaged:multilingual-e5-small", context).scores["bicici-deen"]
        rand = task.evaluate(StubEncoder({}, dim=64, random=True), context)
    rand_aer = rand.scores["bicici-deen"]["aer"]
    assert e5["n_sentences"] == 100
    # measured: e5 0.293 (mutual argmax, last layer, mean pooling), random vectors 0.961
    assert e5["aer"] < 0.4, e5
    assert e5["aer"] < rand_aer - 0.4, (e5["aer"], rand_aer)
