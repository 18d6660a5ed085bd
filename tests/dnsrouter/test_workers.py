"""`--workers N`: the link between processes (edge states in, counters out), /metrics summing every real
worker process, and every worker routing from the main process's health polls."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dns.edns
import dns.exception
import dns.message
import dns.query
import dns.rcode
import httpx
import pytest
import yaml

from cdn.hostport import HostPort
from cdn.promtext import parse_prometheus_text
from cdn.topology import Topology, parse_topology
from dnsrouter.config import DnsRouterConfig
from dnsrouter.link import HEADER, VERSION, Header, Kind, encode_states, frame
from dnsrouter.metrics import Counters, Metrics
from dnsrouter.policy import EdgeState, Health, Router
from dnsrouter.workers import (
    WorkerLink,
    WorkerPool,
    serve_link,
    spawn_workers,
    stop_workers,
    worker_command,
)
from tests.conftest import free_port
from tests.dnsrouter.conftest import DEMO, HealthServer, recv_exactly

pytestmark = pytest.mark.network


# ---------------------------------------------------------------- spawning, stopping, and the link


def reply(seq: int, counters: Counters) -> bytes:
    return frame(Kind.COUNTERS, seq, counters.to_json())


def counted(n: int) -> Metrics:
    m = Metrics()
    m.queries[1, 0] = n
    m.decisions["fallback", "ecs"] = n
    m.dropped = 1
    return m


def ask_counters(link: socket.socket, seq: int) -> Counters:
    """As the main process: ask a worker for its counters on its link and read the reply."""
    link.sendall(frame(Kind.COUNTERS_REQUEST, seq))
    header = Header.unpack(recv_exactly(link, HEADER.size))
    assert (header.version, header.kind, header.seq) == (VERSION, Kind.COUNTERS, seq)
    return Counters.from_json(recv_exactly(link, header.size))


def table(topology: Topology, *, down: tuple[str, ...] = ()) -> dict[str, EdgeState]:
    """Every edge of `topology` up, except those named `down`."""
    return {e.name: EdgeState(Health.DOWN if e.name in down else Health.UP) for e in topology.edges}


MALFORMED = [  # each is logged and skipped by a worker, which stays in step for the next frame
    HEADER.pack(VERSION + 1, Kind.EDGE_STATES, 1, 3) + b"abc",  # a later version
    frame(Kind.COUNTERS, 2, b"{}"),  # a kind only the main process reads
    HEADER.pack(VERSION, 99, 3, 200_000) + bytes(200_000),  # an unknown kind, skipped in chunks
    frame(Kind.EDGE_STATES, 4, b"not json"),
    frame(Kind.EDGE_STATES, 5, b'{"nowhere-1": ["up", false]}'),
    frame(Kind.EDGE_STATES, 6, b'{"eu-west-1": ["down", false], "us-east-1": ["sideways", false]}'),
]


def test_worker_command(demo_topology: Topology) -> None:
    config = DnsRouterConfig(topology=demo_topology, listen=HostPort("127.0.0.1", 5300), http=None, workers=3)
    cmd = worker_command(config, "t.yaml", 7)
    assert cmd[:3] == [sys.executable, "-m", "dnsrouter.cli"]
    assert " ".join(cmd[3:]) == (
        "serve --topology t.yaml --listen 127.0.0.1:5300 --workers 1 --reuse-port --no-http "
        "--log-level INFO --link-fd 7"
    )


def test_stop_workers_kills_one_that_does_not_stop_on_sigterm(demo_topology: Topology) -> None:
    listen = HostPort("127.0.0.1", free_dns_port())
    config = DnsRouterConfig(topology=demo_topology, listen=listen, http=None, workers=2)
    (worker,) = spawn_workers(config, str(DEMO))
    worker.link.settimeout(20)
    ask_counters(worker.link, 1)  # it serves: its SIGTERM handler is installed
    os.kill(worker.process.pid, signal.SIGSTOP)  # a handled SIGTERM stays pending while it is stopped
    start = time.monotonic()
    stop_workers([worker], timeout=0.5)
    assert 0.4 < time.monotonic() - start < 5
    assert worker.process.returncode == -signal.SIGKILL
    assert worker.link.fileno() == -1  # closed


def test_collect_sums_every_worker_fresh() -> None:
    async def main() -> list[tuple[Counters, int]]:
        pairs = [socket.socketpair() for _ in range(2)]
        workers = [counted(3), counted(4)]
        serving = [
            asyncio.create_task(serve_link(theirs, m, Router((), answer_count=1)))
            for (_, theirs), m in zip(pairs, workers, strict=True)
        ]
        pool = WorkerPool([WorkerLink(ours, f"w{i}") for i, (ours, _) in enumerate(pairs)], timeout=5)
        await pool.start()
        first = await pool.collect()
        workers[0].queries[1, 0] += 10  # a change is seen at the very next scrape
        second = await pool.collect()
        await pool.close()
        await asyncio.wait_for(asyncio.gather(*serving), 5)  # the workers' side stops when the link closes
        return [(c.counters, c.answered) for c in (first, second)]

    first, second = asyncio.run(main())
    assert first == (counted(3).snapshot() + counted(4).snapshot(), 2)
    assert second[0].queries == {(1, 0): 17}
    assert (second[0].decisions, second[0].dropped, second[1]) == ({("fallback", "ecs"): 7}, 2, 2)


def test_a_worker_skips_malformed_frames_and_routes_from_the_tables_it_is_sent(
    demo_topology: Topology, caplog: pytest.LogCaptureFixture
) -> None:
    ours, theirs = socket.socketpair()
    router = Router(demo_topology.edges, answer_count=1)

    async def main() -> None:
        told = asyncio.Event()
        serving = asyncio.create_task(serve_link(theirs, counted(2), router, told))
        await asyncio.to_thread(ours.sendall, b"".join(MALFORMED))
        counters = await asyncio.to_thread(ask_counters, ours, 7)  # answered: alive and still in step
        assert counters == counted(2).snapshot()
        assert not told.is_set()  # none of those was a valid table
        assert set(router.states.values()) == {EdgeState()}
        await asyncio.to_thread(ours.sendall, frame(Kind.EDGE_STATES, 8, encode_states(table(demo_topology))))
        await asyncio.wait_for(told.wait(), 5)
        down = table(demo_topology, down=("eu-west-1",))
        await asyncio.to_thread(ours.sendall, frame(Kind.EDGE_STATES, 9, encode_states(down)))
        await asyncio.to_thread(ask_counters, ours, 10)  # frames are handled in order: the table is in
        assert router.states == down
        ours.close()
        await asyncio.wait_for(serving, 5)  # returns when the link closes

    with caplog.at_level("WARNING", logger="dnsrouter.workers"):
        asyncio.run(main())
    assert len(caplog.records) == len(MALFORMED)
    assert "sent a frame of version 2" in caplog.records[0].getMessage()
    assert "'sideways' is not a health state" in caplog.records[-1].getMessage()


def test_the_pool_pushes_the_whole_table_to_every_worker(demo_topology: Topology) -> None:
    pairs = [socket.socketpair() for _ in range(2)]
    routers = [Router(demo_topology.edges, answer_count=1) for _ in pairs]
    overloaded = {**table(demo_topology), "ap-south-1": EdgeState(Health.UP, overloaded=True)}

    async def main() -> int:
        told = [asyncio.Event() for _ in pairs]
        serving = [
            asyncio.create_task(serve_link(theirs, Metrics(), router, t))
            for (_, theirs), router, t in zip(pairs, routers, told, strict=True)
        ]
        pool = WorkerPool([WorkerLink(ours, f"w{i}") for i, (ours, _) in enumerate(pairs)], timeout=5)
        await pool.start()
        pool.push_states(table(demo_topology, down=("us-east-1",)), 1)
        await asyncio.wait_for(asyncio.gather(*(t.wait() for t in told)), 5)
        assert all(r.states == table(demo_topology, down=("us-east-1",)) for r in routers)
        pool.push_states(overloaded, 2)
        answered = (await pool.collect()).answered  # replies come after the table: it is applied
        await pool.close()
        await asyncio.wait_for(asyncio.gather(*serving), 5)
        return answered

    assert asyncio.run(main()) == 2
    assert all(r.states == overloaded for r in routers)


def test_a_silent_worker_keeps_its_last_counters_and_late_replies_are_dropped() -> None:
    ours, theirs = socket.socketpair()

    async def main() -> list[tuple[Counters, int, float]]:
        pool = WorkerPool([WorkerLink(ours, "w")], timeout=0.2)
        await pool.start()
        results = []
        for step in range(4):
            if step == 1:
                theirs.sendall(reply(1, Counters(dropped=5)))  # answers request 1 ... too late for scrape 1
            if step == 2:
                theirs.sendall(reply(3, Counters(dropped=9)))  # answers request 3 (scrape 3) in time
            start = time.monotonic()
            collected = await pool.collect()
            results.append((collected.counters, collected.answered, time.monotonic() - start))
        await pool.close()
        return results

    with theirs:
        results = asyncio.run(main())
    assert [(c.dropped, answered) for c, answered, _ in results] == [(0, 0), (0, 0), (9, 1), (9, 0)]
    assert all(0.15 < took < 2 for _, answered, took in results if not answered)


def test_a_closed_link_is_down_at_once_and_bad_replies_do_not_count() -> None:
    a_ours, a_theirs = socket.socketpair()
    b_ours, b_theirs = socket.socketpair()

    async def main() -> tuple[int, int, float]:
        pool = WorkerPool([WorkerLink(a_ours, "a"), WorkerLink(b_ours, "b")], timeout=5)
        await pool.start()
        a_theirs.close()  # the worker died
        b_theirs.sendall(frame(Kind.COUNTERS, 1, b"not json"))
        start = time.monotonic()
        collected = await pool.collect()
        b_theirs.sendall(reply(2, Counters(dropped=2)))
        again = await pool.collect()
        took = time.monotonic() - start
        await pool.close()
        return collected.answered, again.answered, took

    with b_theirs:
        answered, again, took = asyncio.run(main())
    assert (answered, again) == (0, 1)  # b's garbage does not count, its next reply does; a stays down
    assert took < 1  # neither scrape waited for its deadline


# ---------------------------------------------------------------- real processes


class DnsProcesses:
    """`cdn-dns serve --workers N` as a user starts it, on free ports, with live health endpoints."""

    def __init__(self, topology: Path, workers: int, log: Path) -> None:
        self.topology, self.workers, self.log = topology, workers, log
        self.proc = self._spawn()

    def _spawn(self) -> subprocess.Popen[bytes]:
        self.port, self.http = free_dns_port(), free_port()
        cmd = [sys.executable, "-m", "dnsrouter.cli", "serve", "--topology", str(self.topology),
               "--listen", f"127.0.0.1:{self.port}", "--http", f"127.0.0.1:{self.http}",
               "--workers", str(self.workers), "--log-level", "INFO"]  # fmt: skip
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.http}", trust_env=False, timeout=10)
        with self.log.open("wb") as stderr:
            return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr)

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = self.client.get("/metrics").text
        return {(s.name, s.labels): s.value for s in parse_prometheus_text(text)}

    def wait_ready(self) -> None:
        """Until every worker reports its counters and every edge has been polled."""
        deadline = time.monotonic() + 20
        while not self._ready():
            if self.proc.poll() is not None and "address already in use" in self.log.read_text():
                self.client.close()  # something else took a port since free_port() saw it free
                self.proc = self._spawn()
            assert self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.1)

    def _ready(self) -> bool:
        try:
            up = self.metrics()["cdn_dns_workers_up", ()]
        except httpx.TransportError:
            return False
        log = self.log.read_text()  # every process serves DNS, and the main one has polled every edge
        return (
            up == self.workers
            and log.count("serving DNS for") == self.workers
            and "edge eu-west-1 is now up" in log
        )

    def children(self) -> list[int]:
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        return [int(p) for p in path.read_text().split()]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.client.close()
        return self.proc.wait(15)


def free_dns_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 a moment ago."""
    while True:
        port = free_port(kind=socket.SOCK_DGRAM)
        if port_is_free(port):
            return port


