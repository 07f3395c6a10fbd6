"""``xalign export``: a training run's model as a standard Hugging Face folder with a model card.

The folder loads with ``AutoModel``/``AutoTokenizer`` (safetensors); a LoRA run is merged into
its base (peft ``merge_and_unload``) unless ``merge=False`` keeps the adapter (peft layout).
``sentence_transformers=True`` adds the sentence-transformers modules (``modules.json``,
``1_Pooling`` mean pooling, ``2_Normalize``) so ``SentenceTransformer(folder)`` gives
:func:`xalign.embed_sentences`' embeddings, L2-normalised. The card (``README.md``) is built by
:mod:`xalign.model_card` from the stored records only. ``push_to_hub`` uploads the folder with
``huggingface_hub`` (``create_repo`` + ``upload_folder``); the token is whatever
huggingface_hub finds itself (``HF_TOKEN``, or the one ``hf auth login`` stored) and is never
read, logged or printed here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xalign.errors import XalignError

#: Sentence length limit of the exported sentence-transformers model (subwords), as the
#: ``tatoeba`` task's default ``max_length``; capped by the model's position embeddings.
SENTENCE_MAX_LENGTH = 512
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
#: Files of a run's model folder that are not copied (peft writes a template card there).
_SKIP = {"README.md"}


class ExportError(XalignError, RuntimeError):
    """The run cannot be exported or pushed; the message names the run, folder or repo."""


@dataclass
class RunRecord:
    """What a training run stored: MLflow params, tags and artifacts, and its model folder."""

    run_id: str
    tracking_uri: str
    experiment_id: str
    params: dict[str, str]
    tags: dict[str, str]
    config: dict[str, Any]
    final_metrics: dict[str, float]
    model_dir: Path
    data_stats: dict[str, Any] = field(default_factory=dict)

    @property
    def objective(self) -> str:
        return self.tags.get("xalign.objective", "unknown")

    @property
    def lora(self) -> dict[str, Any] | None:
        return (self.config.get("model") or {}).get("lora") or None


@dataclass
class ExportResult:
    folder: Path
    card: str
    merged: bool
    sentence_transformers: bool
    compare_run_id: str | None = None
    pushed_url: str | None = None
    files: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------ the run
def find_run(ref: str, tracking_uri: str | None = None) -> RunRecord:
    """The training run ``ref``: an MLflow run id, a run's output folder or its ``model``.

    A folder's run is looked up in ``tracking_uri``, else in the store its ``config.yaml``
    names. Raises :class:`ExportError`: no such run or folder, not a training run, no model.
    """
    import yaml
    from mlflow.tracking import MlflowClient

    from xalign.tracking import KIND_TRAIN, TAG_KIND, TAG_MODEL_DIR, get_run, resolve_tracking_uri

    run_id, uri = ref, tracking_uri
    local = Path(ref).expanduser()
    if local.exists():
        run_dir = local.parent if local.name == "model" else local
        if not _RUN_ID.match(run_dir.name) or not (run_dir / "config.yaml").is_file():
            raise ExportError(
                f"{ref}: not a run's output folder (outputs/<run_id> with config.yaml) nor its "
                f"model folder; give the run id or that folder"
            )
        run_id = run_dir.name
        if uri is None:
            raw = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")) or {}
            uri = (raw.get("tracking") or {}).get("uri")
    elif not _RUN_ID.match(ref):
        raise ExportError(f"{ref!r} is neither an existing folder nor an MLflow run id")
    uri = resolve_tracking_uri(uri)
    run = get_run(run_id, uri)
    if run is None:
        raise ExportError(
            f"no MLflow run {run_id} in {uri} (pass --tracking-uri to name the store the run "
            f"was logged to)"
        )
    tags = dict(run.data.tags)
    if tags.get(TAG_KIND) != KIND_TRAIN:
        raise ExportError(
            f"run {run_id} is not a training run ({TAG_KIND}={tags.get(TAG_KIND)!r}); "
            f"export a run of `xalign run` or `xalign compare`"
        )
    if run.info.status != "FINISHED":
        raise ExportError(f"run {run_id} is {run.info.status}, not FINISHED: resume it first")
    model_dir = tags.get(TAG_MODEL_DIR)
    if not model_dir:
        raise ExportError(
            f"run {run_id} has no saved model (no {TAG_MODEL_DIR} tag: it ran with "
            f"train.save_model=false); train again with `--set train.save_model=true`"
        )
    if not Path(model_dir).is_dir():
        raise ExportError(f"run {run_id}: its saved model {model_dir} no longer exists")
    from xalign.evaluation.runs import _quiet_downloads

    client = MlflowClient(uri)
    with tempfile.TemporaryDirectory(prefix="xalign-export-") as tmp, _quiet_downloads():
        config = _artifact(client, run_id, "config.yaml", tmp, yaml.safe_load) or {}
        final = _artifact(client, run_id, "final_metrics.json", tmp, json.loads) or {}
        stats = _artifact(client, run_id, "data_stats.json", tmp, json.loads) or {}
    return RunRecord(
        run_id,
        uri,
        run.info.experiment_id,
        dict(run.data.params),
        tags,
        config,
        final,
        Path(model_dir),
        stats,
    )


def _artifact(client: Any, run_id: str, path: str, tmp: str, parse: Any) -> Any:
    """A run's artifact ``path`` parsed, or None when it has none."""
    from mlflow.exceptions import MlflowException

    try:
        local = client.download_artifacts(run_id, path, tmp)
    except (MlflowException, OSError):
        return None
    return parse(Path(local).read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------ export
def export_run(
    ref: str,
    to: Path,
    *,
    sentence_transformers: bool = False,
    merge: bool | None = None,
    push_to_hub: str | None = None,
    private: bool = False,
    tracking_uri: str | None = None,
) -> ExportResult:
    """Write run ``ref``'s model to the new folder ``to`` with a model card; optionally push it.

    ``merge``: None = merge a LoRA adapter (a plain model), False = keep the adapter.

    Raises:
        ExportError: bad run, ``to`` exists and is not empty, an option that does not fit the
            run, offline with ``push_to_hub``, or the Hub refused the upload.
    """
    from xalign.model_card import find_compare, model_card

    to = Path(to).expanduser()
    if to.exists() and (not to.is_dir() or any(to.iterdir())):
        raise ExportError(f"--to {to}: exists and is not an empty folder; choose a new folder")
    if push_to_hub:
        check_online(push_to_hub)
    record = find_run(ref, tracking_uri)
    lora = record.lora is not None
    merge = lora if merge is None else merge
    if merge and not lora:
        merge = False  # nothing to merge: a full fine-tune is already a plain model
    if lora and not merge:
        base = str((record.config.get("model") or {}).get("name", ""))
        if base.startswith("packaged:"):
            raise ExportError(
                f"run {record.run_id}: its adapter was trained on xalign's packaged model "
                f"({base}), which exists only inside xalign; export it merged (drop --no-merge)"
            )
        if sentence_transformers:
            raise ExportError("--sentence-transformers needs a merged model (drop --no-merge)")
    compare = find_compare(record)
    tmp = to.with_name(f".{to.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # weight loading/writing bars: not the user's business
    try:
        tmp.mkdir(parents=True)
        _write_model(record, tmp, merge=merge, lora=lora)
        if sentence_transformers:
            write_sentence_transformers(tmp)
        card = model_card(
            record, compare, merged=merge, sentence_transformers=sentence_transformers
        )
        (tmp / "README.md").write_text(card, encoding="utf-8")
        if to.exists():
            to.rmdir()
        os.replace(tmp, to)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ExportError(f"cannot write the export to {to}: {exc}") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    result = ExportResult(
        to,
        card,
        merge,
        sentence_transformers,
        compare.parent_run_id if compare else None,
        files=sorted(str(p.relative_to(to)) for p in to.rglob("*") if p.is_file()),
    )
    if push_to_hub:
        result.pushed_url = push_folder(to, push_to_hub, private=private, run_id=record.run_id)
    return result


def _write_model(record: RunRecord, folder: Path, *, merge: bool, lora: bool) -> None:
    """The model files: a copy of the run's folder, or (LoRA, merge) base + adapter merged."""
    if lora and merge:
        from xalign.encoders import load_encoder

        encoder = load_encoder(str(record.model_dir))  # merges the adapter onto its base
        encoder.model.save_pretrained(folder, safe_serialization=True)
        encoder.tokenizer.save_pretrained(folder)
        return
    for path in sorted(record.model_dir.iterdir()):
        if path.is_file() and path.name not in _SKIP:
            shutil.copy2(path, folder / path.name)
    if not any(folder.glob("*.safetensors")):
        raise ExportError(f"{record.model_dir}: no safetensors weights to export")


def write_sentence_transformers(folder: Path) -> None:
    """Add sentence-transformers modules to the HF model in ``folder``: Transformer (last
    layer, ``SENTENCE_MAX_LENGTH`` subwords), mean Pooling over the attention mask (special
    tokens included, as :func:`xalign.embed_sentences`) and Normalize (cosine = dot product).
    The HF weights in ``folder`` are kept as they are."""
    import transformers
    from sentence_transformers import SentenceTransformer, models

    from xalign.encoders.encoder import fit_max_length

    keep = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # the unused pooler "newly initialized"
    try:
        module = models.Transformer(str(folder))
        module.max_seq_length = fit_max_length(
            module.auto_model, module.tokenizer, SENTENCE_MAX_LENGTH
        )
        pooling = models.Pooling(module.get_embedding_dimension(), pooling_mode="mean")
        model = SentenceTransformer(modules=[module, pooling, models.Normalize()], device="cpu")
        model.save(str(folder), create_model_card=False)
    finally:
        transformers.logging.set_verbosity(verbosity)
    for name, data in keep.items():  # the model as exported (ST re-saves it with a pooler)
        (folder / name).write_bytes(data)


# ------------------------------------------------------------------------------ the Hub
def _hub_offline() -> bool:
    from xalign.encoders.encoder import _hub_offline as offline

    return offline()


def check_online(repo: str) -> None:
    """Refuse a push when ``HF_HUB_OFFLINE`` is set (read now, as huggingface_hub does)."""
    if _hub_offline():
        raise ExportError(
            f"--push-to-hub {repo}: HF_HUB_OFFLINE is set, so nothing can be uploaded; unset it "
            f"(or export without --push-to-hub and upload the folder later with "
            f"`hf upload {repo} FOLDER`)"
        )


def _connection_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean "the Hub cannot be reached": the OS's, and those of the HTTP
    client huggingface_hub uses (httpx2, httpx or requests, by its version)."""
    import importlib

    found: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for name, attrs in (
        ("httpx2", ("TransportError",)),
        ("httpx", ("TransportError",)),
        ("requests", ("ConnectionError", "Timeout")),
    ):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        found += [getattr(module, a) for a in attrs if hasattr(module, a)]
    from huggingface_hub.errors import OfflineModeIsEnabled

    found.append(OfflineModeIsEnabled)
    return tuple(found)


def push_folder(folder: Path, repo: str, *, private: bool = False, run_id: str = "") -> str:
    """Upload ``folder`` to the model repo ``repo`` (created if missing); returns its URL.

    Raises:
        ExportError: offline (``HF_HUB_OFFLINE`` or no connection) or the Hub refused
            (no token, no write access, bad repo id): the message names the repo, never the
            token; the exported folder stays complete.
    """
    check_online(repo)
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi()  # the token: HF_TOKEN or the stored login, found by huggingface_hub itself
    later = f"the export in {folder} is complete; upload it later with `hf upload {repo} {folder}`"
    try:
        url = api.create_repo(repo, repo_type="model", exist_ok=True, private=private)
        api.upload_folder(
            repo_id=repo,
            folder_path=str(folder),
            repo_type="model",
            commit_message=f"xalign export of run {run_id}".strip(),
        )
    except _connection_errors() as exc:
        raise ExportError(
            f"--push-to-hub {repo}: the Hugging Face Hub cannot be reached "
            f"({type(exc).__name__}); {later}"
        ) from exc
    except (HfHubHTTPError, ValueError) as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        why = f"HTTP {status}" if status else type(exc).__name__
        raise ExportError(
            f"--push-to-hub {repo}: the Hub refused the upload ({why}: "
            f"{str(exc).splitlines()[0][:200]}); check the repo id and that your token "
            f"(HF_TOKEN or `hf auth login`) may write to it; {later}"
        ) from exc
    return str(url)
