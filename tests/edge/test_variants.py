"""Several Vary variants per URL (RFC 9111 §4.1): an edge before an origin that negotiates.

The store's own rules are in test_store_variants.py.
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import httpx
import pytest

from edge.entry import Entry, file_id
from edge.vary import matches
from tests.edge.conftest import Clock, EdgeFactory, EdgeThread, wait_until, wait_waiters
from tests.edge.upstream_server import Origin, Resource

PATH = "/videos/v1/manifest.mpd"
OTHER_PATH = "/videos/v1/other.mpd"
AUTH = {"Authorization": "Bearer s3cret"}
GZIP = {"Accept-Encoding": "gzip"}
IDENTITY = {"Accept-Encoding": "identity"}
BR = {"Accept-Encoding": "br"}
AE = "accept-encoding"


def _body_for(headers: dict[str, str]) -> bytes:
    """The origin's content negotiation: a body naming the values it was chosen for."""
    return f"<ae={headers.get(AE)} al={headers.get('accept-language')}>".encode() * 40


def _expected(**headers: str) -> bytes:
    return _body_for({k.lower().replace("_", "-"): v for k, v in headers.items()})


def _negotiating(
    origin: Origin, path: str = PATH, vary: str = "Accept-Encoding", max_age: int = 60, **fields: Any
) -> Resource:
    """`path` answers a body chosen by the request's headers and says `Vary: vary`."""
    headers = [("Cache-Control", f"max-age={max_age}"), ("Vary", vary)]
    res = Resource(headers=headers, negotiate=_body_for, **fields)
    origin.resources[path] = res
    return res


def _get(client: httpx.Client, headers: dict[str, str], path: str = PATH) -> tuple[bytes, str]:
    resp = client.get(path, headers=headers)
    assert resp.status_code == 200
    return resp.content, resp.headers["x-cache"]


def _variants(edge: EdgeThread, key: str = PATH) -> list[Entry]:
    entries: list[Entry] = edge.call(lambda: edge.server.store.variants(key))
    return entries


def _wait_stored(edge: EdgeThread, count: int, key: str = PATH) -> None:
    """Wait until `count` variants of `key` are committed, files included."""

    def done() -> bool:
        entries = _variants(edge, key)
        return len(entries) == count and all(edge.server.store.paths(e)[1].exists() for e in entries)

    wait_until(done)


def _seen(origin: Origin, name: str, path: str = PATH) -> list[str | None]:
    with origin.lock:
        return [s.headers.get(name) for s in origin.requests if s.path == path]


def _metric(client: httpx.Client, name: str) -> float:
    text = client.get("/metrics").text
    return float(next(line.split()[1] for line in text.splitlines() if line.split()[0] == name))


@pytest.mark.network
@pytest.mark.parametrize(
    ("vary", "first", "second"),
    [
        ("Accept-Encoding", GZIP, IDENTITY),
        ("Accept-Language", {"Accept-Language": "en"}, {"Accept-Language": "fr-CH, fr;q=0.9"}),
    ],
    ids=["accept-encoding", "accept-language"],
)
def test_two_variants_alternate_and_each_hits_after_its_first_miss(
    origin: Origin, edge: EdgeThread, vary: str, first: dict[str, str], second: dict[str, str]
) -> None:
    _negotiating(origin, vary=vary)
    with httpx.Client(base_url=edge.url) as client:
        del client.headers["accept-encoding"]
        one, two = _get(client, first)[0], _get(client, second)[0]
        assert one != two
        for _ in range(3):
            assert _get(client, first) == (one, "HIT")
            assert _get(client, second) == (two, "HIT")
        assert _metric(client, "cdn_edge_cache_varied_entries") == 2
        assert _metric(client, "cdn_edge_cache_extra_variants") == 1
    assert one == _body_for({k.lower(): v for k, v in first.items()})
    assert two == _body_for({k.lower(): v for k, v in second.items()})
    assert origin.count(PATH) == 2


