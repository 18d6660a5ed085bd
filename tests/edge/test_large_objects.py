"""Large objects: fills spool to disk, disk hits stream block by block, nothing large sits in memory.

A real edge runs with `--large-object 64KiB` in front of the scripted origin, and objects of 1 to
3 MB (not multiples of the 256 KiB block) go through MISS, COALESCED, Range, HEAD, 304, 416,
stale, corruption, purge, upstream failure and restart. The pure parts (block checksums, a fill's
reader crossing from memory to the spool file) are tested directly.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import socket
import zlib
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from edge.blocks import BLOCK_SIZE, Blocks, BlockSums, block_count
from edge.config import EdgeConfig
from edge.entry import Entry
from edge.errors import ConfigError, UpstreamBrokenError
from edge.fill import Fill
from edge.spool import Spooler
from tests.edge.conftest import Clock, EdgeFactory, EdgeThread, wait_stored, wait_until, wait_waiters
from tests.edge.upstream_server import Origin, Resource

LARGE = 64 * 1024
SIZE = 2 * 1024 * 1024 + 12_345  # eight full blocks and a short one
PATH = "/videos/big/movie.mp4"
AUTH = {"Authorization": "Bearer s3cret"}


def _body(size: int = SIZE) -> bytes:
    return os.urandom(size)


@pytest.fixture
def big(make_edge: EdgeFactory) -> EdgeThread:
    return make_edge(large_object=LARGE)


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(8) as executor:
        yield executor


def _get(edge: EdgeThread, path: str = PATH, **headers: str) -> httpx.Response:
    with httpx.Client(base_url=edge.url, timeout=10) as client:
        return client.get(path, headers=headers)


def _spools(edge: EdgeThread) -> list[Path]:
    return list((edge.config.cache_dir / "objects").glob("*/*.tmp"))


def _fill(edge: EdgeThread, key: str = PATH) -> Fill | None:
    """The (first) fill in flight for `key`."""
    fills: list[Fill] = edge.call(lambda: list(edge.server.filler.fills.get(key, ())))
    return fills[0] if fills else None


def _entry(edge: EdgeThread, key: str = PATH) -> Entry | None:
    entry: Entry | None = edge.call(lambda: edge.server.store.peek(key))
    return entry


def _metric(edge: EdgeThread, name: str) -> float:
    text = _get(edge, "/metrics").text
    return float(next(line.split()[1] for line in text.splitlines() if line.split()[0] == name))


def _raw_get(edge: EdgeThread, path: str = PATH) -> tuple[int, bytes]:
    """GET on a raw socket, reading until the edge closes: (Content-Length, body bytes received)."""
    parts = urlsplit(edge.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := _recv(sock):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(v)
        for k, _, v in (h.partition(b":") for h in head.split(b"\r\n"))
        if k.lower() == b"content-length"
    )
    return length, body


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(1 << 20)
    except ConnectionResetError:
        return b""  # an abort: what arrived before it is what the client has


def _store(edge: EdgeThread, origin: Origin, body: bytes, res: Resource | None = None) -> Entry:
    """Serve `body` at PATH from the origin and fill the edge with it (a MISS); the committed entry."""
    origin.resources[PATH] = res or Resource(body=body, etag='"v1"')
    miss = _get(edge)
    assert (miss.status_code, miss.headers["x-cache"]) == (200, "MISS")
    assert miss.content == body
    wait_stored(edge, PATH)
    entry = _entry(edge)
    assert entry is not None
    return entry


def _flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0xFF]))


# -- pure parts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cuts", [[], [1], [BLOCK_SIZE - 1, BLOCK_SIZE + 1], [100, 300_000, 600_000, 700_000]]
)
def test_block_sums_match_whatever_the_chunking(cuts: list[int]) -> None:
    body = os.urandom(3 * BLOCK_SIZE + 777)
    sums = BlockSums()
    for lo, hi in zip([0, *cuts], [*cuts, len(body)], strict=True):
        sums.feed(body[lo:hi])
    blocks = sums.blocks()
    assert sums.size == len(body)
    assert sums.crc == zlib.crc32(body)
    assert blocks.crc == tuple(zlib.crc32(body[i : i + BLOCK_SIZE]) for i in range(0, len(body), BLOCK_SIZE))
    assert blocks.fits(len(body))
    assert not blocks.fits(len(body) + BLOCK_SIZE)
    assert block_count(len(body), BLOCK_SIZE) == 4
    assert Blocks.from_json(json.loads(json.dumps(blocks.to_json()))) == blocks


@pytest.mark.parametrize(("start", "end"), [(0, None), (3, 7), (9, 15), (14, None), (0, 30), (25, 30)])
def test_a_reader_crosses_from_memory_to_the_spool_file(tmp_path: Path, start: int, end: int | None) -> None:
    body = b"abcdefghijklmnopqrstuvwxyz0123"
    spooler = Spooler(10, lambda key: tmp_path / "ab" / "x.body", block_size=8)

    async def run() -> bytes:
        fill = Fill("/videos/x", None, 0.0, spooler=spooler)
        fill.begin(200, [], None, None)  # no Content-Length: spools once past 10 bytes
        pieces: list[bytes] = []

        async def reader() -> None:
            async for piece in fill.read(start, end):
                pieces.append(piece)
                await asyncio.sleep(0)

        task = asyncio.create_task(reader())
        for i in range(0, len(body), 4):
            fill.feed(body[i : i + 4])
            await asyncio.sleep(0)
            assert (fill.spool is None) == (fill.received <= 10)
            assert fill.spool is None or fill.chunks == []
        fill.finish()
        await task
        assert fill.spool is not None
        assert fill.spool.sums.crc == zlib.crc32(body)
        assert fill.spool.path.read_bytes() == body
        late = b"".join([p async for p in fill.read(start, end)])  # a late joiner: from the file
        assert late == body[start:end]
        fill.release()
        assert not fill.spool.path.exists()
        assert spooler.active == 0
        return b"".join(pieces)

    assert asyncio.run(run()) == body[start:end]


def test_a_failed_spooled_fill_raises_in_readers_and_removes_its_file(tmp_path: Path) -> None:
    spooler = Spooler(4, lambda key: tmp_path / "ab" / "x.body")

    async def run() -> BaseException | None:
        fill = Fill("/videos/x", None, 0.0, spooler=spooler)
        fill.begin(200, [], None, "100")  # announced above the threshold: spooled from the start
        assert fill.spool is not None
        fill.feed(b"partial body")
        reader = asyncio.create_task(_drain(fill))
        await asyncio.sleep(0)
        fill.fail(UpstreamBrokenError("gone"))
        assert not os.listdir(tmp_path / "ab")
        try:
            await reader
        except UpstreamBrokenError as exc:
            return exc
        return None

    assert isinstance(asyncio.run(run()), UpstreamBrokenError)
    assert spooler.active == 0
    assert spooler.total == 1


async def _drain(fill: Fill) -> bytes:
    return b"".join([piece async for piece in fill.read()])


def test_a_spool_that_cannot_be_created_keeps_the_fill_in_memory(tmp_path: Path) -> None:
    (tmp_path / "not-a-dir").write_bytes(b"")
    spooler = Spooler(4, lambda key: tmp_path / "not-a-dir" / "ab" / "x.body")

    async def run() -> tuple[Fill, bytes]:
        fill = Fill("/videos/x", None, 0.0, spooler=spooler)
        fill.begin(200, [], None, "12")
        for chunk in (b"abcd", b"efgh", b"ijkl"):
            fill.feed(chunk)
        fill.finish()
        return fill, await _drain(fill)

    fill, body = asyncio.run(run())
    assert (fill.spool, body, fill.body()) == (None, b"abcdefghijkl", b"abcdefghijkl")
    assert spooler.total == 0


def test_a_spool_write_failing_mid_body_breaks_the_fill(tmp_path: Path) -> None:
    """A real write error (EFBIG past RLIMIT_FSIZE, as ENOSPC would be): readers fail, the file goes."""
    spooler = Spooler(4, lambda key: tmp_path / "ab" / "x.body")
    stopped: list[bool] = []

    async def run() -> BaseException | bytes:
        fill = Fill("/videos/x", None, 0.0, spooler=spooler)
        fill.stop_upstream = lambda: stopped.append(True)
        fill.begin(200, [], None, str(3 * 1024 * 1024))
        reader = asyncio.create_task(_drain(fill))
        for _ in range(3):
            fill.feed(os.urandom(1024 * 1024))
            await asyncio.sleep(0)
        try:
            return await reader
        except UpstreamBrokenError as exc:
            return exc

    previous = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of the signal
    resource.setrlimit(resource.RLIMIT_FSIZE, (1536 * 1024, previous[1]))
    try:
        outcome = asyncio.run(run())
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, previous)
        signal.signal(signal.SIGXFSZ, handler)
    assert isinstance(outcome, UpstreamBrokenError)
    assert "could not write /videos/x to its cache dir" in str(outcome)
    assert stopped == [True]
    assert os.listdir(tmp_path / "ab") == []
    assert spooler.active == 0


def test_large_object_option() -> None:
    base = ["--origin", "http://127.0.0.1:8000", "--cache-dir", "c"]
    assert EdgeConfig.from_args(base, {}).large_object == 8 * 1024**2
    assert EdgeConfig.from_args([*base, "--large-object", "64KiB"], {}).large_object == 65536
    with pytest.raises(ConfigError, match="--large-object 0 must be positive"):
        EdgeConfig.from_args([*base, "--large-object", "0"], {})
    with pytest.raises(ConfigError, match="--large-object: size 'big' is not a byte size"):
        EdgeConfig.from_args([*base, "--large-object", "big"], {})


# -- a real edge -------------------------------------------------------------------------------


@pytest.mark.network
def test_miss_then_hit_is_byte_identical_and_never_in_the_memory_tier(
    origin: Origin, big: EdgeThread
) -> None:
    body = _body()
    entry = _store(big, origin, body)
    hit = _get(big)
    assert (hit.headers["x-cache"], hit.headers["content-length"]) == ("HIT", str(SIZE))
    assert hit.content == body
    assert origin.count(PATH) == 1
    assert big.call(lambda: big.server.store.memory_body(PATH)) is None
    assert big.call(lambda: big.server.store.stats().memory_entries) == 0
    meta = json.loads(big.server.store.paths(entry)[1].read_bytes())
    assert meta["v"] == 3
    assert meta["blocks"] == {
        "size": BLOCK_SIZE,
        "crc": [zlib.crc32(body[i : i + BLOCK_SIZE]) for i in range(0, SIZE, BLOCK_SIZE)],
    }
    assert _spools(big) == []
    assert _metric(big, "cdn_edge_spooled_fills_total") == 1
    assert _metric(big, "cdn_edge_spool_files") == 0
    assert _metric(big, "cdn_edge_disk_streamed_bytes_total") == SIZE


@pytest.mark.network
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_fill_in_flight_spools_to_disk_and_holds_no_chunks(
    origin: Origin, big: EdgeThread, pool: ThreadPoolExecutor, chunked: bool
) -> None:
    body = _body()
    res = origin.resources[PATH] = Resource(body=body, gate_after=600_000, chunked=chunked)
    try:
        client = pool.submit(_get, big)
        wait_until(lambda: (f := _fill(big)) is not None and f.received >= 600_000)
        fill = _fill(big)
        assert fill is not None
        assert fill.spool is not None
        assert fill.chunks == []  # every byte so far is in the file, none in memory
        assert [p.name for p in _spools(big)] == [fill.spool.path.name]
        assert fill.spool.path.stat().st_size == fill.received
        assert _metric(big, "cdn_edge_spool_files") == 1
    finally:
        res.gate.set()
    response = client.result(10)
    assert response.content == body
    wait_stored(big, PATH)
    assert _spools(big) == []  # renamed into place: the body file is the spool file
    assert big.call(lambda: big.server.store.stats().memory_entries) == 0
    assert _get(big).headers["x-cache"] == "HIT"


@pytest.mark.network
def test_concurrent_and_late_clients_share_one_large_fill(
    origin: Origin, big: EdgeThread, pool: ThreadPoolExecutor
) -> None:
    body = _body(3_000_000)
    res = origin.resources[PATH] = Resource(body=body, gate_after=1_500_000)
    try:
        early = [pool.submit(_get, big) for _ in range(5)]
        wait_waiters(big, 4)
        wait_until(lambda: (f := _fill(big)) is not None and f.received >= 1_500_000)
        late = pool.submit(_get, big)  # joins with 1.5 MB already on disk: reads them from the file
        wait_waiters(big, 5)
    finally:
        res.gate.set()
    responses = [f.result(10) for f in [*early, late]]
    assert all(r.content == body for r in responses)
    assert sorted(r.headers["x-cache"] for r in responses) == ["COALESCED"] * 5 + ["MISS"]
    assert origin.count(PATH) == 1


RANGES = [
    ("bytes=0-99", 0, 100),
    ("bytes=1000000-1000999", 1_000_000, 1_001_000),
    ("bytes=-5000", SIZE - 5000, SIZE),
    ("bytes=262100-262200", 262_100, 262_201),  # across the first block boundary
    ("bytes=262144-524288", 262_144, 524_289),  # a whole block plus one byte
    ("bytes=2000000-", 2_000_000, SIZE),
]


def _check_range(response: httpx.Response, body: bytes, lo: int, hi: int) -> None:
    assert response.status_code == 206, response.text[:200]
    assert response.headers["content-range"] == f"bytes {lo}-{hi - 1}/{SIZE}"
    assert response.content == body[lo:hi]


@pytest.mark.network
def test_ranges_from_a_large_fill_in_flight(
    origin: Origin, big: EdgeThread, pool: ThreadPoolExecutor
) -> None:
    body = _body()
    res = origin.resources[PATH] = Resource(body=body, gate_after=600_000)
    try:
        whole = pool.submit(_get, big)
        wait_until(lambda: (f := _fill(big)) is not None and f.received >= 600_000)
        parts: list[Future[httpx.Response]] = [pool.submit(_get, big, Range=r) for r, _, _ in RANGES]
        early = parts[0].result(10)  # within what has arrived: answered while the origin holds back
        assert not res.gate.is_set()
        _check_range(early, body, 0, 100)
        assert not parts[1].done()  # beyond it: waits for the bytes
    finally:
        res.gate.set()
    assert whole.result(10).content == body
    for (_, lo, hi), part in zip(RANGES, parts, strict=True):
        _check_range(part.result(10), body, lo, hi)
    assert origin.count(PATH) == 1


@pytest.mark.network
def test_ranges_head_304_and_416_from_disk(origin: Origin, big: EdgeThread) -> None:
    body = _body()
    _store(big, origin, body)
    for header, lo, hi in RANGES:
        response = _get(big, Range=header)
        assert response.headers["x-cache"] == "HIT"
        _check_range(response, body, lo, hi)
    _check_range(_get(big, **{"Range": "bytes=5-9", "If-Range": '"v1"'}), body, 5, 10)
    other = _get(big, **{"Range": "bytes=5-9", "If-Range": '"v0"'})  # changed since: the whole body
    assert (other.status_code, other.content == body) == (200, True)
    unsatisfiable = _get(big, Range=f"bytes={SIZE}-")
    assert unsatisfiable.status_code == 416
    assert unsatisfiable.headers["content-range"] == f"bytes */{SIZE}"
    assert _get(big, **{"If-None-Match": '"v1"'}).status_code == 304
    with httpx.Client(base_url=big.url, timeout=10) as client:
        head = client.head(PATH)
        after = client.get(PATH)  # the same connection: the HEAD sent no body
    assert (head.status_code, head.headers["content-length"], head.content) == (200, str(SIZE), b"")
    assert (head.headers["x-cache"], after.content == body) == ("HIT", True)
    assert origin.count(PATH) == 1


@pytest.mark.network
def test_upstream_dying_mid_body_aborts_clients_and_leaves_nothing(
    origin: Origin, big: EdgeThread, pool: ThreadPoolExecutor
) -> None:
    body = _body()
    res = origin.resources[PATH] = Resource(body=body, gate_after=300_000, die_after=1_000_000)
    try:
        clients = [pool.submit(_raw_get, big) for _ in range(3)]
        wait_waiters(big, 2)
    finally:
        res.gate.set()
    for client in clients:
        length, got = client.result(10)
        assert length == SIZE
        assert len(got) < SIZE
        assert got == body[: len(got)]
    wait_until(lambda: _fill(big) is None and not _spools(big))
    assert _entry(big) is None
    origin.resources[PATH] = Resource(body=body)
    again = _get(big)
    assert (again.headers["x-cache"], again.content == body) == ("MISS", True)
    assert origin.count(PATH) == 2


@pytest.mark.network
def test_a_corrupt_first_block_is_a_miss(origin: Origin, big: EdgeThread) -> None:
    body = _body()
    entry = _store(big, origin, body)
    _flip(big.server.store.paths(entry)[0], 10)
    again = _get(big)
    assert (again.headers["x-cache"], again.content == body) == ("MISS", True)
    assert big.call(lambda: big.server.store.corrupt) == 1
    assert origin.count(PATH) == 2
    wait_stored(big, PATH)
    assert _get(big).headers["x-cache"] == "HIT"


@pytest.mark.network
def test_a_corrupt_later_block_truncates_the_response_and_drops_the_entry(
    origin: Origin, big: EdgeThread
) -> None:
    body = _body()
    entry = _store(big, origin, body)
    _flip(big.server.store.paths(entry)[0], 3 * BLOCK_SIZE + 5)
    length, got = _raw_get(big)
    assert length == SIZE
    assert len(got) <= 3 * BLOCK_SIZE  # the three good blocks at most, never the altered one
    assert got == body[: len(got)]
    assert _entry(big) is None
    assert big.call(lambda: big.server.store.corrupt) == 1
    again = _get(big)
    assert (again.headers["x-cache"], again.content == body) == ("MISS", True)


@pytest.mark.network
def test_a_large_entry_survives_a_restart(origin: Origin, make_edge: EdgeFactory) -> None:
    body = _body()
    first = make_edge(name="same", large_object=LARGE)
    _store(first, origin, body)
    first.stop()
    second = make_edge(name="same", large_object=LARGE)
    hit = _get(second)
    assert (hit.headers["x-cache"], hit.content == body) == ("HIT", True)
    assert origin.count(PATH) == 1


@pytest.mark.network
@pytest.mark.parametrize("damaged", [False, True])
def test_a_large_entry_stored_before_block_checksums_is_upgraded(
    origin: Origin, make_edge: EdgeFactory, damaged: bool
) -> None:
    body = _body()
    first = make_edge(name="same", large_object=LARGE)
    entry = _store(first, origin, body)
    first.stop()
    body_path, meta_path = first.server.store.paths(entry)
    meta = json.loads(meta_path.read_bytes())
    del meta["blocks"]
    meta_path.write_text(json.dumps({**meta, "v": 1}))  # as an edge without block checksums wrote it
    if damaged:
        _flip(body_path, SIZE - 1)
    second = make_edge(name="same", large_object=LARGE)
    response = _get(second)
    assert response.content == body
    assert response.headers["x-cache"] == ("MISS" if damaged else "HIT")
    if not damaged:
        assert json.loads(meta_path.read_bytes())["v"] == 3  # checked once, streamed from now on
        assert _get(second, Range="bytes=-10").content == body[-10:]
    assert second.call(lambda: second.server.store.corrupt) == int(damaged)


@pytest.mark.network
def test_purge_during_a_large_fill_stores_nothing(
    origin: Origin, big: EdgeThread, pool: ThreadPoolExecutor
) -> None:
    body = _body()
    res = origin.resources[PATH] = Resource(body=body, gate_after=400_000)
    try:
        client = pool.submit(_get, big)
        wait_until(lambda: len(_spools(big)) == 1)
        with httpx.Client(base_url=big.url) as admin:
            admin.post("/admin/purge", json={"path": PATH}, headers=AUTH).raise_for_status()
    finally:
        res.gate.set()
    assert client.result(10).content == body  # the client still gets its whole body
    wait_until(lambda: _fill(big) is None)
    assert _spools(big) == []
    assert _entry(big) is None
    assert list((big.config.cache_dir / "objects").glob("*/*.body")) == []
    assert _get(big).headers["x-cache"] == "MISS"


@pytest.mark.network
def test_shutdown_during_a_large_fill_removes_the_spool(
    origin: Origin, big: EdgeThread, pool: ThreadPoolExecutor
) -> None:
    body = _body()
    res = origin.resources[PATH] = Resource(body=body, gate_after=400_000)
    try:
        client = pool.submit(_raw_get, big)
        wait_until(lambda: len(_spools(big)) == 1)
        big.call_async(big.server.filler.close(grace=0))
        _, got = client.result(10)
        assert len(got) < SIZE
        assert _spools(big) == []
    finally:
        res.gate.set()


@pytest.mark.network
def test_stale_and_revalidated_large_entries_stream_from_disk(
    origin: Origin, big: EdgeThread, clock: Clock
) -> None:
    body = _body()
    res = Resource(body=body, etag='"v1"', headers=[("Cache-Control", "max-age=10")])
    _store(big, origin, body, res)
    clock.advance(20)
    revalidated = _get(big)
    assert (revalidated.headers["x-cache"], revalidated.content == body) == ("REVALIDATED", True)
    clock.advance(20)
    origin.resources[PATH] = Resource(body=b"down", status=503)
    stale = _get(big)
    assert (stale.headers["x-cache"], stale.content == body) == ("STALE", True)
    stale_range = _get(big, Range="bytes=300000-300009")
    assert (stale_range.status_code, stale_range.content) == (206, body[300_000:300_010])
    assert big.call(lambda: big.server.store.stats().memory_entries) == 0


@pytest.mark.network
def test_stale_while_revalidate_streams_the_large_copy(origin: Origin, big: EdgeThread, clock: Clock) -> None:
    body = _body()
    res = Resource(
        body=body, etag='"v1"', headers=[("Cache-Control", "max-age=10, stale-while-revalidate=100")]
    )
    _store(big, origin, body, res)
    clock.advance(20)
    stale = _get(big)
    assert (stale.headers["x-cache"], stale.content == body) == ("STALE", True)
    wait_until(lambda: origin.count(PATH) == 2)  # the background revalidation


@pytest.mark.network
def test_small_objects_keep_the_memory_path(origin: Origin, big: EdgeThread) -> None:
    small = os.urandom(10_000)
    origin.resources["/videos/big/seg-1.m4s"] = Resource(body=small)
    assert _get(big, "/videos/big/seg-1.m4s").headers["x-cache"] == "MISS"
    wait_stored(big, "/videos/big/seg-1.m4s")
    assert big.call(lambda: big.server.store.memory_body("/videos/big/seg-1.m4s")) == small
    entry = _entry(big, "/videos/big/seg-1.m4s")
    assert entry is not None
    assert entry.blocks is None
    assert json.loads(big.server.store.paths(entry)[1].read_bytes())["v"] == 1
    assert _get(big, "/videos/big/seg-1.m4s").content == small
    assert _metric(big, "cdn_edge_spooled_fills_total") == 0
