"""The edge over real sockets: misses stream, fills are single-flight, failures abort, hits are right."""

from __future__ import annotations

import asyncio
import os
import socket
import time

import httpx
import pytest

from tests.edge.conftest import EdgeFactory, EdgeThread, wait_stored, wait_until, wait_waiters
from tests.edge.upstream_server import Origin, Resource

pytestmark = pytest.mark.network

CHUNK = "/videos/v1/video/1.m4s"


def _body(n: int = 256 * 1024) -> bytes:
    return os.urandom(n)


def test_miss_then_hit_headers(origin: Origin, edge: EdgeThread) -> None:
    body = _body()
    origin.resources[CHUNK] = Resource(body=body, etag='"v1"')
    with httpx.Client(base_url=edge.url) as client:
        first = client.get(CHUNK)
        second = client.get(CHUNK)
    assert first.status_code == second.status_code == 200
    assert first.content == second.content == body
    assert first.headers["x-cache"] == "MISS"
    assert second.headers["x-cache"] == "HIT"
    assert second.headers["via"] == "1.1 edge0"
    assert int(second.headers["age"]) >= 0
    assert "date" in second.headers
    assert second.headers["etag"] == '"v1"'
    assert origin.count(CHUNK) == 1


def test_miss_streams_before_the_object_is_complete(origin: Origin, edge: EdgeThread) -> None:
    body = _body(200_000)
    res = origin.resources[CHUNK] = Resource(body=body, gate_after=100_000)
    with httpx.Client(base_url=edge.url, timeout=10) as client, client.stream("GET", CHUNK) as resp:
        got = bytearray()
        chunks = resp.iter_raw()
        while len(got) < 100_000:
            got += next(chunks)
        assert not res.gate.is_set()  # the origin has not sent the second half yet
        assert bytes(got) == body[:100_000]
        res.gate.set()
        for piece in chunks:
            got += piece
    assert bytes(got) == body


def test_64_concurrent_cold_requests_make_one_upstream_fetch(origin: Origin, edge: EdgeThread) -> None:
    body = _body(512 * 1024)
    res = origin.resources[CHUNK] = Resource(body=body, gate_after=1000)

    async def run() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=edge.url, limits=limits, timeout=20) as client:
            tasks = [asyncio.create_task(client.get(CHUNK)) for _ in range(64)]
            await asyncio.to_thread(wait_waiters, edge, 63)
            res.gate.set()
            return await asyncio.gather(*tasks)

    responses = asyncio.run(run())
    assert origin.count(CHUNK) == 1
    assert all(r.status_code == 200 and r.content == body for r in responses)
    labels = sorted(r.headers["x-cache"] for r in responses)
    assert labels.count("MISS") == 1
    assert labels.count("COALESCED") == 63


