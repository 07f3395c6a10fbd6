"""The ``align`` task's layer sweep (``layer: all``): every hidden state from one forward."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from xalign_align_eval import AlignConfig, AlignTask, AlignTaskError

import xalign
from xalign import ExtractError, TaskContext, encode_words_layers
from xalign.alignment import GoldAlignmentWarning
from xalign.alignment.extract import encode_words
from xalign.evaluation.runs import evaluate_runs

SENTS = [["Der", "Hund", "schläft", "."], ["Ein", "sehr", "langes", "Wort"]]


@pytest.fixture
def gold(tmp_path: Path) -> Path:
    folder = tmp_path / "tiny-deen"
    folder.mkdir()
    (folder / "test.de").write_text("Der Hund schläft .\nIch bin hier\n", encoding="utf-8")
    (folder / "test.en").write_text("The dog sleeps .\nI am here\n", encoding="utf-8")
    (folder / "de-en.wa").write_text("0-0 1-1 2-2 3-3\n0-0 1-1 2-2\n", encoding="utf-8")
    return folder


def test_one_forward_gives_every_layer(tiny_model: Path) -> None:
    encoder = xalign.load_encoder(str(tiny_model)).eval()
    calls = []
    encoder.model.register_forward_hook(lambda *a: calls.append(1))
    with torch.inference_mode():
        sweep = encode_words_layers(encoder, SENTS, "de", [0, 1, 2, -1])
    assert len(calls) == 1
    for k, got in sweep.items():
        single = xalign.load_encoder(str(tiny_model), layer=k).eval()
        with torch.inference_mode():
            want = encode_words(single, SENTS, "de")
        assert torch.allclose(got.vectors, want.vectors, atol=1e-6), k
        assert torch.equal(got.mask, want.mask)
    assert torch.equal(sweep[2].vectors, sweep[-1].vectors)
    assert not torch.allclose(sweep[0].vectors, sweep[2].vectors)


def test_out_of_range_layer_names_the_range(tiny_model: Path) -> None:
    encoder = xalign.load_encoder(str(tiny_model)).eval()
    with pytest.raises(ExtractError, match=r"0\.\.2") as err:
        encode_words_layers(encoder, SENTS, "de", [3])
    assert err.value.option == "layer"


def test_layer_option_values() -> None:
    assert AlignConfig(layer="all").sweep and not AlignConfig().sweep
    assert AlignConfig(layer="3").layer == 3  # a number given as text (--option align.layer=3)
    with pytest.raises(AlignTaskError, match="'all'"):
        AlignConfig(layer="last")


@pytest.mark.parametrize("method", ["argmax", "softmax"])
def test_sweep_equals_one_run_per_layer(tiny_model: Path, gold: Path, tmp_path, method) -> None:
    context = TaskContext(show_progress=False, output_dir=tmp_path / "out")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GoldAlignmentWarning)
        result = AlignTask(AlignConfig(sets=[str(gold)], layer="all", method=method)).run(
            str(tiny_model), context
        )
        single = {
            k: AlignTask(AlignConfig(sets=[str(gold)], layer=k, method=method))
            .run(str(tiny_model), context)
            .scores["tiny-deen"]["aer"]
            for k in range(3)
        }
    assert list(result.scores) == ["L0", "L1", "L2"] and result.main_metric == "average"
    for k in range(3):
        assert result.scores[f"L{k}"]["tiny-deen"] == pytest.approx(single[k])
        assert result.scores[f"L{k}"]["average"] == pytest.approx(single[k])
    sweep = result.meta["layer_sweep"]
    assert sweep["best"] == min(single, key=single.get)
    plot = Path(result.meta["artifacts"][0])
    assert plot.exists() and plot.read_bytes()[:4] == b"\x89PNG"


def test_eval_logs_the_plot_to_mlflow(tiny_model: Path, gold: Path, tracking_uri, tmp_path):
    from mlflow.tracking import MlflowClient

    context = TaskContext(show_progress=False, output_dir=tmp_path / "eval")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GoldAlignmentWarning)
        (run,) = evaluate_runs(
            str(tiny_model),
            "align",
            options={"sets": [str(gold)], "layer": "all"},
            context=context,
            tracking_uri=tracking_uri,
        )
    client = MlflowClient(tracking_uri)
    names = {a.path for a in client.list_artifacts(run.run_id)}
    assert "align_layers.png" in names and "result.json" in names
    stored = json.loads(Path(client.download_artifacts(run.run_id, "result.json")).read_text())
    assert stored["scores"]["L2"]["average"] == pytest.approx(run.result.scores["L2"]["average"])
