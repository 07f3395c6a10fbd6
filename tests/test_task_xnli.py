"""XNLI task plugin: end to end on the tiny model and the shared data, plus the XTREME recipe."""

from __future__ import annotations

from pathlib import Path

import pytest
import xalign_xnli as xnli
import xalign_xquad as qa
from xalign_xnli.data import XNLI_LANGS

from xalign import TaskContext, TaskResult
from xalign.evaluation.finetune import FinetuneSettings

TINY = dict(train_limit=32, test_limit=16, epochs=1, max_length=32, batch_size=8)


pytestmark = pytest.mark.usefixtures("one_thread")


def run_mini(model: Path, data: Path, *, seed: int = 0, **options) -> TaskResult:
    task = xnli.XnliMini.from_options({**TINY, "languages": ["en", "de"], **options})
    return task.run(str(model), TaskContext(data_dir=data, seed=seed, show_progress=False))


def check_result(result: TaskResult, langs: list[str], n_test: int) -> None:
    assert result.main_metric == "accuracy"
    assert list(result.scores) == langs and list(result.per_example) == langs
    for lang in langs:
        values = result.per_example[lang]
        assert len(values) == n_test and set(values) <= {0.0, 1.0}
        assert result.scores[lang] == {"accuracy": pytest.approx(100 * sum(values) / n_test)}
        assert 0.0 <= result.scores[lang]["accuracy"] <= 100.0
    assert result.meta["n_test"] == {lang: n_test for lang in langs}
    assert result.meta["avg_accuracy"] == pytest.approx(
        sum(s["accuracy"] for s in result.scores.values()) / len(langs)
    )


def test_registered_with_their_options() -> None:
    tasks: list[type] = []
    xnli.register_tasks(tasks.append)
    assert [t.name for t in tasks] == ["xnli", "xnli-mini", "xnli-probe"]
    full, mini = (t.options() for t in tasks[:2])
    assert (full["learning_rate"], full["epochs"], full["max_length"], full["batch_size"]) == (
        2e-5,
        5,
        128,
        32,
    )
    assert full["languages"] == list(XNLI_LANGS) and full["select_checkpoint"]
    assert mini["languages"] == ["en", "bg", "de", "el", "es", "fr"]
    assert xnli.XnliConfig(languages="de, fr").languages == ["de", "fr"]
    with pytest.raises(ValueError, match="unknown option"):
        xnli.XnliMini.from_options({"nope": 1})


def test_recipe_options_reach_the_finetuning_loop() -> None:
    assert xnli.XnliConfig(grad_accum=2, freeze_embeddings=True).settings() == FinetuneSettings(
        learning_rate=2e-5, epochs=5, batch_size=32, grad_accum=2, freeze_embeddings=True
    )
    assert qa.XquadConfig(group_by_length=True).settings() == FinetuneSettings(
        learning_rate=3e-5,
        epochs=3,
        batch_size=32,
        warmup_steps=500,
        weight_decay=1e-4,
        group_by_length=True,
    )


def test_xnli_mini_end_to_end_and_deterministic(tiny_model, shared_data) -> None:
    first = run_mini(tiny_model, shared_data, heldout=16)
    check_result(first, ["en", "de"], 16)
    log = first.meta["train"]
    assert log["steps"] == 4 and len(log["epoch_scores"]) == 1 and log["best_epoch"] == 1
    assert (first.meta["n_train"], first.meta["n_select"]) == (32, 16)
    assert "classifier.weight" in first.meta["new_parameters"]
    again = run_mini(tiny_model, shared_data, heldout=16)
    assert again.per_example == first.per_example
    assert again.meta["train"]["epoch_losses"] == log["epoch_losses"]
    other = run_mini(tiny_model, shared_data, heldout=16, seed=1)
    assert other.meta["train"]["epoch_losses"] != log["epoch_losses"]


def test_context_languages_override_and_split_guard(tiny_model, shared_data) -> None:
    task = xnli.XnliMini.from_options({**TINY, "epochs": 1})
    ctx = TaskContext(data_dir=shared_data, languages=["el"], show_progress=False)
    assert list(task.run(str(tiny_model), ctx).scores) == ["el"]
    too_big = xnli.XnliMini.from_options({**TINY, "train_limit": 2400, "heldout": 100})
    with pytest.raises(ValueError, match="exceed"):
        too_big.run(str(tiny_model), ctx)


def xtreme_layout(shared: Path, root: Path, n_train: int = 32) -> Path:
    """An XTREME-style folder: a small MultiNLI train file plus links to the XNLI files."""
    folder = root / "xnli"
    folder.mkdir(parents=True)
    rows = (shared / "xnli" / "dev-en.tsv").read_text(encoding="utf-8").splitlines()[-n_train:]
    train = ["sentence1\tsentence2\tgold_label"]  # header + "contradictory", as in XTREME
    train += [line.replace("\tcontradiction", "\tcontradictory") for line in rows]
    (folder / "multinli.train.en.tsv").write_text("\n".join(train) + "\n", encoding="utf-8")
    for name in ("dev-en.tsv", "test-en.tsv", "test-fr.tsv", "DERIVED_test-labels.txt"):
        (folder / name).symlink_to(shared / "xnli" / name)
    return root


def test_xnli_recipe_selects_best_epoch_on_english_dev(tiny_model, shared_data, tmp_path):
    data = xtreme_layout(shared_data, tmp_path)
    task = xnli.Xnli.from_options(
        {
            "languages": ["en", "fr"],
            "dev_limit": 16,
            "epochs": 2,
            "test_limit": 16,
            "max_length": 32,
            "batch_size": 16,
        }
    )
    result = task.run(str(tiny_model), TaskContext(data_dir=data, show_progress=False))
    check_result(result, ["en", "fr"], 16)
    log = result.meta["train"]
    assert len(log["epoch_scores"]) == 2 and log["steps"] == 4
    assert log["best_epoch"] == 1 + log["epoch_scores"].index(max(log["epoch_scores"]))
    assert (result.meta["n_train"], result.meta["n_select"]) == (32, 16)


@pytest.mark.integration
def test_xnli_mini_with_the_embedded_model(shared_data) -> None:
    task = xnli.XnliMini.from_options(
        {
            "train_limit": 32,
            "test_limit": 16,
            "epochs": 1,
            "max_length": 64,
            "languages": ["en", "de"],
        }
    )
    result = task.run(
        "packaged:multilingual-e5-small", TaskContext(data_dir=shared_data, show_progress=False)
    )
    check_result(result, ["en", "de"], 16)
