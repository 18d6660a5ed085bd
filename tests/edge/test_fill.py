"""Fill: readers see the growing body in order, from any offset, and the failure if it breaks."""

from __future__ import annotations

import asyncio

import pytest

from edge.cachecontrol import Freshness
from edge.errors import UpstreamBrokenError
from edge.fill import Fill, FillOutcome, Probe, stored_headers
from edge.vary import Forwarded, Selection


async def _collect(fill: Fill, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([piece async for piece in fill.read(start, end)])


@pytest.mark.parametrize(
    ("start", "end"),
    [(0, None), (0, 1), (3, 7), (4, 8), (5, 12), (11, 12), (0, 12), (7, None)],
)
def test_read_slices_across_chunks(start: int, end: int | None) -> None:
    async def run() -> bytes:
        fill = Fill("/videos/x", None, 0.0)
        fill.begin(200, [], None, "12")
        reader = asyncio.create_task(_collect(fill, start, end))
        for chunk in (b"abcd", b"efgh", b"ijkl"):
            await asyncio.sleep(0)
            fill.feed(chunk)
        fill.finish()
        return await reader

    assert asyncio.run(run()) == b"abcdefghijkl"[start:end]


def test_readers_get_bytes_as_they_arrive_and_late_joiners_from_the_start() -> None:
    async def run() -> None:
        fill = Fill("/videos/x", None, 0.0)
        fill.begin(200, [], None, None)
        fill.feed(b"first")
        early = fill.read()
        assert await early.__anext__() == b"first"
        nxt = asyncio.ensure_future(early.__anext__())
        await asyncio.sleep(0.01)
        assert not nxt.done()  # waits on an event, no busy loop
        fill.feed(b"second")
        assert await nxt == b"second"
        assert await _collect_after_finish(fill) == b"firstsecond"
        await early.aclose()

    async def _collect_after_finish(fill: Fill) -> bytes:
        late = asyncio.create_task(_collect(fill))
        await asyncio.sleep(0)
        fill.finish()
        return await late

    asyncio.run(run())


def test_a_broken_fill_raises_in_every_reader() -> None:
    async def run() -> list[BaseException | bytes]:
        fill = Fill("/videos/x", None, 0.0)
        fill.begin(200, [], None, "100")
        readers = [asyncio.create_task(_collect(fill)) for _ in range(3)]
        fill.feed(b"partial")
        await asyncio.sleep(0)
        fill.fail(UpstreamBrokenError("gone"))
        return await asyncio.gather(*readers, return_exceptions=True)

    assert all(isinstance(r, UpstreamBrokenError) for r in asyncio.run(run()))


def test_failure_before_head_resolves_failed() -> None:
    async def run() -> FillOutcome:
        fill = Fill("/videos/x", None, 0.0)
        fill.fail(UpstreamBrokenError("refused"))
        return await fill.head

    assert asyncio.run(run()) is FillOutcome.FAILED


def test_stored_headers_drop_hop_by_hop_and_edge_headers() -> None:
    headers = [
        ("Content-Type", "video/mp4"),
        ("Connection", "keep-alive"),
        ("Transfer-Encoding", "chunked"),
        ("Content-Length", "5"),
        ("Age", "3"),
        ("Via", "1.1 parent"),
        ("X-Cache", "HIT"),
        ("ETag", '"x"'),
    ]
    assert stored_headers(headers) == [("Content-Type", "video/mp4"), ("ETag", '"x"')]


GZIP: Forwarded = (("accept-encoding", "gzip"),)
IDENTITY: Forwarded = (("accept-encoding", "identity"),)
MAX_AGE = Freshness(ttl=60)


@pytest.mark.parametrize(
    ("headers", "freshness", "serves_identity", "serves_gzip", "selection"),
    [
        ([], MAX_AGE, True, True, ()),
        ([("Vary", "Accept-Encoding")], MAX_AGE, False, True, (("accept-encoding", "gzip"),)),
        ([("Vary", "Origin")], MAX_AGE, True, True, (("origin", None),)),
        ([("Vary", "*")], MAX_AGE, False, True, None),  # shared only with identical headers, never stored
        ([], None, False, False, ()),  # private / no-store: never shared
    ],
)
def test_a_fill_serves_only_requests_of_its_variant(
    headers: list[tuple[str, str]],
    freshness: Freshness | None,
    serves_identity: bool,
    serves_gzip: bool,
    selection: Selection | None,
) -> None:
    async def run() -> tuple[bool, bool, Selection | None]:
        fill = Fill("/videos/x", None, 0.0, GZIP)
        fill.begin(200, headers, freshness, "0")
        return fill.serves(IDENTITY), fill.serves(GZIP), fill.selection

    assert asyncio.run(run()) == (serves_identity, serves_gzip, selection)


def test_a_probe_serves_only_heads_of_its_variant() -> None:
    probe = Probe(status=200, headers=(("Vary", "accept-encoding"),), length=3, age=0.0, request=GZIP)
    assert probe.serves(GZIP)
    assert not probe.serves(IDENTITY)
    assert not probe.serves(())
    assert Probe(status=200, headers=(), length=3, age=0.0, request=GZIP).serves(IDENTITY)