def port_is_free(port: int) -> bool:
    """Nothing bound to the UDP port and nothing listening on the TCP port (TIME_WAIT allowed)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
            udp.bind(("127.0.0.1", port))
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind(("127.0.0.1", port))
    except OSError:
        return False
    return True


def gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")  # a zombie has exited
    except FileNotFoundError:
        return True


def wait_for(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def live_topology(
    path: Path, data: dict[str, Any], health_servers: Callable[[str], HealthServer]
) -> dict[str, HealthServer]:
    """Write `data` to `path` with every edge's health URL served by a real HTTP server reporting inflight 3."""
    servers = {}
    for edge in data["edges"]:
        hs = servers[edge["name"]] = health_servers(edge["address"])
        hs.report["inflight"] = 3
        edge["health_url"] = f"http://{edge['address']}:{hs.port}/healthz"
    parse_topology(data, source="test")  # fail here, not in the subprocess, if it is wrong
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return servers


@pytest.fixture
def topology_file(
    tmp_path: Path, demo_data: dict[str, Any], health_servers: Callable[[str], HealthServer]
) -> Path:
    """The demo topology, its edges' health URLs served by real HTTP servers reporting inflight 3."""
    live_topology(tmp_path / "topology.yaml", demo_data, health_servers)
    return tmp_path / "topology.yaml"


