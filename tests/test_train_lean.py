"""The lean training loop: no host sync per micro-step, c0 cut at the layer it is read at,
nothing kept from one language pair to the next, and ``setup()`` split into its jobs."""

from __future__ import annotations

import gc
import inspect
from pathlib import Path

import pytest
import torch

from xalign.config import load_config
from xalign.encoders import load_encoder
from xalign.recipe import AlignmentRecipe, frozen_upto_layer

TRAINER = str(Path(inspect.getfile(AlignmentRecipe)).resolve())


def _recipe(overrides: list[str]) -> AlignmentRecipe:
    recipe = AlignmentRecipe(load_config(None, overrides), show_progress=False)
    recipe.setup()
    return recipe


def _overrides(tiny_model, tmp_path, tracking_uri, *extra: str) -> list[str]:
    return [
        f"model.name={tiny_model}",
        "data.limit=40",
        "data.languages=[bg,de,el,es,fr]",
        "train.batch_size=8",
        "train.grad_accum=2",
        "train.max_steps=2",
        "train.save_model=false",
        f"train.output_dir={tmp_path / 'out'}",
        f"tracking.uri={tracking_uri}",
        *extra,
    ]


# ------------------------------------------------------------------ host syncs
SYNCS = ("item", "__bool__", "__float__", "__int__", "tolist", "cpu", "numpy")


def test_micro_steps_never_wait_for_the_device(
    tiny_model, tmp_path, tracking_uri, monkeypatch, one_thread
):
    """No ``.item()``/``bool``/``float``/``.cpu()`` of a tensor in the trainer's micro-step:
    metrics and the non-finite check are reduced once per optimizer step."""
    recipe = _recipe(_overrides(tiny_model, tmp_path, tracking_uri))
    in_micro = False
    calls: list[tuple[str, str, int]] = []
    for name in SYNCS:
        original = getattr(torch.Tensor, name)

        def patched(self, *args, _original=original, _name=name, **kwargs):
            if in_micro:
                caller = inspect.currentframe().f_back
                calls.append(
                    (_name, str(Path(caller.f_code.co_filename).resolve()), caller.f_lineno)
                )
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, patched)
    micro = recipe._micro_step
    micro_calls = []

    def traced(*args, **kwargs):
        nonlocal in_micro
        in_micro = True
        try:
            return micro(*args, **kwargs)
        finally:
            in_micro = False
            micro_calls.append(1)

    recipe._micro_step = traced
    try:
        result = recipe.train()
    finally:
        recipe.cleanup()
    assert len(micro_calls) == 4 and result.steps == 2
    assert calls, "the patch must see the pooling's .item() (elsewhere): it is wired"
    in_trainer = [c for c in calls if c[1] == TRAINER]
    assert in_trainer == [], in_trainer


def test_metrics_still_add_up_without_syncs(tiny_model, tmp_path, tracking_uri, one_thread):
    """The loss logged per step is the sum of the pairs' totals (device-side accumulation)."""
    from mlflow.tracking import MlflowClient

    recipe = _recipe(_overrides(tiny_model, tmp_path, tracking_uri))
    try:
        result = recipe.train()
    finally:
        recipe.cleanup()
    client = MlflowClient(tracking_uri)
    loss = client.get_metric_history(result.run_id, "loss")
    totals = [
        client.get_metric_history(result.run_id, f"{lang}-en/total")
        for lang in ("bg", "de", "el", "es", "fr")
    ]
    assert len(loss) == 2
    for step in range(2):
        assert loss[step].value == pytest.approx(sum(t[step].value for t in totals), rel=1e-5)


