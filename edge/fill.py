"""Single-flight fills: one upstream fetch per object, any number of clients streaming it as it grows.

A `Fill` is the one upstream exchange for a cache key. Its first outcome (`Fill.head`) is a
`FillOutcome`: STREAM (status and headers are in; the body grows in `chunks`), NOT_MODIFIED (a
conditional GET refreshed the stale entry), or FAILED (no usable response). Readers iterate
`Fill.read(start, end)`, which yields chunks already received and then waits on an `asyncio.Event`
for the next ones: no polling and no lock timeout. A body above `--large-object` (by its
Content-Length, or once that many bytes arrived) goes to a spool file instead (`edge.spool`):
readers then read it back from the file, and the commit renames the file (never the memory
tier). If the upstream breaks mid-body, every reader gets the UpstreamError (the server then
aborts their connections) and nothing is stored (a spool file is deleted).
A fill sends upstream the forwarded headers of the request that started it (`Fill.request`); once
its head is in, `Fill.serves` tells whether another request may share it (RFC 9111 §4.1: the same
values of the headers its Vary names), and a finished fill is stored with those values.
A `Probe` is the upstream's answer to a HEAD, never stored (`Probe.serves` checks its Vary the same
way). `edge.filler` runs fills and probes and commits finished fills to the store.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass

from edge.cachecontrol import Freshness
from edge.entry import Entry, file_id
from edge.errors import UpstreamBrokenError, UpstreamError
from edge.spool import Spool, Spooler
from edge.vary import Forwarded, Selection, same_variant, select, vary_names

__all__ = ["Fill", "FillOutcome", "Probe", "content_length", "stored_headers"]

log = logging.getLogger("edge.fill")

_SPOOL_READ = 256 * 1024  # a reader's largest read from a spool file (one pread on the loop thread)
_SPOOL_YIELD = 1024 * 1024  # a reader catching up from the file lets the loop run after this many bytes

# Never stored nor forwarded: hop-by-hop (RFC 9110 §7.6.1) and what the edge writes itself.
# Date is kept: a cache serves the stored response's Date (with Age), so that a child edge's
# Expires − Date is the origin's lifetime and not one shortened by the age already spent here.
_DROP = frozenset(
    "connection keep-alive proxy-connection proxy-authenticate te trailer transfer-encoding upgrade "
    "content-length age via x-cache accept-ranges".split()
)


class FillOutcome(enum.Enum):
    """How the upstream exchange turned out, once its head is known."""

    STREAM = "stream"
    NOT_MODIFIED = "not-modified"
    FAILED = "failed"


def stored_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """End-to-end headers worth keeping from an upstream response."""
    return [(k, v) for k, v in headers if k.lower() not in _DROP]


def content_length(value: str | None) -> int | None:
    """A Content-Length value as bytes; None when absent or not a plain number."""
    return int(value) if value is not None and value.strip().isdigit() else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Probe:
    """The upstream's answer to a HEAD: the head a GET would get, without its body."""

    status: int
    headers: tuple[tuple[str, str], ...]  # end-to-end headers, a Date included
    length: int | None  # the Content-Length the upstream announced, if any
    age: float  # seconds: the upstream's Age plus the round trip (RFC 9111 §4.2.3)
    request: Forwarded = ()  # the forwarded headers the HEAD was sent with

    def serves(self, request: Forwarded) -> bool:
        """May a HEAD with these forwarded headers get this answer (the same variant, RFC 9111 §4.1)?"""
        return same_variant(vary_names(self.headers), self.request, request)


