"""UD POS task plugin: CoNLL-U reading, XTREME labelling, loaders, end to end (tiny), compare."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import xalign_udpos as udpos
from test_compare import write_config
from test_evaluate import fresh_store
from typer.testing import CliRunner
from xalign_udpos.conllu import ConlluError, parse_conllu, read_conllu, sentences_from_rows
from xalign_udpos.data import find_conllu, load_ud, spread
from xalign_udpos.probe import PosProbe
from xalign_udpos.tagging import (
    Window,
    encode_tagged,
    first_piece_predictions,
    gold_labels,
    special_tokens,
)

from xalign import TaskContext, TaskResult
from xalign.cli import app
from xalign.evaluation import DataUnavailableError
from xalign.evaluation.finetune import IGNORE_INDEX, FinetuneSettings, collate

pytestmark = pytest.mark.usefixtures("one_thread")
TAG = udpos.LABEL_IDS

# ------------------------------------------------------------------------------------------
# CoNLL-U
# ------------------------------------------------------------------------------------------


def conllu_line(ident: str, form: str, upos: str) -> str:
    return "\t".join([ident, form, "_", upos, "_", "_", "0", "dep", "_", "_"])


DOC = "\n".join(
    [
        "\ufeff# newdoc id = d1",
        "# sent_id = 1",
        "# text = Vamos del mercado.",
        conllu_line("1", "Vamos", "VERB"),
        conllu_line("2-3", "del", "_"),  # multiword token: skipped, its words carry the tags
        conllu_line("2", "de", "ADP"),
        conllu_line("3", "el", "DET"),
        conllu_line("4", "mercado", "NOUN"),
        conllu_line("4.1", "fue", "VERB"),  # empty node: skipped
        conllu_line("5", ".", "PUNCT") + "\r",  # CRLF line end
        "",
        "# sent_id = 2",
        conllu_line("1", "bắt chuyện", "VERB"),  # a FORM with a space stays one word
        conllu_line("2", "_", "PUNCT"),
        "   ",  # a whitespace-only line ends a sentence too
        "# sent_id = 3 (text withheld: every FORM is _)",
        conllu_line("1", "_", "NOUN"),
        conllu_line("2", "_", "VERB"),
        "",
        "",
        conllu_line("1", "Ende", "NOUN"),  # last sentence without a blank line after it
    ]
)


def test_parse_conllu_skips_ranges_empty_nodes_and_withheld_text() -> None:
    sentences = parse_conllu(DOC, "doc.conllu")
    assert [s.words for s in sentences] == [
        ("Vamos", "de", "el", "mercado", "."),
        ("bắt chuyện", "_"),
        ("Ende",),
    ]
    assert [s.tags for s in sentences] == [
        ("VERB", "ADP", "DET", "NOUN", "PUNCT"),
        ("VERB", "PUNCT"),
        ("NOUN",),
    ]
    assert [s.source for s in sentences] == ["doc.conllu:4", "doc.conllu:13", "doc.conllu:21"]
    assert parse_conllu("") == [] and parse_conllu("# only a comment\n\n") == []


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "1\tword\t_\tNOUN\t_\t_\t0\tdep\t_",
            r"bad\.conllu:3: expected 10 tab-separated .* found 9",
        ),
        (
            "1 word _ NOUN _ _ 0 dep _ _",
            r"bad\.conllu:3: expected 10 .* found 1",
        ),  # spaces, not tabs
        (conllu_line("x", "word", "NOUN"), r"bad\.conllu:3: ID 'x' is not a word index"),
        (conllu_line("0", "word", "NOUN"), r"bad\.conllu:3: ID '0'"),
        (conllu_line("2", "word", "NOUNS"), r"bad\.conllu:3: UPOS 'NOUNS' of word 'word'"),
        (conllu_line("2", "word", "_"), r"bad\.conllu:3: UPOS '_'"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, line: str, message: str) -> None:
    path = tmp_path / "bad.conllu"
    path.write_text("# sent_id = 1\n" + conllu_line("1", "a", "DET") + "\n" + line + "\n")
    with pytest.raises(ConlluError, match=message):
        read_conllu(path)


def test_non_utf8_file_is_a_clear_error(tmp_path) -> None:
    path = tmp_path / "latin1.conllu"
    path.write_bytes(conllu_line("1", "Straße", "NOUN").encode("latin-1"))
    with pytest.raises(ConlluError, match="latin1.conllu: not UTF-8"):
        read_conllu(path)


def test_hub_rows_with_class_labels_drop_multiword_surface_forms() -> None:
    import datasets

    names = ["NOUN", "PUNCT", "ADP", "_", "DET", "VERB"]  # an order unlike UPOS_TAGS, with "_"
    features = datasets.Features(
        {
            "tokens": datasets.Sequence(datasets.Value("string")),
            "upos": datasets.Sequence(datasets.ClassLabel(names=names)),
        }
    )
    rows = datasets.Dataset.from_dict(
        {"tokens": [["Vamos", "del", "de", "el", "mercado"]], "upos": [[5, 3, 2, 4, 0]]},
        features=features,
    )
    from xalign_udpos.data import _tag_names

    assert _tag_names(rows) == names
    [sentence] = sentences_from_rows(rows, names, "hub:x")
    assert sentence.words == ("Vamos", "de", "el", "mercado")
    assert sentence.tags == ("VERB", "ADP", "DET", "NOUN")
    xtreme = [{"tokens": ["Hola", "!"], "pos_tags": ["INTJ", "PUNCT"]}]  # names, not ids
    assert sentences_from_rows(xtreme, None, "hub:y")[0].tags == ("INTJ", "PUNCT")
    with pytest.raises(ConlluError, match="hub:y row 0: tag 'NOUNS'"):
        sentences_from_rows([{"tokens": ["a"], "pos_tags": ["NOUNS"]}], None, "hub:y")


# ------------------------------------------------------------------------------------------
# XTREME labelling: first subword tagged, the rest -100; long sentences cut into windows
# ------------------------------------------------------------------------------------------

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "house", "##s", "is", "small", ".", "bắt"]
CLS, SEP, UNK = 2, 3, 1


def wordpiece(single: str = "[CLS] $A [SEP]"):
    """A WordPiece tokenizer with a hand-made vocabulary (ids = positions in VOCAB)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    ids = {t: i for i, t in enumerate(VOCAB)}
    tok = Tokenizer(models.WordPiece(ids, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single=single, special_tokens=[(t, ids[t]) for t in ("[CLS]", "[SEP]") if t in single]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
    )


HOUSE = udpos.TaggedSentence(
    ("the", "houses", "is", "small", "."), ("DET", "NOUN", "AUX", "ADJ", "PUNCT")
)
ODD = udpos.TaggedSentence(("bắt chuyện", "", "zzz"), ("VERB", "X", "NOUN"))


def test_first_subword_carries_the_tag() -> None:
    features, windows = encode_tagged(wordpiece(), [HOUSE, ODD], TAG, max_length=32)
    assert features[0]["input_ids"] == [CLS, 4, 5, 6, 7, 8, 9, SEP]  # houses = house ##s
    assert features[0]["labels"] == [
        IGNORE_INDEX,
        TAG["DET"],
        TAG["NOUN"],
        IGNORE_INDEX,
        TAG["AUX"],
        TAG["ADJ"],
        TAG["PUNCT"],
        IGNORE_INDEX,
    ]
    # "bắt chuyện" = bắt [UNK] (two pieces, one word); "" has no piece -> [UNK]; zzz -> [UNK]
    assert features[1]["input_ids"] == [CLS, 10, UNK, UNK, UNK, SEP]
    assert features[1]["labels"] == [
        IGNORE_INDEX,
        TAG["VERB"],
        IGNORE_INDEX,
        TAG["X"],
        TAG["NOUN"],
        IGNORE_INDEX,
    ]
    assert windows == [Window(0, 0, 5), Window(1, 0, 3)]
    assert set(features[0]) == {"input_ids", "labels"}
    assert gold_labels(features[1]) == [TAG["VERB"], TAG["X"], TAG["NOUN"]]


def test_long_sentences_are_cut_between_words() -> None:
    # max_length 5 leaves 3 pieces: the+houses (1+2), then is+small+. (3)
    features, windows = encode_tagged(
        wordpiece(), [HOUSE], TAG, max_length=5, keep={"input_ids", "token_type_ids"}
    )
    assert [f["input_ids"] for f in features] == [[CLS, 4, 5, 6, SEP], [CLS, 7, 8, 9, SEP]]
    assert windows == [Window(0, 0, 2), Window(0, 2, 3)]
    assert [f["token_type_ids"] for f in features] == [[0] * 5, [0] * 5]
    assert [t for f in features for t in gold_labels(f)] == [TAG[t] for t in HOUSE.tags]
    # max_length 3 leaves 1 piece: "houses" (2 pieces) no longer fits and becomes [UNK]
    features, windows = encode_tagged(wordpiece(), [HOUSE], TAG, max_length=3)
    assert [f["input_ids"] for f in features] == [[CLS, i, SEP] for i in (4, UNK, 7, 8, 9)]
    assert [w.start for w in windows] == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="max_length 2 leaves no room"):
        encode_tagged(wordpiece(), [HOUSE], TAG, max_length=2)


