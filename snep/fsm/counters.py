"""The node's counters: everything the sync does and everything it refused.

One mutable record per node, shared by its sender and receivers, read by the control
socket and the Prometheus listener. Names are stable: they are the metric names.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(slots=True)
class Counters:
    frames_sent: int = 0
    bytes_sent: int = 0
    frames_received: int = 0
    bytes_received: int = 0
    state_frames_sent: int = 0
    state_messages_sent: int = 0
    state_messages_applied: int = 0
    retransmissions: int = 0  # STATE frames sent again (NACK or timeout)
    retransmit_budget_hits: int = 0  # resends held back: the peer's retransmission budget was spent
    acks_sent: int = 0
    acks_received: int = 0
    nacks_sent: int = 0
    nacks_received: int = 0
    alives_sent: int = 0
    alives_received: int = 0
    hellos_sent: int = 0
    hellos_received: int = 0
    resync_requests_sent: int = 0
    resync_requests_received: int = 0
    resync_requests_ignored: int = 0  # received while not primary
    resyncs: int = 0  # bulk dumps started (requested, fallback, promotion)
    bulk_mtu_fallbacks: int = 0  # a dump frame above the stream's MTU was lost twice: dumps went back to sync.mtu
    resync_fallbacks: int = 0  # NACKs older than the resend queue, answered with a dump
    resync_joined: int = 0  # requests/NACKs of a peer a running dump already serves (no restart)
    dumps_refused: int = 0  # dumps a peer asked for beyond its dump budget (it asks again later)
    stale_nacks: int = 0  # NACKs reaching below what the peer had acknowledged (late copies)
    bulk_messages_sent: int = 0
    bulk_completed: int = 0  # dumps received completely (BULK_START .. BULK_END)
    gap_drops: int = 0  # STATE frames beyond the expected seq, dropped
    duplicates: int = 0  # STATE frames already applied, dropped
    stale_epoch_drops: int = 0  # STATE/ALIVE/ACK/NACK of an epoch older than the newest seen
    malformed: int = 0  # undecodable frames (another protocol version among them)
    auth_failures: int = 0  # frames that fail to open: bad tag, unknown key id, sealed or not against the config
    unknown_peer: int = 0
    wrong_node: int = 0  # authentic frames whose sender is not the peer at their source address
    misdirected: int = 0  # frames for another node (normal on a multicast link)
    unbound_session: int = 0  # frames of a peer whose session is not bound yet (answered by a challenge)
    stale_session: int = 0  # frames of an earlier session of the peer (a replay, or its former process)
    replays: int = 0  # frames whose counter was seen before or is left of the anti-replay window
    sessions_bound: int = 0  # peer sessions bound by the handshake (each peer start, and ours)
    epoch_overflow: int = 0  # claims or HELLO news of a term that leaves no room to promote
    external_full: int = 0  # new entries refused: the external cache holds max_entries
    unexpected: int = 0  # well-formed frames that make no sense here (STATE without epoch ...)
    bad_acks: int = 0  # ACK/NACK ranges outside what was sent
    queue_drops: int = 0  # frames pushed out of the full resend queue before all acked
    filtered: int = 0  # events the filter or the level kept back
    kernel_events: int = 0
    epochs_adopted: int = 0
    fenced: int = 0  # PRIMARY stepped down on a newer epoch claimed by its primary
    retakes: int = 0  # PRIMARY took a term above an epoch it merely heard of
    reasserts: int = 0  # keepalived's master took over again (no primary heard of)
    promotions_waited: int = 0  # active-active: a promotion waited for the live owner to resign (Drained)
    resigns_heard: int = 0  # active-active: the owner of the newest epoch said it resigned, and its last seq
    vouch_confirmed: int = 0  # own kernel entries a primary's dump confirmed, after becoming backup
    vouch_unconfirmed: int = 0  # ... it did not confirm: removed or shortened (kernel.unconfirmed)
    peer_deaths: int = 0
    peer_revivals: int = 0
    # active-active (snep.fsm.gate): held connections' states and the non-owners' reports
    held_states_sent: int = 0  # states sent from a held packet (FLAG_ACK_NOW)
    acks_at_once: int = 0  # FLAG_ACK_NOW frames received (acknowledged at once)
    reports_sent: int = 0  # REPORTs to the group's primary (a reply through this non-owner)
    reports_received: int = 0
    reports_applied: int = 0  # written to the kernel as an update, and streamed
    reports_late: int = 0  # the entry had seen its reply already: answered, nothing written
    reports_unknown: int = 0  # an entry this node does not know (another group's, or gone): dropped
    reports_refused: int = 0  # received while not the primary of the epoch it names: dropped
    report_acks_sent: int = 0
    report_acks_received: int = 0

    def as_dict(self) -> dict[str, int]:
        # (not dataclasses.asdict: its deep copy cost 0.2 ms per status request, a tenth
        # of a backup's time when monitoring polls it every 2 ms during a resync)
        return {name: getattr(self, name) for name in _NAMES}


_NAMES = tuple(field.name for field in fields(Counters))
