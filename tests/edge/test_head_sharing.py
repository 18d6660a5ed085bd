"""Concurrent cold HEADs share one upstream HEAD (X-Cache PASS); a finished probe is never reused."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import threading

import httpx
import pytest

from edge.errors import UpstreamBrokenError
from edge.fill import Probe
from edge.filler import Filler
from tests.edge.conftest import EdgeFactory, EdgeThread, wait_until
from tests.edge.upstream_server import Origin, Resource

pytestmark = pytest.mark.network

CHUNK = "/videos/v1/video/9.m4s"
N = 8
AUTH = {"Authorization": "Bearer s3cret"}


def _probe_waiters(edge: EdgeThread) -> int:
    filler: Filler = edge.server.filler
    return edge.call(lambda: filler.stats.probe_waiters)


def _idle(edge: EdgeThread, key: str = CHUNK) -> bool:
    """Nothing stored, filling or probing for `key`, and no task left behind."""
    filler = edge.server.filler
    return edge.call(
        lambda: (
            edge.server.store.peek(key) is None
            and key not in filler.fills
            and key not in filler.probes
            and not filler._tasks
        )
    )


def _held(origin: Origin, body: bytes) -> threading.Event:
    """Serve CHUNK with its head held until the returned event is set."""
    hold = threading.Event()
    origin.resources[CHUNK] = Resource(body=body, etag='"s"', hold=hold)
    return hold


async def _wave(
    edge: EdgeThread, origin: Origin, hold: threading.Event, heads: int, waiters: int
) -> list[httpx.Response]:
    """Send `heads` HEADs at once; release the origin once all but one joined the probe in flight."""
    async with httpx.AsyncClient(base_url=edge.url, timeout=10) as client:
        sent = [asyncio.create_task(client.head(CHUNK)) for _ in range(heads)]
        await asyncio.to_thread(wait_until, lambda: _probe_waiters(edge) >= waiters)
        hold.set()
        return list(await asyncio.gather(*sent))


def test_concurrent_cold_heads_share_one_upstream_head(origin: Origin, edge: EdgeThread) -> None:
    body = os.urandom(30_000)
    hold = _held(origin, body)
    first = asyncio.run(_wave(edge, origin, hold, N, N - 1))
    assert origin.methods(CHUNK) == ["HEAD"]
    assert {r.status_code for r in first} == {200}
    assert {r.headers["content-length"] for r in first} == {str(len(body))}
    assert all(r.headers == first[0].headers for r in first)  # the same head, Date and Age included
    assert first[0].headers["x-cache"] == "PASS"
    assert _idle(edge)

    # a second wave after the first finished asks again: a finished probe is not reused
    hold = _held(origin, body)
    second = asyncio.run(_wave(edge, origin, hold, N, 2 * (N - 1)))
    assert origin.methods(CHUNK) == ["HEAD", "HEAD"]
    assert {(r.status_code, r.headers["x-cache"]) for r in second} == {(200, "PASS")}
    with httpx.Client(base_url=edge.url) as client:
        alone = client.head(CHUNK)
        text = client.get("/metrics").text.splitlines()
        stats = client.get("/admin/stats", headers=AUTH).json()
    assert (alone.status_code, alone.headers["x-cache"]) == (200, "PASS")
    assert origin.methods(CHUNK) == ["HEAD"] * 3
    filler = edge.server.filler
    assert (filler.stats.probes, filler.stats.probe_waiters, filler.stats.fetches) == (3, 14, 0)
    assert 'cdn_edge_requests_total{cache="PASS"} 17' in text
    assert 'cdn_edge_requests_total{cache="MISS"} 0' in text
    assert "cdn_edge_coalesced_probes_total 14" in text
    assert "cdn_edge_coalesced_waiters_total 0" in text  # probe waiters are not COALESCED hits
    assert (stats["requests"]["PASS"], stats["hit_ratio"]) == (17, None)  # no lookup yet
    assert _idle(edge)


def test_probes_do_not_skew_the_hit_ratio(origin: Origin, edge: EdgeThread) -> None:
    origin.resources[CHUNK] = Resource(body=b"x" * 1000)
    other = "/videos/v1/video/10.m4s"
    origin.resources[other] = Resource(body=b"y" * 500)
    with httpx.Client(base_url=edge.url) as client:
        client.head(other)  # PASS
        client.get(CHUNK)  # MISS
        client.get(CHUNK)  # HIT
        client.head(CHUNK)  # HIT: cached now, answered like a GET
        stats = client.get("/admin/stats", headers=AUTH).json()
    assert {k: stats["requests"][k] for k in ("HIT", "MISS", "PASS")} == {"HIT": 2, "MISS": 1, "PASS": 1}
    assert stats["hit_ratio"] == pytest.approx(2 / 3)


def test_first_client_leaving_does_not_break_the_others(origin: Origin, edge: EdgeThread) -> None:
    body = os.urandom(20_000)
    hold = _held(origin, body)
    with socket.create_connection(("127.0.0.1", edge.server.port), timeout=5) as first:
        first.sendall(f"HEAD {CHUNK} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        wait_until(lambda: origin.count(CHUNK, "HEAD") == 1)
        first.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    # the client that started the probe is gone (reset); the others join the probe it started
    rest = asyncio.run(_wave(edge, origin, hold, N - 1, N - 1))
    assert {(r.status_code, r.headers["content-length"]) for r in rest} == {(200, str(len(body)))}
    assert origin.methods(CHUNK) == ["HEAD"]
    assert _idle(edge)


def test_a_cancelled_starter_does_not_cancel_the_shared_probe(origin: Origin, edge: EdgeThread) -> None:
    body = os.urandom(1000)
    hold = _held(origin, body)
    filler: Filler = edge.server.filler

    async def run() -> list[Probe | BaseException]:
        starter = asyncio.create_task(filler.probe(CHUNK))
        await asyncio.to_thread(wait_until, lambda: origin.count(CHUNK, "HEAD") == 1)
        others = [asyncio.create_task(filler.probe(CHUNK)) for _ in range(3)]
        await asyncio.sleep(0)
        starter.cancel()  # what cancelling the first client's handler would do
        await asyncio.sleep(0.05)
        hold.set()
        return await asyncio.gather(starter, *others, return_exceptions=True)

    got = edge.call_async(run())
    assert isinstance(got[0], asyncio.CancelledError)
    assert [p.length for p in got[1:] if isinstance(p, Probe)] == [len(body)] * 3
    assert origin.methods(CHUNK) == ["HEAD"]
    assert _idle(edge)


@pytest.mark.parametrize(("failure", "status"), [("origin-down", 502), ("timeout", 504)])
def test_a_failed_shared_probe_gives_every_waiter_the_error(
    origin: Origin, make_edge: EdgeFactory, failure: str, status: int
) -> None:
    edge = make_edge(upstream_read_timeout=2.0 if failure == "origin-down" else 1.0)
    hold = _held(origin, b"z" * 100)

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=edge.url, timeout=10) as client:
            sent = [asyncio.create_task(client.head(CHUNK)) for _ in range(N)]
            await asyncio.to_thread(wait_until, lambda: _probe_waiters(edge) == N - 1)
            if failure == "origin-down":
                await asyncio.to_thread(origin.stop)  # drops the held upstream connection
            return list(await asyncio.gather(*sent))

    try:
        answers = asyncio.run(run())
    finally:
        hold.set()
    assert {(r.status_code, r.headers["x-cache"]) for r in answers} == {(status, "PASS")}
    assert origin.methods(CHUNK) == ["HEAD"]
    assert edge.server.filler.stats.failures == 1  # one upstream exchange failed, not eight
    assert edge.server.metrics.errors[status] == N
    assert _idle(edge)


def test_purge_during_a_probe_leaves_no_stale_sharing(origin: Origin, edge: EdgeThread) -> None:
    hold = _held(origin, b"old" * 100)

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=edge.url, timeout=10) as client:
            before = asyncio.create_task(client.head(CHUNK))
            await asyncio.to_thread(wait_until, lambda: origin.count(CHUNK, "HEAD") == 1)
            purge = await client.post("/admin/purge", json={"all": True}, headers=AUTH)
            assert purge.json() == {"purged": 0}
            during = asyncio.create_task(client.head(CHUNK))  # still in flight: may share it
            await asyncio.to_thread(wait_until, lambda: _probe_waiters(edge) == 1)
            hold.set()
            answers = [await before, await during]
            origin.resources[CHUNK] = Resource(body=b"new" * 200)
            answers.append(await client.head(CHUNK))
            return answers

    before, during, after = asyncio.run(run())
    assert before.headers["content-length"] == during.headers["content-length"] == "300"
    assert after.headers["content-length"] == "600"  # asked again: the finished probe is gone
    assert origin.methods(CHUNK) == ["HEAD", "HEAD"]
    assert _idle(edge)


def test_closing_the_edge_ends_a_shared_probe_and_answers_its_waiters(
    origin: Origin, edge: EdgeThread
) -> None:
    hold = _held(origin, b"q" * 100)
    filler: Filler = edge.server.filler

    async def run() -> list[Probe | BaseException]:
        waiters = [asyncio.create_task(filler.probe(CHUNK)) for _ in range(3)]
        await asyncio.to_thread(wait_until, lambda: origin.count(CHUNK, "HEAD") == 1)
        await filler.close(grace=0.05)
        return await asyncio.gather(*waiters, return_exceptions=True)

    try:
        got = edge.call_async(run())
    finally:
        hold.set()
    assert len(got) == 3
    assert all(isinstance(g, UpstreamBrokenError) and "shutting down" in str(g) for g in got)
    assert _idle(edge)
