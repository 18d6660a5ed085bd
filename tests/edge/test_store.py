"""The disk LRU and the memory tier, directly and across an edge restart."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest

from edge.blocks import BLOCK_SIZE, BlockSums
from edge.cachecontrol import Freshness
from edge.entry import Entry, checksum
from edge.errors import StoreError
from edge.store import Store
from edge.vary import Selection
from tests.edge.conftest import EdgeFactory, wait_stored
from tests.edge.upstream_server import Origin, Resource


def make_entry(key: str, body: bytes, vary: Selection = (), stored_at: float = 1000.0) -> Entry:
    """A stored 200 of `body` (video/mp4, 60 s fresh), as a fill would commit it."""
    return Entry(
        key=key,
        status=200,
        headers=[("Content-Type", "video/mp4")],
        size=len(body),
        checksum=checksum(body),
        stored_at=stored_at,
        freshness=Freshness(ttl=60),
        vary=vary,
    )


def _put(store: Store, key: str, body: bytes) -> Entry:
    entry = make_entry(key, body)
    store.write_files(entry, body)
    store.admit(entry, body)
    return entry


def test_lru_is_bounded_by_bytes_and_evicts_least_recently_used(tmp_path: Path) -> None:
    store = Store(tmp_path, capacity=3500, memory_capacity=10_000)
    store.open()
    for name in "abc":
        _put(store, f"/videos/{name}", bytes(1000))
    store.lookup("/videos/a")  # a is now the most recently used
    _put(store, "/videos/d", bytes(1000))
    assert store.stats().bytes <= 3500
    assert store.lookup("/videos/b") is None
    assert {"/videos/a", "/videos/c", "/videos/d"} <= set(store.keys())
    assert store.stats().evictions >= 1
    assert not store.paths(make_entry("/videos/b", b""))[0].exists()


def test_memory_tier_is_bounded(tmp_path: Path) -> None:
    store = Store(tmp_path, capacity=100_000, memory_capacity=2500)
    store.open()
    for i in range(5):
        _put(store, f"/videos/{i}", bytes(1000))
    stats = store.stats()
    assert stats.memory_bytes <= 2500
    assert stats.memory_entries == 2
    assert store.memory_body("/videos/4") is not None
    assert store.memory_body("/videos/0") is None
    assert stats.entries == 5  # all still on disk


def test_rebuild_restores_entries_and_removes_leftovers(tmp_path: Path) -> None:
    store = Store(tmp_path, capacity=100_000, memory_capacity=0)
    store.open()
    good = _put(store, "/videos/good", b"g" * 100)
    short = _put(store, "/videos/short", b"s" * 100)
    store.paths(short)[0].write_bytes(b"s" * 50)  # truncated body: wrong length
    leftover = store.paths(good)[0].with_name("junk.body.1.2.tmp")
    leftover.write_bytes(b"partial")
    orphan = store.objects / "ff" / "00ff.body"
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"no meta")
    fresh = Store(tmp_path, capacity=100_000, memory_capacity=0)
    report = fresh.open()
    assert fresh.keys() == ["/videos/good"]
    assert report.removed >= 4
    assert not leftover.exists()
    assert not orphan.exists()
    assert fresh.read_verified(fresh.lookup("/videos/good")) == b"g" * 100  # type: ignore[arg-type]


def test_corrupt_body_fails_verification(tmp_path: Path) -> None:
    store = Store(tmp_path, capacity=100_000, memory_capacity=0)
    store.open()
    entry = _put(store, "/videos/x", b"abcdef" * 100)
    path = store.paths(entry)[0]
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF
    path.write_bytes(bytes(data))
    assert store.read_verified(entry) is None


def test_purge_by_key_prefix_and_all(tmp_path: Path) -> None:
    store = Store(tmp_path, capacity=100_000, memory_capacity=100_000)
    store.open()
    for key in ("/videos/a/1", "/videos/a/2", "/videos/b/1"):
        _put(store, key, b"x")
    assert store.purge(key="/videos/a/1") == 1
    assert store.purge(prefix="/videos/a/") == 1
    assert store.keys() == ["/videos/b/1"]
    assert store.purge() == 1
    assert store.stats().bytes == 0


@pytest.mark.network
def test_restart_keeps_entries_and_refetches_a_corrupted_one(
    origin: Origin, make_edge: EdgeFactory, tmp_path: Path
) -> None:
    a, b = os.urandom(100_000), os.urandom(100_000)
    origin.resources["/videos/v/a.m4s"] = Resource(body=a)
    origin.resources["/videos/v/b.m4s"] = Resource(body=b)
    first = make_edge(name="same")
    with httpx.Client(base_url=first.url) as client:
        client.get("/videos/v/a.m4s")
        client.get("/videos/v/b.m4s")
    wait_stored(first, "/videos/v/a.m4s")
    wait_stored(first, "/videos/v/b.m4s")
    entry_b = first.call(lambda: first.server.store.lookup("/videos/v/b.m4s"))
    body_path = first.server.store.paths(entry_b)[0]
    first.stop()
    body_path.write_bytes(b[:-10] + b"0123456789")  # same length, wrong bytes
    (body_path.parent / "x.body.9.9.tmp").write_bytes(b"leftover")
    second = make_edge(name="same")
    assert not (body_path.parent / "x.body.9.9.tmp").exists()
    with httpx.Client(base_url=second.url) as client:
        ra, rb = client.get("/videos/v/a.m4s"), client.get("/videos/v/b.m4s")
    assert ra.content == a
    assert ra.headers["x-cache"] == "HIT"
    assert rb.content == b
    assert rb.headers["x-cache"] == "MISS"
    assert origin.count("/videos/v/a.m4s") == 1
    assert origin.count("/videos/v/b.m4s") == 2


@pytest.mark.network
def test_edge_evicts_by_bytes_and_refetches_evicted(origin: Origin, make_edge: EdgeFactory) -> None:
    edge = make_edge(cache_size=250_000, memory_cache=120_000)
    bodies = {f"/videos/e/{i}.m4s": os.urandom(100_000) for i in range(4)}
    for path, body in bodies.items():
        origin.resources[path] = Resource(body=body)
    with httpx.Client(base_url=edge.url) as client:
        for path in bodies:
            assert client.get(path).content == bodies[path]
            wait_stored(edge, path)
        stats = client.get("/admin/stats", headers={"Authorization": "Bearer s3cret"}).json()
        assert stats["bytes"] <= 250_000
        assert stats["memory_bytes"] <= 120_000
        assert stats["evictions"] == 2
        again = client.get("/videos/e/0.m4s")
        assert again.content == bodies["/videos/e/0.m4s"]
        assert again.headers["x-cache"] == "MISS"
        last = client.get("/videos/e/3.m4s")
        assert last.headers["x-cache"] == "HIT"


def test_byte_accounting_survives_admission_before_the_files(tmp_path: Path) -> None:
    store = Store(tmp_path, capacity=100_000, memory_capacity=100_000)
    store.open()
    entry = make_entry("/videos/early", b"e" * 500)
    store.admit(entry, b"e" * 500)  # visible before its files exist, as a fill does it
    store.write_files(entry, b"e" * 500)
    _put(store, "/videos/other", b"o" * 100)
    entry.headers.append(("X-Longer-After-A-304", "y" * 100))
    store.write_meta(entry)
    store.purge()
    assert store.stats().bytes == 0


def test_an_entry_written_before_vary_support_still_loads(tmp_path: Path) -> None:
    store = Store(tmp_path, capacity=100_000, memory_capacity=0)
    store.open()
    body = b"legacy body"
    entry = make_entry("/videos/legacy", body)
    legacy = {  # the sidecar exactly as the edge wrote it before it recorded Vary data
        "v": 1,
        "key": "/videos/legacy",
        "status": 200,
        "headers": [["Content-Type", "video/mp4"], ["Vary", "Accept-Encoding"]],
        "size": len(body),
        "crc32": checksum(body),
        "stored_at": 1000.0,
        "freshness": [60.0, 0.0, None, False],
    }
    body_path, meta_path = store.paths(entry)
    body_path.parent.mkdir(exist_ok=True)
    body_path.write_bytes(body)
    meta_path.write_bytes(json.dumps(legacy).encode())
    fresh = Store(tmp_path, capacity=100_000, memory_capacity=0)
    assert fresh.open().entries == 1
    loaded = fresh.lookup("/videos/legacy")
    assert loaded is not None
    assert loaded.vary == ()  # no Vary data: it matches every request, as before
    assert fresh.read_verified(loaded) == body


def test_vary_data_round_trips_and_plain_entries_stay_version_1(tmp_path: Path) -> None:
    plain = make_entry("/videos/plain", b"p")
    assert json.loads(plain.to_meta())["v"] == 1  # readable by an edge that only knows v1
    varied = make_entry(
        "/videos/varied", b"v", (("accept-encoding", "gzip"), ("origin", None), ("accept-language", ""))
    )
    doc = json.loads(varied.to_meta())
    assert doc["v"] == 2
    assert Entry.from_meta(varied.to_meta()).vary == varied.vary
    with pytest.raises(ValueError, match="meta version 4"):  # v3 (block checksums) is known now
        Entry.from_meta(json.dumps({**doc, "v": 4}).encode())
    store = Store(tmp_path, capacity=100_000, memory_capacity=0)
    store.open()
    store.write_files(varied, b"v")
    store.admit(varied)
    assert store.stats().bytes == 1 + len(varied.to_meta())
    reopened = Store(tmp_path, capacity=100_000, memory_capacity=0)
    reopened.open()
    assert reopened.lookup("/videos/varied") is None  # not the entry without Vary
    assert reopened.peek("/videos/varied").vary == varied.vary  # type: ignore[union-attr]


def test_block_checksums_round_trip_as_version_3_and_bad_ones_are_dropped(tmp_path: Path) -> None:
    body = os.urandom(3 * BLOCK_SIZE + 10)
    sums = BlockSums()
    sums.feed(body)
    entry = make_entry("/videos/large", body, (("accept-encoding", "gzip"),))
    entry.blocks = sums.blocks()
    doc = json.loads(entry.to_meta())
    assert doc["v"] == 3
    assert doc["blocks"] == {"size": BLOCK_SIZE, "crc": list(sums.blocks().crc)}
    loaded = Entry.from_meta(entry.to_meta())
    assert (loaded.blocks, loaded.vary) == (entry.blocks, entry.vary)
    with pytest.raises(ValueError, match="do not cover"):
        Entry.from_meta(json.dumps({**doc, "blocks": {"size": BLOCK_SIZE, "crc": [1, 2]}}).encode())
    store = Store(tmp_path, capacity=10 * BLOCK_SIZE, memory_capacity=0)
    store.open()
    store.write_files(entry, body)
    store.admit(entry)
    bad = _put(store, "/videos/bad-blocks", b"b" * 100)
    bad_meta = store.paths(bad)[1]
    bad_meta.write_bytes(
        json.dumps({**json.loads(bad_meta.read_bytes()), "v": 3, "blocks": {"size": 0, "crc": []}}).encode()
    )
    reopened = Store(tmp_path, capacity=10 * BLOCK_SIZE, memory_capacity=0)
    assert reopened.open().removed == 2  # the damaged meta and its body
    assert reopened.keys() == ["/videos/large"]
    assert reopened.peek("/videos/large").blocks == entry.blocks  # type: ignore[union-attr]


def test_a_version_2_entry_still_loads_without_blocks(tmp_path: Path) -> None:
    store = Store(tmp_path, capacity=100_000, memory_capacity=0)
    store.open()
    body = b"varied body"
    entry = make_entry("/videos/v2", body, (("accept-encoding", "gzip"),))
    store.write_files(entry, body)
    assert json.loads(store.paths(entry)[1].read_bytes())["v"] == 2
    fresh = Store(tmp_path, capacity=100_000, memory_capacity=0)
    assert fresh.open().entries == 1
    loaded = fresh.find("/videos/v2", (("accept-encoding", "gzip"),))
    assert loaded is not None
    assert (loaded.blocks, loaded.vary) == (None, entry.vary)
    assert fresh.read_verified(loaded) == body


def test_commit_spool_renames_the_spool_into_place(tmp_path: Path) -> None:
    store = Store(tmp_path, capacity=100_000, memory_capacity=0)
    store.open()
    body = os.urandom(5000)
    entry = make_entry("/videos/spooled", body)
    spool = store.body_path(entry.fid).with_name("spool.1.2.tmp")
    spool.parent.mkdir(exist_ok=True)
    spool.write_bytes(body)
    store.commit_spool(entry, spool)
    body_path, meta_path = store.paths(entry)
    assert not spool.exists()
    assert body_path.read_bytes() == body
    assert Entry.from_meta(meta_path.read_bytes()).size == len(body)
    with pytest.raises(StoreError, match="cannot move"):
        store.commit_spool(entry, spool)  # gone: nothing to rename
