"""Kernel adapter figures, side by side with the C tools, in one run.

1. dump: N entries into Entry values (NetlinkKernel.dump) vs ``conntrack -L`` on the
   same table (output to /dev/null). Aim: <= 1.5x.
2. event ingest: real UDP flows through a veth (a sendmmsg sender in a client
   namespace, conntrack in the server namespace); NEW events received, lost
   (overruns), events/s, and the reader's CPU per event; beside it ``conntrack -E -e
   NEW`` on the same traffic. Aim: >= 100,000 events/s without loss.
3. commit: N entries into an empty table (NetlinkKernel.apply) vs ``conntrackd -c``
   of the same entries (two conntrackd in namespaces, the backup's external cache
   filled by the primary's bulk send) and vs ``conntrack -R``. Aim: faster.
   conntrackd runs SCHED_RR 99 by default, which matters on a busy machine: the
   commit is also timed with snep under the daemon's scheduling class.

Wall and CPU time are both printed: on a shared machine CPU time is the steadier.

Run as root: ``.venv/bin/python bench/bench_kernel.py [--entries N] [--flows N]``.
Every namespace and process it starts is removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator

from snep.entry import Event, EventKind, Proto, make_entry
from snep.kernel.netlink import NetlinkKernel
from snep.lab import netns
from snep.level import Level
from snep.wire.codec import encode_state

PID = os.getpid()
NS_DUMP = f"snepk-bd-{PID}"
NS_CLIENT, NS_SERVER = f"snepk-bc-{PID}", f"snepk-bs-{PID}"
NS_PRIMARY, NS_BACKUP = f"snepk-bp-{PID}", f"snepk-bb-{PID}"

# A UDP flow generator: sendmmsg through ctypes, 1024 datagrams per system call, each
# to another (address, port): every datagram is a new connection for the server.
SENDER = r"""
import ctypes, socket, struct, sys, time
libc = ctypes.CDLL(None, use_errno=True)
class iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
class msghdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32), ("iov", ctypes.POINTER(iovec)),
                ("iovlen", ctypes.c_size_t), ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                ("flags", ctypes.c_int)]
class mmsghdr(ctypes.Structure):
    _fields_ = [("hdr", msghdr), ("len", ctypes.c_uint)]
n, B = int(sys.argv[1]), 1024
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
payload = ctypes.create_string_buffer(b"x", 1)
iov = iovec(ctypes.cast(payload, ctypes.c_void_p), 1)
addrs = (ctypes.c_char * (16 * B))()
msgs = (mmsghdr * B)()
for j in range(B):
    msgs[j].hdr.name = ctypes.addressof(addrs) + 16 * j
    msgs[j].hdr.namelen = 16
    msgs[j].hdr.iov = ctypes.pointer(iov)
    msgs[j].hdr.iovlen = 1
sent = 0
t0 = time.perf_counter()
while sent < n:
    k = min(B, n - sent)
    buf = b"".join(struct.pack("=H", socket.AF_INET) + struct.pack("!H", 1000 + (i >> 16))
                   + bytes((10, 99, (i >> 8) & 255, i & 255)) + bytes(8) for i in range(sent, sent + k))
    ctypes.memmove(addrs, buf, len(buf))
    r = libc.sendmmsg(s.fileno(), msgs, k, 0)
    if r < 0:
        raise OSError(ctypes.get_errno(), "sendmmsg")
    sent += r
