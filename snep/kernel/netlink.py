"""The real kernel: conntrack through ctnetlink sockets.

Sockets are plain ``AF_NETLINK`` sockets; every byte layout lives in
:mod:`snep.kernel.ctnetlink`. Two sockets per handle:

- the command socket (requests, dumps, batched create/update/delete). Its netlink
  port id tags every event our own requests cause (the kernel puts the requester's
  port id in ``nlmsg_pid`` of the multicast event), which is how our own injections
  are kept from being echoed back to the peers;
- the event socket, joined to the NEW/UPDATE/DESTROY groups the level needs,
  non-blocking, with a receive buffer sized and grown like conntrackd's.

``NetlinkKernel(netns="name")`` opens both sockets inside a named namespace from
anywhere (a helper thread enters it, creates them, and ends); inside ``ip netns exec``
no argument is needed.

``reliable=True`` is conntrackd's NetlinkEventsReliable (NETLINK_BROADCAST_ERROR and
NETLINK_NO_ENOBUFS on the event socket): the kernel learns that delivery failed and
holds DESTROY events back to retry them, instead of dropping events. The price is
that a loss of other events is no longer reported to us (no ENOBUFS, so no
EventOverrun and no resync); the default is therefore off, as in conntrackd.
"""

from __future__ import annotations

import errno as errno_mod
import gc
import os
import socket
import struct
from collections.abc import Callable, Collection, Iterable, Iterator
from typing import Any

from snep.entry import Entry, Event, EventKind, Key
from snep.errors import DecodeError, EventOverrun, KernelError
from snep.kernel import ctnetlink as ct
from snep.kernel import namespace
from snep.kernel.base import (
    DEFAULT_BUFFER_MAX_GROWTH,
    DEFAULT_BUFFER_SIZE,
    ApplyResult,
    Counters,
    Kernel,
    KernelStats,
)
from snep.kernel.recvmmsg import BatchReceiver
from snep.level import Level
from snep.wire.codec import decode_records

_RECV_SIZE = 1 << 20  # one recv never returns more than one skb (<= 32 KiB for dumps)
_BATCH_BYTES = 512 * 1024  # requests per send()
_COMMAND_SNDBUF = 4 * 1024 * 1024  # netlink refuses a send larger than the send buffer
_COMMAND_RCVBUF = 32 * 1024 * 1024  # room for one batch's error replies (~4,000 x ~700 B)

_NLMSGHDR_UNPACK = ct.NLMSGHDR.unpack_from
_MSG_CT_NEW, _MSG_CT_DELETE = ct.MSG_CT_NEW, ct.MSG_CT_DELETE
_CREATE_FLAGS = ct.NLM_F_CREATE | ct.NLM_F_EXCL
_SKIP = 16 + ct.NFGENMSG.size
_NEW, _UPDATE, _DESTROY = EventKind.NEW, EventKind.UPDATE, EventKind.DESTROY
_decode_entry = ct.decode_entry
_tuple_new = tuple.__new__  # Event(kind, entry) without the NamedTuple's Python-level __new__


