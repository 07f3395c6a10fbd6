"""Language codes with a region or script subtag (BCP-47: pt-BR, zh-Hant, sr-Latn, zh-Hans-CN,
en-GB) work in every option that takes a language (issue 20.5).

A pair travels as (source, target); its name ``pt-BR-en`` is a label, never split back
(``partition("-")`` read it as source ``pt``, target ``BR-en``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import as_sets, run_json
from typer.testing import CliRunner

from xalign.cli import app
from xalign.data.corpus import read_parallel
from xalign.data.links import corpus_links, known_links_digests, pair_name
from xalign.links import links_digest

CODES = [("pt-BR", "en"), ("zh-Hant", "en-GB"), ("sr-Latn", "en"), ("zh-Hans-CN", "en-GB")]
WORDS = [["Das", "Haus"], ["Ja", "."]]
TGT = [["The", "house"], ["Yes", "."]]


def write_links(folder: Path, src: str, tgt: str, sym: str = "intersection") -> None:
    (folder / f"{src}-{tgt}.{sym}.txt").write_text("0-0 1-1\n0-0 1-1\n", encoding="utf-8")


@pytest.mark.parametrize(("src", "tgt"), CODES)
def test_links_files_are_found_under_the_pair_codes(tmp_path, src, tgt):
    write_links(tmp_path, src, tgt)
    template = str(tmp_path / "{src}-{tgt}.{symmetrization}.txt")
    for option in (
        template,
        {f"{src}-{tgt}": template},  # keyed by the pair name
        {src: template},  # keyed by the source code
    ):
        cl = corpus_links(WORDS, TGT, ["intersection"], pair=(src, tgt), option=option)
        assert cl.pair == pair_name((src, tgt)) == f"{src}-{tgt}"
        assert cl.links["intersection"] == [{(0, 0), (1, 1)}] * 2
        assert cl.sources["intersection"] == str(tmp_path / f"{src}-{tgt}.intersection.txt")
        found = known_links_digests((src, tgt), ["intersection"], option=option)
        assert found == {"intersection": links_digest(cl.links["intersection"])}


def test_a_joined_name_is_refused_as_a_pair(tmp_path):
    write_links(tmp_path, "pt-BR", "en")
    template = str(tmp_path / "{src}-{tgt}.{symmetrization}.txt")
    with pytest.raises(TypeError, match="source, target"):
        corpus_links(WORDS, TGT, ["intersection"], pair="pt-BR-en", option=template)


def write_corpus(folder: Path, langs: list[str], target: str, n: int = 12) -> str:
    """``{src}-{tgt}.tsv`` files named by the codes (the demo de-en text in each)."""
    folder.mkdir(parents=True, exist_ok=True)
    pairs = read_parallel("demo", "de", "en", limit=n)
    for lang in langs:
        text = "".join(f"{p[0]}\t{p[1]}\n" for p in pairs)
        (folder / f"{lang}-{target}.tsv").write_text(text, encoding="utf-8")
    return str(folder / "{src}-{tgt}.tsv")


@pytest.mark.parametrize(
    ("langs", "target"), [(["pt-BR", "sr-Latn"], "en"), (["zh-Hant", "zh-Hans-CN"], "en-GB")]
)
def test_prepare_and_a_training_run_with_subtagged_codes(
    smoke_overrides, tmp_path, monkeypatch, one_thread, langs, target
):
    """prepare names each pair by its codes; a run reads the corpus and the data.links files
    named by them (l2 needs links; ``links/{tgt}/{src}...``: the name re-split as ``pt`` +
    ``BR-en`` looked for ``links/BR-en/pt...``)."""
    from transformers import AutoTokenizer

    from xalign.data.prepare import PrepareOptions, prepare

    monkeypatch.setenv("XALIGN_CACHE_DIR", str(tmp_path / "xc"))
    corpus = write_corpus(tmp_path / "corpus", langs, target)
    model = next(o for o in smoke_overrides if o.startswith("model.name=")).split("=", 1)[1]
    opts = PrepareOptions(target=target, max_length=128)
    got = prepare(corpus, langs, opts, tokenizer=AutoTokenizer.from_pretrained(model))
    assert [(p.src, p.tgt) for p in got.pairs] == [(lang, target) for lang in langs]
    kept = {p.src: p.words for p in got.pairs}
    for lang in langs:  # each kept pair's words: word i - word i
        lines = [
            " ".join(f"{i}-{i}" for i in range(min(len(s), len(t))))
            for s, t in zip(kept[lang]["src_words"], kept[lang]["tgt_words"], strict=True)
        ]
        path = tmp_path / "links" / target / f"{lang}.intersection.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    overrides = [o for o in smoke_overrides if not o.startswith("data.languages=")]
    overrides += [
        f"data.languages={json.dumps(langs)}",
        f"data.target={target}",
        f"data.corpus={corpus}",
        f"data.links={tmp_path / 'links' / '{tgt}' / '{src}.{symmetrization}.txt'}",
        "train.max_steps=1",
    ]
    summary = CliRunner().invoke(app, ["prepare", *as_sets(overrides), "--json"])
    assert summary.exit_code == 0, summary.output
    pairs = json.loads(summary.stdout)["pairs"]
    assert set(pairs) == {f"{lang}-{target}" for lang in langs}
    assert all(pairs[f"{lang}-{target}"]["read"] == 12 for lang in langs)
    out = run_json(["-o", "l2", *as_sets(overrides)])
    assert out["run_id"]


def test_tokenizer_rules_follow_the_primary_subtag():
    from xalign.data.text import tokenize_words

    # English apostrophe rules for en-GB; Portuguese prefixes for pt-BR ("Exmo." keeps its
    # dot before a capital in Portuguese; English prefixes do not list it)
    assert tokenize_words("Peter's", "en-GB") == tokenize_words("Peter's", "en") == ["Peter", "'s"]
    assert tokenize_words("o Exmo. Silva", "pt-BR") == ["o", "Exmo.", "Silva"]
    assert tokenize_words("o Exmo. Silva", "en") == ["o", "Exmo", ".", "Silva"]
    assert tokenize_words("我是 Peter's", "zh-Hant") == tokenize_words("我是 Peter's", "zh")
