"""The ``eflomal`` reference row of compare's ``align`` table.

eflomal on a synthetic lexicon corpus (word-for-word translations, shuffled order) aligns the
gold pairs far better when the training corpus is aligned with them; the row is scored like
the models (the align task's own scoring), cached for reproducibility, and placed in the
compare table by the ``reference_rows`` hook.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_compare import write_config, write_preset
from test_eflomal import toy_corpus
from test_evaluate import PresetAER, fake_plugins, fresh_store, log_train_run  # noqa: F401
from xalign_align_eval import AlignConfig, AlignTask

import xalign
from xalign import TaskContext, TaskResult
from xalign.alignment import GoldAlignmentWarning, alignment_scores
from xalign.compare import compare, expected_components, training_config
from xalign.compare.references import reference_results
from xalign.plugins import PluginError
from xalign.task import Metric


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XALIGN_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def gold_folder(root: Path, src: list, tgt: list, links: list) -> Path:
    """A bicici-layout gold set ``root/toy-deen`` (every link sure)."""
    folder = root / "toy-deen"
    folder.mkdir(parents=True)
    (folder / "test.de").write_text("\n".join(" ".join(s) for s in src) + "\n", encoding="utf-8")
    (folder / "test.en").write_text("\n".join(" ".join(t) for t in tgt) + "\n", encoding="utf-8")
    wa = "\n".join(" ".join(f"{i}-{j}" for i, j in sorted(g)) for g in links)
    (folder / "de-en.wa").write_text(wa + "\n", encoding="utf-8")
    return folder


def corpus_files(root: Path, src: list, tgt: list) -> dict[str, str]:
    (root / "train.de").write_text("\n".join(" ".join(s) for s in src) + "\n", encoding="utf-8")
    (root / "train.en").write_text("\n".join(" ".join(t) for t in tgt) + "\n", encoding="utf-8")
    return {"src": str(root / "train.de"), "tgt": str(root / "train.en")}


def test_reference_links_use_the_corpus_and_are_cached(cache: Path) -> None:
    src, tgt, gold = toy_corpus(320)
    alone = xalign.eflomal_reference_links(src[:12], tgt[:12])
    ref = xalign.eflomal_reference_links(src[:12], tgt[:12], src[12:], tgt[12:])
    assert ref.extra_pairs == 308 and not ref.from_cache and ref.cache_key != alone.cache_key
    aer = alignment_scores(ref.links, gold[:12], gold[:12])["aer"]
    assert aer < 0.2  # eflomal samples without a seed: 0.06-0.10 seen on this toy corpus
    again = xalign.eflomal_reference_links(src[:12], tgt[:12], src[12:], tgt[12:])
    assert again.from_cache and again.links == ref.links  # eflomal has no seed: the cache
    assert list(cache.glob("eflomal/*.jsonl"))


def test_reference_row_is_scored_like_the_models(tmp_path: Path, cache: Path) -> None:
    src, tgt, gold = toy_corpus(320)
    folder = gold_folder(tmp_path / "gold", src[:12], tgt[:12], gold[:12])
    data = SimpleNamespace(
        corpus={"de": corpus_files(tmp_path, src[12:], tgt[12:])},
        languages=["de"],
        target="en",
        limit=None,
        unescape=True,
    )
    task = AlignTask(AlignConfig(sets=[str(folder)]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GoldAlignmentWarning)
        rows = task.reference_rows(TaskContext(show_progress=False), data)
        (result,) = rows.values()
        assert list(rows) == ["eflomal"] and isinstance(result, TaskResult)
        meta = result.meta["reference"]["toy-deen"]
        assert meta["extra_pairs"] == 308 and meta["symmetrization"] == "grow-diag-final-and"
        ref = xalign.eflomal_reference_links(src[:12], tgt[:12], src[12:], tgt[12:])
        assert ref.from_cache and ref.cache_key == meta["cache_key"]
        want = alignment_scores(ref.links, gold[:12], gold[:12])
        assert result.scores["toy-deen"]["aer"] == pytest.approx(want["aer"])
        counts = result.counts["toy-deen"]
        assert sum(counts.matched) == 2 * sum(
            len(a & g) for a, g in zip(ref.links, gold, strict=False)
        )
        # a language the objectives were not trained on: the gold pairs alone
        other = SimpleNamespace(**{**vars(data), "languages": ["fr"]})
        alone = task.reference_rows(TaskContext(show_progress=False), other)["eflomal"]
        assert alone.meta["reference"]["toy-deen"]["extra_pairs"] == 0
        assert alone.scores["toy-deen"]["aer"] > result.scores["toy-deen"]["aer"]
    assert (
        AlignTask(AlignConfig(sets=[str(folder)], eflomal_row=False)).reference_rows(
            TaskContext(), data
        )
        == {}
    )
    assert (
        AlignTask(AlignConfig(sets=[str(folder)], layer="all")).reference_rows(TaskContext(), data)
        == {}
    )


def _aer_row(**_kw) -> dict[str, TaskResult]:
    """A reference row for the preset-aer task: de 0.1 (better than base's 0.4), el 0.6."""
    scores = {"de": [0.1] * 10, "el": [0.6] * 10}
    result = TaskResult(
        "preset-aer",
        "aer",
        {k: {"aer": sum(v) / len(v)} for k, v in scores.items()},
        scores,
        {"reference": {"aligner": "test"}},
        metrics=(Metric("aer", higher_is_better=False),),
    )
    return {"eflomal": result}


def test_compare_adds_the_reference_row(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(
        PresetAER, "reference_rows", lambda self, context, data: _aer_row(), raising=False
    )
    uri = fresh_store(tmp_path)
    cfg_path = write_config(
        tmp_path / "cfg.yaml", write_preset(tmp_path / "base", "base", [0]), uri, tmp_path / "o"
    )
    cfg = training_config(cfg_path, [], "sinkhorn", 0)
    log_train_run(
        uri,
        write_preset(tmp_path / "sinkhorn-0", "sinkhorn", [0]),
        fingerprint=cfg.fingerprint(),
        components=expected_components(cfg)[0],
    )
    report = compare(
        ["sinkhorn"], config_path=cfg_path, tasks=["preset", "preset-aer"], show_progress=False
    )
    assert report.summary.objectives == ["base", "sinkhorn", "eflomal"]
    md = report.markdown
    assert "| eflomal | **0.100** (-0.300)* | 0.600 (+0.300)* |" in md  # de, el; 1 seed: no ±
    assert "| eflomal | – | – | – |" in md  # the preset table has no such row: dashes
    assert report.to_dict()["runs"]["references"] == {
        "eflomal": {"preset-aer": {"aligner": "test"}}
    }
    assert Path(report.artifacts["figure:preset-aer"]).exists()


def test_a_failing_hook_names_the_plugin(monkeypatch, tmp_path) -> None:
    def broken(self, context, data):
        raise KeyError("corpus")

    monkeypatch.setattr(PresetAER, "reference_rows", broken, raising=False)
    with pytest.raises(PluginError, match="reference_rows.*KeyError"):
        reference_results(
            ["preset-aer"], {}, xalign.plugins.get_registry(), TaskContext(), None, ["base"]
        )
    monkeypatch.setattr(PresetAER, "reference_rows", lambda s, c, d: {"x": 1}, raising=False)
    with pytest.raises(PluginError, match="must return"):
        reference_results(
            ["preset-aer"], {}, xalign.plugins.get_registry(), TaskContext(), None, ["base"]
        )
    monkeypatch.setattr(PresetAER, "reference_rows", lambda s, c, d: _aer_row(), raising=False)
    rows = reference_results(
        ["preset-aer"], {}, xalign.plugins.get_registry(), TaskContext(), None, ["eflomal"]
    )
    assert list(rows) == ["eflomal (reference)"]
