"""Answering requests from stored entries: read and verify bodies, stream large ones, drop corrupt ones.

`EntryResponder` is the part of the edge server that turns a stored `Entry` into a response. A
small body comes whole from the memory tier, or from disk checked against its length and CRC-32
(read on the loop up to 64 KiB, in a worker thread above); an entry above `--large-object` is
streamed from its file block by block, each block checked before it is sent
(`responses.stream_entry`). A body that fails a check drops its entry (`cdn_edge_cache_corrupt_total`)
and the caller treats the request as a miss, unless bytes were already sent (the client is aborted).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from edge import responses
from edge.bodyfile import scan_blocks
from edge.entry import Entry
from edge.errors import CorruptBodyError, RangeNotSatisfiable, StoreError
from edge.http import HttpConnection, Request
from edge.metrics import CacheStatus

if TYPE_CHECKING:
    from edge.server import EdgeServer

__all__ = ["EntryResponder"]

log = logging.getLogger("edge.server")

_INLINE_READ = 64 * 1024  # disk bodies up to this size are read on the loop; larger in a thread


class EntryResponder:
    """Serves stored entries for one edge server (its store, clock, metrics and `--large-object`)."""

    def __init__(self, server: EdgeServer) -> None:
        self.server = server
        self.store = server.store
        self.large_object = server.config.large_object

    def large(self, entry: Entry) -> bool:
        """Is this entry streamed from disk block by block rather than read whole?"""
        return entry.size > self.large_object

    async def serve(self, conn: HttpConnection, req: Request, entry: Entry, status: CacheStatus) -> bool:
        """Answer from a stored entry (small: whole from memory or disk; large: streamed); False if corrupt."""
        if self.large(entry):
            return await self.stream(conn, req, entry, status)
        body = await self.body(entry)
        if body is None:
            return False
        self.answer(conn, req, entry, body, status)
        return True

    def answer(
        self,
        conn: HttpConnection,
        req: Request,
        entry: Entry,
        body: bytes,
        status: CacheStatus,
        now: float | None = None,
    ) -> None:
        """Answer from an entry whose whole body is at hand (200/206/304/416) and count it."""
        server = self.server
        try:
            now = server.clock() if now is None else now
            sent = responses.serve_entry(server, conn, req, entry, body, status, now)
        except RangeNotSatisfiable as exc:
            responses.send_416(server, conn, req, entry.size, status, str(exc))
            sent = 0
        server.metrics.served(status, sent, time.perf_counter() - req.started)

    async def stream(self, conn: HttpConnection, req: Request, entry: Entry, status: CacheStatus) -> bool:
        """Serve a large entry from its body file; False (entry dropped: a miss) when its first block fails.

        A block failing later aborts the client (`responses.stream_entry`) and drops the entry too.
        """
        if entry.blocks is None and not await self._add_blocks(entry):
            return False
        server = self.server
        path = self.store.paths(entry)[0]
        try:
            sent = await responses.stream_entry(server, conn, req, entry, status, server.clock(), path)
        except RangeNotSatisfiable as exc:
            responses.send_416(server, conn, req, entry.size, status, str(exc))
            sent = 0
        except CorruptBodyError as exc:
            self._corrupt(entry, f"block {exc.block} failed its check mid-response; client aborted")
            return True
        if sent is None:
            self._corrupt(entry, "failed its block check; refetching")
            return False
        server.metrics.served(status, sent, 0.0 if conn.closed else time.perf_counter() - req.started)
        return True

    async def _add_blocks(self, entry: Entry) -> bool:
        """Give a large entry stored without block checksums (meta v1/v2) its blocks; False if corrupt.

        One pass over the file in a worker thread, checking the whole CRC-32 as before; the meta is
        then rewritten as v3 so that the next hit streams at once.
        """
        loop = asyncio.get_running_loop()
        sums = await loop.run_in_executor(None, scan_blocks, self.store.paths(entry)[0])
        if sums is None or sums.size != entry.size or sums.crc != entry.checksum:
            self._corrupt(entry, "failed its length/checksum check; refetching")
            return False
        entry.blocks = sums.blocks()
        if self.store.holds(entry):
            try:
                await loop.run_in_executor(None, self.store.write_meta, entry)
            except StoreError as exc:
                log.warning("could not add block checksums to the meta of %s: %s", entry.key, exc)
        return True

    def _corrupt(self, entry: Entry, why: str) -> None:
        """Drop an entry whose body failed a check, unless it was already replaced, evicted or purged."""
        if not self.store.holds(entry):
            return  # gone meanwhile (and maybe its file with it): not corruption
        log.warning("cached body of %s %s", entry.key, why)
        self.store.corrupt_entry(entry)

    async def body(self, entry: Entry) -> bytes | None:
        """The entry's body from memory or verified from disk; None (and the entry dropped) if corrupt."""
        body = self.store.memory_body(entry.slot)
        if body is not None:
            return body
        if entry.size <= _INLINE_READ:
            body = self.store.read_verified(entry)
        else:
            body = await asyncio.get_running_loop().run_in_executor(None, self.store.read_verified, entry)
        if body is None:
            if not self.store.holds(entry):
                return None  # evicted or purged while we read: gone, not corrupt
            log.warning("cached body of %s failed its length/checksum check; refetching", entry.key)
            self.store.corrupt_entry(entry)
            return None
        self.store.remember(entry, body)
        return body
