"""Same links, same run (issue 9.2): training links are computed once per corpus by one process,
recorded with the run (artifact + digest), shared by every rank, and can be pinned with
``data.links`` so a run repeats bit for bit."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _launch import free_port, launch, model_weights, rank_env
from conftest import as_sets, migrated_sqlite_uri, run_json
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file
from typer.testing import CliRunner

from xalign.cli import app
from xalign.links import LinkSpec, links_digest

RANK_SCRIPT = r"""
import json, sys
from pathlib import Path
from types import SimpleNamespace

from accelerate import Accelerator

from xalign.alignment import eflomal_aligner
from _pipeline import attach_links  # tests/ is on PYTHONPATH
from xalign.links import LinkSpec

out = Path(sys.argv[1])
acc = Accelerator(cpu=True)
rank = acc.process_index
calls = []
real = eflomal_aligner._run_eflomal
def counting(*args, **kwargs):
    calls.append(1)
    return real(*args, **kwargs)
eflomal_aligner._run_eflomal = counting
words = json.loads((out / "corpus.json").read_text())
examples = [SimpleNamespace(src_words=s, tgt_words=t, links={}) for s, t in words]
data = SimpleNamespace(pairs=[SimpleNamespace(name="de-en", src="de", tgt="en",
                                              examples=examples)])
spec = LinkSpec("grow-diag-final-and", one_to_one=False)
cache = out / f"cache-rank{rank}"  # no shared cache folder: as on two machines
links = attach_links(data, [spec], accelerator=acc, cache_dir=cache)
(out / f"rank{rank}.json").write_text(json.dumps({
    "eflomal_runs": len(calls), "digest": links.corpus["de-en"].digest,
    "by_rank": links.by_rank, "cached": sorted(p.name for p in cache.glob("*.jsonl")),
    "links": [sorted(map(list, e.links[spec])) for e in examples]}))