print(time.perf_counter() - t0)
"""


def entries(n: int, first_octet: int = 1) -> list:
    """N distinct established TCP connections (what a firewall holds)."""
    return [
        make_entry(f"10.{first_octet}.{(i >> 8) & 255}.{i & 255}", f"10.200.{(i >> 16) & 255}.1", Proto.TCP,
                   1024 + (i % 60000), 80, timeout=3600)
        for i in range(n)
    ]


def row(label: str, snep: tuple[float, float], c_label: str, c: tuple[float, float]) -> None:
    """One comparison: wall time and CPU time (the machine may be shared: CPU is steadier)."""
    print(f"  {label:<30} snep {snep[0]:6.3f} s wall {snep[1]:6.3f} s CPU | {c_label:<14} "
          f"{c[0]:6.3f} s wall {c[1]:6.3f} s CPU | ratio wall {snep[0] / c[0]:4.2f}x CPU {snep[1] / c[1]:4.2f}x")


def median_pair(pairs: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)


# --- 1. dump -----------------------------------------------------------------------


def bench_dump(n: int, runs: int) -> None:
    print(f"dump of {n:,} entries (median of {runs})")
    with netns.namespace(NS_DUMP):
        netns.conntrack_ready(NS_DUMP)
        with NetlinkKernel(NS_DUMP) as k:
            result = k.apply([Event(EventKind.NEW, e) for e in entries(n)])
            assert result.created == n, result
            got: list[int] = []
            ours = median_pair([timed_cpu(lambda: got.append(len(k.dump()))) for _ in range(runs)])
            assert set(got) == {n}, got
            argv = netns.exec_argv(NS_DUMP, ["conntrack", "-L"])
            theirs = median_pair([timed_child(argv) for _ in range(runs)])
            row("dump -> Entry values", ours, "conntrack -L", theirs)


# --- 2. event ingest ---------------------------------------------------------------


def _traffic_namespaces() -> None:
    netns.create(NS_CLIENT)
    netns.create(NS_SERVER)
    netns.veth(NS_CLIENT, "vc", NS_SERVER, "vs")
    netns.address(NS_CLIENT, "vc", "10.98.0.1/24")
    netns.address(NS_SERVER, "vs", "10.98.0.2/24")
    # every 10.99/16 address is local to the server: each datagram is tracked and
    # confirmed there (no listener: the ICMP answers are rate-limited by the kernel)
    netns.run_in(NS_SERVER, ["ip", "route", "add", "local", "10.99.0.0/16", "dev", "lo"])
    netns.route(NS_CLIENT, "10.99.0.0/16", via="10.98.0.2")
    netns.conntrack_ready(NS_SERVER)


def _flush(ns: str) -> None:
    netns.run_in(ns, ["conntrack", "-F"], check=False)


def bench_events(flows: int) -> None:
    print(f"event ingest: {flows:,} new UDP flows through a veth, read while they are made")
    _traffic_namespaces()
    try:
        # snep: default buffers (conntrackd's: 2 MiB, growing to 8 MiB on overrun)
        with NetlinkKernel(NS_SERVER) as k:
            k.subscribe(Level.WEAK)
            sender = netns.popen_in(NS_CLIENT, [sys.executable, "-c", SENDER, str(flows)], stdout=subprocess.PIPE)
            got = lost = 0
            cpu = 0.0
            first = last = 0.0
            import select

            deadline = time.monotonic() + 60
            while got < flows and time.monotonic() < deadline:
                if sender.poll() is not None and not select.select([k.fileno()], [], [], 0.3)[0]:
                    break
                select.select([k.fileno()], [], [], 0.3)
                c0 = time.thread_time()
                try:
                    events = k.read_events()
                except Exception:  # EventOverrun: counted in k.counters
                    lost += 1
                    continue
                cpu += time.thread_time() - c0
                if events:
                    now = time.perf_counter()
                    first = first or now
                    last = now
                    got += len(events)
            out, _ = sender.communicate()
            gen_s = float(out)
            span = max(last - first, 1e-9)
            print(f"  generator: {flows / gen_s:,.0f} flows/s ({gen_s:.2f} s); table holds {k.count():,}")
            print(f"  snep NetlinkKernel.read_events: {got:,} NEW events, {k.counters.overruns} overruns, "
                  f"{got / span:,.0f} events/s wall, {cpu / max(got, 1) * 1e6:.1f} us CPU/event "
                  f"(= {max(got, 1) / max(cpu, 1e-9):,.0f} events per CPU-second)")
        _flush(NS_SERVER)
        # the reader's own ceiling: the events of all flows queued first, then read
        # (also under SCHED_RR 99, the class conntrackd runs in, on a busy machine)
        for label, policy in (("", None), (", SCHED_RR 99", os.SCHED_RR)):
            with NetlinkKernel(NS_SERVER, buffer_size=512 << 20, buffer_max_growth=512 << 20) as k:
                k.subscribe(Level.WEAK)
                netns.run_in(NS_CLIENT, [sys.executable, "-c", SENDER, str(flows)])
                got = 0
                ctx = scheduled(policy, os.sched_param(99)) if policy is not None else contextlib.nullcontext()
                with ctx:
                    t0, c0 = time.perf_counter(), time.process_time()
                    while batch := k.read_events():
                        got += len(batch)
                    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                print(f"  snep, backlog drained{label} (queued first, 512 MiB buffer): {got:,} events in "
                      f"{wall:.3f} s = {got / wall:,.0f} events/s wall, {cpu / max(got, 1) * 1e6:.1f} us CPU/event, "
                      f"{k.counters.overruns} overruns")
            _flush(NS_SERVER)
        # conntrack -E on the same traffic (output to /dev/null: a pipe left unread would
        # stall it; it reports how many events it showed when interrupted)
        listener = netns.popen_in(NS_SERVER, ["conntrack", "-E", "-e", "NEW", "-b", "2097152"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(0.3)
        out = netns.run_in(NS_CLIENT, [sys.executable, "-c", SENDER, str(flows)])
        time.sleep(1.0)
        listener.send_signal(signal.SIGINT)
        _, stderr = listener.communicate(timeout=10)
        shown = re.search(rb"(\d+) flow events have been shown", stderr)
        count = int(shown.group(1)) if shown else -1
        enobufs = stderr.count(b"hit ENOBUFS")
        print(f"  conntrack -E -e NEW -b 2097152: {count:,} events shown, ENOBUFS reported {enobufs} times, "
              f"generator {flows / float(out):,.0f} flows/s")
    finally:
        netns.delete(NS_CLIENT)
        netns.delete(NS_SERVER)


# --- 3. commit -----------------------------------------------------------------------

CONNTRACKD_CONF = """
Sync {{
    Mode FTFW {{
        ResendQueueSize 262144
    }}
    UDP {{
        IPv4_address {me}
        IPv4_Destination_Address {peer}
        Port 3780
        Interface {dev}
        SndSocketBuffer 8388608
        RcvSocketBuffer 8388608
        Checksum on
    }}
}}
General {{
    HashSize 65536
    HashLimit 524288
    LogFile {dir}/{name}.log
    Syslog off
    LockFile {dir}/{name}.lock
    UNIX {{
        Path {dir}/{name}.ctl
    }}
    NetlinkBufferSize 2097152
    NetlinkBufferSizeMaxGrowth 8388608
    Filter From Userspace {{
        Protocol Accept {{
            TCP
            UDP
        }}
        Address Ignore {{
            IPv4_address 127.0.0.1
            IPv4_address 10.97.0.0/24
        }}
    }}
}}
"""


def _conntrackd_external_count(conf: str) -> int:
    out = subprocess.run(["conntrackd", "-C", conf, "-s"], capture_output=True, text=True).stdout
    _, _, external = out.partition("cache external:")
    for line in external.splitlines():
        if "current active connections" in line:
            return int(line.split(":")[1].split()[0])
    return -1


@contextlib.contextmanager
def scheduled(policy: int, param: os.sched_param) -> Iterator[None]:
    """Run the body under another scheduling policy (conntrackd runs SCHED_RR 99)."""
    old = os.sched_getscheduler(0), os.sched_getparam(0)
    os.sched_setscheduler(0, policy, param)
    try:
        yield
    finally:
        os.sched_setscheduler(0, *old)


def _proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_cpu(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall, CPU) of fn in this process (all threads; system time included)."""
    t, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t, time.process_time() - c


