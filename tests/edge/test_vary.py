"""Vary (RFC 9111 §4.1): the pure rules, then an edge before an origin that negotiates Accept-Encoding."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import httpx
import pytest

from edge.vary import Forwarded, forwarded, matches, normalise, same_variant, select, vary_names
from tests.edge.conftest import Clock, EdgeFactory, EdgeThread, wait_stored, wait_until, wait_waiters
from tests.edge.upstream_server import Origin, Resource

PATH = "/videos/v1/manifest.mpd"
GZIP = {"Accept-Encoding": "gzip"}
IDENTITY = {"Accept-Encoding": "identity"}
BODIES = {"gzip": b"<gzip variant>" * 50, "identity": b"<identity variant>" * 40, None: b"<no header>"}
OTHER = b"<other value>"


# -- pure rules ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("gzip", "gzip"),
        ("  gzip  ", "gzip"),
        ("gzip,deflate", "gzip, deflate"),
        ("gzip ,\t deflate", "gzip, deflate"),
        ("en-GB;q=0.9,  en;q=0.8", "en-GB;q=0.9, en;q=0.8"),
        ("a  b", "a b"),
        ("x\r\nInjected: 1", "x Injected: 1"),
        ("", ""),
    ],
)
def test_normalise_collapses_whitespace(value: str, expected: str) -> None:
    assert normalise(value) == expected


def test_forwarded_keeps_only_negotiation_headers_in_a_fixed_order() -> None:
    headers = {
        "origin": "https://player.example",
        "authorization": "Bearer s3cret",
        "cookie": "session=1",
        "connection": "keep-alive",
        "te": "trailers",
        "user-agent": "test",
        "accept-encoding": "gzip,  br",
        "accept": "*/*",
        "range": "bytes=0-1",
    }
    assert forwarded(headers) == (
        ("accept", "*/*"),
        ("accept-encoding", "gzip, br"),
        ("origin", "https://player.example"),
    )
    assert forwarded({"accept-language": ""}) == (("accept-language", ""),)  # empty is not absent


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([], ()),
        ([("Content-Type", "video/mp4")], ()),
        ([("Vary", "Accept-Encoding")], ("accept-encoding",)),
        ([("vary", " Origin , ACCEPT-encoding,,")], ("accept-encoding", "origin")),
        ([("Vary", "Origin"), ("VARY", "accept-language, origin")], ("accept-language", "origin")),
        ([("Vary", "")], ()),
        ([("Vary", "*")], None),
        ([("Vary", "Origin"), ("Vary", " * ")], None),
    ],
)
def test_vary_names(headers: list[tuple[str, str]], expected: tuple[str, ...] | None) -> None:
    assert vary_names(headers) == expected


def test_select_and_match_keep_absent_distinct_from_empty() -> None:
    gzip: Forwarded = (("accept-encoding", "gzip"),)
    empty: Forwarded = (("accept-encoding", ""),)
    absent: Forwarded = ()
    assert select(("accept-encoding", "user-agent"), gzip) == (
        ("accept-encoding", "gzip"),
        ("user-agent", None),
    )
    assert matches((("accept-encoding", "gzip"),), gzip)
    assert not matches((("accept-encoding", "gzip"),), empty)
    assert not matches((("accept-encoding", ""),), absent)
    assert matches((("accept-encoding", None),), absent)
    assert not matches((("accept-encoding", None),), empty)
    assert matches((), gzip)  # no Vary: any request
    # a header the edge never forwards is absent in every request: it cannot split the cache
    assert matches(select(("user-agent",), gzip), empty)


def test_same_variant() -> None:
    a: Forwarded = (("accept", "*/*"), ("accept-encoding", "gzip"))
    b: Forwarded = (("accept", "text/html"), ("accept-encoding", "gzip"))
    assert same_variant((), a, b)
    assert same_variant(("accept-encoding",), a, b)
    assert not same_variant(("accept",), a, b)
    assert not same_variant(None, a, b)  # Vary: *: only the very same forwarded headers
    assert same_variant(None, a, a)


# -- against a real origin -------------------------------------------------------------------


def _pick(headers: dict[str, str]) -> bytes:
    """The origin's content negotiation: a body per Accept-Encoding value (absent is one too)."""
    value = headers.get("accept-encoding")
    if value is None:
        return BODIES[None]
    return next((body for name, body in BODIES.items() if name and name in value), OTHER)


