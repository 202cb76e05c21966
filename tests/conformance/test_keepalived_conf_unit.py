"""keepalived.conf of the lab topology: sub-second adverts need VRRPv3; the notify FIFO
is written when a daemon reads transitions from it (no root needed: nothing is built)."""

from pathlib import Path

from snep.lab.conformance.impls import ConntrackdImpl, SnepCommitImpl, SnepImpl
from snep.lab.conformance.profile import PROFILES
from snep.lab.topology import Topology


def _conf(tmp_path: Path, advert_int: float, fifo: bool) -> str:
    topo = Topology(2, advert_int=advert_int, workdir=tmp_path,
                    notify_fifo=(lambda fw: fw.dir / "keepalived.fifo") if fifo else None)
    return topo.keepalived_conf(topo.fw(2))


def test_whole_seconds_stay_vrrpv2_without_fifo(tmp_path):
    conf = _conf(tmp_path, 1.0, fifo=False)
    assert "vrrp_version" not in conf and "notify_fifo" not in conf
    assert conf.count("advert_int 1\n") == 2


def test_fast_detection_is_vrrpv3_with_centisecond_adverts(tmp_path):
    conf = _conf(tmp_path, PROFILES["fast"].advert_int, fifo=True)
    assert "    vrrp_version 3\n" in conf
    assert conf.count("advert_int 0.1\n") == 2
    assert f"    notify_fifo {tmp_path / 'fw2' / 'keepalived.fifo'}\n" in conf
    assert 'notify_master "/bin/true primary"' in conf  # the notify command still runs


def test_which_implementations_read_the_fifo(tmp_path):
    topo = Topology(2, workdir=tmp_path)
    fw = topo.fw(1)
    snep = SnepImpl.__new__(SnepImpl)  # (no snep command needed to ask)
    commit = SnepCommitImpl.__new__(SnepCommitImpl)
    assert snep.notify_fifo(fw) == fw.dir / "keepalived.fifo"
    assert snep.notify_body(topo, fw) == "rc=0"
    assert commit.notify_fifo(fw) is None
    assert ConntrackdImpl.notify_fifo(ConntrackdImpl.__new__(ConntrackdImpl), fw) is None


def test_snep_config_follows_the_fifo_with_a_warm_kernel(tmp_path):
    from snep.config import load

    topo = Topology(2, workdir=tmp_path)
    fw = topo.fw(2)
    fw.dir.mkdir(parents=True)
    for cls, fifo, warm in ((SnepImpl, True, True), (SnepCommitImpl, False, False)):
        impl = cls.__new__(cls)
        impl.resend_queue = 256
        cfg = load(impl.write_conf(topo, fw), check_files=False)
        assert (cfg.ha.notify_fifo is not None) is fifo
        assert cfg.ha.follow == (("GROUP", "G") if fifo else None)
        assert cfg.sync.params.inject_on_arrival is warm
