"""Fixtures of the conformance tests: they need root, namespaces, nftables, keepalived.

The profile comes from ``SNEP_CONFORMANCE_PROFILE`` (``ci`` by default: the lean set that
fits a CI budget; ``full``: more flows, longer phases).
"""

from __future__ import annotations

import os
import shutil

import pytest

from snep.lab import netns
from snep.lab.conformance.profile import PROFILES, Profile


def _missing() -> str | None:
    reason = netns.available()
    if reason:
        return reason
    for tool in ("keepalived", "conntrack", "tc"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (make debs)"
    return None


@pytest.fixture(scope="session")
def profile() -> Profile:
    name = os.environ.get("SNEP_CONFORMANCE_PROFILE", "ci")
    if name not in PROFILES:
        raise pytest.UsageError(f"SNEP_CONFORMANCE_PROFILE={name!r}: known {sorted(PROFILES)}")
    return PROFILES[name]


@pytest.fixture
def real_kernel() -> None:
    """Skip (with the reason) where namespaces or the tools cannot be had."""
    reason = _missing()
    if reason:
        pytest.skip(reason)