def _negotiating(origin: Origin, vary: str = "Accept-Encoding", max_age: int = 60, **fields: Any) -> Resource:
    """PATH answers a body chosen by Accept-Encoding and says so with `Vary`."""
    headers = [("Cache-Control", f"max-age={max_age}"), ("Vary", vary)]
    res = Resource(headers=headers, negotiate=_pick, **fields)
    origin.resources[PATH] = res
    return res


def _seen(origin: Origin, name: str) -> list[str | None]:
    """The value of request header `name` in each request the origin got for PATH."""
    with origin.lock:
        return [s.headers.get(name) for s in origin.requests if s.path == PATH]


def _probe_waiters(edge: EdgeThread) -> int:
    return int(edge.call(lambda: edge.server.filler.stats.probe_waiters))


def _get(client: httpx.Client, headers: dict[str, str]) -> tuple[bytes, str]:
    resp = client.get(PATH, headers=headers)
    assert resp.status_code == 200
    return resp.content, resp.headers["x-cache"]


@pytest.mark.network
def test_each_client_gets_its_own_variant(origin: Origin, edge: EdgeThread) -> None:
    _negotiating(origin)
    with httpx.Client(base_url=edge.url) as client:
        first = client.get(PATH, headers=GZIP)
        assert (first.content, first.headers["x-cache"]) == (BODIES["gzip"], "MISS")
        assert first.headers["vary"] == "Accept-Encoding"
        assert _get(client, GZIP) == (BODIES["gzip"], "HIT")  # the memory-tier fast path
        assert _get(client, IDENTITY) == (BODIES["identity"], "MISS")  # not A's body
        assert _get(client, IDENTITY) == (BODIES["identity"], "HIT")
        assert _get(client, GZIP) == (BODIES["gzip"], "HIT")  # both variants are kept
        partial = client.get(PATH, headers={**IDENTITY, "Range": "bytes=0-9"})
        head = client.head(PATH, headers=IDENTITY)
        hit = client.head(PATH, headers=GZIP)
    assert (partial.status_code, partial.content, partial.headers["x-cache"]) == (
        206,
        BODIES["identity"][:10],
        "HIT",
    )
    assert (head.headers["x-cache"], head.headers["content-length"]) == ("HIT", str(len(BODIES["identity"])))
    assert (hit.headers["x-cache"], hit.headers["content-length"]) == ("HIT", str(len(BODIES["gzip"])))
    assert _seen(origin, "accept-encoding") == ["gzip", "identity"]


@pytest.mark.network
def test_one_variant_per_url_with_max_variants_1(origin: Origin, make_edge: EdgeFactory) -> None:
    """`--max-variants 1`: each variant's fill replaces the other's copy (the edge's old behaviour)."""
    _negotiating(origin)
    edge = make_edge(max_variants=1)
    with httpx.Client(base_url=edge.url) as client:
        assert _get(client, GZIP) == (BODIES["gzip"], "MISS")
        assert _get(client, GZIP) == (BODIES["gzip"], "HIT")
        assert _get(client, IDENTITY) == (BODIES["identity"], "MISS")
        assert _get(client, IDENTITY) == (BODIES["identity"], "HIT")
        # one variant per URL: B's response replaced A's
        assert _get(client, GZIP) == (BODIES["gzip"], "MISS")
        assert _get(client, GZIP) == (BODIES["gzip"], "HIT")
        partial = client.get(PATH, headers={**IDENTITY, "Range": "bytes=0-9"})
        head = client.head(PATH, headers=IDENTITY)
        hit = client.head(PATH, headers=GZIP)
    assert (partial.status_code, partial.content, partial.headers["x-cache"]) == (
        206,
        BODIES["identity"][:10],
        "MISS",
    )
    assert (head.headers["x-cache"], head.headers["content-length"]) == ("HIT", str(len(BODIES["identity"])))
    assert (hit.headers["x-cache"], hit.headers["content-length"]) == ("PASS", str(len(BODIES["gzip"])))
    assert _seen(origin, "accept-encoding") == ["gzip", "identity", "gzip", "identity", "gzip"]
    assert origin.methods(PATH) == ["GET"] * 4 + ["HEAD"]
    assert edge.call(lambda: edge.server.store.stats().variant_evictions) == 3


