"""The ``align`` task: link extraction, AER through the task on a fake gold set, end to end."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from xalign_align_eval import (
    AlignConfig,
    AlignTask,
    AlignTaskError,
    extract_links,
    mutual_links,
    ot_plan,
    predict_links,
    sentence_aer,
)

import xalign
from xalign import ExtractConfig, Side, TaskContext, TruncationWarning, XalignError
from xalign.alignment import GoldAlignmentWarning, available_gold_sets, load_gold
from xalign.task import stamp_result

# ------------------------------------------------------------------------ extraction


def test_mutual_argmax_of_a_similarity_matrix() -> None:
    sim = torch.tensor([[0.9, 0.1, 0.2], [0.8, 0.3, 0.7], [0.1, 0.6, 0.5]])
    # rows -> 0, 0, 1; columns -> 0, 2, 1: only (0, 0) and (2, 1) are mutual.
    assert mutual_links(sim) == {(0, 0), (2, 1)}


def test_relative_threshold_on_a_plan() -> None:
    plan = torch.tensor([[0.40, 0.10, 0.00], [0.00, 0.20, 0.15], [0.05, 0.00, 0.10]])
    assert mutual_links(plan, 1.0) == {(0, 0), (1, 1)}
    # >= half the row max and >= half the column max
    assert mutual_links(plan, 0.5) == {(0, 0), (1, 1), (1, 2), (2, 2)}


def test_ot_plan_is_a_coupling_and_recovers_a_permutation() -> None:
    torch.manual_seed(0)
    x = torch.randn(5, 8)
    perm = torch.tensor([3, 0, 4, 1, 2])
    y = x[perm] + 0.01 * torch.randn(5, 8)
    plan = ot_plan(x, y, ExtractConfig(blur=0.05, sinkhorn_iters=100, normalize=False))
    assert plan.shape == (5, 5)
    assert torch.allclose(plan.sum(1), torch.full((5,), 0.2), atol=1e-3)
    assert torch.allclose(plan.sum(0), torch.full((5,), 0.2), atol=1e-3)
    expected = {(int(perm[j]), j) for j in range(5)}
    assert mutual_links(plan) == expected
    ones = torch.ones(5, dtype=torch.bool)
    assert extract_links(x, ones, y, ones, AlignConfig(method="ot")) == expected


def test_masked_words_keep_their_positions() -> None:
    x = torch.eye(3)
    y = torch.eye(3)[[2, 1, 0]]
    x_mask = torch.tensor([True, False, True])
    y_mask = torch.tensor([True, True, True])
    for method in ("argmax", "ot"):
        links = extract_links(x, x_mask, y, y_mask, AlignConfig(method=method))
        assert links == {(0, 2), (2, 0)}


def test_options_are_validated() -> None:
    assert AlignConfig(sets="bicici-deen, awesome-enfr").sets == ["bicici-deen", "awesome-enfr"]
    for bad in (
        {"method": "mwmf"},
        {"softmax_threshold": 0.0},
        {"itermax_rounds": 0},
        {"pooling": "max"},
        {"threshold": 0.0},
        {"limit": -1},
        {"limit": 0},  # used to give AER nan
        {"sinkhorn_iters": -1},
        {"blur": 0.0},
        {"scaling": 1.0},
        {"batch_size": 0},
        {"max_length": 2},
    ):
        with pytest.raises(AlignTaskError, match=f"align: {next(iter(bad))} must be"):
            AlignConfig(**bad)
    assert issubclass(AlignTaskError, XalignError) and issubclass(AlignTaskError, ValueError)


def test_task_defaults_are_the_extraction_defaults() -> None:
    # one set of option names and defaults for the task and `xalign align`
    task, extract = AlignConfig(), ExtractConfig()
    assert task.extract_options() == extract.extract_options()
    assert extract.extract_options() == {
        "method": "argmax",
        "layer": -1,
        "pooling": "mean",
        "max_length": 512,
        "blur": 0.1,
        "threshold": 1.0,
        "normalize": True,
        "sinkhorn_iters": 0,
        "scaling": 0.5,
        "softmax_threshold": 1e-3,
        "itermax_rounds": 2,
    }


# ------------------------------------------------------------------------ AER through the task


class StubEncoder:
    """One subword per word; a word's vector is the one-hot of its concept in ``lexicon``."""

    def __init__(self, lexicon: dict[str, int], dim: int = 8, random: bool = False) -> None:
        self.lexicon, self.dim, self.random = lexicon, dim, random
        self.generator = torch.Generator().manual_seed(0)

    def _vector(self, word: str) -> torch.Tensor:
        if self.random:
            return torch.randn(self.dim, generator=self.generator)
        return torch.nn.functional.one_hot(torch.tensor(self.lexicon[word]), self.dim).float()

    def encode(self, sentences, langs, *, pooling="last", device=None) -> Side:
        longest = max(len(s) for s in sentences)
        hidden = torch.zeros(len(sentences), longest, self.dim)
        word_index = torch.full((len(sentences), longest), -1)
        for b, words in enumerate(sentences):
            for i, word in enumerate(words):
                hidden[b, i] = self._vector(word)
                word_index[b, i] = i
        n_words = torch.tensor([len(s) for s in sentences])
        return Side(hidden, word_index, n_words, sentences, langs, pooling)