class NetlinkKernel(Kernel):
    """The kernel's conntrack table, in this or a named network namespace."""

    def __init__(
        self,
        netns: str | None = None,
        *,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
        buffer_max_growth: int = DEFAULT_BUFFER_MAX_GROWTH,
        reliable: bool = False,
    ) -> None:
        self.netns = netns
        self.counters = Counters()
        self._buffer_size = buffer_size
        self._buffer_max = max(buffer_max_growth, buffer_size)
        self._reliable = reliable
        self._next = 1
        self._buf = bytearray(_RECV_SIZE)
        self._view = memoryview(self._buf)
        self._events: socket.socket | None = None
        self._batch_receiver: BatchReceiver | None = None
        self._overrun_pending = False
        self._cmd = namespace.call_in(netns, self._open_command)
        self.portid: int = self._cmd.getsockname()[0]

    # --- sockets ---------------------------------------------------------------

    @staticmethod
    def _netlink_socket() -> socket.socket:
        return netfilter_socket("ctnetlink")

    def _open_command(self) -> socket.socket:
        sock = self._netlink_socket()
        set_rcvbuf(sock, _COMMAND_RCVBUF)
        try:
            sock.setsockopt(socket.SOL_SOCKET, ct.SO_SNDBUFFORCE, _COMMAND_SNDBUF)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _COMMAND_SNDBUF)
        sock.setsockopt(ct.SOL_NETLINK, ct.NETLINK_CAP_ACK, 1)  # errors without the request echoed
        sock.bind((0, 0))
        return sock

    def _open_events(self, groups: int) -> socket.socket:
        sock = self._netlink_socket()
        if self._reliable:
            # conntrackd's NetlinkEventsReliable: the kernel learns of delivery
            # failures (and keeps DESTROY events) instead of dropping silently.
            sock.setsockopt(ct.SOL_NETLINK, ct.NETLINK_BROADCAST_ERROR, 1)
            sock.setsockopt(ct.SOL_NETLINK, ct.NETLINK_NO_ENOBUFS, 1)
        self.counters.buffer_size = set_rcvbuf(sock, self._buffer_size)
        sock.bind((0, groups))
        sock.setblocking(False)
        self._batch_receiver = BatchReceiver.open(sock.fileno())
        return sock

    def subscribe(self, level: Level) -> None:
        groups = 0
        for kind in level.event_kinds:
            groups |= 1 << (ct.GROUP_OF_KIND[kind] - 1)
        if self._events is not None:
            self._events.close()
        self._events = namespace.call_in(self.netns, lambda: self._open_events(groups))

    def fileno(self) -> int:
        if self._events is None:
            raise KernelError("fileno() before subscribe()")
        return self._events.fileno()

    def close(self) -> None:
        if self._events is not None:
            self._events.close()
            self._events = None
        self._cmd.close()

    # --- requests --------------------------------------------------------------

    def _next_seq(self) -> int:
        return self._reserve(1)

    def _send(self, data: bytes) -> None:
        try:
            self._cmd.sendall(data)
        except OSError as exc:
            raise KernelError(f"netlink send: {exc.strerror}", exc.errno or 0) from exc

    def _recv(self) -> int:
        try:
            return self._cmd.recv_into(self._buf)
        except OSError as exc:
            raise KernelError(f"netlink receive: {exc.strerror}", exc.errno or 0) from exc

    def _request(self, data: bytes, seq: int) -> None:
        """Send one request with NLM_F_ACK and wait for its ACK (KernelError on error)."""
        self._send(data)
        while True:
            n = self._recv()
            for msg in ct.iter_messages(self._view, n):
                if msg.type == ct.NLMSG_ERROR:
                    err, eseq = ct.decode_error(self._view, msg)
                    if eseq == seq:
                        if err:
                            raise KernelError(f"ctnetlink request: {os.strerror(err)}", err)
                        return

    def _dump(self, data: bytes, seq: int, handle) -> None:  # type: ignore[no-untyped-def]
        """Send a dump request and call ``handle(msg)`` for each message until DONE."""
        self._send(data)
        view = self._view
        while True:
            n = self._recv()
            for msg in ct.iter_messages(view, n):
                if msg.seq != seq:
                    continue
                if msg.type == ct.NLMSG_DONE:
                    return
                if msg.type == ct.NLMSG_ERROR:
                    err, _ = ct.decode_error(view, msg)
                    if err:
                        raise KernelError(f"ctnetlink dump: {os.strerror(err)}", err)
                    return
                handle(msg)

    def dump(self) -> list[Entry]:
        return [entry for part in self.dump_parts() for entry in part]

    def dump_parts(self) -> Iterator[list[Entry]]:
        """The dump, one part per receive buffer (a few thousand entries). Nothing else
        may use the command socket until the last part is read."""
        seq = self._next_seq()
        self._send(ct.encode_dump(seq))
        decode = ct.decode_entry
        view = self._view
        unpack = ct.NLMSGHDR.unpack_from
        skip = 16 + ct.NFGENMSG.size
        msg_new, done, error = ct.MSG_CT_NEW, ct.NLMSG_DONE, ct.NLMSG_ERROR
        layouts_get = ct.fast_paths.layouts.get
        from_bytes = int.from_bytes
        finished = False
        while not finished:
            out: list[Entry] = []
            append = out.append
            # 100,000 entries are 300,000 new tuples: generational GC passes over them would
            # cost more than the decoding; nothing here makes reference cycles.
            gc_was_enabled = gc.isenabled()
            gc.disable()
            try:
                n = self._recv()
                off = 0
                while off + 16 <= n:
                    mlen, mtype, _flags, mseq, _pid = unpack(view, off)
                    if mlen < 16 or off + mlen > n:
                        raise KernelError("ctnetlink dump: malformed netlink message")
                    if mseq == seq:
                        if mtype == msg_new:
                            # the first layout of this length, inlined (decode_entry's fast path)
                            layouts = layouts_get(mlen - skip)
                            if layouts is not None:
                                s, mask, expected, build = layouts[0]
                                if from_bytes(view[off + skip : off + mlen], "little") & mask == expected:
                                    try:
                                        append(build(s.unpack_from(view, off + skip)))
                                        off += (mlen + 3) & ~3
                                        continue
                                    except (IndexError, ValueError):
                                        pass
                            try:
                                append(decode(view, off + skip, off + mlen))
                            except DecodeError:
                                self.counters.decode_errors += 1
                        elif mtype == done:
                            finished = True
                            break
                        elif mtype == error:
                            err, _ = ct.decode_error(view, ct.Message(mtype, 0, mseq, 0, off + 16, off + mlen))
                            if err:
                                raise KernelError(f"ctnetlink dump: {os.strerror(err)}", err)
                            finished = True
                            break
                    off += (mlen + 3) & ~3
            finally:
                if gc_was_enabled:
                    gc.enable()
            if out:
                yield out

    def count(self) -> int:
        return self._global_stats().get("entries", 0)

    def _global_stats(self) -> dict[str, int]:
        seq = self._next_seq()
        self._send(ct.encode_stats(seq, per_cpu=False))
        result: dict[str, int] = {}
        while True:
            n = self._recv()
            for msg in ct.iter_messages(self._view, n):
                if msg.seq != seq:
                    continue
                if msg.type == ct.NLMSG_ERROR:
                    err, _ = ct.decode_error(self._view, msg)
                    if err:
                        raise KernelError(f"conntrack statistics: {os.strerror(err)}", err)
                    return result
                if msg.type == ct.MSG_CT_GET_STATS:
                    result = ct.decode_stats(self._view, msg, ct.STATS_GLOBAL_NAMES)

    def stats(self) -> KernelStats:
        totals: dict[str, int] = {}
        seq = self._next_seq()

        def handle(msg: ct.Message) -> None:
            for name, value in ct.decode_stats(self._view, msg, ct.STATS_CPU_NAMES).items():
                totals[name] = totals.get(name, 0) + value

        self._dump(ct.encode_stats(seq, per_cpu=True), seq, handle)
        g = self._global_stats()
        fields = KernelStats._fields
        return KernelStats(
            entries=g.get("entries", 0),
            max_entries=g.get("max_entries", 0),
            **{k: v for k, v in totals.items() if k in fields},
        )

    # --- writes ----------------------------------------------------------------

    def _reserve(self, n: int) -> int:
        """``n`` consecutive sequence numbers (never 0, never wrapping inside the block)."""
        if self._next + n >= 0xFFFFFFFF:
            self._next = 1
        first = self._next
        self._next += n
        return first

    def _chunks(self, msgs: Iterable[bytes], first_seq: int) -> Iterator[tuple[bytes, int]]:
        """Join requests into sends of about _BATCH_BYTES; the last of each asks for an ACK."""
        pending: list[bytes] = []
        size = 0
        seq = first_seq - 1
        for msg in msgs:
            pending.append(msg)
            size += len(msg)
            seq += 1
            if size >= _BATCH_BYTES:
                yield _with_ack(pending), seq
                pending = []
                size = 0
        if pending:
            yield _with_ack(pending), seq

    def _submit(self, data: bytes, last_seq: int, first_seq: int, total: int, failed: dict[int, int]) -> None:
        """One send; the kernel handles it synchronously, failures answer, the last ACKs."""
        self._send(data)
        view = self._view
        while True:
            n = self._recv()
            for msg in ct.iter_messages(view, n):
                if msg.type != ct.NLMSG_ERROR:
                    continue
                err, seq = ct.decode_error(view, msg)
                if err and first_seq <= seq < first_seq + total:
                    failed[seq - first_seq] = err
                if seq == last_seq:
                    return

    def _batch(self, msgs: Iterable[bytes], first_seq: int, total: int) -> dict[int, int]:
        """Send requests (seq = first_seq + index); {index: errno} of the failed ones.

        (Encoding in one thread while another sits in send() was measured slower here:
        the GIL hand-over costs more than the overlap gains.)
        """
        failed: dict[int, int] = {}
        for data, last_seq in self._chunks(msgs, first_seq):
            self._submit(data, last_seq, first_seq, total, failed)
        return failed

    def _requests(self, encode: Callable[[list[Any], int, dict[int, int]], Iterator[bytes]], items: list[Any], first: int) -> dict[int, int]:
        """Encode a request of each item (``encode``: _encode_all, _encode_records) and
        send them in batches; {index: errno} of the failed ones, unencodable included."""
        unencodable: dict[int, int] = {}
        gc_was_enabled = gc.isenabled()
        gc.disable()  # 100,000 requests: no cycles, no reason for GC passes
        try:
            failed = self._batch(encode(items, first, unencodable), first, len(items))
        finally:
            if gc_was_enabled:
                gc.enable()
        failed.update(unencodable)
        return failed

    def apply(self, events: Iterable[Event], *, replace: bool = False) -> ApplyResult:
        evs = events if isinstance(events, list) else list(events)
        result = ApplyResult()
        first = self._reserve(len(evs))
        counts = {EventKind.NEW: 0, EventKind.UPDATE: 0, EventKind.DESTROY: 0}
        for kind, _ in evs:
            counts[kind] += 1
        failed = self._requests(_encode_all, evs, first)
        result.created = counts[EventKind.NEW]
        result.updated = counts[EventKind.UPDATE]
        result.deleted = counts[EventKind.DESTROY]
        retry: list[tuple[str, Event, bytes | None]] = []
        for index, err in sorted(failed.items()):
            event = evs[index]
            kind = event.kind
            if kind is EventKind.NEW:
                result.created -= 1
                if err == errno_mod.EEXIST:
                    result.eexist += 1
                    if replace:
                        retry.append(("delete", event, None))
                        retry.append(("create", event, None))
                    else:
                        retry.append(("update", event, None))
                    continue
            elif kind is EventKind.UPDATE:
                result.updated -= 1
                if err == errno_mod.ENOENT:
                    result.enoent += 1
                    retry.append(("create", event, None))
                    continue
                if err == errno_mod.EBUSY:
                    # a status bit the kernel will not clear (ASSURED, SEEN_REPLY): keep its own
                    retry.append(("update-no-status", event, None))
                    continue
            else:
                result.deleted -= 1
                if err == errno_mod.ENOENT:
                    result.enoent += 1
                    continue
            result.fail(event, err)
        if retry:
            first = self._reserve(len(retry))
            msgs = []
            unencodable = {}
            for i, (op, event, _) in enumerate(retry):
                try:
                    if op == "create":
                        msgs.append(ct.encode_create(event.entry, first + i))
                    elif op == "delete":
                        msgs.append(ct.encode_delete(event.entry, first + i))
                    else:
                        msgs.append(ct.encode_update(event.entry, first + i, with_status=op == "update"))
                except (struct.error, ValueError, TypeError, AttributeError, OverflowError):
                    unencodable[i] = errno_mod.EINVAL
                    msgs.append(ct.encode_noop(first + i))
            failed = self._batch(msgs, first, len(msgs))
            failed.update(unencodable)
            for i, (op, event, _) in enumerate(retry):
                err = failed.get(i)
                if op == "delete":
                    # the create that follows tells whether the replacement worked
                    if err is None:
                        result.replaced += 1
                elif err is None:
                    if op == "create":
                        result.created += 1
                    else:
                        result.updated += 1
                else:
                    result.fail(event, err)
        self.counters.eexist += result.eexist
        self.counters.enoent += result.enoent
        self.counters.errors += result.errors
        return result

    def apply_records(self, records: Iterable[bytes], *, replace: bool = False) -> ApplyResult:
        """:meth:`apply` of a NEW event for each sync record (a commit, or a dump's
        records written as they arrive: straight from their bytes with
        ``ct.encode_create_record``, no Entry made). What the kernel refuses takes
        apply's way, decoded: an entry that is there (EEXIST) is updated, or replaced
        (``replace``: deleted and created)."""
        recs = records if isinstance(records, list) else list(records)
        failed = self._requests(_encode_records, recs, self._reserve(len(recs)))
        result = ApplyResult(created=len(recs) - len(failed))
        if failed:
            try:
                decoded = decode_records([recs[i] for i in sorted(failed)])
            except DecodeError as error:  # (records are checked when they arrive: a bug)
                raise KernelError(f"a record to write does not decode: {error}") from None
            again: list[Event] = []
            for (_, err), event in zip(sorted(failed.items()), decoded):
                if err == errno_mod.EEXIST and not replace:
                    result.eexist += 1  # (there: apply's update, which keeps status bits the kernel will not clear)
                    again.append(Event(EventKind.UPDATE, event.entry))
                else:
                    again.append(Event(EventKind.NEW, event.entry))
            self.counters.eexist += result.eexist
            more = self.apply(again, replace=replace)
            result.created += more.created
            result.updated += more.updated
            result.eexist += more.eexist
            result.enoent += more.enoent
            result.replaced += more.replaced
            result.errors += more.errors
            result.failures = more.failures
        return result

    def flush(self, *, mark: int | None = None, mark_mask: int = 0xFFFFFFFF, zone: int | None = None) -> None:
        seq = self._next_seq()
        self._request(ct.encode_flush(seq, mark=mark, mark_mask=mark_mask, zone=zone), seq)

    def shorten_timeouts(self, seconds: int, keys: Collection[Key] | None = None) -> int:
        longer = [entry for entry in self.dump() if entry.timeout > seconds and (keys is None or entry.key in keys)]
        first = self._reserve(len(longer))
        failed = self._batch(
            [ct.encode_timeout(e, seconds, first + i) for i, e in enumerate(longer)], first, len(longer)
        )
        # an entry that died in between is fine; anything else is an error
        self.counters.errors += sum(1 for err in failed.values() if err != errno_mod.ENOENT)
        return len(longer) - len(failed)

    # --- events ----------------------------------------------------------------

    def read_events(self, max_events: int = 65536) -> list[Event]:
        sock = self._events
        if sock is None:
            raise KernelError("read_events() before subscribe()")
        if self._overrun_pending:
            self._overrun_pending = False
            raise EventOverrun()
        out: list[Event] = []
        batch = self._batch_receiver
        gc_was_enabled = gc.isenabled()
        gc.disable()  # see dump(): a burst of events is a burst of new tuples, no cycles
        try:
            return self._read_events(sock, batch, out, max_events)
        finally:
            if gc_was_enabled:
                gc.enable()

    def _read_events(
        self, sock: socket.socket, batch: BatchReceiver | None, out: list[Event], max_events: int
    ) -> list[Event]:
        while len(out) < max_events:
            try:
                if batch is not None:
                    count = batch.receive()
                    if count == 0:
                        break
                    for start, n, truncated in batch.datagrams(count):
                        if truncated:  # an event larger than a slot: treat as lost
                            raise OSError(errno_mod.ENOBUFS, "truncated event")
                        self._parse_events(batch.view, start, start + n, out)
                    if count < batch.slots:
                        break  # drained: no second recvmmsg to find nothing
                else:
                    n = sock.recv_into(self._buf)
                    self._parse_events(self._view, 0, n, out)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno_mod.ENOBUFS:
                    self._on_overrun()
                    if out:
                        self._overrun_pending = True
                        return out
                    raise EventOverrun() from None
                raise KernelError(f"event receive: {exc.strerror}", exc.errno or 0) from exc
        return out

    def _parse_events(self, view: memoryview, off: int, end: int, out: list[Event]) -> None:
        """Decode the conntrack events of one datagram [off, end) into ``out``."""
        unpack = _NLMSGHDR_UNPACK
        portid = self.portid
        counters = self.counters
        while off + 16 <= end:
            mlen, mtype, mflags, _seq, mpid = unpack(view, off)
            if mlen < 16 or off + mlen > end:
                counters.decode_errors += 1
                return
            if mpid == portid:
                counters.own_filtered += 1
            elif mtype == _MSG_CT_NEW or mtype == _MSG_CT_DELETE:
                try:
                    entry = _decode_entry(view, off + _SKIP, off + mlen)
                except DecodeError:
                    counters.decode_errors += 1
                else:
                    if mtype == _MSG_CT_DELETE:
                        out.append(_tuple_new(Event, (_DESTROY, entry)))
                    elif mflags & _CREATE_FLAGS:
                        out.append(_tuple_new(Event, (_NEW, entry)))
                    else:
                        out.append(_tuple_new(Event, (_UPDATE, entry)))
            off += (mlen + 3) & ~3

    def _on_overrun(self) -> None:
        """Count the loss and grow the buffer (conntrackd: double up to MaxGrowth)."""
        self.counters.overruns += 1
        if self._events is not None and self._buffer_size * 2 <= self._buffer_max:
            self._buffer_size *= 2
            self.counters.buffer_size = set_rcvbuf(self._events, self._buffer_size)

    def _drain_events(self) -> None:
        self._overrun_pending = False
        if self._events is None:
            return
        while True:
            try:
                self._events.recv_into(self._buf)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno != errno_mod.ENOBUFS:
                    raise KernelError(f"event receive: {exc.strerror}", exc.errno or 0) from exc


