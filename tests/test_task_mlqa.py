"""MLQA task plugin: official normalisation on worked examples, loaders, end to end (tiny)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import xalign_mlqa as mlqa
from typer.testing import CliRunner

import xalign
from xalign import TaskContext, TaskResult
from xalign.cli import app
from xalign.evaluation import DataUnavailableError, f1, normalize_answer
from xalign.evaluation.qa import mixed_segmentation, punctuation

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------------------
# Normalisation and scores, computed by hand
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lang", "text", "normalised"),
    [
        # en: lowercase, punctuation (ASCII and Unicode) out, a/an/the out as whole words
        ("en", "The Eiffel Tower.", "eiffel tower"),
        ("en", "«An» apple — the end", "apple end"),  # « » — are Unicode punctuation
        ("en", "apple—the end", "applethe end"),  # removed, not replaced by a space
        ("en", "Theatre and anthem", "theatre and anthem"),  # no article inside words
        # es: un una unos unas el la los las; "él" (pronoun, accented) is not an article
        ("es", "los Estados Unidos", "estados unidos"),
        ("es", "¿Una casa, el perro y unas flores?", "casa perro y flores"),
        ("es", "Él dijo", "él dijo"),
        # de: ein eine einen einem eines einer der die das den dem des
        ("de", "Das Haus des Nikolaus", "haus nikolaus"),
        ("de", "„Die Deutsche Bahn“", "deutsche bahn"),  # „ “ are Unicode punctuation
        ("de", "Dieser Derwisch", "dieser derwisch"),
        # ar: every "ال" becomes a space, also inside words; Arabic comma/question mark removed
        ("ar", "الكتاب الأحمر", "كتاب أحمر"),
        ("ar", "بالقلم، ماذا؟", "ب قلم ماذا"),
        ("ar", "مالك", "م ك"),
        # vi: của là cái chiếc những, whole words
        ("vi", "chiếc xe của tôi", "xe tôi"),
        ("vi", "những người là bạn", "người bạn"),
        ("vi", "cáibàn", "cáibàn"),
        # hi: no articles; danda (U+0964) is punctuation
        ("hi", "भारत की राजधानी।", "भारत की राजधानी"),
        # zh: one token per CJK ideograph U+4E00-U+9FA5, other runs split on whitespace
        ("zh", "北京大学", "北 京 大 学"),
        ("zh", "2008年北京奥运会。", "2008 年 北 京 奥 运 会"),
        ("zh", "《红楼梦》abc def", "红 楼 梦 abc def"),
        ("zh", "鿐鿐", "鿐鿐"),  # U+9FD0 lies outside U+4E00-U+9FA5: not split
    ],
)
def test_normalisation_per_language(lang: str, text: str, normalised: str) -> None:
    assert mlqa.normalize_mlqa(text, lang) == normalised


def test_punctuation_set_is_unicode_p_plus_ascii() -> None:
    punct = punctuation()
    assert {"«", "»", "。", "،", "؟", "।", "¿", "„", "“", "—", "_"} <= punct
    assert {"$", "+", "<", "=", ">", "^", "`", "|", "~"} <= punct  # ASCII symbols, category S
    assert "€" not in punct and "a" not in punct and "年" not in punct


def test_mixed_segmentation_keeps_punctuation_tokens() -> None:
    assert mixed_segmentation("北京,abc d") == ["北", "京", ",", "abc", "d"]
    assert mixed_segmentation("  ") == []


@pytest.mark.parametrize(
    ("pred", "gold", "lang", "em", "f1_value"),
    [
        ("The Eiffel Tower", "Eiffel Tower.", "en", 1.0, 1.0),
        ("in the year 1889", "1889", "en", 0.0, 0.5),  # P 1/3, R 1
        ("los Estados Unidos", "Estados Unidos", "es", 1.0, 1.0),
        ("Él dijo", "dijo", "es", 0.0, 2 / 3),  # P 1/2, R 1
        ("die Deutsche Bahn", "Deutsche Bahn", "de", 1.0, 1.0),
        ("الكتاب الأحمر", "كتاب أحمر", "ar", 1.0, 1.0),
        ("بالقلم", "القلم", "ar", 0.0, 2 / 3),  # [ب, قلم] vs [قلم]
        ("cái bàn", "bàn", "vi", 1.0, 1.0),
        ("北京大学", "北京", "zh", 0.0, 2 / 3),  # 4 characters vs 2: P 1/2, R 1
        ("2008年北京奥运会", "北京奥运会", "zh", 0.0, 5 / 6),  # P 5/7, R 1
        ("100 €", "100", "en", 0.0, 2 / 3),  # € is a symbol, not punctuation: a token
        ("nothing", "something", "en", 0.0, 0.0),
    ],
)
def test_exact_match_and_f1(pred: str, gold: str, lang: str, em: float, f1_value: float) -> None:
    assert xalign.mlqa_exact_match(pred, gold, lang) == em
    assert mlqa.mlqa_f1(pred, gold, lang) == pytest.approx(f1_value)


def test_differs_from_squad_scoring_where_it_should() -> None:
    # SQuAD keeps Spanish articles and Chinese words whole; MLQA does not
    assert f1("los Estados Unidos", ["Estados Unidos"]) == pytest.approx(0.8)
    assert mlqa.mlqa_f1("los Estados Unidos", ["Estados Unidos"], "es") == 1.0
    assert f1("北京大学", ["北京"]) == 0.0
    assert normalize_answer("«Paris»") == "«paris»"
    assert mlqa.normalize_mlqa("«Paris»", "en") == "paris"


def test_best_gold_counts_and_corpus_scores() -> None:
    assert mlqa.mlqa_f1("Bahn", ["die Bahn AG", "Bahn"], "de") == 1.0
    examples = [
        {"id": "a", "answers": {"text": ["das Haus"]}},
        {"id": "b", "answers": {"text": ["北京"]}},
        {"id": "c", "answers": {"text": ["x"]}},
    ]
    # a: EM 1 F1 1; b (scored as German: whitespace tokens) "北京大学" vs "北京": 0; c: missing
    scores = mlqa.mlqa_scores({"a": "Haus", "b": "北京大学"}, examples, "de")
    assert scores == {"exact_match": pytest.approx(100 / 3), "f1": pytest.approx(100 / 3)}
    # as Chinese: a: [haus] vs [das, haus] (no German articles) F1 2/3; b: 4 vs 2 chars 2/3
    zh = mlqa.mlqa_scores({"a": "Haus", "b": "北京大学"}, examples, "zh")
    assert zh == {"exact_match": 0.0, "f1": pytest.approx(100 * (2 / 3 + 2 / 3 + 0.0) / 3)}


def test_the_plugin_scores_with_xaligns_public_scorer() -> None:
    # one implementation: xalign_mlqa re-exports xalign's (qa-mini's scoring=mlqa uses it too)
    assert mlqa.normalize_mlqa is xalign.normalize_mlqa and mlqa.mlqa_f1 is xalign.mlqa_f1
    assert mlqa.mlqa_scores is xalign.mlqa_scores and mlqa.MLQA_LANGS == xalign.MLQA_LANGS


def test_unknown_language_is_an_error() -> None:
    with pytest.raises(ValueError, match="no rules for language 'fr'.*en, ar, de"):
        mlqa.normalize_mlqa("le chat", "fr")
    with pytest.raises(ValueError, match="at least one gold"):
        mlqa.mlqa_f1("x", [], "en")
    examples = [{"id": "q", "answers": {"text": ["x"]}}]
    for preds in ({}, {"other": "x"}):  # refused also when no question has a prediction
        with pytest.raises(ValueError, match="no rules for language 'fr'"):
            mlqa.mlqa_scores(preds, examples, "fr")
    for code in ("fr-FR", "pt_BR", "ja"):  # a region does not make a language MLQA's
        with pytest.raises(ValueError, match=f"no rules for language '{code}'"):
            mlqa.normalize_mlqa("x", code)
    for code in ("", "de DE", "d"):  # not language codes: the error says so
        with pytest.raises(ValueError, match="MLQA scoring"):
            mlqa.normalize_mlqa("x", code)


@pytest.mark.parametrize(
    ("code", "lang"),
    [
        ("de-DE", "de"),
        ("DE", "de"),
        ("de_AT", "de"),
        ("zh-Hans", "zh"),
        ("zh-Hant-TW", "zh"),
        ("ar-EG", "ar"),
        ("es-419", "es"),
        ("en-US", "en"),
        (" vi ", "vi"),
    ],
)
def test_a_regional_code_scores_with_its_language_rules(code: str, lang: str) -> None:
    """The public scorer reads a BCP-47 code by its primary language, as the task's
    ``languages`` option does (de-DE is German)."""
    samples = {
        "de": ("die Deutsche Bahn", "Deutsche Bahn"),
        "zh": ("2008年北京奥运会", "北京奥运会"),
        "ar": ("بالقلم", "القلم"),
        "es": ("los Estados Unidos", "Estados Unidos"),
        "en": ("in the year 1889", "1889"),
        "vi": ("cái bàn", "bàn"),
    }
    pred, gold = samples[lang]
    assert mlqa.normalize_mlqa(pred, code) == mlqa.normalize_mlqa(pred, lang)
    assert mlqa.mlqa_f1(pred, gold, code) == mlqa.mlqa_f1(pred, gold, lang)
    assert xalign.mlqa_exact_match(pred, gold, code) == xalign.mlqa_exact_match(pred, gold, lang)
    examples = [{"id": "q", "answers": {"text": [gold]}}]
    assert mlqa.mlqa_scores({"q": pred}, examples, code) == mlqa.mlqa_scores(
        {"q": pred}, examples, lang
    )


# ------------------------------------------------------------------------------------------
# Data: MLQA release layout, errors naming both places
# ------------------------------------------------------------------------------------------

PEOPLE = [
    ("Anna", "Berlin", "1901"),
    ("Boris", "Madrid", "1922"),
    ("Clara", "Paris", "1933"),
    ("David", "Athens", "1944"),
    ("Erik", "Sofia", "1955"),
    ("Fiona", "Vienna", "1966"),
    ("Georg", "Rome", "1977"),
    ("Hanna", "Oslo", "1988"),
]


def squad_json(rows: list[tuple[str, str, str]], *, lang: str = "en") -> dict:
    """One paragraph per person, two questions each (SQuAD v1.1 format)."""
    templates = {
        "en": (
            "{n} was born in {c} in {y}. {n} later moved to the coast.",
            "Where was {n} born?",
            "When was {n} born?",
        ),
        "de": (
            "{n} wurde {y} in {c} geboren. {n} zog später an die Küste.",
            "Wo wurde {n} geboren?",
            "Wann wurde {n} geboren?",
        ),
        "zh": ("{n}于{y}年出生在{c}。", "{n}出生在哪里？", "{n}哪一年出生？"),
    }
    text, where, when = templates[lang]
    data = []
    for i, (name, city, year) in enumerate(rows):
        context = text.format(n=name, c=city, y=year)
        qas = [
            {
                "id": f"{lang}-{i}-where",
                "question": where.format(n=name),
                "answers": [{"text": city, "answer_start": context.index(city)}],
            },
            {
                "id": f"{lang}-{i}-when",
                "question": when.format(n=name),
                "answers": [{"text": year, "answer_start": context.index(year)}],
            },
        ]
        data.append({"title": name, "paragraphs": [{"context": context, "qas": qas}]})
    return {"version": "1.0", "data": data}


def write_mlqa(
    root: Path,
    split: str = "test",
    langs: tuple[str, ...] = ("en", "de", "zh"),
    nested: str = "MLQA_V1",
) -> Path:
    folder = root / nested / split if nested else root
    folder.mkdir(parents=True, exist_ok=True)
    for lang in langs:
        name = mlqa.mlqa_file_name(split, lang, lang)
        (folder / name).write_text(
            json.dumps(squad_json(PEOPLE[:3], lang=lang), ensure_ascii=False), encoding="utf-8"
        )
    return root


@pytest.fixture
def offline(monkeypatch):
    """The Hub is unreachable (the loaders' quick probe says so; datasets is never asked).

    Not HF_HUB_OFFLINE: huggingface_hub reads it at import, so once ``datasets`` is imported
    it no longer applies and a lookup waits for network timeouts.
    """
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr("xalign.evaluation.data._hub_reachable", lambda timeout=2.0: False)


@pytest.mark.parametrize("nested", ["MLQA_V1", "mlqa/MLQA_V1", "mlqa", ""])
def test_local_layouts(tmp_path, nested: str) -> None:
    root = write_mlqa(tmp_path, nested=nested)
    rows = mlqa.load_mlqa("de", "test", root)
    assert [r["id"] for r in rows] == [f"de-{i}-{q}" for i in range(3) for q in ("where", "when")]
    assert rows[0]["context"][rows[0]["answers"]["answer_start"][0] :].startswith("Berlin")
    assert len(mlqa.load_mlqa("zh", "test", root, limit=4)) == 4


def test_dev_split_and_question_language(tmp_path) -> None:
    folder = tmp_path / "MLQA_V1" / "dev"
    folder.mkdir(parents=True)
    (folder / "dev-context-en-question-de.json").write_text(json.dumps(squad_json(PEOPLE[:1])))
    rows = mlqa.load_mlqa("en", "dev", tmp_path, question_lang="de")
    assert len(rows) == 2 and rows[0]["id"] == "en-0-where"


def test_missing_data_names_both_places(tmp_path, offline) -> None:
    write_mlqa(tmp_path, langs=("en",))
    with pytest.raises(DataUnavailableError) as info:
        mlqa.load_mlqa("vi", "test", tmp_path)
    message = str(info.value)
    assert "test-context-vi-question-vi.json" in message
    assert str(tmp_path / "MLQA_V1" / "test") in message
    assert "facebook/mlqa" in message and "mlqa.vi.vi" in message


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="no language 'fr'"):
        mlqa.load_mlqa("fr")
    with pytest.raises(ValueError, match="split"):
        mlqa.load_mlqa("en", "train")
    with pytest.raises(ValueError, match="no language xx"):
        mlqa.Mlqa.from_options({"languages": ["en", "xx"]})


# ------------------------------------------------------------------------------------------
# The task, end to end on the tiny model
# ------------------------------------------------------------------------------------------

TINY = dict(
    train_limit=16,
    test_limit=4,
    epochs=1,
    max_length=64,
    doc_stride=32,
    max_query_length=16,
    batch_size=4,
    warmup_steps=0,
)


@pytest.fixture
def qa_data(tmp_path) -> Path:
    root = write_mlqa(tmp_path / "data")
    (root / "squad").mkdir()
    (root / "squad" / "train-v1.1.json").write_text(json.dumps(squad_json(PEOPLE)))
    return root


def run_task(model: Path, data: Path, *, seed: int = 0, **options) -> TaskResult:
    task = mlqa.Mlqa.from_options({**TINY, "languages": ["en", "de", "zh"], **options})
    return task.run(str(model), TaskContext(data_dir=data, seed=seed, show_progress=False))


def test_listed_by_xalign_plugins() -> None:
    result = CliRunner().invoke(app, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    [item] = [i for i in json.loads(result.stdout) if i["name"] == "mlqa"]
    assert (item["kind"], item["module"], item["distribution"]) == ("task", "xalign_mlqa", "xalign")


def test_registered_with_xquads_recipe() -> None:
    tasks: list[type] = []
    mlqa.register_tasks(tasks.append)
    assert [t.name for t in tasks] == ["mlqa"]
    options = mlqa.Mlqa.options()
    assert options["languages"] == ["en", "ar", "de", "es", "hi", "vi", "zh"]
    assert (
        options["learning_rate"],
        options["epochs"],
        options["max_length"],
        options["doc_stride"],
        options["warmup_steps"],
        options["split"],
    ) == (3e-5, 3, 384, 128, 500, "test")
    # the same recipe as xquad through xalign's public base class, not through xalign_xquad
    assert issubclass(mlqa.Mlqa, xalign.ExtractiveQaTask)
    assert issubclass(__import__("xalign_xquad").Xquad, xalign.ExtractiveQaTask)


def test_mlqa_end_to_end_and_deterministic(tiny_model, qa_data) -> None:
    first = run_task(tiny_model, qa_data)
    assert first.main_metric == "f1" and list(first.scores) == ["en", "de", "zh"]
    for lang, values in first.per_example.items():
        assert len(values) == 4 and all(0.0 <= v <= 1.0 for v in values)
        scores = first.scores[lang]
        assert scores["f1"] == pytest.approx(100 * sum(values) / 4)
        assert 0.0 <= scores["exact_match"] <= scores["f1"] <= 100.0
    meta = first.meta
    assert meta["n_train"] == 16 and meta["n_test"] == {"en": 4, "de": 4, "zh": 4}
    assert meta["split"] == "test" and first.languages == {}  # keys are the languages
    assert meta["train"]["steps"] == -(-meta["n_train_features"] // 4)
    again = run_task(tiny_model, qa_data)
    assert again.per_example == first.per_example and again.scores == first.scores


def test_missing_test_language_fails_before_training(tiny_model, qa_data, offline) -> None:
    with pytest.raises(DataUnavailableError, match="test-context-hi-question-hi.json"):
        run_task(tiny_model, qa_data, languages=["en", "hi"])


def test_xalign_eval_cli_with_data_dir(tiny_model, qa_data, tracking_uri) -> None:
    opts = [
        arg
        for k, v in {**TINY, "languages": "[de]"}.items()
        for arg in ("--option", f"mlqa.{k}={v}")
    ]
    result = CliRunner().invoke(
        app,
        [
            "eval",
            str(tiny_model),
            "--task",
            "mlqa",
            "--data-dir",
            str(qa_data),
            "--tracking-uri",
            tracking_uri,
            "--json",
            *opts,
        ],
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    run = json.loads(result.stdout)["runs"][0]
    assert run["task"] == "mlqa" and run["main_metric"] == "f1"
    assert set(run["scores"]) == {"de"} and set(run["scores"]["de"]) == {"exact_match", "f1"}
