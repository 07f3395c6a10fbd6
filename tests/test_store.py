"""The content-keyed entry store (xalign.data.store): built once under a lock, published
whole, checked file by file, rebuilt when damaged, and nothing left behind by a failed build."""

from __future__ import annotations

import json

import pytest

from xalign.data.store import MANIFEST, cached_entry, check_entry, write_atomic

FMT = "test-store/1"


def build_two_files(calls: list[int]):
    def build(tmp):
        calls.append(1)
        (tmp / "a.txt").write_text("alpha", encoding="utf-8")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "b.bin").write_bytes(b"\x00\x01")
        return {"rows": 2}

    return build


def test_an_entry_is_built_once_and_checked_file_by_file(tmp_path):
    calls: list[int] = []
    manifest, hit = cached_entry(tmp_path, "k1", FMT, build_two_files(calls))
    assert (hit, calls, manifest["rows"], manifest["format"], manifest["key"]) == (
        False,
        [1],
        2,
        FMT,
        "k1",
    )
    assert manifest["files"]["a.txt"][0] == 5 and manifest["files"]["sub/b.bin"][0] == 2
    again, hit = cached_entry(tmp_path, "k1", FMT, build_two_files(calls))
    assert hit and calls == [1] and again == manifest
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp
    folder = tmp_path / "k1"
    assert check_entry(folder, "k1", "another/1") == (None, "another format")
    assert check_entry(folder, "k2", FMT) == (None, "manifest of another key")
    (folder / "a.txt").write_text("alphA", encoding="utf-8")  # same size, other bytes
    assert check_entry(folder, "k1", FMT) == (None, "a.txt: content changed (sha256 differs)")
    (folder / "a.txt").write_text("alpha", encoding="utf-8")
    (folder / "extra").write_text("", encoding="utf-8")
    assert check_entry(folder, "k1", FMT) == (None, "unexpected file extra")
    _, hit = cached_entry(tmp_path, "k1", FMT, build_two_files(calls))  # damaged: rebuilt
    assert not hit and calls == [1, 1] and not (folder / "extra").exists()
    assert json.loads((folder / MANIFEST).read_text())["files"].keys() == {"a.txt", "sub/b.bin"}


def test_a_failed_build_leaves_nothing(tmp_path):
    def build(tmp):
        (tmp / "half.txt").write_text("x", encoding="utf-8")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        cached_entry(tmp_path, "k", FMT, build)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.lock"]
    assert check_entry(tmp_path / "k", "k", FMT) == (None, "absent")


def test_write_atomic_replaces_a_file_whole(tmp_path):
    path = tmp_path / "deep" / "index.json"
    write_atomic(path, "one")
    write_atomic(path, "two")
    assert path.read_text(encoding="utf-8") == "two"
    assert [p.name for p in path.parent.iterdir()] == ["index.json"]