@pytest.mark.network
def test_one_variant_more_evicts_the_least_recently_used_of_its_url_only(
    origin: Origin, make_edge: EdgeFactory
) -> None:
    _negotiating(origin)
    _negotiating(origin, OTHER_PATH)
    edge = make_edge(max_variants=2)
    with httpx.Client(base_url=edge.url) as client:
        for path in (PATH, OTHER_PATH):
            for headers in (GZIP, IDENTITY):
                assert _get(client, headers, path)[1] == "MISS"
        assert _get(client, GZIP)[1] == "HIT"  # PATH: identity is now its least recently used
        assert _get(client, BR) == (_expected(accept_encoding="br"), "MISS")
        _wait_stored(edge, 2)
        assert _get(client, GZIP) == (_expected(accept_encoding="gzip"), "HIT")
        assert _get(client, BR) == (_expected(accept_encoding="br"), "HIT")
        for headers in (GZIP, IDENTITY):
            assert _get(client, headers, OTHER_PATH)[1] == "HIT"
        assert _metric(client, "cdn_edge_cache_variant_evictions_total") == 1
        assert _get(client, IDENTITY) == (_expected(accept_encoding="identity"), "MISS")  # evicted
    assert _seen(origin, AE) == ["gzip", "identity", "br", "identity"]
    assert origin.count(OTHER_PATH) == 2


@pytest.mark.network
def test_a_response_without_vary_replaces_every_variant(origin: Origin, edge: EdgeThread) -> None:
    res = _negotiating(origin)
    with httpx.Client(base_url=edge.url) as client:
        _get(client, GZIP)
        _get(client, IDENTITY)
        _wait_stored(edge, 2)
        res.headers = [("Cache-Control", "max-age=60")]  # the resource stopped varying
        assert _get(client, BR) == (_expected(accept_encoding="br"), "MISS")
        _wait_stored(edge, 1)
        for headers in (GZIP, IDENTITY, BR):
            assert _get(client, headers) == (_expected(accept_encoding="br"), "HIT")
    assert [e.vary for e in _variants(edge)] == [()]
    assert len(list((edge.config.cache_dir / "objects").glob("*/*.meta"))) == 1
    assert origin.count(PATH) == 3


@pytest.mark.network
def test_vary_naming_other_headers_replaces_the_variants(origin: Origin, edge: EdgeThread) -> None:
    res = _negotiating(origin)
    with httpx.Client(base_url=edge.url) as client:
        _get(client, GZIP)
        _get(client, IDENTITY)
        _wait_stored(edge, 2)
        res.headers = [("Cache-Control", "max-age=60"), ("Vary", "Accept-Language")]
        french = {**BR, "Accept-Language": "fr"}
        assert _get(client, french) == (_expected(accept_encoding="br", accept_language="fr"), "MISS")
        _wait_stored(edge, 1)
        assert _get(client, GZIP) == (_expected(accept_encoding="gzip"), "MISS")  # no Accept-Language
        assert _get(client, {**GZIP, "Accept-Language": "fr"})[1] == "HIT"  # the French variant
    assert {e.vary for e in _variants(edge)} == {(("accept-language", None),), (("accept-language", "fr"),)}


@pytest.mark.network
def test_purge_removes_every_variant_of_the_url(origin: Origin, edge: EdgeThread) -> None:
    _negotiating(origin)
    variants = (GZIP, IDENTITY, BR)
    with httpx.Client(base_url=edge.url) as client:
        for headers in variants:
            _get(client, headers)
        _wait_stored(edge, 3)
        purged = client.post("/admin/purge", headers=AUTH, json={"path": PATH})
        assert purged.json() == {"purged": 3}
        assert not list((edge.config.cache_dir / "objects").glob("*/*"))
        assert [_get(client, headers)[1] for headers in variants] == ["MISS"] * 3
        _wait_stored(edge, 3)
        purged = client.post("/admin/purge", headers=AUTH, json={"prefix": "/videos/v1/"})
        assert purged.json() == {"purged": 3}
    assert origin.count(PATH) == 6


