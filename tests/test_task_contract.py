"""The typed task -> compare contract: metrics declared once per task (direction, aggregation),
typed per-item counts and languages, stored results of another layout never misread, and
compare refusing a metric without a declared direction, naming the task and its plugin."""

from __future__ import annotations

import json
import re

import pytest
from test_plugins import install_fake_distribution, site  # noqa: F401 - the site fixture

from xalign import ItemCounts, Metric, ResultContractError, Task, TaskResult
from xalign.compare.statistics import paired_test, summarize
from xalign.evaluation.runs import evaluate_runs
from xalign.plugins import get_registry, reset_registry
from xalign.task import RESULT_SCHEMA, stamp_result


class _Task(Task):
    name = "t"
    metrics = (Metric("aer", higher_is_better=False, aggregation="ratio", offset=1, scale=-1),)


def test_metric_rejects_bad_declarations():
    with pytest.raises(ResultContractError, match="aggregation must be one of"):
        Metric("acc", higher_is_better=True, aggregation="median")
    with pytest.raises(ResultContractError, match="higher_is_better must be True or False"):
        Metric("acc", higher_is_better=1)  # type: ignore[arg-type]
    with pytest.raises(ResultContractError, match="2 matched but 3 total"):
        ItemCounts([1, 2], [1, 2, 3])


def test_ratio_metric_from_counts_by_hand():
    aer = _Task.metrics[0]
    assert aer.from_counts([2, 0], [2, 4]) == pytest.approx(1 - 2 / 6)
    f1 = Metric("f1", higher_is_better=True, aggregation="ratio", scale=100.0)
    assert f1.from_counts([2, 2, 0], [2, 2, 1]) == pytest.approx(80.0)


def test_stamp_fills_the_declaration_and_checks_counts():
    result = TaskResult("t", "aer", {"s": {"aer": 2 / 3}}, counts={"s": ItemCounts([2, 0], [2, 4])})
    stamped = stamp_result(result, _Task(), "task 't' (plugin 'p')")
    assert stamped.metrics == _Task.metrics and stamped.plugin == "task 't' (plugin 'p')"
    assert stamped.metric().higher_is_better is False
    wrong = TaskResult("t", "aer", {"s": {"aer": 0.5}}, counts={"s": ItemCounts([2, 0], [2, 4])})
    with pytest.raises(ResultContractError, match="s aer is 0.5 but its counts give 0.666"):
        stamp_result(wrong, _Task(), "task 't'")
    orphan = TaskResult("t", "aer", {}, counts={"x": ItemCounts([1], [1])})
    with pytest.raises(ResultContractError, match="counts for 'x', which has no scores"):
        stamp_result(orphan, _Task(), "task 't'")


class _Mean(Task):
    name = "m"
    metrics = (
        Metric("acc", higher_is_better=True),  # mean of per_example, same unit
        Metric("pct", higher_is_better=True, scale=100.0),  # percent of 1/0 items
    )


@pytest.mark.parametrize(
    "result, error",
    [
        # undeclared main metric (the fresh-author case: stored 'acc' in neither place)
        (TaskResult("m", "accuracy", {"de": {"accuracy": 1.0}}), "metric 'accuracy' \\(declared"),
        # main metric missing from one score key
        (
            TaskResult("m", "acc", {"de": {"acc": 1.0}, "fr": {"f1": 1.0}}),
            "scores\\['fr'\\] has no 'acc'",
        ),
        # mean metric: 50 shown, items mean 100 (a percent/fraction mix-up)
        (
            TaskResult("m", "acc", {"de": {"acc": 50.0}}, {"de": [100.0, 100.0]}),
            "de acc is 50.0 but its per_example give 100.0",
        ),
        # percent over 1/0 items without declaring scale=100
        (
            TaskResult("m", "acc", {"de": {"acc": 50.0}}, {"de": [1.0, 0.0]}),
            "de acc is 50.0 but its per_example give 0.5",
        ),
        # declared scale=100, items given in percent already: 100·50 = 5000
        (
            TaskResult("m", "pct", {"de": {"pct": 50.0}}, {"de": [100.0, 0.0]}),
            "de pct is 50.0 but its per_example give 5000.0",
        ),
    ],
)
def test_stamp_refuses_results_that_break_the_contract(result, error):
    with pytest.raises(ResultContractError, match=error) as caught:
        stamp_result(result, _Mean(), "task 'm' (plugin 'p', distribution d 1)")
    assert "task 'm' (plugin 'p', distribution d 1)" in str(caught.value)