LEXICON = {"ein": 0, "a": 0, "Hund": 1, "dog": 1, "x": 2, "X": 2, "y": 3, "Z": 3, "z": 4, "Y": 4}


@pytest.fixture
def fake_gold(tmp_path: Path) -> Path:
    """A bicici-layout folder: a perfect pair, then a pair with two crossed links."""
    folder = tmp_path / "fake-deen"
    folder.mkdir()
    (folder / "test.de").write_text("ein Hund\nx y z\n", encoding="utf-8")
    (folder / "test.en").write_text("a dog\nX Y Z\n", encoding="utf-8")
    # sentence 0 also has an out-of-range link (5-5); sentence 1: 2p1 is possible only
    (folder / "de-en.wa").write_text("0-0 1-1 5-5\n0-0 1-1 2p1\n", encoding="utf-8")
    return folder


def _evaluate(folder: Path, encoder: StubEncoder, **options):
    task = AlignTask(AlignConfig(sets=[str(folder)], **options))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GoldAlignmentWarning)
        return task.evaluate(encoder, TaskContext(show_progress=False), model="stub")


def test_perfect_alignment_has_aer_zero(fake_gold: Path) -> None:
    for method in ("argmax", "ot"):
        result = _evaluate(fake_gold, StubEncoder(LEXICON), method=method, limit=1)
        scores = result.scores["fake-deen"]
        assert scores["aer"] == 0.0 and scores["precision"] == 1.0 and scores["recall"] == 1.0
        assert result.per_example["fake-deen"] == [0.0]


def test_a_limit_that_leaves_no_gold_links_is_an_error(tmp_path: Path) -> None:
    # pair 1 has no links, pair 2 has one: limit 1 would score AER 1 whatever the model does
    folder = tmp_path / "fake-deen"
    folder.mkdir()
    (folder / "test.de").write_text("x y\nein\n", encoding="utf-8")
    (folder / "test.en").write_text("X Z\na\n", encoding="utf-8")
    (folder / "de-en.wa").write_text("\n0-0\n", encoding="utf-8")
    with pytest.raises(AlignTaskError, match=r"its first 1 sentence pair\(s\) \(limit\) have no"):
        _evaluate(folder, StubEncoder(LEXICON), limit=1)
    # both pairs: predicted x-X, y-Z (no gold there) and ein-a (sure): |A| = 3, |S| = 1,
    # |A∩S| + |A∩P| = 2, AER = 1 - 2/(3 + 1) = 0.5
    aer = _evaluate(folder, StubEncoder(LEXICON), limit=2).scores["fake-deen"]["aer"]
    assert aer == pytest.approx(0.5)