@pytest.mark.parametrize(
    ("template", "expected"),
    [("[CLS] $A [SEP]", ([CLS], [SEP])), ("$A [SEP]", ([], [SEP])), ("$A", ([], []))],
)
def test_special_tokens_of_other_templates(template: str, expected: tuple) -> None:
    tokenizer = wordpiece(template)
    assert special_tokens(tokenizer) == expected
    features, _ = encode_tagged(tokenizer, [HOUSE], TAG, max_length=32)
    prefix, suffix = expected
    assert features[0]["input_ids"] == prefix + [4, 5, 6, 7, 8, 9] + suffix
    assert gold_labels(features[0]) == [TAG[t] for t in HOUSE.tags]


def sentencepiece():
    """A Unigram tokenizer with SentencePiece's "▁" word marker (XLM-R style <s> ... </s>)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    pieces = ["<pad>", "<unk>", "<s>", "</s>", "▁", "的", "▁the", "▁house", "s", "."]
    scores = [0.0, 0.0, 0.0, 0.0, -2.0, -3.0, -1.0, -1.0, -2.0, -2.0]
    tok = Tokenizer(models.Unigram(list(zip(pieces, scores, strict=True)), unk_id=1))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 2), ("</s>", 3)]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>")


def test_bare_word_marker_gets_the_tag_only_with_first() -> None:
    sentence = udpos.TaggedSentence(("the", "houses", "的", "."), ("DET", "NOUN", "PART", "PUNCT"))
    ids = [2, 6, 7, 8, 4, 5, 4, 9, 3]  # <s> ▁the ▁house s ▁ 的 ▁ . </s>
    no, det, noun, part, punct = IGNORE_INDEX, TAG["DET"], TAG["NOUN"], TAG["PART"], TAG["PUNCT"]
    [xtreme], _ = encode_tagged(sentencepiece(), [sentence], TAG, max_length=32)
    assert xtreme == {"input_ids": ids, "labels": [no, det, noun, no, part, no, punct, no, no]}
    [content], _ = encode_tagged(
        sentencepiece(), [sentence], TAG, max_length=32, label_subword="first_content"
    )
    assert content == {"input_ids": ids, "labels": [no, det, noun, no, no, part, no, punct, no]}
    assert gold_labels(content) == gold_labels(xtreme) == [det, noun, part, punct]
    # WordPiece has no "▁": both choices label the same pieces
    first, _ = encode_tagged(wordpiece(), [HOUSE], TAG, max_length=32)
    same, _ = encode_tagged(wordpiece(), [HOUSE], TAG, max_length=32, label_subword="first_content")
    assert first == same
    with pytest.raises(ValueError, match="label_subword must be"):
        encode_tagged(wordpiece(), [HOUSE], TAG, max_length=32, label_subword="last")


def test_predictions_are_read_at_first_pieces_and_collate_pads_labels() -> None:
    features = [
        {"input_ids": [2, 4, 5, 3], "labels": [-100, 5, -100, -100]},
        {"input_ids": [2, 7, 8, 9, 3], "labels": [-100, 3, 0, 12, -100]},
    ]
    batch = collate(features, pad_id=0)
    assert batch["labels"].tolist() == [[-100, 5, -100, -100, -100], [-100, 3, 0, 12, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]
    logits = torch.zeros(2, 5, 17)
    for row, position, tag in [(0, 1, 5), (0, 2, 9), (1, 1, 3), (1, 2, 1), (1, 3, 12)]:
        logits[row, position, tag] = 1.0
    preds = first_piece_predictions(SimpleNamespace(logits=logits), batch)
    assert preds == [[5], [3, 1, 12]]  # position 2 of row 0 is a second piece: not read


# ------------------------------------------------------------------------------------------
# Locating UD files
# ------------------------------------------------------------------------------------------


def test_spread_is_evenly_spaced() -> None:
    assert spread(list(range(10)), 4) == [0, 2, 5, 7]  # i * 10 // 4
    assert spread(list(range(3)), 5) == [0, 1, 2] and spread([1, 2], None) == [1, 2]
    with pytest.raises(ValueError, match="limit"):
        spread([1], -1)


def sentence_block(words: list[tuple[str, str]], ranges: dict[int, str] | None = None) -> str:
    """CoNLL-U lines of one sentence; ``ranges[i]`` adds a multiword line before word i."""
    lines = [f"# text = {' '.join(w for w, _ in words)}"]
    for i, (form, tag) in enumerate(words, start=1):
        if ranges and i in ranges:
            lines.append(conllu_line(f"{i}-{i + 1}", ranges[i], "_"))
        lines.append(conllu_line(str(i), form, tag))
    return "\n".join(lines) + "\n\n"


NOUNS = {
    "en": ["cat", "dog", "bird", "horse"],
    "de": ["Katze", "Hund", "Vogel", "Pferd"],
    "fr": ["chat", "chien", "oiseau", "cheval"],
}
VERBS = {
    "en": ["sleeps", "eats", "sings"],
    "de": ["schläft", "frisst", "singt"],
    "fr": ["dort", "mange", "chante"],
}


def treebank_text(lang: str, n: int, offset: int = 0) -> str:
    """``n`` sentences DET NOUN VERB ADP (DET) NOUN PUNCT; German and French ones contract
    "zu dem" / "de le" into a multiword token (zum / du)."""
    blocks = []
    for k in range(offset, offset + n):
        noun, verb = NOUNS[lang][k % 4], VERBS[lang][k % 3]
        other = NOUNS[lang][(k + 1) % 4]
        if lang == "en":
            words = [
                ("the", "DET"),
                (noun, "NOUN"),
                (verb, "VERB"),
                ("near", "ADP"),
                ("the", "DET"),
                (other, "NOUN"),
                (".", "PUNCT"),
            ]
            blocks.append(sentence_block(words))
        else:
            det, adp, det2, fused = (
                ("die", "zu", "dem", "zum") if lang == "de" else ("le", "de", "le", "du")
            )
            words = [
                (det, "DET"),
                (noun, "NOUN"),
                (verb, "VERB"),
                (adp, "ADP"),
                (det2, "DET"),
                (other, "NOUN"),
                (".", "PUNCT"),
            ]
            blocks.append(sentence_block(words, {4: fused}))
    return "".join(blocks)


def write_treebanks(root: Path, *, train: int = 24, dev: int = 8, test: int = 6) -> Path:
    """A UD-release-like folder: en (EWT and a second treebank), de, fr."""
    files = {
        "UD_English-EWT/en_ewt-ud-train.conllu": treebank_text("en", train),
        "UD_English-EWT/en_ewt-ud-dev.conllu": treebank_text("en", dev, 100),
        "UD_English-EWT/en_ewt-ud-test.conllu": treebank_text("en", test, 200),
        "UD_English-Toy/en_toy-ud-train.conllu": treebank_text("en", 4, 300),
        "UD_German-GSD/de_gsd-ud-test.conllu": treebank_text("de", test),
        "UD_French-GSD/fr_gsd-ud-test.conllu": treebank_text("fr", test),
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return root


@pytest.fixture
def ud_dir(tmp_path) -> Path:
    return write_treebanks(tmp_path / "ud-release")


@pytest.fixture
def offline(monkeypatch):
    """The Hub is unreachable (the loaders' quick probe says so; datasets is never asked).

    Not HF_HUB_OFFLINE: huggingface_hub reads it at import, so once ``datasets`` is imported
    it no longer applies and a lookup waits for network timeouts.
    """
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr("xalign.evaluation.data._hub_reachable", lambda timeout=2.0: False)


def test_local_treebanks_one_or_pooled(ud_dir) -> None:
    ewt = load_ud("en", "train", ud_dir, treebank="en_ewt")
    assert (len(ewt.sentences), ewt.total, ewt.n_words) == (24, 24, 24 * 7)
    assert ewt.sources == [str(ud_dir / "UD_English-EWT" / "en_ewt-ud-train.conllu")]
    pooled = load_ud("en", "train", ud_dir)  # every English treebank, sorted by file name
    assert [Path(s).name for s in pooled.sources] == [
        "en_ewt-ud-train.conllu",
        "en_toy-ud-train.conllu",
    ]
    assert len(pooled.sentences) == 28 and pooled.sentences[24].words[1] == "cat"
    german = load_ud("de", "test", ud_dir, limit=4)  # spread: sentences 0, 1, 3, 4 of 6
    assert german.total == 6 and [s.words[1] for s in german.sentences] == [
        "Katze",
        "Hund",
        "Pferd",
        "Katze",
    ]
    assert german.sentences[0].words == ("die", "Katze", "schläft", "zu", "dem", "Hund", ".")
    # data_dir/ud is searched too, and files may sit directly in a searched folder
    (ud_dir.parent / "data" / "ud").mkdir(parents=True)
    (ud_dir.parent / "data" / "ud" / "fr_gsd-ud-test.conllu").write_text(treebank_text("fr", 2))
    assert load_ud("fr", "test", ud_dir.parent / "data").total == 2


def test_find_conllu_prefers_the_first_folder_with_files(tmp_path) -> None:
    (tmp_path / "a" / "UD_X").mkdir(parents=True)
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "UD_X" / "de_x-ud-test.conllu").write_text("")
    (tmp_path / "b" / "de_y-ud-test.conllu").write_text("")
    assert find_conllu(
        [tmp_path / "missing", tmp_path / "b", tmp_path / "a"], "de_*-ud-test.conllu"
    ) == [tmp_path / "b" / "de_y-ud-test.conllu"]


@pytest.mark.parametrize(
    ("lang", "treebank", "hub"),
    [
        ("de", None, ["google/xtreme", "udpos.German", "de_*-ud-test.conllu"]),
        (
            "de",
            "de_hdt",
            ["universal-dependencies/universal_dependencies", "de_hdt", "de_hdt-ud-test.conllu"],
        ),
    ],
)
def test_missing_data_names_local_folders_and_the_hub(
    tmp_path, offline, lang, treebank, hub
) -> None:
    with pytest.raises(DataUnavailableError) as info:
        load_ud(lang, "test", tmp_path, treebank=treebank)
    message = str(info.value)
    assert str(tmp_path) in message and str(tmp_path / "ud") in message
    assert all(part in message for part in hub), message


def test_language_outside_xtreme_without_files(tmp_path) -> None:
    with pytest.raises(DataUnavailableError, match=r"ga_\*-ud-test.conllu.*no 'ga' config"):
        load_ud("ga", "test", tmp_path)


def test_bad_codes_and_splits(tmp_path) -> None:
    with pytest.raises(ValueError, match="split 'validation'"):
        load_ud("en", "validation", tmp_path)
    with pytest.raises(ValueError, match=r"'e\*' is not a language code"):
        load_ud("e*", "test", tmp_path)
    with pytest.raises(ValueError, match="'de_gsd' is not a 'en' treebank"):
        load_ud("en", "test", tmp_path, treebank="de_gsd")


def test_hub_fallback_asks_for_the_right_config(tmp_path, monkeypatch) -> None:
    calls = []

    def fake_hub(task, hub_id, config, split, *, local_hint, searched):
        calls.append((hub_id, config, split))
        return [{"tokens": ["Guten", "Tag", "!"], "pos_tags": ["ADJ", "NOUN", "PUNCT"]}] * 3

    monkeypatch.setattr("xalign_udpos.data.load_hub_dataset", fake_hub)
    data = load_ud("de", "dev", tmp_path, limit=2)
    assert calls == [("google/xtreme", "udpos.German", "validation")]
    assert data.sources == ["hub:google/xtreme/udpos.German/validation"]
    assert (data.total, len(data.sentences)) == (3, 2)
    load_ud("en", "train", tmp_path, treebank="en_ewt")
    assert calls[-1] == ("universal-dependencies/universal_dependencies", "en_ewt", "train")


# ------------------------------------------------------------------------------------------
# Tasks
# ------------------------------------------------------------------------------------------

TINY = dict(train_limit=16, dev_limit=4, test_limit=4, epochs=2, batch_size=8, max_length=32)


def test_listed_by_xalign_plugins() -> None:
    result = CliRunner().invoke(app, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    items = {i["name"]: i for i in json.loads(result.stdout) if i["kind"] == "task"}
    for name in ("udpos", "pos-mini"):
        assert (items[name]["module"], items[name]["distribution"]) == ("xalign_udpos", "xalign")
    assert items["pos-mini"]["options"]["test_limit"] == 200


def test_registered_with_the_xtreme_recipe() -> None:
    tasks: list[type] = []
    udpos.register_tasks(tasks.append)
    assert [t.name for t in tasks] == ["udpos", "pos-mini", "pos-probe"]
    full, mini = (t.options() for t in tasks[:2])
    assert (
        full["learning_rate"],
        full["epochs"],
        full["max_length"],
        full["batch_size"],
        full["warmup_ratio"],
        full["weight_decay"],
    ) == (2e-5, 10, 128, 32, 0.0, 0.0)
    assert len(full["languages"]) == 33 and full["treebanks"] == {} and full["select_checkpoint"]
    assert udpos.UdposConfig().settings() == FinetuneSettings(
        learning_rate=2e-5, epochs=10, batch_size=32
    )
    assert mini["languages"] == [
        "en",
        "bg",
        "de",
        "el",
        "es",
        "fr",
        "ru",
        "zh",
        "ar",
        "hi",
        "tr",
        "vi",
    ]
    assert mini["treebanks"]["ar"] == "ar_pud" and mini["treebanks"]["en"] == "en_ewt"
    assert (mini["train_limit"], mini["test_limit"], mini["epochs"]) == (2000, 200, 1)
    assert mini["label_subword"] == "first_content"
    assert full["label_subword"] == "first"  # XTREME: the first subword, even a bare "▁"
    with pytest.raises(ValueError, match="label_subword"):
        udpos.Udpos.from_options({"label_subword": "last"})
    with pytest.raises(ValueError, match="test_limit must be >= 1"):
        udpos.PosMini.from_options({"test_limit": 0})
    with pytest.raises(ValueError, match="unknown option"):
        udpos.Udpos.from_options({"test_limt": 3})


def run_task(cls: type, model: Path, data: Path, *, seed: int = 0, **options) -> TaskResult:
    task = cls.from_options({**TINY, "languages": ["en", "de", "fr"], **options})
    return task.run(str(model), TaskContext(data_dir=data, seed=seed, show_progress=False))


def check_result(result: TaskResult, n_tokens: dict[str, int]) -> None:
    assert result.main_metric == "accuracy" and list(result.scores) == list(n_tokens)
    for lang, n in n_tokens.items():
        values = result.per_example[lang]
        assert len(values) == n and set(values) <= {0.0, 1.0}
        assert result.scores[lang] == {"accuracy": pytest.approx(100 * sum(values) / n)}
    assert result.meta["n_test"] == n_tokens
    # per test sentence (7 words each here): correct words, in order, and the accuracy rule
    accuracy = udpos.Udpos.metrics[0]
    assert (accuracy.aggregation, accuracy.offset, accuracy.scale) == ("ratio", 0.0, 100.0)
    for lang, n in n_tokens.items():
        counts, values = vars(result.counts[lang]), result.per_example[lang]
        assert counts["total"] == [7] * (n // 7)
        assert counts["matched"] == [sum(values[k : k + 7]) for k in range(0, n, 7)]
        assert 100 * sum(counts["matched"]) / n == pytest.approx(result.scores[lang]["accuracy"])
    assert result.meta["avg_accuracy"] == pytest.approx(
        sum(s["accuracy"] for s in result.scores.values()) / len(n_tokens)
    )


def test_pos_mini_end_to_end_and_deterministic(tiny_model, ud_dir) -> None:
    first = run_task(udpos.PosMini, tiny_model, ud_dir)
    check_result(first, {"en": 28, "de": 28, "fr": 28})  # 4 sentences x 7 words
    meta = first.meta
    assert (meta["n_train"], meta["n_train_words"], meta["n_select"]) == (16, 112, 4)
    assert meta["train"]["steps"] == 2 * 2 and len(meta["train"]["epoch_scores"]) == 2
    assert meta["n_test_sentences"] == {"en": 4, "de": 4, "fr": 4}
    assert meta["sources"]["en/train"] == [
        str(ud_dir / "UD_English-EWT" / "en_ewt-ud-train.conllu")
    ]
    assert "classifier.weight" in meta["new_parameters"]
    assert "first subword" in meta["labelling"] and "F1" in meta["metric"]
    again = run_task(udpos.PosMini, tiny_model, ud_dir)
    assert again.per_example == first.per_example
    assert again.meta["train"]["epoch_losses"] == meta["train"]["epoch_losses"]
    other = run_task(udpos.PosMini, tiny_model, ud_dir, seed=1)
    assert other.meta["train"]["epoch_losses"] != meta["train"]["epoch_losses"]


def test_udpos_pools_treebanks_and_tags_every_word_of_long_sentences(tiny_model, ud_dir) -> None:
    result = run_task(
        udpos.Udpos,
        tiny_model,
        ud_dir,
        train_limit=None,
        max_length=6,
        select_checkpoint=False,
        epochs=1,
        languages=["de"],
    )
    check_result(result, {"de": 28})  # windows of <= 4 pieces, every word still tagged
    assert result.meta["n_train"] == 28 and result.meta["n_select"] == 0  # EWT + toy
    assert result.meta["n_train_features"] > 28
    assert len(result.meta["sources"]["en/train"]) == 2


def test_learning_on_a_trivial_pattern(tiny_model, tmp_path) -> None:
    """Every sentence is DET NOUN VERB ... with the same words: a few epochs learn it."""
    root = write_treebanks(tmp_path / "ud", train=48)
    result = run_task(
        udpos.PosMini,
        tiny_model,
        root,
        train_limit=48,
        epochs=8,
        learning_rate=3e-3,
        warmup_ratio=0.0,
        languages=["en"],
    )
    assert result.scores["en"]["accuracy"] > 60.0
    assert result.meta["train"]["epoch_losses"][-1] < result.meta["train"]["epoch_losses"][0]


def test_inputs_are_the_files_a_run_reads(ud_dir) -> None:
    ctx = TaskContext(data_dir=ud_dir, languages=["de"])
    mini = udpos.PosMini.from_options({})
    assert [p.relative_to(ud_dir).as_posix() for p in mini.inputs(ctx)] == [
        "UD_English-EWT/en_ewt-ud-dev.conllu",
        "UD_English-EWT/en_ewt-ud-train.conllu",
        "UD_German-GSD/de_gsd-ud-test.conllu",
    ]
    pooled = udpos.Udpos.from_options({"select_checkpoint": False, "languages": ["fr", "vi"]})
    assert [p.name for p in pooled.inputs(TaskContext(data_dir=ud_dir))] == [
        "en_ewt-ud-train.conllu",
        "en_toy-ud-train.conllu",
        "fr_gsd-ud-test.conllu",
    ]  # sorted paths; vi has no local file (it would come from the Hub)


def test_missing_test_language_fails_before_training(tiny_model, ud_dir, offline) -> None:
    with pytest.raises(DataUnavailableError, match=r"vi_vtb-ud-test.conllu"):
        run_task(udpos.PosMini, tiny_model, ud_dir, languages=["en", "vi"])


def test_empty_split_is_an_error(tiny_model, tmp_path) -> None:
    root = write_treebanks(tmp_path / "ud")
    (root / "UD_German-GSD" / "de_gsd-ud-test.conllu").write_text("# nothing\n")
    with pytest.raises(ConlluError, match="no tagged sentence in UD de test"):
        run_task(udpos.PosMini, tiny_model, root)


def test_xalign_eval_cli_with_data_dir(tiny_model, ud_dir, tracking_uri) -> None:
    opts = [
        arg
        for k, v in {**TINY, "languages": "[de,fr]"}.items()
        for arg in ("--option", f"pos-mini.{k}={v}")
    ]
    result = CliRunner().invoke(
        app,
        [
            "eval",
            str(tiny_model),
            "--task",
            "pos-mini",
            "--data-dir",
            str(ud_dir),
            "--tracking-uri",
            tracking_uri,
            "--json",
            *opts,
        ],
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    run = json.loads(result.stdout)["runs"][0]
    assert run["task"] == "pos-mini" and run["main_metric"] == "accuracy"
    assert set(run["scores"]) == {"de", "fr"}


def test_compare_accepts_pos_mini(tiny_model, tmp_path) -> None:
    ud = write_treebanks(tmp_path / "ud")
    uri = fresh_store(tmp_path)
    cfg = write_config(tmp_path / "cfg.yaml", tiny_model, uri, tmp_path / "out", limit=24)
    opts = [
        arg
        for k, v in {**TINY, "languages": "[en,de,fr]"}.items()
        for arg in ("--option", f"pos-mini.{k}={v}")
    ]
    result = CliRunner().invoke(
        app,
        [
            "compare",
            "sinkhorn",
            "--config",
            str(cfg),
            "--set",
            "train.batch_size=8",
            "--tasks",
            "pos-mini",
            "--data-dir",
            str(ud),
            "--json",
            *opts,
        ],
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    out = json.loads(result.stdout)
    assert out["objectives"] == ["base", "sinkhorn"]
    rows = {(r["objective"], r["language"]) for r in out["rows"] if r["task"] == "pos-mini"}
    assert rows == {(o, lang) for o in ("base", "sinkhorn") for lang in ("en", "de", "fr")}
    seen = [a for a in out["averages"] if a["scope"] == "seen"]
    assert seen and all(a["languages"] == ["de", "fr"] for a in seen)  # the training languages
    tests = [s for s in out["significance"]["results"] if s["task"] == "pos-mini"]
    # the resampled units are the 4 test sentences (7 words each), not the 28 words
    assert {s["language"]: s["n_examples"] for s in tests} == {"en": 4, "de": 4, "fr": 4}


# ------------------------------------------------------------------------------------------
# The shared treebanks (../shared/data/ud)
# ------------------------------------------------------------------------------------------

#: sentences / words per file, from ../shared/data/ud/README.md (= each treebank's stats.xml)
SHARED_COUNTS = {
    ("en", "train"): (12544, 204577),
    ("en", "dev"): (2001, 25147),
    ("en", "test"): (2077, 25094),
    ("bg", "test"): (1116, 15724),
    ("de", "test"): (977, 16499),
    ("el", "test"): (456, 10672),
    ("es", "test"): (427, 12002),
    ("fr", "test"): (416, 10018),
    ("ru", "test"): (601, 11385),
    ("zh", "test"): (500, 12010),
    ("ar", "test"): (1000, 20747),
    ("hi", "test"): (1000, 23829),
    ("tr", "test"): (1100, 10032),
    ("vi", "test"): (800, 11692),
}


@pytest.mark.integration
def test_shared_treebanks_match_their_published_counts(shared_data) -> None:
    for (lang, split), counts in SHARED_COUNTS.items():
        data = load_ud(lang, split, shared_data, treebank=udpos.MINI_TREEBANKS[lang])
        assert (len(data.sentences), data.n_words) == counts, (lang, split)


@pytest.mark.integration
def test_pos_mini_on_the_shared_treebanks(tiny_model, shared_data) -> None:
    task = udpos.PosMini.from_options({**TINY, "train_limit": 32})
    result = task.run(str(tiny_model), TaskContext(seed=0, show_progress=False))  # default dir
    assert list(result.scores) == list(udpos.MINI_LANGS)
    assert result.meta["n_test_sentences"] == {lang: 4 for lang in udpos.MINI_LANGS}
    vi = load_ud("vi", "test", shared_data, treebank="vi_vtb", limit=4)
    assert result.meta["n_test"]["vi"] == vi.n_words
    assert result.meta["sources"]["ar/test"][0].endswith("UD_Arabic-PUD/ar_pud-ud-test.conllu")
    assert all(not math.isnan(s["accuracy"]) for s in result.scores.values())


# ------------------------------------------------------------------------ test_files


@pytest.fixture
def own_tests(tmp_path) -> dict[str, str]:
    """A German test treebank outside the data folder, under a name UD would not give it."""
    path = tmp_path / "mine" / "german-news.conllu"
    path.parent.mkdir()
    path.write_text(treebank_text("de", 3, 500), encoding="utf-8")
    return {"de": str(path)}


@pytest.mark.parametrize("cls", [udpos.PosMini, udpos.Udpos, PosProbe])
def test_test_files_replace_one_languages_test_treebank(cls, ud_dir, own_tests) -> None:
    task = cls.from_options({"languages": ["en", "de", "fr"], "test_files": own_tests})
    ctx = TaskContext(data_dir=ud_dir)
    load = getattr(task, "load", None) or task._load
    german = load("de", "test", ctx, None)
    assert german.sources == [own_tests["de"]] and german.total == 3
    french = load("fr", "test", ctx, None)  # other languages: the data folder, as before
    assert french.sources == [str(ud_dir / "UD_French-GSD" / "fr_gsd-ud-test.conllu")]
    train = load("en", "train", ctx, None)  # training data is not a test split
    assert str(ud_dir) in train.sources[0]
    inputs = [str(p) for p in task.inputs(ctx)]  # the reuse key follows the file read
    assert own_tests["de"] in inputs and not any("de_gsd" in p for p in inputs)


@pytest.mark.parametrize("cls", [udpos.PosMini, udpos.Udpos, PosProbe])
def test_relative_paths_are_recorded_absolute(cls, ud_dir, own_tests, monkeypatch) -> None:
    """test_files and --data-dir are relative to the working directory; the sources that the
    result's meta records name the files wherever it is read."""
    mine = Path(own_tests["de"])
    monkeypatch.chdir(mine.parent.parent)
    relative = {"de": f"{mine.parent.name}/{mine.name}"}
    task = cls.from_options({"languages": ["en", "de", "fr"], "test_files": relative})
    ctx = TaskContext(data_dir=Path(os.path.relpath(ud_dir, mine.parent.parent)))
    load = getattr(task, "load", None) or task._load
    assert load("de", "test", ctx, None).sources == [str(mine)]
    french = load("fr", "test", ctx, None)
    assert french.sources == [str(ud_dir.absolute() / "UD_French-GSD" / "fr_gsd-ud-test.conllu")]


@pytest.mark.parametrize("cls", [udpos.PosMini, PosProbe])
def test_test_files_errors_name_the_option(cls, ud_dir, own_tests, tmp_path) -> None:
    ctx = TaskContext(data_dir=ud_dir)
    missing = cls.from_options({"languages": ["de"], "test_files": {"de": str(tmp_path / "no")}})
    load = getattr(missing, "load", None) or missing._load
    with pytest.raises(DataUnavailableError, match=r"test_files\.de: no such file: .*no"):
        load("de", "test", ctx, None)
    outside = cls.from_options({"languages": ["fr"], "test_files": own_tests})
    with pytest.raises(
        DataUnavailableError,
        match=r"test_files names de, not among the task's languages \(fr\); add it to them "
        r"\(--option [a-z-]+\.languages=\[fr,de\]\)",
    ):
        outside.inputs(ctx)
    with pytest.raises(ValueError, match=r"test_files\.de: expected a CoNLL-U file path"):
        cls.from_options({"test_files": {"de": ""}})


def test_pos_mini_scores_the_given_test_file(tiny_model, ud_dir, own_tests) -> None:
    result = run_task(udpos.PosMini, tiny_model, ud_dir, test_files=own_tests)
    assert result.meta["n_test"]["de"] == 3 * 7  # its 3 sentences, not the folder's 4 of 6
    assert result.meta["sources"]["de/test"] == [own_tests["de"]]


@pytest.mark.parametrize("cls", [udpos.PosMini, udpos.Udpos, PosProbe])
def test_languages_flag_picks_among_the_task_languages(cls, ud_dir, own_tests, tmp_path):
    """--languages fr on a task whose languages [fr, de] have a de test file: the de file is
    neither read nor hashed (also when it is missing); French reads its treebank."""
    task = cls.from_options({"languages": ["fr", "de"], "test_files": own_tests})
    narrowed = TaskContext(data_dir=ud_dir, languages=["fr"])
    mine = Path(own_tests["de"])
    assert mine in task.inputs(TaskContext(data_dir=ud_dir))
    assert mine not in task.inputs(narrowed) and task.inputs(narrowed)
    gone = cls.from_options({"languages": ["fr", "de"], "test_files": {"de": str(tmp_path / "x")}})
    assert all(p.name != "x" for p in gone.inputs(narrowed))
    with pytest.raises(DataUnavailableError, match=r"test_files\.de: no such file"):
        gone.inputs(TaskContext(data_dir=ud_dir))