INTERVAL = 0.2  # s: the fast topology's health interval


@pytest.fixture
def fast_topology(
    tmp_path: Path, demo_data: dict[str, Any], health_servers: Callable[[str], HealthServer]
) -> tuple[Path, dict[str, HealthServer]]:
    """The demo topology with live edges, polled every INTERVAL s, down after one failure, up after one success."""
    demo_data["dns"]["health"] = {"interval": INTERVAL, "timeout": 0.5, "fall": 1, "rise": 1}
    path = tmp_path / "fast.yaml"
    return path, live_topology(path, demo_data, health_servers)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[[Path, int], DnsProcesses]]:
    started: list[DnsProcesses] = []

    def start(topology: Path, workers: int) -> DnsProcesses:
        started.append(DnsProcesses(topology, workers, tmp_path / f"dns-{len(started)}.log"))
        return started[-1]

    yield start
    for running in started:
        if running.proc.poll() is None:
            for pid in running.children():
                os.kill(pid, signal.SIGCONT)
        running.stop()


def ecs_query(name: str, rdtype: str, i: int) -> dns.message.Message:
    """A query with its own public /24 as client subnet, so its routing decision is computed afresh."""
    option = dns.edns.ECSOption(f"8.{i // 250}.{i % 250}.0", 24)
    return dns.message.make_query(name, rdtype, use_edns=0, options=[option])


