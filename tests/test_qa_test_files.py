"""QA tasks on any SQuAD v1.1 file (``test_files``) scored by SQuAD's or MLQA's rules
(``scoring``): the CPU protocol ``qa-mini`` (TyDiQA-GoldP English train) tested on MLQA-format
files, by hand on tiny fixtures; ``xquad`` and ``mlqa`` share the options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import xalign_mlqa as mlqa
import xalign_xquad as xquad

import xalign
import xalign.evaluation.qa as qaf
from xalign import DataUnavailableError, TaskContext, XalignError
from xalign.evaluation.qa import QaTestFileError
from xalign.evaluation.runs import eval_key, task_inputs

pytestmark = pytest.mark.usefixtures("one_thread")

TASKS = [xquad.Xquad, xquad.QaMini, mlqa.Mlqa]
#: (id, context, question, gold answer): 4 questions per file, test_limit keeps 3
DE = [
    ("d1", "Die Deutsche Bahn fährt nach Hamburg.", "Wer fährt?", "Deutsche Bahn"),
    ("d2", "Anna wurde in Berlin geboren.", "Wo wurde Anna geboren?", "Berlin"),
    ("d3", "Boris kam 1901 nach Wien.", "Wann kam Boris?", "1901"),
    ("d4", "Clara lebt in Rom.", "Wo lebt Clara?", "Rom"),
]
ZH = [
    ("z1", "他在北京工作。", "他在哪里工作？", "北京"),
    ("z2", "长城很长。", "什么很长？", "长城"),
    ("z3", "她住在上海。", "她住在哪里？", "上海"),
    ("z4", "我们去广州。", "我们去哪里？", "广州"),
]
EN = [
    ("e1", "They live in the red house by the lake.", "Where?", "the red house"),
    ("e2", "She moved to Paris in 1990.", "Where to?", "Paris"),
    ("e3", "The bridge was built in 1602.", "When?", "1602"),
    ("e4", "He owns two cats.", "What?", "two cats"),
]
#: the model's answers, patched in: each differs from its gold in one way the rules treat apart
PREDS = {
    "d1": "die Deutsche Bahn",  # squad: P 2/3 R 1, F1 0.8; mlqa: German article out, 1
    "d2": "„Berlin“",  # squad keeps „ “ (not ASCII): 0; mlqa: Unicode punctuation out, 1
    "d3": "1902",  # 0 under both
    "z1": "北京大学",  # squad: one token vs one, 0; mlqa: 4 characters vs 2, P 1/2 R 1: 2/3
    "z2": "长城。",  # squad keeps 。: 0; mlqa: 1
    "z3": "上海",  # 1 under both
    "e1": "red house",  # 1 under both (English articles)
    "e2": "«Paris»",  # squad 0, mlqa 1
    "e3": "",  # 0
}
#: per-question F1 by hand, and the EM flags (test_limit 3: the fourth question is not read)
BY_HAND = {
    "squad": {"en": [1, 0, 0], "de": [0.8, 0, 0], "zh": [0, 0, 1]},
    "mlqa": {"en": [1, 1, 0], "de": [1, 1, 0], "zh": [2 / 3, 1, 1]},
}
EM_BY_HAND = {
    "squad": {"en": [1, 0, 0], "de": [0, 0, 0], "zh": [0, 0, 1]},
    "mlqa": {"en": [1, 1, 0], "de": [1, 1, 0], "zh": [0, 1, 1]},
}
TINY = dict(
    train_limit=8,
    test_limit=3,
    epochs=1,
    max_length=48,
    doc_stride=16,
    max_query_length=16,
    batch_size=4,
)


def squad_file(path: Path, rows: list[tuple[str, str, str, str]]) -> Path:
    """One article per question, SQuAD v1.1 JSON (the MLQA, XQuAD and TyDiQA-GoldP format)."""
    data = [
        {
            "title": qid,
            "paragraphs": [
                {
                    "context": context,
                    "qas": [
                        {
                            "id": qid,
                            "question": question,
                            "answers": [{"text": answer, "answer_start": context.index(answer)}],
                        }
                    ],
                }
            ],
        }
        for qid, context, question, answer in rows
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": "1.0", "data": data}, ensure_ascii=False), "utf-8")
    return path


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A data folder with qa-mini's inputs: TyDiQA-GoldP English train, XQuAD en."""
    root = tmp_path / "data"
    train = [(f"t{i}", c, q, a) for i, (_, c, q, a) in enumerate(EN * 2)]
    squad_file(root / "tydiqa" / "tydiqa.goldp.en.train.json", train)
    squad_file(root / "xquad" / "xquad.en.json", EN)
    return root


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    """MLQA-style test files (release names) for de and zh."""
    folder = tmp_path / "MLQA_V1" / "test"
    return {
        "de": str(squad_file(folder / "test-context-de-question-de.json", DE)),
        "zh": str(squad_file(folder / "test-context-zh-question-zh.json", ZH)),
    }


