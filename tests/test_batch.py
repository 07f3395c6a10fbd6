import pytest
import torch

from xalign.batch import pool_words


def _loop_pool(hidden, word_index, pooling):
    out = []
    for b in range(hidden.shape[0]):
        words = {}
        for t in range(hidden.shape[1]):
            w = int(word_index[b, t])
            if w >= 0:
                words.setdefault(w, []).append(hidden[b, t])
        row = []
        for w in sorted(words):
            vs = torch.stack(words[w])
            row.append({"last": vs[-1], "first": vs[0], "mean": vs.mean(0)}[pooling])
        out.append(row)
    return out


@pytest.mark.parametrize("pooling", ["last", "first", "mean"])
def test_pool_words_matches_loop(pooling):
    torch.manual_seed(0)
    hidden = torch.randn(3, 7, 4)
    # [CLS] w0 w0 w1 w2 w2 [SEP] / [CLS] w0 w1 [SEP] pad pad pad / [CLS] w0 w0 w0 [SEP] pad pad
    word_index = torch.tensor(
        [[-1, 0, 0, 1, 2, 2, -1], [-1, 0, 1, -1, -1, -1, -1], [-1, 0, 0, 0, -1, -1, -1]]
    )
    n_words = torch.tensor([3, 2, 1])
    vecs, mask = pool_words(hidden, word_index, n_words, pooling)
    assert vecs.shape == (3, 3, 4)
    assert mask.tolist() == [[True, True, True], [True, True, False], [True, False, False]]
    for b, row in enumerate(_loop_pool(hidden, word_index, pooling)):
        for w, v in enumerate(row):
            torch.testing.assert_close(vecs[b, w], v)
    assert torch.all(vecs[~mask] == 0)


def test_word_without_subword_is_masked():
    hidden = torch.randn(1, 4, 2)
    word_index = torch.tensor([[-1, 0, 2, -1]])  # word 1 was normalised away
    vecs, mask = pool_words(hidden, word_index, torch.tensor([3]), "last")
    assert mask.tolist() == [[True, False, True]]


def test_pool_words_gradient_flows_to_chosen_subword_only():
    hidden = torch.randn(1, 4, 2, requires_grad=True)
    word_index = torch.tensor([[-1, 0, 0, -1]])
    vecs, _ = pool_words(hidden, word_index, torch.tensor([1]), "last")
    vecs.sum().backward()
    assert hidden.grad[0, 2].abs().sum() > 0 and hidden.grad[0, 1].abs().sum() == 0
