"""Long-lived TCP connections and UDP flows that send continuously and check what comes back.

The server (in the server namespace) echoes every record. The client (in the client
namespace) opens many TCP connections and UDP flows, each sending a 16-byte record
(flow id, sequence number, send time) every ``interval`` seconds, and checks the echoes:
in order, no gap, no duplicate. A flow whose echoes stop is stalled; a stall that lasts
is a broken connection (a firewall that does not know a connection drops its packets,
so TCP retransmits into the void). Every stall longer than ``stall`` seconds is recorded
as an interval (start, end): the failover gap is read from them.

Both ends are processes started with ``python -m snep.lab.traffic server|client`` under
``ip netns exec``. The client takes commands on stdin, one JSON object per line, and
answers each with one JSON line on stdout::

    {"cmd": "snap"}                    -> {"time": ..., "flows": [...], "churn": {...}}
    {"cmd": "open", "tcp": 10}         -> {"opened": [ids]}   (more long-lived connections)
    {"cmd": "churn", "rate": 50}       -> {"churn": rate}     (short connections per second)
    {"cmd": "latency"}                 -> {"connect": [[start, seconds], ...]}  (churn connects, then forgotten)
    {"cmd": "quit"}                    -> {"bye": true}

``TrafficClient`` drives that process from the controlling side; ``Clients`` drives several
(one per client namespace: the active-active stage's groups) as one.

A churn connection's connect time (SYN sent to SYN-ACK received, as the client's kernel
sees it) is the first-packet latency of a new connection through the firewalls: what a
deferral adds shows there.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from snep.lab.topology import Topology

RECORD = struct.Struct("!IId")  # flow id, sequence number, send time (wall clock)
TCP_PORT = 5001
UDP_PORT = 5002
CHURN_PORT = 5003
MAX_CONNECT_TIMES = 100_000  # connect times kept between two "latency" commands


# ------------------------------------------------------------------ server side

class _UdpEcho(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(data, addr)  # type: ignore[attr-defined]


async def _tcp_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def serve(host: str = "0.0.0.0", tcp_port: int = TCP_PORT, udp_port: int = UDP_PORT,
                churn_port: int = CHURN_PORT) -> None:
    """Echo TCP (two ports: long-lived and churn) and UDP until killed."""
    loop = asyncio.get_running_loop()
    servers = [await asyncio.start_server(_tcp_echo, host, port, backlog=1024, reuse_address=True)
               for port in (tcp_port, churn_port)]
    await loop.create_datagram_endpoint(_UdpEcho, local_addr=(host, udp_port))
    print(json.dumps({"ready": True}), flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


# ------------------------------------------------------------------ client side

@dataclass
class Flow:
    """What one flow sent and got back."""

    id: int
    kind: str  # "tcp" or "udp"
    opened: float = 0.0
    sport: int = 0
    sent: int = 0
    received: int = 0
    expected: int = 0
    lost: int = 0  # sequence numbers skipped by an echo (UDP loss; a TCP bug)
    dups: int = 0  # old sequence numbers echoed again
    last_rx: float = 0.0
    stalls: list[tuple[float, float]] = field(default_factory=list)
    error: str = ""

    def on_echo(self, seq: int, now: float, stall: float) -> None:
        if seq < self.expected:
            self.dups += 1
            return
        self.lost += seq - self.expected
        self.expected = seq + 1
        self.received += 1
        if self.last_rx and now - self.last_rx > stall:
            self.stalls.append((round(self.last_rx, 3), round(now, 3)))
        self.last_rx = now

    def snapshot(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "opened": self.opened, "sport": self.sport,
                "sent": self.sent, "received": self.received, "lost": self.lost,
                "dups": self.dups, "last_rx": self.last_rx, "stalls": self.stalls,
                "error": self.error}


class _UdpFlow(asyncio.DatagramProtocol):
    def __init__(self, flow: Flow, stall: float) -> None:
        self.flow, self.stall = flow, stall

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) == RECORD.size:
            _fid, seq, _sent = RECORD.unpack(data)
            self.flow.on_echo(seq, time.time(), self.stall)

    def error_received(self, exc: Exception) -> None:  # ICMP errors: keep sending
        pass


class Client:
    """All flows of the client process."""

    def __init__(self, server: str, interval: float, stall: float) -> None:
        self.server, self.interval, self.stall = server, interval, stall
        self.flows: list[Flow] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.churn_rate = 0.0
        self.churn = {"ok": 0, "failed": 0}
        self.connect_times: list[tuple[float, float]] = []  # churn connects: (start, seconds), until asked for
        self._churn_task: asyncio.Task[None] | None = None

    def _task(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def open_tcp(self, n: int) -> list[int]:
        flows = [Flow(id=len(self.flows) + i, kind="tcp") for i in range(n)]
        self.flows += flows
        await asyncio.gather(*(self._connect(f) for f in flows))
        for f in flows:
            if not f.error:
                self._task(self._tcp_flow(f))
        return [f.id for f in flows]

    async def _connect(self, flow: Flow) -> None:
        try:
            flow.reader, flow.writer = await asyncio.wait_for(  # type: ignore[attr-defined]
                asyncio.open_connection(self.server, TCP_PORT), 5.0)
            flow.sport = flow.writer.get_extra_info("sockname")[1]  # type: ignore[attr-defined]
            flow.opened = time.time()
        except (OSError, asyncio.TimeoutError) as error:
            flow.error = f"connect: {error!r}"

    async def _tcp_flow(self, flow: Flow) -> None:
        reader: asyncio.StreamReader = flow.reader  # type: ignore[attr-defined]
        writer: asyncio.StreamWriter = flow.writer  # type: ignore[attr-defined]

        async def receive() -> None:
            while True:
                data = await reader.readexactly(RECORD.size)
                _fid, seq, _sent = RECORD.unpack(data)
                flow.on_echo(seq, time.time(), self.stall)

        rx = asyncio.get_running_loop().create_task(receive())
        try:
            while not rx.done():
                writer.write(RECORD.pack(flow.id, flow.sent, time.time()))
                flow.sent += 1
                if writer.transport.get_write_buffer_size() > 65536:
                    await asyncio.wait([rx], timeout=self.interval)
                    continue
                await asyncio.sleep(self.interval)
            rx.result()
        except (OSError, asyncio.IncompleteReadError, ConnectionError) as error:
            flow.error = f"{type(error).__name__}: {error}"
        finally:
            rx.cancel()
            writer.close()

    async def open_udp(self, n: int) -> list[int]:
        loop = asyncio.get_running_loop()
        ids = []
        for _ in range(n):
            flow = Flow(id=len(self.flows), kind="udp", opened=time.time())
            self.flows.append(flow)
            transport, _ = await loop.create_datagram_endpoint(
                lambda f=flow: _UdpFlow(f, self.stall), remote_addr=(self.server, UDP_PORT))
            flow.sport = transport.get_extra_info("sockname")[1]
            self._task(self._udp_flow(flow, transport))
            ids.append(flow.id)
        return ids

    async def _udp_flow(self, flow: Flow, transport: asyncio.DatagramTransport) -> None:
        try:
            while True:
                transport.sendto(RECORD.pack(flow.id, flow.sent, time.time()))
                flow.sent += 1
                await asyncio.sleep(self.interval)
        finally:
            transport.close()

    def set_churn(self, rate: float) -> None:
        self.churn_rate = rate
        if rate > 0 and self._churn_task is None:
            self._churn_task = asyncio.get_running_loop().create_task(self._churn_loop())

    async def _churn_loop(self) -> None:
        while True:
            if self.churn_rate <= 0:
                await asyncio.sleep(0.2)
                continue
            self._task(self._one_short())
            await asyncio.sleep(1.0 / self.churn_rate)

    async def _one_short(self) -> None:
        try:
            at, started = time.time(), time.perf_counter()
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.server, CHURN_PORT), 3.0)
            if len(self.connect_times) < MAX_CONNECT_TIMES:
                self.connect_times.append((at, time.perf_counter() - started))
            writer.write(RECORD.pack(0, 0, time.time()))
            await asyncio.wait_for(reader.readexactly(RECORD.size), 3.0)
            writer.close()
            self.churn["ok"] += 1
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            self.churn["failed"] += 1

    def snapshot(self) -> dict[str, Any]:
        return {"time": time.time(), "flows": [f.snapshot() for f in self.flows],
                "churn": dict(self.churn)}


async def client_main(server: str, tcp: int, udp: int, interval: float, stall: float) -> None:
    client = Client(server, interval, stall)
    await client.open_tcp(tcp)
    await client.open_udp(udp)
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[str] = asyncio.Queue()

    def read_stdin() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(commands.put_nowait, line)
        loop.call_soon_threadsafe(commands.put_nowait, '{"cmd": "quit"}')

    threading.Thread(target=read_stdin, daemon=True).start()
    print(json.dumps({"ready": True, "opened": len(client.flows),
                      "errors": sum(1 for f in client.flows if f.error)}), flush=True)
    while True:
        line = await commands.get()
        try:
            cmd = json.loads(line)
        except ValueError:
            print(json.dumps({"error": f"bad command {line!r}"}), flush=True)
            continue
        match cmd.get("cmd"):
            case "snap":
                answer: dict[str, Any] = client.snapshot()
            case "open":
                answer = {"opened": await client.open_tcp(int(cmd.get("tcp", 0)))
                          + await client.open_udp(int(cmd.get("udp", 0)))}
            case "churn":
                client.set_churn(float(cmd["rate"]))
                answer = {"churn": client.churn_rate}
            case "latency":
                answer = {"connect": client.connect_times}
                client.connect_times = []
            case "quit":
                print(json.dumps({"bye": True}), flush=True)
                return
            case other:
                answer = {"error": f"unknown command {other!r}"}
        print(json.dumps(answer), flush=True)


# ------------------------------------------------------------------ controlling side

class TrafficError(RuntimeError):
    """The traffic processes did not start or stopped answering."""


class TrafficClient:
    """Drives a client process (``python -m snep.lab.traffic client``) over its stdin/stdout."""

    def __init__(self, proc: subprocess.Popen[bytes], src: str = "") -> None:
        self.proc = proc
        self.src = src  # the client's address, written into each flow of a snapshot
        hello = self._read(timeout=30.0)
        if not hello.get("ready"):
            raise TrafficError(f"client did not start: {hello}")
        self.hello = hello

    def _read(self, timeout: float = 10.0) -> dict[str, Any]:
        assert self.proc.stdout is not None
        box: list[bytes] = []
        reader = threading.Thread(target=lambda: box.append(self.proc.stdout.readline()),  # type: ignore[union-attr]
                                  daemon=True)
        reader.start()
        reader.join(timeout)
        if not box or not box[0]:
            raise TrafficError(f"traffic client silent (exit {self.proc.poll()})")
        return json.loads(box[0])

    def command(self, cmd: str, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write((json.dumps({"cmd": cmd, **args}) + "\n").encode())
            self.proc.stdin.flush()
        except OSError as error:
            raise TrafficError(f"traffic client gone: {error}") from error
        return self._read(timeout=30.0)

    def snap(self) -> dict[str, Any]:
        snap = self.command("snap")
        for flow in snap["flows"]:
            flow["src"] = self.src
        return snap

    def open(self, tcp: int = 0, udp: int = 0) -> list[int]:
        return list(self.command("open", tcp=tcp, udp=udp)["opened"])

    def churn(self, rate: float) -> None:
        self.command("churn", rate=rate)

    def latency(self) -> list[tuple[float, float]]:
        """The churn connections' connects since the last call: (when it started, seconds)."""
        return [(at, seconds) for at, seconds in self.command("latency")["connect"]]