def mini(files: dict[str, str], **options) -> xquad.QaMini:
    opts = {**TINY, "languages": ["en", "de", "zh"], "test_files": files, **options}
    return xquad.QaMini.from_options(opts)


# ------------------------------------------------------------------------------------------
# Options
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", TASKS)
def test_every_qa_task_has_the_options(cls) -> None:
    options = cls.options()
    assert options["test_files"] == {}
    assert options["scoring"] == ("mlqa" if cls is mlqa.Mlqa else "squad")


@pytest.mark.parametrize("cls", TASKS)
@pytest.mark.parametrize("bad", [["de.json"], {"de": ""}, {"de": 3}, {"not a code": "x"}])
def test_test_files_checked_at_config_load(cls, bad) -> None:
    with pytest.raises(ValueError, match=f"^{cls.name}: test_files"):  # names its own task
        cls.Config(languages=["de"], test_files=bad)


@pytest.mark.parametrize("cls", TASKS)
def test_scoring_checked_at_config_load(cls) -> None:
    with pytest.raises(ValueError, match=f"^{cls.name}: scoring must be one of squad, mlqa"):
        cls.Config(languages=["de"], scoring="bleu")


@pytest.mark.parametrize("cls", TASKS)
@pytest.mark.parametrize("key", ["train_limit", "test_limit"])
@pytest.mark.parametrize("value", [0, -1])
def test_limits_below_one_refused_at_config_load(cls, key, value) -> None:
    """0 questions left nothing to score (an IndexError after training), -1 failed late."""
    with pytest.raises(ValueError, match=rf"^{cls.name}: {key} must be >= 1 or null"):
        cls.Config(languages=["de"], **{key: value})
    assert getattr(cls.Config(languages=["de"], **{key: 1}), key) == 1


def test_mlqa_scoring_needs_mlqa_languages() -> None:
    # qa-mini's default languages hold el, which MLQA's normaliser has no rules for
    with pytest.raises(ValueError, match="^qa-mini: scoring mlqa has no language el: .*en, ar"):
        xquad.QaMiniConfig(scoring="mlqa")
    assert xquad.QaMiniConfig(scoring="mlqa", languages=["en", "de-DE", "zh"]).scoring == "mlqa"
    # `--option qa-mini.scoring=mlqa --languages en` fails on the default languages: the
    # message names the option that fixes it, with the MLQA languages configured
    with pytest.raises(ValueError, match=r"--option qa-mini\.languages=\[en,de,es\]; "):
        xquad.QaMiniConfig(scoring="mlqa")
    with pytest.raises(ValueError, match=r"--option xquad\.languages=\[en\]; "):
        xquad.XquadConfig(scoring="mlqa", languages=["el", "th"])
    assert xquad.QaMiniConfig(languages=["el", "fr"]).scoring == "squad"  # SQuAD: any language


