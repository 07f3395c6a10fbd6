"""End-to-end training through the CLI on a tiny random encoder."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _launch import accelerate_launch
from conftest import migrated_sqlite_uri, run_json
from safetensors.torch import load_file
from typer.testing import CliRunner

from xalign.cli import app

runner = CliRunner()


def invoke(args: list[str]):
    result = runner.invoke(app, args)
    return result


def model_weights(out: dict) -> dict[str, torch.Tensor]:
    return load_file(str(Path(out["output_dir"]) / "model" / "model.safetensors"))


def test_run_logs_to_mlflow(smoke_overrides, tracking_uri):
    from mlflow.tracking import MlflowClient

    out = run_json(["--objective", "sinkhorn", *sum((["--set", o] for o in smoke_overrides), [])])
    run = MlflowClient(tracking_uri).get_run(out["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["xalign.objective"] == "sinkhorn"
    assert run.data.tags["xalign.plugin.sinkhorn"].startswith("xalign ")
    assert run.data.params["train.lr"] == "5e-05"
    assert run.data.params["plugin.sinkhorn.distribution"] == "xalign"
    for key in ("de-en/sinkhorn", "de-en/reg", "fr-en/sinkhorn", "loss"):
        assert key in run.data.metrics
    history = MlflowClient(tracking_uri).get_metric_history(out["run_id"], "de-en/sinkhorn")
    assert [m.step for m in history] == [1, 2]
    artifacts = {a.path for a in MlflowClient(tracking_uri).list_artifacts(out["run_id"])}
    assert {"config.yaml", "final_metrics.json"} <= artifacts
    assert out["metrics"]["loss"] == pytest.approx(run.data.metrics["loss"], rel=1e-5)


def test_training_decreases_sinkhorn_loss(smoke_overrides):
    sets = sum((["--set", o] for o in smoke_overrides), [])
    out = run_json(
        [
            "--objective",
            "sinkhorn",
            *sets,
            "--set",
            "train.lr=1e-3",
            "--set",
            "train.epochs=6",
            "--set",
            "train.reg_weight=0",
        ]
    )
    from mlflow.tracking import MlflowClient

    uri = next(o.split("=", 1)[1] for o in smoke_overrides if o.startswith("tracking.uri"))
    hist = MlflowClient(uri).get_metric_history(out["run_id"], "de-en/sinkhorn")
    values = [m.value for m in sorted(hist, key=lambda m: m.step)]
    assert len(values) == 9  # 24 pairs / batch 8 = 3 micro-steps x 6 epochs / accum 2
    assert sum(values[-2:]) < 0.8 * sum(values[:2]), values


@pytest.mark.parametrize("dropout", [True, False])
def test_dropout_switch_sets_the_starting_regulariser(dropout, tmp_path, tracking_uri):
    """c0 is in eval mode: the drift term is 0 before any update exactly when dropout is off."""
    from conftest import build_tiny_encoder
    from mlflow.tracking import MlflowClient

    model = build_tiny_encoder(tmp_path / "bert", dropout=0.3)
    out = run_json(
        [
            "--objective",
            "sinkhorn",
            "--set",
            f"model.name={model}",
            "--set",
            "data.limit=8",
            "--set",
            "data.languages=[de]",
            "--set",
            "train.batch_size=8",
            "--set",
            "train.grad_accum=1",
            "--set",
            f"train.dropout={str(dropout).lower()}",
            "--set",
            f"train.output_dir={tmp_path / 'out'}",
            "--set",
            f"tracking.uri={tracking_uri}",
        ]
    )
    first = MlflowClient(tracking_uri).get_metric_history(out["run_id"], "de-en/reg")[0].value
    if dropout:
        assert first > 1e-3, first
    else:
        assert first < 1e-9, first


def test_tfidf_weights_get_corpus_statistics_through_prepare(smoke_overrides):
    """The trainer calls Objective.prepare(data) so tf-idf weights (paper fn. 7) work."""
    sets = sum((["--set", o] for o in smoke_overrides), [])
    out = run_json(["-o", "sinkhorn", *sets, "--set", "objectives.sinkhorn.point_weights=tf-idf"])
    uniform = run_json(["-o", "sinkhorn", *sets])
    assert out["metrics"]["de-en/sinkhorn"] != uniform["metrics"]["de-en/sinkhorn"]


def test_unknown_objective_lists_available(smoke_overrides):
    result = invoke(["run", "--objective", "nope", "--set", smoke_overrides[0]])
    assert result.exit_code != 0
    assert "unknown objective 'nope'" in result.output and "sinkhorn" in result.output


def test_resume_gives_identical_weights(tiny_model, tmp_path, tracking_uri, monkeypatch):
    from xalign import recipe as trainer

    common = [
        "--objective",
        "sinkhorn",
        "--set",
        f"model.name={tiny_model}",
        "--set",
        "data.limit=24",
        "--set",
        "data.languages=[de,fr]",
        "--set",
        "train.batch_size=6",
        "--set",
        "train.grad_accum=1",
        "--set",
        "train.schedule=linear",
        "--set",
        "train.warmup_steps=1",
        "--set",
        "train.checkpoint_every=2",
        "--set",
        f"tracking.uri={tracking_uri}",
    ]
    full = run_json([*common, "--set", f"train.output_dir={tmp_path / 'full'}"])

    original = trainer.AlignmentRecipe.save_checkpoint

    def crash_after_first_checkpoint(self, step, metrics):
        original(self, step, metrics)
        raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(trainer.AlignmentRecipe, "save_checkpoint", crash_after_first_checkpoint)
    result = invoke(["run", "-q", *common, "--set", f"train.output_dir={tmp_path / 'cut'}"])
    assert result.exit_code != 0
    monkeypatch.setattr(trainer.AlignmentRecipe, "save_checkpoint", original)
    (run_dir,) = (tmp_path / "cut").iterdir()
    assert (run_dir / "checkpoints" / "latest").read_text() == "step-0000002"

    resumed = run_json(["--resume", str(run_dir)])
    assert resumed["run_id"] == run_dir.name
    a, b = model_weights(full), model_weights(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    init = load_file(str(tiny_model / "model.safetensors"))
    assert not torch.equal(
        a["encoder.layer.0.attention.self.query.weight"],
        init["encoder.layer.0.attention.self.query.weight"],
    )


def test_non_finite_loss_stops_and_keeps_checkpoint(smoke_overrides, tmp_path):
    from xalign_sinkhorn import Sinkhorn

    calls = {"n": 0}
    real = Sinkhorn.loss

    def poisoned(self, batch):
        calls["n"] += 1
        value = real(self, batch)
        return value * float("nan") if calls["n"] > 4 else value

    sets = sum((["--set", o] for o in smoke_overrides), [])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Sinkhorn, "loss", poisoned)
        result = invoke(["run", "-q", "-o", "sinkhorn", *sets, "--set", "train.checkpoint_every=1"])
    assert result.exit_code == 1
    assert "non-finite loss at step 2" in result.output
    assert "objective 'sinkhorn'" in result.output and "distribution xalign" in result.output
    (run_dir,) = (tmp_path / "out").iterdir()
    assert (run_dir / "checkpoints" / "latest").read_text() == "step-0000001"
    assert "step-0000001, is kept" in " ".join(result.output.split())


def test_partial_checkpoint_is_never_latest(tmp_path):
    from xalign.checkpoint import find_checkpoint

    (tmp_path / "checkpoints" / "step-0000004.partial").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        find_checkpoint(tmp_path)


@pytest.mark.distributed
def test_two_ranks_match_one_rank(tiny_model, tmp_path):
    """accelerate launch with 2 gloo ranks ends with the 1-rank weights (same global batch)."""
    xalign_bin = Path(sys.executable).with_name("xalign")
    common = [
        "run",
        "-q",
        "--json",
        "-o",
        "sinkhorn",
        "--set",
        f"model.name={tiny_model}",
        "--set",
        "data.limit=24",
        "--set",
        "data.languages=[de,fr]",
        "--set",
        "train.batch_size=8",
        "--set",
        "train.optimizer=sgd",
        "--set",
        "train.lr=0.01",
        "--set",
        "train.max_grad_norm=null",
        # a fixed ε-annealing diameter makes each pair's loss independent of batch-mates
        "--set",
        "objectives.sinkhorn.diameter=10",
        "--set",
        f"tracking.uri={migrated_sqlite_uri(tmp_path / 'm.db')}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run(
        [str(xalign_bin), *common, "--set", f"train.output_dir={tmp_path / 'a'}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run(
        [
            *accelerate_launch(2),
            str(xalign_bin),
            *common,
            "--set",
            f"train.output_dir={tmp_path / 'b'}",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    outs = [json.loads(line) for line in two.stdout.splitlines() if line.startswith("{")]
    assert len(outs) == 1, "only rank 0 reports"
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'm.db'}")
    assert client.get_run(outs[0]["run_id"]).data.params["train.world_size"] == "2"
    a = model_weights(json.loads(one.stdout.strip().splitlines()[-1]))
    b = model_weights(outs[0])
    init = load_file(str(tiny_model / "model.safetensors"))
    moved = max((a[k] - init[k]).abs().max().item() for k in a)
    assert moved > 1e-2
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    # float32 reduction-order noise only: far below the size of the updates
    assert worst <= 2e-3 * moved, (worst, moved)


# ---------------------------------------------------------------- unequal language-pair sizes
def write_unequal_corpus(directory: Path, sizes: dict[str, int]) -> str:
    """``LANG-en.tsv`` with the first ``sizes[LANG]`` demo pairs; returns the corpus spec."""
    from xalign.data.corpus import read_parallel

    for lang, n in sizes.items():
        rows = read_parallel("demo", lang, "en")[:n]
        (directory / f"{lang}-en.tsv").write_text(
            "".join(f"{r[0]}\t{r[1]}\n" for r in rows), encoding="utf-8"
        )
    return str(directory / "{src}-{tgt}.tsv")


def unequal_recipe(tiny_model, tmp_path, tracking_uri, objective: str, reg: float):
    """sizes de 6 (first), fr 10, batch 4: an epoch is 3 micro-steps = one optimizer step."""
    from xalign.config import load_config
    from xalign.recipe import AlignmentRecipe

    corpus = write_unequal_corpus(tmp_path, {"de": 6, "fr": 10})
    cfg = load_config(
        objectives=[objective],
        overrides=[
            f"model.name={tiny_model}",
            f"data.corpus={corpus}",
            "data.languages=[de,fr]",
            "train.batch_size=4",
            "train.grad_accum=3",
            "train.optimizer=sgd",
            "train.lr=1.0",
            "train.max_grad_norm=null",
            "train.dropout=false",
            f"train.reg_weight={reg}",
            f"objectives.{objective}.diameter=10",
            "train.save_model=false",
            f"train.output_dir={tmp_path / 'out'}",
            f"tracking.uri={tracking_uri}",
        ],
    )
    recipe = AlignmentRecipe(cfg, show_progress=False)
    recipe.setup()
    return recipe


def hand_objective(recipe, micro_steps: int) -> torch.Tensor:
    """The sum the trainer optimises in one step, written out from the batch plan by hand:

        Σ_pairs (1/N_p) Σ_{m < micro_steps} Σ_{i ∈ batch_p(m)} loss(i),  N_p = Σ_m |batch_p(m)|

    (every sentence of the step weighs the same). ``batch_p(m) = order_p[4m : 4m + 4]``
    (empty once the pair is exhausted). Per-sentence objectives (sinkhorn, scope sentence,
    fixed diameter; the drift term) are evaluated ONE SENTENCE AT A TIME and summed here; a
    mixed-language objective gets the union of the pairs' micro-batches as one batch, weighted
    by its size.
    """
    from xalign.batch import AlignmentBatch
    from xalign.recipe import drift_regulariser

    enc, lam = recipe.encoder, recipe.cfg.train.reg_weight
    (name,) = recipe.objectives
    objective = recipe.objectives[name]

    def loss_of(examples, langs):
        src = enc.encode([e.src_words for e in examples], langs)
        tgt_words = [e.tgt_words for e in examples]
        tgt = enc.encode(tgt_words, ["en"] * len(examples))
        frozen = recipe.frozen.encode(tgt_words, ["en"] * len(examples)) if lam else None
        value = objective.loss(AlignmentBatch("hand", src, tgt, frozen))
        return value + lam * drift_regulariser(tgt, frozen) if lam else value

    plan = [
        [([p.examples[i] for i in p.order[4 * m : 4 * m + 4]], p.src) for p in recipe.data.pairs]
        for m in range(micro_steps)
    ]
    total = torch.zeros(())
    if recipe.mixed:
        n_all = sum(len(ex) for batches in plan for ex, _ in batches)
        for batches in plan:
            union = [e for ex, _ in batches for e in ex]
            langs = [lang for ex, lang in batches for _ in ex]
            total = total + loss_of(union, langs) * len(union) / n_all
        return total
    for k in range(len(recipe.data.pairs)):
        n_pair = sum(len(batches[k][0]) for batches in plan)
        for batches in plan:
            examples, lang = batches[k]
            for e in examples:  # one sentence at a time
                total = total + loss_of([e], [lang]) / n_pair
    return total


@pytest.mark.parametrize(("objective", "reg"), [("sinkhorn", 1.0), ("mixed_ot", 0.0)])
def test_unequal_pairs_gradient_is_the_hand_sum(
    objective, reg, tiny_model, tmp_path, tracking_uri, one_thread
):
    """Pairs of 6 (first) and 10 sentences, batch 4: every sentence is used once per epoch and
    weighs 1/6 (de) or 1/10 (fr) in the step, also those of the short last micro-batches. The
    old plan used 2 micro-steps (first pair only), dropped 2 of fr's 10 and scaled fr's 2nd
    micro-batch by 4/2."""
    recipe = unequal_recipe(tiny_model, tmp_path, tracking_uri, objective, reg)
    assert [len(p.order) for p in recipe.data.pairs] == [6, 10]
    assert recipe.data.micro_steps == 3 and recipe.total_steps == 1
    for pair in recipe.data.pairs:
        assert sorted(pair.order.tolist()) == list(range(len(pair.examples)))

    named = [(n, p) for n, p in recipe.module.named_parameters() if p.requires_grad]
    hand_objective(recipe, micro_steps=3).backward()
    expected = {n: p.grad.clone() for n, p in named}
    recipe.optimizer.zero_grad(set_to_none=True)
    before = {n: p.detach().clone() for n, p in named}

    captured: dict[str, torch.Tensor] = {}

    def capture(optimizer, args, kwargs):  # the accumulated gradient, before the step
        captured.update({n: p.grad.clone() for n, p in named if p.grad is not None})

    recipe.optimizer.register_step_pre_hook(capture)
    try:
        recipe.train()
    finally:
        recipe.cleanup()
    scale = max(g.abs().max().item() for g in expected.values())
    assert scale > 1e-4
    for n, p in named:
        got = captured.get(n, torch.zeros_like(expected[n]))
        assert torch.allclose(got, expected[n], rtol=1e-3, atol=1e-4 * scale), n
        # one SGD step with lr 1: the weights moved by exactly minus that gradient
        assert torch.allclose(before[n] - p.detach(), got, rtol=1e-3, atol=1e-6), n


def test_data_stats_artifact_reports_filters_unescaping_and_truncation(
    tiny_model, tmp_path, tracking_uri
):
    """data_stats.json says, per pair, what was read, kept, sampled and dropped (by reason, with
    the first file:line), which lines were unescaped, and which words max_length cut off; the
    cut is also one warning at setup."""
    from mlflow.tracking import MlflowClient

    from xalign.data.corpus import read_parallel
    from xalign.data.filters import DataWarning

    good = read_parallel("demo", "de", "en")[:6]
    rows = [f"{r[0]}\t{r[1]}" for r in good]
    rows.insert(2, "\u2060 \u200b\tNothing to see .")  # line 3: no subwords
    rows.insert(4, "Tom &amp; Anna lachen .\tTom &amp; Anna laugh .")  # line 5: unescaped
    rows.append("Ja\tYes")  # line 9: too short
    path = tmp_path / "de-en.tsv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    result = runner.invoke(
        app,
        [
            "run",
            "-q",
            "--json",
            "-o",
            "sinkhorn",
            "--set",
            f"model.name={tiny_model}",
            "--set",
            f"data.corpus={path}",
            "--set",
            "data.languages=[de]",
            "--set",
            "data.min_words=2",
            "--set",
            "model.max_length=10",
            "--set",
            "train.batch_size=4",
            "--set",
            "train.max_steps=1",
            "--set",
            "train.save_model=false",
            "--set",
            f"train.output_dir={tmp_path / 'out'}",
            "--set",
            f"tracking.uri={tracking_uri}",
        ],
    )
    assert result.exit_code == 0, result.output
    warned = [line for line in result.stderr.splitlines() if DataWarning.__name__ in line]
    assert len(warned) == 1, result.stderr  # one line per pair, at setup
    assert re.search(
        r"warning: DataWarning: de-en: \d+ words in \d+ sentences lie past "
        r"model.max_length=10 subwords .* \(first at .*de-en.tsv:\d\)",
        warned[0],
    )
    out = json.loads(result.stdout.strip().splitlines()[-1])
    client = MlflowClient(tracking_uri)
    local = client.download_artifacts(out["run_id"], "data_stats.json", str(tmp_path))
    stats = json.loads(Path(local).read_text())["de-en"]
    assert (stats["read"], stats["kept"], stats["sampled"], stats["filtered_total"]) == (9, 7, 7, 2)
    assert stats["filtered"]["no_subwords"] == {"count": 1, "first": [f"{path}:3"]}
    assert stats["filtered"]["too_short"] == {"count": 1, "first": [f"{path}:9"]}
    assert stats["unescaped_lines"] == {str(path): 1}
    assert stats["truncated_words"]["words"] > 0 and stats["truncated_words"]["sentences"] > 0
    assert stats["batches_per_epoch"] == 2


def test_pairs_that_ran_out_are_not_logged_as_zero(tiny_model, tmp_path, tracking_uri, one_thread):
    """de 6 and fr 10 sentences, batch 4, one micro-step per optimizer step: step 3 holds fr
    only, so de-en is absent from step 3's metrics (not 0.0); a pair's logged value is its
    micro-batch mean, and ``loss`` is the sum over the pairs present."""
    from mlflow.tracking import MlflowClient

    recipe = unequal_recipe(tiny_model, tmp_path, tracking_uri, "sinkhorn", 1.0)
    recipe.cfg.train.grad_accum = 1
    recipe.total_steps = 3
    try:
        recipe.train()
    finally:
        recipe.cleanup()
    client = MlflowClient(tracking_uri)

    def at(key: str) -> dict[int, float]:
        return {m.step: m.value for m in client.get_metric_history(recipe.run_id, key)}

    assert sorted(at("de-en/total")) == [1, 2] and sorted(at("fr-en/total")) == [1, 2, 3]
    loss, de, fr = at("loss"), at("de-en/total"), at("fr-en/total")
    for step in (1, 2):
        assert loss[step] == pytest.approx(de[step] + fr[step], rel=1e-5)
    assert loss[3] == pytest.approx(fr[3], rel=1e-5)
    assert not any(k.endswith("/weight") for k in client.get_run(recipe.run_id).data.metrics)


@pytest.mark.parametrize(
    "bad, advice, not_advice",
    [
        (["loss/sinkhorn"], "a larger objectives.sinkhorn.blur", "other options"),
        (["loss/l2"], "other options of l2", "blur"),
        (["loss/l2", "loss/mixed_ot"], "a larger objectives.mixed_ot.blur", "blur or other"),
        (["loss"], "a lower train.lr", "blur"),
    ],
)
def test_divergence_message_names_only_real_checkpoints_and_fitting_advice(
    tmp_path, bad, advice, not_advice
):
    """The NaN-loss error mentions a kept checkpoint only when one exists, and `blur` only
    for objectives that have that option."""
    from xalign.checkpoint import LATEST, REQUIRED
    from xalign.plugins import get_registry
    from xalign.recipe import divergence_message

    entries = get_registry().objectives()
    ckpts = tmp_path / "checkpoints"
    message = divergence_message(4, bad, entries, ckpts)
    assert message.startswith(f"non-finite loss at step 5 in {', '.join(bad)}")
    assert "no checkpoint had been written yet" in message and "is kept" not in message
    assert advice in message and not_advice not in message
    step = ckpts / "step-0000003"
    step.mkdir(parents=True)
    for name in REQUIRED:
        (step / name).write_text("{}")
    (ckpts / LATEST).write_text(step.name)
    message = divergence_message(4, bad, entries, ckpts)
    assert f"the last checkpoint, {step}, is kept" in message
    assert "no checkpoint" not in message


@pytest.mark.parametrize(
    ("status", "world", "waits"),
    [("FINISHED", 2, True), ("FINISHED", 1, False), ("FAILED", 2, False), ("KILLED", 2, False)],
)
def test_cleanup_waits_for_every_rank_only_after_a_finished_run(status, world, waits):
    """A rank that finished first must not tear the process group down under the others; a
    failed or killed run must not wait for a rank that may never come."""
    from xalign.recipe import AlignmentRecipe

    calls: list[str] = []

    class FakeAccelerator:
        num_processes = world

        def wait_for_everyone(self) -> None:
            calls.append("wait")

        def end_training(self) -> None:
            calls.append("end")

    recipe = AlignmentRecipe.__new__(AlignmentRecipe)
    recipe.accelerator = FakeAccelerator()
    recipe.cleanup(status)
    assert calls == (["wait", "end"] if waits else ["end"])