@pytest.mark.network
def test_a_restart_keeps_every_variant(origin: Origin, make_edge: EdgeFactory) -> None:
    _negotiating(origin)
    variants: list[dict[str, str]] = [GZIP, IDENTITY, {}]
    first = make_edge(name="same")
    with httpx.Client(base_url=first.url) as client:
        del client.headers["accept-encoding"]
        bodies = [_get(client, headers)[0] for headers in variants]
    _wait_stored(first, 3)
    metas = [json.loads(first.server.store.paths(e)[1].read_bytes()) for e in _variants(first)]
    assert sorted(json.dumps(m["vary"]) for m in metas) == sorted(
        json.dumps([[AE, v]]) for v in ("gzip", "identity", None)
    )
    assert {m["v"] for m in metas} == {2}
    first.stop()
    second = make_edge(name="same")
    with httpx.Client(base_url=second.url) as client:
        del client.headers["accept-encoding"]
        for headers, body in zip(variants, bodies, strict=True):
            assert _get(client, headers) == (body, "HIT")  # from disk
    assert origin.count(PATH) == 3


@pytest.mark.network
def test_a_304_refreshes_only_the_variant_it_revalidated(
    origin: Origin, edge: EdgeThread, clock: Clock
) -> None:
    _negotiating(origin, max_age=1, etag='"v"')
    with httpx.Client(base_url=edge.url) as client:
        _get(client, GZIP)
        _get(client, IDENTITY)
        _wait_stored(edge, 2)
        clock.advance(10)
        identity = next(e for e in _variants(edge) if e.vary == ((AE, "identity"),))
        before = identity.stored_at
        assert _get(client, GZIP) == (_expected(accept_encoding="gzip"), "REVALIDATED")
        assert _get(client, GZIP)[1] == "HIT"
        assert identity.stored_at == before  # the other variant was not refreshed
        assert _get(client, IDENTITY) == (_expected(accept_encoding="identity"), "REVALIDATED")
        assert _get(client, IDENTITY)[1] == "HIT"
    assert _seen(origin, AE) == ["gzip", "identity", "gzip", "identity"]
    assert _seen(origin, "if-none-match") == [None, None, '"v"', '"v"']


@pytest.mark.network
def test_a_304_that_changes_the_vary_names_refiles_the_variant_and_survives_a_restart(
    origin: Origin, make_edge: EdgeFactory, clock: Clock
) -> None:
    res = _negotiating(origin, max_age=1, etag='"v"')
    first = make_edge(name="same")
    with httpx.Client(base_url=first.url) as client:
        gzip = _get(client, GZIP)[0]
        _get(client, IDENTITY)
        _wait_stored(first, 2)
        clock.advance(10)
        res.headers = [("Cache-Control", "max-age=60"), ("Vary", "Accept-Language")]  # on the 304
        assert _get(client, GZIP) == (gzip, "REVALIDATED")
        assert _get(client, BR) == (gzip, "HIT")  # varies on Accept-Language now, absent in both
    (entry,) = _variants(first)  # identity varied on the old header: replaced
    assert (entry.vary, entry.fid) == ((("accept-language", None),), file_id(PATH, ((AE, "gzip"),)))
    first.stop()
    second = make_edge(name="same")
    with httpx.Client(base_url=second.url) as client:
        assert _get(client, IDENTITY) == (gzip, "HIT")  # from disk, under the name its files had
        assert _get(client, {"Accept-Language": "fr"})[1] == "MISS"
    assert _seen(origin, "if-none-match") == [None, None, '"v"', None]


