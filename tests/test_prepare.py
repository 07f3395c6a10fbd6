"""Prepare once (issue 10): the prepared, memory-mapped training data equals what
build_parallel_data + attach_links give, is keyed by the content of its inputs, is reused
without re-reading or re-tokenising, and is rebuilt when damaged; per-language corpus specs."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import pytest
import torch
from _pipeline import build_parallel_data
from conftest import as_sets, run_json
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file
from typer.testing import CliRunner

from xalign.cli import app
from xalign.config import load_config
from xalign.data import prepare as prep
from xalign.data.corpus import CorpusError, language_spec, read_parallel
from xalign.data.filters import DataWarning
from xalign.data.prepare import PREPARE_FORMAT, PrepareOptions, prepare, text_digest
from xalign.data.store import check_entry
from xalign.errors import ConfigError
from xalign.links import LinkSpec, links_digest
from xalign.provenance import corpus_digest

# A corpus with a bit of everything the filters look at: Moses escapes (unescaped_lines),
# a blank line (empty), a long line (too_long), a side of control characters only
# (no_subwords), a zero-width word (no_subword_words), Greek and Cyrillic script.
LINES = [
    ("Das Haus ist klein .", "The house is small ."),
    ("Tom &amp; Jerry &apos;s Haus", "Tom &amp; Jerry &apos;s house"),
    ("", ""),
    ("ein " * 30, "one " * 30),
    ("\x7f\x7f", "Hello ."),
    ("Das Haus\u200b ist grün .", "The house is green ."),
    ("Το σπίτι είναι μικρό .", "The house is small ."),
    ("Дом маленький .", "The house is small ."),
    ("Ich lese ein Buch .", "I read a book ."),
    ("Wir gehen nach Hause .", "We go home ."),
]


def write_corpus(folder: Path, lines=LINES, name: str = "c") -> dict[str, str]:
    """Two line-aligned files named as FLORES names them (not language codes)."""
    folder.mkdir(parents=True, exist_ok=True)
    src, tgt = folder / f"{name}_Latn.dev", folder / "eng_Latn.dev"
    src.write_text("".join(s + "\n" for s, _ in lines), encoding="utf-8")
    tgt.write_text("".join(t + "\n" for _, t in lines), encoding="utf-8")
    return {"src": str(src), "tgt": str(tgt)}


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_model))


def examples_of(data) -> list[list[tuple]]:
    return [
        [(e.src_words, e.tgt_words, e.where, dict(e.links)) for e in p.examples] for p in data.pairs
    ]


def same_data(a, b) -> None:
    assert a.stats() == b.stats()
    assert [p.name for p in a.pairs] == [p.name for p in b.pairs]
    for pa, pb in zip(a.pairs, b.pairs, strict=True):
        assert pa.order.tolist() == pb.order.tolist()
        for m in range(a.micro_steps):
            assert a.batch(pa, m) == b.batch(pb, m)
            assert a.batch(pa, m, rank=1, world=2) == b.batch(pb, m, rank=1, world=2)
    assert examples_of(a) == examples_of(b)


def test_the_data_layer_is_typed_with_run_config_and_encoder():
    """No ``cfg: Any`` / ``encoder: Any`` under xalign/data: the pipeline names RunConfig and
    Encoder (which it can import: nothing they load imports xalign.data.prepare)."""
    import re
    import typing

    import xalign.data
    from xalign.config import RunConfig
    from xalign.data.prepare import prepare_run_data
    from xalign.encoders import Encoder

    folder = Path(xalign.data.__file__).parent
    untyped = [
        f"{p.name}:{n}"
        for p in sorted(folder.glob("*.py"))
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(r"\b(cfg|encoder): Any\b", line)
    ]
    assert untyped == []
    hints = typing.get_type_hints(prepare_run_data)
    assert (hints["cfg"], hints["encoder"]) == (RunConfig, Encoder)


# ------------------------------------------------------------------------------ same data
@pytest.mark.parametrize(
    ("langs", "opts", "per_language"),
    [
        (["de", "fr"], {"max_length": 64}, None),
        (["de", "el", "es"], {"max_length": 12, "max_words": 20, "limit": 40}, 100),
        (["bg"], {"max_length": 128, "max_ratio": 1.5, "unescape": False}, 7),
    ],
)
def test_prepared_demo_equals_build_parallel_data(tokenizer, tmp_path, langs, opts, per_language):
    """Demo corpus, three settings (truncation at 12 subwords, a ratio filter, no unescaping,
    up- and subsampling): stats, plan, every batch and every example are the same."""
    options = PrepareOptions(**opts)
    kwargs = {k: v for k, v in opts.items() if k != "max_length"}
    with warnings.catch_warnings(record=True) as ref_warnings:
        warnings.simplefilter("always")
        ref = build_parallel_data(
            "demo",
            langs,
            "en",
            pairs_per_language=per_language,
            batch_size=4,
            seed=3,
            tokenizer=tokenizer,
            max_length=opts["max_length"],
            **kwargs,
        )
    got = prepare("demo", langs, options, tokenizer=tokenizer, cache_dir=tmp_path)
    data = got.parallel_data(pairs_per_language=per_language, batch_size=4, seed=3)
    same_data(ref, data)
    assert not got.cache_hit
    if opts["max_length"] == 12:
        assert ref_warnings and all(w.category is DataWarning for w in ref_warnings)
        assert data.stats()["de-en"]["truncated_words"]["words"] > 0


def test_prepared_files_equal_build_parallel_data_with_every_filter(tokenizer, tmp_path):
    """A two-file {src, tgt} corpus that hits every reason: the same kept pairs and stats."""
    spec = write_corpus(tmp_path / "corpus")
    corpus = {"de": spec}
    ref = build_parallel_data(
        corpus,
        ["de"],
        "en",
        pairs_per_language=None,
        batch_size=3,
        seed=0,
        max_words=20,
        tokenizer=tokenizer,
        max_length=64,
    )
    got = prepare(
        corpus,
        ["de"],
        PrepareOptions(max_words=20, max_length=64),
        tokenizer=tokenizer,
        cache_dir=tmp_path / "cache",
    )
    data = got.parallel_data(pairs_per_language=None, batch_size=3, seed=0)
    same_data(ref, data)
    stats = data.stats()["de-en"]
    assert stats["read"] == 10 and stats["kept"] == 7
    assert {r: t["count"] for r, t in stats["filtered"].items() if t["count"]} == {
        "empty": 1,
        "too_long": 1,
        "no_subwords": 1,
    }
    assert stats["filtered"]["empty"]["first"] == [f"{spec['src']}:3"]
    assert stats["unescaped_lines"] == {spec["src"]: 1, spec["tgt"]: 1}  # each file its own line
    assert stats["no_subword_words"]["count"] == 1
    assert data.pairs[0].examples[1].src_words == ["Tom", "&", "Jerry", "'", "s", "Haus"]


def test_text_digest_is_the_runs_corpus_digest(tmp_path):
    spec = write_corpus(tmp_path)
    for corpus, lang, limit in (("demo", "de", None), ("demo", "fr", 7), ({"de": spec}, "de", 4)):
        raw = read_parallel(language_spec(corpus, lang), lang, "en", limit=limit)
        assert text_digest(raw) == corpus_digest(corpus, lang, "en", limit)


TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)  # text read from files


@settings(max_examples=30, deadline=None)
@given(
    pairs=st.lists(st.tuples(TEXT, TEXT), max_size=30),
    repeat=st.sampled_from([1, 137, 300]),
)
def test_pairs_digest_is_one_json_line_per_pair(pairs, repeat):
    """The digest's definition, line by line (any text, escapes and non-BMP characters;
    counts across its 4096-line chunks)."""
    from xalign.provenance import pairs_digest

    pairs = pairs * repeat
    want = hashlib.sha256()
    for s, t in pairs:
        want.update(json.dumps([s, t], ensure_ascii=False).encode() + b"\n")
    assert pairs_digest(pairs) == want.hexdigest()
    assert pairs_digest([(s, t, "file:1") for s, t in pairs]) == want.hexdigest()


# ------------------------------------------------------------------------------ cache
def counting(monkeypatch) -> dict[str, int]:
    """Count corpus reads and Moses calls made by the prepare module."""
    calls = {"read": 0, "moses": 0}
    real_read, real_words = prep.read_parallel, prep.words_and_reason

    def read(*a, **k):
        calls["read"] += 1
        return real_read(*a, **k)

    def words(*a, **k):
        calls["moses"] += 1
        return real_words(*a, **k)

    monkeypatch.setattr(prep, "read_parallel", read)
    monkeypatch.setattr(prep, "words_and_reason", words)
    return calls


def test_a_cache_hit_neither_reads_nor_tokenises(tokenizer, tmp_path, monkeypatch):
    spec = write_corpus(tmp_path / "corpus")
    calls = counting(monkeypatch)
    args = ({"de": spec, "fr": "demo"}, ["de", "fr"], PrepareOptions(max_length=64))
    first = prepare(*args, tokenizer=tokenizer, cache_dir=tmp_path / "cache")
    assert not first.cache_hit and calls == {"read": 3, "moses": 260}
    assert "built" in prep.describe(first)
    second = prepare(*args, tokenizer=tokenizer, cache_dir=tmp_path / "cache")
    # the demo corpus is identified by its text (read once), the files by their sha256
    assert second.cache_hit and calls == {"read": 4, "moses": 260}
    assert prep.describe(second).startswith("prepared data: cache hit: 2 language pair(s)")
    assert second.key == first.key
    same_data(
        first.parallel_data(pairs_per_language=None, batch_size=4, seed=1),
        second.parallel_data(pairs_per_language=None, batch_size=4, seed=1),
    )


def test_the_key_follows_the_content_of_every_input(tokenizer, tmp_path, tiny_model):
    """Same content at the same path: hit; other file bytes (same size), another filter, limit,
    max_length or tokenizer: a new entry. Only files named by the spec are hashed."""
    spec = write_corpus(tmp_path / "corpus")
    cache = tmp_path / "cache"

    def run(options=PrepareOptions(max_length=64), tok=tokenizer):
        return prepare({"de": spec}, ["de"], options, tokenizer=tok, cache_dir=cache)

    base = run()
    assert run().cache_hit
    keys = {base.key}
    for options in (
        PrepareOptions(max_length=64, max_words=5),
        PrepareOptions(max_length=64, limit=5),
        PrepareOptions(max_length=32),
        PrepareOptions(max_length=64, unescape=False),
    ):
        other = run(options)
        assert not other.cache_hit and other.key not in keys
        keys.add(other.key)
    from transformers import AutoTokenizer

    lower = AutoTokenizer.from_pretrained(str(tiny_model))
    lower.backend_tokenizer.normalizer = __import__("tokenizers").normalizers.Lowercase()
    assert not run(tok=lower).cache_hit
    text = Path(spec["src"]).read_text(encoding="utf-8").replace("klein", "groß")
    Path(spec["src"]).write_text(text, encoding="utf-8")  # same size in bytes ("ß" is 2)
    changed = run()
    assert not changed.cache_hit and changed.key not in keys
    assert changed.parallel_data(pairs_per_language=None, batch_size=2, seed=0).pairs[0].examples[
        0
    ].src_words == ["Das", "Haus", "ist", "groß", "."]


@pytest.mark.parametrize(
    "damage",
    ["truncate_arrow", "flip_byte", "drop_manifest", "garbage_manifest", "delete_file", "extra"],
)
def test_a_damaged_entry_is_rebuilt_not_used(tokenizer, tmp_path, damage, monkeypatch, caplog):
    cache = tmp_path / "cache"
    args = ("demo", ["de"], PrepareOptions(max_length=64))
    good = prepare(*args, tokenizer=tokenizer, cache_dir=cache)
    ref = examples_of(good.parallel_data(pairs_per_language=None, batch_size=4, seed=0))
    entry = cache / good.pairs[0].words_key
    arrow = next(entry.rglob("*.arrow"))
    if damage == "truncate_arrow":
        arrow.write_bytes(arrow.read_bytes()[:-100])
    elif damage == "flip_byte":
        data = bytearray(arrow.read_bytes())
        data[len(data) // 2] ^= 0x20
        arrow.write_bytes(bytes(data))
    elif damage == "drop_manifest":
        (entry / "manifest.json").unlink()
    elif damage == "garbage_manifest":
        (entry / "manifest.json").write_text("{not json", encoding="utf-8")
    elif damage == "delete_file":
        arrow.unlink()
    else:
        (entry / "data" / "stray.arrow").write_bytes(b"x")
    assert check_entry(entry, good.pairs[0].words_key, PREPARE_FORMAT)[0] is None
    del good
    calls = counting(monkeypatch)
    with caplog.at_level("WARNING", logger="xalign.data.prepare"):
        again = prepare(*args, tokenizer=tokenizer, cache_dir=cache)
    assert not again.cache_hit and calls["moses"] == 250
    assert "is damaged" in caplog.text and "rebuilding" in caplog.text
    assert examples_of(again.parallel_data(pairs_per_language=None, batch_size=4, seed=0)) == ref
    assert check_entry(entry, again.pairs[0].words_key, PREPARE_FORMAT)[0] is not None
    assert not list(cache.glob(".tmp-*")) and not list(cache.glob(".trash-*"))


def test_bad_input_keeps_its_error_and_leaves_no_entry(tokenizer, tmp_path):
    cache = tmp_path / "cache"
    spec = write_corpus(tmp_path / "c")
    opts = PrepareOptions(max_length=64)
    with pytest.raises(CorpusError, match=r"nope_Latn\.dev: file not found"):
        prepare(
            {"de": {"src": str(tmp_path / "nope_Latn.dev"), "tgt": spec["tgt"]}},
            ["de"],
            opts,
            tokenizer=tokenizer,
            cache_dir=cache,
        )
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "de.txt").write_bytes(b"gut\nschl\xffecht\n")
    (bad / "en.txt").write_text("good\nbad\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"de\.txt:2: invalid UTF-8 at byte 5"):
        prepare(str(bad / "{lang}.txt"), ["de"], opts, tokenizer=tokenizer, cache_dir=cache)
    short = write_corpus(tmp_path / "short", [("a b", "c d")])
    with pytest.raises(
        CorpusError,
        match=r"de-en: every one of the 1 sentence pairs .*"
        r"\(too_short: 1 \(first at .*c_Latn\.dev:1\)",
    ):
        prepare(
            {"de": short}, ["de"], PrepareOptions(min_words=3), tokenizer=tokenizer, cache_dir=cache
        )
    with pytest.raises(
        CorpusError,
        match=r"data\.corpus: no corpus for source language 'fr' "
        r"\(the mapping has: de\)",
    ):
        prepare({"de": spec}, ["de", "fr"], opts, tokenizer=tokenizer, cache_dir=cache)
    assert not [p for p in cache.iterdir() if not p.name.endswith(".lock")]


# ------------------------------------------------------------------------------ links
def write_links(folder: Path, data, sym: str = "intersection") -> str:
    """A data.links file: each kept pair's word i linked to word i (where both exist)."""
    pair = data.pairs[0]
    lines = [
        " ".join(f"{i}-{i}" for i in range(min(len(e.src_words), len(e.tgt_words))))
        for e in pair.examples
    ]
    path = folder / f"de-en.{sym}.txt"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(folder / "{src}-{tgt}.{symmetrization}.txt")


