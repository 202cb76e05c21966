"""``snep diagram`` draws the live machines: every state and trigger of the tables appears."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from snep.cli import main
from snep.fsm.receiver import RECEIVER_TABLE, ReceiverMode
from snep.fsm.role import TRIGGERS, Role
from snep.fsm.sender import SENDER_TABLE, SenderMode

pytestmark = pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz `dot` is not installed")


def test_diagrams_render_from_the_live_tables(tmp_path: Path):
    assert main(["diagram", "--out", str(tmp_path)]) == 0
    role = (tmp_path / "role.svg").read_text()
    sender = (tmp_path / "sync_sender.svg").read_text()
    receiver = (tmp_path / "sync_receiver.svg").read_text()
    assert all(state.name in role for state in Role)
    assert all(trigger in role for trigger in TRIGGERS)
    assert "5. BulkSendToPeers" in role  # actions in order on the promote edge
    assert all(mode.name in sender for mode in SenderMode) and all(r.trigger in sender for r in SENDER_TABLE)
    assert all(mode.name in receiver for mode in ReceiverMode) and all(r.trigger in receiver for r in RECEIVER_TABLE)
    assert "RecvNack = on_nack" in sender and "RecvState = on_state" in receiver


def test_png(tmp_path: Path):
    assert main(["diagram", "--format", "png", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "role.png").read_bytes().startswith(b"\x89PNG")


def test_committed_diagrams_are_current(tmp_path: Path):
    """docs/diagrams must be re-rendered (make diagrams) when a table changes."""
    committed = Path(__file__).resolve().parent.parent / "docs" / "diagrams"
    main(["diagram", "--out", str(tmp_path)])
    for fresh in tmp_path.glob("*.svg"):
        assert (committed / fresh.name).read_text() == fresh.read_text(), f"docs/diagrams/{fresh.name} is stale"
