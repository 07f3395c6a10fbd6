"""Reuse keys follow content, not a stat tuple a user tool can restore (issue 20.3).

``cp -p``, ``rsync -t`` and ``tar -x`` write new bytes and then set the old mtime back; a
same-size edit then keeps (size, mtime, inode). Every consumer of file digests is checked
with such an edit: eval reuse, the prepared-data cache (words and links) and compare's
model/corpus identity.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
from test_evaluate import fake_plugins, fresh_store  # noqa: F401
from test_prepare import tokenizer, write_corpus  # noqa: F401
from test_reuse import (  # noqa: F401
    AER_SWAPPED,
    GOLD,
    SWAPPED,
    DiagonalAER,
    diagonal_task,
    eval_json,
    first_run,
    write_gold,
)

import xalign.digest as digests  # the file digests (memo, racily-clean rule)
from xalign import provenance
from xalign.data.prepare import PrepareOptions, prepare
from xalign.links import LinkSpec


def restamp(path: Path, text: str, how: str, tmp: Path) -> None:
    """Replace ``path``'s content by ``text`` (same size) as ``how`` would, keeping its mtime."""
    before = path.stat()
    assert len(text.encode()) == before.st_size, "the edit must keep the size"
    if how == "utime":  # an editor, then a restore of the timestamp (os.utime)
        path.write_text(text, encoding="utf-8")
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    elif how == "cp -p":  # a corrected copy with the old timestamp, copied over in place
        fixed = tmp / f"fixed-{path.name}"
        fixed.write_text(text, encoding="utf-8")
        os.utime(fixed, ns=(before.st_atime_ns, before.st_mtime_ns))
        subprocess.run(["cp", "-p", str(fixed), str(path)], check=True)
    elif how == "tar -x":  # unpacking an archive whose member has the old mtime
        member = tmp / "member" / path.name
        member.parent.mkdir(exist_ok=True)
        member.write_text(text, encoding="utf-8")
        os.utime(member, ns=(before.st_atime_ns, before.st_mtime_ns))
        archive = tmp / "fix.tar"
        with tarfile.open(archive, "w") as tar:
            tar.add(member, arcname=path.name)
        subprocess.run(["tar", "-xf", str(archive), "-C", str(path.parent)], check=True)
    else:
        raise AssertionError(how)
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    if how != "tar -x":
        assert after.st_ino == before.st_ino
    assert path.read_text(encoding="utf-8") == text


HOWS = ["utime", "cp -p", "tar -x"]
if shutil.which("cp") is None or shutil.which("tar") is None:  # pragma: no cover
    HOWS = ["utime"]


def settle(path: Path) -> None:
    """Make ``path`` look old (mtime a minute back, whole seconds as tar keeps them)."""
    old = int(time.time()) - 60
    os.utime(path, (old, old))


# ------------------------------------------------------------------------------ file_digest
@pytest.mark.parametrize("how", HOWS)
@pytest.mark.parametrize("new_process", [False, True])
def test_file_digest_follows_content_through_a_restored_mtime(
    tmp_path, monkeypatch, how, new_process
):
    monkeypatch.setattr(digests, "RACY_SECONDS", 0.0)  # memoise even a fresh file
    path = tmp_path / "deen.gold"
    path.write_text(GOLD, encoding="utf-8")
    settle(path)
    first = provenance.file_digest(path)
    assert first == provenance._sha256_file(path)
    time.sleep(0.02)  # past the kernel's timestamp tick: the rewrite gets a new ctime
    restamp(path, SWAPPED, how, tmp_path)
    if new_process:
        provenance._MEMO.clear()
    assert provenance.file_digest(path) == provenance._sha256_file(path) != first


