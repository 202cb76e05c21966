"""The migration's implementation (no kernel needed): what runs where, and what keepalived's
notify does at each step of docs/migration.md."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from snep import config
from snep.lab.conformance.impls import MigrationImpl, NotApplicable, make
from snep.lab.conformance.profile import CI
from snep.lab.topology import Topology
from tests.configs import peer_addresses

pytestmark = pytest.mark.skipif(shutil.which("conntrackd") is None, reason="conntrackd not installed (make debs)")


def test_only_snep_is_migrated_to() -> None:
    assert isinstance(make("snep", CI, migration=True), MigrationImpl)
    for other in ("conntrackd", "none"):
        with pytest.raises(NotApplicable):
            make(other, CI, migration=True)


def test_the_notify_follows_the_daemons(tmp_path: Path) -> None:
    topo = Topology(2, workdir=tmp_path)  # not entered: its plan only
    fw = topo.fw(2)
    impl = MigrationImpl(CI.resend_queue)
    assert impl.daemons(fw) == {"conntrackd"}
    alone = impl.notify_body(topo, fw)
    assert "conntrackd -C" in alone and "snep" not in alone.replace(str(tmp_path), "")
    impl.daemons(fw).add("snep")
    both = impl.notify_body(topo, fw)
    commit, takeover = both.index("-c; fi"), both.index(" notify --socket")
    assert both.startswith('if [ "$1" = primary ]; then conntrackd -C') and commit < takeover
    impl.daemons(fw).discard("conntrackd")
    assert "conntrackd" not in impl.notify_body(topo, fw)


def test_snep_is_configured_by_the_importer_on_its_own_port(tmp_path: Path) -> None:
    topo = Topology(2, workdir=tmp_path)
    fw = topo.fw(1)
    fw.dir.mkdir(parents=True)
    impl = MigrationImpl(CI.resend_queue)
    cfg = config.load(impl.snep.write_conf(topo, fw))
    assert str(cfg.sync.link.listen) == "10.99.0.1:3781" and peer_addresses(cfg.sync.link) == ["10.99.0.2:3781"]
    assert cfg.control.socket == fw.dir / "snep.sock" and cfg.sync.params.resend_queue == 256
    assert "not carried: HashLimit" in (fw.dir / "import-conntrackd.log").read_text()
    # conntrackd's DisableExternalCache Off imports as a cold kernel, as conntrackd runs ...
    assert cfg.sync.params.inject_on_arrival is False


def test_the_former_primary_gets_snep_with_a_warm_kernel(tmp_path: Path) -> None:
    """The guide's step 4: the node whose conntrackd snep replaces runs the imported config
    switched to a warm kernel, so that the next takeover writes nothing."""
    topo = Topology(2, workdir=tmp_path)
    fw = topo.fw(1)
    fw.dir.mkdir(parents=True)
    impl = MigrationImpl(CI.resend_queue)
    impl.snep.warm.add(fw.name)
    cfg = config.load(impl.snep.write_conf(topo, fw))
    assert cfg.sync.params.inject_on_arrival is True
    assert str(cfg.sync.link.listen) == "10.99.0.1:3781"  # the rest as imported
