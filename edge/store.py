"""The cache's storage: a bytes-bounded LRU on disk plus a bounded in-memory tier for hot objects.

Layout: `CACHE_DIR/objects/ab/<hash>.body` holds the body and `<hash>.meta` (JSON) its key, status,
headers, freshness, size, CRC-32, for a response with Vary the request values it was stored for,
and for a large body the CRC-32 of each block (`edge.blocks`). A commit writes both as `*.tmp`
(a large fill's spool file is one already), renames the body, then the meta: the meta is the commit
marker. At start the index is rebuilt from the `.meta` files; tmp leftovers, orphan bodies and
entries whose body has the wrong length are removed. A small body read from disk is checked against
its length and CRC-32 before it is served; a large one block by block (`edge.bodyfile`); a bad one
is dropped (a miss).

Goals / plan / caveats: index mutations happen on the event-loop thread only; file writes and
reads are plain blocking functions the caller runs in a worker thread (`write_files`,
`commit_spool`, `read_verified`). Eviction is strict LRU by bytes (body + meta) on disk and,
separately, by body bytes in memory; evicting from disk also drops the memory copy so the two
never disagree. Large entries never enter the memory tier.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from edge.blocks import Blocks
from edge.cachecontrol import Freshness
from edge.errors import StoreError
from edge.vary import Selection

__all__ = ["Entry", "RebuildReport", "Store", "StoreStats", "file_id"]

# v2 adds `vary`, v3 `blocks` (per-block CRC-32s of a large body). Each entry is written with the
# lowest version that holds its data, so code that knows only v1 keeps the plain entries after a
# rollback and drops (never misserves) the others.
_META_VERSIONS = (1, 2, 3)


def file_id(key: str) -> str:
    """The hex name of the files of the entry stored under `key`."""
    return hashlib.blake2b(key.encode(), digest_size=16).hexdigest()


@dataclass(slots=True, kw_only=True, eq=False)
class Entry:
    """One stored response. Mutable: a revalidation (304) refreshes its headers and dates."""

    key: str
    status: int
    headers: list[tuple[str, str]]
    size: int
    checksum: int
    stored_at: float
    freshness: Freshness
    vary: Selection = ()  # the request's values of the headers its Vary names (RFC 9111 §4.1)
    blocks: Blocks | None = None  # per-block CRC-32s: a large body, streamed from disk block by block
    meta_size: int = 0
    accounted: int = 0  # bytes this entry added to the store's total when it was admitted
    rendered: dict[str, bytes] = field(default_factory=dict)  # response heads cached by the server

    @property
    def file_id(self) -> str:
        """The hex name of this entry's files."""
        return file_id(self.key)

    def header(self, name: str) -> str | None:
        """The first stored header called `name` (case-insensitive)."""
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)

    def age(self, now: float) -> float:
        """Current age in seconds."""
        return max(0.0, now - self.stored_at)

    def to_meta(self) -> bytes:
        """The JSON sidecar describing this entry."""
        f = self.freshness
        doc: dict[str, object] = {
            "v": 3 if self.blocks is not None else 2 if self.vary else 1,
            "key": self.key,
            "status": self.status,
            "headers": self.headers,
            "size": self.size,
            "crc32": self.checksum,
            "stored_at": self.stored_at,
            "freshness": [f.ttl, f.stale_while_revalidate, f.stale_if_error, f.must_revalidate],
        }
        if self.vary:
            doc["vary"] = self.vary
        if self.blocks is not None:
            doc["blocks"] = self.blocks.to_json()
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def from_meta(cls, data: bytes) -> Entry:
        """Parse a sidecar; raise ValueError/KeyError/TypeError when it is damaged."""
        doc = json.loads(data)
        if doc["v"] not in _META_VERSIONS:
            raise ValueError(f"meta version {doc['v']} is not one of {_META_VERSIONS}")
        ttl, swr, sie, mr = doc["freshness"]
        blocks = Blocks.from_json(doc["blocks"]) if "blocks" in doc else None
        if blocks is not None and not blocks.fits(int(doc["size"])):
            raise ValueError(f"{len(blocks.crc)} block checksums do not cover {doc['size']} bytes")
        return cls(
            key=str(doc["key"]),
            status=int(doc["status"]),
            headers=[(str(k), str(v)) for k, v in doc["headers"]],
            size=int(doc["size"]),
            checksum=int(doc["crc32"]),
            stored_at=float(doc["stored_at"]),
            freshness=Freshness(ttl=ttl, stale_while_revalidate=swr, stale_if_error=sie, must_revalidate=mr),
            vary=tuple((str(n), None if v is None else str(v)) for n, v in doc.get("vary", ())),
            blocks=blocks,
            meta_size=len(data),
        )