SOCKETS = 48  # SO_REUSEPORT spreads by 4-tuple: many source ports reach every worker


def send_mix(port: int) -> None:
    """Per source socket: a routed A, a routed AAAA (through a CNAME), an NXDOMAIN, garbage, an MX."""
    for s in range(SOCKETS):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))

            def ask(query: dns.message.Message, rcode: int, sock: socket.socket = sock) -> None:
                answer = dns.query.udp(query, "127.0.0.1", port=port, timeout=3, sock=sock)
                assert answer.rcode() == rcode

            ask(ecs_query("video.cdn.test", "A", 2 * s), dns.rcode.NOERROR)
            ask(ecs_query("video.example.test", "AAAA", 2 * s + 1), dns.rcode.NOERROR)
            ask(dns.message.make_query("nope.cdn.test", "A"), dns.rcode.NXDOMAIN)
            sock.sendto(b"\x12\x34garbage", ("127.0.0.1", port))  # dropped, no answer
            # answered after the garbage was read: same socket, same worker, in order
            ask(dns.message.make_query("cdn.test", "MX"), dns.rcode.NOERROR)


def test_metrics_of_the_main_process_sum_every_worker(
    topology_file: Path, serve: Callable[[Path, int], DnsProcesses]
) -> None:
    server = serve(topology_file, 2)
    server.wait_ready()
    (worker,) = server.children()
    send_mix(server.port)
    tcp = 3
    for i in range(tcp):
        answer = dns.query.tcp(
            ecs_query("video.cdn.test", "A", 1000 + i), "127.0.0.1", port=server.port, timeout=3
        )
        assert answer.rcode() == dns.rcode.NOERROR

    got = server.metrics()
    assert (got["cdn_dns_workers", ()], got["cdn_dns_workers_up", ()]) == (2, 2)
    queries = {labels: n for (name, labels), n in got.items() if name == "cdn_dns_queries_total"}
    assert queries == {
        (("qtype", "A"), ("rcode", "NOERROR")): SOCKETS + tcp,
        (("qtype", "AAAA"), ("rcode", "NOERROR")): SOCKETS,
        (("qtype", "A"), ("rcode", "NXDOMAIN")): SOCKETS,
        (("qtype", "MX"), ("rcode", "NOERROR")): SOCKETS,
    }
    routed = 2 * SOCKETS + tcp
    assert got["cdn_dns_decisions_total", (("located_by", "fallback"), ("via", "ecs"))] == routed
    assert got["cdn_dns_decisions_computed_total", ()] == routed  # every routed query had its own subnet
    assert got["cdn_dns_dropped_total", ()] == SOCKETS
    # the edges' health is the main process's view, not a sum over the processes
    for edge in ("eu-west-shield", "eu-west-1", "us-east-1", "ap-south-1"):
        assert got["cdn_dns_edge_up", (("edge", edge),)] == 1
        assert got["cdn_dns_edge_inflight", (("edge", edge),)] == 3

    assert server.stop() == 0
    assert gone(worker)
    assert port_is_free(server.port)
    assert port_is_free(server.http)


