"""Ending a process a test started: a signal first (so that it cleans up after itself),
SIGKILL only if it does not end in time."""

from __future__ import annotations

import signal
import subprocess


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, grace: float = 10.0) -> None:
    """End ``proc`` (started by the test, by its PID) with ``sig``, then SIGKILL after ``grace`` s."""
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