# ------------------------------------------------------------------ frozen copy
@pytest.mark.parametrize(("layer", "kept"), [(-1, 2), (2, 2), (1, 1), (-2, 1), (0, 0)])
def test_frozen_copy_keeps_only_the_blocks_below_the_read_layer(tiny_model, layer, kept):
    """c0 has ``layer`` blocks (2-layer model), runs each once, and gives the tuned model's
    hidden state ``layer`` exactly; the tuned encoder keeps all its blocks."""
    encoder = load_encoder(str(tiny_model), layer=layer)
    encoder.eval()
    frozen = frozen_upto_layer(encoder)
    assert len(encoder.model.encoder.layer) == 2
    assert len(frozen.model.encoder.layer) == kept
    runs = []
    for block in frozen.model.encoder.layer:
        block.register_forward_hook(lambda *_: runs.append(1))
    words = [["Das", "ist", "gut", "."], ["Hallo", "Welt"], ["Ja"]]
    with torch.no_grad():
        got = frozen.encode(words, ["de"] * 3)
        want = encoder.encode(words, ["de"] * 3)
    assert len(runs) == kept
    assert torch.equal(got.hidden, want.hidden)
    assert not any(p.requires_grad for p in frozen.parameters())
    assert all(p.requires_grad for p in encoder.parameters())


def test_run_with_a_middle_layer_starts_with_zero_drift(tiny_model, tmp_path, tracking_uri):
    """In a run with ``model.layer=1`` c0 has one block and, without dropout, agrees with the
    tuned model before the first update (regulariser exactly 0 at step 1)."""
    from mlflow.tracking import MlflowClient

    recipe = _recipe(
        _overrides(
            tiny_model,
            tmp_path,
            tracking_uri,
            "model.layer=1",
            "train.dropout=false",
            "train.grad_accum=1",
            "train.max_steps=1",
        )
    )
    try:
        assert len(recipe.frozen.model.encoder.layer) == 1
        result = recipe.train()
    finally:
        recipe.cleanup()
    first = MlflowClient(tracking_uri).get_metric_history(result.run_id, "de-en/reg")[0].value
    assert first == 0.0


# ------------------------------------------------------------------ memory per pair
def _live_tensor_bytes(exclude: set[int]) -> int:
    """Bytes of live non-scalar tensors that are not parameters or gradients."""
    total = 0
    for obj in gc.get_objects():
        if isinstance(obj, torch.Tensor) and id(obj) not in exclude and obj.dim() > 0:
            total += obj.numel() * obj.element_size()
    return total


def test_nothing_is_kept_from_one_pair_to_the_next(tiny_model, tmp_path, tracking_uri, one_thread):
    """At the start of every pair's encoding the same tensor bytes are alive (parameters,
    gradients and optimizer state aside): a pair's activations and outputs are gone before
    the next pair starts, so memory does not grow with the number of pairs."""
    recipe = _recipe(_overrides(tiny_model, tmp_path, tracking_uri))
    encode = recipe._encode_batch
    seen: list[tuple[str, int]] = []

    def traced(name, examples, langs):
        keep = {id(p) for p in recipe.module.parameters()}
        keep |= {id(p.grad) for p in recipe.module.parameters() if p.grad is not None}
        keep |= {id(p) for p in recipe.frozen.parameters()}
        for state in recipe.optimizer.state.values():
            keep |= {id(v) for v in state.values() if isinstance(v, torch.Tensor)}
        gc.collect()
        seen.append((name, _live_tensor_bytes(keep)))
        return encode(name, examples, langs)

    recipe._encode_batch = traced
    # Objects alive before training (modules, imports) go to the permanent generation, which
    # gc.get_objects() and gc.collect() skip: each look is over what training created.
    gc.collect()
    gc.freeze()
    try:
        recipe.train()
    finally:
        gc.unfreeze()
        recipe.cleanup()
    assert len(seen) == 2 * 2 * 5  # steps x micro-steps x pairs
    sizes = {size for _, size in seen}
    assert len(sizes) == 1, seen