def _encode_all(events: list[Event], first_seq: int, unencodable: dict[int, int]) -> Iterator[bytes]:
    """The request for each event, lazily (so that sending can start at once).

    An entry that cannot be expressed (a value out of its field's range, an address
    that does not fit its family, a non-ASCII helper name) becomes a NOOP in its place
    and an EINVAL in ``unencodable``: one bad entry never stops a commit.
    """
    enc_create, enc_update, enc_delete = ct.encode_create, ct.encode_update, ct.encode_delete
    new, destroy = EventKind.NEW, EventKind.DESTROY
    seq = first_seq
    for kind, entry in events:
        try:
            if kind is new:
                yield enc_create(entry, seq)
            elif kind is destroy:
                yield enc_delete(entry, seq)
            else:
                yield enc_update(entry, seq)
        except (struct.error, ValueError, TypeError, AttributeError, OverflowError):  # UnicodeError is a ValueError
            unencodable[seq - first_seq] = errno_mod.EINVAL
            yield ct.encode_noop(seq)
        seq += 1


def _encode_records(records: list[bytes], first_seq: int, unencodable: dict[int, int]) -> Iterator[bytes]:
    """:func:`_encode_all` of NEW events, from sync records."""
    enc_create = ct.encode_create_record
    seq = first_seq
    for record in records:
        try:
            yield enc_create(record, seq)
        except (struct.error, ValueError, TypeError, AttributeError, OverflowError, IndexError, DecodeError):
            unencodable[seq - first_seq] = errno_mod.EINVAL
            yield ct.encode_noop(seq)
        seq += 1


def _with_ack(msgs: list[bytes]) -> bytes:
    """Join requests, setting NLM_F_ACK on the last one."""
    last = bytearray(msgs[-1])
    struct.pack_into("=H", last, 6, struct.unpack_from("=H", last, 6)[0] | ct.NLM_F_ACK)
    msgs[-1] = bytes(last)
    return b"".join(msgs)


def netfilter_socket(what: str) -> socket.socket:
    """A NETLINK_NETFILTER socket (ctnetlink, nfqueue: nfnetlink subsystems share it)."""
    try:
        return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, ct.NETLINK_NETFILTER)
    except OSError as exc:
        raise KernelError(f"cannot open a {what} socket: {exc.strerror}", exc.errno or 0) from exc


def set_rcvbuf(sock: socket.socket, size: int) -> int:
    """Set the receive buffer, past rmem_max when we may (root); return what we got."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, ct.SO_RCVBUFFORCE, size)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
