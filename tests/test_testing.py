"""xalign.testing, the public helpers for plugin tests: sides and batches built by hand-checked
layouts, a PreparedCorpus, the loss check (and that it catches each kind of broken loss), the
temporary plugin registration and the tiny encoder."""

from __future__ import annotations

import types

import pytest
import torch
from test_plugins import site  # noqa: F401 - the site fixture

import xalign
from xalign import LinkSpec, Needs, Objective, PreparedCorpus, testing
from xalign.plugins import get_registry

SPEC = LinkSpec("intersection", one_to_one=True, drop_identical=False, max_words=64)


def test_make_side_layout_by_hand():
    side = testing.make_side([["a", "b"]], [[[1.0, 2.0], [3.0, 4.0]]], lang="fr")
    assert side.hidden.tolist() == [[[7.0, 7.0], [1.0, 2.0], [3.0, 4.0], [7.0, 7.0]]]
    assert side.word_index.tolist() == [[-1, 0, 1, -1]]
    assert side.n_words.tolist() == [2] and side.words == [["a", "b"]] and side.langs == ["fr"]
    vectors, mask = side.words_vectors()
    assert vectors.tolist() == [[[1.0, 2.0], [3.0, 4.0]]] and mask.tolist() == [[True, True]]
    assert side.hidden.requires_grad


def test_make_side_subwords_and_padding_by_hand():
    # sentence 0: word 0 has subwords (1,0) (3,0); sentence 1: one word (5,5); pad 0
    side = testing.make_side(
        vectors=[[[[1.0, 0.0], [3.0, 0.0]]], [[5.0, 5.0]]], langs=["de", "ru"], pad_value=0.0
    )
    assert side.word_index.tolist() == [[-1, 0, 0, -1], [-1, 0, -1, -1]]
    assert side.words == [["w0"], ["w0"]] and side.langs == ["de", "ru"]
    for pooling, first_word in (("first", [1.0, 0.0]), ("last", [3.0, 0.0]), ("mean", [2.0, 0.0])):
        assert side.words_vectors(pooling)[0][0, 0].tolist() == first_word
        assert side.words_vectors(pooling)[0][1, 0].tolist() == [5.0, 5.0]


def test_make_side_random_vectors_are_seeded_and_checked():
    words = testing.random_words(2, [3, 1])
    assert words == [["de0", "de1", "de2"], ["de0"]]
    a = testing.make_side(words, hidden_size=4, subwords=2, seed=3)
    b = testing.make_side(words, hidden_size=4, subwords=2, seed=3)
    assert a.hidden.shape == (2, 8, 4) and torch.equal(a.hidden, b.hidden)
    assert not torch.equal(a.hidden, testing.make_side(words, hidden_size=4, seed=4).hidden[:, :8])
    with pytest.raises(ValueError, match=r"words per sentence \[1\] but vectors \[2\]"):
        testing.make_side([["a"]], [[[1.0], [2.0]]])
    with pytest.raises(ValueError, match="1 langs for 2 sentences"):
        testing.make_side(words, langs=["de"])


class _Linked(Objective):
    name = "linked"

    def needs(self) -> Needs:
        return Needs(links=(SPEC,), frozen_target=True)

    def loss(self, batch):  # pragma: no cover - not called
        raise NotImplementedError


def test_make_batch_maps_links_to_every_spec_and_freezes_the_target():
    src = testing.make_side(testing.random_words(2, 2), hidden_size=3)
    tgt = testing.make_side(testing.random_words(2, 2, "en"), hidden_size=3, lang="en")
    links = [{(0, 1)}, {(1, 0)}]
    batch = testing.make_batch(src, tgt, links, objective=_Linked(hidden_size=3))
    assert batch.pair == "de-en" and batch.links_for(SPEC) == links
    assert torch.equal(batch.tgt_frozen.hidden, tgt.hidden)
    assert not batch.tgt_frozen.hidden.requires_grad
    mixed = testing.make_side(testing.random_words(2, 2), langs=["de", "fr"])
    assert testing.make_batch(mixed, tgt).pair == "mixed"
    with pytest.raises(ValueError, match="need objective="):
        testing.make_batch(src, tgt, links)


def test_make_corpus_is_a_prepared_corpus_that_sinkhorn_reads():
    corpus = testing.make_corpus({"de": [(["ein", "Haus"], ["a", "house"])]})
    assert isinstance(corpus, PreparedCorpus)
    [pair] = corpus.pairs
    assert (pair.src, pair.tgt) == ("de", "en")
    assert [(e.src_words, e.tgt_words) for e in pair.examples] == [
        (["ein", "Haus"], ["a", "house"])
    ]
    sinkhorn = get_registry().objective("sinkhorn").cls
    objective = sinkhorn.from_options({"point_weights": "tf-idf"}, hidden_size=4)
    objective.prepare(corpus)  # reads the words of every example


@pytest.mark.parametrize("name", ["sinkhorn", "l2", "contrastive", "mixed_ot"])
def test_check_loss_passes_every_builtin_objective(name):
    objective = get_registry().objective(name).cls(hidden_size=8)
    aligned, unrelated = testing.check_loss(objective)
    assert aligned < unrelated


class _Broken(Objective):
    name = "broken"
    kind = "constant"

    def loss(self, batch):
        x, _ = batch.src.words_vectors()
        y, _ = batch.tgt.words_vectors()
        gap = (x - y).pow(2).sum()
        return {
            "constant": torch.tensor(1.0),
            "nan": gap * float("nan"),
            "maximise": -gap,
            "vector": (x - y).pow(2).sum(-1),
            "detached": gap.detach(),
        }[self.kind]


