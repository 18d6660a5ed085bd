"""The cache's storage: a bytes-bounded LRU on disk plus a bounded in-memory tier for hot objects.

Layout: `CACHE_DIR/objects/ab/<hash>.body` holds the body and `<hash>.meta` (JSON) its key, status,
headers, freshness, size, CRC-32, for a response with Vary the request values it was stored for,
and for a large body the CRC-32 of each block (`edge.blocks`); `edge.entry` names them. A commit
writes both as `*.tmp` (a large fill's spool file is one already), renames the body, then the
meta: the meta is the commit marker. At start the index is rebuilt from the `.meta` files; tmp
leftovers, orphan bodies and entries whose body has the wrong length are removed. A small body read
from disk is checked against its length and CRC-32 before it is served; a large one block by block
(`edge.bodyfile`); a bad one is dropped (a miss).

Goals / plan / caveats: index mutations happen on the event-loop thread only; file writes and
reads are plain blocking functions the caller runs in a worker thread (`write_files`,
`commit_spool`, `read_verified`). Eviction is strict LRU by bytes (body + meta) on disk and,
separately, by body bytes in memory; evicting from disk also drops the memory copy so the two
never disagree. Large entries never enter the memory tier.
Variants (RFC 9111 §4.1): the index and the memory tier are keyed by an entry's slot, which is the
cache key itself for a response without Vary, so a lookup of the common case is one dict access as
before. The variants of a key stored with Vary are also listed per key (least recently used first,
at most `max_variants`, all with the same Vary names); `admit` applies the replacement rules.
"""

from __future__ import annotations

import contextlib
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from edge.config import DEFAULT_MAX_VARIANTS
from edge.entry import Entry, checksum
from edge.errors import StoreError
from edge.vary import Forwarded, Selection, matches

__all__ = ["RebuildReport", "Store", "StoreStats"]


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
    varied_entries: int = 0  # entries stored with Vary (each variant counts)
    extra_variants: int = 0  # variants beyond the first of their key
    variant_evictions: int = 0  # variants evicted because their key had max_variants others


