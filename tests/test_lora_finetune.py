"""``FinetuneSettings.lora``: LoRA adapters (through peft) for task fine-tuning. Only the
adapters and the task head train, the encoder's weights stay, the adapters are merged after
training, and a bad ``lora`` value fails when the task's options are read."""

from __future__ import annotations

import pytest
import torch
import xalign_mlqa
import xalign_udpos
import xalign_xnli
import xalign_xquad
from transformers import (
    BertConfig,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
)

from xalign import FinetuneSettings, XalignError
from xalign.cli.eval import parse_task_options
from xalign.encoders.lora import LoraSettings
from xalign.errors import ConfigError
from xalign.evaluation.finetune import finetune, head_modules

HIDDEN, INTER, LAYERS, LABELS = 8, 16, 3, 3


def _config() -> BertConfig:
    return BertConfig(
        vocab_size=50, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=2,
        intermediate_size=INTER, max_position_embeddings=16, num_labels=LABELS,
    )  # fmt: skip


def _tiny(cls: type = BertForSequenceClassification) -> torch.nn.Module:
    torch.manual_seed(0)
    return cls(_config())


def _features(token_labels: bool = False) -> list[dict]:
    rows = []
    for i in range(24):
        ids = [1, 2 + i % 7, 3 + i % 5, 4]
        labels = [i % LABELS] * len(ids) if token_labels else i % LABELS
        rows.append({"input_ids": ids, "labels": labels})
    return rows


def _settings(**kw) -> FinetuneSettings:
    base = dict(epochs=1, batch_size=8, learning_rate=5e-2)
    return FinetuneSettings(**(base | kw))


def _plain(name: str) -> str:
    """The parameter's name in the model without adapters."""
    return name.replace(".base_layer", "").replace(".original_module", "")


@pytest.mark.parametrize(
    ("cls", "token_labels"),
    [(BertForSequenceClassification, False), (BertForTokenClassification, True)],
)
def test_only_adapters_and_head_train_and_merge_is_w_plus_scaled_ba(cls, token_labels) -> None:
    model = _tiny(cls)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    lora = LoraSettings(r=2, alpha=6.0)
    seen: dict[str, dict[str, torch.Tensor]] = {}

    def look() -> float:  # after the (only) epoch, adapters in place
        seen["trainable"] = {
            n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad
        }
        seen["frozen"] = {
            n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad
        }
        return 1.0

    finetune(model, _features(token_labels), _settings(lora=lora), pad_id=0, select=look)
    trainable, frozen = seen["trainable"], seen["frozen"]
    adapters = {n for n in trainable if ".lora_" in n}
    expected = {
        f"bert.encoder.layer.{i}.attention.self.{m}.lora_{ab}.default.weight"
        for i in range(LAYERS)
        for m in ("query", "value")
        for ab in "AB"
    }
    assert adapters == expected
    assert set(trainable) - adapters == {
        "classifier.modules_to_save.default.weight",
        "classifier.modules_to_save.default.bias",
    }
    # the base (and the head's original) never moved; B left 0 and the head copy moved
    assert all(torch.equal(v, start[_plain(n)]) for n, v in frozen.items()), "base changed"
    assert all(trainable[n].abs().sum() > 0 for n in adapters if "lora_B" in n)
    assert not torch.equal(
        trainable["classifier.modules_to_save.default.weight"], start["classifier.weight"]
    )

    # merged: a plain model, W + (alpha/r)·B·A on the targets, the rest untouched
    after = model.state_dict()
    assert set(after) == set(start) and type(model.classifier) is torch.nn.Linear
    scale = lora.alpha / lora.r
    for name, value in after.items():
        module = name.rsplit(".", 1)[0]
        a = trainable.get(f"{module}.lora_A.default.weight")
        if a is not None and name.endswith(".weight"):
            b = trainable[f"{module}.lora_B.default.weight"]
            torch.testing.assert_close(value, start[name] + scale * b @ a)
        elif name.startswith("classifier."):
            key = name.replace("classifier.", "classifier.modules_to_save.default.")
            assert torch.equal(value, trainable[key])
        else:
            assert torch.equal(value, start[name]), name