def test_hand_computed_aer(fake_gold: Path) -> None:
    result = _evaluate(fake_gold, StubEncoder(LEXICON))
    # predicted: {0-0, 1-1} and {0-0, 1-2, 2-1}; gold S = {0-0, 1-1} twice, P adds 2-1 in pair 2
    # |A| = 5, |S| = 4, |A∩S| = 2 + 1, |A∩P| = 2 + 2 -> AER = 1 - 7/9
    scores = result.scores["fake-deen"]
    assert scores["aer"] == pytest.approx(2 / 9)
    assert scores["precision"] == pytest.approx(4 / 5)
    assert scores["recall"] == pytest.approx(3 / 4)
    assert result.per_example["fake-deen"] == pytest.approx([0.0, 0.4])
    meta = result.meta
    aer = {m.name: m for m in AlignTask.metrics}["aer"]
    assert aer.higher_is_better is False and result.main_metric == "aer"
    assert (aer.aggregation, aer.offset, aer.scale) == ("ratio", 1.0, -1.0)
    assert stamp_result(result, AlignTask(), "align").metric() == aer  # counts agree: 1 - 7/9
    assert result.languages == {"fake-deen": "de"} and meta["pairs"] == {"fake-deen": "de-en"}
    assert meta["out_of_range"] == {"fake-deen": [[0, 5, 5]]}
    assert result.counts["fake-deen"] == xalign.ItemCounts([4, 3], [4, 5])


def test_languages_select_sets(fake_gold: Path) -> None:
    task = AlignTask(AlignConfig(sets=[str(fake_gold)]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GoldAlignmentWarning)
        assert task.load_sets(TaskContext(languages=["de"]))[0].name == "fake-deen"
        with pytest.raises(ValueError, match="matches languages"):
            task.load_sets(TaskContext(languages=["fr"]))
        # one known and one unknown language: the unknown one is named, not dropped
        with pytest.raises(ValueError, match=r"matches languages xx \(--languages .*de, fake"):
            task.load_sets(TaskContext(languages=["de", "xx"]))
        assert task.load_sets(TaskContext(languages=["fake-deen"]))[0].name == "fake-deen"


def test_sentence_aer_of_empty_sentence_is_zero() -> None:
    assert sentence_aer([0, 3], [0, 5]) == [0.0, pytest.approx(0.4)]


# ------------------------------------------------------------------------ end to end


@pytest.mark.parametrize(("method", "limit"), [("argmax", 20), ("ot", 5)])
def test_tiny_model_on_every_shared_gold_set(tiny_model, shared_data, method, limit) -> None:
    context = TaskContext(data_dir=shared_data, show_progress=method == "ot")
    config = AlignConfig(limit=limit, method=method)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GoldAlignmentWarning)
        result = AlignTask(config).run(str(tiny_model), context)
    expected = [s for s in available_gold_sets(shared_data) if not s.endswith("-dev")]
    assert sorted(result.scores) == sorted(expected) and len(expected) == 5
    for name, scores in result.scores.items():
        assert 0.0 <= scores["aer"] <= 1.0 and 0.0 <= scores["f1"] <= 1.0
        assert scores["n_sentences"] == limit and scores["n_pred"] > 0
        assert len(result.per_example[name]) == limit
        assert all(0.0 <= v <= 1.0 for v in result.per_example[name])
    assert result.languages["bicici-deen"] == "de"