@pytest.mark.network
def test_absent_header_is_a_variant_of_its_own(origin: Origin, edge: EdgeThread) -> None:
    _negotiating(origin)
    with httpx.Client(base_url=edge.url) as client:
        del client.headers["accept-encoding"]
        assert _get(client, {}) == (BODIES[None], "MISS")
        assert _get(client, {}) == (BODIES[None], "HIT")
        assert _get(client, {"Accept-Encoding": ""}) == (OTHER, "MISS")
        assert _get(client, {"Accept-Encoding": ""}) == (OTHER, "HIT")
    assert _seen(origin, "accept-encoding") == [None, ""]


@pytest.mark.network
def test_values_differing_only_in_whitespace_match(origin: Origin, edge: EdgeThread) -> None:
    _negotiating(origin)
    with httpx.Client(base_url=edge.url) as client:
        assert _get(client, {"Accept-Encoding": "gzip,deflate"}) == (BODIES["gzip"], "MISS")
        assert _get(client, {"Accept-Encoding": "gzip ,  deflate"}) == (BODIES["gzip"], "HIT")
        assert _get(client, {"Accept-Encoding": "deflate, gzip"}) == (BODIES["gzip"], "MISS")  # order counts
    assert _seen(origin, "accept-encoding") == ["gzip, deflate", "deflate, gzip"]


@pytest.mark.network
def test_conditional_request_for_another_variant_is_a_miss(origin: Origin, edge: EdgeThread) -> None:
    _negotiating(origin, etag='"same-etag"')
    condition = {**IDENTITY, "If-None-Match": '"same-etag"'}
    with httpx.Client(base_url=edge.url) as client:
        _get(client, GZIP)
        other = client.get(PATH, headers=condition)
        wait_until(lambda: edge.call(lambda: not edge.server.filler.fills))  # identity stored beside gzip
        own = client.get(PATH, headers=condition)
    # the MISS is answered from its own fill (the edge sends no validator of the client upstream)
    assert (other.status_code, other.headers["x-cache"]) == (304, "MISS")
    assert (own.status_code, own.headers["x-cache"], own.headers["vary"]) == (304, "HIT", "Accept-Encoding")
    assert _seen(origin, "accept-encoding") == ["gzip", "identity"]
    assert _seen(origin, "if-none-match") == [None, None]


@pytest.mark.network
def test_vary_star_is_never_stored(origin: Origin, edge: EdgeThread) -> None:
    _negotiating(origin, vary="*")
    with httpx.Client(base_url=edge.url) as client:
        assert _get(client, GZIP) == (BODIES["gzip"], "MISS")
        assert _get(client, GZIP) == (BODIES["gzip"], "MISS")
        star = client.get(PATH, headers=GZIP)
    assert star.headers["vary"] == "*"
    assert origin.count(PATH) == 3
    wait_until(lambda: edge.call(lambda: not edge.server.filler.fills))
    assert edge.call(lambda: edge.server.store.peek(PATH)) is None


async def _concurrent(edge: EdgeThread, origin: Origin, hold: threading.Event) -> list[httpx.Response]:
    """A (gzip) starts the fill; B (identity) and C (gzip) join it before its head is known."""
    async with httpx.AsyncClient(base_url=edge.url, timeout=10) as client:
        a = asyncio.create_task(client.get(PATH, headers=GZIP))
        await asyncio.to_thread(wait_until, lambda: origin.count(PATH) == 1)
        rest = [asyncio.create_task(client.get(PATH, headers=h)) for h in (IDENTITY, GZIP)]
        await asyncio.to_thread(wait_waiters, edge, 2)
        hold.set()
        return list(await asyncio.gather(a, *rest))


