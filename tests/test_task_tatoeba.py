"""The ``tatoeba`` task: pooling, retrieval, options, and runs on the shared Tatoeba files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from xalign_tatoeba import (
    TatoebaConfig,
    TatoebaTask,
    language_scores,
    mean_pool,
    retrieval_correct,
)

from xalign import TaskContext, XalignError


def test_mean_pool_ignores_masked_tokens() -> None:
    hidden = torch.tensor(
        [[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]], [[5.0, 5.0], [0.0, 0.0], [0.0, 0.0]]]
    )
    mask = torch.tensor([[1, 1, 0], [0, 0, 0]])
    assert torch.equal(mean_pool(hidden, mask), torch.tensor([[2.0, 3.0], [0.0, 0.0]]))


def _numpy_retrieval_accuracy(src: np.ndarray, tgt: np.ndarray) -> float:
    """An independent oracle: top-1 cosine retrieval in numpy (gold of row i is row i)."""
    x = src / np.linalg.norm(src, axis=1, keepdims=True)
    y = tgt / np.linalg.norm(tgt, axis=1, keepdims=True)
    return float(np.mean((x @ y.T).argmax(axis=1) == np.arange(len(x))))


def test_retrieval_correct_by_hand_and_against_the_metric() -> None:
    queries = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1]])
    keys = torch.tensor([[2.0, 0.0], [1.0, 0.2], [0.0, 3.0]])
    # query 0 -> key 0 (right); query 1 -> key 2 (wrong); query 2 -> key 0 (wrong: gold 2)
    assert retrieval_correct(queries, keys) == [1.0, 0.0, 0.0]
    rng = np.random.default_rng(0)
    src, tgt = rng.normal(size=(40, 6)), rng.normal(size=(40, 6))
    tgt[:25] = src[:25] + 0.3 * rng.normal(size=(25, 6))
    correct = retrieval_correct(torch.tensor(src), torch.tensor(tgt))
    assert np.mean(correct) == pytest.approx(_numpy_retrieval_accuracy(src, tgt))


def test_both_directions_average_into_the_main_metric() -> None:
    src = torch.eye(3)
    eng = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.1]])
    # xx->en: 0 ok, 1 ok, 2 -> 2 ok; en->xx: 0 ok, 1 ok, 2 -> 1 wrong
    scores, per_query = language_scores(src, eng, "both")
    assert per_query == [1.0, 1.0, 1.0, 1.0, 1.0, 0.0]
    assert scores["accuracy_xx_en"] == 100.0
    assert scores["accuracy_en_xx"] == pytest.approx(200 / 3)
    assert scores["accuracy"] == pytest.approx(500 / 6) and scores["n_pairs"] == 3.0


def test_options_are_validated() -> None:
    assert TatoebaConfig().languages == ["bg", "de", "el", "es", "fr"]
    assert TatoebaConfig(languages="de, fra").languages == ["de", "fra"]
    for bad in ({"directions": "en-en"}, {"limit": -1}, {"batch_size": 0}):
        with pytest.raises(ValueError):
            TatoebaConfig(**bad)


def test_tiny_model_on_german(tiny_model, shared_data) -> None:
    context = TaskContext(data_dir=shared_data, languages=["de"], show_progress=False)
    result = TatoebaTask(TatoebaConfig(limit=50)).run(str(tiny_model), context)
    assert result.main_metric == "accuracy" and list(result.scores) == ["de"]
    scores = result.scores["de"]
    assert 0.0 <= scores["accuracy"] <= 100.0 and scores["n_pairs"] == 50
    assert len(result.per_example["de"]) == 50
    assert set(result.per_example["de"]) <= {0.0, 1.0}
    assert scores["accuracy"] == pytest.approx(100 * np.mean(result.per_example["de"]))
    assert result.meta["tatoeba_codes"] == {"de": "deu"}


@pytest.mark.parametrize("lang", ["de-DE", "de_DE", "DE-de", "deu_Latn"])
def test_a_region_or_script_subtag_reads_the_language_and_keys_results_by_it(
    tiny_model, shared_data, lang
) -> None:
    context = TaskContext(data_dir=shared_data, show_progress=False)
    result = TatoebaTask(TatoebaConfig(languages=[lang], limit=10)).run(str(tiny_model), context)
    assert list(result.scores) == list(result.per_example) == [lang]
    assert result.meta["tatoeba_codes"] == {lang: "deu"} and result.scores[lang]["n_pairs"] == 10


def test_an_unknown_language_is_refused_when_the_options_are_read() -> None:
    for bad in (["xx-DE"], "de,zz", ["e"]):
        with pytest.raises(XalignError, match="tatoeba: languages: (no Tatoeba code|'e' is not)"):
            TatoebaConfig(languages=bad)


def test_tiny_model_both_directions_iso3_and_no_special_tokens(tiny_model, shared_data) -> None:
    config = TatoebaConfig(
        languages=["deu"], limit=20, directions="both", layer=1, pool_special_tokens=False
    )
    result = TatoebaTask(config).run(str(tiny_model), TaskContext(data_dir=shared_data))
    assert len(result.per_example["deu"]) == 40 and result.meta["layer"] == 1
    assert {"accuracy_xx_en", "accuracy_en_xx"} <= set(result.scores["deu"])


@pytest.mark.integration
def test_e5_retrieves_german_far_above_chance(shared_data) -> None:
    context = TaskContext(data_dir=shared_data, languages=["de"], show_progress=False)
    result = TatoebaTask(TatoebaConfig(limit=100)).run("packaged:multilingual-e5-small", context)
    # chance is 1 %; measured 98.0 % (last layer; 98.5 % on all 1000 pairs)
    assert result.scores["de"]["accuracy"] > 80.0, result.scores


def test_result_does_not_depend_on_the_seed(tmp_path, shared_data) -> None:
    """``uses_seed = False`` holds: with dropout in the model and other seeds (context and torch)
    the result is the same (the encoder runs in eval mode; nothing is sampled)."""
    import torch
    from conftest import build_tiny_encoder

    model = build_tiny_encoder(tmp_path / "m", dropout=0.3)
    results = []
    for s in (0, 7):
        torch.manual_seed(s)
        ctx = TaskContext(data_dir=shared_data, languages=["de"], show_progress=False, seed=s)
        results.append(TatoebaTask(TatoebaConfig(limit=30)).run(str(model), ctx))
    assert TatoebaTask.uses_seed is False
    assert results[0].scores == results[1].scores
    assert results[0].per_example == results[1].per_example
