"""The configured peers: who may speak on the sync links, and where frames go.

A peer's id is its main-link endpoint as text; the n-th peer of the second link is
the same node as the n-th of the main link. Datagrams from addresses that are not
configured peers are refused (the daemon counts them). With multicast, peers are
still configured (they say who may speak), and sending to any of them means sending
to the group.
"""

from __future__ import annotations

from snep.config import Config


class PeerTable:
    """Datagram source address (per link) <-> peer id."""

    def __init__(self, cfg: Config) -> None:
        links = [cfg.sync.link] + ([cfg.sync.second_link] if cfg.sync.second_link else [])
        self.multicast = cfg.sync.link.multicast
        self.ids: list[str] = [str(p) for p in cfg.sync.link.peers]
        self._by_source: dict[tuple[int, str, int], str] = {}
        self._by_host: dict[tuple[int, str], str] = {}
        self._address: dict[tuple[str, int], tuple] = {}
        for index, link in enumerate(links):
            for n, peer in enumerate(link.peers):
                if n >= len(self.ids):
                    break
                peer_id = self.ids[n]
                self._by_source[(index, peer.host, peer.port)] = peer_id
                self._by_host[(index, peer.host)] = peer_id
                self._address[(peer_id, index)] = peer.sockaddr

    def identify(self, address: tuple, link: int) -> str | None:
        host, port = address[0], address[1]
        if "%" in host:
            host = host.split("%", 1)[0]
        return self._by_source.get((link, host, port)) or self._by_host.get((link, host))

    def address(self, peer: object, link: int) -> tuple | None:
        if self.multicast:
            return None  # the group
        return self._address.get((peer, link))  # type: ignore[arg-type]