def test_stamp_accepts_means_by_hand():
    ok = [
        TaskResult("m", "acc", {"de": {"acc": 2 / 3}}, {"de": [1.0, 1.0, 0.0]}),
        TaskResult("m", "pct", {"de": {"pct": 25.0}, "fr": {"pct": 0.0}}, {"de": [1, 0, 0, 0]}),
        TaskResult("m", "acc", {"de": {"acc": 0.3}}, {"de": []}),  # no items: nothing to check
        TaskResult("m", "acc", {"de": {"acc": 1.0 + 1e-9}}, {"de": [1.0]}),  # within 1e-6
    ]
    for result in ok:
        assert stamp_result(result, _Mean(), "task 'm'").metric().name == result.main_metric


def test_a_scaled_mean_metric_bootstraps_in_the_tables_unit():
    declared = (Metric("pct", higher_is_better=True, scale=100.0),)
    a = {0: TaskResult("t", "pct", {"s": {"pct": 75.0}}, {"s": [1, 1, 1, 0]}, metrics=declared)}
    b = {0: TaskResult("t", "pct", {"s": {"pct": 25.0}}, {"s": [1, 0, 0, 0]}, metrics=declared)}
    assert paired_test(a, b, "s").delta_examples == pytest.approx(50.0)  # 75 - 25, not 0.5


def test_result_round_trips_and_old_layouts_are_refused():
    result = stamp_result(
        TaskResult(
            "t",
            "aer",
            {"s": {"aer": 2 / 3}},
            {"s": [0.0, 1.0]},
            counts={"s": ItemCounts([2, 0], [2, 4])},
            languages={"s": "de"},
        ),
        _Task(),
        "task 't'",
    )
    data = json.loads(json.dumps(result.to_dict()))
    assert data["schema"] == RESULT_SCHEMA
    assert TaskResult.from_dict(data) == result
    old = {  # as stored by xalign before the typed contract: directions in meta keys
        "task": "align",
        "main_metric": "aer",
        "scores": {"s": {"aer": 0.3}},
        "per_example": {},
        "meta": {"higher_is_better": False, "metric_from_counts": {"offset": 1, "scale": -1}},
    }
    with pytest.raises(ResultContractError, match="layout version 1, this xalign reads 2"):
        TaskResult.from_dict(old)


def test_undeclared_metric_names_task_and_plugin():
    result = TaskResult("mine", "acc", {"en": {"acc": 1.0}}, plugin="task 'mine' (plugin 'p')")
    with pytest.raises(ResultContractError) as caught:
        result.metric()
    message = str(caught.value)
    assert message.startswith("task 'mine' (plugin 'p') does not")
    assert "does not declare the direction of its metric 'acc' (declared: none)" in message


def test_a_ratio_metric_without_counts_falls_back_to_per_example_means():
    declared = (Metric("aer", higher_is_better=False, aggregation="ratio", offset=1, scale=-1),)
    a = {0: TaskResult("t", "aer", {"s": {"aer": 0.5}}, {"s": [1.0, 0.0]}, metrics=declared)}
    b = {0: TaskResult("t", "aer", {"s": {"aer": 0.0}}, {"s": [0.0, 0.0]}, metrics=declared)}
    assert paired_test(a, b, "s").delta_examples == pytest.approx(0.5)


