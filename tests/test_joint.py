"""Joint realignment (Gaschi et al. 2023): an objective plugin as an auxiliary loss while a
task fine-tunes, on the run config's parallel corpus, with a weight schedule."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import yaml
from transformers import AutoModelForSequenceClassification

from xalign.errors import ConfigError, XalignError
from xalign.evaluation.finetune import (
    FinetuneSettings,
    add_auxiliary_gradient,
    finetune,
    load_for_finetuning,
    seed_everything,
)
from xalign.evaluation.joint import JointLoss, JointSettings, JointWarning


def test_schedules_by_hand() -> None:
    constant = JointSettings(objective="sinkhorn", weight=0.5)
    assert [constant.weight_at(t, 4) for t in range(4)] == [0.5] * 4
    linear = JointSettings(objective="sinkhorn", weight=2.0, schedule="linear")
    assert [linear.weight_at(t, 4) for t in range(4)] == [2.0, 1.5, 1.0, 0.5]
    every = JointSettings(objective="sinkhorn", weight=3.0, schedule="every", every=3)
    assert [every.weight_at(t, 7) for t in range(7)] == [3.0, 0, 0, 3.0, 0, 0, 3.0]


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"objective": ""}, "name an objective"),
        ({"objective": "sinkhorn", "schedule": "cosine"}, "joint.schedule must be one of"),
        ({"objective": "sinkhorn", "weight": -1.0}, "joint.weight must be >= 0"),
        ({"objective": "sinkhorn", "every": 0}, "joint.every must be >= 1"),
        ({"objective": "sinkhorn", "batch_size": 0}, "joint.batch_size must be >= 1"),
        ({"objective": "sinkhorn", "max_grad_ratio": 0}, "joint.max_grad_ratio must be > 0"),
        ({"objective": "sinkhorn", "max_grad_ratio": -1.0}, "joint.max_grad_ratio must be > 0"),
        (
            {"objective": "sinkhorn", "max_grad_ratio": float("nan")},
            "joint.max_grad_ratio must be > 0",
        ),
        # what a YAML value can be that is not a number: bool, text, list, infinity
        *[
            ({"objective": "sinkhorn", key: bad}, f"joint.{key} must be")
            for key in ("max_grad_ratio", "weight")
            for bad in (True, "abc", [1], float("inf"), "inf", ".nan")
        ],
        *[
            ({"objective": "sinkhorn", key: bad}, f"joint.{key} must be >= 1")
            for key in ("every", "batch_size")
            for bad in (True, 2.5, "2", None)
        ],
    ],
)
def test_bad_settings_fail_at_option_time(bad, match) -> None:
    with pytest.raises(ValueError, match=match):
        FinetuneSettings(joint=bad)


def test_task_options_build_the_settings() -> None:
    import xalign_udpos
    import xalign_xnli

    for task in (xalign_xnli.Xnli, xalign_udpos.Udpos):
        cfg = task.from_options({"joint": {"objective": "l2", "weight": 0.1}}).config
        assert cfg.settings().joint == JointSettings(objective="l2", weight=0.1)
    with pytest.raises(XalignError, match="joint.schedule"):
        xalign_xnli.Xnli.from_options({"joint": {"objective": "l2", "schedule": "x"}})


def _features(n: int = 8) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    return [
        {"input_ids": torch.randint(5, 40, (6,), generator=g).tolist(), "labels": i % 2}
        for i in range(n)
    ]


def _run(tiny_model, joint: dict | None, **settings) -> tuple[dict, object]:
    seed_everything(0)
    net, tok, _ = load_for_finetuning(
        str(tiny_model), AutoModelForSequenceClassification, num_labels=2
    )
    s = FinetuneSettings(batch_size=2, epochs=2, learning_rate=1e-3, joint=joint, **settings)
    log = finetune(net, _features(), s, pad_id=tok.pad_token_id, seed=0)
    return {k: v.detach().clone() for k, v in net.state_dict().items()}, log


def _joint(tiny_model, **kw) -> dict:
    overrides = [f"model.name={tiny_model}", "data.limit=12", "data.languages=[de,fr]"]
    return {"objective": "sinkhorn", "overrides": overrides, "batch_size": 4, **kw}


def test_joint_loss_moves_the_encoder_and_zero_weight_is_the_plain_run(
    tiny_model, one_thread
) -> None:
    plain, plain_log = _run(tiny_model, None)
    zero, zero_log = _run(tiny_model, _joint(tiny_model, weight=0.0))
    joint, log = _run(tiny_model, _joint(tiny_model, weight=10.0))
    # building the auxiliary loss draws no random numbers the task run would see
    assert all(torch.equal(plain[k], zero[k]) for k in plain)
    assert zero_log.joint_losses == [None, None]  # no corpus batch at weight 0
    assert plain_log.joint_losses == []
    assert len(log.joint_losses) == 2 and all(x > 0 for x in log.joint_losses)
    assert plain_log.joint_grad_ratios == [] and zero_log.joint_grad_ratios == [None, None]
    assert len(log.joint_grad_ratios) == 2 and all(r > 0 for r in log.joint_grad_ratios)
    moved = [
        k for k in plain if k.startswith("bert.encoder") and not torch.equal(plain[k], joint[k])
    ]
    assert moved, "the joint loss changed no encoder weight"


def _param(values: list[float], grad: list[float] | None) -> torch.nn.Parameter:
    p = torch.nn.Parameter(torch.tensor(values))
    p.grad = None if grad is None else torch.tensor(grad)
    return p


def test_auxiliary_gradient_by_hand() -> None:
    # task gradient (3, 0) (norm 3); auxiliary loss 4·p[1] → gradient (0, 4) (norm 4)
    p = _param([1.0, 2.0], [3.0, 0.0])
    unused = _param([5.0], [1.0])  # not in the auxiliary graph: its gradient stays
    ratio = add_auxiliary_gradient([p, unused], 4.0 * p[1])
    assert ratio == pytest.approx(4 / 10**0.5)  # task norm over both: √(3² + 1²)
    assert p.grad.tolist() == [3.0, 4.0] and unused.grad.tolist() == [1.0]
    # capped at 0.5 × the task norm: the auxiliary gradient scaled by 0.5·3/4 = 0.375
    p = _param([1.0, 2.0], [3.0, 0.0])
    assert add_auxiliary_gradient([p], 4.0 * p[1], max_ratio=0.5) == pytest.approx(4 / 3)
    assert p.grad.tolist() == pytest.approx([3.0, 1.5])
    # a cap above the ratio changes nothing (never scaled up)
    p = _param([1.0, 2.0], [3.0, 0.0])
    add_auxiliary_gradient([p], 4.0 * p[1], max_ratio=2.0)
    assert p.grad.tolist() == [3.0, 4.0]
    # norms over all parameters together: task (3, 4) → 5; auxiliary (0, 6·2) + (12) → 12·√2
    a, b = _param([1.0, 2.0], [3.0, 4.0]), _param([1.0], None)
    ratio = add_auxiliary_gradient([a, b], 6.0 * a[1] ** 2 / 2 + 12.0 * b[0])
    assert ratio == pytest.approx(12 * 2**0.5 / 5)
    assert a.grad.tolist() == [3.0, 16.0] and b.grad.tolist() == [12.0]


def test_auxiliary_gradient_without_a_task_gradient_is_an_infinite_ratio() -> None:
    p = _param([1.0], None)
    assert add_auxiliary_gradient([p], 2.0 * p[0], max_ratio=1.0) == float("inf")
    assert p.grad.tolist() == [0.0]  # capped at r·0: the task gradient's norm is 0


def test_auxiliary_gradient_equals_backward_on_a_network() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    x, y = torch.randn(6, 4), torch.randn(6, 4)
    twin = copy.deepcopy(net)
    for model in (net, twin):
        model(x).pow(2).mean().backward()  # the task gradient
    add_auxiliary_gradient(list(net.parameters()), 0.3 * net(y).sum())
    (0.3 * twin(y).sum()).backward()
    for a, b in zip(net.parameters(), twin.parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, rtol=0, atol=1e-7)


def test_max_grad_ratio_tames_the_auxiliary_loss(tiny_model, one_thread) -> None:
    plain, _ = _run(tiny_model, None)
    free, free_log = _run(tiny_model, _joint(tiny_model, weight=10.0))
    capped, log = _run(tiny_model, _joint(tiny_model, weight=10.0, max_grad_ratio=1e-3))
    assert all(r > 1e-3 for r in free_log.joint_grad_ratios + log.joint_grad_ratios)

    def distance(state: dict) -> float:
        keys = [k for k in plain if k.startswith("bert.encoder")]
        return sum(float((state[k] - plain[k]).norm()) for k in keys)

    # the capped auxiliary gradient is 1e-3 of the task's: the run stays near the plain one
    assert distance(capped) < 0.05 * distance(free)


def test_every_k_schedule_takes_one_corpus_batch_per_kth_step(
    tiny_model, one_thread, monkeypatch
) -> None:
    calls: list[int] = []
    forward = JointLoss.forward

    def counted(self, step, **kw):
        calls.append(step)
        return forward(self, step, **kw)

    monkeypatch.setattr(JointLoss, "forward", counted)
    _, log = _run(tiny_model, _joint(tiny_model, schedule="every", every=3))
    assert log.steps == 8  # 8 features / batch 2, 2 epochs
    assert calls == [0, 1, 2]  # optimiser steps 0, 3, 6: the plan's next batch each time


def test_frozen_layers_stay_fixed_under_the_joint_loss(tiny_model, one_thread) -> None:
    seed_everything(0)
    net, _, _ = load_for_finetuning(
        str(tiny_model), AutoModelForSequenceClassification, num_labels=2
    )
    start = {k: v.detach().clone() for k, v in net.state_dict().items()}
    after, _ = _run(tiny_model, _joint(tiny_model, weight=10.0), freeze_layers=1)
    frozen = [k for k in start if k.startswith(("bert.embeddings", "bert.encoder.layer.0."))]
    assert frozen and all(torch.equal(start[k], after[k]) for k in frozen)
    assert not torch.equal(start["bert.encoder.layer.1.output.dense.weight"],
                           after["bert.encoder.layer.1.output.dense.weight"])  # fmt: skip


def test_an_objective_that_needs_the_mlm_head_is_a_config_error(tiny_model, one_thread) -> None:
    with pytest.raises(ConfigError, match="masked-LM head"):
        _run(tiny_model, _joint(tiny_model, objective="tlm"))


def test_self_links_come_from_the_task_model_and_are_refreshed(
    tiny_model, one_thread, monkeypatch
) -> None:
    """data.links: self in joint mode: the links the task model itself gives (the extraction
    of alignment training, at its layer), before the first step, then every refresh_every
    auxiliary steps from the model the task has moved."""
    from xalign.self_links import SelfLinks

    seen: list[tuple[int, list]] = []
    refresh = SelfLinks.refresh

    def recorded(self, encoder, step, **kw):
        out = refresh(self, encoder, step, **kw)
        seen.append((step, [list(x) for p in self.pairs for x in p.self_links[self.specs[0]]]))
        return out

    monkeypatch.setattr(SelfLinks, "refresh", recorded)
    joint = _joint(tiny_model, objective="l2", weight=10.0, max_grad_ratio=0.1)
    joint["overrides"] = [
        *joint["overrides"],
        "data.links=self",
        "data.self_links.refresh_every=3",
        "objectives.l2.target=tuned",
    ]
    after, log = _run(tiny_model, joint)
    assert [step for step, _ in seen] == [0, 3, 6]  # 8 auxiliary steps
    assert all(links for _, links in seen)
    assert any(seen[0][1] != links for _, links in seen[1:]), "the moved model links the same"
    assert len(log.joint_losses) == 2 and all(x > 0 for x in log.joint_losses)
    # the links at step 0 are those the untuned model gives
    from xalign.encoders import load_encoder
    from xalign.self_links import extract_config, model_links

    joint_loss = JointLoss(
        JointSettings(**joint),
        *load_for_finetuning(str(tiny_model), AutoModelForSequenceClassification, num_labels=2)[:2],
    )
    pair = joint_loss.self_links.pairs[0]
    cfg = joint_loss.cfg
    expected = model_links(
        load_encoder(str(tiny_model)),
        pair.words["src_words"],
        pair.words["tgt_words"],
        pair.src,
        "en",
        extract_config(cfg.data.self_links, cfg.model.layer),
    )
    assert [sorted(x) for x in expected][:3] == [sorted(x) for x in seen[0][1]][:3]


def test_without_a_tokenizer_joint_is_a_config_error(tiny_model) -> None:
    net = AutoModelForSequenceClassification.from_pretrained(str(tiny_model), num_labels=2)
    s = FinetuneSettings(batch_size=2, epochs=1, joint=_joint(tiny_model))
    with pytest.raises(ConfigError, match="needs the model's tokenizer"):
        finetune(net, _features(), s, pad_id=0)


def test_the_corpus_files_are_inputs_of_the_evaluation(tmp_path) -> None:
    import xalign_xnli

    from xalign.task import TaskContext

    for lang, line in (("de", "Hallo Welt ."), ("fr", "Bonjour monde ."), ("en", "Hello world .")):
        (tmp_path / f"c.{lang}").write_text(line + "\n", encoding="utf-8")
    joint = {
        "objective": "sinkhorn",
        "overrides": [f"data.corpus={tmp_path}/c.{{lang}}", "data.languages=[de,fr]"],
    }
    task = xalign_xnli.Xnli.from_options({"joint": joint})
    files = task.inputs(TaskContext(data_dir=tmp_path / "none"))
    assert {tmp_path / f"c.{lang}" for lang in ("de", "fr", "en")} <= set(files)
    plain = xalign_xnli.Xnli.from_options({}).inputs(TaskContext(data_dir=tmp_path / "none"))
    assert not {tmp_path / "c.de"} & set(plain)


def test_joint_loss_trains_lora_adapters_too(tiny_model, one_thread) -> None:
    lora = {"r": 2, "alpha": 4.0}
    plain, _ = _run(tiny_model, None, lora=lora)
    joint, log = _run(tiny_model, _joint(tiny_model, weight=10.0), lora=lora)
    assert len(log.joint_losses) == 2 and set(plain) == set(joint)  # merged: plain weights
    changed = [
        k for k in plain if k.startswith("bert.encoder") and not torch.equal(plain[k], joint[k])
    ]
    assert changed, "the joint loss moved no adapter (merged weights equal the plain LoRA run)"


def test_an_outgrown_task_gradient_warns_unless_capped(tiny_model, one_thread) -> None:
    with pytest.warns(JointWarning, match=r"auxiliary gradient's norm was [0-9.e+]+x the task"):
        _, log = _run(tiny_model, _joint(tiny_model, weight=1e3))
    assert min(log.joint_grad_ratios) >= 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", JointWarning)
        _, capped = _run(tiny_model, _joint(tiny_model, weight=1e3, max_grad_ratio=0.1))
        _, small = _run(tiny_model, _joint(tiny_model, weight=1e-6))
    assert min(capped.joint_grad_ratios) >= 1 and max(small.joint_grad_ratios) < 1


@pytest.mark.parametrize(
    "objective, options, warns",
    [
        ("distill", {}, True),  # teacher: the frozen initial model
        ("sinkhorn", {}, False),
        ("translation_ranking", {}, False),
    ],
)
def test_a_frozen_initial_target_warns(tiny_model, one_thread, objective, options, warns) -> None:
    seed_everything(0)
    net, tok, _ = load_for_finetuning(
        str(tiny_model), AutoModelForSequenceClassification, num_labels=2
    )
    settings = JointSettings(**_joint(tiny_model, objective=objective, options=options))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        JointLoss(settings, net, tok)
    found = [w for w in caught if issubclass(w.category, JointWarning)]
    assert bool(found) == warns
    if warns:
        assert "frozen initial model" in str(found[0].message)
        assert objective in str(found[0].message)


@pytest.mark.parametrize("value, number", [("1e-9", 1e-9), (1, 1.0), ("0.5", 0.5), (2e-3, 2e-3)])
def test_numbers_as_yaml_gives_them_are_read(value, number) -> None:
    # PyYAML reads 1e-9 (no dot) as text: --joint-option max_grad_ratio=1e-9 must still work
    s = JointSettings(objective="sinkhorn", max_grad_ratio=value, weight=value)
    assert s.max_grad_ratio == number and s.weight == number


def test_compare_refuses_a_bad_joint_option_before_any_work(tiny_model) -> None:
    from xalign.compare.orchestrate import _check_modes
    from xalign.plugins import get_registry

    for bad in ("true", "abc", "inf", "[1]", "-1"):
        joint = {"max_grad_ratio": yaml.safe_load(bad)}
        with pytest.raises(ConfigError, match="joint.max_grad_ratio must be > 0"):
            _check_modes(["joint"], ["sinkhorn"], ["pos-mini"], get_registry(), joint, None, [])


def test_a_cap_above_the_ratio_still_warns(tiny_model, one_thread) -> None:
    with pytest.warns(JointWarning, match="auxiliary gradient's norm was"):
        _, log = _run(tiny_model, _joint(tiny_model, weight=1e3, max_grad_ratio=1e9))
    assert min(log.joint_grad_ratios) >= 1


def test_no_frozen_target_warning_at_weight_zero(tiny_model, one_thread) -> None:
    seed_everything(0)
    net, tok, _ = load_for_finetuning(
        str(tiny_model), AutoModelForSequenceClassification, num_labels=2
    )
    settings = JointSettings(**_joint(tiny_model, objective="distill", weight=0.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error", JointWarning)
        JointLoss(settings, net, tok)


def test_a_joint_loss_on_frozen_layers_is_a_config_error(tiny_model, one_thread) -> None:
    joint = _joint(tiny_model, overrides=[*_joint(tiny_model)["overrides"], "model.layer=1"])
    with pytest.raises(ConfigError, match="reaches no trainable parameter"):
        _run(tiny_model, joint, freeze_layers=2)


def test_auxiliary_gradient_checks_the_cap_and_counts_a_parameter_once() -> None:
    p = _param([1.0, 2.0], [3.0, 0.0])
    with pytest.raises(ValueError, match="max_ratio must be > 0"):
        add_auxiliary_gradient([p], 4.0 * p[1], max_ratio=-1.0)
    ratio = add_auxiliary_gradient([p, p], 4.0 * p[1])
    assert ratio == pytest.approx(4 / 3) and p.grad.tolist() == [3.0, 4.0]


def test_a_self_links_layer_the_task_model_lacks_is_a_config_error(tiny_model) -> None:
    joint = _joint(tiny_model, objective="contrastive")
    joint["overrides"] = [*joint["overrides"], "data.links=self", "data.self_links.layer=9"]
    net, tok, _ = load_for_finetuning(
        str(tiny_model), AutoModelForSequenceClassification, num_labels=2
    )
    with pytest.raises(ConfigError, match=r"data\.self_links\.layer 9 out of range"):
        JointLoss(JointSettings(**joint), net, tok)