def test_prepared_links_equal_attach_links_and_hit_without_recomputing(
    tokenizer, tmp_path, monkeypatch
):
    from _pipeline import attach_links

    specs = [
        LinkSpec("intersection"),
        LinkSpec("intersection", one_to_one=False, drop_identical=True, max_words=6),
    ]
    kw = {"pairs_per_language": None, "batch_size": 4, "seed": 0}
    ref = build_parallel_data(
        "demo", ["de"], "en", tokenizer=tokenizer, max_length=64, limit=30, **kw
    )
    option = write_links(tmp_path, ref)
    cfg = load_config(None, [f"data.links={option}", "data.languages=[de]"])
    ref_set = attach_links(ref, specs, cfg=cfg)
    opts = PrepareOptions(max_length=64, limit=30)
    cache = tmp_path / "cache"
    got = prepare(
        "demo",
        ["de"],
        opts,
        tokenizer=tokenizer,
        link_specs=specs,
        links_option=option,
        cache_dir=cache,
    )
    data = got.parallel_data(**kw)
    same_data(ref, data)  # includes every example's links per spec
    assert any(ex.links[specs[1]] != ex.links[specs[0]] for ex in data.pairs[0].examples)
    cl = got.pairs[0].corpus_links
    assert cl.digests == ref_set.corpus["de-en"].digests
    assert cl.sources == ref_set.corpus["de-en"].sources
    assert links_digest(list(cl.links["intersection"])) == cl.digests["intersection"]
    calls = []
    real = prep.corpus_links
    monkeypatch.setattr(prep, "corpus_links", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = prepare(
        "demo",
        ["de"],
        opts,
        tokenizer=tokenizer,
        link_specs=specs,
        links_option=option,
        cache_dir=cache,
    )
    assert again.cache_hit and calls == []
    same_data(ref, again.parallel_data(**kw))
    # another spec set: the words entry is a hit, the links entry is new
    other = prepare(
        "demo",
        ["de"],
        opts,
        tokenizer=tokenizer,
        link_specs=specs[:1],
        links_option=option,
        cache_dir=cache,
    )
    assert other.pairs[0].words_hit and other.pairs[0].links_hit is False and calls == [1]


def test_eflomal_links_are_drawn_once_and_reused(tokenizer, tmp_path, monkeypatch):
    """Cold caches: one eflomal run; the next prepare (and the eflomal cache) give the same."""
    from xalign.alignment import eflomal_aligner

    monkeypatch.setenv("XALIGN_CACHE_DIR", str(tmp_path / "xc"))
    runs = []
    real = eflomal_aligner._run_eflomal
    monkeypatch.setattr(
        eflomal_aligner, "_run_eflomal", lambda *a, **k: runs.append(1) or real(*a, **k)
    )
    spec = [LinkSpec("grow-diag-final-and", one_to_one=False)]
    opts = PrepareOptions(max_length=64, limit=30)
    a = prepare("demo", ["fr"], opts, tokenizer=tokenizer, link_specs=spec)
    b = prepare("demo", ["fr"], opts, tokenizer=tokenizer, link_specs=spec)
    assert len(runs) == 1 and b.cache_hit and not a.cache_hit
    assert (tmp_path / "xc" / "prepared" / a.pairs[0].links_key).is_dir()
    assert a.pairs[0].corpus_links.digests == b.pairs[0].corpus_links.digests
    assert a.pairs[0].corpus_links.sources["grow-diag-final-and"].startswith("eflomal ")
    links = [
        ex.links[spec[0]]
        for ex in b.parallel_data(pairs_per_language=None, batch_size=4, seed=0).pairs[0].examples
    ]
    assert sum(map(len, links)) > 30


# ------------------------------------------------------------------------------ xalign run
def weights(out: dict) -> dict[str, torch.Tensor]:
    return load_file(str(Path(out["output_dir"]) / "model" / "model.safetensors"))


def old_setup(cfg, encoder, link_specs, *, accelerator=None, announce=False, cache_dir=None):
    """What the trainer did before the prepare stage: build_parallel_data + attach_links."""
    from _pipeline import attach_links

    data = build_parallel_data(
        cfg.data.corpus,
        cfg.data.languages,
        cfg.data.target,
        pairs_per_language=cfg.data.pairs_per_language,
        batch_size=cfg.train.batch_size,
        seed=cfg.train.seed,
        min_words=cfg.data.min_words,
        max_words=cfg.data.max_words,
        max_ratio=cfg.data.max_ratio,
        limit=cfg.data.limit,
        tokenizer=encoder.tokenizer,
        max_length=encoder.max_length,
        unescape=cfg.data.unescape,
    )
    return data, attach_links(data, link_specs, cfg=cfg, accelerator=accelerator), None


@pytest.mark.parametrize("objective", ["sinkhorn", "l2"])
def test_a_run_from_prepared_data_equals_a_run_without_it(
    objective, smoke_overrides, tmp_path, monkeypatch, one_thread
):
    """Without the prepare stage, with a cold prepared cache, with a hit: the same weights bit
    for bit, the same data_stats.json, the same identity; the hit neither reads nor tokenises.
    l2 reads its links from a data.links file (eflomal draws new links on a cold cache)."""
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("XALIGN_CACHE_DIR", str(tmp_path / "xc"))
    # the demo corpus copied into FLORES-style files, given per language
    corpus = {}
    for lang in ("de", "fr"):
        lines = [(p.src, p.tgt) for p in read_parallel("demo", lang, "en")]
        corpus[lang] = write_corpus(tmp_path / f"corpus-{lang}", lines, name=lang)
    base = [o for o in smoke_overrides if not o.startswith("train.output_dir")]
    base.append(f"data.corpus={json.dumps(corpus)}")
    if objective == "l2":
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(base[0].split("=", 1)[1])
        for lang in ("de", "fr"):
            data = build_parallel_data(
                corpus,
                [lang],
                "en",
                pairs_per_language=None,
                batch_size=8,
                seed=0,
                limit=24,
                tokenizer=tok,
                max_length=128,
            )
            write_links(tmp_path, data)
            (tmp_path / "de-en.intersection.txt").rename(tmp_path / f"{lang}-en.links")
        base.append(f"data.links={tmp_path / '{src}-{tgt}.links'}")
    outs = {}
    for name in ("without", "cold", "hit"):
        monkeypatch.undo()
        monkeypatch.setenv("XALIGN_CACHE_DIR", str(tmp_path / "xc"))
        if name == "without":
            monkeypatch.setattr(prep, "prepare_run_data", old_setup)
        calls = counting(monkeypatch)
        outs[name] = run_json(
            ["-o", objective, *as_sets([*base, f"train.output_dir={tmp_path / name}"])]
        )
        if name == "hit":
            assert calls == {"read": 0, "moses": 0}
        elif name == "cold":
            assert calls == {"read": 2, "moses": 48}
    client = MlflowClient(smoke_overrides[-1].split("=", 1)[1])
    ref = weights(outs["without"])
    for name in ("cold", "hit"):
        other = weights(outs[name])
        assert all(torch.equal(ref[k], other[k]) for k in ref), name
    runs = {n: client.get_run(o["run_id"]) for n, o in outs.items()}
    identities = {n: r.data.tags["xalign.identity"] for n, r in runs.items()}
    assert len(set(identities.values())) == 1
    stats = {
        n: json.loads(
            Path(
                client.download_artifacts(o["run_id"], "data_stats.json", str(tmp_path / f"a-{n}"))
            ).read_text()
        )
        for n, o in outs.items()
    }
    assert stats["without"] == stats["cold"] == stats["hit"]
    assert stats["hit"]["de-en"]["read"] == 24


# ------------------------------------------------------------------------------ CLI
def test_cli_prepare_builds_then_hits(smoke_overrides, tmp_path, monkeypatch):
    monkeypatch.setenv("XALIGN_CACHE_DIR", str(tmp_path / "xc"))
    runner = CliRunner()
    args = ["prepare", *as_sets(smoke_overrides)]
    first = runner.invoke(app, [*args, "--json"])
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    assert summary["cache_hit"] is False and set(summary["pairs"]) == {"de-en", "fr-en"}
    assert summary["pairs"]["de-en"]["read"] == 24
    second = runner.invoke(app, args)
    assert second.exit_code == 0, second.output
    assert "prepared data: cache hit: 2 language pair(s)" in second.output
    assert "de-en" in second.stdout and "hit" in second.stdout
    # xalign run then finds the same entries
    calls = counting(monkeypatch)
    run_json(["-o", "sinkhorn", *as_sets(smoke_overrides)])
    assert calls["moses"] == 0  # (the demo corpus is read to identify it: no files to hash)


def test_cli_prepare_names_the_bad_line(smoke_overrides, tmp_path, monkeypatch):
    monkeypatch.setenv("XALIGN_CACHE_DIR", str(tmp_path / "xc"))
    spec = write_corpus(tmp_path / "c")
    Path(spec["src"]).write_bytes(b"ok\n\xc3(\n" + b"x\n" * 8)
    result = CliRunner().invoke(
        app,
        [
            "prepare",
            *as_sets(
                [*smoke_overrides, "data.languages=[de]", f"data.corpus={{de: {json.dumps(spec)}}}"]
            ),
        ],
    )
    assert result.exit_code == 1
    assert f"error: {spec['src']}:2:" in " ".join(result.output.split())
    bad = CliRunner().invoke(
        app, ["prepare", *as_sets([*smoke_overrides, "data.corpus={de: demo}"])]
    )
    assert bad.exit_code == 1 and "no corpus for source language 'fr'" in bad.output


# ------------------------------------------------------------------------------ language_spec
def test_language_spec_forms():
    assert language_spec("data/{src}-{tgt}.{lang}", "de") == "data/{src}-{tgt}.{lang}"
    corpus = {"de": "demo", "bg": {"src": "b.bg", "tgt": "b.en"}}
    assert language_spec(corpus, "de") == "demo"
    assert language_spec(corpus, "bg") == {"src": "b.bg", "tgt": "b.en"}


@pytest.mark.parametrize(
    ("corpus", "lang", "message"),
    [
        (
            {"de": "demo", "fr": "demo"},
            "el",
            "data.corpus: no corpus for source language 'el' (the mapping has: de, fr)",
        ),
        (
            {"de": ["a", "b"]},
            "de",
            "data.corpus.de: must be a corpus spec string or {src: FILE, tgt: FILE}, got a list",
        ),
        ({"de": {"src": "a"}}, "de", "data.corpus.de: a two-file entry needs exactly the keys"),
        ({"de": {"src": "a", "tgt": "b", "x": "c"}}, "de", "data.corpus.de: a two-file entry"),
        ({"de": {"src": "a", "tgt": 3}}, "de", "data.corpus.de: a two-file entry"),
        ({"de": "  "}, "de", "data.corpus.de: must be a corpus spec string"),
        (42, "de", "data.corpus: must be a corpus spec string or a mapping"),
    ],
)
def test_language_spec_errors_name_the_key(corpus, lang, message):
    with pytest.raises(CorpusError) as info:
        language_spec(corpus, lang)
    assert message in str(info.value)


def test_a_bad_corpus_mapping_is_a_config_error_naming_the_key():
    with pytest.raises(
        ConfigError,
        match=r"data\.corpus: no corpus for source language 'fr' "
        r"\(the mapping has: de\)",
    ):
        load_config(None, ["data.corpus={de: demo}", "data.languages=[de,fr]"])
    with pytest.raises(ConfigError, match=r"data\.corpus\.de: a two-file entry"):
        load_config(None, ["data.corpus={de: {src: a.txt}}", "data.languages=[de]"])


def test_two_file_entries_read_files_named_as_they_are(tmp_path):
    spec = write_corpus(tmp_path, name="deu")
    pairs = read_parallel(language_spec({"de": spec}, "de"), "de", "en")
    assert len(pairs) == 10 and pairs[0].src == "Das Haus ist klein ."
    assert pairs[6].where == f"{spec['src']}:7" and pairs[6].tgt == "The house is small ."
    Path(spec["tgt"]).write_text("one\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="eng_Latn.dev"):
        read_parallel(spec, "de", "en")


@pytest.mark.integration
def test_flores_pairs_read_1012_lines_and_prepare_like_the_trainer(
    shared_data, tokenizer, tmp_path
):
    flores = shared_data / "parallel" / "flores200_devtest"
    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "flores.yaml")
    corpus = {
        lang: {k: str(flores / Path(v).name) for k, v in spec.items()}
        for lang, spec in cfg.data.corpus.items()
    }
    for lang in cfg.data.languages:
        pairs = read_parallel(language_spec(corpus, lang), lang, "en")
        assert len(pairs) == 1012 and pairs[-1].where.endswith(".devtest:1012")
    langs = ["de", "el"]
    ref = build_parallel_data(
        corpus,
        langs,
        "en",
        pairs_per_language=None,
        batch_size=8,
        seed=0,
        tokenizer=tokenizer,
        max_length=128,
        max_words=64,
    )
    got = prepare(
        corpus,
        langs,
        PrepareOptions(max_length=128),
        tokenizer=tokenizer,
        cache_dir=tmp_path,
        num_proc=2,
    )
    same_data(ref, got.parallel_data(pairs_per_language=None, batch_size=8, seed=0))


RANK_SCRIPT = r"""
import json, os, sys
from pathlib import Path
from types import SimpleNamespace

out, model = Path(sys.argv[1]), sys.argv[2]
from accelerate import Accelerator

acc = Accelerator(cpu=True)
rank = acc.process_index
os.environ["XALIGN_CACHE_DIR"] = str(out / f"cache-rank{rank}")  # no shared cache folder
from transformers import AutoTokenizer

from xalign.alignment import eflomal_aligner
from xalign.config import load_config
from xalign.data.prepare import prepare_run_data
from xalign.links import LinkSpec

calls = []
real = eflomal_aligner._run_eflomal
eflomal_aligner._run_eflomal = lambda *a, **k: calls.append(1) or real(*a, **k)
cfg = load_config(None, [f"model.name={model}", "data.limit=30", "data.languages=[de]"])
encoder = SimpleNamespace(tokenizer=AutoTokenizer.from_pretrained(model), max_length=128)
spec = LinkSpec("intersection", one_to_one=False)
data, links, prepared = prepare_run_data(cfg, encoder, [spec], accelerator=acc)
(out / f"rank{rank}.json").write_text(json.dumps({
    "eflomal_runs": len(calls), "digest": links.corpus["de-en"].digest,
    "by_rank": links.by_rank,
    "links": [sorted(map(list, e.links[spec])) for e in data.pairs[0].examples]}))
acc.end_training()
"""


@pytest.mark.distributed
def test_a_rank_without_the_shared_cache_gets_the_main_process_links(tiny_model, tmp_path):
    """Two gloo ranks, each with its own cold XALIGN_CACHE_DIR: rank 0 prepares and runs
    eflomal once; rank 1 prepares its words, never runs eflomal, and trains on rank 0's links
    (received by broadcast)."""
    import os
    import socket
    import subprocess
    import sys

    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT, encoding="utf-8")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for rank in (0, 1):
        env = {
            **os.environ,
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": "2",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "OMP_NUM_THREADS": "1",
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, str(script), str(tmp_path), str(tiny_model)],
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
    assert r0["digest"] == r1["digest"] and r0["links"] == r1["links"]
    assert r0["by_rank"] == [{"de-en": r0["digest"]}] * 2
    assert sum(map(len, r0["links"])) > 30
    assert list((tmp_path / "cache-rank0" / "prepared").glob("*/manifest.json"))


