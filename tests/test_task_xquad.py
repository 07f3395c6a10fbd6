"""XQuAD / qa-mini task plugin: QA windows, span decoding, and the tasks end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import xalign_xquad as qa
from transformers import AutoTokenizer

import xalign.evaluation.qa as qaf
from xalign import TaskContext, TaskResult
from xalign.evaluation import DataUnavailableError

TINY = dict(
    train_limit=32,
    test_limit=16,
    epochs=1,
    max_length=48,
    doc_stride=16,
    max_query_length=16,
    batch_size=8,
)
CONTEXT = (
    "The river flows through the old town and past the market square. "
    "Every spring the town holds a festival with music and dancing. "
    "The oldest bridge in the region was built in 1602 by local masons. "
    "Today tourists cross it to visit the castle on the hill above the valley."
)
ANSWER = "built in 1602 by local masons"


def example(
    question: str = "When was the oldest bridge built?",
    context: str = CONTEXT,
    answer: str = ANSWER,
    qid: str = "q1",
) -> dict:
    return {
        "id": qid,
        "title": "",
        "context": context,
        "question": question,
        "answers": {"text": [answer], "answer_start": [context.index(answer)]},
    }


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    return AutoTokenizer.from_pretrained(tiny_model)


def gold_logits(features: list[dict]) -> list[tuple[list[float], list[float]]]:
    """Logits peaked at each window's gold start/end (0 = no answer in the window)."""
    out = []
    for f in features:
        start, end = [0.0] * len(f["input_ids"]), [0.0] * len(f["input_ids"])
        start[f["start_positions"]] += 10.0
        end[f["end_positions"]] += 10.0
        out.append((start, end))
    return out


def test_answer_positions_on_hand_made_offsets() -> None:
    # [CLS] q [SEP] "The"(0,3) " old"(3,7) " bridge"(7,14) [SEP]; offsets may include a space
    offsets = [None, None, None, (0, 3), (3, 7), (7, 14), None]
    assert qaf.answer_positions(offsets, 4, 14) == (4, 5)
    assert qaf.answer_positions(offsets, 0, 3) == (3, 3)
    assert qaf.answer_positions(offsets, 8, 20) == (0, 0)  # runs past the window
    assert qaf.answer_positions([None, None], 0, 1) == (0, 0)


def test_short_context_answer_recovered_from_gold_logits(tokenizer) -> None:
    ex = example()
    feats, wins = qaf.encode_qa(
        tokenizer, [ex], max_length=256, doc_stride=32, max_query_length=16, train=True
    )
    assert len(feats) == 1 and all(
        wins[0].max_context[i] == (o is not None) for i, o in enumerate(wins[0].offsets)
    )
    assert feats[0]["start_positions"] > 0
    preds = qaf.decode_answers([ex], wins, gold_logits(feats))
    assert preds == {"q1": ANSWER}


def test_long_context_windows_advance_by_doc_stride(tokenizer) -> None:
    ex = example()
    stride = 8
    feats, wins = qaf.encode_qa(
        tokenizer, [ex], max_length=48, doc_stride=stride, max_query_length=16, train=True
    )
    full = tokenizer(CONTEXT, add_special_tokens=False, return_offsets_mapping=True)
    doc = [tuple(o) for o in full["offset_mapping"]]
    assert len(wins) > 3 and all(len(f["input_ids"]) <= 48 for f in feats)
    for j, win in enumerate(wins):  # window j holds document tokens j*stride, j*stride+1, ...
        ctx = [o for o in win.offsets if o is not None]
        assert ctx == doc[j * stride : j * stride + len(ctx)]
    assert wins[-1].offsets[-2][1] == len(CONTEXT)  # the last window reaches the end
    assert sum(sum(w.max_context) for w in wins) == len(doc)  # one window per token
    start = CONTEXT.index(ANSWER)
    with_answer = [f for f in feats if f["start_positions"] > 0]
    assert with_answer and len(with_answer) < len(feats)  # others point at token 0
    for f, win in zip(feats, wins, strict=True):
        if f["start_positions"] > 0:
            s, e = win.offsets[f["start_positions"]], win.offsets[f["end_positions"]]
            assert CONTEXT[s[0] : e[1]].strip() == ANSWER
        else:
            ctx = [o for o in win.offsets if o is not None]
            assert ctx[0][0] > start or ctx[-1][1] < start + len(ANSWER)
    assert qaf.decode_answers([ex], wins, gold_logits(feats)) == {"q1": ANSWER}