@pytest.mark.network
def test_stale_while_revalidate_serves_and_revalidates_the_requests_own_variant(
    origin: Origin, edge: EdgeThread, clock: Clock
) -> None:
    res = _negotiating(origin, max_age=1, etag='"v"')
    res.headers = [("Cache-Control", "max-age=1, stale-while-revalidate=60"), ("Vary", "Accept-Encoding")]
    with httpx.Client(base_url=edge.url) as client:
        _get(client, GZIP)
        _get(client, IDENTITY)
        _wait_stored(edge, 2)
        clock.advance(5)
        assert _get(client, GZIP) == (_expected(accept_encoding="gzip"), "STALE")
        wait_until(lambda: origin.count(PATH) == 3 and edge.call(lambda: not edge.server.filler.fills))
        assert _get(client, BR) == (_expected(accept_encoding="br"), "MISS")  # no other variant's copy
    assert _seen(origin, AE) == ["gzip", "identity", "gzip", "br"]
    assert _seen(origin, "if-none-match") == [None, None, '"v"', None]


async def _second_variant_burst(
    edge: EdgeThread, origin: Origin, release: threading.Event, *, before_head: bool
) -> list[httpx.Response]:
    """A (gzip) starts a fill held by `release`; three identity requests arrive while it is in flight.

    `before_head`: they all arrive before A's head (so they first wait on A's fill); otherwise the
    first starts its own fill once A's head is in, and the other two arrive after it.
    """
    async with httpx.AsyncClient(base_url=edge.url, timeout=10) as client:
        a = asyncio.create_task(client.get(PATH, headers=GZIP))
        await asyncio.to_thread(wait_until, lambda: origin.count(PATH) == 1)
        if before_head:
            rest = [asyncio.create_task(client.get(PATH, headers=IDENTITY)) for _ in range(3)]
            await asyncio.to_thread(wait_waiters, edge, 3)
        else:
            await asyncio.to_thread(wait_until, lambda: edge.call(lambda: _head_in(edge)))
            rest = [asyncio.create_task(client.get(PATH, headers=IDENTITY))]
            await asyncio.to_thread(wait_until, lambda: origin.count(PATH) == 2)
            rest += [asyncio.create_task(client.get(PATH, headers=IDENTITY)) for _ in range(2)]
            await asyncio.to_thread(wait_waiters, edge, 2)
        release.set()
        return list(await asyncio.gather(a, *rest))


def _head_in(edge: EdgeThread) -> bool:
    fills = edge.server.filler.fills.get(PATH, [])
    return bool(fills) and fills[0].head.done()


@pytest.mark.network
@pytest.mark.parametrize("before_head", [True, False], ids=["before-the-head", "while-the-body-streams"])
def test_requests_of_a_second_variant_share_one_fetch_while_the_first_is_in_flight(
    origin: Origin, edge: EdgeThread, before_head: bool
) -> None:
    release = threading.Event()
    if before_head:
        _negotiating(origin, hold=release)
    else:
        _negotiating(origin, gate_after=100, gate=release)
    a, *rest = asyncio.run(_second_variant_burst(edge, origin, release, before_head=before_head))
    assert (a.content, a.headers["x-cache"]) == (_expected(accept_encoding="gzip"), "MISS")
    assert {r.content for r in rest} == {_expected(accept_encoding="identity")}
    assert sorted(r.headers["x-cache"] for r in rest) == ["COALESCED", "COALESCED", "MISS"]
    assert sorted(_seen(origin, AE), key=str) == ["gzip", "identity"]  # one fetch per variant
    _wait_stored(edge, 2)


@pytest.mark.network
def test_heads_of_a_second_variant_share_one_probe(origin: Origin, edge: EdgeThread) -> None:
    hold = threading.Event()
    _negotiating(origin, hold=hold)

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=edge.url, timeout=10) as client:
            a = asyncio.create_task(client.head(PATH, headers=GZIP))
            await asyncio.to_thread(wait_until, lambda: origin.count(PATH) == 1)
            rest = [asyncio.create_task(client.head(PATH, headers=IDENTITY)) for _ in range(3)]
            await asyncio.to_thread(
                wait_until, lambda: edge.call(lambda: edge.server.filler.stats.probe_waiters) == 3
            )
            hold.set()
            return list(await asyncio.gather(a, *rest))

    lengths = [int(r.headers["content-length"]) for r in asyncio.run(run())]
    assert (
        lengths == [len(_expected(accept_encoding="gzip"))] + [len(_expected(accept_encoding="identity"))] * 3
    )
    assert origin.methods(PATH) == ["HEAD", "HEAD"]


