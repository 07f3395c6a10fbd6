"""Word alignment extraction (``xalign.word_align``) and the ``xalign align`` command."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from xalign.cli import app
from xalign.word_align import (
    OTOptions,
    align_vectors,
    cosine_similarity,
    mutual_argmax,
    ot_plan,
    plan_links,
    plot_plan,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SRC, TGT = "Das Haus ist klein .", "The house is small ."


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_mutual_argmax_on_a_constructed_similarity():
    sim = torch.tensor([[0.9, 0.1, 0.0],
                        [0.8, 0.2, 0.1],   # prefers column 0, which prefers row 0: no link
                        [0.0, 0.3, 0.7]])  # column 1 prefers row 2, which prefers column 2
    assert mutual_argmax(sim) == {(0, 0), (2, 2)}
    assert mutual_argmax(sim.T) == {(0, 0), (2, 2)}
    assert mutual_argmax(torch.zeros(0, 3)) == set()


def test_plan_links_argmax_and_threshold():
    plan = torch.tensor([[1 / 3, 0.0], [1 / 6, 1 / 6], [0.0, 1 / 3]])  # π·3 rows: 1 | ½ ½ | 1
    assert plan_links(plan, "argmax") == {(0, 0), (2, 1)}
    assert plan_links(plan, "threshold", 0.5) == {(0, 0), (1, 0), (1, 1), (2, 1)}
    assert plan_links(plan, "threshold", 0.6) == {(0, 0), (2, 1)}
    with pytest.raises(ValueError, match="unknown plan link method"):
        plan_links(plan, "itermax")


def test_align_vectors_recovers_a_permutation():
    g = torch.Generator().manual_seed(0)
    y = torch.randn(5, 16, generator=g, dtype=torch.float64)
    perm = [3, 0, 4, 1, 2]
    x = y[perm] + 0.05 * torch.randn(5, 16, generator=g, dtype=torch.float64)
    words = [f"w{i}" for i in range(5)]
    al = align_vectors(x, y, words, words, options=OTOptions(blur=0.05))
    expected = {(i, j) for i, j in enumerate(perm)}
    assert al.argmax_links == expected and al.ot_links == expected
    assert torch.allclose(al.plan.sum(1), torch.full((5,), 0.2, dtype=torch.float64), atol=1e-6)
    assert al.similarity.shape == (5, 5) and float(al.similarity.max()) <= 1 + 1e-12
    assert al.pairs({(0, 3)}) == [("w0", "w3")]


def test_ot_plan_is_a_coupling_of_uniform_word_clouds():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(4, 8, generator=g), torch.randn(6, 8, generator=g)
    plan = ot_plan(x.double(), y.double(), OTOptions(blur=0.3))
    assert plan.shape == (4, 6)
    assert torch.allclose(plan.sum(1), torch.full((4,), 0.25, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(plan.sum(0), torch.full((6,), 1 / 6, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(cosine_similarity(x, x).diagonal(), torch.ones(4, dtype=torch.float64))


def test_plot_plan_writes_a_png(tmp_path):
    plan = torch.full((3, 4), 1 / 12)
    out = plot_plan(plan, ["a", "b", "c"], ["w", "x", "y", "z"], tmp_path / "sub" / "p.png",
                    ot_links={(0, 1)}, argmax_links={(2, 3)})
    width, height = png_size(out)
    assert 300 < width < 3000 and 200 < height < 3000


def test_align_command_on_tiny_model(tiny_model, tmp_path):
    out = tmp_path / "plan.png"
    result = CliRunner().invoke(app, ["align", SRC, TGT, "--model", str(tiny_model),
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = result.stdout.splitlines()
    assert text[0] == "# OT plan" and "# mutual argmax (cosine)" in text
    links = [line for line in text if " - " in line]
    assert links and all(line.split(" - ")[0] in SRC.split() for line in links)
    width, height = png_size(out)
    assert width > 300 and height > 200


def test_align_command_json_and_layer(tiny_model, tmp_path):
    out = tmp_path / "plan.png"
    result = CliRunner().invoke(app, ["align", "Ein Haus .", "A small house .", "--model",
                                      str(tiny_model), "--layer", "1", "--method",
                                      "threshold", "--threshold", "0.2", "--out", str(out),
                                      "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["src_words"] == ["Ein", "Haus", "."] and len(data["tgt_words"]) == 4
    plan = torch.tensor(data["plan"])
    assert plan.shape == (3, 4) and float(plan.sum()) == pytest.approx(1.0, abs=1e-4)
    assert all(0 <= i < 3 and 0 <= j < 4 for i, j in data["ot_links"] + data["argmax_links"])
    assert data["layer"] == 1 and Path(data["out"]).exists()


def test_align_command_resolves_run_ids_and_output_dirs(tiny_model, tmp_path, tracking_uri):
    from mlflow.tracking import MlflowClient

    run_dir = tmp_path / "outputs" / "run"
    shutil.copytree(tiny_model, run_dir / "model")
    client = MlflowClient(tracking_uri)
    run_id = client.create_run(client.create_experiment("x"),
                               tags={"xalign.model_dir": str(run_dir / "model")}).info.run_id
    for ref in (run_id, str(run_dir)):
        result = CliRunner().invoke(app, ["align", SRC, TGT, "-m", ref, "--tracking-uri",
                                          tracking_uri, "-o", str(tmp_path / "p.png"), "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["model"] == str(run_dir / "model")
    bad = CliRunner().invoke(app, ["align", SRC, TGT, "-m", "0" * 32, "--tracking-uri",
                                   tracking_uri, "-o", str(tmp_path / "q.png")])
    assert bad.exit_code == 1 and "neither a local path" in bad.output
    bad = CliRunner().invoke(app, ["align", SRC, TGT, "-m", str(tiny_model), "--method", "x"])
    assert bad.exit_code == 1 and "--method" in bad.output


@pytest.mark.integration
def test_embedded_e5_aligns_haus_house_and_klein_small(tmp_path):
    out = tmp_path / "plan.png"
    result = CliRunner().invoke(app, ["align", SRC, TGT, "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    words = {(data["src_words"][i], data["tgt_words"][j]) for i, j in data["argmax_links"]}
    assert {("Haus", "house"), ("klein", "small")} <= words
    ot_words = {(data["src_words"][i], data["tgt_words"][j]) for i, j in data["ot_links"]}
    assert {("Haus", "house"), ("klein", "small")} <= ot_words
    assert png_size(out)[0] > 300