acc.end_training()
"""

COMMON = [
    "--objective",
    "l2",
    "--set",
    "data.limit=24",
    "--set",
    "data.languages=[de]",
    "--set",
    "train.batch_size=8",
    "--set",
    "train.grad_accum=1",
]


def test_the_same_links_file_gives_bit_identical_weights(tiny_model, tmp_path, monkeypatch):
    """Run 1 computes eflomal links and logs them; runs 2 and 3 read that artifact through
    data.links with cold caches: all three end with the same weights, bit for bit."""
    monkeypatch.chdir(tmp_path)  # MLflow's artifact folder
    uri = migrated_sqlite_uri(tmp_path / "m.db")
    args = [*COMMON, "--set", f"model.name={tiny_model}", "--set", f"tracking.uri={uri}"]
    monkeypatch.setenv("XALIGN_CACHE_DIR", str(tmp_path / "cache-1"))
    first = run_json([*args, "--set", f"train.output_dir={tmp_path / 'o1'}"])
    client = MlflowClient(uri)
    folder = Path(client.download_artifacts(first["run_id"], "links", str(tmp_path / "art")))
    artifact = folder / "de-en.intersection.txt"
    params = client.get_run(first["run_id"]).data.params
    digest = hashlib.sha256(artifact.read_bytes()).hexdigest()
    assert params["data.links_hash.de-en"] == digest  # sha256sum of the artifact
    assert params["data.links_source.de-en"].startswith("intersection: eflomal ")
    ranks = json.loads((folder / "ranks.json").read_text())
    assert ranks == {"0": {"de-en": digest}}
    template = str(folder / "{src}-{tgt}.{symmetrization}.txt")
    outs = []
    for n in (2, 3):
        monkeypatch.setenv("XALIGN_CACHE_DIR", str(tmp_path / f"cache-{n}"))  # cold cache
        outs.append(
            run_json(
                [
                    *args,
                    "--set",
                    f"train.output_dir={tmp_path / f'o{n}'}",
                    "--set",
                    f"data.links={template}",
                ]
            )
        )
        assert not list((tmp_path / f"cache-{n}").glob("eflomal/*.jsonl")), "no eflomal run"
    init = load_file(str(tiny_model / "model.safetensors"))
    ref = model_weights(first)
    assert any(not torch.equal(ref[k], init[k]) for k in ref), "training moved the weights"
    for out in outs:
        other = model_weights(out)
        assert all(torch.equal(ref[k], other[k]) for k in ref)
        run = client.get_run(out["run_id"])
        assert run.data.params["data.links_hash.de-en"] == digest
        assert run.data.params["data.links_source.de-en"] == f"intersection: {artifact}"
    assert (
        client.get_run(outs[0]["run_id"]).data.tags["xalign.identity"]
        == client.get_run(outs[1]["run_id"]).data.tags["xalign.identity"]
    )


def test_a_bad_links_file_fails_before_training_naming_file_and_line(
    tiny_model, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    links = tmp_path / "de-en.txt"
    links.write_text("0-0\n" * 3, encoding="utf-8")  # the corpus keeps 24 pairs
    base = [
        "run",
        "-q",
        *COMMON,
        "--set",
        f"model.name={tiny_model}",
        "--set",
        f"tracking.uri={migrated_sqlite_uri(tmp_path / 'm.db')}",
        "--set",
        f"train.output_dir={tmp_path / 'out'}",
    ]
    result = CliRunner().invoke(app, [*base, "--set", f"data.links={links}"])
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert f"{links}: 3 lines, but de-en has 24 sentence pairs after filtering" in text, text
    links.write_text("0-0\n" * 23 + "0-0 0-99\n", encoding="utf-8")
    result = CliRunner().invoke(app, [*base, "--set", f"data.links={links}"])
    text = " ".join(result.output.split())
    assert result.exit_code == 1 and f"{links}:24: link 0-99 out of range" in text, text
    result = CliRunner().invoke(app, [*base, "--set", "data.links={fr: x.txt}"])
    assert result.exit_code == 1 and "data.links has no entry for de-en" in result.output
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("model"))


def test_a_rank_without_the_shared_cache_takes_the_main_process_links(tmp_path):
    """Two gloo ranks, each with its own (cold) cache folder: rank 0 runs eflomal once, rank 1
    never does and trains on rank 0's links (received by broadcast)."""
    from xalign.data.corpus import read_parallel
    from xalign.data.text import tokenize_words

    pairs = read_parallel("demo", "de", "en", limit=30)
    words = [[tokenize_words(p[0], "de"), tokenize_words(p[1], "en")] for p in pairs]
    (tmp_path / "corpus.json").write_text(json.dumps(words), encoding="utf-8")
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT, encoding="utf-8")
    port = free_port()
    procs = []
    for rank in (0, 1):
        env = {  # the rank script imports tests/_pipeline.py
            **rank_env(rank, 2, port),
            "PYTHONPATH": os.pathsep.join(
                [str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]
            ),
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, str(script), str(tmp_path)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert (r0["eflomal_runs"], r1["eflomal_runs"]) == (1, 0)
    assert len(r0["cached"]) == 1 and r1["cached"] == []
    assert r0["digest"] == r1["digest"] and r0["links"] == r1["links"]
    assert r0["by_rank"] == [{"de-en": r0["digest"]}] * 2
    assert sum(map(len, r0["links"])) > len(words)  # grow-diag-final-and: real links


@pytest.mark.distributed
def test_two_ranks_on_a_cold_cache_train_on_one_set_of_links(tiny_model, tmp_path):
    """accelerate launch, 2 gloo ranks, a fresh XALIGN_CACHE_DIR: both ranks report the same
    links digest, the one logged as data.links_hash.<pair>, from one eflomal run per pair."""
    uri = migrated_sqlite_uri(tmp_path / "m.db")
    sets = [
        f"model.name={tiny_model}",
        "data.limit=24",
        "data.languages=[de,fr]",
        "train.batch_size=8",
        f"tracking.uri={uri}",
        f"train.output_dir={tmp_path / 'out'}",
    ]
    env = {"XALIGN_CACHE_DIR": str(tmp_path / "cache")}
    out = launch(["-o", "l2", *as_sets(sets)], 2, env=env, cwd=tmp_path)
    client = MlflowClient(uri)
    params = client.get_run(out["run_id"]).data.params
    assert params["train.world_size"] == "2"
    folder = Path(client.download_artifacts(out["run_id"], "links", str(tmp_path / "art")))
    ranks = json.loads((folder / "ranks.json").read_text())
    logged = {p: params[f"data.links_hash.{p}"] for p in ("de-en", "fr-en")}
    assert ranks == {"0": logged, "1": logged}
    for pair, digest in logged.items():
        text = (folder / f"{pair}.intersection.txt").read_bytes()
        assert hashlib.sha256(text).hexdigest() == digest
    assert len(list((tmp_path / "cache" / "eflomal").glob("*.jsonl"))) == 2  # one per pair


def test_linked_positions_is_the_one_place_links_are_clipped():
    """The trainer passes corpus links as they are; linked_positions drops links to words the
    batch does not hold (cut by truncation: beyond W, or masked)."""
    from xalign import linked_positions

    src_mask = torch.tensor([[True, True, False], [True, True, True]])  # word 2 of sentence 0
    tgt_mask = torch.tensor([[True, True], [True, False]])  # has no subword
    links = [{(0, 0), (2, 1), (1, 5)}, {(2, 0), (0, 1), (7, 0)}]
    b, i, j = linked_positions(links, src_mask, tgt_mask)
    assert list(zip(b.tolist(), i.tolist(), j.tolist(), strict=True)) == [(0, 0, 0), (1, 2, 0)]
    empty = linked_positions([set(), set()], src_mask, tgt_mask)
    assert all(t.numel() == 0 for t in empty)


def test_resume_refuses_other_links():
    from xalign.provenance import InputsChanged, check_same_inputs, identity_params

    started = {
        "model": "files:aa",
        "corpus": {"de-en": "c" * 64},
        "links": {"de-en": "1" * 64},
        "software": {"xalign": "0.1.0"},
    }
    params = identity_params(started)
    check_same_inputs(params, started, what="run r")  # same inputs: fine
    check_same_inputs({}, started, what="run r")  # a run that recorded nothing: not checked
    later = {**started, "links": {"de-en": "2" * 64}, "software": {"xalign": "0.2.0"}}
    with pytest.raises(
        InputsChanged,
        match=r"run r started on other inputs: links de-en "
        r"\(sha256 111111111111 now 222222222222\)",
    ):
        check_same_inputs(params, later, what="run r")
    check_same_inputs(params, {**started, "software": {"xalign": "0.2.0"}}, what="run r")


def test_spec_filters_apply_to_file_links(tmp_path):
    """data.links files hold symmetrised links; each objective's LinkSpec filters them."""
    from xalign.data.links import corpus_links

    src = [["Berlin", "ist", "groß"], ["a", "b", "c", "d", "e"]]
    tgt = [["Berlin", "is", "big"], ["a", "b"]]
    path = tmp_path / "de-en.union.txt"
    path.write_text("0-0 1-1 2-2 2-1\n0-0 1-1\n", encoding="utf-8")
    cl = corpus_links(
        src,
        tgt,
        ["union"],
        pair=("de", "en"),
        option=str(tmp_path / "{src}-{tgt}.{symmetrization}.txt"),
    )
    assert cl.links["union"] == [{(0, 0), (1, 1), (2, 2), (2, 1)}, {(0, 0), (1, 1)}]
    assert cl.digest == links_digest(cl.links["union"])
    # pair 1: drop_identical removes Berlin-Berlin; one-to-one then drops 2-2 and 2-1 (source
    # "groß" has two links) and 1-1 (target "is" has two) -> nothing. Pair 2: 5 words > 4.
    spec = LinkSpec("union", one_to_one=True, drop_identical=True, max_words=4)
    assert cl.for_spec(spec, src, tgt) == [set(), set()]
    # without one-to-one: pair 1 keeps 1-1 2-2 2-1; pair 2 (a-a, b-b) is all identical
    loose = LinkSpec("union", one_to_one=False, drop_identical=True, max_words=5)
    assert cl.for_spec(loose, src, tgt) == [{(1, 1), (2, 2), (2, 1)}, set()]
    keep = LinkSpec("union", one_to_one=False, drop_identical=False, max_words=5)
    assert cl.for_spec(keep, src, tgt) == cl.links["union"]


def test_link_set_describes_sources_and_links_per_sentence() -> None:
    from xalign.data.links import CorpusLinks, LinkSet

    self_src = "self (step 0: layer 6, argmax)"
    links = LinkSet(
        corpus={
            "fr-en": CorpusLinks(
                "fr-en",
                {"intersection": [{(0, 0)}, {(0, 0), (1, 1), (2, 2)}]},
                {"intersection": self_src},
            ),  # fmt: skip
            "de-en": CorpusLinks(
                "de-en", {"intersection": [{(0, 1)}, set(), {(1, 0)}]}, {"intersection": self_src}
            ),  # fmt: skip
            "el-en": CorpusLinks(
                "el-en",
                {"intersection": [{(0, 0)}], "grow-diag-final-and": [{(0, 0), (1, 0)}]},
                {"intersection": "a.txt", "grow-diag-final-and": "b.txt"},
            ),
        }
    )
    # groups in the order of their first pair (sorted): de-en: 2 links over 3 sentences;
    # el-en: 2 (gdfa) and 1 (intersection) over 1; fr-en: 4 over 2
    assert links.describe().splitlines() == [
        f"word links: intersection: {self_src}: de-en 0.7, fr-en 2.0 per sentence",
        "word links: grow-diag-final-and: b.txt; intersection: a.txt: el-en 2.0/1.0 per sentence",
    ]
    assert LinkSet().describe() == ""


def test_lazy_links_total_counts_without_decoding() -> None:
    import datasets

    from xalign.data.links import LazyLinks, flat_links, sym_column, total_links

    links = [{(0, 0), (1, 2)}, set(), {(3, 1)}, {(0, 0), (1, 1), (2, 2)}]
    table = datasets.Dataset.from_dict({sym_column("intersection"): [flat_links(x) for x in links]})
    lazy = LazyLinks(table, sym_column("intersection"))
    assert lazy.total() == total_links(lazy) == sum(map(len, links)) == 6
    assert total_links(links) == 6 and list(lazy) == links