def split(n: int, k: int) -> list[int]:
    """``n`` in ``k`` nearly equal shares, the larger first."""
    return [n // k + (i < n % k) for i in range(k)]


class Clients:
    """Several traffic clients driven as one: flow ids are made unique (client k's flow i
    is ``k * ID_SPAN + i``), counts add up, new connections and churn are spread evenly."""

    ID_SPAN = 100_000

    def __init__(self, clients: Sequence[TrafficClient]) -> None:
        self.clients = list(clients)
        self.hello = {"ready": True,
                      "opened": sum(c.hello.get("opened", 0) for c in self.clients),
                      "errors": sum(c.hello.get("errors", 0) for c in self.clients)}

    def snap(self) -> dict[str, Any]:
        snaps = [c.snap() for c in self.clients]
        flows = []
        for k, snap in enumerate(snaps):
            for flow in snap["flows"]:
                flows.append({**flow, "id": k * self.ID_SPAN + flow["id"]})
        return {"time": max(s["time"] for s in snaps), "flows": flows,
                "churn": {key: sum(s["churn"][key] for s in snaps) for key in ("ok", "failed")}}

    def open(self, tcp: int = 0, udp: int = 0) -> list[int]:
        ids = []
        for k, (client, t, u) in enumerate(zip(self.clients, split(tcp, len(self.clients)),
                                                        split(udp, len(self.clients)))):
            if t or u:
                ids += [k * self.ID_SPAN + i for i in client.open(tcp=t, udp=u)]
        return ids

    def churn(self, rate: float) -> None:
        for client in self.clients:
            client.churn(rate / len(self.clients))

    def latency(self) -> list[tuple[float, float]]:
        return [t for client in self.clients for t in client.latency()]

    def command(self, cmd: str, **args: Any) -> dict[str, Any]:
        """``cmd`` to every client (e.g. "quit"); the last answer."""
        answer: dict[str, Any] = {}
        for client in self.clients:
            answer = client.command(cmd, **args)
        return answer


def client_argv(server: str, tcp: int, udp: int, interval: float, stall: float) -> list[str]:
    return [sys.executable, "-m", "snep.lab.traffic", "client", "--server", server,
            "--tcp", str(tcp), "--udp", str(udp), "--interval", str(interval),
            "--stall", str(stall)]


def server_argv() -> list[str]:
    return [sys.executable, "-m", "snep.lab.traffic", "server"]


def start_server(topo: Topology) -> None:
    """The echo server in ``topo.server`` (stopped at the topology's teardown)."""
    srv = topo.spawn(topo.server, server_argv(), name="traffic-server", stdout=subprocess.PIPE)
    assert srv.stdout is not None
    if b"ready" not in srv.stdout.readline():
        raise TrafficError(f"traffic server did not start (exit {srv.poll()})")


def start_client(topo: Topology, ns: str, src: str, *, tcp: int, udp: int, interval: float,
                 stall: float, name: str = "traffic-client") -> TrafficClient:
    """A client in namespace ``ns`` (address ``src``) talking to ``topo``'s server."""
    cli = topo.spawn(ns, client_argv(topo.server_ip, tcp, udp, interval, stall),
                     name=name, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    return TrafficClient(cli, src)


def start(topo: Topology, *, tcp: int = 50, udp: int = 10, interval: float = 0.1,
          stall: float = 0.3) -> TrafficClient:
    """Start the echo server in ``topo.server`` and the client in ``topo.client``.

    Both processes belong to the topology: they are stopped at its teardown.
    """
    start_server(topo)
    return start_client(topo, topo.client, topo.client_ip, tcp=tcp, udp=udp,
                        interval=interval, stall=stall)


def start_many(topo: Topology, clients: Sequence[tuple[str, str]], *, tcp: int = 50,
               udp: int = 10, interval: float = 0.1, stall: float = 0.3) -> Clients:
    """The echo server and one client per (namespace, address) of ``clients``, the flows
    split evenly between them."""
    start_server(topo)
    k = len(clients)
    tcp_shares, udp_shares = split(tcp, k), split(udp, k)
    return Clients([start_client(topo, ns, src, tcp=t, udp=u, interval=interval, stall=stall,
                                 name=f"traffic-client-{i + 1}")
                    for i, ((ns, src), t, u) in enumerate(zip(clients, tcp_shares, udp_shares))])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m snep.lab.traffic")
    sub = parser.add_subparsers(dest="role", required=True)
    sub.add_parser("server")
    c = sub.add_parser("client")
    c.add_argument("--server", required=True)
    c.add_argument("--tcp", type=int, default=50)
    c.add_argument("--udp", type=int, default=10)
    c.add_argument("--interval", type=float, default=0.1)
    c.add_argument("--stall", type=float, default=0.3)
    args = parser.parse_args(argv)
    try:
        if args.role == "server":
            asyncio.run(serve())
        else:
            asyncio.run(client_main(args.server, args.tcp, args.udp, args.interval, args.stall))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
