"""``xalign export``: HF folder, model card from stored results, sentence-transformers, Hub."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import pytest
import torch
import yaml
from conftest import as_sets, build_tiny_encoder, migrated_sqlite_uri, run_json
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file
from test_evaluate import FakePlugin, log_train_run
from typer.testing import CliRunner

import xalign
from xalign.cli import app
from xalign.compare.report import format_p
from xalign.export import ExportError, export_run
from xalign.plugins import get_registry, reset_registry

SENTENCES = ["Das ist ein Haus.", "Hallo Welt, wie geht es dir heute Abend?", "x", "Merci ."]


@pytest.fixture(scope="module")
def compared(tmp_path_factory) -> dict:
    """A LoRA run trained by ``compare`` (sinkhorn vs base on the fake ``fake`` task)."""
    from xalign.compare import compare

    root = tmp_path_factory.mktemp("export")
    tiny = build_tiny_encoder(root / "tiny")
    uri = migrated_sqlite_uri(root / "mlflow.db")
    cfg = root / "cfg.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "model": {"name": str(tiny), "lora": {"r": 4, "alpha": 8}},
                "data": {"languages": ["de", "fr"], "limit": 12},
                "train": {"output_dir": str(root / "out"), "batch_size": 12, "lr": 1e-2},
                "tracking": {"uri": uri},
                "objectives": {"sinkhorn": {"blur": 0.1}},
            }
        )
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XALIGN_LOAD_PLUGINS", "sinkhorn")
        mp.chdir(root)
        reset_registry()
        get_registry().add(FakePlugin(), name="fake-tests", distribution="x-tests", version="9")
        report = compare(
            ["sinkhorn"], config_path=cfg, tasks=["fake"], seeds=1, show_progress=False
        )
        reset_registry()
    torch.set_num_threads(threads)
    (train,) = report.runs["train"]
    return {
        "uri": uri,
        "root": root,
        "tiny": tiny,
        "report": report.to_dict(),
        "run_id": train["run_id"],
        "parent": report.parent_run_id,
    }


def _front_matter(card: str) -> dict:
    found = re.match(r"^---\n(.*?)\n---\n", card, re.S)
    assert found, card[:200]
    return yaml.safe_load(found.group(1))


def _invoke(args: list[str]):
    return CliRunner().invoke(app, ["export", *args])


def test_card_figures_come_from_the_stored_run_and_compare(compared, tmp_path) -> None:
    out = tmp_path / "exported"
    result = export_run(compared["run_id"], out, tracking_uri=compared["uri"])
    card = (out / "README.md").read_text()
    assert card == result.card and result.compare_run_id == compared["parent"]
    meta = _front_matter(card)
    assert meta["language"] == ["de", "fr", "en"]
    assert meta["license"] == "unknown"  # the tiny base model's folder has no card
    assert {"xalign", "sinkhorn", "lora"} <= set(meta["tags"])
    assert meta["library_name"] == "transformers"
    params = MlflowClient(compared["uri"]).get_run(compared["run_id"]).data.params
    assert f"| optimizer steps | {params['train.total_steps']} |" in card
    assert f"| seed | {params['train.seed']} |" in card
    client = MlflowClient(compared["uri"])
    stats = json.loads(
        Path(
            client.download_artifacts(compared["run_id"], "data_stats.json", str(tmp_path))
        ).read_text()
    )
    kept = ", ".join(f"{pair} {stats[pair]['kept']}" for pair in ("de-en", "fr-en"))
    assert f"| sentence pairs trained on | {kept} (data.limit 12) |" in card
    assert f"by xalign {params['xalign.version']}" in card
    for pair in ("de-en", "fr-en"):
        assert f"- {pair}: `{params[f'data.corpus_hash.{pair}']}`" in card
    assert "blur=0.1," in card and "scaling=0.5 (default)" in card  # given vs default
    # every row of the objective in compare.json, with base, Δ and p, as stored
    rows = compared["report"]["rows"]
    mine = [r for r in rows if r["objective"] == "sinkhorn"]
    assert {r["language"] for r in mine} == {"de", "fr", "el"}
    for r in mine:
        b = next(x for x in rows if x["objective"] == "base" and x["language"] == r["language"])
        line = next(line for line in card.splitlines() if line.startswith(f"| {r['language']} |"))
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert float(cells[1]) == pytest.approx(b["mean"], rel=1e-5)
        assert float(cells[2]) == pytest.approx(r["mean"], rel=1e-5)
        assert float(cells[3]) == pytest.approx(r["delta_vs_base"], rel=1e-5)
        assert float(cells[3]) == pytest.approx(r["mean"] - b["mean"], rel=1e-4, abs=1e-6)
        resamples = compared["report"]["significance"]["resamples"]
        assert cells[4] == format_p(r["p_value"], resamples)  # as compare.md shows it
        assert cells[5] == ("yes *" if r["significant"] else "no")
    # the averages too, with their own test
    avgs = [a for a in compared["report"]["averages"] if a["objective"] == "sinkhorn"]
    assert avgs
    for a in avgs:
        line = next(x for x in card.splitlines() if x.startswith(f"| avg {a['scope']} |"))
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert float(cells[2]) == pytest.approx(a["mean"], rel=1e-5)
        assert cells[4] == format_p(a["p_value"], resamples) != "–"
        assert cells[5] == ("yes *" if a["significant"] else "no")
    assert compared["parent"] in card


def test_merged_lora_export_loads_with_automodel(compared, tmp_path) -> None:
    from transformers import AutoModel, AutoTokenizer

    out = tmp_path / "hf"
    result = export_run(compared["run_id"], out, tracking_uri=compared["uri"])
    assert result.merged and (out / "model.safetensors").is_file()
    assert not (out / "adapter_config.json").exists()
    model = AutoModel.from_pretrained(out).eval()
    tok = AutoTokenizer.from_pretrained(out)
    batch = tok(SENTENCES, padding=True, return_tensors="pt")
    run_model = Path(MlflowClient(compared["uri"]).get_run(compared["run_id"]).data.tags[
        "xalign.model_dir"
    ])  # fmt: skip
    enc = xalign.load_encoder(str(run_model)).eval()  # base + the run's adapter
    with torch.no_grad():
        ours = model(**batch).last_hidden_state
        theirs = enc(batch["input_ids"], batch["attention_mask"])
    assert torch.allclose(ours, theirs, atol=1e-5)
    base = load_file(str(compared["tiny"] / "model.safetensors"))
    merged = load_file(str(out / "model.safetensors"))
    key = "encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(merged[key], base[key])  # the adapter is in the weights
    assert torch.equal(merged["embeddings.word_embeddings.weight"],
                       base["embeddings.word_embeddings.weight"])  # fmt: skip


def test_no_merge_keeps_the_peft_adapter(compared, tmp_path) -> None:
    from peft import PeftModel
    from transformers import AutoModel

    out = tmp_path / "adapter"
    result = _invoke([compared["run_id"], "--to", str(out), "--no-merge", "--tracking-uri",
                      compared["uri"], "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["merged"] is False
    assert (out / "adapter_config.json").is_file() and not (out / "model.safetensors").exists()
    assert _front_matter((out / "README.md").read_text())["library_name"] == "peft"
    model = PeftModel.from_pretrained(AutoModel.from_pretrained(compared["tiny"]), out)
    assert any("lora_B" in n for n, _ in model.named_parameters())


def test_sentence_transformers_gives_xalign_embeddings(compared, tmp_path) -> None:
    from sentence_transformers import SentenceTransformer

    out = tmp_path / "st"
    result = _invoke([str(Path(compared["root"] / "out" / compared["run_id"])), "--to",
                      str(out), "--sentence-transformers"])  # fmt: skip
    assert result.exit_code == 0, result.output
    modules = json.loads((out / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[-1] for m in modules] == ["Transformer", "Pooling",
                                                                "Normalize"]  # fmt: skip
    pooling = json.loads((out / modules[1]["path"] / "config.json").read_text())
    assert pooling.get("pooling_mode_mean_tokens") or pooling.get("pooling_mode") == "mean"
    st = SentenceTransformer(str(out), device="cpu")
    theirs = torch.tensor(st.encode(SENTENCES, batch_size=2))
    enc = xalign.load_encoder(str(out), max_length=512).eval()
    ours = torch.nn.functional.normalize(xalign.embed_sentences(enc, SENTENCES), dim=-1)
    assert theirs.shape == ours.shape == (len(SENTENCES), 32)
    assert torch.allclose(theirs, ours, atol=1e-5)
    assert _front_matter((out / "README.md").read_text())["library_name"] == (
        "sentence-transformers"
    )


def test_full_finetune_export_copies_the_weights(tiny_model, tmp_path, tracking_uri) -> None:
    sets = as_sets([f"model.name={tiny_model}", "data.limit=12", "data.languages=[de]",
                    "train.batch_size=12", f"train.output_dir={tmp_path / 'o'}",
                    f"tracking.uri={tracking_uri}"])  # fmt: skip
    run = run_json(["--objective", "sinkhorn", *sets])
    out = tmp_path / "plain"
    result = export_run(str(Path(run["output_dir"]) / "model"), out)  # the model folder
    assert not result.merged and result.compare_run_id is None
    saved = load_file(str(Path(run["output_dir"]) / "model" / "model.safetensors"))
    exported = load_file(str(out / "model.safetensors"))
    assert saved.keys() == exported.keys()
    assert all(torch.equal(saved[k], exported[k]) for k in saved)
    card = (out / "README.md").read_text()
    assert "took part in no stored `xalign compare`" in card
    assert "lora" not in _front_matter(card)["tags"]


def test_bad_references_and_targets_are_clear_errors(compared, tmp_path) -> None:
    uri = compared["uri"]
    cases = [
        (["0" * 32], "no MLflow run " + "0" * 32),
        (["not-a-run"], "neither an existing folder nor an MLflow run id"),
        ([compared["parent"]], "is not a training run"),
        ([log_train_run(uri, None)], "has no saved model"),
        ([str(tmp_path)], "not a run's output folder"),
    ]
    for args, needle in cases:
        result = _invoke([*args, "--to", str(tmp_path / "x"), "--tracking-uri", uri])
        assert result.exit_code == 1, args
        assert needle in result.output, (needle, result.output)
        assert not (tmp_path / "x").exists()
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    result = _invoke([compared["run_id"], "--to", str(full), "--tracking-uri", uri])
    assert result.exit_code == 1 and "exists and is not an empty folder" in result.output
    assert (full / "keep.txt").read_text() == "mine"


def test_push_to_hub_goes_through_the_upload_api(compared, tmp_path, monkeypatch) -> None:
    from huggingface_hub import HfApi

    calls: dict = {}
    secret = "hf_" + "s3cr3t" * 6
    monkeypatch.setenv("HF_TOKEN", secret)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def create_repo(self, repo_id, **kw):
        calls["create"] = (repo_id, kw)
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, *, repo_id, folder_path, **kw):
        calls["upload"] = (repo_id, sorted(p.name for p in Path(folder_path).iterdir()), kw)
        calls["token_seen"] = self.token

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    out = tmp_path / "pushed"
    result = _invoke([compared["run_id"], "--to", str(out), "--push-to-hub", "me/aligned",
                      "--private", "--tracking-uri", compared["uri"]])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert calls["create"] == ("me/aligned", {"repo_type": "model", "exist_ok": True,
                                              "private": True})  # fmt: skip
    repo, files, kw = calls["upload"]
    assert repo == "me/aligned" and {"README.md", "model.safetensors"} <= set(files)
    assert compared["run_id"] in kw["commit_message"]
    assert calls["token_seen"] is None  # huggingface_hub reads HF_TOKEN itself
    assert "https://huggingface.co/me/aligned" in result.output
    assert secret not in result.output


def test_the_hub_refusing_names_the_repo_not_the_token(compared, tmp_path, monkeypatch) -> None:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    secret = "hf_" + "t0ken" * 6
    monkeypatch.setenv("HF_TOKEN", secret)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    client = importlib.import_module(_hub_transport_error().__module__.split(".")[0])
    url = "https://huggingface.co/api/repos/create"
    response = client.Response(403, request=client.Request("POST", url))

    def forbidden(self, repo_id, **kw):
        raise HfHubHTTPError("403 Forbidden: you may not write to other/repo", response=response)

    monkeypatch.setattr(HfApi, "create_repo", forbidden)
    result = _invoke([compared["run_id"], "--to", str(tmp_path / "o"), "--push-to-hub",
                      "other/repo", "--tracking-uri", compared["uri"]])  # fmt: skip
    assert result.exit_code == 1
    assert "--push-to-hub other/repo: the Hub refused the upload" in result.output
    assert "403 Forbidden" in result.output and secret not in result.output


def test_push_is_refused_offline_before_anything_is_written(compared, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "never"
    with pytest.raises(ExportError, match="HF_HUB_OFFLINE is set"):
        export_run(compared["run_id"], out, push_to_hub="me/x", tracking_uri=compared["uri"])
    assert not out.exists()


def _hub_transport_error() -> type[Exception]:
    """The connection error of the HTTP client this huggingface_hub uses."""
    import importlib.util

    for name in ("httpx2", "httpx"):
        if importlib.util.find_spec(name):
            return importlib.import_module(name).ConnectError
    import requests

    return requests.ConnectionError


@pytest.mark.parametrize("error", [_hub_transport_error(), ConnectionRefusedError, TimeoutError])
def test_a_connection_error_keeps_the_export_and_says_how_to_upload(
    compared, tmp_path, monkeypatch, error
) -> None:
    from huggingface_hub import HfApi

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def unreachable(self, repo_id, **kw):
        raise error("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(HfApi, "create_repo", unreachable)
    out = tmp_path / "kept"
    with pytest.raises(ExportError, match="cannot be reached") as info:
        export_run(compared["run_id"], out, push_to_hub="me/x", tracking_uri=compared["uri"])
    assert f"({error.__name__})" in str(info.value) and "hf upload me/x" in str(info.value)
    assert (out / "README.md").is_file() and (out / "model.safetensors").is_file()


def test_unfinished_runs_and_packaged_adapters_unmerged_are_refused(compared, tmp_path) -> None:
    client = MlflowClient(compared["uri"])
    exp = client.get_experiment_by_name("xalign").experiment_id
    model = tmp_path / "model"
    model.mkdir()
    (model / "adapter_config.json").write_text('{"base_model_name_or_path": "packaged:x"}')
    tags = {"xalign.kind": "train", "xalign.objective": "sinkhorn",
            "xalign.model_dir": str(model)}  # fmt: skip
    running = client.create_run(exp, tags=tags).info.run_id
    with pytest.raises(ExportError, match=f"run {running} is RUNNING, not FINISHED"):
        export_run(running, tmp_path / "a", tracking_uri=compared["uri"])
    packaged = client.create_run(exp, tags=tags).info.run_id
    config = {"model": {"name": "packaged:multilingual-e5-small", "lora": {"r": 2}}}
    client.log_text(packaged, yaml.safe_dump(config), "config.yaml")
    client.set_terminated(packaged)
    with pytest.raises(ExportError, match="drop --no-merge"):
        export_run(packaged, tmp_path / "b", merge=False, tracking_uri=compared["uri"])
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_card_marks_averages_of_an_older_compare_report_as_not_tested() -> None:
    from xalign.model_card import _avg_test

    assert _avg_test({"scope": "seen", "mean": 0.5}, 1000) == "– | not tested"
    assert _avg_test({"p_value": 0.0, "significant": True}, 1000) == "<0.001 | yes *"
    assert _avg_test({"p_value": 0.25, "significant": False}, 1000) == "0.250 | no"
