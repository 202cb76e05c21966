"""The configured peers: who may speak on the sync links, and where frames go.

A peer is its node id (the PeerId of snep.fsm): the same on both links, matched by
id (a peer may be missing from the second link). A datagram counts as a peer's only
when it comes from exactly the address and port configured for that peer on that
link; anything else is an unknown source, refused (the daemon counts and logs it).
The node then checks that the frame's sender is that very node (``wrong_node``).
With multicast, peers are still configured (they say who may speak), and sending
to any of them means sending to the group.
"""

from __future__ import annotations

from snep.config import Config


class PeerTable:
    """Datagram source address (per link) <-> peer node id."""

    def __init__(self, cfg: Config) -> None:
        links = [cfg.sync.link] + ([cfg.sync.second_link] if cfg.sync.second_link else [])
        self.multicast = cfg.sync.link.multicast
        self.ids: list[int] = [peer.node_id for peer in cfg.sync.link.peers]
        self._by_source: dict[tuple[int, str, int], int] = {}
        self._address: dict[tuple[int, int], tuple] = {}
        self._shown: dict[tuple[int, int], str] = {}
        for index, link in enumerate(links):
            for peer in link.peers:
                address = peer.address
                self._by_source[(index, address.host, address.port)] = peer.node_id
                self._address[(peer.node_id, index)] = address.sockaddr
                self._shown[(peer.node_id, index)] = str(address)

    def identify(self, address: tuple, link: int) -> int | None:
        """The peer at this source address and port on ``link``, or None."""
        host, port = address[0], address[1]
        if "%" in host:
            host = host.split("%", 1)[0]
        return self._by_source.get((link, host, port))

    def address(self, peer: object, link: int) -> tuple | None:
        """Where frames for ``peer`` go on ``link`` (None: the group, or not on that link)."""
        if self.multicast:
            return None  # the group
        return self._address.get((peer, link))  # type: ignore[arg-type]

    def shown(self, peer: int, link: int) -> str:
        """The peer's configured address on ``link``, as the operator wrote it."""
        return self._shown.get((peer, link), f"node {peer}")
