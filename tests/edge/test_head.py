"""HEAD never fills: a cold HEAD is forwarded upstream as HEAD; cached entries and fills answer as before."""

from __future__ import annotations

import asyncio
import os
import threading

import httpx
import pytest

from tests.edge.conftest import Clock, EdgeFactory, EdgeThread, wait_until
from tests.edge.upstream_server import Origin, Resource

pytestmark = pytest.mark.network

CHUNK = "/videos/v1/video/7.m4s"


def _nothing_stored(edge: EdgeThread, key: str = CHUNK) -> bool:
    server = edge.server
    return edge.call(lambda: server.store.peek(key) is None and key not in server.filler.fills)


def test_cold_head_is_forwarded_as_head_and_stores_nothing(origin: Origin, edge: EdgeThread) -> None:
    body = os.urandom(100_000)
    origin.resources[CHUNK] = Resource(body=body, etag='"v1"', last_modified="Tue, 24 Nov 2026 10:00:00 GMT")
    with httpx.Client(base_url=edge.url) as client:
        head = client.head(CHUNK)
        assert origin.methods(CHUNK) == ["HEAD"]
        assert _nothing_stored(edge)
        get = client.get(CHUNK)
        hit = client.head(CHUNK)
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(body))
    assert head.headers["etag"] == '"v1"'
    assert head.headers["last-modified"] == "Tue, 24 Nov 2026 10:00:00 GMT"
    assert head.headers["cache-control"] == "max-age=60"
    assert head.headers["accept-ranges"] == "bytes"
    assert head.headers["x-cache"] == "PASS"
    assert head.headers["via"] == "1.1 edge0"
    assert "date" in head.headers
    assert int(head.headers["age"]) >= 0
    assert (get.headers["x-cache"], get.content) == ("MISS", body)
    assert (hit.headers["x-cache"], hit.headers["content-length"]) == ("HIT", str(len(body)))
    assert origin.methods(CHUNK) == ["HEAD", "GET"]
    metrics = edge.server.metrics
    assert (metrics.requests["PASS"], metrics.requests["MISS"]) == (1, 1)  # the second HEAD is a HIT
    assert metrics.bytes_served == len(body)  # HEADs send no body bytes
    assert edge.server.filler.stats.fetches == 1


def test_head_joins_a_fill_in_flight(origin: Origin, edge: EdgeThread) -> None:
    body = os.urandom(200_000)
    res = origin.resources[CHUNK] = Resource(body=body, gate_after=1000)
    with httpx.Client(base_url=edge.url, timeout=10) as c1, httpx.Client(base_url=edge.url, timeout=10) as c2:
        with c1.stream("GET", CHUNK) as r1:
            pieces = r1.iter_raw()
            got = bytearray(next(pieces))
            head = c2.head(CHUNK)  # answered from the fill's head while the body is held back
            assert not res.gate.is_set()
            res.gate.set()
            for piece in pieces:
                got += piece
    assert bytes(got) == body
    assert head.status_code == 200
    assert head.headers["x-cache"] == "COALESCED"
    assert head.headers["content-length"] == str(len(body))
    assert origin.methods(CHUNK) == ["GET"]
    assert edge.server.metrics.coalesced_waiters == 1


def test_get_does_not_join_a_head_in_flight(origin: Origin, edge: EdgeThread) -> None:
    body = os.urandom(10_000)
    hold = threading.Event()
    origin.resources[CHUNK] = Resource(body=body, hold=hold)

    async def run() -> tuple[httpx.Response, httpx.Response]:
        async with httpx.AsyncClient(base_url=edge.url, timeout=10) as client:
            head = asyncio.create_task(client.head(CHUNK))
            await asyncio.to_thread(wait_until, lambda: origin.count(CHUNK, "HEAD") == 1)
            assert _nothing_stored(edge)  # no in-flight entry for a GET to join
            get = asyncio.create_task(client.get(CHUNK))
            await asyncio.to_thread(wait_until, lambda: origin.count(CHUNK, "GET") == 1)
            hold.set()
            return await head, await get

    head, get = asyncio.run(run())
    assert (head.headers["x-cache"], head.headers["content-length"]) == ("PASS", str(len(body)))
    assert (get.headers["x-cache"], get.content) == ("MISS", body)
    assert edge.server.metrics.coalesced_waiters == 0


def test_head_on_an_expired_entry_revalidates_as_before(
    origin: Origin, edge: EdgeThread, clock: Clock
) -> None:
    origin.resources[CHUNK] = Resource(
        body=b"x" * 500, etag='"v1"', headers=[("Cache-Control", "max-age=10")]
    )
    with httpx.Client(base_url=edge.url) as client:
        client.get(CHUNK)
        clock.advance(20)
        head = client.head(CHUNK)
    assert head.headers["x-cache"] == "REVALIDATED"
    assert head.headers["content-length"] == "500"
    assert origin.methods(CHUNK) == ["GET", "GET"]
    assert origin.requests[-1].headers["if-none-match"] == '"v1"'