@pytest.mark.parametrize(
    "kind, message",
    [
        ("constant", "not connected to the source states"),
        ("nan", "loss is not finite"),
        ("maximise", "not rank-consistent"),
        ("vector", "loss must be a scalar tensor"),
        ("detached", "not connected to the source states"),
    ],
)
def test_check_loss_catches_each_broken_kind(kind, message):
    objective = _Broken(hidden_size=8)
    objective.kind = kind
    with pytest.raises(AssertionError, match=message):
        testing.check_loss(objective)


def test_registered_plugin_is_seen_only_inside_the_block():
    class Mine(Objective):
        name = "mine_for_test"

        def loss(self, batch):
            return batch.src.hidden.sum() * 0.0

    module = types.SimpleNamespace(
        register_objectives=xalign.hookimpl(lambda register: register(Mine))
    )
    with testing.registered_plugin(module, "mine", distribution="xalign-mine", version="1.0"):
        entry = get_registry().objective("mine_for_test")
        assert entry.source.distribution == "xalign-mine"
    assert "mine_for_test" not in get_registry().objectives()


def test_tiny_encoder_loads_and_encodes(tmp_path):
    path = testing.tiny_encoder(tmp_path / "tiny", hidden=16)
    encoder = xalign.load_encoder(str(path))
    out = encoder.encode([["ein", "Haus"]], ["de"])
    vectors, mask = out.words_vectors("mean")
    assert vectors.shape == (1, 2, 16) and mask.all()


def test_the_plugin_template_tests_pass_with_xalign_testing():
    """docs/plugin-template's own tests (what a plugin author copies) use xalign.testing only."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    template = Path(__file__).resolve().parents[1] / "docs" / "plugin-template"
    for test_file in ("test_mean_cosine.py", "test_pair_retrieval.py"):  # objective, task
        assert "from xalign.testing import" in (template / "tests" / test_file).read_text()
    task_test = (template / "tests" / "test_pair_retrieval.py").read_text()
    assert "tiny_encoder(" in task_test and "xalign.TaskContext(" in task_test
    env = {**os.environ, "PYTHONPATH": f"{template}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(template / "tests")],
        capture_output=True,
        text=True,
        env=env,
        cwd=template,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "6 passed" in out.stdout  # 4 objective tests + 2 task tests


def test_make_batch_refuses_a_link_set_count_other_than_the_sentences():
    src = testing.make_side(testing.random_words(2, 2), hidden_size=3)
    tgt = testing.make_side(testing.random_words(2, 2, "en"), hidden_size=3, lang="en")
    for links in ([{(0, 0)}], [{(0, 0)}, {(1, 1)}, {(0, 1)}]):
        with pytest.raises(ValueError, match=f"{len(links)} link sets for 2 sentences"):
            testing.make_batch(src, tgt, links, objective=_Linked(hidden_size=3))
        with pytest.raises(ValueError, match=f"{len(links)} link sets for 2 sentences"):
            testing.make_batch(src, tgt, {SPEC: links})
    with pytest.raises(ValueError, match="need objective="):
        testing.make_batch(src, tgt, [{(0, 0)}, {(1, 1)}])


class _SharedMap(Objective):
    """||W x - W y||² over identity-linked words, W [H, H] starting at zero."""

    name = "shared_map"

    def __init__(self, config=None, *, hidden_size: int) -> None:
        super().__init__(config, hidden_size=hidden_size)
        self.W = torch.nn.Parameter(torch.zeros(hidden_size, hidden_size))

    def loss(self, batch):
        x, _ = batch.src.words_vectors()
        y, _ = batch.tgt.words_vectors()
        return ((x - y) @ self.W.T).pow(2).sum(-1).mean()


def test_check_loss_explains_a_zero_initialised_parameter_and_perturbs_it():
    objective = _SharedMap(hidden_size=8)
    with pytest.raises(AssertionError) as caught:
        testing.check_loss(objective)
    message = str(caught.value)
    assert "with respect to the source states is zero everywhere" in message
    assert "W = 0" in message and "perturb=" in message
    aligned, unrelated = testing.check_loss(objective, perturb=0.1)
    assert aligned == 0.0 < unrelated  # x = y: W(x - y) = 0 whatever W
    assert torch.count_nonzero(objective.W) == 0  # the caller's objective is unchanged


def test_registered_plugin_accepts_an_installed_plugin_and_refuses_a_taken_name(site):  # noqa: F811
    import importlib

    from test_plugins import install_fake_distribution, task_source

    from xalign.plugins import PluginError, reset_registry

    install_fake_distribution(
        site, "xalign-inst", "1.0", "inst", "xalign_inst", source=task_source("inst-task")
    )
    reset_registry()
    try:
        installed = importlib.import_module("xalign_inst")
        with testing.registered_plugin(installed, "inst"):  # pip install -e . then the docs' way
            assert get_registry().task("inst-task").source.distribution == "xalign-inst"
        other = types.SimpleNamespace()
        with pytest.raises(PluginError) as caught, testing.registered_plugin(other, "inst"):
            pass  # pragma: no cover
        message = str(caught.value)
        assert "the name 'inst' is taken by the installed plugin 'inst'" in message
        assert "xalign-inst 1.0" in message and len(message) < 300  # no registry dump
    finally:
        reset_registry()
        get_registry()
