"""Every command that reads a run from a tracking store reports a store it cannot open (a
missing database driver, a dead port) as xalign's 'unreachable' error with the password
redacted, not a library traceback."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from xalign.cli import app
from xalign.tracking import TrackingError, get_run

RUN_ID = "0123456789abcdef0123456789abcdef"

STORES = [
    ("postgresql+psycopg2://pg:Secret1@127.0.0.1:9/mlflow", "psycopg2"),
    ("mysql+mysqldb://me:Secret1@127.0.0.1:9/mlflow", "MySQLdb"),
    ("mssql+pyodbc://sa:Secret1@127.0.0.1:9/mlflow", "pyodbc"),
]


def _driverless(module: str) -> None:
    try:
        __import__(module)
    except ImportError:
        return
    pytest.skip(f"{module} is installed here: the store would be tried, not refused")


@pytest.mark.parametrize(("uri", "driver"), STORES)
def test_get_run_reports_an_unopenable_store(uri, driver):
    _driverless(driver)
    with pytest.raises(TrackingError) as exc:
        get_run(RUN_ID, uri)
    message = str(exc.value)
    assert "is unreachable" in message and "Secret1" not in message and ":***@" in message
    assert driver in message


@pytest.mark.parametrize(("uri", "driver"), STORES)
@pytest.mark.parametrize(
    "command",
    [
        ["export", RUN_ID, "--to", "{tmp}/out"],
        ["eval", RUN_ID, "--task", "align"],
        ["align", "Das Haus", "the house", "--src-lang", "de", "--model", RUN_ID],
    ],
)
def test_every_entry_point_says_unreachable(uri, driver, command, tmp_path):
    _driverless(driver)
    args = [a.replace("{tmp}", str(tmp_path)) for a in command]
    result = CliRunner().invoke(app, [*args, "--tracking-uri", uri])
    flat = " ".join(result.output.split())
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "Secret1" not in result.output
    assert "is unreachable" in flat and f"No module named '{driver}'" in flat