def timed_child(argv: list[str]) -> tuple[float, float]:
    """(wall, CPU) of a command (its CPU from the children's rusage)."""
    t, c = time.perf_counter(), _children_cpu()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t, _children_cpu() - c


def bench_commit(n: int, runs: int) -> None:
    print(f"commit of {n:,} entries into an empty table")
    batch = [Event(EventKind.NEW, e) for e in entries(n)]
    with netns.namespace(NS_BACKUP):
        netns.conntrack_ready(NS_BACKUP)
        with NetlinkKernel(NS_BACKUP) as k:
            times = []
            for _ in range(runs):
                k.flush()
                time.sleep(0.5)  # let the kernel finish freeing the flushed entries
                times.append(timed_cpu(lambda: k.apply(batch)))
                assert k.count() == n
            ours = median_pair(times)
            k.flush()
            # conntrack -R with the same entries (conntrack-tools 1.4.7)
            with tempfile.NamedTemporaryFile("w", suffix=".ct", delete=False) as f:
                for e in entries(n):
                    f.write(f"-I -s {e.orig.src_ip} -d {e.orig.dst_ip} -p tcp --sport {e.orig.sport} "
                            f"--dport {e.orig.dport} --state ESTABLISHED -t 3600 -u SEEN_REPLY,ASSURED\n")
                path = f.name
            try:
                restore = []
                for _ in range(runs):
                    k.flush()
                    time.sleep(0.5)
                    restore.append(timed_child(netns.exec_argv(NS_BACKUP, ["conntrack", "-R", path])))
                    assert k.count() == n, k.count()
            finally:
                os.unlink(path)
            row("commit (apply NEW)", ours, "conntrack -R", median_pair(restore))
            k.flush()
        _bench_conntrackd_commit(n, ours)


