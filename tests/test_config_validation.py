"""Config values are checked against their declared types and ranges when the config loads,
with the dotted key and the file:line or override in the message (issue 9.4)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xalign.config import ConfigError, RunConfig, load_config, parse_override
from xalign.errors import XalignError
from xalign.objective import build_dataclass
from xalign.plugins import get_registry
from xalign.schema import check_value


def write(tmp_path: Path, text: str, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(*args: Any, **kwargs: Any) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(*args, **kwargs)
    return str(info.value)


# -- YAML 1.2: yes/no/on/off are strings -----------------------------------------------------
def test_norwegian_and_mixed_precision_no_load_as_strings(tmp_path):
    """Before: `no` was False under YAML 1.1 -> a 64-line traceback."""
    cfg = load_config(
        write(tmp_path, "data:\n  languages: [no, de, nb]\ntrain:\n  mixed_precision: no\n")
    )
    assert cfg.data.languages == ["no", "de", "nb"]
    assert cfg.train.mixed_precision == "no"


@pytest.mark.parametrize("word", ["no", "No", "NO", "yes", "on", "off", "y", "n", "Off"])
def test_yaml11_bool_words_stay_strings_in_string_and_list_fields(tmp_path, word):
    cfg = load_config(write(tmp_path, f"data:\n  target: {word}\n  languages: [{word}]\n"))
    assert cfg.data.target == word and cfg.data.languages == [word]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("no", False),
        ("off", False),
        ("n", False),
        ("false", False),
        ("False", False),
        ("yes", True),
        ("on", True),
        ("Y", True),
        ("true", True),
        ("TRUE", True),
    ],
)
def test_bool_fields_take_yaml11_words(tmp_path, text, expected):
    cfg = load_config(write(tmp_path, f"train:\n  dropout: {text}\n  save_model: {text}\n"))
    assert cfg.train.dropout is expected and cfg.train.save_model is expected
    assert load_config(None, [f"train.dropout={text}"]).train.dropout is expected


@pytest.mark.parametrize(
    "text, shown",
    [("maybe", "'maybe'"), ("1", "1"), ("0", "0"), ("[true]", "[true]"), ("null", "null")],
)
def test_bool_field_with_a_non_boolean_names_key_and_line(tmp_path, text, shown):
    path = write(tmp_path, f"# comment\ntrain:\n  lr: 1.0e-4\n  dropout: {text}\n")
    assert error_of(path) == (f"{path}:4: train.dropout: expected true or false, got {shown}")


def test_boolean_for_a_string_says_to_quote_it(tmp_path):
    path = write(tmp_path, "data:\n  languages: [de, true]\n")
    message = error_of(path)
    assert message.startswith(f"{path}:2: data.languages[1]: expected a string, got true")
    assert "quote the word" in message
    path = write(tmp_path, "tracking:\n  run_name: false\n")
    assert error_of(path).startswith(
        f"{path}:2: tracking.run_name: expected a string or null, "
        "got false (a YAML boolean: quote the word"
    )


@pytest.mark.parametrize(
    "text, value",
    [
        ("5e-5", 5e-5),
        ("5.0e-5", 5e-5),
        ("1E3", 1000.0),
        (".5", 0.5),
        ("+2.", 2.0),
        ("3", 3.0),
    ],
)
def test_yaml12_floats_in_files(tmp_path, text, value):
    cfg = load_config(write(tmp_path, f"train:\n  lr: {text}\n"))
    assert cfg.train.lr == pytest.approx(value) and isinstance(cfg.train.lr, float)


def test_yaml12_ints_dates_and_sexagesimals(tmp_path):
    cfg = load_config(
        write(
            tmp_path,
            "train:\n  seed: 010\n  warmup_steps: 0x10\n"
            "  max_steps: 0o17\ntracking:\n  run_name: 2024-01-02\n"
            "  experiment: 1:30\n",
        )
    )
    assert (cfg.train.seed, cfg.train.warmup_steps, cfg.train.max_steps) == (10, 16, 15)
    assert cfg.tracking.run_name == "2024-01-02" and cfg.tracking.experiment == "1:30"


def test_duplicate_key_is_an_error_with_both_lines(tmp_path):
    path = write(tmp_path, "train:\n  lr: 1.0e-4\n  batch_size: 8\n  lr: 2.0e-4\n")
    message = error_of(path)
    assert message.startswith(f"{path}:4: invalid YAML")
    assert "duplicate key 'lr' (first at line 2)" in message and "line 4" in message


# -- types: file:line or override, dotted key ------------------------------------------------
@pytest.mark.parametrize(
    "override, expected",
    [
        ("train.lr=abc", "--set train.lr=abc: train.lr: expected a number, got 'abc'"),
        (
            "train.batch_size=2.5",
            "--set train.batch_size=2.5: train.batch_size: expected an "
            "integer, got 2.5 (not a whole number)",
        ),
        (
            "train.batch_size=eight",
            "--set train.batch_size=eight: train.batch_size: expected an integer, got 'eight'",
        ),
        (
            "train.epochs=true",
            "--set train.epochs=true: train.epochs: expected an integer, got true",
        ),
        (
            "data.limit=[3]",
            "--set data.limit=[3]: data.limit: expected an integer or null, got [3]",
        ),
        (
            "train.max_grad_norm=big",
            "--set train.max_grad_norm=big: train.max_grad_norm: expected "
            "a number or null, got 'big'",
        ),
        (
            "train.betas=[0.9, x]",
            "--set train.betas=[0.9, x]: train.betas[1]: expected a number, got 'x'",
        ),
        (
            "model=bert",
            "--set model=bert: model: expected a mapping of options (key: value), got 'bert'",
        ),
    ],
)
def test_bad_override_types_name_the_override_and_key(override, expected):
    assert error_of(None, [override]) == expected


def test_bad_types_in_a_file_name_file_line_and_key(tmp_path):
    path = write(
        tmp_path, "model:\n  name: packaged:multilingual-e5-small\ntrain:\n  batch_size: 2.5\n"
    )
    assert error_of(path) == (
        f"{path}:4: train.batch_size: expected an integer, got 2.5 (not a whole number)"
    )
    path = write(tmp_path, "data: {languages: [de], min_words: '1 word'}\n")
    assert error_of(path) == f"{path}:1: data.min_words: expected an integer, got '1 word'"


def test_the_override_not_the_file_is_named_when_it_set_the_value(tmp_path):
    path = write(tmp_path, "train:\n  lr: 1.0e-4\n")
    assert error_of(path, ["train.lr=abc"]).startswith("--set train.lr=abc: train.lr:")
    assert error_of(path, ["train={lr: abc}"]).startswith("--set train={lr: abc}: train.lr:")


def test_errors_in_an_extended_file_name_that_file(tmp_path):
    write(tmp_path, "data:\n  languages: [de]\n  max_words: lots\n", "base.yaml")
    child = write(tmp_path, "extends: base.yaml\ntrain:\n  lr: 1.0e-4\n", "child.yaml")
    assert error_of(child) == (
        f"{tmp_path / 'base.yaml'}:3: data.max_words: expected an integer, got 'lots'"
    )
    child.write_text("extends: base.yaml\ndata:\n  max_words: 10\n  min_words: 0\n")
    assert error_of(child) == f"{child}:4: data.min_words: must be >= 1, got 0"


@pytest.mark.parametrize(
    "override, expected",
    [
        ("train.batch_size=2.0", 2),
        ("train.batch_size=16", 16),
        ("train.batch_size=1e1", 10),
        ("train.batch_size='12'", 12),
    ],
)
def test_integral_values_are_ints(override, expected):
    value = load_config(None, [override]).train.batch_size
    assert value == expected and type(value) is int


@pytest.mark.parametrize(
    "override, expected",
    [
        ("data.languages=de", ["de"]),  # before: ['d', 'e']
        ("data.languages=de,fr", ["de", "fr"]),
        ("data.languages= de , fr ,el", ["de", "fr", "el"]),
        ("data.languages=no", ["no"]),
        ("data.languages=[no, sv]", ["no", "sv"]),
        ("data.languages=ar,zh,हि", ["ar", "zh", "हि"]),
    ],
)
def test_comma_separated_strings_become_lists(override, expected):
    assert load_config(None, [override]).data.languages == expected


def test_list_of_floats_from_a_comma_string():
    assert load_config(None, ["train.betas=0.8,0.99"]).train.betas == [0.8, 0.99]


@pytest.mark.parametrize(
    "override, attr, expected",
    [
        ("tracking.run_name=2024", ("tracking", "run_name"), "2024"),
        ("model.revision=0123", ("model", "revision"), "0123"),  # the text, not the int 123
        ("train.output_dir=1e3", ("train", "output_dir"), "1e3"),
        ("tracking.run_name=true", ("tracking", "run_name"), "true"),
    ],
)
def test_string_options_given_numbers_on_the_command_line_keep_the_text(override, attr, expected):
    cfg = load_config(None, [override])
    assert getattr(getattr(cfg, attr[0]), attr[1]) == expected


# -- ranges ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "override, message",
    [
        ("train.batch_size=0", "train.batch_size: must be >= 1, got 0"),
        ("train.batch_size=-3", "train.batch_size: must be >= 1, got -3"),
        ("train.grad_accum=0", "train.grad_accum: must be >= 1, got 0"),
        ("train.lr=0", "train.lr: must be a finite number > 0, got 0.0"),
        ("train.lr=-1e-4", "train.lr: must be a finite number > 0, got -0.0001"),
        ("train.lr=.nan", "train.lr: must be a finite number > 0, got nan"),
        ("train.epochs=0", "train.epochs: must be >= 1, got 0"),
        ("train.max_steps=0", "train.max_steps: must be null or >= 1, got 0"),
        ("train.warmup_steps=-1", "train.warmup_steps: must be >= 0, got -1"),
        ("train.weight_decay=-0.1", "train.weight_decay: must be a finite number >= 0, got -0.1"),
        ("train.eps=0", "train.eps: must be a finite number > 0, got 0.0"),
        ("train.betas=[0.9]", "train.betas: must be two numbers in [0, 1)"),
        ("train.betas=[0.9, 1.0]", "train.betas: must be two numbers in [0, 1)"),
        ("train.seed=-1", "train.seed: must be in [0, 2**32), got -1"),
        ("train.reg_weight=-1", "train.reg_weight: must be a finite number >= 0, got -1.0"),
        ("train.max_grad_norm=-1", "train.max_grad_norm: must be null or >= 0"),
        ("train.keep_checkpoints=-1", "train.keep_checkpoints: must be >= 0 (0: keep all), got -1"),
        ("train.optimizer=rmsprop", "train.optimizer: must be adam, adamw or sgd, got 'rmsprop'"),
        (
            "train.mixed_precision=fp16",
            "train.mixed_precision: must be no or bf16 (fp16 is not supported",
        ),
        ("model.pooling=max", "model.pooling: must be last, first or mean, got 'max'"),
        ("model.max_length=2", "model.max_length: must be >= 3"),
        ("data.min_words=0", "data.min_words: must be >= 1, got 0"),
        ("data.languages=[]", "data.languages: must list at least one source language, got []"),
        ("data.languages=de,fr,de", "data.languages: must not repeat a language"),
        ("data.max_ratio=0.5", "data.max_ratio: must be null or >= 1"),
        ("data.limit=0", "data.limit: must be null or >= 1, got 0"),
        ("data.pairs_per_language=0", "data.pairs_per_language: must be null or >= 1, got 0"),
        ("data.target=' '", "data.target: must not be empty"),
        ("tracking.experiment=''", "tracking.experiment: must not be empty"),
    ],
)
def test_range_rules_name_key_and_override(override, message):
    assert error_of(None, [override]).startswith(f"--set {override}: {message}")


def test_max_words_below_min_words_names_both(tmp_path):
    path = write(tmp_path, "data:\n  min_words: 5\n")
    assert error_of(path, ["data.max_words=3"]) == (
        f"--set data.max_words=3: data.max_words: must be >= data.min_words (5, from "
        f"{path}:2), got 3"
    )


def test_valid_edge_values_pass():
    cfg = load_config(
        None,
        [
            "train.max_grad_norm=0",
            "train.max_grad_norm=null",
            "train.keep_checkpoints=0",
            "train.checkpoint_every=0",
            "data.min_words=3",
            "data.max_words=3",
            "train.reg_weight=0",
            "data.max_ratio=1",
            "train.seed=4294967295",
        ],
    )
    assert cfg.train.max_grad_norm is None and cfg.data.max_words == cfg.data.min_words == 3


# -- sections, objectives, unknown keys ------------------------------------------------------
def test_unknown_keys_suggest_the_close_one(tmp_path):
    assert error_of(None, ["train.lrr=1"]).startswith(
        "--set train.lrr=1: train.lrr: unknown option 'lrr' (did you mean 'lr'?); known: "
    )
    assert error_of(None, ["trian.lr=1"]).startswith(
        "--set trian.lr=1: unknown section 'trian' (did you mean 'train'?)"
    )
    path = write(tmp_path, "data:\n  langauges: [de]\n")
    assert error_of(path).startswith(
        f"{path}:2: data.langauges: unknown option 'langauges' (did you mean 'languages'?)"
    )


def test_every_problem_of_a_file_is_reported_at_once_with_its_line(tmp_path):
    """Unknown sections and keys, bad types, in several sections and objectives: one error
    lists each with its own file:line, so a config is fixed in one pass."""
    path = write(
        tmp_path,
        "trian: {}\n"  # 1
        "model:\n"
        "  max_lenght: 64\n"  # 3
        "data:\n"
        "  limit: many\n"  # 5
        "train:\n"
        "  lr: fast\n"  # 7
        "  batchsize: 3\n"  # 8
        "objectives:\n"
        "  sinkhorn: {blur: big}\n"  # 10
        "  l2: {weight: -1}\n",  # 11
    )
    lines = error_of(path).splitlines()
    assert lines[0] == "7 problems:"
    assert [ln.split(": ")[0].strip() for ln in lines[1:]] == [
        f"{path}:{n}" for n in (1, 3, 5, 7, 8, 10, 11)
    ]
    assert "unknown section 'trian'" in lines[1] and "'max_length'" in lines[2]
    assert "data.limit: expected" in lines[3] and "train.lr: expected" in lines[4]
    assert "did you mean 'batch_size'" in lines[5] and "objectives.sinkhorn.blur" in lines[6]
    assert "objectives.l2.weight" in lines[7]
    # both objectives' options are named, with or without section problems beside them
    fixed = write(tmp_path, "objectives:\n  sinkhorn: {blur: big}\n  l2: {layerz: 3}\n", "b.yaml")
    lines = error_of(fixed).splitlines()
    assert lines[0] == "2 problems:"
    assert f"{fixed}:2: objectives.sinkhorn.blur" in lines[1]
    assert f"{fixed}:3: objectives.l2.layerz: unknown option" in lines[2]
    both = write(
        tmp_path,
        "train:\n  lr: fast\nobjectives:\n  sinkhorn: {scalng: 0.9}\n  l2: {weight: x}\n",
        "c.yaml",
    )
    lines = error_of(both).splitlines()
    assert lines[0] == "3 problems:"
    assert [ln.split(": ")[0].strip() for ln in lines[1:]] == [f"{both}:{n}" for n in (2, 4, 5)]
    assert "did you mean 'scaling'" in lines[2] and "objectives.l2.weight" in lines[3]
    # an override's objective option is reported beside a file's section problem
    lines = error_of(both, ["objectives.l2.weight=1", "objectives.sinkhorn.blurr=1"]).splitlines()
    assert lines[0] == "3 problems:" and "--set objectives.sinkhorn.blurr=1" in lines[-1]


def test_every_range_problem_is_reported_at_once_naming_its_override():
    lines = error_of(
        None,
        ["train.lr=-1", "train.epochs=0", "data.languages=[]", "data.min_words=0", "trian.x=1"],
    ).splitlines()
    assert lines[0] == "5 problems:"
    assert sorted(ln.strip().split(": ")[0] for ln in lines[1:]) == sorted(
        [
            "--set train.lr=-1",
            "--set train.epochs=0",
            "--set data.languages=[]",
            "--set data.min_words=0",
            "--set trian.x=1",
        ]
    )
    assert sum("data.languages" in ln for ln in lines) == 1  # one problem per key


def test_one_problem_is_one_line():
    assert "\n" not in error_of(None, ["train.lr=-1"])


@pytest.mark.parametrize(
    "override, expected",
    [
        (
            "objectives.sinkhorn.blur=abc",
            "--set objectives.sinkhorn.blur=abc: "
            "objectives.sinkhorn.blur: expected a number, got 'abc'",
        ),
        (
            "objectives.sinkhorn.p=2.5",
            "--set objectives.sinkhorn.p=2.5: objectives.sinkhorn.p: "
            "expected an integer, got 2.5 (not a whole number)",
        ),
        (
            "objectives.sinkhorn.debias=maybe",
            "--set objectives.sinkhorn.debias=maybe: "
            "objectives.sinkhorn.debias: expected true or false",
        ),
        (
            "objectives.sinkhorn.blurr=0.1",
            "--set objectives.sinkhorn.blurr=0.1: "
            "objectives.sinkhorn.blurr: unknown option 'blurr' "
            "(did you mean 'blur'?)",
        ),
        (
            "objectives.sinkhorn.level=char",
            "--set objectives.sinkhorn.level=char: "
            "objectives.sinkhorn: sinkhorn: level must be one of ('word', 'subword'), got 'char'",
        ),
        (
            "objectives.sinkhorn.scope=sentense",
            "--set objectives.sinkhorn.scope=sentense: objectives.sinkhorn: sinkhorn: scope must "
            "be one of ('sentence', 'batch'), got 'sentense' (did you mean 'sentence'?)",
        ),
        (
            "objectives.sinkhorn.scaling=1.5",
            "--set objectives.sinkhorn.scaling=1.5: "
            "objectives.sinkhorn: sinkhorn: scaling must be in (0, 1), got 1.5",
        ),
        (
            "objectives.sinkhorn.blur=0",
            "--set objectives.sinkhorn.blur=0: "
            "objectives.sinkhorn: sinkhorn: blur must be > 0, got 0.0",
        ),
        (
            "objectives.sinkhorn.weight=x",
            "--set objectives.sinkhorn.weight=x: "
            "objectives.sinkhorn.weight: expected a number, got 'x'",
        ),
        (
            "objectives.sinkhorn.weight=-1",
            "--set objectives.sinkhorn.weight=-1: "
            "objectives.sinkhorn.weight: must be a finite number >= 0",
        ),
        (
            "objectives.l2.target=tuned2",
            "--set objectives.l2.target=tuned2: objectives.l2: l2: target must be frozen or tuned",
        ),
        (
            "objectives=[sinkhorn, 3]",
            "--set objectives=[sinkhorn, 3]: objectives: expected "
            "objective names, got ['sinkhorn', 3]",
        ),
        ("objectives={}", "--set objectives={}: objectives: expected a non-empty mapping"),
        (
            "objectives.sinkhorn=5",
            "--set objectives.sinkhorn=5: objectives.sinkhorn: expected a mapping of options",
        ),
    ],
)
def test_objective_options_are_checked_at_load(override, expected):
    assert error_of(None, [override]).startswith(expected)


def test_objective_option_errors_in_a_file_name_its_line(tmp_path):
    path = write(
        tmp_path,
        "objectives:\n  sinkhorn:\n    blur: 0.1\n    scope: batch\n    debias: sometimes\n",
    )
    assert error_of(path) == (
        f"{path}:5: objectives.sinkhorn.debias: expected true or false, got 'sometimes'"
    )


def test_objective_options_are_coerced_in_place():
    cfg = load_config(
        None,
        [
            "objectives.sinkhorn.p=2.0",
            "objectives.sinkhorn.debias=no",
            "objectives.sinkhorn.blur=1",
        ],
    )
    assert cfg.objectives["sinkhorn"] == {"p": 2, "debias": False, "blur": 1.0}
    assert (
        load_config(None, ["objectives.sinkhorn.blur=1"]).fingerprint()
        == load_config(None, ["objectives.sinkhorn.blur=1.0"]).fingerprint()
    )


def test_unknown_objective_names_are_left_to_the_registry_lookup():
    cfg = load_config(None, objectives=["sinkhorn:2", "not_installed"])
    assert cfg.objective_weights() == {"sinkhorn": 2.0, "not_installed": 1.0}


@pytest.mark.parametrize(
    "flag, expected",
    [
        ("sinkhorn:abc", "--objective 'sinkhorn:abc': weight must be a number"),
        (":2", "--objective ':2': empty objective name (NAME or NAME:WEIGHT)"),
        (
            "sinkhorn:-2",
            "--objective sinkhorn:-2: objectives.sinkhorn.weight: must be a finite "
            "number >= 0, got -2.0",
        ),
    ],
)
def test_objective_flags(flag, expected):
    assert error_of(None, objectives=[flag]) == expected


def test_objectives_as_list_or_comma_string(tmp_path):
    assert set(load_config(write(tmp_path, "objectives: [sinkhorn, l2]\n")).objectives) == {
        "sinkhorn",
        "l2",
    }
    assert list(load_config(None, ["objectives=l2,sinkhorn"]).objectives) == ["l2", "sinkhorn"]


# -- task and objective option dataclasses through build_dataclass ---------------------------
@pytest.mark.parametrize(
    "task, options, expected",
    [
        (
            "xnli-mini",
            {"epochs": "two"},
            "task 'xnli-mini': epochs: expected an integer, got 'two'",
        ),
        (
            "xnli-mini",
            {"learning_rate": True},
            "task 'xnli-mini': learning_rate: expected a number, got true",
        ),
        ("tatoeba", {"limit": 2.5}, "task 'tatoeba': limit: expected an integer or null, got 2.5"),
        ("align", {"normalize": "perhaps"}, "task 'align': normalize: expected true or false"),
        ("xquad", {"languages": ["en", 7]}, "task 'xquad': languages[1]: expected a string, got 7"),
    ],
)
def test_task_options_are_typed(task, options, expected):
    with pytest.raises(ConfigError) as info:
        get_registry().task(task).cls.from_options(options)
    assert str(info.value).startswith(expected)


def test_task_list_options_take_comma_strings():
    task = get_registry().task("tatoeba").cls.from_options({"languages": "de,fr"})
    assert task.config.languages == ["de", "fr"]


@dataclass
class Everything:
    """One field per supported annotation (string annotations: `from __future__`)."""

    n: int = 1
    x: float = 0.5
    flag: bool = False
    word: str = "a"
    maybe: int | None = None
    words: list[str] = field(default_factory=list)
    numbers: list[float] = field(default_factory=list)
    anything: Any = None
    mode: Literal["fast", "slow"] = "fast"
    pair: tuple[int, int] = (0, 0)
    table: dict[str, float] = field(default_factory=dict)
    path: Path = Path(".")


def test_every_supported_annotation_coerces():
    built = build_dataclass(
        Everything,
        {
            "n": 3.0,
            "x": "2.5e-1",
            "flag": "Yes",
            "word": "no",
            "maybe": None,
            "words": "a, b",
            "numbers": [1, "2", 3.5],
            "anything": {"k": [1]},
            "mode": "slow",
            "pair": [1, 2.0],
            "table": {"a": 1},
            "path": "out/x",
        },
        where="test",
    )
    assert built == Everything(
        3,
        0.25,
        True,
        "no",
        None,
        ["a", "b"],
        [1.0, 2.0, 3.5],
        {"k": [1]},
        "slow",
        (1, 2),
        {"a": 1.0},
        Path("out/x"),
    )
    assert type(built.n) is int and type(built.numbers[0]) is float


@pytest.mark.parametrize(
    "values, expected",
    [
        ({"n": "x"}, "test: n: expected an integer, got 'x'"),
        ({"maybe": 1.5}, "test: maybe: expected an integer or null, got 1.5"),
        ({"mode": "medium"}, "test: mode: expected one of 'fast', 'slow', got 'medium'"),
        ({"pair": [1]}, "test: pair: expected a list of 2 integers, got [1] (1 items, need 2)"),
        ({"table": {"a": "b"}}, "test: table.a: expected a number, got 'b'"),
        ({"words": 5}, "test: words: expected a list of strings, got 5"),
        ({"path": 3}, "test: path: expected a path, got 3"),
        ({"word": 12}, 'test: word: expected a string, got 12 (a number: quote it, "12"'),
        ({"nope": 1, "n": 2}, "test: nope: unknown option 'nope'; known: anything, flag, maybe"),
    ],
)
def test_build_dataclass_errors(values, expected):
    with pytest.raises(ConfigError) as info:
        build_dataclass(Everything, values, where="test")
    assert str(info.value).startswith(expected)


def test_config_error_is_an_xalign_error_and_a_value_error():
    assert issubclass(ConfigError, XalignError) and issubclass(ConfigError, ValueError)


# -- properties ------------------------------------------------------------------------------
@given(st.integers(min_value=-(2**53), max_value=2**53))
def test_int_fields_take_ints_and_integral_floats(n):
    assert check_value(n, int, "k") == n
    assert check_value(float(n), int, "k") == n
    assert check_value(str(n), int, "k") == n


@given(st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer()))
def test_int_fields_reject_fractions(x):
    with pytest.raises(ConfigError, match="not a whole number"):
        check_value(x, int, "train.batch_size")


@given(st.floats(allow_nan=False))
def test_float_overrides_round_trip(x):
    """Any float written by repr() on the command line reads back as the same float."""
    keys, value = parse_override(f"train.lr={x!r}")
    assert check_value(value, float, "train.lr") == x or (math.isinf(x) and value == repr(x))


@given(
    st.lists(
        st.text(
            alphabet=st.characters(
                blacklist_characters=",", blacklist_categories=("Cs", "Zs", "Cc")
            ),
            min_size=1,
            max_size=5,
        ),
        min_size=1,
        max_size=6,
    )
)
def test_comma_strings_split_into_the_same_list(items):
    assert check_value(",".join(items), list[str], "data.languages") == [
        i.strip() for i in items if i.strip()
    ]


def test_defaults_load_unchanged():
    assert load_config(None).to_dict() == RunConfig().to_dict()


def test_objectives_that_cannot_share_a_run_fail_at_load(tmp_path):
    path = write(tmp_path, "objectives:\n  mixed_ot: {}\n  l2: {weight: 0.5}\n")
    assert error_of(path) == (
        f"{path}:1: objectives: mixed_ot need(s) one batch mixing all language pairs and cannot "
        "be combined with per-language-pair objectives (l2) in one run"
    )
    assert set(load_config(None, objectives=["sinkhorn", "l2:0.5"]).objectives) == {
        "sinkhorn",
        "l2",
    }


# -- data.corpus: one spec, or one entry per source language ---------------------------------
def test_corpus_mapping_missing_a_language_names_file_line_and_languages(tmp_path):
    text = "data:\n  corpus:\n    de: demo\n    fr: demo\n  languages: [de, el, fr]\n"
    message = error_of(write(tmp_path, text))
    assert message.startswith(f"{tmp_path / 'cfg.yaml'}:2: data.corpus: no corpus for source")
    assert "'el' (the mapping has: de, fr)" in message


def test_corpus_mapping_bad_entry_names_its_key(tmp_path):
    text = "data:\n  corpus:\n    de: {src: a.de}\n  languages: [de]\n"
    assert "data.corpus.de: a two-file entry needs exactly the keys 'src' and 'tgt'" in error_of(
        write(tmp_path, text)
    )


def test_corpus_mapping_of_two_file_entries_loads(tmp_path):
    text = (
        "data:\n  corpus:\n    de: {src: deu_Latn.devtest, tgt: eng_Latn.devtest}\n"
        "    fr: 'x/{src}-{tgt}.tsv'\n  languages: [de, fr]\n"
    )
    cfg = load_config(write(tmp_path, text))
    here = tmp_path.resolve()  # relative paths are read against the config's folder
    assert cfg.data.corpus == {
        "de": {"src": str(here / "deu_Latn.devtest"), "tgt": str(here / "eng_Latn.devtest")},
        "fr": str(here / "x/{src}-{tgt}.tsv"),
    }


def test_flores_config_reads_the_shared_flores_files():
    repo = Path(__file__).resolve().parents[1]
    flores = repo.parent / "shared" / "data" / "parallel" / "flores200_devtest"
    if not flores.is_dir():
        pytest.skip(f"shared data absent: {flores} (see SOURCES.md)")
    from xalign.data.corpus import language_spec, read_parallel

    cfg = load_config(repo / "configs" / "flores.yaml")
    assert cfg.data.languages == ["bg", "de", "el", "es", "fr"]
    english = (flores / "eng_Latn.devtest").read_text(encoding="utf-8").splitlines()
    for lang in cfg.data.languages:
        spec = language_spec(cfg.data.corpus, lang)
        pairs = read_parallel(spec, lang, "en")
        assert len(pairs) == len(english) == 1012
        assert [p.tgt for p in pairs[:3]] == [line.strip() for line in english[:3]]


@pytest.mark.parametrize("objective", ["sinkhorn", "l2", "contrastive"])
@pytest.mark.parametrize("typo", ["wieght", "weigth"])
def test_unknown_objective_option_lists_weight_and_suggests_it(objective, typo):
    """`weight` is valid for every objective: it is listed among the known options and a
    near-miss gets "did you mean 'weight'"."""
    from xalign.plugins import get_registry

    message = error_of(overrides=[f"objectives.{objective}.{typo}=2"], objectives=[objective])
    assert f"unknown option {typo!r} (did you mean 'weight'?); known: " in message
    known = message.split("known: ")[1].split("\n")[0].split(", ")
    options = get_registry().objective(objective).cls.options()
    assert known == sorted([*options, "weight"])