def test_a_worker_that_does_not_answer_is_reported(
    topology_file: Path, serve: Callable[[Path, int], DnsProcesses]
) -> None:
    server = serve(topology_file, 3)
    server.wait_ready()
    send_mix(server.port)
    before = server.metrics()
    stopped, killed = server.children()

    os.kill(stopped, signal.SIGSTOP)
    start = time.monotonic()
    got = server.metrics()
    assert 0.5 < time.monotonic() - start < 5  # the scrape waited for it, but not for long
    assert got["cdn_dns_workers_up", ()] == 2
    assert got["cdn_dns_dropped_total", ()] == before["cdn_dns_dropped_total", ()] == SOCKETS  # last known

    os.kill(stopped, signal.SIGCONT)
    assert server.metrics()["cdn_dns_workers_up", ()] == 3

    os.kill(killed, signal.SIGKILL)
    wait_for(lambda: gone(killed), 5)
    start = time.monotonic()
    got = server.metrics()
    assert time.monotonic() - start < 0.9  # a closed link is known down at once, not after the 1 s
    assert (got["cdn_dns_workers", ()], got["cdn_dns_workers_up", ()]) == (3, 2)
    assert got["cdn_dns_dropped_total", ()] == SOCKETS
    assert "did not report its counters" in server.log.read_text()
    assert server.stop() == 0
    assert gone(stopped)
    assert port_is_free(server.port)


def test_workers_stop_when_the_main_process_is_killed(
    topology_file: Path, serve: Callable[[Path, int], DnsProcesses]
) -> None:
    server = serve(topology_file, 2)
    server.wait_ready()
    (worker,) = server.children()
    server.proc.kill()
    server.proc.wait(5)
    wait_for(lambda: gone(worker), 10)
    wait_for(lambda: port_is_free(server.port), 5)
    assert "the main process closed the link; stopping" in server.log.read_text()


# ---------------------------------------------------------------- edge health: polled once, pushed to every worker


EU_WEST = dns.edns.ECSOption("127.10.1.0", 24)  # an eu-west client network: eu-west-1, else eu-west-shield
EU_WEST_1, EU_WEST_SHIELD = "127.0.1.2", "127.0.1.1"
PUSH = 0.05  # s: allowance for the push from the main process to reach every worker (takes milliseconds)


def eu_west_answer(port: int, sock: socket.socket | None = None, timeout: float = 0.5) -> str | None:
    """The address answered for an eu-west client, or None when nothing answers."""
    query = dns.message.make_query("video.cdn.test", "A", use_edns=0, options=[EU_WEST])
    try:
        answer = dns.query.udp(query, "127.0.0.1", port=port, timeout=timeout, sock=sock)
    except (dns.exception.Timeout, OSError):
        return None
    (address,) = [rd.address for rd in answer.answer[0]]
    return str(address)


def eu_west_answers(port: int) -> set[str | None]:
    """The addresses answered for an eu-west client from SOCKETS source ports (SO_REUSEPORT: every process)."""
    seen = set()
    for _ in range(SOCKETS):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            seen.add(eu_west_answer(port, sock, timeout=3))
    return seen