def test_span_decoding_constraints(tokenizer) -> None:
    ex = example()
    feats, wins = qaf.encode_qa(
        tokenizer, [ex], max_length=256, doc_stride=32, max_query_length=16, train=True
    )
    win, s, e = wins[0], feats[0]["start_positions"], feats[0]["end_positions"]
    gold = (win.offsets[s][0], win.offsets[e][1])

    def logits(start_at: int, end_at: int) -> tuple[list[float], list[float]]:
        start, end = [0.0] * len(win.offsets), [0.0] * len(win.offsets)
        start[start_at], end[end_at] = 10.0, 10.0
        return start, end

    start, end = logits(s, e)
    start[1] = end[1] = 100.0  # a question token: outside the context, ignored
    assert qaf.decode_answers([ex], wins, [(start, end)]) == {"q1": ANSWER}
    span = qaf.best_span(*logits(s, e), win, max_answer_length=e - s)  # gold is 1 too long
    assert span is not None and (span[1], span[2]) != gold
    assert qaf.best_span(*logits(s, s - 1), win, n_best=1) is None  # end before start
    assert qaf.decode_answers([ex], wins, [logits(s, s - 1)], n_best=1) == {"q1": ""}


def test_long_questions_are_cut(tokenizer) -> None:
    question = " what " + "very " * 40 + "long question is this?"
    texts, lengths = qaf.cut_questions(tokenizer, [question, "short?"], 10)
    assert lengths[0] <= 10 and texts[0].startswith("what very")
    assert texts[1] == "short?"


def run_task(cls: type, model: Path, data: Path, *, seed: int = 0, **options) -> TaskResult:
    task = cls.from_options({**TINY, "languages": ["en", "de"], **options})
    return task.run(str(model), TaskContext(data_dir=data, seed=seed, show_progress=False))


def check_result(result: TaskResult, langs: list[str], n_test: int) -> None:
    assert result.main_metric == "f1"
    assert list(result.scores) == langs and list(result.per_example) == langs
    for lang in langs:
        values, scores = result.per_example[lang], result.scores[lang]
        assert len(values) == n_test and all(0.0 <= v <= 1.0 for v in values)
        assert set(scores) == {"exact_match", "f1"}
        assert scores["f1"] == pytest.approx(100 * sum(values) / n_test)
        assert 0.0 <= scores["exact_match"] <= scores["f1"] <= 100.0
    assert result.meta["n_test"] == {lang: n_test for lang in langs}


def test_qa_mini_end_to_end_and_deterministic(tiny_model, shared_data) -> None:
    first = run_task(qa.QaMini, tiny_model, shared_data)
    check_result(first, ["en", "de"], 16)
    assert first.meta["n_train"] == 32 and first.meta["n_train_features"] > 32
    assert first.meta["train"]["steps"] == -(-first.meta["n_train_features"] // 8)
    again = run_task(qa.QaMini, tiny_model, shared_data)
    assert again.per_example == first.per_example and again.scores == first.scores
    assert again.meta["train"]["epoch_losses"] == first.meta["train"]["epoch_losses"]


def test_xquad_trains_on_a_local_squad_file(tiny_model, shared_data, tmp_path) -> None:
    squad = json.loads((shared_data / "tydiqa" / "tydiqa.goldp.en.train.json").read_text())
    (tmp_path / "squad").mkdir()
    (tmp_path / "squad" / "train-v1.1.json").write_text(json.dumps(squad))
    (tmp_path / "xquad").symlink_to(shared_data / "xquad")
    result = run_task(
        qa.Xquad,
        tiny_model,
        tmp_path,
        train_limit=16,
        languages=["es"],
        max_length=512,
        doc_stride=64,
    )
    check_result(result, ["es"], 16)
    assert result.meta["max_length"] == 128  # capped at the tiny model's positions
    assert result.meta["config"]["warmup_steps"] == 500  # the XTREME default
    assert qa.Xquad.options()["languages"] == list(qa.XQUAD_LANGS)


def test_missing_squad_is_a_clear_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataUnavailableError, match="train-v1.1.json"):
        qaf.load_squad_train(tmp_path, limit=4)


def test_length_grouped_batches_cover_every_feature_once() -> None:
    from xalign.evaluation.finetune import _batches

    lengths = [(7 * i) % 50 + 1 for i in range(203)]
    plain = _batches(lengths, 8, torch.Generator().manual_seed(0))
    grouped = _batches(lengths, 8, torch.Generator().manual_seed(0), group_by_length=True)
    for batches in (plain, grouped):
        assert sorted(i for b in batches for i in b) == list(range(203))
        assert all(1 <= len(b) <= 8 for b in batches)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in grouped)
    assert padded < sum(len(b) * max(lengths[i] for i in b) for b in plain)
