"""The ``snep`` command line: help lists every subcommand with one line each; ``run --check``
validates a config and its key file without starting a node."""

import subprocess
import sys

from snep.cli import SUBCOMMANDS
from tests.configs import contrib_config


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


def snep(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "snep.cli", *args], capture_output=True, text=True, timeout=60)


def test_run_check_accepts_the_contrib_config_and_exits(tmp_path):
    result = snep("run", "--check", "--config", str(contrib_config(tmp_path)))
    assert result.returncode == 0, result.stderr
    assert "ok (node 1, level strong, sealed)" in result.stdout


def test_run_check_reads_the_key_file_lines_too(tmp_path):
    path = contrib_config(tmp_path)
    (tmp_path / "key").write_text("1 not-hex\n")
    result = snep("run", "--check", "--config", str(path))
    assert result.returncode == 1
    assert "the secret is not hexadecimal" in result.stderr and "Traceback" not in result.stderr