def test_no_digest_is_kept_across_processes(tmp_path, monkeypatch):
    """Nothing is written to the cache folder: a new process hashes the bytes again."""
    monkeypatch.setenv("XALIGN_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "corpus.txt"
    path.write_text("Das Haus ist klein .\n", encoding="utf-8")
    settle(path)
    digest = provenance.file_digest(path)
    assert not (tmp_path / "cache").exists()
    provenance._MEMO.clear()
    reads = []
    real = provenance._sha256_file
    monkeypatch.setattr(digests, "_sha256_file", lambda p: reads.append(p) or real(p))
    assert provenance.file_digest(path) == digest and len(reads) == 1


def test_in_process_memo_hashes_an_unchanged_settled_file_once(tmp_path, monkeypatch):
    monkeypatch.setattr(digests, "RACY_SECONDS", 0.0)
    path = tmp_path / "corpus.txt"
    path.write_text("Das Haus ist klein .\n", encoding="utf-8")
    reads = []
    real = provenance._sha256_file
    monkeypatch.setattr(digests, "_sha256_file", lambda p: reads.append(p) or real(p))
    assert provenance.file_digest(path) == provenance.file_digest(path)
    assert len(reads) == 1


def test_a_file_written_just_now_is_hashed_every_time(tmp_path, monkeypatch):
    """Racily clean: a second write within the same clock tick keeps the ctime, so a file whose
    ctime is younger than RACY_SECONDS is never memoised."""
    path = tmp_path / "corpus.txt"
    path.write_text("Das Haus ist klein .\n", encoding="utf-8")
    reads = []
    real = provenance._sha256_file
    monkeypatch.setattr(digests, "_sha256_file", lambda p: reads.append(p) or real(p))
    provenance.file_digest(path)
    provenance.file_digest(path)
    assert len(reads) == 2


# ------------------------------------------------------------------------------ eval reuse
@pytest.mark.parametrize("how", HOWS[:2])
def test_eval_does_not_reuse_a_result_after_a_restored_mtime_gold_edit(tiny_model, tmp_path, how):
    """The issue's case: a corrected gold file copied over the old one keeps size and mtime;
    the old AER 0.000 must not come back for the true 1/3."""
    uri = fresh_store(tmp_path)
    src_tgt = write_gold(tmp_path / "gold", GOLD)
    gold = tmp_path / "gold" / "deen.gold"
    settle(gold)
    args = [str(tiny_model), "-t", "diag-aer", "--option", f"diag-aer.gold={src_tgt}"]
    args += ["--tracking-uri", uri]
    assert first_run(eval_json(args)) == (0.0, False)
    time.sleep(0.02)
    restamp(gold, SWAPPED, how, tmp_path)
    aer, reused = first_run(eval_json(args))
    assert not reused and aer == pytest.approx(AER_SWAPPED) and DiagonalAER.calls == 2
    provenance._MEMO.clear()  # and from a new process
    assert first_run(eval_json(args)) == (pytest.approx(AER_SWAPPED), True)


# ------------------------------------------------------------------------------ prepared data
@pytest.mark.parametrize("how", HOWS[:2])
def test_prepare_rebuilds_words_after_a_restored_mtime_corpus_edit(tokenizer, tmp_path, how):  # noqa: F811
    lines = [("Das Haus ist klein .", "The house is small ."), ("Ja .", "Yes .")]
    spec = write_corpus(tmp_path / "corpus", lines)
    opts = PrepareOptions(max_length=64)
    cache = tmp_path / "cache"
    for side in ("src", "tgt"):
        settle(Path(spec[side]))
    first = prepare({"de": spec}, ["de"], opts, tokenizer=tokenizer, cache_dir=cache)
    assert first.pairs[0].words["src_words"][0] == ["Das", "Haus", "ist", "klein", "."]
    time.sleep(0.02)
    edited = Path(spec["src"]).read_text(encoding="utf-8").replace("klein", "groß!")
    restamp(Path(spec["src"]), edited.replace("groß!", "gross"), how, tmp_path)
    provenance._MEMO.clear()
    again = prepare({"de": spec}, ["de"], opts, tokenizer=tokenizer, cache_dir=cache)
    assert not again.pairs[0].words_hit
    assert again.pairs[0].words_key != first.pairs[0].words_key
    assert again.pairs[0].words["src_words"][0] == ["Das", "Haus", "ist", "gross", "."]


@pytest.mark.parametrize("how", HOWS[:2])
def test_prepare_rebuilds_links_after_a_restored_mtime_links_edit(tokenizer, tmp_path, how):  # noqa: F811
    lines = [("Das Haus ist klein .", "The house is small ."), ("Ja .", "Yes .")]
    spec = write_corpus(tmp_path / "corpus", lines)
    links = tmp_path / "de-en.intersection.txt"
    links.write_text("0-0 1-1 2-2 3-3 4-4\n0-0 1-1\n", encoding="utf-8")
    settle(links)
    option = str(tmp_path / "{src}-{tgt}.{symmetrization}.txt")
    kw = {"tokenizer": tokenizer, "cache_dir": tmp_path / "cache", "links_option": option}
    kw["link_specs"] = [LinkSpec("intersection", one_to_one=False)]
    opts = PrepareOptions(max_length=64)
    first = prepare({"de": spec}, ["de"], opts, **kw)
    assert set(first.pairs[0].corpus_links.links["intersection"][0]) == {(i, i) for i in range(5)}
    time.sleep(0.02)
    restamp(links, "0-1 1-0 2-2 3-3 4-4\n0-0 1-1\n", how, tmp_path)
    provenance._MEMO.clear()
    again = prepare({"de": spec}, ["de"], opts, **kw)
    assert again.pairs[0].words_hit and again.pairs[0].links_hit is False
    got = set(again.pairs[0].corpus_links.links["intersection"][0])
    assert got == {(0, 1), (1, 0), (2, 2), (3, 3), (4, 4)}


# ------------------------------------------------------------------------------ compare reuse
def test_model_identity_follows_a_restored_mtime_weight_edit(tiny_model, tmp_path):
    """compare reuses a training run by the initial model's content identity."""
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    weights = next(model.glob("*.safetensors"))
    settle(weights)
    before = provenance.model_identity(str(model))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01  # one bit of the last weight
    stamp = weights.stat()
    time.sleep(0.02)
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert weights.stat().st_size == stamp.st_size
    assert provenance.model_identity(str(model)) != before
    provenance._MEMO.clear()
    assert provenance.model_identity(str(model)) != before


def test_compare_retrains_after_a_restored_mtime_edit_of_the_initial_model(tiny_model, tmp_path):
    """compare's training reuse is keyed by the initial model's content: weights edited at the
    same size with the mtime restored are a new model, in this process and in a new one."""
    import json

    from typer.testing import CliRunner

    from xalign.cli import app
    from xalign.data.corpus import read_parallel

    uri = fresh_store(tmp_path)
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    weights = next(model.glob("*.safetensors"))
    settle(weights)
    pairs = read_parallel("demo", "de", "en", limit=16)
    corpus = tmp_path / "de-en.tsv"
    corpus.write_text("".join(f"{p[0]}\t{p[1]}\n" for p in pairs), encoding="utf-8")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        json.dumps(
            {
                "model": {"name": str(model)},
                "data": {"languages": ["de"], "corpus": str(tmp_path / "{src}-{tgt}.tsv")},
                "train": {"output_dir": str(tmp_path / "out"), "batch_size": 8, "max_steps": 1},
                "tracking": {"uri": uri},
                "objectives": {"sinkhorn": {}},
            }
        )
    )
    args = ["compare", "sinkhorn", "--config", str(cfg), "--tasks", "fake", "--json"]

    def reused() -> list[bool]:
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output + repr(result.exception)
        return [r["reused"] for r in json.loads(result.stdout)["runs"]["train"]]

    assert reused() == [False]
    assert reused() == [True]
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    stamp = weights.stat()
    time.sleep(0.02)
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    provenance._MEMO.clear()  # a new process
    assert reused() == [False]