class Store:
    """Disk LRU index + memory tier. Use from the event-loop thread except the `*_files` helpers."""

    def __init__(
        self, root: Path, *, capacity: int, memory_capacity: int, max_variants: int = DEFAULT_MAX_VARIANTS
    ) -> None:
        self.root = root
        self.objects = root / "objects"
        self.capacity = capacity
        self.memory_capacity = memory_capacity
        self.max_variants = max_variants
        self._index: OrderedDict[str, Entry] = OrderedDict()  # by slot, least recently used first
        self._varied: dict[str, list[Entry]] = {}  # key -> its variants with Vary, least recently used first
        self._varied_entries = 0
        self._bytes = 0
        self._memory: OrderedDict[str, bytes] = OrderedDict()  # by slot
        self._memory_bytes = 0
        self.evictions = 0
        self.memory_evictions = 0
        self.variant_evictions = 0
        self.corrupt = 0

    # -- start-up ---------------------------------------------------------------------------

    def open(self) -> RebuildReport:
        """Create the directory and rebuild the index from disk, removing leftovers (blocking).

        Entries are admitted oldest first under the same rules as new ones, which regroups the
        variants of each key (and trims them to `max_variants`).
        """
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
            self.admit(entry)
        return RebuildReport(entries=len(self._index), bytes=self._bytes, removed=removed)

    def _files(self) -> list[Path]:
        """Every file under objects/."""
        return [p for sub in sorted(self.objects.iterdir()) if sub.is_dir() for p in sorted(sub.iterdir())]

    def _load_meta(self, meta_path: Path) -> tuple[Entry | None, int]:
        """The entry described by a sidecar if its body has the right length; else delete both."""
        body_path = meta_path.with_suffix(".body")
        try:
            # the file name is the entry's: after its slot, its key (one variant per key, before),
            # or its slot before a 304 changed its Vary (edge.entry)
            entry = Entry.from_meta(meta_path.read_bytes(), meta_path.stem)
            ok = body_path.stat().st_size == entry.size
        except (OSError, ValueError, KeyError, TypeError):
            ok, entry = False, None
        if ok:
            return entry, 0
        return None, _unlink(meta_path) + _unlink(body_path)

    # -- lookups (loop thread) --------------------------------------------------------------

    def lookup(self, key: str) -> Entry | None:
        """The entry stored under `key` without Vary (it answers any request), marked as recently used."""
        entry = self._index.get(key)
        if entry is not None:
            self._index.move_to_end(key)
        return entry

    def find(self, key: str, request: Forwarded) -> Entry | None:
        """The entry that may answer a request with these forwarded headers, marked as recently used.

        The one stored without Vary, else the variant whose selection `matches` the request (one at
        most: the variants of a key share their Vary names and differ in the values).
        """
        entry = self.lookup(key)
        if entry is not None:
            return entry
        group = self._varied.get(key)
        if group is None:
            return None
        for i in range(len(group) - 1, -1, -1):  # the most recently used first
            entry = group[i]
            if matches(entry.vary, request):
                self._index.move_to_end(entry.slot)
                if i != len(group) - 1:
                    group.append(group.pop(i))
                return entry
        return None

    def peek(self, key: str) -> Entry | None:
        """An entry stored under `key` (without Vary, else the most recently used variant); LRU untouched."""
        entry = self._index.get(key)
        if entry is None and key in self._varied:
            entry = self._varied[key][-1]
        return entry

    def variants(self, key: str) -> list[Entry]:
        """Every entry stored under `key`, least recently used first."""
        entry = self._index.get(key)
        return [entry] if entry is not None else list(self._varied.get(key, ()))

    def holds(self, entry: Entry) -> bool:
        """Is this very entry still stored (not replaced, evicted, purged or dropped)?"""
        return self._index.get(entry.slot) is entry

    def memory_body(self, slot: str) -> bytes | None:
        """The body of the entry in `slot` from the memory tier, marked as recently used."""
        body = self._memory.get(slot)
        if body is not None:
            self._memory.move_to_end(slot)
        return body

    def remember(self, entry: Entry, body: bytes) -> None:
        """Put a stored entry's body in the memory tier (if it fits), evicting the least recently used."""
        slot = entry.slot
        if len(body) > self.memory_capacity or self._index.get(slot) is not entry:
            return  # too big, or the entry was replaced (or dropped) while its body was read
        self._forget(slot)
        self._memory[slot] = body
        self._memory_bytes += len(body)
        while self._memory_bytes > self.memory_capacity:
            _, old = self._memory.popitem(last=False)
            self._memory_bytes -= len(old)
            self.memory_evictions += 1

    def _forget(self, slot: str) -> None:
        old = self._memory.pop(slot, None)
        if old is not None:
            self._memory_bytes -= len(old)

    # -- commits and removals -------------------------------------------------------------

    def admit(self, entry: Entry, body: bytes | None = None) -> None:
        """Add an entry whose files were (or are being) written; evict to stay within capacity.

        It replaces the entry in its slot and, by RFC 9111 §4.1's logic: without Vary, every variant
        of its key (the resource stopped varying); with Vary, the entry without Vary and variants
        that vary on other headers (the resource changed what it varies on), then the key's least
        recently used variant when `max_variants` are stored. Files a replaced entry shares with
        this one (the same name) are left for this one to overwrite.
        """
        self.drop(entry, files=False)  # admitted again: count it once
        for old in self._displaced(entry):
            self.drop(old, files=old.fid != entry.fid)
        self._index[entry.slot] = entry
        if entry.vary:
            self._varied.setdefault(entry.key, []).append(entry)
            self._varied_entries += 1
        # the meta may not be written yet: account for its size as it will be
        entry.accounted = entry.size + (entry.meta_size or len(entry.to_meta()))
        self._bytes += entry.accounted
        if body is not None:
            self.remember(entry, body)
        self._evict()

    def _displaced(self, entry: Entry) -> list[Entry]:
        """The stored entries that admitting `entry` replaces or evicts (see `admit`)."""
        plain = self._index.get(entry.key)
        doomed = [] if plain is None or plain is entry else [plain]
        group = self._varied.get(entry.key, [])
        if not entry.vary:
            return doomed + [e for e in group if e is not entry]
        names = entry.varies_on
        kept: list[Entry] = []
        for other in group:
            if other is not entry:
                (doomed if other.slot == entry.slot or other.varies_on != names else kept).append(other)
        excess = len(kept) - self.max_variants + 1
        if excess > 0:
            self.variant_evictions += excess
            doomed += kept[:excess]
        return doomed

    def drop(self, entry: Entry, *, files: bool = True) -> bool:
        """Remove this entry from both tiers (and its files); False if it was no longer stored."""
        if self._index.get(entry.slot) is not entry:
            return False
        del self._index[entry.slot]
        self._forget(entry.slot)
        if entry.slot != entry.key:
            group = self._varied[entry.key]
            group.remove(entry)
            self._varied_entries -= 1
            if not group:
                del self._varied[entry.key]
        self._bytes -= entry.accounted
        if files:
            self.delete_files(entry)
        return True

    def revary(self, entry: Entry, selection: Selection) -> None:
        """A 304 changed what a stored entry varies on: file it under its new selection (files stay)."""
        if not self.holds(entry):
            entry.revary(selection)
            return
        body = self._memory.get(entry.slot)
        self.drop(entry, files=False)
        entry.revary(selection)
        self.admit(entry, body)

    def vacate(self, entry: Entry) -> None:
        """Unlist the stored entries whose files `entry`'s are about to replace (a spool renamed over them)."""
        for other in self.variants(entry.key):
            if other.fid == entry.fid:
                self.drop(other, files=False)

    def files_in_use(self, entry: Entry) -> bool:
        """Does a stored entry own files of this name (one that replaced `entry` in its slot)?"""
        return any(other.fid == entry.fid for other in self.variants(entry.key))

    def purge(self, *, key: str | None = None, prefix: str | None = None) -> int:
        """Remove every variant of one key, of every key starting with `prefix`, or (neither given) everything."""
        if key is not None:
            doomed = self.variants(key)
        else:
            doomed = [e for e in self._index.values() if prefix is None or e.key.startswith(prefix)]
        for entry in doomed:
            self.drop(entry)
        return len(doomed)

    def corrupt_entry(self, entry: Entry) -> None:
        """Drop an entry whose body failed verification."""
        self.corrupt += 1
        self.drop(entry)

    def _evict(self) -> None:
        while self._bytes > self.capacity and self._index:
            self.drop(next(iter(self._index.values())))
            self.evictions += 1

    def keys(self) -> list[str]:
        """The key of each stored entry (a key once per variant), least recently used first."""
        return [entry.key for entry in self._index.values()]

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
            varied_entries=self._varied_entries,
            extra_variants=self._varied_entries - len(self._varied),
            variant_evictions=self.variant_evictions,
        )

    # -- blocking file I/O (run in a worker thread) ------------------------------------------

    def paths(self, entry: Entry) -> tuple[Path, Path]:
        """The body and meta paths of an entry."""
        body = self.body_path(entry.fid)
        return body, body.with_suffix(".meta")

    def body_path(self, fid: str) -> Path:
        """Where the body of the files named `fid` lives (its directory may not exist yet)."""
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
