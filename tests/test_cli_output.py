"""What the command line prints: whole tables when piped, one-line warnings."""

from __future__ import annotations

import io
import warnings

from rich.table import Table

from xalign import cli
from xalign.alignment import GoldAlignmentWarning
from xalign.progress import PIPE_WIDTH, stdout_console


def test_piped_tables_keep_their_headers(monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    console = stdout_console()
    assert console.width == PIPE_WIDTH
    names = [
        "objective",
        "awesome-enfr",
        "awesome-roen",
        "bicici-deen",
        "xlwa-bg-test",
        "xlwa-es-test",
        "avg seen",
        "avg all",
    ]
    table = Table(*names)
    table.add_row(*(["0.1234 ± 0.0056"] * len(names)))
    console.print(table)
    printed = out.getvalue()
    assert all(name in printed for name in names), printed
    assert "…" not in printed


def test_cli_warning_is_one_line_without_source(capsys):
    message = GoldAlignmentWarning("bicici-deen: 1 gold link(s) out of range [sentence 62]")
    cli._show_warning(
        message,
        GoldAlignmentWarning,
        "/x/plugin.py",
        260,
        line="golds = [load_gold(name) for name in names]",
    )
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        "warning: GoldAlignmentWarning: bicici-deen: 1 gold link(s) out of range [sentence 62]"
    ]


def test_cli_callback_installs_the_warning_format():
    with warnings.catch_warnings():
        cli._quiet_libraries()
        assert warnings.showwarning is cli._show_warning