class Fill:
    """The one in-flight upstream exchange for a cache key, shared by all its readers."""

    def __init__(
        self,
        key: str,
        stale: Entry | None,
        started: float,
        request: Forwarded = (),
        *,
        spooler: Spooler | None = None,
    ) -> None:
        self.key = key
        self.stale = stale
        self.started = started
        self.request = request  # the forwarded headers of the request that started it, sent upstream
        self.head: asyncio.Future[FillOutcome] = asyncio.get_running_loop().create_future()
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.length: int | None = None
        self.freshness: Freshness | None = None
        self.vary: tuple[str, ...] | None = ()  # the names its Vary lists; None for `Vary: *`
        self.chunks: list[bytes] = []
        self.received = 0
        self.done = False
        self.error: UpstreamError | None = None
        self.purged = False
        self.readers = 0
        self.stored_at = started
        self.spool: Spool | None = None  # the body's file once it is known to be large
        self.stop_upstream: Callable[[], None] | None = None  # set by the filler: drop the upstream
        self._spooler = spooler
        self._event = asyncio.Event()

    @property
    def shareable(self) -> bool:
        """May readers other than the first get this response (not private / no-store)?"""
        return self.freshness is not None or self.status >= 300

    @property
    def selection(self) -> Selection | None:
        """What the entry stored from this fill records (RFC 9111 §4.1); None: not storable (`Vary: *`)."""
        return None if self.vary is None else select(self.vary, self.request)

    @property
    def file_id(self) -> str:
        """The name of the files its entry will have (a spool file goes beside them); known with the head."""
        return file_id(self.key, self.selection or ())

    def serves(self, request: Forwarded) -> bool:
        """May a request with these forwarded headers share this response (known once the head is in)?"""
        return self.shareable and same_variant(self.vary, self.request, request)

    def _resolve(self, outcome: FillOutcome) -> None:
        if not self.head.done():
            self.head.set_result(outcome)

    def begin(
        self, status: int, headers: list[tuple[str, str]], freshness: Freshness | None, length: str | None
    ) -> None:
        """The upstream head is in (`length`: its Content-Length, if any): readers may stream."""
        self.status, self.headers, self.freshness = status, headers, freshness
        self.vary = vary_names(headers)
        self.length = content_length(length)
        if self.length is not None and self._large(self.length):
            self._spill()
        self._resolve(FillOutcome.STREAM)

    def feed(self, chunk: bytes) -> None:
        """A body chunk arrived: keep it (in memory, or appended to the spool file) and wake every reader."""
        if not chunk or self.error is not None:
            return
        if self.spool is None:
            self.chunks.append(chunk)
        else:
            try:
                self.spool.write(chunk)
            except OSError as exc:
                self._spool_failed(exc)
                return
        self.received += len(chunk)
        if self.spool is None and self._large(self.received):
            self._spill()
        self._wake()

    def _large(self, size: int) -> bool:
        return self._spooler is not None and size > self._spooler.threshold

    def _spill(self) -> None:
        """Move the body to a spool file (it is, or will be, above --large-object); memory is the fallback."""
        assert self._spooler is not None
        try:
            spool = self._spooler.open(self.file_id)
        except OSError as exc:
            log.warning("cannot spool %s to disk, keeping it in memory: %s", self.key, exc)
            self._spooler = None
            return
        try:
            for chunk in self.chunks:
                spool.write(chunk)
        except OSError as exc:
            log.warning("cannot spool %s to %s, keeping it in memory: %s", self.key, spool.path, exc)
            spool.discard()
            spool.close()
            self._spooler = None
            return
        self.spool, self.chunks = spool, []

    def _spool_failed(self, exc: OSError) -> None:
        """Writing the spool failed mid-body (disk full): the fill breaks, like an upstream that died."""
        assert self.spool is not None
        log.warning(
            "cannot spool %s to %s: %s; check free space in the cache dir", self.key, self.spool.path, exc
        )
        self.fail(UpstreamBrokenError(f"the edge could not write {self.key} to its cache dir: {exc}"))
        if self.stop_upstream is not None:
            self.stop_upstream()

    def release(self) -> None:
        """The fill is over: delete its spool file unless it was committed (readers may still read it)."""
        if self.spool is not None:
            self.spool.discard()

    def finish(self) -> None:
        """The body is complete."""
        self.done = True
        self._wake()

    def fail(self, exc: UpstreamError) -> None:
        """The exchange failed: before the head (FAILED) or mid-body (readers get `exc`)."""
        self.error = exc
        if self.spool is not None:  # readers check `error` before each read: close the file at once
            self.spool.discard()
            self.spool.close()
        self._resolve(FillOutcome.FAILED)
        self._wake()

    def _wake(self) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()

    def body(self) -> bytes:
        """The whole body (only meaningful once `done`, and only for a fill that did not spool)."""
        return b"".join(self.chunks)

    async def read(self, start: int = 0, end: int | None = None) -> AsyncGenerator[bytes, None]:
        """Yield body bytes `start..end-1` as they arrive; raise the UpstreamError on a broken fill.

        `pos` is the next byte to yield. In memory, `index`/`offset` walk `chunks`; once the fill
        spools (possibly while this reader is suspended), the rest comes from the file from `pos`.
        """
        pos, index, offset, unpaused = start, 0, 0, 0
        while end is None or pos < end:
            if self.spool is not None and self.error is None and pos < self.received:
                stop = self.received if end is None else min(end, self.received)
                piece = self.spool.read(pos, min(stop - pos, _SPOOL_READ))
                if not piece:
                    raise UpstreamBrokenError(f"the spool file of {self.key} lost its bytes after {pos}")
                pos, unpaused = pos + len(piece), unpaused + len(piece)
                yield piece
                if unpaused >= _SPOOL_YIELD:  # a late joiner reading the file: let other work run
                    unpaused = 0
                    await asyncio.sleep(0)
            elif self.spool is None and index < len(self.chunks):
                chunk = self.chunks[index]
                lo = offset
                index, offset = index + 1, offset + len(chunk)
                if offset <= pos:
                    continue
                whole = lo == pos and (end is None or offset <= end)
                piece = chunk if whole else chunk[pos - lo : None if end is None else end - lo]
                pos += len(piece)
                yield piece
            elif self.error is not None:
                raise self.error
            elif self.done:
                return
            else:
                unpaused = 0
                await self._event.wait()

    async def wait_done(self) -> None:
        """Wait until the body is complete; raise the UpstreamError if it broke."""
        while not self.done:
            if self.error is not None:
                raise self.error
            await self._event.wait()