# ------------------------------------------------------------------------------------------
# Scoring by hand: SQuAD v1.1 vs MLQA's normalisation of the context language
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scoring", ["squad", "mlqa"])
@pytest.mark.parametrize("lang", ["en", "de", "zh"])
def test_score_by_hand(scoring: str, lang: str) -> None:
    rows = {"en": EN, "de": DE, "zh": ZH}[lang][:3]
    examples = [{"id": r[0], "answers": {"text": [r[3]]}} for r in rows]
    task = mini({}, scoring=scoring)
    scores, per = task.score(PREDS, examples, lang)
    assert per == pytest.approx(BY_HAND[scoring][lang])
    assert scores["f1"] == pytest.approx(100 * sum(BY_HAND[scoring][lang]) / 3)
    assert scores["exact_match"] == pytest.approx(100 * sum(EM_BY_HAND[scoring][lang]) / 3)


def test_mlqa_scoring_reads_a_subtagged_code_by_its_primary_language() -> None:
    task = mini({}, scoring="mlqa", languages=["de-DE", "zh-Hans-CN"])
    example = [{"id": "d1", "answers": {"text": ["Deutsche Bahn"]}}]
    assert task.score(PREDS, example, "de-DE")[1] == [1.0]  # German articles
    example = [{"id": "z1", "answers": {"text": ["北京"]}}]
    assert task.score(PREDS, example, "zh-Hans-CN")[1] == pytest.approx([2 / 3])  # characters


def test_mlqa_task_keeps_its_scores_and_may_use_squads() -> None:
    example = [{"id": "d1", "answers": {"text": ["Deutsche Bahn"]}}]
    assert mlqa.Mlqa.from_options({}).score(PREDS, example, "de")[1] == [1.0]
    squad = mlqa.Mlqa.from_options({"scoring": "squad"})
    assert squad.score(PREDS, example, "de")[1] == pytest.approx([0.8])


# ------------------------------------------------------------------------------------------
# test_files: which questions are read, errors, the reuse key
# ------------------------------------------------------------------------------------------


def test_a_file_replaces_its_language_and_test_limit_applies(data, files) -> None:
    task = mini(files)
    context = TaskContext(data_dir=data, show_progress=False)
    assert [e["id"] for e in task.test_data("de", context)] == ["d1", "d2", "d3"]
    assert [e["id"] for e in task.test_data("zh", context)] == ["z1", "z2", "z3"]
    assert [e["id"] for e in task.test_data("en", context)] == ["e1", "e2", "e3"]  # XQuAD
    assert task.test_file("en") is None
    everything = mini(files, test_limit=None).test_data("de", context)
    assert len(everything) == 4 and everything[3]["answers"]["text"] == ["Rom"]


def test_mlqa_task_reads_a_file_instead_of_mlqas(tmp_path, files) -> None:
    task = mlqa.Mlqa.from_options({"languages": ["de"], "test_files": {"de": files["de"]}})
    context = TaskContext(data_dir=tmp_path / "empty", show_progress=False)
    assert [e["id"] for e in task.test_data("de", context)] == ["d1", "d2", "d3", "d4"]


def test_missing_file_or_language_not_evaluated(data, files, tmp_path) -> None:
    context = TaskContext(data_dir=data, show_progress=False)
    task = mini({"de": str(tmp_path / "nope.json")})
    with pytest.raises(
        DataUnavailableError, match=r"^qa-mini: test_files.de: no such file: .*nope"
    ):
        task.test_data("de", context)
    task = mini({"vi": files["de"]})
    with pytest.raises(DataUnavailableError, match="qa-mini: test_files names vi, not among"):
        task.test_data("en", context)
    with pytest.raises(DataUnavailableError, match=r"--option qa-mini.languages=\[en,de,zh,vi\]"):
        task.test_data("en", context)
    # --languages picks among the task's languages: the files of the others are not read
    narrowed = TaskContext(data_dir=data, languages=["en"], show_progress=False)
    declared = mini(files).inputs(narrowed)
    assert Path(files["de"]) not in declared and Path(files["zh"]) not in declared
    assert mini({"de": str(tmp_path / "nope.json")}).test_file("en") is None
    assert Path(files["de"]) in mini(files).inputs(context)