@pytest.mark.network
def test_a_head_that_meets_another_variants_fill_probes(origin: Origin, edge: EdgeThread) -> None:
    hold = threading.Event()
    _negotiating(origin, hold=hold)

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=edge.url, timeout=10) as client:
            a = asyncio.create_task(client.get(PATH, headers=GZIP))
            await asyncio.to_thread(wait_until, lambda: origin.count(PATH) == 1)
            head = asyncio.create_task(client.head(PATH, headers=IDENTITY))
            await asyncio.to_thread(wait_waiters, edge, 1)
            hold.set()
            return [await a, await head]

    get, head = asyncio.run(run())
    assert get.headers["x-cache"] == "MISS"
    assert (head.headers["x-cache"], head.content) == ("PASS", b"")
    assert head.headers["content-length"] == str(len(_expected(accept_encoding="identity")))
    assert origin.methods(PATH) == ["GET", "HEAD"]  # a HEAD never fills


LARGE = 64 * 1024


def _large_body(headers: dict[str, str]) -> bytes:
    """About 300 KB, different for each Accept-Encoding value (above the 64 KiB --large-object)."""
    seed = (headers.get(AE) or "none").encode()
    return b"".join(seed + b":%06d;" % n for n in range(20_000))


@pytest.mark.network
def test_large_object_variants_spool_stream_and_survive_a_restart(
    origin: Origin, make_edge: EdgeFactory
) -> None:
    origin.resources[PATH] = Resource(
        headers=[("Cache-Control", "max-age=60"), ("Vary", "Accept-Encoding")], negotiate=_large_body
    )
    bodies = {v: _large_body({AE: v}) for v in ("gzip", "identity")}
    first = make_edge(name="big", large_object=LARGE)
    with httpx.Client(base_url=first.url, timeout=10) as client:
        for value, body in bodies.items():
            assert _get(client, {"Accept-Encoding": value}) == (body, "MISS")
        _wait_stored(first, 2)
        for value, body in bodies.items():
            assert _get(client, {"Accept-Encoding": value}) == (body, "HIT")  # streamed from disk
        partial = client.get(PATH, headers={**IDENTITY, "Range": "bytes=100000-100099"})
        assert (partial.status_code, partial.content) == (206, bodies["identity"][100_000:100_100])
        assert _metric(client, "cdn_edge_spooled_fills_total") == 2
    entries = _variants(first)
    metas = [json.loads(first.server.store.paths(e)[1].read_bytes()) for e in entries]
    assert {m["v"] for m in metas} == {3}
    assert sorted(m["vary"][0][1] for m in metas) == ["gzip", "identity"]
    assert len({e.fid for e in entries}) == 2
    assert first.call(lambda: first.server.store.stats().memory_entries) == 0
    assert not list((first.config.cache_dir / "objects").glob("*/*.tmp"))
    first.stop()
    second = make_edge(name="big", large_object=LARGE)
    with httpx.Client(base_url=second.url, timeout=10) as client:
        for value, body in bodies.items():
            assert _get(client, {"Accept-Encoding": value}) == (body, "HIT")
    assert origin.count(PATH) == 2


@pytest.mark.network
def test_without_vary_a_url_keeps_one_entry(origin: Origin, edge: EdgeThread) -> None:
    origin.resources[PATH] = Resource(body=b"same for all")
    with httpx.Client(base_url=edge.url) as client:
        assert _get(client, GZIP) == (b"same for all", "MISS")
        assert _get(client, IDENTITY) == (b"same for all", "HIT")
        assert _metric(client, "cdn_edge_cache_varied_entries") == 0
    entry = edge.call(lambda: edge.server.store.lookup(PATH))
    assert entry is not None
    assert (entry.slot, entry.fid) == (PATH, file_id(PATH))
    assert matches(entry.vary, ())
