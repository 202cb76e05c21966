"""The ``snep`` command line: help lists every subcommand with one line each."""

import subprocess
import sys

from snep.cli import SUBCOMMANDS


def test_help_lists_every_subcommand():
    out = subprocess.run(
        [sys.executable, "-m", "snep.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for name, (_module, summary) in SUBCOMMANDS.items():
        assert name in out
        assert summary.split()[0] in out


def test_unknown_command_is_a_usage_error():
    result = subprocess.run(
        [sys.executable, "-m", "snep.cli", "frobnicate"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