BAD_JSON = '{"data": [\n  {"title": "x",\n   "paragraphs": [}\n]}\n'


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (BAD_JSON, ":3: not JSON"),  # the file's line
        (json.dumps({"data": [{"paragraphs": [{"context": "c"}]}]}), ": data[0].paragraphs[0]: "),
        (
            json.dumps(
                {
                    "data": [
                        {
                            "paragraphs": [
                                {
                                    "context": "Anna lebt in Bonn.",
                                    "qas": [
                                        {
                                            "id": "x",
                                            "question": "Wo?",
                                            "answers": [{"text": "Bonn", "answer_start": 0}],
                                        }
                                    ],
                                }
                            ]
                        }
                    ]
                }
            ),
            ": data[0].paragraphs[0].qas[0] (id x): answer 'Bonn' does not match",
        ),
        ("", ":1: not JSON"),
        (  # a question that the tokenizer would choke on after training
            json.dumps(
                {"data": [{"paragraphs": [{"context": "c", "qas": [{"id": "x"}]}]}]}
            ).replace('"id": "x"', '"id": "x", "question": null, "answers": []'),
            ": data[0].paragraphs[0].qas[0]: not SQuAD v1.1 JSON (question None is not a string",
        ),
    ],
)
def test_bad_file_names_the_option_file_and_place(data, tmp_path, text, where) -> None:
    bad = tmp_path / "mine-de.json"
    bad.write_text(text, encoding="utf-8")
    # the key as written serves the subtagged code, and the message names the key
    task = mini({"de": str(bad)}, languages=["en", "de-DE"])
    context = TaskContext(data_dir=data, show_progress=False)
    with pytest.raises(QaTestFileError) as info:
        task.test_data("de-DE", context)
    assert str(info.value).startswith(f"qa-mini: test_files.de: {bad}{where}")
    assert isinstance(info.value, XalignError) and isinstance(info.value, ValueError)


