"""recvmmsg(2) for a non-blocking socket: many datagrams per system call.

Each conntrack event is one netlink datagram, so at 100,000+ events per second a
``recv`` per event spends as much time entering the kernel as decoding. Python has no
recvmmsg; this calls the C library's through ctypes with preallocated slots (one
receive buffer, one ``mmsghdr`` array), so the per-datagram cost is reading a length.
"""

from __future__ import annotations

import ctypes
import errno
import struct
from collections.abc import Iterator

MSG_DONTWAIT = 0x40
MSG_TRUNC = 0x20


class _IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_void_p),
        ("namelen", ctypes.c_uint32),
        ("iov", ctypes.c_void_p),
        ("iovlen", ctypes.c_size_t),
        ("control", ctypes.c_void_p),
        ("controllen", ctypes.c_size_t),
        ("flags", ctypes.c_int),
    ]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("hdr", _MsgHdr), ("len", ctypes.c_uint)]


_STRIDE = ctypes.sizeof(_MMsgHdr)
_LEN_AT = _MMsgHdr.len.offset
_FLAGS_AT = _MMsgHdr.hdr.offset + _MsgHdr.flags.offset
_U32 = struct.Struct("=I")
_I32 = struct.Struct("=i")


def _libc_recvmmsg():  # type: ignore[no-untyped-def]
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.recvmmsg
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
    fn.restype = ctypes.c_int
    return fn


_RECVMMSG = _libc_recvmmsg()


class BatchReceiver:
    """Up to ``slots`` datagrams of at most ``slot_size`` bytes per call."""

    def __init__(self, fd: int, slots: int = 256, slot_size: int = 8192) -> None:
        if _RECVMMSG is None:
            raise OSError(errno.ENOSYS, "recvmmsg not available")
        self.fd = fd
        self.slots = slots
        self.slot_size = slot_size
        self._buf = ctypes.create_string_buffer(slots * slot_size)
        self.view = memoryview(self._buf).cast("B")
        self._iovs = (_IoVec * slots)()
        self._msgs = (_MMsgHdr * slots)()
        base = ctypes.addressof(self._buf)
        iov_base = ctypes.addressof(self._iovs)
        for i in range(slots):
            self._iovs[i].base = base + i * slot_size
            self._iovs[i].len = slot_size
            self._msgs[i].hdr.iov = iov_base + i * ctypes.sizeof(_IoVec)
            self._msgs[i].hdr.iovlen = 1
        self._meta = memoryview(self._msgs).cast("B")  # type: ignore[arg-type]
        self._msgs_ptr = ctypes.addressof(self._msgs)

    @classmethod
    def open(cls, fd: int) -> BatchReceiver | None:
        """A receiver, or None where recvmmsg is unavailable (callers fall back to recv)."""
        if _RECVMMSG is None:
            return None
        return cls(fd)

    def receive(self) -> int:
        """Datagrams received (0: none queued); OSError (ENOBUFS, ...) as recv raises it."""
        n = _RECVMMSG(self.fd, self._msgs_ptr, self.slots, MSG_DONTWAIT, None)
        if n < 0:
            err = ctypes.get_errno()
            if err in (errno.EAGAIN, errno.EWOULDBLOCK):
                return 0
            raise OSError(err, "recvmmsg")
        return n

    def datagrams(self, count: int) -> Iterator[tuple[int, int, bool]]:
        """(offset in ``view``, length, truncated) of each datagram of the last receive."""
        meta = self._meta
        size = self.slot_size
        for i in range(count):
            at = i * _STRIDE
            length = _U32.unpack_from(meta, at + _LEN_AT)[0]
            flags = _I32.unpack_from(meta, at + _FLAGS_AT)[0]
            yield i * size, length, bool(flags & MSG_TRUNC)