@pytest.mark.network
def test_concurrent_requests_share_a_fill_only_with_the_same_variant(
    origin: Origin, edge: EdgeThread
) -> None:
    hold = threading.Event()
    _negotiating(origin, hold=hold)
    a, b, c = asyncio.run(_concurrent(edge, origin, hold))
    assert (a.content, a.headers["x-cache"]) == (BODIES["gzip"], "MISS")
    assert (b.content, b.headers["x-cache"]) == (BODIES["identity"], "MISS")  # a private fetch of its own
    assert (c.content, c.headers["x-cache"]) == (BODIES["gzip"], "COALESCED")
    assert sorted(_seen(origin, "accept-encoding"), key=str) == ["gzip", "identity"]


@pytest.mark.network
def test_without_vary_different_headers_still_share_one_fill(origin: Origin, edge: EdgeThread) -> None:
    hold = threading.Event()
    origin.resources[PATH] = Resource(body=b"same for all", hold=hold)
    a, b, c = asyncio.run(_concurrent(edge, origin, hold))
    assert {r.content for r in (a, b, c)} == {b"same for all"}
    assert [r.headers["x-cache"] for r in (a, b, c)] == ["MISS", "COALESCED", "COALESCED"]
    assert origin.count(PATH) == 1


@pytest.mark.network
def test_concurrent_heads_share_a_probe_only_with_the_same_variant(origin: Origin, edge: EdgeThread) -> None:
    hold = threading.Event()
    _negotiating(origin, hold=hold)

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=edge.url, timeout=10) as client:
            a = asyncio.create_task(client.head(PATH, headers=GZIP))
            await asyncio.to_thread(wait_until, lambda: origin.count(PATH) == 1)
            rest = [asyncio.create_task(client.head(PATH, headers=h)) for h in (IDENTITY, GZIP)]
            await asyncio.to_thread(wait_until, lambda: _probe_waiters(edge) == 2)
            hold.set()
            return list(await asyncio.gather(a, *rest))

    lengths = [int(r.headers["content-length"]) for r in asyncio.run(run())]
    assert lengths == [len(BODIES["gzip"]), len(BODIES["identity"]), len(BODIES["gzip"])]
    assert origin.methods(PATH) == ["HEAD", "HEAD"]


@pytest.mark.network
@pytest.mark.parametrize("max_variants", [1, 8])
def test_another_variant_is_neither_revalidated_nor_served_stale(
    origin: Origin, make_edge: EdgeFactory, clock: Clock, max_variants: int
) -> None:
    _negotiating(origin, max_age=1, etag='"v"')
    edge = make_edge(max_variants=max_variants)
    with httpx.Client(base_url=edge.url) as client:
        _get(client, GZIP)
        wait_stored(edge, PATH)
        clock.advance(10)
        assert _get(client, GZIP) == (BODIES["gzip"], "REVALIDATED")
        clock.advance(10)
        assert _get(client, IDENTITY) == (BODIES["identity"], "MISS")
        wait_until(lambda: edge.call(lambda: not edge.server.filler.fills))
        clock.advance(10)
        origin.stop()
        other = client.get(PATH, headers={"Accept-Encoding": "br"})  # no copy of its own
        down = client.get(PATH, headers=GZIP)  # the identity copy must not stand in for it
        stale = client.get(PATH, headers=IDENTITY)
    assert (other.status_code, other.headers["x-cache"]) == (502, "MISS")
    if max_variants == 1:  # identity replaced gzip
        assert (down.status_code, down.headers["x-cache"]) == (502, "MISS")
    else:  # its own copy, stale
        assert (down.status_code, down.content, down.headers["x-cache"]) == (200, BODIES["gzip"], "STALE")
    assert (stale.status_code, stale.content, stale.headers["x-cache"]) == (200, BODIES["identity"], "STALE")
    assert _seen(origin, "if-none-match") == [None, '"v"', None]