def test_bad_file_fails_before_the_model_loads(data, tmp_path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(BAD_JSON, encoding="utf-8")
    context = TaskContext(data_dir=data, show_progress=False)
    with pytest.raises(QaTestFileError, match="test_files.de"):
        mini({"de": str(bad)}, languages=["de"]).run("no-such-model-is-loaded", context)
    with pytest.raises(ValueError, match="^qa-mini: scoring mlqa has no language el"):
        mini({}, scoring="mlqa", languages=["en"]).run(
            "no-such-model-is-loaded", TaskContext(data_dir=data, languages=["el"])
        )


class _Entry:
    def where(self) -> str:
        return "task 'qa-mini' (plugin 'xquad')"


def test_test_files_enter_the_reuse_key(data, files) -> None:
    task = mini(files)
    context = TaskContext(data_dir=data, show_progress=False)
    declared = task.inputs(context)
    assert Path(files["de"]) in declared and Path(files["zh"]) in declared
    assert data / "xquad" / "xquad.en.json" in declared

    def key() -> str:
        inputs = task_inputs(task, _Entry(), context)
        return eval_key("model", "qa-mini", xquad.QaMini.options(), 0, inputs=inputs)

    before = key()
    assert key() == before  # unchanged files, same key
    squad_file(Path(files["de"]), DE[:2])  # the user edits their test file
    assert key() != before


# ------------------------------------------------------------------------------------------
# End to end on the tiny model: train on TyDiQA-GoldP en, test the files, score by hand
# ------------------------------------------------------------------------------------------


@pytest.fixture
def fixed_answers(monkeypatch):
    """Replace span decoding by the answers of :data:`PREDS` (what is scored is then known)."""

    def decode(examples, windows, logits, **_):
        return {e["id"]: PREDS.get(e["id"], "") for e in examples}

    monkeypatch.setattr(qaf, "decode_answers", decode)


@pytest.mark.parametrize("scoring", ["squad", "mlqa"])
def test_qa_mini_on_mlqa_files_end_to_end(tiny_model, data, files, fixed_answers, scoring):
    task = mini(files, scoring=scoring)
    result = task.run(str(tiny_model), TaskContext(data_dir=data, show_progress=False))
    for lang in ("en", "de", "zh"):
        assert result.per_example[lang] == pytest.approx(BY_HAND[scoring][lang])
        em = 100 * sum(EM_BY_HAND[scoring][lang]) / 3
        assert result.scores[lang]["exact_match"] == pytest.approx(em)
    meta = result.meta
    assert meta["n_train"] == 8 and meta["n_test"] == {"en": 3, "de": 3, "zh": 3}
    assert meta["scoring"] == scoring and meta["metric"].startswith(qaf.QA_SCORINGS[scoring])
    assert meta["test_files"] == files  # en read XQuAD: not listed


def test_meta_names_a_relative_test_file_by_its_absolute_path(
    tiny_model, data, files, fixed_answers, monkeypatch
) -> None:
    """test_files are relative to the working directory; the stored result names the file."""
    folder = Path(files["de"]).parent
    monkeypatch.chdir(folder)
    task = mini({"de": "test-context-de-question-de.json"}, languages=["en", "de"])
    result = task.run(str(tiny_model), TaskContext(data_dir=data, show_progress=False))
    assert result.meta["test_files"] == {"de": str(folder.absolute() / Path(files["de"]).name)}
    assert result.per_example["de"] == pytest.approx(BY_HAND["squad"]["de"])


def test_qa_mini_on_a_shared_tydiqa_file_mlqa_scored(tiny_model, shared_data, monkeypatch):
    """Real data: qa-mini trained on the shared TyDiQA-GoldP English train, tested on the
    shared Arabic TyDiQA-GoldP dev file through ``test_files``, scored by MLQA's Arabic rules
    (the answers the model gives are captured and scored again here)."""
    arabic = shared_data / "tydiqa" / "tydiqa.goldp.ar.dev.json"
    answers: dict[str, str] = {}
    decode = qaf.decode_answers

    def spy(*args, **kwargs):
        answers.update(decode(*args, **kwargs))
        return answers

    monkeypatch.setattr(qaf, "decode_answers", spy)
    task = mini({"ar": str(arabic)}, languages=["ar"], scoring="mlqa", train_limit=16)
    context = TaskContext(data_dir=shared_data, show_progress=False)
    result = task.run(str(tiny_model), context)
    golds = xalign.read_squad_json(arabic, limit=3)
    expected = [xalign.mlqa_f1(answers[e["id"]], e["answers"]["text"], "ar") for e in golds]
    assert result.per_example["ar"] == pytest.approx(expected)
    assert result.meta["n_test"] == {"ar": 3} and result.meta["test_files"] == {"ar": str(arabic)}
    assert arabic in task.inputs(context)


def test_the_documented_cli_command_and_its_reuse(tiny_model, data, files, tracking_uri):
    """``xalign eval ... --option qa-mini.test_files.de=FILE --option qa-mini.scoring=mlqa``
    (docs/usage.md): run again, it is reused; edit the file, it is evaluated anew."""
    from typer.testing import CliRunner

    from xalign.cli import app

    opts = {**TINY, "languages": "[en,de]", "scoring": "mlqa", "test_files.de": files["de"]}
    args = [a for k, v in opts.items() for a in ("--option", f"qa-mini.{k}={v}")]
    command = ["eval", str(tiny_model), "--task", "qa-mini", "--data-dir", str(data)]
    command += ["--tracking-uri", tracking_uri, "--json", *args]

    def run() -> dict:
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 0, result.output + repr(result.exception)
        [record] = json.loads(result.stdout)["runs"]
        assert record["task"] == "qa-mini" and set(record["scores"]) == {"en", "de"}
        return record

    first, again = run(), run()
    assert not first["reused"] and again["reused"] and again["eval_key"] == first["eval_key"]
    squad_file(Path(files["de"]), DE[1:])  # the user edits their test file
    edited = run()
    assert not edited["reused"] and edited["eval_key"] != first["eval_key"]