@pytest.mark.parametrize("layout", ["two_files", "lang_template", "tsv"])
def test_unescaped_lines_are_counted_under_the_file_that_holds_them(tokenizer, tmp_path, layout):
    """Line 1: only the target is escaped; line 2: both; line 3: only the source; line 4:
    neither. Two files count each side under its own file (src 2, tgt 2); one TSV file
    counts each changed line once (3). Both loading paths agree."""
    rows = [
        ("Das Haus", "Tom &amp; Jerry"),
        ("Tom &apos;s Haus", "Tom &apos;s house"),
        ("a &lt; b", "a is less than b"),
        ("Ich lese", "I read"),
    ]
    if layout == "tsv":
        path = tmp_path / "de-en.tsv"
        path.write_text("".join(f"{s}\t{t}\n" for s, t in rows), encoding="utf-8")
        corpus, expected = str(path), {str(path): 3}
    else:
        src, tgt = tmp_path / "c.de", tmp_path / "c.en"
        src.write_text("".join(f"{s}\n" for s, _ in rows), encoding="utf-8")
        tgt.write_text("".join(f"{t}\n" for _, t in rows), encoding="utf-8")
        if layout == "two_files":
            corpus = {"de": {"src": str(src), "tgt": str(tgt)}}
        else:
            corpus = str(tmp_path / "c.{lang}")
        expected = {str(src): 2, str(tgt): 2}
    ref = build_parallel_data(
        corpus, ["de"], "en", pairs_per_language=None, batch_size=2, seed=0,
        tokenizer=tokenizer, max_length=64,
    )  # fmt: skip
    got = prepare(
        corpus, ["de"], PrepareOptions(max_length=64), tokenizer=tokenizer,
        cache_dir=tmp_path / "cache",
    )  # fmt: skip
    for data in (ref, got.parallel_data(pairs_per_language=None, batch_size=2, seed=0)):
        assert data.stats()["de-en"]["unescaped_lines"] == expected