def test_conditional_and_ranged_cold_heads(origin: Origin, edge: EdgeThread) -> None:
    origin.resources[CHUNK] = Resource(body=os.urandom(1000), etag='"e"')
    with httpx.Client(base_url=edge.url) as client:
        inm = client.head(CHUNK, headers={"If-None-Match": '"e"'})
        part = client.head(CHUNK, headers={"Range": "bytes=0-9"})
        beyond = client.head(CHUNK, headers={"Range": "bytes=5000-"})
    assert (inm.status_code, inm.headers["etag"], inm.headers["x-cache"]) == (304, '"e"', "PASS")
    assert part.status_code == 206
    assert part.headers["content-range"] == "bytes 0-9/1000"
    assert part.headers["content-length"] == "10"
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == "bytes */1000"
    assert origin.methods(CHUNK) == ["HEAD"] * 3  # the validators and ranges stay at the edge
    assert _nothing_stored(edge)


def test_cold_head_of_a_missing_object_is_not_negative_cached(origin: Origin, edge: EdgeThread) -> None:
    path = "/videos/nope/x.m4s"
    with httpx.Client(base_url=edge.url) as client:
        cold, get, cached = client.head(path), client.get(path), client.head(path)
    assert (cold.status_code, cold.headers["x-cache"]) == (404, "PASS")
    assert (get.status_code, get.headers["x-cache"]) == (404, "MISS")
    assert (cached.status_code, cached.headers["x-cache"]) == (404, "HIT")
    assert origin.methods(path) == ["HEAD", "GET"]


@pytest.mark.parametrize("method", ["HEAD", "GET"])
def test_origin_down_gives_the_same_error_for_head_and_get(
    origin: Origin, edge: EdgeThread, method: str
) -> None:
    origin.stop()
    with httpx.Client(base_url=edge.url) as client:
        resp = client.request(method, CHUNK)
        get = client.get(CHUNK)
    assert resp.status_code == get.status_code == 502
    assert resp.headers["cache-control"] == "no-store"
    assert resp.headers["x-cache"] == ("PASS" if method == "HEAD" else "MISS")
    assert resp.headers["content-length"] == str(len(get.content))  # the error text, nothing else
    assert _nothing_stored(edge)


def test_origin_timeout_gives_504_for_head_as_for_get(origin: Origin, make_edge: EdgeFactory) -> None:
    edge = make_edge(upstream_read_timeout=0.3)
    origin.resources[CHUNK] = Resource(body=b"late", delay=1.0)
    with httpx.Client(base_url=edge.url) as client:
        head, get = client.head(CHUNK), client.get(CHUNK)
    assert head.status_code == get.status_code == 504
    assert (head.headers["x-cache"], get.headers["x-cache"]) == ("PASS", "MISS")
    assert edge.server.metrics.errors[504] == 2
    assert edge.server.filler.stats.failures == 2


def test_5xx_is_passed_through_for_head_as_for_get(origin: Origin, edge: EdgeThread) -> None:
    origin.resources[CHUNK] = Resource(body=b"boom", status=503, headers=[])
    with httpx.Client(base_url=edge.url) as client:
        head, get = client.head(CHUNK), client.get(CHUNK)
    assert head.status_code == get.status_code == 503
    assert head.headers["content-length"] == get.headers["content-length"] == "4"
    assert (head.headers["x-cache"], get.headers["x-cache"]) == ("PASS", "MISS")
    assert origin.methods(CHUNK) == ["HEAD", "GET"]
    assert _nothing_stored(edge)


def test_cold_head_through_a_parent_fills_neither(origin: Origin, make_edge: EdgeFactory) -> None:
    body = os.urandom(50_000)
    origin.resources[CHUNK] = Resource(body=body, etag='"p"')
    shield = make_edge(name="shield")
    child = make_edge(name="child", parent=shield.url)
    with httpx.Client(timeout=10) as client:
        head = client.head(child.url + CHUNK)
        assert _nothing_stored(shield)
        assert _nothing_stored(child)
        get = client.get(child.url + CHUNK)
    assert (head.status_code, head.headers["content-length"], head.headers["etag"]) == (
        200,
        str(len(body)),
        '"p"',
    )
    assert (head.headers["via"], head.headers["x-cache"]) == ("1.1 child", "PASS")
    assert get.content == body
    assert origin.methods(CHUNK) == ["HEAD", "GET"]
