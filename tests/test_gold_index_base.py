"""A gold file read with the other ``index_base`` is refused, naming the file and the option,
even when only a few links fall outside their sentence (a 1-based file read 0-based loses
only its links to the last word: 2.6 % on awesome-align's en-fr set)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from xalign.alignment import GoldAlignmentWarning, GoldFormatError, load_gold

N = 20  #: sentence pairs of 4 words; links 1-1 2-2 3-3 (0-based) in each
EXTRA = (3, 3)  #: one more link, to the last word, in sentence 0 only: 1 of 61 past the end


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _lines(base: int) -> list[str]:
    """Link lines (``base``-based) that never use word 0 and reach the last word once."""
    rows = [[(1, 1), (2, 2)] for _ in range(N)]
    rows[0].append(EXTRA)
    return [" ".join(f"{i + base}-{j + base}" for i, j in row) for row in rows]


def _set(tmp_path: Path, fmt: str, base: int) -> tuple[dict, Path]:
    """A ``fmt`` set written ``base``-based: load_gold keywords (without index_base) and the
    links file."""
    src, tgt = "a b c d", "w x y z"
    links = _lines(base)
    if fmt == "awesome":
        _write(tmp_path / "enfr.src-tgt", f"{src} ||| {tgt}\n" * N)
        gold = _write(tmp_path / "enfr.gold", "\n".join(links) + "\n")
        return {"name_or_path": tmp_path / "enfr.src-tgt"}, gold
    if fmt == "xlwa":
        tsv = _write(tmp_path / "es" / "test.tsv", "".join(f"{src}\t{tgt}\t{k}\n" for k in links))
        return {"name_or_path": tsv}, tsv
    if fmt == "bicici":
        folder = tmp_path / "deen"
        _write(folder / "test.de", f"{src}\n" * N)
        _write(folder / "test.en", f"{tgt}\n" * N)
        return {"name_or_path": folder}, _write(folder / "de-en.wa", "\n".join(links) + "\n")
    path = _write(tmp_path / "l.txt", "\n".join(links) + "\n")
    return {
        "format": "pharaoh",
        "src_file": _write(tmp_path / "s.de", f"{src}\n" * N),
        "tgt_file": _write(tmp_path / "t.en", f"{tgt}\n" * N),
        "links_file": path,
    }, path


def _total(gold) -> int:
    return sum(len(p) for p in gold.possible)


@pytest.mark.parametrize("fmt", ["pharaoh", "awesome", "xlwa", "bicici"])
def test_a_one_based_file_read_as_zero_based_is_refused(tmp_path: Path, fmt: str) -> None:
    kwargs, links_file = _set(tmp_path, fmt, base=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        right = load_gold(**kwargs, index_base=1)
    assert _total(right) == 2 * N + 1 and right.out_of_range == []
    with pytest.raises(GoldFormatError) as err:
        load_gold(**kwargs, index_base=0)
    text = str(err.value)
    # 1 of 41 links (2.4 %, under the 5 % that the direction check needs) is past the end
    assert text.startswith(f"{links_file}: 1 of 41 gold links (2.4%) point past the end")
    assert "sentence 0 link 4-4: 4 and 4 words" in text
    assert "none uses index 0" in text and "pass index_base: 1" in text
    assert err.value.path == links_file


@pytest.mark.parametrize("fmt", ["pharaoh", "xlwa"])
def test_a_zero_based_file_read_as_one_based_is_refused(tmp_path: Path, fmt: str) -> None:
    kwargs, links_file = _set(tmp_path, fmt, base=0)
    _write(links_file, links_file.read_text().replace("1-1", "0-0", 1))
    with pytest.raises(GoldFormatError, match=r"has index 0.*pass index_base=0") as err:
        load_gold(**kwargs, index_base=1)
    assert str(err.value).startswith(f"{links_file} line 1: link '0-0'")


def test_a_zero_based_wpt_file_read_as_one_based_is_refused(tmp_path: Path) -> None:
    """0-based WPT links read 1-based: those on word 0 look like NULL links (dropped) and
    none reaches the last word."""
    folder = tmp_path / "wpt"
    _write(folder / "test.e", "".join(f"<s snum={k + 1}> a b c d </s>\n" for k in range(N)))
    _write(folder / "test.f", "".join(f"<s snum={k + 1}> w x y z </s>\n" for k in range(N)))
    wa = "".join(f"{k + 1} {i} {j} S\n" for k in range(N) for i, j in [(0, 1), (1, 1), (2, 2)])
    wa_file = _write(folder / "test.e.f.wa", wa)
    with pytest.raises(GoldFormatError) as err:
        load_gold(folder, index_base=1)
    text = str(err.value)
    assert text.startswith(f"{wa_file}: read 1-based (index_base: 1), {N} link(s) use position 0")
    assert f"none of the other {2 * N}" in text and "pass index_base: 0" in text
    assert _total(load_gold(folder, index_base=0)) == 3 * N


def test_no_link_past_the_end_is_only_warned(tmp_path: Path) -> None:
    """Without a link past the end the 1-based reading is not certain: a warning."""
    kwargs, links_file = _set(tmp_path, "pharaoh", base=0)  # 0-based, word 0 never linked
    with pytest.warns(GoldAlignmentWarning, match=r"none of its 41 links .* pass index_base: 1"):
        assert _total(load_gold(**kwargs, index_base=0)) == 2 * N + 1


def test_links_past_the_end_that_a_shift_does_not_explain_are_not_blamed_on_it(
    tmp_path: Path,
) -> None:
    """A link 3 words past the end is an annotation slip (or another file), not index_base:
    warned and dropped as before."""
    kwargs, links_file = _set(tmp_path, "pharaoh", base=0)
    _write(links_file, links_file.read_text().replace("3-3", "6-6", 1))
    with pytest.warns(GoldAlignmentWarning, match=r"1 gold link\(s\) out of range"):
        gold = load_gold(**kwargs, index_base=0)
    assert gold.out_of_range == [(0, (6, 6))]


@pytest.mark.parametrize(("stem", "past_end", "total"), [("enfr", 461, 17438), ("roen", 246, 6198)])
def test_awesome_align_sets_read_zero_based_are_refused(
    shared_data: Path, stem: str, past_end: int, total: int
) -> None:
    path = shared_data / "align" / "awesome" / f"{stem}.src-tgt"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    assert _total(load_gold(path)) == total  # awesome: 1-based by default
    with pytest.raises(GoldFormatError, match=rf"{past_end} of {total} gold links"):
        load_gold(path, index_base=0)
