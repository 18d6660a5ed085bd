"""Fixtures for the DNS router tests: topologies, a running router in a thread, fake-free health servers."""

from __future__ import annotations

import asyncio
import copy
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from cdn.hostport import HostPort
from cdn.topology import Topology, parse_topology
from dnsrouter.service import DnsRouterService

DEMO = Path(__file__).resolve().parents[2] / "topology.yaml"


@pytest.fixture
def demo_data() -> dict[str, Any]:
    """The demo topology as a mutable mapping."""
    return copy.deepcopy(yaml.safe_load(DEMO.read_text()))


@pytest.fixture
def demo_topology(demo_data: dict[str, Any]) -> Topology:
    return parse_topology(demo_data, source="demo")


@dataclass
class RunningRouter:
    """A DnsRouterService running on its own event loop thread."""

    service: DnsRouterService
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread

    @property
    def port(self) -> int:
        return self.service.dns_port

    @property
    def http_port(self) -> int:
        return self.service.http_port

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on the router's loop (where its state lives) and return its result."""

        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(5)


def start_router(
    topology: Topology, *, poll_health: bool = False, idle_timeout: float = 10.0, batched_udp: bool = True,
    host: str = "127.0.0.1",
) -> RunningRouter:  # fmt: skip
    service = DnsRouterService(
        topology, listen=HostPort(host, 0), http=HostPort("127.0.0.1", 0), poll_health=poll_health,
        idle_timeout=idle_timeout, batched_udp=batched_udp,
    )  # fmt: skip
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="dns-router", daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(service.start(), loop).result(10)
    return RunningRouter(service, loop, thread)


def stop_router(running: RunningRouter) -> None:
    asyncio.run_coroutine_threadsafe(running.service.stop(), running.loop).result(10)
    running.loop.call_soon_threadsafe(running.loop.stop)
    running.thread.join(5)
    running.loop.close()


@pytest.fixture
def router_factory() -> Iterator[Callable[..., RunningRouter]]:
    started: list[RunningRouter] = []

    def make(topology: Topology, **kwargs: Any) -> RunningRouter:
        running = start_router(topology, **kwargs)
        started.append(running)
        return running

    yield make
    for running in started:
        stop_router(running)


@pytest.fixture
def running_router(demo_topology: Topology, router_factory: Callable[..., RunningRouter]) -> RunningRouter:
    """The demo topology served on loopback, with health polling off (every edge 'unknown', i.e. usable)."""
    return router_factory(demo_topology)


@dataclass
class HealthServer:
    """A real HTTP server answering /healthz with JSON whose load the test controls."""

    host: str
    report: dict[str, Any] = field(default_factory=dict)
    status: int = 200
    hits: list[float] = field(default_factory=list)  # time.monotonic() of every request, in arrival order
    server: ThreadingHTTPServer | None = None
    thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.server_address[1])

    def start(self, port: int = 0) -> HealthServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.hits.append(time.monotonic())  # list.append is atomic: handler threads may race
                body = json.dumps({"status": "ok", "name": owner.host, "region": "x", "inflight": 0,
                                   "bytes_per_second": 0.0, **owner.report}).encode()  # fmt: skip
                self.send_response(owner.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer((self.host, port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            assert self.thread is not None
            self.thread.join(5)
            self.server = None


@pytest.fixture
def health_servers() -> Iterator[Callable[[str], HealthServer]]:
    made: list[HealthServer] = []

    def make(host: str) -> HealthServer:
        hs = HealthServer(host).start()
        made.append(hs)
        return hs

    yield make
    for hs in made:
        hs.stop()


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    """Exactly `size` bytes from a blocking stream socket; fails the test if it closes first."""
    buf = bytearray()
    while len(buf) < size:
        chunk = sock.recv(size - len(buf))
        assert chunk, "the connection closed early"
        buf += chunk
    return bytes(buf)