def test_fill_goes_on_when_the_first_client_leaves(origin: Origin, edge: EdgeThread) -> None:
    body = _body(300_000)
    res = origin.resources[CHUNK] = Resource(body=body, gate_after=50_000)
    with socket.create_connection(("127.0.0.1", edge.server.port)) as sock:
        sock.sendall(f"GET {CHUNK} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert sock.recv(1000)  # the head and the first bytes arrived
    res.gate.set()
    wait_stored(edge, CHUNK)
    with httpx.Client(base_url=edge.url) as client:
        again = client.get(CHUNK)
    assert again.content == body
    assert again.headers["x-cache"] == "HIT"
    assert origin.count(CHUNK) == 1


def test_upstream_dying_mid_body_aborts_every_client_and_stores_nothing(
    origin: Origin, edge: EdgeThread
) -> None:
    body = _body(400_000)
    res = Resource(body=body, gate_after=50_000, die_after=150_000)
    origin.resources[CHUNK] = res

    async def one(client: httpx.AsyncClient) -> BaseException | bytes:
        try:
            return (await client.get(CHUNK)).content
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            return exc

    async def run() -> list[BaseException | bytes]:
        async with httpx.AsyncClient(base_url=edge.url, timeout=10) as client:
            tasks = [asyncio.create_task(one(client)) for _ in range(8)]
            await asyncio.to_thread(wait_waiters, edge, 7)
            res.gate.set()
            return await asyncio.gather(*tasks)

    outcomes = asyncio.run(run())
    assert origin.count(CHUNK) == 1
    assert all(isinstance(o, httpx.TransportError) for o in outcomes), outcomes
    assert edge.call(lambda: edge.server.store.lookup(CHUNK)) is None
    origin.resources[CHUNK] = Resource(body=body)
    with httpx.Client(base_url=edge.url) as client:
        again = client.get(CHUNK)
    assert again.content == body
    assert again.headers["x-cache"] == "MISS"
    assert origin.count(CHUNK) == 2


def test_chunked_upstream_dying_mid_body_aborts_the_client(origin: Origin, edge: EdgeThread) -> None:
    origin.resources[CHUNK] = Resource(body=_body(100_000), die_after=30_000, chunked=True)
    with httpx.Client(base_url=edge.url) as client, pytest.raises(httpx.TransportError):
        client.get(CHUNK)


def test_chunked_upstream_is_streamed_and_cached(origin: Origin, edge: EdgeThread) -> None:
    body = _body(100_000)
    origin.resources[CHUNK] = Resource(body=body, chunked=True)
    with httpx.Client(base_url=edge.url) as client:
        first, second = client.get(CHUNK), client.get(CHUNK)
    assert first.content == second.content == body
    assert second.headers["content-length"] == str(len(body))


def test_range_from_cache_and_from_a_fill_in_progress(origin: Origin, edge: EdgeThread) -> None:
    body = _body(200_000)
    res = origin.resources[CHUNK] = Resource(body=body, gate_after=120_000)

    async def ranged() -> httpx.Response:
        async with httpx.AsyncClient(base_url=edge.url, timeout=10) as client:
            plain = asyncio.create_task(client.get(CHUNK))
            await asyncio.to_thread(wait_until, lambda: origin.count(CHUNK) == 1)
            part = asyncio.create_task(client.get(CHUNK, headers={"Range": "bytes=1000-1999"}))
            tail = asyncio.create_task(client.get(CHUNK, headers={"Range": "bytes=150000-"}))
            # served from the growing fill, while the origin still holds back the rest
            await asyncio.wait_for(asyncio.shield(part), timeout=10)
            assert not res.gate.is_set()
            assert not tail.done()
            res.gate.set()
            await plain
            t = await tail
            assert t.status_code == 206
            assert t.content == body[150_000:]
            return await part

    part = asyncio.run(ranged())
    assert part.status_code == 206
    assert part.content == body[1000:2000]
    assert part.headers["content-range"] == "bytes 1000-1999/200000"
    with httpx.Client(base_url=edge.url) as client:
        hit = client.get(CHUNK, headers={"Range": "bytes=-10"})
    assert hit.status_code == 206
    assert hit.content == body[-10:]
    assert hit.headers["x-cache"] == "HIT"
    assert origin.count(CHUNK) == 1


def test_conditional_requests_get_304(origin: Origin, edge: EdgeThread) -> None:
    origin.resources[CHUNK] = Resource(
        body=b"x" * 100, etag='"abc"', last_modified="Tue, 24 Nov 2026 10:00:00 GMT"
    )
    with httpx.Client(base_url=edge.url) as client:
        client.get(CHUNK)
        inm = client.get(CHUNK, headers={"If-None-Match": '"abc"'})
        other = client.get(CHUNK, headers={"If-None-Match": '"zzz"'})
        ims = client.get(CHUNK, headers={"If-Modified-Since": "Tue, 24 Nov 2026 11:00:00 GMT"})
        older = client.get(CHUNK, headers={"If-Modified-Since": "Tue, 24 Nov 2026 09:00:00 GMT"})
    assert inm.status_code == 304
    assert inm.content == b""
    assert inm.headers["etag"] == '"abc"'
    assert other.status_code == 200
    assert ims.status_code == 304
    assert older.status_code == 200


def test_head_and_keep_alive(origin: Origin, edge: EdgeThread) -> None:
    body = _body(5000)
    origin.resources[CHUNK] = Resource(body=body)
    with socket.create_connection(("127.0.0.1", edge.server.port)) as sock:
        # two pipelined requests on one connection: HEAD (a miss, forwarded as HEAD: no fill),
        # then GET (a miss that fills)
        sock.sendall(
            f"HEAD {CHUNK} HTTP/1.1\r\nHost: x\r\n\r\nGET {CHUNK} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        )
        data = b""
        deadline = time.monotonic() + 5
        while len(data) < len(body) + 400 and time.monotonic() < deadline:
            sock.settimeout(1)
            try:
                more = sock.recv(65536)
            except TimeoutError:
                break
            if not more:
                break
            data += more
    first, _, rest = data.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200")
    assert b"Content-Length: 5000" in first
    assert b"X-Cache: PASS" in first
    assert rest.startswith(b"HTTP/1.1 200")  # no body after the HEAD response
    head2, _, body2 = rest.partition(b"\r\n\r\n")
    assert b"X-Cache: MISS" in head2
    assert body2 == body
    assert origin.methods(CHUNK) == ["HEAD", "GET"]


def test_404_is_negative_cached_briefly(origin: Origin, make_edge: EdgeFactory, clock: object) -> None:
    edge = make_edge(negative_ttl=5.0)
    with httpx.Client(base_url=edge.url) as client:
        assert client.get("/videos/nope/x.m4s").status_code == 404
        assert client.get("/videos/nope/x.m4s").status_code == 404
        assert origin.count("/videos/nope/x.m4s") == 1
        clock.advance(6)  # type: ignore[attr-defined]
        assert client.get("/videos/nope/x.m4s").status_code == 404
    assert origin.count("/videos/nope/x.m4s") == 2


def test_5xx_without_a_stale_copy_is_passed_through_uncached(origin: Origin, edge: EdgeThread) -> None:
    origin.resources[CHUNK] = Resource(body=b"boom", status=503, headers=[])
    with httpx.Client(base_url=edge.url) as client:
        assert client.get(CHUNK).status_code == 503
        assert client.get(CHUNK).status_code == 503
    assert origin.count(CHUNK) == 2


def test_origin_down_without_stale_copy_gives_502(origin: Origin, edge: EdgeThread) -> None:
    origin.stop()
    with httpx.Client(base_url=edge.url) as client:
        resp = client.get(CHUNK)
    assert resp.status_code == 502
    assert resp.headers["cache-control"] == "no-store"
    assert resp.headers["x-cache"] == "MISS"


def test_origin_timeout_gives_504(origin: Origin, make_edge: EdgeFactory) -> None:
    edge = make_edge(upstream_read_timeout=0.3)
    origin.resources[CHUNK] = Resource(body=b"late", delay=1.0)
    with httpx.Client(base_url=edge.url) as client:
        assert client.get(CHUNK).status_code == 504


def test_private_responses_are_not_shared(origin: Origin, edge: EdgeThread) -> None:
    res = origin.resources[CHUNK] = Resource(
        body=b"mine", headers=[("Cache-Control", "private")], gate_after=2
    )

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=edge.url, timeout=10) as client:
            tasks = [asyncio.create_task(client.get(CHUNK)) for _ in range(3)]
            await asyncio.to_thread(wait_waiters, edge, 2)
            res.gate.set()
            return await asyncio.gather(*tasks)

    responses = asyncio.run(run())
    assert all(r.content == b"mine" for r in responses)
    assert origin.count(CHUNK) == 3  # one shared attempt, then one private fetch per waiter
    assert all(r.headers["x-cache"] == "MISS" for r in responses)


def test_coalesced_waiters_stream_before_the_object_is_complete(origin: Origin, edge: EdgeThread) -> None:
    body = _body(200_000)
    res = origin.resources[CHUNK] = Resource(body=body, gate_after=100_000)
    with httpx.Client(base_url=edge.url, timeout=10) as c1, httpx.Client(base_url=edge.url, timeout=10) as c2:
        with c1.stream("GET", CHUNK) as r1:
            first = r1.iter_raw()
            got1 = bytearray(next(first))
            with c2.stream("GET", CHUNK) as r2:  # joins the fill in progress
                assert r2.headers["x-cache"] == "COALESCED"
                second = r2.iter_raw()
                got2 = bytearray()
                while len(got2) < 100_000:
                    got2 += next(second)
                assert not res.gate.is_set()
                assert bytes(got2) == body[:100_000]
                res.gate.set()
                for piece in second:
                    got2 += piece
            for piece in first:
                got1 += piece
    assert bytes(got1) == bytes(got2) == body
    assert origin.count(CHUNK) == 1


def test_close_delimited_upstream_body_is_complete_at_eof(origin: Origin, edge: EdgeThread) -> None:
    body = _body(50_000)
    origin.resources[CHUNK] = Resource(body=body, close_delimited=True)
    with httpx.Client(base_url=edge.url) as client:
        first, second = client.get(CHUNK), client.get(CHUNK)
    assert first.content == body
    assert second.content == body
    assert second.headers["x-cache"] == "HIT"


def test_if_range(origin: Origin, edge: EdgeThread) -> None:
    body = _body(1000)
    origin.resources[CHUNK] = Resource(body=body, etag='"v7"')
    with httpx.Client(base_url=edge.url) as client:
        client.get(CHUNK)
        same = client.get(CHUNK, headers={"Range": "bytes=0-9", "If-Range": '"v7"'})
        changed = client.get(CHUNK, headers={"Range": "bytes=0-9", "If-Range": '"v6"'})
    assert same.status_code == 206
    assert same.content == body[:10]
    assert changed.status_code == 200
    assert changed.content == body


def test_if_range_with_a_weak_etag_never_matches(origin: Origin, edge: EdgeThread) -> None:
    # RFC 9110 §13.1.5: If-Range needs a strong match; a weak validator means "send it all".
    body = _body(1000)
    origin.resources[CHUNK] = Resource(body=body, etag='W/"v7"')
    with httpx.Client(base_url=edge.url) as client:
        client.get(CHUNK)
        resp = client.get(CHUNK, headers={"Range": "bytes=0-9", "If-Range": 'W/"v7"'})
    assert resp.status_code == 200
    assert resp.content == body