def _linear_count(targets: list[str] | None, r: int, first: int = 0) -> int:
    """Hand count of LoRA parameters: r·(d_in + d_out) per adapted linear layer (A: r×d_in,
    B: d_out×r), in layers ``first``.. (the pooler, a ``dense`` too, counts unless frozen)."""
    shapes = {  # (d_in, d_out) of each linear in one BERT layer, by its last name
        "query": [(HIDDEN, HIDDEN)],
        "value": [(HIDDEN, HIDDEN)],
        "key": [(HIDDEN, HIDDEN)],
        "dense": [(HIDDEN, HIDDEN), (HIDDEN, INTER), (INTER, HIDDEN)],
    }
    per_layer = sum(r * (i + o) for t in targets or ["query", "value"] for i, o in shapes[t])
    pooler = r * 2 * HIDDEN if targets and "dense" in targets else 0
    return (LAYERS - first) * per_layer + pooler


@pytest.mark.parametrize(
    ("r", "targets", "frozen_layers"),
    [(4, None, 0), (2, ["query", "key", "value"], 0), (3, ["dense"], 0), (2, None, 2)],
)
def test_trainable_count_is_the_hand_count(r, targets, frozen_layers) -> None:
    model = _tiny()
    counted: list[int] = []

    def count() -> float:
        counted.append(sum(p.numel() for p in model.parameters() if p.requires_grad))
        return 0.0

    settings = _settings(
        lora=LoraSettings(r=r, target_modules=targets),
        freeze_layers=frozen_layers,
        freeze_embeddings=True,  # with LoRA: nothing more to freeze
    )
    log = finetune(model, _features(), settings, pad_id=0, select=count)
    head = HIDDEN * LABELS + LABELS
    assert counted == [_linear_count(targets, r, frozen_layers) + head]
    assert log.as_dict()["trainable_parameters"] == counted[0]


@pytest.mark.parametrize("lora", [None, LoraSettings(r=2)])
def test_best_epoch_weights_are_restored(lora) -> None:
    model = _tiny()
    probe = {"input_ids": torch.tensor([[1, 5, 6, 4]]), "attention_mask": torch.ones(1, 4)}
    logits: list[torch.Tensor] = []
    scores = iter([0.5, 0.9, 0.1])

    def select() -> float:
        with torch.no_grad():
            logits.append(model.eval()(**probe).logits.clone())
        return next(scores)

    log = finetune(model, _features(), _settings(epochs=3, lora=lora), pad_id=0, select=select)
    assert log.best_epoch == 2
    if lora is None:  # full fine-tuning: every weight trains
        assert log.trainable_parameters == sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        final = model(**probe).logits
    torch.testing.assert_close(final, logits[1])
    assert not torch.allclose(final, logits[2])


def test_head_modules_of_task_models() -> None:
    assert head_modules(_tiny()) == ["classifier"]
    assert head_modules(_tiny(BertForTokenClassification)) == ["classifier"]
    assert head_modules(_tiny(BertForQuestionAnswering)) == ["qa_outputs"]
    assert head_modules(_tiny(BertModel)) == []  # no head: the model is its own base
    new = ["bert.pooler.dense.bias", "bert.pooler.dense.weight", "classifier.weight"]
    assert head_modules(_tiny(), new) == ["bert.pooler.dense", "classifier"]


def test_a_new_pooler_trains_in_full_under_lora() -> None:
    model = _tiny()
    model._xalign_new_parameters = ["bert.pooler.dense.weight", "classifier.weight"]
    start = model.bert.pooler.dense.weight.detach().clone()
    finetune(model, _features(), _settings(lora=LoraSettings(r=2)), pad_id=0)
    assert not torch.equal(model.bert.pooler.dense.weight, start)


def test_unknown_target_module_names_the_key() -> None:
    settings = _settings(lora=LoraSettings(target_modules=["nope"]))
    with pytest.raises(ConfigError, match=r"lora\.target_modules=\['nope'\].*query"):
        finetune(_tiny(), _features(), settings, pad_id=0)