# ------------------------------------------------------------------ setup split
def test_setup_is_a_sequence_of_named_jobs():
    """``setup()`` only calls its ``_setup_*`` helpers, each of which exists and is documented;
    each takes its inputs as arguments (torchtune's recipe shape), and what it returns is what
    ``setup()`` stores, so the order reads from the signatures."""
    import ast
    import textwrap

    source = textwrap.dedent(inspect.getsource(AlignmentRecipe.setup))
    body = ast.parse(source).body[0].body[1:]  # after the docstring
    assert body
    for statement in body:
        assert isinstance(statement, (ast.Assign, ast.Expr)), ast.unparse(statement)
        call = statement.value
        assert isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
        assert ast.unparse(call.func.value) == "self", ast.unparse(statement)
        name = call.func.attr
        assert name.startswith("_setup_") and call.args, ast.unparse(statement)
        helper = getattr(AlignmentRecipe, name)
        assert helper.__doc__ and len(inspect.getsource(helper).splitlines()) <= 60, name


# ------------------------------------------------------------------ frozen word embeddings
def test_freeze_embeddings_keeps_the_word_embedding_matrix(
    tiny_model, tmp_path, tracking_uri, one_thread
):
    """``train.freeze_embeddings=true``: the word-embedding matrix has no gradient, no optimizer
    state and the same values after training; every other weight is tuned as before."""
    recipe = _recipe(_overrides(tiny_model, tmp_path, tracking_uri, "train.freeze_embeddings=true"))
    words = recipe.encoder.model.get_input_embeddings().weight
    before = {n: p.detach().clone() for n, p in recipe.encoder.model.named_parameters()}
    try:
        recipe.train()
    finally:
        recipe.cleanup()
    after = dict(recipe.encoder.model.named_parameters())
    frozen = [n for n, p in after.items() if p is words]
    assert frozen == ["embeddings.word_embeddings.weight"]
    assert torch.equal(words, before[frozen[0]]) and words.grad is None
    assert all(p is not words for p in recipe.params)
    assert words not in recipe.optimizer.state
    changed = [n for n, p in after.items() if not torch.equal(p, before[n])]
    assert "embeddings.position_embeddings.weight" in changed
    assert len(changed) == len(after) - 1


# ------------------------------------------------------------------ gradient checkpointing
def _saved_bytes(recipe: AlignmentRecipe) -> int:
    """Bytes the autograd graph keeps for the backward of the first pair's batch."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    name, examples, langs, _ = recipe._batches(0)[0]
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        recipe._encode_batch(name, examples, langs)
    return total


@pytest.mark.parametrize("dropout", ["true", "false"])
def test_gradient_checkpointing_keeps_less_and_trains_the_same(
    tiny_model, tmp_path, tracking_uri, one_thread, dropout
):
    """``train.gradient_checkpointing=true`` keeps a fraction of the activations for the
    backward and gives the same weights after training, with dropout (the RNG state is
    restored for the recomputation) and without (the layers must still be recomputed
    although the model is in eval mode)."""
    recipes = {}
    for on in ("false", "true"):
        recipe = _recipe(
            _overrides(
                tiny_model,
                tmp_path / on,
                tracking_uri,
                f"train.dropout={dropout}",
                f"train.gradient_checkpointing={on}",
            )
        )
        try:
            recipe.train()
        finally:
            recipe.cleanup()
        recipes[on] = recipe
    plain, ckpt = (dict(recipes[k].encoder.model.named_parameters()) for k in ("false", "true"))
    assert plain.keys() == ckpt.keys()
    for name, value in plain.items():
        assert torch.equal(ckpt[name], value), name
    assert any(  # training did change the weights, so the comparison means something
        not torch.equal(p, q)
        for p, q in zip(
            plain.values(), load_encoder(str(tiny_model)).model.parameters(), strict=True
        )
    )
    saved = {k: _saved_bytes(r) for k, r in recipes.items()}
    assert saved["true"] < 0.6 * saved["false"], saved


def test_gradient_checkpointing_on_a_model_without_it_is_a_config_error(
    tiny_model, tmp_path, tracking_uri, monkeypatch
):
    from transformers import BertModel

    from xalign.errors import ConfigError

    monkeypatch.setattr(BertModel, "supports_gradient_checkpointing", False)
    with pytest.raises(ConfigError, match=r"train\.gradient_checkpointing: BertModel .*false"):
        _recipe(_overrides(tiny_model, tmp_path, tracking_uri, "train.gradient_checkpointing=true"))