def third_party_task(declare: str) -> str:
    """A task plugin whose result has a main metric 'acc' (declared by ``declare``)."""
    return (
        "import xalign\n"
        "class Mine(xalign.Task):\n"
        "    name = 'mine'\n"
        "    uses_seed = False\n"
        f"    {declare}\n"
        "    def run(self, model, context):\n"
        "        return xalign.TaskResult(self.name, 'acc', {'en': {'acc': 0.5}},\n"
        "                                 {'en': [1.0, 0.0]})\n"
        "@xalign.hookimpl\n"
        "def register_tasks(register):\n"
        "    register(Mine)\n"
    )


@pytest.mark.parametrize(
    "declare, error",
    [
        ("metrics = (xalign.Metric('f1', higher_is_better=True),)", "declared: f1"),
        ("metrics = (xalign.Metric('acc', higher_is_better=False),)", None),
    ],
)
def test_compare_refuses_an_undeclared_direction_of_a_third_party_task(
    site,  # noqa: F811
    tiny_model,
    tracking_uri,
    declare,
    error,
):
    install_fake_distribution(
        site, "xalign-mine", "1.0", "mine", "xalign_mine", source=third_party_task(declare)
    )
    reset_registry()
    try:
        if error is None:
            runs = evaluate_runs(str(tiny_model), "mine", tracking_uri=tracking_uri)
            results = {row: {"mine": {0: runs[0].result}} for row in ("base", "x")}
            summary = summarize(results, rows=["base", "x"], tasks=["mine"], seen_languages=[])
            assert summary.tasks["mine"].higher_is_better is False
            return
        with pytest.raises(ResultContractError) as caught:  # at evaluation, before compare
            evaluate_runs(str(tiny_model), "mine", tracking_uri=tracking_uri)
        message = str(caught.value)
        assert message.startswith("task 'mine' (plugin 'mine', distribution xalign-mine 1.0)")
        assert f"does not declare the direction of its metric 'acc' ({error})" in message
    finally:
        reset_registry()
        get_registry()


def undeclared_task(declare: str) -> str:
    """A task plugin with a bad ``metrics`` declaration whose run() must never be reached."""
    return (
        "import xalign\n"
        "class Mine(xalign.Task):\n"
        "    name = 'mine'\n"
        f"    {declare}\n"
        "    def run(self, model, context):\n"
        "        raise RuntimeError('run() reached')\n"
        "@xalign.hookimpl\n"
        "def register_tasks(register):\n"
        "    register(Mine)\n"
    )


UNDECLARED = [
    ("metrics = ()", "declares no metric directions"),
    ("metrics = None", "declares no metric directions"),
    ("metrics = ('acc',)", "holds 'acc', not an xalign.Metric"),
    (
        "metrics = (xalign.Metric('a', higher_is_better=True),) * 2",
        "declares metric(s) ['a'] more than once",
    ),
]


@pytest.mark.parametrize("declare, error", UNDECLARED)
def test_eval_compare_and_plugins_flag_undeclared_metrics_before_any_run(
    site,  # noqa: F811
    tracking_uri,
    declare,
    error,
):
    from typer.testing import CliRunner

    from xalign.cli import app
    from xalign.compare.orchestrate import _check_inputs

    where = "task 'mine' (plugin 'mine', distribution xalign-mine 1.0)"
    install_fake_distribution(
        site, "xalign-mine", "1.0", "mine", "xalign_mine", source=undeclared_task(declare)
    )
    reset_registry()
    try:
        # ResultContractError, not run()'s RuntimeError
        with pytest.raises(ResultContractError, match="^" + re.escape(where)) as caught:
            evaluate_runs("packaged:multilingual-e5-small", "mine", tracking_uri=tracking_uri)
        assert error in str(caught.value)
        with pytest.raises(ResultContractError, match=re.escape(error)):
            _check_inputs(["sinkhorn"], ["mine"], 1, {}, get_registry())  # before any training
        listed = CliRunner().invoke(app, ["plugins", "--json"])
        item = {i["name"]: i for i in json.loads(listed.stdout)}["mine"]
        assert item["status"] == "warning" and error in item["error"]
        assert {i["name"]: i for i in json.loads(listed.stdout)}["align"]["status"] == "ok"
    finally:
        reset_registry()
        get_registry()


