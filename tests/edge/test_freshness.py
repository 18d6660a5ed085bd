"""Freshness over real sockets: Cache-Control, Expires, revalidation with 304, stale serving."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest

from tests.edge.conftest import Clock, EdgeFactory, EdgeThread, wait_stored, wait_until, wait_waiters
from tests.edge.upstream_server import Origin, Resource

pytestmark = pytest.mark.network

PATH = "/videos/v1/manifest.mpd"
AUTH = {"Authorization": "Bearer s3cret"}


def _http_date(offset: float) -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + offset))


def _get(edge: EdgeThread, **headers: str) -> httpx.Response:
    with httpx.Client(base_url=edge.url, timeout=10) as client:
        return client.get(PATH, headers=headers)


@pytest.mark.parametrize(
    ("headers", "advance", "fetches"),
    [
        ([("Cache-Control", "max-age=10")], 5, 1),
        ([("Cache-Control", "max-age=10")], 11, 2),
        ([("Cache-Control", "max-age=1, s-maxage=100")], 50, 1),
        ([("Cache-Control", "max-age=100, s-maxage=2")], 3, 2),
        ([("Cache-Control", "no-store")], 0, 2),
        ([("Cache-Control", "private, max-age=100")], 0, 2),
        ([("Cache-Control", "no-cache, max-age=100")], 0, 2),
        ([("Expires", "+30")], 10, 1),
        ([("Expires", "+30")], 40, 2),
        ([("Expires", "0")], 0, 2),
    ],
)
def test_cache_control_decides_upstream_fetches(
    origin: Origin,
    edge: EdgeThread,
    clock: Clock,
    headers: list[tuple[str, str]],
    advance: float,
    fetches: int,
) -> None:
    # "+N" stands for an Expires date N seconds from now, computed here rather than at collection
    # time, which may be minutes earlier on a loaded machine.
    headers = [(k, _http_date(float(v[1:])) if v.startswith("+") else v) for k, v in headers]
    origin.resources[PATH] = Resource(body=b"<MPD/>", headers=headers, not_modified=False)
    assert _get(edge).content == b"<MPD/>"
    clock.advance(advance)
    assert _get(edge).content == b"<MPD/>"
    assert origin.count(PATH) == fetches


def test_expired_entry_is_revalidated_with_one_conditional_get(
    origin: Origin, edge: EdgeThread, clock: Clock
) -> None:
    body = b"m" * 5000
    origin.resources[PATH] = Resource(body=body, etag='"e1"', headers=[("Cache-Control", "max-age=10")])
    assert _get(edge).headers["x-cache"] == "MISS"
    clock.advance(20)
    res = origin.resources[PATH]
    res.hold = threading.Event()  # keep the revalidation in flight until all requests joined it

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=edge.url, timeout=10) as client:
            tasks = [asyncio.create_task(client.get(PATH)) for _ in range(10)]
            await asyncio.to_thread(wait_waiters, edge, 9)
            assert res.hold is not None
            res.hold.set()
            return await asyncio.gather(*tasks)

    responses = asyncio.run(run())
    assert all(r.status_code == 200 and r.content == body for r in responses)
    assert {r.headers["x-cache"] for r in responses} == {"REVALIDATED"}
    assert origin.count(PATH) == 2
    assert origin.requests[-1].headers["if-none-match"] == '"e1"'
    hit = _get(edge)
    assert hit.headers["x-cache"] == "HIT"  # the 304 restarted its freshness
    assert origin.count(PATH) == 2


def test_revalidation_with_new_content_replaces_the_entry(
    origin: Origin, edge: EdgeThread, clock: Clock
) -> None:
    origin.resources[PATH] = Resource(body=b"old", etag='"1"', headers=[("Cache-Control", "max-age=10")])
    _get(edge)
    origin.resources[PATH] = Resource(body=b"new", etag='"2"', headers=[("Cache-Control", "max-age=10")])
    clock.advance(11)
    assert _get(edge).content == b"new"
    assert _get(edge).headers["x-cache"] == "HIT"


def test_last_modified_revalidation(origin: Origin, edge: EdgeThread, clock: Clock) -> None:
    lm = "Tue, 24 Nov 2026 10:00:00 GMT"
    origin.resources[PATH] = Resource(body=b"x", last_modified=lm, headers=[("Cache-Control", "max-age=1")])
    _get(edge)
    clock.advance(2)
    assert _get(edge).headers["x-cache"] == "REVALIDATED"
    assert origin.requests[-1].headers["if-modified-since"] == lm


def test_stale_while_revalidate_serves_stale_and_refreshes_in_background(
    origin: Origin, edge: EdgeThread, clock: Clock
) -> None:
    origin.resources[PATH] = Resource(
        body=b"v1", headers=[("Cache-Control", "max-age=10, stale-while-revalidate=60")]
    )
    _get(edge)
    origin.resources[PATH] = Resource(
        body=b"v2", headers=[("Cache-Control", "max-age=10, stale-while-revalidate=60")]
    )
    clock.advance(15)
    stale = _get(edge)
    assert stale.content == b"v1"
    assert stale.headers["x-cache"] == "STALE"
    deadline = time.monotonic() + 5
    fresh = _get(edge)
    while fresh.content == b"v1" and time.monotonic() < deadline:
        assert fresh.headers["x-cache"] == "STALE"  # until the background revalidation lands
        time.sleep(0.02)
        fresh = _get(edge)
    assert fresh.content == b"v2"
    assert fresh.headers["x-cache"] == "HIT"
    assert origin.count(PATH) == 2


@pytest.mark.parametrize("failure", ["down", "503", "timeout"])
def test_stale_is_served_when_the_origin_fails(
    origin: Origin, make_edge: EdgeFactory, clock: Clock, failure: str
) -> None:
    edge = make_edge(upstream_read_timeout=0.3, stale_if_error=100.0)
    origin.resources[PATH] = Resource(body=b"good", headers=[("Cache-Control", "max-age=10")])
    _get(edge)
    clock.advance(20)
    if failure == "down":
        origin.stop()
    elif failure == "503":
        origin.resources[PATH] = Resource(body=b"error page", status=503, headers=[])
    else:
        origin.resources[PATH] = Resource(body=b"late", delay=1.0)
    resp = _get(edge)
    assert resp.status_code == 200
    assert resp.content == b"good"
    assert resp.headers["x-cache"] == "STALE"
    # the good entry was not replaced by the error
    assert edge.call(lambda: edge.server.store.lookup(PATH)) is not None
    clock.advance(200)  # beyond max-age + stale-if-error: the error shows
    assert _get(edge).status_code in (502, 503, 504)


def test_stale_if_error_directive_overrides_the_default_window(
    origin: Origin, make_edge: EdgeFactory, clock: Clock
) -> None:
    edge = make_edge(stale_if_error=0.0)
    origin.resources[PATH] = Resource(
        body=b"good", headers=[("Cache-Control", "max-age=10, stale-if-error=50")]
    )
    _get(edge)
    clock.advance(30)
    origin.stop()
    assert _get(edge).headers["x-cache"] == "STALE"
    clock.advance(40)
    assert _get(edge).status_code == 502


def test_s_maxage_forbids_serving_stale_on_error(
    origin: Origin, make_edge: EdgeFactory, clock: Clock
) -> None:
    # RFC 9111 §5.2.2.10: s-maxage implies proxy-revalidate, so the edge's default window is off.
    edge = make_edge(stale_if_error=300.0)
    origin.resources[PATH] = Resource(body=b"good", headers=[("Cache-Control", "s-maxage=10")])
    _get(edge)
    clock.advance(20)
    origin.stop()
    assert _get(edge).status_code == 502


def test_expires_without_a_date_counts_from_when_the_response_arrived(
    origin: Origin, edge: EdgeThread, clock: Clock
) -> None:
    # RFC 9111 §4.2.1: Expires minus Date, "using the time the message was received" if no Date.
    headers = [("Expires", _http_date(60))]
    origin.resources[PATH] = Resource(body=b"<MPD/>", headers=headers, not_modified=False, send_date=False)
    assert _get(edge).content == b"<MPD/>"
    clock.advance(30)
    assert _get(edge).headers["x-cache"] == "HIT"
    assert origin.count(PATH) == 1
    clock.advance(40)
    assert _get(edge).content == b"<MPD/>"
    assert origin.count(PATH) == 2


def test_entry_purged_during_its_revalidation_leaves_no_file_behind(
    origin: Origin, edge: EdgeThread, clock: Clock
) -> None:
    cc = [("Cache-Control", "max-age=10, stale-while-revalidate=60")]
    origin.resources[PATH] = Resource(body=b"x" * 100, etag='"e1"', headers=cc)
    _get(edge)
    wait_stored(edge, PATH)
    clock.advance(20)
    res = origin.resources[PATH]
    res.hold = threading.Event()
    assert _get(edge).headers["x-cache"] == "STALE"  # and a background revalidation, held
    wait_until(lambda: origin.count(PATH) == 2)
    with httpx.Client(base_url=edge.url) as client:
        assert client.post("/admin/purge", json={"all": True}, headers=AUTH).json()["purged"] == 1
    res.hold.set()  # the 304 arrives for an entry that is no longer there
    wait_until(lambda: edge.call(lambda: len(edge.server.filler.fills)) == 0)
    time.sleep(0.1)
    assert [p.name for p in edge.server.store.objects.rglob("*") if p.is_file()] == []  # no orphan meta
    assert edge.call(lambda: edge.server.store.stats().entries) == 0


def test_entry_purged_while_a_client_waits_on_its_revalidation_is_refetched_not_corrupt(
    origin: Origin, edge: EdgeThread, clock: Clock
) -> None:
    origin.resources[PATH] = Resource(body=b"x" * 100, etag='"e1"', headers=[("Cache-Control", "max-age=10")])
    _get(edge)
    wait_stored(edge, PATH)
    clock.advance(20)
    res = origin.resources[PATH]
    res.hold = threading.Event()

    async def run() -> httpx.Response:
        async with httpx.AsyncClient(base_url=edge.url, timeout=10) as client:
            task = asyncio.create_task(client.get(PATH))
            await asyncio.to_thread(wait_until, lambda: origin.count(PATH) == 2)
            purge = await client.post("/admin/purge", json={"all": True}, headers=AUTH)
            assert purge.json()["purged"] == 1
            assert res.hold is not None
            res.hold.set()
            return await task

    resp = asyncio.run(run())
    assert resp.status_code == 200
    assert resp.content == b"x" * 100  # the 304 found its entry purged: fetched again in full
    assert origin.count(PATH) == 3
    assert edge.call(lambda: edge.server.store.stats().corrupt) == 0  # a purge is not corruption
