"""Config files that YAML could make endless or huge are refused quickly with FILE:LINE; any
text or bytes in a config file raise only xalign's own errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xalign.config import MAX_EXTENDS, MAX_YAML_DEPTH, MAX_YAML_VALUES, load_config
from xalign.errors import ConfigError, XalignError


def write(folder: Path, text: str | bytes, name: str = "c.yaml") -> Path:
    path = folder / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def refused(path: Path | None = None, overrides: tuple[str, ...] = ()) -> str:
    with pytest.raises(ConfigError) as exc:
        load_config(path, overrides)
    message = str(exc.value)
    assert len(message) < 2000, len(message)  # was a 30 MB line
    return message


def bomb(levels: int, width: int = 9) -> str:
    """The "billion laughs": level k is a list of ``width`` aliases of level k-1, so the last
    one expands to width**levels strings."""
    lines = ["a0: &a0 [" + ",".join(["lol"] * width) + "]"]
    for k in range(1, levels):
        lines.append(f"a{k}: &a{k} [" + ",".join([f"*a{k - 1}"] * width) + "]")
    return "\n".join(lines) + f"\ntrain: {{epochs: *a{levels - 1}}}\n"


def test_the_billion_laughs_is_refused_at_the_line_that_expands_too_far(tmp_path):
    text = bomb(9)
    assert len(text.encode()) < 450
    message = refused(write(tmp_path, text))
    # 9**4 = 6,561 values (+ lists) on line 4 stay under the limit; 9**5 on line 5 do not
    assert 9**4 + 9**3 + 9**2 + 9 + 1 < MAX_YAML_VALUES < 9**5
    assert message.startswith(f"{tmp_path / 'c.yaml'}:5: this value expands to more than")


def test_a_config_of_many_values_below_the_limit_still_loads(tmp_path):
    """Aliases themselves are fine: 9**4 = 6,561 strings under an unknown objective option."""
    lines = bomb(4).splitlines()[:-1]  # a0..a3, as options of an objective plugin "x"
    text = "objectives:\n  sinkhorn: {}\n  x:\n" + "".join(f"    {line}\n" for line in lines)
    cfg = load_config(write(tmp_path, text + "    y: *a3\n"))
    assert len(cfg.objectives["x"]["y"]) == 9 and len(cfg.objectives["x"]["y"][0][0][0]) == 9


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("train: {epochs: &a [*a]}\n", 1),
        ("train:\n  epochs: &a\n    - 1\n    - *a\n", 2),
        ("data:\n  corpus: &m {x: *m}\n", 2),
        ("model:\n  name: x\nobjectives: &o\n  sinkhorn: {blur: *o}\n", 3),
        ("&top {train: *top}\n", 1),
        ("a: &a\n  <<: *a\n", 1),
    ],
)
def test_a_config_that_contains_itself_is_refused(tmp_path, text, line):
    message = refused(write(tmp_path, text))
    assert re.match(
        rf"{re.escape(str(tmp_path / 'c.yaml'))}:{line}: this value contains itself", message
    ), message


@pytest.mark.parametrize("depth", [MAX_YAML_DEPTH + 1, 400, 5000])
def test_values_nested_too_deeply_are_refused(tmp_path, depth):
    text = "train:\n  epochs: " + "[" * depth + "]" * depth + "\n"
    message = refused(write(tmp_path, text))
    assert re.match(
        rf"{re.escape(str(tmp_path / 'c.yaml'))}:2: values nested more than", message
    ), message


def test_an_extended_file_is_checked_too_and_long_chains_are_refused(tmp_path):
    write(tmp_path, bomb(9), "base.yaml")
    message = refused(write(tmp_path, "extends: base.yaml\ntrain: {lr: 0.1}\n"))
    assert message.startswith(f"{tmp_path / 'base.yaml'}:5: this value expands")
    for i in range(MAX_EXTENDS + 1):
        write(tmp_path, f"extends: c{i + 1}.yaml\n", f"c{i}.yaml")
    write(tmp_path, "train: {lr: 0.1}\n", f"c{MAX_EXTENDS + 1}.yaml")
    assert "'extends' chain longer than" in refused(tmp_path / "c0.yaml")
    write(tmp_path, "train: {lr: 0.1}\n", f"c{MAX_EXTENDS - 1}.yaml")  # a chain at the limit
    assert load_config(tmp_path / "c0.yaml").train.lr == 0.1


def test_set_values_are_checked_too():
    message = refused(None, ("train.epochs=&a [*a]",))
    assert message.startswith("override 'train.epochs=&a [*a]': this value contains itself")
    flow = "[&a0 [" + ",".join(["x"] * 9) + "]"
    flow += "".join(f", &a{k} [" + ",".join([f"*a{k - 1}"] * 9) + "]" for k in range(1, 7)) + "]"
    message = refused(None, (f"objectives.x.y={flow}",))
    assert message.startswith("override 'objectives.x.y=[&a0 [x,"), message
    assert "expands to more than" in message


def test_a_huge_value_is_quoted_short_in_errors(tmp_path):
    """A value under the limit that is still wrong: the error quotes its start, not all of it."""
    message = refused(write(tmp_path, bomb(4)))  # epochs: 6,561 strings
    assert "train.epochs" in message and "chars)" in message


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("train:\n  lr: !!float abc\n", 2),
        ("train:\n  seed: !!int 0x\n", 2),
        ("tracking:\n  run_name: !!timestamp 2020-13-45\n", 2),
        ("train:\n  epochs: !!binary '%%%'\n", 2),
        ("train:\n  epochs: 1\n  lr: [\n", 4),
        ("x: !!python/object:os.system {}\n", 1),
        ("train:\n\n  lr: 1\n\x00\n", 4),
    ],
)
def test_values_no_tag_can_build_are_yaml_errors_with_their_line(tmp_path, text, line):
    message = refused(write(tmp_path, text))
    assert message.startswith(f"{tmp_path / 'c.yaml'}:{line}: "), message
    assert "invalid YAML" in message or "expected an integer" in message  # !!binary: bytes


def test_bytes_that_are_not_utf8_name_their_line(tmp_path):
    message = refused(write(tmp_path, b"train:\n  lr: 1\n  run_name: caf\xe9\n"))
    assert message.startswith(f"{tmp_path / 'c.yaml'}:3: not UTF-8 text (byte 0xe9)")


def test_a_top_level_that_is_not_a_mapping_names_its_line(tmp_path):
    message = refused(write(tmp_path, "# a comment\n\n- train\n"))
    assert message.startswith(f"{tmp_path / 'c.yaml'}:3: top level must be a mapping")


# ------------------------------------------------------------------------------- fuzzing
YAMLISH = st.text(
    alphabet=st.sampled_from(list("ab01.-_ :,[]{}&*!|>'\"#%@`?\n\t\\"))
    | st.characters(exclude_categories=("Cs",)),
    max_size=120,
)
SECTIONS = st.sampled_from(["model", "data", "train", "tracking", "objectives", "extends", "x"])
KEYS = st.sampled_from(["name", "lr", "epochs", "languages", "uri", "sinkhorn", "blur", "<<"])


@st.composite
def config_like(draw) -> str:
    """Mappings of sections and keys with YAML-ish values: reach the type checks too."""
    lines = []
    for _ in range(draw(st.integers(1, 4))):
        lines.append(f"{draw(SECTIONS)}:")
        for _ in range(draw(st.integers(0, 3))):
            lines.append(f"  {draw(KEYS)}: {draw(YAMLISH).replace(chr(10), ' ')}")
    return "\n".join(lines) + "\n"


def check_only_xalign_errors(path: Path) -> None:
    try:
        load_config(path)
    except XalignError as exc:
        message = str(exc)
        at = rf"{re.escape(str(path))}:\d+[:,]"  # FILE:LINE (or FILE:LINE, FILE:LINE: ...)
        assert re.match(at, message) or re.search(rf"\n\s*{at}", message), message
        assert len(message) < 5000


FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@FUZZ
@given(text=YAMLISH | config_like())
def test_fuzz_config_text_raises_only_xalign_errors_with_file_line(tmp_path, text):
    check_only_xalign_errors(write(tmp_path, text))


@FUZZ
@given(data=st.binary(max_size=200))
def test_fuzz_config_bytes_raise_only_xalign_errors_with_file_line(tmp_path, data):
    check_only_xalign_errors(write(tmp_path, data))


def test_a_big_config_file_is_refused_before_parsing(tmp_path, monkeypatch):
    """A megabyte-sized config (one long string, or a wide list) is refused by its size,
    naming the file and its size, before the YAML parser sees it; parsing it took minutes."""
    from xalign.config import MAX_CONFIG_BYTES, Yaml12Loader

    def never_parsed(self, *args, **kwargs):
        raise AssertionError("the YAML parser read a file refused by its size")

    string = write(tmp_path, 'tracking:\n  run_name: "' + "x" * 20_000_000 + '"\n', "s.yaml")
    wide = write(tmp_path, "data:\n  languages: [" + "de, " * 2_000_000 + "de]\n", "w.yaml")
    with monkeypatch.context() as patch:
        patch.setattr(Yaml12Loader, "__init__", never_parsed)
        messages = [refused(path) for path in (string, wide)]
    for path, message in zip((string, wide), messages, strict=True):
        size = path.stat().st_size
        assert message.startswith(f"{path}: config file of {size:,} bytes"), message
        assert f"larger than {MAX_CONFIG_BYTES:,}" in message and "data.corpus" in message
    at_limit = write(tmp_path, "train: {lr: 0.1}\n#" + "x" * (MAX_CONFIG_BYTES - 19) + "\n")
    assert at_limit.stat().st_size == MAX_CONFIG_BYTES
    assert load_config(at_limit).train.lr == 0.1


def test_too_many_values_without_aliases_does_not_blame_aliases(tmp_path):
    items = ", ".join(["de"] * (MAX_YAML_VALUES + 1))
    message = refused(write(tmp_path, f"data:\n  languages: [{items}]\n"))
    block = "x:\n" + "- 1\n" * (MAX_YAML_VALUES + 20_000)  # under the file size cap
    at = int(refused(write(tmp_path, block, "b.yaml")).split(":")[1])
    # the line where the count ran out, not the list's (line 1): the rest was never parsed
    assert MAX_YAML_VALUES - 10 < at < MAX_YAML_VALUES + 10, at
    assert message.startswith(f"{tmp_path / 'c.yaml'}:2: this value holds more than"), message
    assert f"{MAX_YAML_VALUES:,} values" in message and "alias" not in message
    flow = "[&a0 [" + ",".join(["x"] * 9) + "]"
    flow += "".join(f", &a{k} [" + ",".join([f"*a{k - 1}"] * 9) + "]" for k in range(1, 7)) + "]"
    assert "aliases '*NAME'" in refused(None, (f"objectives.x.y={flow}",))


def test_set_errors_quote_at_most_200_chars_of_the_override():
    deep = "data.languages=" + "[" * 50_000 + "]" * 50_000
    message = refused(None, (deep,))
    assert message.startswith("override 'data.languages=[[[["), message
    assert "nested more than" in message and f"({len(deep):,} chars)" in message
    assert len(message) < 400, len(message)
    for item in ("x" * 5000, "=" + "1" * 5000, "a.." + "b" * 5000 + "=1"):
        message = refused(None, (item,))
        assert len(message) < 600 and "chars)" in message, message
    bad_yaml = "train.lr=" + "[" + "1," * 3000
    message = refused(None, (bad_yaml,))
    assert "cannot parse value" in message and len(message) < 1200, message
    wrong_type = "train.lr=" + "x" * 5000  # a later check names the override too
    message = refused(None, (wrong_type,))
    assert "train.lr" in message and len(message) < 800, message


def test_an_extends_chain_is_counted_as_one_config(tmp_path):
    """Ten files of 90,000 values each (every one under the limits) were parsed for 44 s and
    refused only by the config checks: the chain's values count together."""
    per_file = MAX_YAML_VALUES * 2 // 5  # three files pass the limit, two do not
    for k in range(3):
        parent = f"extends: c{k + 1}.yaml\n" if k < 2 else ""
        write(tmp_path, f"{parent}x{k}:\n" + "- 1\n" * per_file, f"c{k}.yaml")
    message = refused(tmp_path / "c0.yaml")
    assert message.startswith(f"{tmp_path / 'c2.yaml'}:"), message
    assert f"the files of this extends chain hold more than {MAX_YAML_VALUES:,} values" in message
    (tmp_path / "c1.yaml").write_text("x1: 1\n")  # two files: under the limit, read as usual
    with pytest.raises(ConfigError, match="x0"):  # refused later, by the config checks
        load_config(tmp_path / "c0.yaml")


def test_an_unknown_section_set_by_many_overrides_is_named_briefly():
    """12,000 --set extra.kN=... printed a 469 KB error line naming every override."""
    overrides = tuple(f"extra.k{n}=[1, 2]" for n in range(2000))
    message = refused(None, overrides)
    assert "unknown section 'extra'" in message and "(+1997 more)" in message, message[:300]
