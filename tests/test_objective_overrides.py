"""``--set objectives.NAME.KEY=VALUE`` next to a chosen objective set: with ``--objective``
(``xalign run``) or in ``xalign compare``, such an override sets an option of NAME; it never
adds NAME to a row that trains another objective."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from xalign.cli import app
from xalign.cli.compare import check_config_model
from xalign.compare.orchestrate import (
    cell_overrides,
    check_objective_overrides,
    joint_options,
    training_config,
)
from xalign.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]
FLORES = ROOT / "configs" / "flores.yaml"
SELFLINKS = ROOT / "configs" / "flores-selflinks.yaml"


@pytest.mark.parametrize("other", ["sinkhorn", "contrastive", "l2:0.5"])
def test_compare_cell_trains_its_objective_alone(other):
    overrides = ["objectives.l2.pooling=mean", "train.lr=3e-4"]
    cell = training_config(FLORES, overrides, other, 1)
    name = other.partition(":")[0]
    assert set(cell.objectives) == {name}
    assert cell.train.lr == 3e-4 and cell.train.seed == 1
    if name == "l2":  # its own override holds, with the weight of NAME:WEIGHT
        assert cell.objectives["l2"]["pooling"] == "mean"
        assert cell.objectives["l2"]["weight"] == 0.5


def test_compare_cell_keeps_the_file_options_of_its_objective():
    """The config's own objective (contrastive) keeps its file options in its row; an l2 row
    of the same comparison gets l2's override and none of contrastive's."""
    overrides = ["objectives.l2.pooling=mean", "objectives.contrastive.temperature=0.2"]
    con = training_config(SELFLINKS, overrides, "contrastive", 0)
    l2 = training_config(SELFLINKS, overrides, "l2", 0)
    assert set(con.objectives) == {"contrastive"} and set(l2.objectives) == {"l2"}
    assert con.objectives["contrastive"]["temperature"] == 0.2
    assert con.objectives["contrastive"]["pooling"] == "mean"  # from the file
    assert l2.objectives["l2"]["pooling"] == "mean"


def test_cell_overrides_filter_only_other_objectives():
    given = [
        "objectives.l2.pooling=mean",
        "objectives.sinkhorn.blur=0.1",
        "train.lr=1e-4",
        "data.limit=8",
    ]
    assert cell_overrides(given, "sinkhorn:2") == given[1:]
    assert cell_overrides(given, "l2") == [given[0], *given[2:]]
    assert cell_overrides(given, "contrastive") == given[2:]


@pytest.mark.parametrize(
    "bad",
    ["objectives.l3.pooling=mean", "objectives=[l2, sinkhorn]", "objectives.mixed_ot.blur=1"],
)
def test_compare_refuses_overrides_of_objectives_it_does_not_compare(bad):
    with pytest.raises(ConfigError) as err:
        check_objective_overrides(["train.lr=1e-4", bad], ["sinkhorn", "l2:0.5"])
    assert bad.split("=")[0] in str(err.value) and "sinkhorn, l2" in str(err.value)


def test_compare_accepts_overrides_of_compared_objectives():
    check_objective_overrides(
        ["objectives.l2.pooling=mean", "objectives.sinkhorn=null", "train.lr=1e-4"],
        ["sinkhorn", "l2:0.5"],
    )


def test_joint_rows_get_their_objectives_overrides_only():
    overrides = ["objectives.l2.pooling=mean", "objectives.sinkhorn.blur=0.1", "data.limit=8"]
    assert joint_options("sinkhorn:0.1", None, overrides)["overrides"] == overrides[1:]
    assert joint_options("l2", None, overrides)["overrides"] == [overrides[0], overrides[2]]


def test_run_refuses_an_override_that_would_add_an_objective():
    with pytest.raises(ConfigError) as err:
        load_config(FLORES, ["objectives.l2.pooling=mean"], objectives=["sinkhorn"])
    assert "'l2'" in str(err.value) and "--objective l2" in str(err.value)
    with pytest.raises(ConfigError, match="--objective chose"):
        load_config(FLORES, ["objectives={l2: {}}"], objectives=["sinkhorn"])
    both = load_config(FLORES, ["objectives.l2.pooling=mean"], objectives=["sinkhorn", "l2"])
    assert set(both.objectives) == {"sinkhorn", "l2"}
    # without --objective, the config's set plus the override's objective (sections merge)
    merged = load_config(FLORES, ["objectives.l2.pooling=mean"])
    assert set(merged.objectives) == {"sinkhorn", "l2"}


def test_cli_run_names_the_override_before_loading_anything(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        app,
        ["run", "-c", str(FLORES), "-o", "sinkhorn", "--set", "objectives.l2.pooling=mean"],
    )
    assert result.exit_code != 0
    assert "objectives.l2.pooling" in result.output and "--objective l2" in result.output
    assert not (tmp_path / "mlflow.db").exists()


def test_cli_compare_takes_an_override_of_its_second_objective(tmp_path, monkeypatch):
    """The CLI's early config check sees the first objective's row, as training does."""
    check_config_model(SELFLINKS, ["objectives.l2.pooling=mean"], ["contrastive", "l2"])
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        app,
        ["compare", "sinkhorn", "l2", "-c", str(FLORES), "--set", "objectives.l3.pooling=mean"],
    )
    assert result.exit_code != 0
    assert "objectives.l3.pooling" in result.output and "sinkhorn, l2" in result.output
    assert not (tmp_path / "mlflow.db").exists()
