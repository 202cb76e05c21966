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


def test_run_check_warns_of_a_socket_buffer_smaller_than_a_dumps_window(tmp_path):
    path = contrib_config(tmp_path)
    assert "warning" not in snep("run", "--check", "--config", str(path)).stdout  # (the defaults agree)
    text = path.read_text()
    assert "socket_buffer = 8388608" in text
    path.write_text(text.replace("socket_buffer = 8388608", "socket_buffer = 1048576", 1))
    result = snep("run", "--check", "--config", str(path))
    assert result.returncode == 0, result.stderr  # (valid: the node runs, and says why it is slow)
    assert "warning: sync.socket_buffer (1048576 bytes) is smaller than what a dump keeps in flight" in result.stdout
    assert "256 x sync.bulk_mtu 16384 = 4194304 bytes" in result.stdout
