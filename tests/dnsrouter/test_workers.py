"""`--workers N`: the counters link between processes, and /metrics summing every real worker process."""

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
from dnsrouter.metrics import Counters, Metrics
from dnsrouter.workers import (
    REPLY,
    REQUEST,
    WorkerLink,
    WorkerPool,
    serve_counters,
    spawn_workers,
    stop_workers,
    worker_command,
)
from tests.conftest import free_port
from tests.dnsrouter.conftest import DEMO, HealthServer

pytestmark = pytest.mark.network


# ---------------------------------------------------------------- spawning, stopping, and the link


def reply(seq: int, counters: Counters) -> bytes:
    body = counters.to_json()
    return REPLY.pack(seq, len(body)) + body


def counted(n: int) -> Metrics:
    m = Metrics()
    m.queries[1, 0] = n
    m.decisions["fallback", "ecs"] = n
    m.dropped = 1
    return m


def test_worker_command(demo_topology: Topology) -> None:
    config = DnsRouterConfig(topology=demo_topology, listen=HostPort("127.0.0.1", 5300), http=None, workers=3)
    cmd = worker_command(config, "t.yaml", 7)
    assert cmd[:3] == [sys.executable, "-m", "dnsrouter.cli"]
    assert " ".join(cmd[3:]) == (
        "serve --topology t.yaml --listen 127.0.0.1:5300 --workers 1 --reuse-port --no-http "
        "--log-level INFO --counters-fd 7"
    )


def test_stop_workers_kills_one_that_does_not_stop_on_sigterm(demo_topology: Topology) -> None:
    listen = HostPort("127.0.0.1", free_dns_port())
    config = DnsRouterConfig(topology=demo_topology, listen=listen, http=None, workers=2)
    (worker,) = spawn_workers(config, str(DEMO))
    worker.link.settimeout(20)
    worker.link.sendall(REQUEST.pack(1))
    assert worker.link.recv(REPLY.size)  # it serves: its SIGTERM handler is installed
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
            asyncio.create_task(serve_counters(theirs, m))
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
        b_theirs.sendall(REPLY.pack(1, 8) + b"not json")
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
        return up == self.workers and "edge eu-west-1 is now up" in self.log.read_text()

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


@pytest.fixture
def topology_file(
    tmp_path: Path, demo_data: dict[str, Any], health_servers: Callable[[str], HealthServer]
) -> Path:
    """The demo topology, its edges' health URLs served by real HTTP servers reporting inflight 3."""
    for edge in demo_data["edges"]:
        hs = health_servers(edge["address"])
        hs.report["inflight"] = 3
        edge["health_url"] = f"http://{edge['address']}:{hs.port}/healthz"
    parse_topology(demo_data, source="test")  # fail here, not in the subprocess, if it is wrong
    path = tmp_path / "topology.yaml"
    path.write_text(yaml.safe_dump(demo_data, sort_keys=False))
    return path


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
    assert "the main process closed the counters link; stopping" in server.log.read_text()
