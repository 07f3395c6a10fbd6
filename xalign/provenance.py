"""Content identities: what a reuse key hashes, so a reused number comes from the inputs it names.

- Files are hashed with sha256 (``hashlib.file_digest``; the whole shared data folder, about
  100 MB, in well under a second). Digests are never kept across processes: no stat tuple a
  user tool can restore stands in for content (``cp -p``, ``rsync -t`` and ``tar -x`` restore
  size and mtime over the same inode). Within one process a digest is reused while the file's
  (device, inode, size, mtime_ns, ctime_ns) are unchanged: the kernel sets ctime to "now" on
  every write, truncate, rename over and utime, and no user tool can set it back. A file whose
  ctime is less than :data:`RACY_SECONDS` old is not memoised (a second edit within the
  clock tick that stamped it would keep the same ctime; git's "racily clean" rule).
- A model is identified by the digest of every file of its folder (a model retrained into the
  same folder gets a new identity), ``packaged:NAME`` by the shipped file and converter
  version, a hub id by the commit of its locally cached snapshot.
- A training corpus by the sha256 of its sentence pairs as read (any corpus spec, hub ones
  included); task data by the files a task declares (:meth:`xalign.Task.inputs`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from xalign.digest import (  # noqa: F401 - the file digests, re-exported
    _MEMO,
    RACY_SECONDS,
    _sha256_file,
    file_digest,
    json_digest,
)
from xalign.errors import XalignError

logger = logging.getLogger(__name__)


def files_manifest(paths: Iterable[str | Path]) -> dict[str, str]:
    """``{absolute path: sha256}`` of existing files, sorted by path (missing ones skipped)."""
    out = {}
    for p in sorted({Path(p).expanduser().resolve() for p in paths}):
        if p.is_file():
            out[str(p)] = file_digest(p)
    return out


def tree_files(folder: Path) -> list[Path]:
    """Every regular file under ``folder`` (recursively; hidden files and folders skipped)."""
    out = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__")
        out += [Path(root) / f for f in sorted(files) if not f.startswith(".")]
    return out


def tree_digest(folder: Path) -> str:
    """sha256 over (relative path, sha256) of every file of ``folder``."""
    folder = Path(folder)
    return json_digest(
        [[p.relative_to(folder).as_posix(), file_digest(p)] for p in tree_files(folder)]
    )


# ------------------------------------------------------------------------------ task inputs
def data_roots(data_dir: str | Path | None) -> list[Path]:
    """The data folder tasks read (:func:`xalign.data_root`): ``[data_dir]`` when given, else
    the shared folder if one exists, else ``[]``."""
    from xalign.paths import data_root

    root = data_root(data_dir)
    if root is None or (data_dir is None and not root.is_dir()):
        return []
    return [root]


def data_files(data_dir: str | Path | None, folders: Sequence[str] | None) -> list[Path]:
    """Files a task may read from its data folder (see :meth:`xalign.Task.inputs`).

    ``folders`` None: every file under each root. Else the files directly in each root plus
    every file under ``root/folder``; a root holding none of ``folders`` is taken as the task
    folder itself (``--data-dir data/xnli``) and all its files count.
    """
    out: list[Path] = []
    for root in data_roots(data_dir):
        if not root.is_dir():
            continue
        present = [root / f for f in folders or () if (root / f).is_dir()]
        if folders is None or not present:
            out += tree_files(root)
            continue
        out += sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith("."))
        for sub in present:
            out += tree_files(sub)
    return out


def option_files(options: Any) -> list[Path]:
    """Files named by option values (strings, or lists of them, that are existing paths).

    A file counts with its siblings of the same stem (``deen.src-tgt`` + ``deen.gold``); a
    folder with every file under it.
    """
    if dataclasses.is_dataclass(options) and not isinstance(options, type):
        values: Iterable[Any] = dataclasses.asdict(options).values()
    elif isinstance(options, Mapping):
        values = options.values()
    else:
        return []
    out: list[Path] = []
    for value in values:
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if not isinstance(item, (str, os.PathLike)) or str(item) in ("", ".", ".."):
                continue
            path = Path(item).expanduser()
            try:
                if path.is_dir():
                    out += tree_files(path)
                elif path.is_file():
                    out += sorted(p for p in path.parent.glob(f"{path.stem}.*") if p.is_file())
            except OSError:
                continue
    return out


# ------------------------------------------------------------------------------ models, corpora
def model_identity(name: str, revision: str | None = None) -> str:
    """Content identity of a model reference (see the module docstring)."""
    from xalign.encoders.encoder import PACKAGED_PREFIX

    if name.startswith(PACKAGED_PREFIX):
        from xalign.encoders.e5 import CONVERTER_VERSION, packaged_e5_bin

        return f"{name}:converter-{CONVERTER_VERSION}:sha256-{file_digest(packaged_e5_bin())}"
    local = Path(name).expanduser()
    if local.is_dir():
        return f"files:{tree_digest(local)}"
    if local.is_file():
        return f"file:{file_digest(local)}"
    return f"hub:{name}@{_hub_commit(name, revision) or (revision or 'main') + ' (not cached)'}"


def _hub_commit(name: str, revision: str | None) -> str | None:
    """Commit of the locally cached snapshot of a hub model, if any (no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(name, "config.json", revision=revision)
    except Exception:  # an invalid repo id, no huggingface_hub: not cached
        return None
    return Path(found).parent.name if isinstance(found, str) else None


def corpus_digest(
    corpus: str | Mapping[str, Any], src: str, tgt: str, limit: int | None = None
) -> str:
    """sha256 of a language pair's sentence pairs as read (``data.corpus``, ``data.limit``)."""
    from xalign.data.corpus import language_spec, read_parallel

    return pairs_digest(read_parallel(language_spec(corpus, src), src, tgt, limit=limit))


_PAIR_JSON = json.JSONEncoder(ensure_ascii=False)  # what json.dumps(..., ensure_ascii=False) uses


def pairs_digest(pairs: Iterable[Sequence[str]]) -> str:
    """sha256 of sentence pairs (``(src, tgt[, where])``: the text only), one UTF-8 line
    ``json.dumps([src, tgt], ensure_ascii=False)`` per pair: :func:`corpus_digest` of pairs
    already in memory (the prepare step's ``corpus_digest``)."""
    digest = hashlib.sha256()
    encode = _PAIR_JSON.encode
    lines: list[str] = []
    for pair in pairs:
        lines.append(encode([pair[0], pair[1]]))
        if len(lines) == 4096:
            digest.update(("\n".join(lines) + "\n").encode())
            lines.clear()
    if lines:
        digest.update(("\n".join(lines) + "\n").encode())
    return digest.hexdigest()


def distribution_version(name: str) -> str:
    """Installed version of a distribution, or ``"absent"``."""
    try:
        return version(name)
    except PackageNotFoundError:
        return "absent"


def training_identity(components: Mapping[str, Any]) -> str:
    """The ``xalign.identity`` tag of a training run: sha256 of its content components
    (config fingerprint, corpus digests, initial model, link digests, software versions)."""
    return json_digest(dict(components))


# ------------------------------------------------------------------------------ training runs
IDENTITY_FORMAT = "xalign-train-identity/1"


class InputsChanged(XalignError, ValueError):
    """A run would go on with other inputs than it started with (resume)."""


def training_components(
    cfg: Any,
    *,
    plugins: Mapping[str, str],
    links: Mapping[str, str],
    corpus_digests: Mapping[str, str] | None = None,
    model_id: str | None = None,
) -> dict[str, Any]:
    """What a training run's numbers come from, for :func:`training_identity`.

    ``cfg``: the :class:`~xalign.config.RunConfig`; ``plugins``: objective name ->
    ``"distribution version"``; ``links``: pair -> links digest (pairs without links absent);
    ``corpus_digests``/``model_id``: already computed digests (else computed here).
    """
    from xalign._version import __version__
    from xalign.data.text import TOKENIZER_VERSION

    target = cfg.data.target
    known = dict(corpus_digests or {})
    corpus = {}
    for lang in cfg.data.languages:
        pair = f"{lang}-{target}"
        corpus[pair] = known.get(pair) or corpus_digest(
            cfg.data.corpus, lang, target, cfg.data.limit
        )
    return {
        "format": IDENTITY_FORMAT,
        "fingerprint": cfg.fingerprint(),
        "model": model_id or model_identity(cfg.model.name, cfg.model.revision),
        "corpus": corpus,
        "links": dict(sorted(links.items())),
        "software": {
            "xalign": __version__,
            "sacremoses": distribution_version("sacremoses"),
            "words": TOKENIZER_VERSION,
            **{f"plugin.{n}": v for n, v in sorted(plugins.items())},
        },
    }


def identity_params(components: Mapping[str, Any]) -> dict[str, str]:
    """MLflow params of a run's content components (plus recorded, unkeyed versions)."""
    out = {"model.content": components["model"]}
    out.update({f"data.corpus_hash.{p}": d for p, d in components["corpus"].items()})
    out.update({f"data.links_hash.{p}": d for p, d in components["links"].items()})
    out.update({f"software.{k}": v for k, v in components["software"].items()})
    for dist in ("torch", "transformers", "eflomal", "geomloss"):  # recorded, not keyed
        out[f"env.{dist}"] = distribution_version(dist)
    return out


def input_differences(
    params: Mapping[str, str], components: Mapping[str, Any], *, software: bool = True
) -> list[str]:
    """How a run's recorded params differ from ``components`` (empty: same inputs, or a run
    that recorded none)."""
    if "model.content" not in params:
        return []
    diffs = []
    if params["model.content"] != components["model"]:
        diffs.append(
            f"initial model ({params['model.content'][:40]} now {components['model'][:40]})"
        )
    for kind, label in (("corpus", "corpus_hash"), ("links", "links_hash")):
        old = {k.split(".", 2)[2]: v for k, v in params.items() if k.startswith(f"data.{label}.")}
        for pair in sorted(set(old) | set(components[kind])):
            before, now = old.get(pair), components[kind].get(pair)
            if before != now:
                diffs.append(
                    f"{kind} {pair} (sha256 {(before or 'none')[:12]} now {(now or 'none')[:12]})"
                )
    if software:
        for key, now in components["software"].items():
            before = params.get(f"software.{key}")
            if before != now:
                diffs.append(f"{key} {before or 'unrecorded'} now {now}")
    return diffs


def check_same_inputs(
    params: Mapping[str, str], components: Mapping[str, Any], *, what: str
) -> None:
    """Raise :class:`InputsChanged` when the model, corpus or links differ from the run's."""
    diffs = input_differences(params, components, software=False)
    if diffs:
        raise InputsChanged(
            f"{what} started on other inputs: {'; '.join(diffs)}. Resume with the same "
            f"model and corpus; for links pass the run's own artifacts: --set "
            f"data.links=<artifacts>/links/{{src}}-{{tgt}}.{{symmetrization}}.txt"
        )