def test_a_worker_serves_dns_only_once_told_the_edge_states(demo_topology: Topology) -> None:
    listen = HostPort("127.0.0.1", free_dns_port())
    config = DnsRouterConfig(topology=demo_topology, listen=listen, http=None, workers=2)
    (worker,) = spawn_workers(config, str(DEMO))
    try:
        worker.link.settimeout(20)
        ask_counters(worker.link, 1)  # it is running and reading its link ...
        worker.link.sendall(b"".join(MALFORMED))
        ask_counters(worker.link, 7)  # ... and still is after every malformed frame
        time.sleep(0.2)
        assert port_is_free(listen.port)  # but it answers no DNS before it knows the edges' states
        # Nothing serves the demo edges' health URLs: a worker polling them itself would find every edge
        # down and answer the nearest anyway (eu-west-1). It answers from what it is told instead.
        down = table(demo_topology, down=("eu-west-1",))
        worker.link.sendall(frame(Kind.EDGE_STATES, 8, encode_states(down)))
        wait_for(lambda: eu_west_answer(listen.port) == EU_WEST_SHIELD, 10)
        worker.link.sendall(frame(Kind.EDGE_STATES, 9, encode_states(table(demo_topology))))
        wait_for(lambda: eu_west_answer(listen.port) == EU_WEST_1, 5)
        worker.link.close()  # the main process is gone
        assert worker.process.wait(10) == 0
        assert port_is_free(listen.port)
    finally:
        stop_workers([worker])


def test_a_worker_never_told_the_edge_states_stops_when_its_link_closes(demo_topology: Topology) -> None:
    listen = HostPort("127.0.0.1", free_dns_port())
    config = DnsRouterConfig(topology=demo_topology, listen=listen, http=None, workers=2)
    (worker,) = spawn_workers(config, str(DEMO))
    try:
        worker.link.settimeout(20)
        ask_counters(worker.link, 1)
        worker.link.close()
        assert worker.process.wait(10) == 0
    finally:
        stop_workers([worker])


def test_only_the_main_process_polls_the_edges(
    fast_topology: tuple[Path, dict[str, HealthServer]], serve: Callable[[Path, int], DnsProcesses]
) -> None:
    topology, edges = fast_topology
    window = 1.0  # s: 5 intervals
    hits: dict[int, list[int]] = {}
    for workers in (1, 3):
        server = serve(topology, workers)
        server.wait_ready()
        start = time.monotonic()
        time.sleep(window)
        end = time.monotonic()
        hits[workers] = [sum(start <= t < end for t in hs.hits) for hs in edges.values()]
        assert server.stop() == 0
    most = round(window / INTERVAL) + 1  # one poller: one request per edge per interval
    assert all(2 <= n <= most for n in hits[1]), hits
    assert all(n <= min(most, max(hits[1]) + 1) for n in hits[3]), hits  # three pollers would make ~15


def test_every_worker_drops_a_dead_edge_as_soon_as_the_main_process_sees_it(
    fast_topology: tuple[Path, dict[str, HealthServer]], serve: Callable[[Path, int], DnsProcesses]
) -> None:
    topology, edges = fast_topology
    server = serve(topology, 3)
    server.wait_ready()
    assert eu_west_answers(server.port) == {EU_WEST_1}

    dead = edges["eu-west-1"]
    health_port = dead.port
    dead.stop()  # its health URL now refuses connections, as a killed edge's does
    start = time.monotonic()
    wait_for(lambda: "edge eu-west-1 is now down" in server.log.read_text(), 5)
    assert time.monotonic() - start < INTERVAL + 0.6  # the next poll round (fall: 1), give or take a slow one
    time.sleep(PUSH)
    computed = server.metrics()["cdn_dns_decisions_computed_total", ()]
    assert eu_west_answers(server.port) == {EU_WEST_SHIELD}  # from every process: none names the dead edge
    # The state change emptied every process's caches, and each computes this client's decision once, on
    # its first query; the others are cache hits. So this counts the processes that answered: all three
    # (the kernel spreads SOCKETS source ports over them; missing one has odds of about 3 * (2/3)**48).
    assert server.metrics()["cdn_dns_decisions_computed_total", ()] - computed == 3

    dead.start(health_port)
    wait_for(lambda: server.log.read_text().count("edge eu-west-1 is now up") == 2, 5)
    time.sleep(PUSH)
    assert eu_west_answers(server.port) == {EU_WEST_1}
    assert server.stop() == 0
