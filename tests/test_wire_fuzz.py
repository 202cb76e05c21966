"""A short, bounded run of the decoder's atheris fuzz target (tests/fuzz_decoder.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

TARGET = Path(__file__).with_name("fuzz_decoder.py")


def test_fuzz_target_finds_no_crash_in_a_short_run(tmp_path):
    pytest.importorskip("atheris", reason="atheris (a test dependency) is not installed")
    corpus = tmp_path / "corpus"
    result = subprocess.run(
        [
            sys.executable,
            str(TARGET),
            "--seed-corpus",
            str(corpus),
            "-runs=30000",
            "-max_total_time=20",
            "-seed=1",
            str(corpus),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,  # crash-* artifacts, if any, land in the temporary directory
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "DONE" in output and "Done 30000 runs" in output, output[-2000:]
    # the seeds got past the header: the fuzzer explored more than the magic check
    assert len(list(corpus.iterdir())) > 14
