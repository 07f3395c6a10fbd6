"""The ``xalign align`` command and its heatmap (``xalign.alignment.plot``).

Extraction itself is tested in ``test_extract.py``; the CLI's links are checked against the
``align`` task's in ``test_task_align.py``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from xalign.alignment.plot import MAX_INCHES, plot_plan
from xalign.cli import app
from xalign.data import tokenize_words

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SRC, TGT = "Das Haus ist klein .", "The house is small ."
MAX_PIXELS = int(MAX_INCHES * 120)


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def run_align(args: list[str]):
    if "--src-lang" not in args:
        args = [*args, "--src-lang", "de"]
    result = CliRunner().invoke(app, ["align", *args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def align_json(model, src: str, tgt: str, *args: str) -> tuple[dict, str]:
    result = run_align([src, tgt, "--model", str(model), "--json", *args])
    return json.loads(result.stdout), result.stderr


# ------------------------------------------------------------------------ the heatmap


def test_plot_plan_writes_a_png_with_grey_unaligned_rows(tmp_path):
    plan = torch.full((3, 4), 1 / 8)
    plan[1] = float("nan")  # a word without a vector
    out = plot_plan(
        plan,
        ["a", "\x7f", "c"],
        ["w", "x", "y", "z"],
        tmp_path / "sub" / "p.png",
        ot_links={(0, 1)},
        argmax_links={(2, 3)},
    )
    width, height = png_size(out)
    assert 300 < width < 3000 and 200 < height < 3000


def test_plot_size_is_capped_for_long_sentences(tmp_path):
    # 650 x 650 words used to ask for a 360 x 300 inch figure (tens of GB); now <= 20 inches
    n = 650
    plan = torch.full((n, n), 1 / n**2)
    words = [f"w{k}" for k in range(n)]
    out = plot_plan(
        plan,
        words,
        words,
        tmp_path / "big.png",
        ot_links={(k, k) for k in range(n)},
        argmax_links={(k, k) for k in range(n)},
    )
    width, height = png_size(out)
    assert width <= MAX_PIXELS and height <= MAX_PIXELS and width > 1000


# ------------------------------------------------------------------------ output and options


def test_align_command_text_output_and_default_plot(tiny_model, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.chdir(tmp_path)
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    result = run_align([SRC, TGT, "--model", str(tiny_model)])
    text = result.stdout.splitlines()
    assert text[0] == (
        "# mutual argmax (cosine) [--method argmax: the links the align task scores]"
    )
    assert "# OT plan (threshold 1)" in text
    links = [line for line in text if " - " in line]
    assert links and all(line.split(" - ")[0] in SRC.split() for line in links)
    (plan,) = (tmp_path / "tmp").glob("xalign-plan-*.png")  # never in the working directory
    assert f"plan heatmap: {plan}" in result.stderr and not list(tmp_path.glob("*.png"))
    width, height = png_size(plan)
    assert width > 300 and height > 200
    result = run_align([SRC, TGT, "--model", str(tiny_model), "--method", "ot"])
    assert result.stdout.startswith("# OT plan (threshold 1) [--method ot: the links the align")


def test_json_output_and_plot_policy(tiny_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data, _ = align_json(
        tiny_model,
        "Ein Haus .",
        "A small house .",
        "--layer",
        "1",
        "--method",
        "ot",
        "--threshold",
        "0.2",
    )
    assert data["src_words"] == ["Ein", "Haus", "."] and len(data["tgt_words"]) == 4
    plan = torch.tensor(data["plan"])
    # sinkhorn_iters 0 (the task's default): geomloss's annealing only, so the marginals are
    # approximate (transport_plan's docstring: off by up to tens of percent)
    assert plan.shape == (3, 4) and float(plan.sum()) == pytest.approx(1.0, abs=0.5)
    assert data["links"] == data["ot_links"] and data["method"] == "ot"
    assert all(0 <= i < 3 and 0 <= j < 4 for i, j in data["ot_links"] + data["argmax_links"])
    assert data["layer"] == 1 and data["options"]["threshold"] == 0.2
    assert data["truncated_words"] == {"src": 0, "tgt": 0}
    # --json draws nothing unless --out is given
    assert data["out"] is None and not (tmp_path / "plan.png").exists()
    # with extra Sinkhorn updates the plan's marginals are the uniform weights 1/N and 1/M
    data, _ = align_json(
        tiny_model, "Ein Haus .", "A small house .", "--layer", "1", "--method", "ot",
        "--sinkhorn-iters", "500",
    )  # fmt: skip
    plan = torch.tensor(data["plan"])
    assert float(plan.sum()) == pytest.approx(1.0, abs=1e-3)
    assert plan.sum(1).tolist() == pytest.approx([1 / 3] * 3, abs=1e-3)
    assert plan.sum(0).tolist() == pytest.approx([1 / 4] * 4, abs=1e-3)
    data, _ = align_json(tiny_model, SRC, TGT, "--out", "sub/p.png")
    assert data["out"] == "sub/p.png" and png_size(tmp_path / "sub" / "p.png")[0] > 300
    data, _ = align_json(tiny_model, SRC, TGT, "--out", "q.png", "--no-plot")
    assert data["out"] is None and not (tmp_path / "q.png").exists()
    result = run_align([SRC, TGT, "--model", str(tiny_model), "--no-plot"])
    assert "plan heatmap" not in result.stderr and not (tmp_path / "plan.png").exists()


def test_align_command_resolves_run_ids_and_output_dirs(tiny_model, tmp_path, tracking_uri):
    from mlflow.tracking import MlflowClient

    run_dir = tmp_path / "outputs" / "run"
    shutil.copytree(tiny_model, run_dir / "model")
    client = MlflowClient(tracking_uri)
    run_id = client.create_run(
        client.create_experiment("x"), tags={"xalign.model_dir": str(run_dir / "model")}
    ).info.run_id
    for ref in (run_id, str(run_dir)):
        result = run_align([SRC, TGT, "-m", ref, "--tracking-uri", tracking_uri, "--json"])
        assert json.loads(result.stdout)["model"] == str(run_dir / "model")
    bad = CliRunner().invoke(
        app,
        ["align", SRC, TGT, "-m", "0" * 32, "--tracking-uri", tracking_uri, "--no-plot"]
        + ["--src-lang", "de"],
    )
    assert bad.exit_code == 1 and "neither a local path" in bad.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--method", "x"],
            "--method: method must be one of ('argmax', 'ot', 'softmax', 'itermax')",
        ),
        (["--softmax-threshold", "1"], "--softmax-threshold: softmax_threshold must be in (0, 1)"),
        (["--itermax-rounds", "0"], "--itermax-rounds: itermax_rounds must be >= 1"),
        (["--threshold", "0"], "--threshold: threshold must be in (0, 1], got 0.0"),
        (["--pooling", "max"], "--pooling: pooling must be one of"),
        (["--sinkhorn-iters", "-1"], "--sinkhorn-iters: sinkhorn_iters must be >= 0"),
    ],
)
def test_bad_options_are_named(tiny_model, args, message):
    bad = CliRunner().invoke(app, ["align", SRC, TGT, "-m", str(tiny_model), *args])
    assert bad.exit_code == 1 and message in bad.output, bad.output  # before --src-lang
    bad = CliRunner().invoke(
        app, ["align", SRC, TGT, "-m", str(tiny_model), "--src-lang", "de", *args]
    )
    assert bad.exit_code == 1 and message in bad.output, bad.output
    assert "Traceback" not in bad.output


@pytest.mark.parametrize("lang", [[], ["--src-lang", " "]])
def test_the_source_language_is_required(tiny_model, tmp_path, monkeypatch, lang):
    monkeypatch.chdir(tmp_path)
    bad = CliRunner().invoke(app, ["align", SRC, TGT, "-m", str(tiny_model), *lang])
    assert bad.exit_code == 1, bad.output
    assert "error: --src-lang is required" in bad.output and "--src-lang de" in bad.output
    assert not list(tmp_path.iterdir())  # nothing drawn


def test_an_empty_sentence_is_an_error(tiny_model):
    bad = CliRunner().invoke(
        app, ["align", "  ", TGT, "-m", str(tiny_model), "--no-plot", "--src-lang", "de"]
    )
    assert bad.exit_code == 1 and "both sentences need at least one word" in bad.output


# ------------------------------------------------------------------------ positions kept


INVISIBLE = ["\x7f", "\x01", "\x85", "\u200b", "\u200d", "\u2060", "\ufeff"]


def _insert(words: list[str], char: str, where: str) -> str:
    k = {"start": 0, "middle": len(words) // 2, "end": len(words)}[where]
    return " ".join([*words[:k], char, *words[k:]])


@pytest.fixture(scope="module")
def clean_links(tiny_model) -> dict:
    return align_json(tiny_model, SRC, TGT, "--method", "ot", "--threshold", "0.5")[0]


@pytest.mark.parametrize("char", INVISIBLE)
@pytest.mark.parametrize("where", ["start", "middle", "end"])
def test_zero_subword_words_keep_every_other_words_links(tiny_model, clean_links, char, where):
    # Such a word adds no subword, so every other word has the same vector as without it:
    # the links must be the clean sentence's links with positions shifted past the word.
    src_clean, tgt_clean = SRC.split(), TGT.split()
    clean = clean_links
    assert clean["ot_links"] and clean["argmax_links"]
    src, tgt = _insert(src_clean, char, where), _insert(tgt_clean, "\x7f", "middle")
    data, stderr = align_json(tiny_model, src, tgt, "--method", "ot", "--threshold", "0.5")
    src_words, tgt_words = tokenize_words(src, "de"), tokenize_words(tgt, "en")
    assert data["src_words"] == src_words and data["tgt_words"] == tgt_words
    # positions of the clean words in the sentences as tokenised (the tokenizer may drop char)
    smap = [k for k, w in enumerate(src_words) if w != char]
    tmap = [k for k, w in enumerate(tgt_words) if w != "\x7f"]
    assert [src_words[k] for k in smap] == src_clean and [tgt_words[k] for k in tmap] == tgt_clean
    for key in ("links", "argmax_links", "ot_links"):
        assert {tuple(x) for x in data[key]} == {(smap[i], tmap[j]) for i, j in clean[key]}
    assert data["unaligned"]["src"] == {
        "no_subwords": [k for k in range(len(src_words)) if k not in smap],
        "truncated": [],
    }
    assert data["unaligned"]["tgt"] == {"no_subwords": [2], "truncated": []}
    assert "note: target: 1 word(s) with no subwords are left unaligned: 2 '<U+007F>'" in stderr
    plan = data["plan"]
    assert all(v is None for k in data["unaligned"]["src"]["no_subwords"] for v in plan[k])
    assert all(row[2] is None for row in plan)  # the target's U+007F column


@pytest.mark.integration
def test_e5_aligns_around_a_control_character():
    src = "Das \x7f Haus ist klein ."
    for method in ("argmax", "ot"):
        data, stderr = align_json("packaged:multilingual-e5-small", src, TGT, "--method", method)
        words = {(data["src_words"][i], data["tgt_words"][j]) for i, j in data["links"]}
        assert words == {
            ("Das", "The"),
            ("Haus", "house"),
            ("ist", "is"),
            ("klein", "small"),
            (".", "."),
        }, method
        if "\x7f" in data["src_words"]:  # Moses keeps it today; the links must not shift
            assert data["src_words"] == ["Das", "\x7f", "Haus", "ist", "klein", "."]
            assert data["unaligned"]["src"]["no_subwords"] == [1]
            assert "1 word(s) with no subwords are left unaligned: 1 '<U+007F>'" in stderr
    # the same through the API with the word lists given: U+007F at start, middle and end
    import xalign
    from xalign.alignment.extract import align_sentences

    encoder = xalign.load_encoder("packaged:multilingual-e5-small").eval()
    src_words, tgt_words = SRC.split(), TGT.split()
    for k in (0, 2, 5):
        src_k = [*src_words[:k], "\x7f", *src_words[k:]]
        tgt_k = [*tgt_words[: 4 - k // 2], "\x7f", *tgt_words[4 - k // 2 :]]
        al = align_sentences(encoder, src_k, tgt_k, "de", "en", xalign.ExtractConfig())
        assert al.src_no_subwords == [k] and al.tgt_no_subwords == [4 - k // 2]
        assert set(al.pairs(al.links)) == set(zip(src_words, tgt_words, strict=True)), k


@pytest.mark.integration
def test_embedded_e5_aligns_haus_house_and_klein_small(tmp_path):
    out = tmp_path / "plan.png"
    data, _ = align_json("packaged:multilingual-e5-small", SRC, TGT, "--out", str(out))
    for key in ("argmax_links", "ot_links"):
        words = {(data["src_words"][i], data["tgt_words"][j]) for i, j in data[key]}
        assert {("Haus", "house"), ("klein", "small")} <= words
    assert png_size(out)[0] > 300


# ------------------------------------------------------------------------ degenerate clouds


@pytest.mark.parametrize("method", ["argmax", "ot"])
def test_one_identical_word_each_side(tiny_model, method):
    # one word each, same vector: the OT problem has zero diameter (geomloss used to fail)
    data, _ = align_json(tiny_model, "Berlin", "Berlin", "--method", method, "--src-lang", "en")
    assert data["plan"] == [[1.0]] and data["links"] == [[0, 0]]
    assert data["argmax_links"] == data["ot_links"] == [[0, 0]]


@pytest.mark.integration
def test_e5_berlin_berlin():
    data, _ = align_json("packaged:multilingual-e5-small", "Berlin", "Berlin", "--method", "ot")
    assert data["plan"] == [[1.0]] and data["links"] == [[0, 0]]


# ------------------------------------------------------------------------ long input


def test_long_sentence_is_truncated_with_a_warning(tiny_model, tmp_path, monkeypatch):
    # the tiny model has 128 positions: [CLS] + 126 subwords + [SEP]. 300 one-subword words
    # on the source side -> 174 truncated; the target (40 words) fits.
    monkeypatch.chdir(tmp_path)
    words = ["the", "is", "very", "and", "."]
    src = " ".join(words[k % 5] for k in range(300))
    tgt = " ".join(words[k % 5] for k in range(40))
    data, stderr = align_json(tiny_model, src, tgt, "--src-lang", "en")
    assert data["truncated_words"] == {"src": 174, "tgt": 0}
    assert data["unaligned"]["src"]["truncated"] == list(range(126, 300))
    assert data["max_length"] == 128 and len(data["src_words"]) == 300
    assert (
        "warning: source: 174 of 300 words are past the model's 128-subword limit and are "
        "left unaligned (truncated, from word 126 'is')"
    ) in stderr.replace("\n", " ")
    assert len(data["plan"]) == 300 and all(v is None for v in data["plan"][200])
    assert all(i < 126 for i, _ in data["links"] + data["ot_links"])
    assert data["out"] is None and not any(tmp_path.iterdir())
    result = run_align([src, tgt, "-m", str(tiny_model), "--src-lang", "en", "-o", "long.png"])
    width, height = png_size(tmp_path / "long.png")
    assert width <= MAX_PIXELS and height <= MAX_PIXELS
    assert "174 of 300 words" in result.stderr


@pytest.mark.parametrize(
    ("src", "words"),
    [
        ("Er sagte &quot;Hallo&quot; &amp; ging", ["Er", "sagte", '"', "Hallo", '"', "&", "ging"]),
        ("Tom &amp; Anna &#124; &lt;b&gt;", ["Tom", "&", "Anna", "|", "<", "b", ">"]),
        ("Peter &apos;s Haus", ["Peter", "'", "s", "Haus"]),
    ],
)
def test_moses_entities_are_unescaped_like_training_data(tiny_model, src, words):
    out, _ = align_json(tiny_model, src, TGT)
    assert out["src_words"] == words
    raw, _ = align_json(tiny_model, src, TGT, "--no-unescape")
    assert any(w in raw["src_words"] for w in ("quot", "amp", "apos", "#124"))


def test_run_id_with_an_unreachable_store_says_so(tiny_model):
    bad = CliRunner().invoke(
        app,
        [
            "align",
            SRC,
            TGT,
            "-m",
            "0123456789abcdef" * 2,
            "--tracking-uri",
            "http://127.0.0.1:9",
            "--no-plot",
            "--src-lang",
            "de",
        ],
    )
    assert bad.exit_code == 1 and "unreachable" in bad.output and "127.0.0.1:9" in bad.output