@dataclass(frozen=True, slots=True)
class RebuildReport:
    """What `Store.open` found on disk."""

    entries: int
    bytes: int
    removed: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreStats:
    """Sizes and counters of both tiers."""

    entries: int
    bytes: int
    capacity: int
    memory_entries: int
    memory_bytes: int
    memory_capacity: int
    evictions: int
    memory_evictions: int
    corrupt: int


def checksum(body: bytes | bytearray | memoryview) -> int:
    """CRC-32 of a body (detects truncation and bit rot; not a security check)."""
    return zlib.crc32(body)


class Store:
    """Disk LRU index + memory tier. Use from the event-loop thread except the `*_files` helpers."""

    def __init__(self, root: Path, *, capacity: int, memory_capacity: int) -> None:
        self.root = root
        self.objects = root / "objects"
        self.capacity = capacity
        self.memory_capacity = memory_capacity
        self._index: OrderedDict[str, Entry] = OrderedDict()
        self._bytes = 0
        self._memory: OrderedDict[str, bytes] = OrderedDict()
        self._memory_bytes = 0
        self.evictions = 0
        self.memory_evictions = 0
        self.corrupt = 0

    # -- start-up ---------------------------------------------------------------------------

    def open(self) -> RebuildReport:
        """Create the directory and rebuild the index from disk, removing leftovers (blocking)."""
        try:
            self.objects.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create cache dir {self.objects}: {exc}; check --cache-dir") from exc
        removed = 0
        found: list[Entry] = []
        for path in self._files():
            if path.name.endswith(".tmp"):
                removed += _unlink(path)  # an interrupted commit
            elif path.suffix == ".meta":
                entry, bad = self._load_meta(path)
                removed += bad
                if entry is not None:
                    found.append(entry)
        for path in self._files():
            if path.suffix != ".meta" and not path.with_suffix(".meta").exists():
                removed += _unlink(path)  # a body without its commit marker
        for entry in sorted(found, key=lambda e: e.stored_at):
            self._index[entry.key] = entry
            entry.accounted = entry.size + entry.meta_size
            self._bytes += entry.accounted
        self._evict()
        return RebuildReport(entries=len(self._index), bytes=self._bytes, removed=removed)

    def _files(self) -> list[Path]:
        """Every file under objects/."""
        return [p for sub in sorted(self.objects.iterdir()) if sub.is_dir() for p in sorted(sub.iterdir())]

    def _load_meta(self, meta_path: Path) -> tuple[Entry | None, int]:
        """The entry described by a sidecar if its body has the right length; else delete both."""
        body_path = meta_path.with_suffix(".body")
        try:
            entry = Entry.from_meta(meta_path.read_bytes())
            ok = body_path.stat().st_size == entry.size and entry.file_id == meta_path.stem
        except (OSError, ValueError, KeyError, TypeError):
            ok, entry = False, None
        if ok:
            return entry, 0
        return None, _unlink(meta_path) + _unlink(body_path)

    # -- lookups (loop thread) --------------------------------------------------------------

    def lookup(self, key: str) -> Entry | None:
        """The entry stored under `key`, marked as recently used."""
        entry = self._index.get(key)
        if entry is not None:
            self._index.move_to_end(key)
        return entry

    def peek(self, key: str) -> Entry | None:
        """The entry stored under `key`, without touching the LRU order."""
        return self._index.get(key)

    def memory_body(self, key: str) -> bytes | None:
        """The body from the memory tier, marked as recently used."""
        body = self._memory.get(key)
        if body is not None:
            self._memory.move_to_end(key)
        return body

    def remember(self, key: str, body: bytes) -> None:
        """Put a body in the memory tier (if it fits), evicting the least recently used."""
        if len(body) > self.memory_capacity or key not in self._index:
            return
        self._forget(key)
        self._memory[key] = body
        self._memory_bytes += len(body)
        while self._memory_bytes > self.memory_capacity:
            _, old = self._memory.popitem(last=False)
            self._memory_bytes -= len(old)
            self.memory_evictions += 1

    def _forget(self, key: str) -> None:
        old = self._memory.pop(key, None)
        if old is not None:
            self._memory_bytes -= len(old)

    # -- commits and removals -------------------------------------------------------------

    def admit(self, entry: Entry, body: bytes | None = None) -> None:
        """Add an entry whose files were written by `write_files`; evict to stay within capacity."""
        self.remove(entry.key, files=False)
        self._index[entry.key] = entry
        # the meta may not be written yet: account for its size as it will be
        entry.accounted = entry.size + (entry.meta_size or len(entry.to_meta()))
        self._bytes += entry.accounted
        if body is not None:
            self.remember(entry.key, body)
        self._evict()

    def remove(self, key: str, *, files: bool = True) -> bool:
        """Drop an entry from both tiers (and its files); True if it was there."""
        self._forget(key)
        entry = self._index.pop(key, None)
        if entry is None:
            return False
        self._bytes -= entry.accounted
        if files:
            self.delete_files(entry)
        return True

    def purge(self, *, key: str | None = None, prefix: str | None = None) -> int:
        """Remove one key, every key starting with `prefix`, or (neither given) everything."""
        if key is not None:
            return int(self.remove(key))
        doomed = [k for k in self._index if prefix is None or k.startswith(prefix)]
        for k in doomed:
            self.remove(k)
        return len(doomed)

    def corrupt_entry(self, entry: Entry) -> None:
        """Drop an entry whose body failed verification."""
        self.corrupt += 1
        if self._index.get(entry.key) is entry:
            self.remove(entry.key)

    def _evict(self) -> None:
        while self._bytes > self.capacity and self._index:
            key = next(iter(self._index))
            self.remove(key)
            self.evictions += 1

    def keys(self) -> list[str]:
        """Stored keys, least recently used first."""
        return list(self._index)

    def stats(self) -> StoreStats:
        """Current sizes and counters."""
        return StoreStats(
            entries=len(self._index),
            bytes=self._bytes,
            capacity=self.capacity,
            memory_entries=len(self._memory),
            memory_bytes=self._memory_bytes,
            memory_capacity=self.memory_capacity,
            evictions=self.evictions,
            memory_evictions=self.memory_evictions,
            corrupt=self.corrupt,
        )

    # -- blocking file I/O (run in a worker thread) ------------------------------------------

    def paths(self, entry: Entry) -> tuple[Path, Path]:
        """The body and meta paths of an entry."""
        body = self.body_path(entry.key)
        return body, body.with_suffix(".meta")

    def body_path(self, key: str) -> Path:
        """Where the body stored under `key` lives (its directory may not exist yet)."""
        fid = file_id(key)
        return self.objects / fid[:2] / f"{fid}.body"

    def write_files(self, entry: Entry, body: bytes) -> None:
        """Atomically write body then meta (tmp + rename each); sets `entry.meta_size`."""
        body_path, meta_path = self.paths(entry)
        body_path.parent.mkdir(exist_ok=True)
        _atomic_write(body_path, body)
        self.write_meta(entry)

    def commit_spool(self, entry: Entry, spool: Path) -> None:
        """Rename a spooled body (a `*.tmp` in the body's directory) into place, then write the meta.

        No copy of the body: the spool file becomes the body file. Raise StoreError.
        """
        body_path = self.paths(entry)[0]
        try:
            os.replace(spool, body_path)
        except OSError as exc:
            raise StoreError(f"cannot move {spool} to {body_path}: {exc}") from exc
        try:
            self.write_meta(entry)
        except StoreError:
            _unlink(body_path)  # no commit marker: the body alone would be an orphan
            raise

    def write_meta(self, entry: Entry) -> None:
        """Atomically (re)write the meta sidecar, e.g. after a 304 refreshed the entry."""
        meta = entry.to_meta()
        entry.meta_size = len(meta)
        _atomic_write(self.paths(entry)[1], meta)

    def read_verified(self, entry: Entry) -> bytes | None:
        """The body from disk if its length and CRC-32 match the meta; None if not (corrupt)."""
        try:
            body = self.paths(entry)[0].read_bytes()
        except OSError:
            return None
        if len(body) != entry.size or checksum(body) != entry.checksum:
            return None
        return body

    def delete_files(self, entry: Entry) -> None:
        """Remove an entry's files (meta first, so a crash never leaves a meta without a body)."""
        body_path, meta_path = self.paths(entry)
        _unlink(meta_path)
        _unlink(body_path)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{id(data):x}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        _unlink(tmp)
        raise StoreError(f"cannot write {path}: {exc}; check free space in the cache dir") from exc


def _unlink(path: Path) -> int:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
        return 1
    return 0