def _bench_conntrackd_commit(n: int, ours: float) -> None:
    if shutil.which("conntrackd") is None:
        print("  conntrackd -c: conntrackd not installed")
        return
    tmp = tempfile.mkdtemp(prefix="snepk-ctd-")
    procs: list[subprocess.Popen[bytes]] = []
    netns.create(NS_PRIMARY)
    try:
        netns.veth(NS_PRIMARY, "sp", NS_BACKUP, "sb")
        netns.address(NS_PRIMARY, "sp", "10.97.0.1/24")
        netns.address(NS_BACKUP, "sb", "10.97.0.2/24")
        netns.conntrack_ready(NS_PRIMARY)
        with NetlinkKernel(NS_PRIMARY) as p:
            assert p.apply([Event(EventKind.NEW, e) for e in entries(n)]).created == n
        confs = {}
        for name, ns, me, peer, dev in (("primary", NS_PRIMARY, "10.97.0.1", "10.97.0.2", "sp"),
                                        ("backup", NS_BACKUP, "10.97.0.2", "10.97.0.1", "sb")):
            conf = os.path.join(tmp, f"{name}.conf")
            with open(conf, "w") as f:
                f.write(CONNTRACKD_CONF.format(me=me, peer=peer, dev=dev, dir=tmp, name=name))
            confs[name] = conf
            procs.append(netns.popen_in(ns, ["conntrackd", "-C", conf], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 10
        while not all(os.path.exists(os.path.join(tmp, f"{x}.ctl")) for x in confs) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        subprocess.run(["conntrackd", "-C", confs["primary"], "-B"], check=True, capture_output=True)
        deadline = time.monotonic() + 60
        while _conntrackd_external_count(confs["backup"]) < n and time.monotonic() < deadline:
            time.sleep(0.2)
        have = _conntrackd_external_count(confs["backup"])
        backup_pid = procs[1].pid  # `ip netns exec` execs conntrackd: same process
        with NetlinkKernel(NS_BACKUP) as b:
            b.flush()
            time.sleep(0.5)
            t0, c0 = time.perf_counter(), _proc_cpu(backup_pid)
            subprocess.run(["conntrackd", "-C", confs["backup"], "-c"], check=True, capture_output=True)
            while b.count() < min(have, n) and time.perf_counter() - t0 < 60:
                time.sleep(0.002)
            theirs = (time.perf_counter() - t0, _proc_cpu(backup_pid) - c0)
            committed = b.count()
        policy, param = os.sched_getscheduler(backup_pid), os.sched_getparam(backup_pid)
        names = {os.SCHED_OTHER: "SCHED_OTHER", os.SCHED_RR: "SCHED_RR", os.SCHED_FIFO: "SCHED_FIFO"}
        sched = f"{names.get(policy, policy)} {param.sched_priority}"
        print(f"  (conntrackd: the backup's external cache held {have:,} after the primary's bulk send; "
              f"-c put {committed:,} into the kernel; CPU is the daemon's; it runs {sched})")
        row("commit (apply NEW)", ours, "conntrackd -c", theirs)
        # the same scheduling class as the daemon, in a namespace of its own: what a
        # promotion writes (the external cache's records, snep.cache.RecordCache)
        with netns.namespace(NS_DUMP), scheduled(policy, param):
            netns.conntrack_ready(NS_DUMP)
            records = [encode_state(Event(EventKind.NEW, e)) for e in entries(n)]
            with NetlinkKernel(NS_DUMP) as k:
                times = []
                for _ in range(3):
                    k.flush()
                    time.sleep(0.5)
                    times.append(timed_cpu(lambda: k.apply_records(records, replace=True)))
                    assert k.count() == n
        row(f"commit, snep {sched} too", median_pair(times), "conntrackd -c", theirs)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
        netns.delete(NS_PRIMARY)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--flows", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", choices=["dump", "events", "commit"])
    args = parser.parse_args()
    reason = netns.available()
    if reason is not None:
        print(f"bench_kernel: skipped: {reason}")
        return 0
    print(f"snep kernel adapter vs conntrack-tools ({socket.gethostname()}, {os.cpu_count()} CPUs)")
    if args.only in (None, "dump"):
        bench_dump(args.entries, args.runs)
    if args.only in (None, "events"):
        bench_events(args.flows)
    if args.only in (None, "commit"):
        bench_commit(args.entries, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
