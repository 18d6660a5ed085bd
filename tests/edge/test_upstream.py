"""The upstream client against a real origin: keep-alive reuse, stale connections, fallback."""

from __future__ import annotations

import asyncio
import socket

import pytest

from edge.errors import UpstreamConnectError, UpstreamTimeout
from edge.upstream import UpstreamChain, UpstreamPool
from tests.edge.upstream_server import Origin, Resource

pytestmark = pytest.mark.network


async def _get(pool: UpstreamPool | UpstreamChain, path: str) -> tuple[int, bytes]:
    resp = await pool.start(path)
    parts: list[bytes] = []
    resp.stream(parts.append)
    await resp.finished()
    return resp.status, b"".join(parts)


def test_connections_are_kept_alive_and_reused(origin: Origin) -> None:
    origin.resources["/videos/a"] = Resource(body=b"A" * 1000)
    origin.resources["/videos/b"] = Resource(body=b"B" * 10, chunked=True)

    async def run() -> list[tuple[int, bytes]]:
        pool = UpstreamPool(origin.url, connect_timeout=1, read_timeout=2)
        try:
            return [await _get(pool, p) for p in ("/videos/a", "/videos/b", "/videos/a")]
        finally:
            pool.close()

    assert asyncio.run(run()) == [(200, b"A" * 1000), (200, b"B" * 10), (200, b"A" * 1000)]
    assert origin.connections == 1


def test_a_connection_closed_while_idle_is_retried_on_a_new_one(origin: Origin) -> None:
    origin.resources["/videos/a"] = Resource(body=b"x", headers=[("Connection", "keep-alive")])

    async def run() -> tuple[int, bytes]:
        pool = UpstreamPool(origin.url, connect_timeout=1, read_timeout=2)
        try:
            await _get(pool, "/videos/a")
            for sock in list(origin._conns):  # the origin drops the idle kept-alive connection
                sock.shutdown(socket.SHUT_RDWR)
            await asyncio.sleep(0.1)
            return await _get(pool, "/videos/a")
        finally:
            pool.close()

    assert asyncio.run(run()) == (200, b"x")
    assert origin.connections == 2


def test_connect_error_and_timeout(origin: Origin) -> None:
    origin.resources["/videos/slow"] = Resource(body=b"x", delay=0.5)

    async def run() -> None:
        refused = UpstreamPool("http://127.0.0.1:1", connect_timeout=1, read_timeout=1)
        with pytest.raises(UpstreamConnectError, match="127.0.0.1:1"):
            await refused.start("/videos/x")
        slow = UpstreamPool(origin.url, connect_timeout=1, read_timeout=0.1)
        with pytest.raises(UpstreamTimeout):
            await slow.start("/videos/slow")
        slow.close()

    asyncio.run(run())


def test_chain_falls_back_on_connect_error_and_5xx(origin: Origin) -> None:
    bad_parent = Origin()
    bad_parent.resources["/videos/a"] = Resource(body=b"oops", status=503, headers=[])
    origin.resources["/videos/a"] = Resource(body=b"good")

    async def run() -> list[tuple[int, bytes]]:
        dead = UpstreamChain(
            [
                UpstreamPool("http://127.0.0.1:1", connect_timeout=1, read_timeout=1),
                UpstreamPool(origin.url, connect_timeout=1, read_timeout=1),
            ]
        )
        failing = UpstreamChain(
            [
                UpstreamPool(bad_parent.url, connect_timeout=1, read_timeout=1),
                UpstreamPool(origin.url, connect_timeout=1, read_timeout=1),
            ]
        )
        try:
            return [await _get(dead, "/videos/a"), await _get(failing, "/videos/a")]
        finally:
            dead.close()
            failing.close()

    try:
        assert asyncio.run(run()) == [(200, b"good"), (200, b"good")]
    finally:
        bad_parent.stop()
    assert origin.count("/videos/a") == 2


def test_head_ends_with_its_head_and_keeps_the_connection(origin: Origin) -> None:
    origin.resources["/videos/a"] = Resource(body=b"A" * 1000)

    async def run() -> tuple[int, str, tuple[int, bytes], int]:
        pool = UpstreamPool(origin.url, connect_timeout=1, read_timeout=2)
        try:
            head = await pool.start("/videos/a", method="HEAD")
            await head.finished()  # no body to wait for, although Content-Length says 1000
            return (
                head.status,
                head.headers["content-length"],
                await _get(pool, "/videos/a"),
                pool.bytes_fetched,
            )
        finally:
            pool.close()

    assert asyncio.run(run()) == (200, "1000", (200, b"A" * 1000), 1000)
    assert origin.methods("/videos/a") == ["HEAD", "GET"]
    assert origin.connections == 1


def test_a_body_after_a_head_response_drops_the_connection(origin: Origin) -> None:
    origin.resources["/videos/a"] = Resource(body=b"A" * 1000, body_on_head=True)

    async def run() -> tuple[int, bytes]:
        pool = UpstreamPool(origin.url, connect_timeout=1, read_timeout=2)
        try:
            head = await pool.start("/videos/a", method="HEAD")
            await head.finished()
            await asyncio.sleep(0.1)  # the stray body arrives
            assert head.closed
            return await _get(pool, "/videos/a")
        finally:
            pool.close()

    assert asyncio.run(run()) == (200, b"A" * 1000)
    assert origin.connections == 2
