"""Shared fixtures: a tiny randomly initialised BERT encoder and an isolated MLflow store."""

from __future__ import annotations

import atexit
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """The shared data folder by xalign's one rule (:func:`xalign.data_root`), or None."""
    from xalign.paths import data_root

    return data_root()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if path is None:
        pytest.skip("../shared/data is absent (set XALIGN_SHARED_DATA to its location)")
    return path


def build_tiny_encoder(
    directory: Path, *, seed: int = 0, hidden: int = 32, dropout: float = 0.0
) -> Path:
    """A 2-layer BERT with a WordPiece vocabulary learned from the demo corpus."""
    from xalign.testing import tiny_encoder

    return tiny_encoder(directory, seed=seed, hidden=hidden, dropout=dropout)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_encoder(tmp_path_factory.mktemp("tiny-bert"))


_MLFLOW_TEMPLATE: list[Path] = []


def migrated_sqlite_uri(path: Path) -> str:
    """``sqlite:///path``: a new, empty MLflow store, copied from one migrated per session.

    Creating a sqlite store runs MLflow's schema migrations (seconds); a copy of an empty,
    migrated store is the same store without them. Code paths that create a store from scratch
    are tested where a test builds its URI itself."""
    if not _MLFLOW_TEMPLATE:
        folder = tempfile.mkdtemp(prefix="xalign-mlflow-template-")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        template = Path(folder) / "mlflow.db"
        # in a child process, so the file is closed (and complete) when it is copied
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from mlflow.tracking import MlflowClient; "
                "MlflowClient(sys.argv[1]).search_experiments(max_results=1)",
                f"sqlite:///{template}",
            ],
            check=True,
            capture_output=True,
            cwd=folder,  # the Default experiment's artifact folder lives there
        )
        _MLFLOW_TEMPLATE.append(template)
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_MLFLOW_TEMPLATE[0], path)
    return f"sqlite:///{path}"


@pytest.fixture
def tracking_uri(tmp_path) -> str:
    return migrated_sqlite_uri(tmp_path / "mlflow.db")


@pytest.fixture
def smoke_overrides(tiny_model, tracking_uri, tmp_path) -> list[str]:
    """Overrides for a seconds-long run on the tiny model."""
    return [
        f"model.name={tiny_model}",
        "data.limit=24",
        "data.languages=[de,fr]",
        "train.batch_size=8",
        "train.grad_accum=2",
        f"train.output_dir={tmp_path / 'out'}",
        f"tracking.uri={tracking_uri}",
    ]


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a module: tiny models run faster (far faster on a busy machine)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _fresh_plugin_registry():
    """Every test discovers plugins afresh (tests add temporary plugins and env vars)."""
    from xalign.plugins import reset_registry

    reset_registry()
    yield
    reset_registry()


def run_json(args: list[str]) -> dict:
    """``xalign run -q --json ARGS`` in-process; asserts success, returns the JSON line."""
    from typer.testing import CliRunner

    from xalign.cli import app

    result = CliRunner().invoke(app, ["run", "-q", "--json", *args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return json.loads(result.stdout.strip().splitlines()[-1])


def as_sets(overrides: list[str]) -> list[str]:
    """``["a=1", "b=2"]`` -> ``["--set", "a=1", "--set", "b=2"]``."""
    return [arg for o in overrides for arg in ("--set", o)]