@pytest.mark.network
def test_forwards_negotiation_headers_but_no_credentials(origin: Origin, edge: EdgeThread) -> None:
    origin.resources[PATH] = Resource(body=b"x")
    sent = {
        "Accept": "application/dash+xml",
        "Accept-Encoding": "gzip,br",
        "Accept-Language": "fr-CH,  fr;q=0.9",
        "Origin": "https://player.example",
        "Authorization": "Bearer s3cret",
        "Cookie": "session=abc",
        "TE": "trailers",
    }
    with httpx.Client(base_url=edge.url) as client:
        client.get(PATH, headers=sent)
    with origin.lock:
        got = origin.requests[-1].headers
    assert got["accept"] == "application/dash+xml"
    assert got["accept-encoding"] == "gzip, br"
    assert got["accept-language"] == "fr-CH, fr;q=0.9"
    assert got["origin"] == "https://player.example"
    assert not {"authorization", "cookie", "te", "user-agent"} & set(got)


@pytest.mark.network
def test_restart_keeps_the_vary_data(origin: Origin, make_edge: EdgeFactory) -> None:
    _negotiating(origin)
    first = make_edge(name="same")
    with httpx.Client(base_url=first.url) as client:
        _get(client, GZIP)
    wait_stored(first, PATH)
    entry = first.call(lambda: first.server.store.peek(PATH))
    meta = json.loads(first.server.store.paths(entry)[1].read_bytes())
    assert (meta["v"], meta["vary"]) == (2, [["accept-encoding", "gzip"]])
    first.stop()
    second = make_edge(name="same")
    with httpx.Client(base_url=second.url) as client:
        assert _get(client, GZIP) == (BODIES["gzip"], "HIT")  # from disk
        assert _get(client, IDENTITY) == (BODIES["identity"], "MISS")  # not the gzip copy from disk
    assert origin.count(PATH) == 2


@pytest.mark.network
def test_a_waiter_of_another_variant_does_not_get_a_revalidated_entry(
    origin: Origin, edge: EdgeThread, clock: Clock
) -> None:
    hold = threading.Event()
    hold.set()
    _negotiating(origin, max_age=1, etag='"v"', hold=hold)
    with httpx.Client(base_url=edge.url) as client:
        _get(client, GZIP)
    wait_stored(edge, PATH)
    clock.advance(10)
    hold.clear()

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=edge.url, timeout=10) as client:
            gzip = asyncio.create_task(client.get(PATH, headers=GZIP))  # revalidates the gzip copy
            await asyncio.to_thread(wait_until, lambda: origin.count(PATH) == 2)
            identity = asyncio.create_task(client.get(PATH, headers=IDENTITY))  # joins that fill
            await asyncio.to_thread(wait_waiters, edge, 1)
            hold.set()
            return [await gzip, await identity]

    gzip, identity = asyncio.run(run())
    assert (gzip.content, gzip.headers["x-cache"]) == (BODIES["gzip"], "REVALIDATED")
    assert (identity.content, identity.headers["x-cache"]) == (BODIES["identity"], "MISS")
    assert _seen(origin, "if-none-match") == [None, '"v"', None]


@pytest.mark.network
@pytest.mark.parametrize("vary", ["Accept-Encoding", "*"])
def test_a_304_that_changes_vary_updates_the_entry(
    origin: Origin, edge: EdgeThread, clock: Clock, vary: str
) -> None:
    res = origin.resources[PATH] = Resource(
        body=b"plain", etag='"v"', headers=[("Cache-Control", "max-age=1")]
    )
    with httpx.Client(base_url=edge.url) as client:
        _get(client, GZIP)
        wait_stored(edge, PATH)
        clock.advance(10)
        res.headers = [("Cache-Control", "max-age=60"), ("Vary", vary)]  # the 304 carries it
        revalidated = client.get(PATH, headers=GZIP)
        other = client.get(PATH, headers=IDENTITY)
    assert revalidated.content == b"plain"
    assert other.headers["x-cache"] == "MISS"
    if vary == "*":
        assert revalidated.headers["x-cache"] == "MISS"  # the entry was dropped: fetched again
        assert edge.call(lambda: edge.server.store.peek(PATH)) is None
    else:
        assert revalidated.headers["x-cache"] == "REVALIDATED"