TASKS = [
    xalign_xnli.Xnli,
    xalign_xnli.XnliMini,
    xalign_xquad.QaMini,
    xalign_mlqa.Mlqa,
    xalign_udpos.PosMini,
]


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize(
    ("lora", "needle"),
    [
        ({"r": 0}, "lora: r must be >= 1"),
        ({"alpha": -1}, "lora: alpha must be > 0"),
        ({"dropout": 1.0}, "lora: dropout must be in [0, 1)"),
        ({"target_modules": []}, "lora: target_modules must be null"),
        ({"r": "two"}, "lora.r: expected an integer, got 'two'"),
        ({"rank": 4}, "lora.rank: unknown option 'rank'"),
        (4, "lora: expected"),
    ],
)
def test_a_bad_lora_value_fails_at_option_load(task, lora, needle) -> None:
    with pytest.raises(XalignError) as info:
        task.from_options({"lora": lora})
    assert needle in str(info.value) and task.name in str(info.value)


@pytest.mark.parametrize("task", TASKS)
def test_dotted_task_options_set_lora(task) -> None:
    items = [f"{task.name}.lora.r=4", f"{task.name}.lora.target_modules=[query, key]"]
    options = parse_task_options(items, [task.name])[task.name]
    config = task.from_options(options).config
    expected = LoraSettings(r=4, target_modules=["query", "key"])
    assert config.lora == expected and config.settings().lora == expected
    assert task.from_options({}).config.settings().lora is None  # default: full fine-tuning


@pytest.mark.parametrize(("lora", "in_key"), [(None, False), ({"r": 4}, True)])
def test_full_finetuning_keeps_the_eval_key_of_runs_before_lora(
    lora, in_key, monkeypatch, tmp_path
) -> None:
    from xalign.evaluation import runs
    from xalign.task import TaskContext

    keyed: list[dict] = []

    def key(identity, task, options, *args, **kwargs):
        keyed.append(options)
        raise KeyboardInterrupt  # stop before any evaluation

    monkeypatch.setattr(runs, "eval_key", key)
    monkeypatch.setattr(runs, "Tracker", lambda *args: None)  # no store is reached
    spec = runs.ModelSpec(ref="m", path="m", identity="m")
    with pytest.raises(KeyboardInterrupt):
        runs.evaluate_runs(
            spec,
            "xnli-mini",
            options={"lora": lora},
            context=TaskContext(data_dir=tmp_path),
            tracking_uri=f"sqlite:///{tmp_path / 'never.db'}",
        )
    assert ("lora" in keyed[0]) == in_key and "freeze_layers" in keyed[0]


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize(
    ("task", "options", "labels"),
    [
        (
            xalign_xnli.XnliMini,
            dict(train_limit=32, test_limit=8, heldout=8, epochs=2, languages=["en", "de"]),
            3,
        ),
        (
            xalign_udpos.PosMini,
            dict(train_limit=16, dev_limit=4, test_limit=4, epochs=2, languages=["en", "de"]),
            len(xalign_udpos.UPOS_TAGS),
        ),
        (
            xalign_xquad.QaMini,
            dict(
                train_limit=32,
                test_limit=8,
                epochs=1,
                max_length=48,
                doc_stride=16,
                max_query_length=16,
                languages=["en", "de"],
            ),
            2,  # start and end logits
        ),
    ],
)
def test_a_task_run_with_lora_trains_adapters_and_head(
    task, options, labels, tiny_model, shared_data
) -> None:
    from transformers import AutoConfig

    from xalign.task import TaskContext

    r = 2
    config = {"batch_size": 8, "max_length": 32, **options, "lora": {"r": r}}
    result = task.from_options(config).run(
        str(tiny_model), TaskContext(data_dir=shared_data, show_progress=False)
    )
    encoder = AutoConfig.from_pretrained(tiny_model)
    h, layers = encoder.hidden_size, encoder.num_hidden_layers
    new = result.meta["new_parameters"]
    head = h * labels + labels + (h * h + h if "bert.pooler.dense.weight" in new else 0)
    adapters = layers * 2 * r * (h + h)  # query and value: r·(d_in + d_out) each
    assert result.meta["train"]["trainable_parameters"] == adapters + head
    assert result.meta["config"]["lora"]["r"] == r
    assert result.meta["train"]["steps"] > 0