def test_every_builtin_task_declares_its_main_metric():
    mains = {
        "align": ("aer", False, "ratio"),
        "tatoeba": ("accuracy", True, "mean"),
        "bucc": ("f1", True, "ratio"),
        "udpos": ("accuracy", True, "ratio"),
        "pos-mini": ("accuracy", True, "ratio"),
        "xnli": ("accuracy", True, "mean"),
        "xnli-mini": ("accuracy", True, "mean"),
        "xquad": ("f1", True, "mean"),
        "qa-mini": ("f1", True, "mean"),
        "mlqa": ("f1", True, "mean"),
        "xnli-probe": ("accuracy", True, "mean"),
        "pos-probe": ("accuracy", True, "ratio"),
    }
    tasks = get_registry().tasks()
    assert set(mains) == set(tasks)
    for name, (metric, higher, aggregation) in mains.items():
        declared = {m.name: m for m in tasks[name].cls.metrics}
        assert declared[metric].higher_is_better is higher, name
        assert declared[metric].aggregation == aggregation, name
        assert tasks[name].cls.result_version is not None, name
        if aggregation == "mean":  # percent of item scores in [0, 1]
            assert declared[metric].scale == 100.0, name


def test_a_stored_result_that_breaks_the_contract_is_evaluated_again(
    site,  # noqa: F811
    tiny_model,
    tracking_uri,
    monkeypatch,
):
    """A result stored before the check (score 50 over items of mean 0.5) is not reused."""
    import dataclasses

    from xalign.evaluation import runs as eval_runs
    from xalign.tracking import TrackingWarning

    source = third_party_task("metrics = (xalign.Metric('acc', higher_is_better=True),)")
    install_fake_distribution(
        site, "xalign-mine", "1.0", "mine", "xalign_mine", source=source.replace("0.5}", "50.0}")
    )
    reset_registry()
    try:
        with monkeypatch.context() as m:  # an xalign without the check stores it
            m.setattr(eval_runs, "stamp_result", lambda r, t, w: dataclasses.replace(r, plugin=w))
            [stored] = evaluate_runs(str(tiny_model), "mine", tracking_uri=tracking_uri)
        assert stored.result.scores["en"]["acc"] == 50.0 and not stored.reused
        with (
            pytest.warns(TrackingWarning, match=f"not reusing eval run {stored.run_id}"),
            pytest.raises(ResultContractError, match="en acc is 50.0 but its per_example give 0.5"),
        ):
            evaluate_runs(str(tiny_model), "mine", tracking_uri=tracking_uri)
    finally:
        reset_registry()
        get_registry()


@pytest.mark.parametrize("name", ["xquad", "qa-mini", "mlqa"])
def test_builtin_qa_scores_keep_the_mean_contract(name):
    """Corpus F1 (%) = 100 · mean of the per-question F1 in [0, 1]: here (1 + 0 + 1)/3."""
    task = get_registry().task(name).cls()
    examples = [
        {"id": "a", "answers": {"text": ["the red house"]}},
        {"id": "b", "answers": {"text": ["Berlin"]}},
        {"id": "c", "answers": {"text": ["two cats"]}},
    ]
    scores, per = task.score({"a": "red house", "b": "Paris", "c": "two cats"}, examples, "en")
    assert per == [1.0, 0.0, 1.0] and scores["f1"] == pytest.approx(200 / 3)
    stamped = stamp_result(TaskResult(name, "f1", {"en": scores}, {"en": per}), task, name)
    assert stamped.metric().scale == 100.0