@pytest.mark.integration
def test_e5_aligns_bicici_far_better_than_random_vectors(shared_data) -> None:
    context = TaskContext(data_dir=shared_data, show_progress=False)
    task = AlignTask(AlignConfig(sets=["bicici-deen"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GoldAlignmentWarning)
        e5 = task.run("packaged:multilingual-e5-small", context).scores["bicici-deen"]
        rand = task.evaluate(StubEncoder({}, dim=64, random=True), context)
    rand_aer = rand.scores["bicici-deen"]["aer"]
    assert e5["n_sentences"] == 100
    # measured: e5 0.293 (mutual argmax, last layer, mean pooling), random vectors 0.961
    assert e5["aer"] < 0.4, e5
    assert e5["aer"] < rand_aer - 0.4, (e5["aer"], rand_aer)


# ------------------------------------------------------------------------ gold-set name clashes


def _bicici(folder: Path, de: str, en: str, links: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "test.de").write_text(de + "\n", encoding="utf-8")
    (folder / "test.en").write_text(en + "\n", encoding="utf-8")
    (folder / "de-en.wa").write_text(links + "\n", encoding="utf-8")
    return folder


def _awesome(base: Path, de: str, en: str, links: str) -> Path:
    base.parent.mkdir(parents=True, exist_ok=True)
    base.with_suffix(".src-tgt").write_text(f"{de} ||| {en}\n", encoding="utf-8")
    base.with_suffix(".gold").write_text(links + "\n", encoding="utf-8")  # 1-based
    return base.with_suffix(".src-tgt")


def test_same_folder_name_in_two_places_gives_two_rows(tmp_path: Path) -> None:
    # v1 is a perfect pair (AER 0); in v2 the gold crosses the links (AER 1)
    v1 = _bicici(tmp_path / "v1" / "deen", "ein Hund", "a dog", "0-0 1-1")
    v2 = _bicici(tmp_path / "v2" / "deen", "ein Hund", "a dog", "0-1 1-0")
    result = _evaluate_sets([str(v1), str(v2)], StubEncoder(LEXICON))
    assert sorted(result.scores) == ["v1/deen", "v2/deen"]
    assert result.scores["v1/deen"]["aer"] == 0.0 and result.scores["v2/deen"]["aer"] == 1.0
    assert result.languages == {"v1/deen": "de", "v2/deen": "de"}


def test_same_file_name_in_two_places_gives_two_rows(tmp_path: Path) -> None:
    # awesome layout, v1/deen.src-tgt and v2/deen.src-tgt (and a deeper third one)
    a = _awesome(tmp_path / "v1" / "deen", "ein Hund", "a dog", "1-1 2-2")
    b = _awesome(tmp_path / "v2" / "deen", "x y z", "X Y Z", "1-1 2-2 3-3")
    c = _awesome(tmp_path / "v2" / "old" / "deen", "ein Hund", "a dog", "1-2")
    result = _evaluate_sets([str(a), str(b), str(c)], StubEncoder(LEXICON))
    assert sorted(result.scores) == ["v1/deen", "v2/deen", "v2/old/deen"]
    assert result.scores["v1/deen"]["n_sentences"] == 1.0
    # predicted 0-0 1-2 2-1, sure 0-0 1-1 2-2: AER = 1 - (1 + 1) / (3 + 3)
    assert result.scores["v2/deen"]["aer"] == pytest.approx(1 - 2 / 6)
    assert result.scores["v2/old/deen"]["aer"] == 1.0


def test_a_set_listed_twice_is_an_error(tmp_path: Path) -> None:
    v1 = _bicici(tmp_path / "v1" / "deen", "ein Hund", "a dog", "0-0 1-1")
    for sets in ([str(v1), str(v1)], [str(v1), str(tmp_path / "v1" / ".." / "v1" / "deen")]):
        with pytest.raises(AlignTaskError, match="'deen' is listed more than once"):
            _evaluate_sets(sets, StubEncoder(LEXICON))
    a = _awesome(tmp_path / "w" / "deen", "ein Hund", "a dog", "1-1 2-2")
    with pytest.raises(AlignTaskError, match="listed more than once"):  # .src-tgt and .gold
        _evaluate_sets([str(a), str(a.with_suffix(".gold"))], StubEncoder(LEXICON))


def test_described_sets_are_told_apart_too(tmp_path: Path) -> None:
    # mappings (load_gold's keyword options) without a name are named by their folders
    v1 = _bicici(tmp_path / "v1" / "deen", "ein Hund", "a dog", "0-0 1-1")
    v2 = _bicici(tmp_path / "v2" / "deen", "ein Hund", "a dog", "0-1 1-0")
    result = _evaluate_sets([{"path": str(v1)}, {"path": str(v2)}], StubEncoder(LEXICON))
    assert result.scores["v1/deen"]["aer"] == 0.0 and result.scores["v2/deen"]["aer"] == 1.0
    # a name given twice is the user's clash: an error, not a silent rename
    with pytest.raises(AlignTaskError, match="'same' is listed more than once"):
        _evaluate_sets(
            [{"path": str(v1), "name": "same"}, {"path": str(v2), "name": "same"}],
            StubEncoder(LEXICON),
        )


def _evaluate_sets(sets: list[str], encoder, **options):
    task = AlignTask(AlignConfig(sets=sets, **options))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GoldAlignmentWarning)
        return task.evaluate(encoder, TaskContext(show_progress=False), model="stub")


# ------------------------------------------------------------------------ truncation


def _single_subword_words(tiny_model: Path) -> list[str]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    words = sorted(w for w in tok.get_vocab() if w.isalpha() and tok.tokenize(w) == [w])
    assert len(words) > 50
    return words


def test_truncated_words_are_counted_unaligned_and_keep_positions(tiny_model, tmp_path) -> None:
    # tiny model: 128 positions = [CLS] + 126 subwords + [SEP]. Source: 125 one-subword words,
    # a 6-subword word cut after its first subword, 49 more words -> 50 truncated words.
    vocab = _single_subword_words(tiny_model)
    src = [vocab[k % len(vocab)] for k in range(125)] + ["Kindergarten"]
    src += [vocab[(7 * k) % len(vocab)] for k in range(49)]
    tgt = src[:100]  # 100 one-subword words: not truncated
    folder = tmp_path / "long-deen"
    folder.mkdir()
    (folder / "test.de").write_text(" ".join(src) + "\nein Hund\n", encoding="utf-8")
    (folder / "test.en").write_text(" ".join(tgt) + "\na dog\n", encoding="utf-8")
    (folder / "de-en.wa").write_text(
        " ".join(f"{i}-{i}" for i in range(100)) + "\n0-0 1-1\n", encoding="utf-8"
    )
    task = AlignTask(AlignConfig(sets=[str(folder)]))
    with pytest.warns(
        TruncationWarning,
        match=r"long-deen: 50 words in 1 sentence pair\(s\) "
        r"are past the model's 128-subword limit",
    ):
        result = task.run(str(tiny_model), TaskContext(show_progress=False))
    assert result.meta["truncated_words"] == {"long-deen": 50}
    # identical sentences -> identical contextual vectors for the first 100 words: the diagonal
    # is the mutual argmax where both words are kept, truncated source words get no link
    gold = load_gold(str(folder))
    encoder = xalign.load_encoder(str(tiny_model), max_length=512)
    pred, truncated = predict_links(encoder, gold, ExtractConfig())
    assert truncated == [50, 0]
    assert {(i, i) for i in range(100)} <= pred[0] and max(i for i, _ in pred[0]) < 125


def test_no_truncation_reports_zero(fake_gold: Path) -> None:
    result = _evaluate(fake_gold, StubEncoder(LEXICON))
    assert result.meta["truncated_words"] == {"fake-deen": 0}


# ------------------------------------------------------------------------ same links as the CLI


def _cli_links(model: str, src: list[str], tgt: list[str], options: list[str]) -> dict:
    import json

    from typer.testing import CliRunner

    from xalign.cli import app

    result = CliRunner().invoke(
        app,
        ["align", " ".join(src), " ".join(tgt), "--model", model, "--json", "--src-lang", "de"]
        + list(options),
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _check_cli_matches_task(model: str, shared_data: Path, options: dict, n_check: int) -> None:
    from xalign.data import tokenize_words

    gold = load_gold("bicici-deen", root=shared_data)
    # sentences whose gold words survive Moses unchanged, so positions are comparable
    same = [
        n
        for n in range(len(gold))
        if tokenize_words(" ".join(gold.src_sents[n]), "de") == gold.src_sents[n]
        and tokenize_words(" ".join(gold.tgt_sents[n]), "en") == gold.tgt_sents[n]
    ]
    assert len(same) >= n_check
    limit = same[n_check - 1] + 1
    config = AlignConfig(sets=["bicici-deen"], limit=limit, **options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GoldAlignmentWarning)
        result = AlignTask(config).run(
            model, TaskContext(data_dir=shared_data, show_progress=False)
        )
        encoder = xalign.load_encoder(model, layer=config.layer, max_length=config.max_length)
        pred, _ = predict_links(encoder.eval(), gold, config, batch_size=config.batch_size)
    counts = vars(result.counts["bicici-deen"])
    cli_options = [arg for k, v in options.items() for arg in (f"--{k.replace('_', '-')}", str(v))]
    for n in same[:n_check]:
        data = _cli_links(model, gold.src_sents[n], gold.tgt_sents[n], cli_options)
        links = {tuple(x) for x in data["links"]}
        assert data["method"] == config.method and links == pred[n], n
        if f"{config.method}_links" in data:  # argmax and ot are also shown on their own
            assert links == {tuple(x) for x in data[f"{config.method}_links"]}
        # the task's per-sentence AER terms are those of the CLI's links
        sure, possible = gold.sure[n], gold.possible[n] | gold.sure[n]
        assert counts["matched"][n] == len(links & sure) + len(links & possible), n
        assert counts["total"][n] == len(links) + len(sure), n


@pytest.mark.parametrize(
    "options",
    [
        {"method": "argmax"},
        {"method": "ot", "threshold": 0.5, "layer": 1},
        {"method": "softmax", "softmax_threshold": 0.01},
        {"method": "itermax", "layer": 1},
    ],
)
def test_cli_prints_the_links_the_task_scores_tiny(tiny_model, shared_data, options) -> None:
    _check_cli_matches_task(str(tiny_model), shared_data, options, n_check=3)


@pytest.mark.integration
@pytest.mark.parametrize("method", ["argmax", "ot"])
def test_cli_prints_the_links_the_task_scores_e5(shared_data, method) -> None:
    _check_cli_matches_task(
        "packaged:multilingual-e5-small", shared_data, {"method": method}, n_check=2
    )


# ------------------------------------------------------------------------ degenerate clouds


def test_ot_method_on_identical_one_word_sentences(tmp_path: Path, tiny_model) -> None:
    # "Berlin ||| Berlin": one identical vector on each side, a zero-diameter OT problem
    base = _awesome(tmp_path / "berlin" / "deen", "Berlin", "Berlin", "1-1")
    with base.open("a", encoding="utf-8") as f:
        f.write("ein Hund ||| a dog\n")
    base.with_suffix(".gold").write_text("1-1\n1-1 2-2\n", encoding="utf-8")
    stub = StubEncoder({**LEXICON, "Berlin": 5})
    for encoder in (stub, xalign.load_encoder(str(tiny_model)).eval()):
        result = _evaluate_sets([str(base)], encoder, method="ot")
        assert result.per_example["deen"][0] == 0.0  # predicted exactly {0-0}
    assert result.scores["deen"]["n_sentences"] == 2.0


def test_result_does_not_depend_on_the_seed(tmp_path, shared_data) -> None:
    """``uses_seed = False`` holds: with dropout in the model and other seeds (context and torch)
    the links and scores are the same (the encoder runs in eval mode; nothing is sampled)."""
    import torch
    from conftest import build_tiny_encoder

    model = build_tiny_encoder(tmp_path / "m", dropout=0.3)
    results = []
    for seed in (0, 7):
        torch.manual_seed(seed)
        context = TaskContext(data_dir=shared_data, show_progress=False, seed=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", GoldAlignmentWarning)
            results.append(AlignTask(AlignConfig(limit=10)).run(str(model), context))
    assert AlignTask.uses_seed is False
    assert results[0].scores == results[1].scores
    assert results[0].per_example == results[1].per_example
