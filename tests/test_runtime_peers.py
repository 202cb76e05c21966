"""Peers by address on either link; the sync links are never synchronized themselves."""

from __future__ import annotations

from snep import config
from snep.config import sync_filter
from snep.entry import Proto, make_entry
from snep.runtime.peers import PeerTable

CFG = config.parse(
    {
        "node": {"id": 1},
        "sync": {
            "listen": "10.99.0.1:3780",
            "peers": [{"id": 2, "address": "10.99.0.2:3780"}, {"id": 3, "address": "10.99.0.3"}, {"id": 4, "address": "10.99.0.4"}],
            "insecure": True,
            "second_link": {
                "listen": "[fd98::1]:3781",
                "peers": [{"id": 3, "address": "[fd98::3]:3781"}, {"id": 2, "address": "[fd98::2]:3781"}],
            },
        },
        "filter": {"ignore": ["192.168.7.0/24"]},
    }
)


def test_peers_are_their_node_ids_on_both_links_matched_by_id():
    peers = PeerTable(CFG)
    assert peers.ids == [2, 3, 4]
    assert peers.identify(("10.99.0.2", 3780), 0) == 2
    assert peers.identify(("fd98::2", 3781, 0, 0), 1) == 2
    assert peers.identify(("fd98::3", 3781, 0, 0), 1) == 3
    assert peers.address(3, 1) == ("fd98::3", 3781, 0, 0)
    assert peers.address(3, 0) == ("10.99.0.3", 3780)
    assert peers.address(4, 1) is None  # node 4 is not on the second link
    assert peers.shown(3, 1) == "[fd98::3]:3781"


def test_unknown_sources_are_not_peers():
    peers = PeerTable(CFG)
    assert peers.identify(("10.99.0.9", 3780), 0) is None
    assert peers.identify(("10.99.0.2", 3780), 1) is None  # a main-link address on the second link
    assert peers.identify(("10.99.0.2", 3781), 0) is None  # a configured host on another port
    assert peers.identify(("10.99.0.2", 40000), 0) is None


def test_sync_traffic_is_never_synchronized():
    flt = sync_filter(CFG)
    assert not flt.accepts(make_entry("10.99.0.1", "10.99.0.2", Proto.UDP, 3780, 3780))
    assert not flt.accepts(make_entry("fd98::1", "fd98::3", Proto.UDP, 3781, 3781))
    assert not flt.accepts(make_entry("192.168.7.5", "10.0.0.1", Proto.TCP, 1, 2))  # configured
    assert flt.accepts(make_entry("10.1.0.10", "10.2.0.10", Proto.TCP, 40000, 80))
