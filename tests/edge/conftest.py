"""Fixtures of the edge tests: a scripted origin, a steerable clock, and real edges in threads."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvloop

from cdn.hostport import HostPort
from edge.config import EdgeConfig
from edge.server import EdgeServer
from tests.edge.upstream_server import Origin

T = TypeVar("T")


class Clock:
    """Wall-clock time plus an offset the test can advance (the edge's freshness clock)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


class EdgeThread:
    """An EdgeServer running on its own uvloop in a thread, on 127.0.0.1 port 0 (`url`: https with TLS)."""

    def __init__(self, config: EdgeConfig, clock: Callable[[], float]) -> None:
        self.config = config
        self.loop = uvloop.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = self.call_async(self._make(config, clock))
        self.url = f"{'https' if config.tls else 'http'}://127.0.0.1:{self.server.port}"

    @staticmethod
    async def _make(config: EdgeConfig, clock: Callable[[], float]) -> EdgeServer:
        server = EdgeServer(config, clock=clock)
        await server.start()
        return server

    def call_async(self, coro: Any, timeout: float = 20) -> Any:
        """Run a coroutine on the edge's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[], T]) -> T:
        """Run a function on the edge's loop thread (to read or change its state safely)."""

        async def wrapper() -> T:
            return fn()

        return self.call_async(wrapper())  # type: ignore[no-any-return]

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        try:
            self.call_async(self.server.close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


@pytest.fixture
def origin() -> Iterator[Origin]:
    srv = Origin()
    yield srv
    srv.stop()


@pytest.fixture
def clock() -> Clock:
    return Clock()


EdgeFactory = Callable[..., EdgeThread]


@pytest.fixture
def make_edge(tmp_path: Path, origin: Origin, clock: Clock) -> Iterator[EdgeFactory]:
    """Start edges: `make_edge(name="a", cache_size=..., parent=...)`; all stopped at the end."""
    started: list[EdgeThread] = []

    def factory(**overrides: Any) -> EdgeThread:
        name = overrides.pop("name", f"edge{len(started)}")
        edge_clock = overrides.pop("clock", clock)
        fields: dict[str, Any] = {
            "origin": origin.url,
            "listen": HostPort("127.0.0.1", 0),
            "cache_dir": tmp_path / name,
            "cache_size": 64 * 1024**2,
            "memory_cache": 16 * 1024**2,
            "name": name,
            "region": "test",
            "admin_token": "s3cret",
            "upstream_read_timeout": 2.0,
            "stale_if_error": 300.0,
        }
        fields.update(overrides)
        edge = EdgeThread(EdgeConfig(**fields), edge_clock)
        started.append(edge)
        return edge

    yield factory
    for edge in started:
        edge.stop()


@pytest.fixture
def edge(make_edge: EdgeFactory) -> EdgeThread:
    return make_edge()


def wait_until(pred: Callable[[], object], timeout: float = 5.0) -> None:
    """Poll a condition in the test (never in the edge) until it holds."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def wait_stored(edge: EdgeThread, key: str) -> None:
    """Wait until the edge has committed `key` to its store, files included."""

    def on_disk() -> bool:
        entry = edge.call(lambda: edge.server.store.peek(key))
        return entry is not None and edge.server.store.paths(entry)[1].exists()

    wait_until(on_disk)


def wait_waiters(edge: EdgeThread, count: int) -> None:
    """Wait until `count` requests have joined fills started by others (COALESCED)."""
    wait_until(lambda: edge.server.metrics.coalesced_waiters >= count, timeout=20)


def wait_healthy(client: httpx.Client, timeout: float = 15.0) -> None:
    """Wait until the edge behind `client` (its base URL) answers /healthz with 2xx (an edge process starting)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.get("/healthz").raise_for_status()
            return
        except httpx.TransportError:
            assert time.monotonic() < deadline, "edge did not start"
            time.sleep(0.1)


def assert_miss_then_hit(client: httpx.Client, chunk: Path) -> None:
    """GET the store file `chunk` (under /videos/demo/) twice: a MISS, then a HIT, both its exact bytes."""
    path = f"/videos/demo/{chunk.name}"
    miss, hit = client.get(path), client.get(path)
    assert (miss.status_code, miss.headers["x-cache"]) == (200, "MISS")
    assert (hit.status_code, hit.headers["x-cache"]) == (200, "HIT")
    assert miss.content == hit.content == chunk.read_bytes()
