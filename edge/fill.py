"""Single-flight fills: one upstream fetch per object, any number of clients streaming it as it grows.

A `Fill` is the one upstream exchange for a cache key. Its first outcome (`Fill.head`) is a
`FillOutcome`: STREAM (status and headers are in; the body grows in `chunks`), NOT_MODIFIED (a
conditional GET refreshed the stale entry), or FAILED (no usable response). Readers iterate
`Fill.read(start, end)`, which yields chunks already received and then waits on an `asyncio.Event`
for the next ones: no polling and no lock timeout. A body above `--large-object` (by its
Content-Length, or once that many bytes arrived) goes to a spool file instead (`edge.spool`):
readers then read it back from the file, and the commit renames the file (never the memory
tier). The fill runs in its own task, so it finishes and commits even if every client has left;
if the upstream breaks mid-body, every reader gets the UpstreamError (the server then aborts
their connections) and nothing is stored (a spool file is deleted).
A fill sends upstream the forwarded headers of the request that started it (`Fill.request`); once
its head is in, `Fill.serves` tells whether another request may share it (RFC 9111 §4.1: the same
values of the headers its Vary names), and a finished fill is stored with those values.
`Filler.probe` is the exception to "one exchange fills": a HEAD upstream for a client's HEAD miss,
answered as a `Probe` and never stored. Concurrent HEADs for a key share the one probe in flight
(in its own task, like a fill; `Probe.serves` checks its Vary like `Fill.serves`); a finished
probe is forgotten, so a later HEAD asks again.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import AsyncGenerator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from edge.cachecontrol import Freshness, format_http_date, freshness_of, initial_age
from edge.errors import StoreError, UpstreamBrokenError, UpstreamError
from edge.spool import Spool, Spooler
from edge.store import Entry, Store, checksum
from edge.upstream import UpstreamChain, UpstreamResponse
from edge.vary import Forwarded, Selection, same_variant, select, vary_names

__all__ = ["Fill", "FillOutcome", "Filler", "FillStats", "Probe", "stored_headers"]

log = logging.getLogger("edge.fill")

T = TypeVar("T")

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


def _content_length(value: str | None) -> int | None:
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
        self.length = _content_length(length)
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
            spool = self._spooler.open(self.key)
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


@dataclass(slots=True)
class FillStats:
    """Counters kept by the filler."""

    fetches: int = 0
    not_modified: int = 0
    failures: int = 0
    aborted: int = 0
    committed: int = 0
    probes: int = 0  # HEADs sent upstream
    probe_waiters: int = 0  # client HEADs that joined a probe already in flight


class Filler:
    """Starts fills, keeps at most one per key, and commits finished ones to the store."""

    def __init__(
        self,
        upstream: UpstreamChain,
        store: Store,
        *,
        clock: Callable[[], float],
        negative_ttl: float,
        spooler: Spooler | None = None,
    ) -> None:
        self.upstream = upstream
        self.store = store
        self.clock = clock
        self.negative_ttl = negative_ttl
        self.spooler = spooler  # None: every body in memory until it commits
        self.fills: dict[str, Fill] = {}
        self.probes: dict[str, asyncio.Task[Probe]] = {}
        self.stats = FillStats()
        self._tasks: set[asyncio.Task[Any]] = set()

    def get_or_start(
        self, key: str, stale: Entry | None = None, *, request: Forwarded = ()
    ) -> tuple[Fill, bool]:
        """The fill in flight for `key`, or a new one for `request` (second value True when we started it).

        A fill in flight may turn out to be another variant: the caller checks `Fill.serves` once
        its head is in.
        """
        fill = self.fills.get(key)
        if fill is not None:
            return fill, False
        fill = self.start_private(key, stale, request=request)
        self.fills[key] = fill
        return fill, True

    def start_private(self, key: str, stale: Entry | None = None, *, request: Forwarded = ()) -> Fill:
        """Start a fill that is not shared (when a shared one turned out private or another variant)."""
        fill = Fill(key, stale, self.clock(), request, spooler=self.spooler)
        self._spawn(self._run(fill))
        return fill

    def _spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run `coro` in a task of its own, which `close` waits for (then cancels)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def probe(self, key: str, request: Forwarded = (), *, shared: bool = True) -> Probe:
        """HEAD `key` upstream for a client's HEAD miss, or join the HEAD in flight for it.

        Players learn chunk sizes with HEAD across every representation; filling on HEAD would
        fetch and cache renditions nobody watches, and N players probing the same chunk at once
        must not send N HEADs upstream. The HEAD carries the forwarded headers `request` of the
        caller that starts it; a joiner checks `Probe.serves` and, for another variant, asks
        again with `shared=False` (a HEAD of its own). The probe runs in its own task: a caller
        leaving does not cancel it for the others. Nothing is stored. Raise UpstreamError (every
        caller gets the same one), also when the edge shuts down before the answer is in.
        """
        task = self._probe_in_flight(key, request) if shared else self._spawn(self._probe(key, request))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if task.cancelled() and (current is None or not current.cancelling()):
                # `close` cancelled the shared probe, not this caller: an upstream failure to it
                raise UpstreamBrokenError(f"the edge is shutting down; {key} was not probed") from None
            raise

    def _probe_in_flight(self, key: str, request: Forwarded) -> asyncio.Task[Probe]:
        """The probe in flight for `key` (this caller counted as a waiter), or a new one for `request`."""
        task = self.probes.get(key)
        if task is None or task.done():  # done while still listed: cancelled by `close` before it ran
            task = self.probes[key] = self._spawn(self._probe(key, request))
        else:
            self.stats.probe_waiters += 1
        return task

    async def _probe(self, key: str, request: Forwarded) -> Probe:
        """The one HEAD upstream behind `probe`; forgotten before its answer is handed out."""
        request_time = self.clock()
        self.stats.probes += 1
        try:
            # the request a cold fill sends (no stale entry, so no validators), as HEAD
            resp = await self.upstream.start(key, [*_conditional_headers(None), *request], method="HEAD")
            response_time = self.clock()
            await resp.finished()
        except UpstreamError:
            self.stats.failures += 1
            raise
        finally:
            # a HEAD arriving after this answer must ask again (only concurrent ones share it)
            if self.probes.get(key) is asyncio.current_task():
                del self.probes[key]
        headers = stored_headers(resp.header_list)
        if "date" not in resp.headers:
            headers.append(("Date", format_http_date(response_time)))
        return Probe(
            status=resp.status,
            headers=tuple(headers),
            length=_content_length(resp.headers.get("content-length")),
            age=initial_age(resp.headers, request_time=request_time, response_time=response_time),
            request=request,
        )

    def purge(self, match: Callable[[str], bool]) -> None:
        """Mark in-flight fills whose key matches so that they are not committed.

        Probes in flight are left to finish: they store nothing and are forgotten once answered.
        """
        for key, fill in self.fills.items():
            if match(key):
                fill.purged = True

    async def close(self, grace: float = 2.0) -> None:
        """Let running fills and probes finish for up to `grace` seconds, then cancel the rest."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=grace)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _run(self, fill: Fill) -> None:
        try:
            await self._exchange(fill)
        except UpstreamError as exc:
            self.stats.failures += 1
            fill.fail(exc)
        except asyncio.CancelledError:
            fill.fail(UpstreamBrokenError(f"the edge is shutting down; {fill.key} was not fetched"))
            raise
        except Exception as exc:  # never leave readers hanging on an unexpected bug
            log.exception("fill of %s failed", fill.key)
            fill.fail(UpstreamBrokenError(f"internal error filling {fill.key}: {exc!r}"))
        finally:
            if self.fills.get(fill.key) is fill:
                del self.fills[fill.key]
            fill.release()

    async def _exchange(self, fill: Fill) -> None:
        request_time = self.clock()
        self.stats.fetches += 1
        resp = await self.upstream.start(fill.key, [*_conditional_headers(fill.stale), *fill.request])
        response_time = self.clock()
        if fill.stale is not None and resp.status == 304:
            await resp.finished()
            self._refresh(fill.stale, fill.request, resp, request_time, response_time)
            self.stats.not_modified += 1
            fill._resolve(FillOutcome.NOT_MODIFIED)
            return
        if fill.stale is not None and resp.status >= 500:
            resp.close()
            raise UpstreamBrokenError(f"upstream answered {resp.status} for {fill.key}")
        dated = _with_date(resp.headers, response_time)
        freshness = freshness_of(resp.status, dated, negative_ttl=self.negative_ttl)
        headers = stored_headers(resp.header_list)
        if "date" not in resp.headers:
            headers.append(("Date", dated["date"]))
        fill.begin(resp.status, headers, freshness, resp.headers.get("content-length"))
        age = initial_age(resp.headers, request_time=request_time, response_time=response_time)
        fill.stored_at = response_time - age
        fill.stop_upstream = resp.close
        resp.stream(fill.feed)
        try:
            await resp.finished()
        except UpstreamError:
            self.stats.aborted += 1
            raise
        finally:
            fill.stop_upstream = None  # the connection goes back to the pool: never close it from here
        if fill.error is not None:
            raise fill.error  # the spool file could not be written: what arrived is not the whole body
        fill.finish()
        selection = fill.selection
        if freshness is not None and selection is not None and not fill.purged:
            await self._commit(fill, freshness, selection)

    def _refresh(
        self,
        entry: Entry,
        request: Forwarded,
        resp: UpstreamResponse,
        request_time: float,
        response_time: float,
    ) -> None:
        """Apply a 304's headers to the stored entry (RFC 9111 §4.3.4) and restart its age."""
        fresh = dict(stored_headers(resp.header_list))
        lower = {k.lower() for k in fresh}
        entry.headers = [(k, v) for k, v in entry.headers if k.lower() not in lower] + list(fresh.items())
        names = vary_names(entry.headers)
        if names is None:  # the 304 says `Vary: *`: the entry can never be reused (RFC 9111 §4.1)
            if self.store.peek(entry.key) is entry:
                self.store.remove(entry.key)
            return
        entry.vary = select(names, request)  # `request` matched the old values; the names may have changed
        merged = _with_date({k.lower(): v for k, v in entry.headers} | resp.headers, response_time)
        entry.freshness = (
            freshness_of(entry.status, merged, negative_ttl=self.negative_ttl) or entry.freshness
        )
        entry.stored_at = response_time - initial_age(
            resp.headers, request_time=request_time, response_time=response_time
        )
        entry.rendered.clear()
        if self.store.peek(entry.key) is not entry:
            return  # purged, evicted or replaced meanwhile: its files are gone, write no orphan meta
        try:
            self.store.write_meta(entry)
        except StoreError as exc:
            log.warning("could not persist the refreshed entry %s: %s", entry.key, exc)

    async def _commit(self, fill: Fill, freshness: Freshness, selection: Selection) -> None:
        if fill.spool is not None:
            await self._commit_spool(fill, fill.spool, freshness, selection)
            return
        body = fill.body()
        if len(body) > self.store.capacity or (fill.length is not None and len(body) != fill.length):
            return
        entry = Entry(
            key=fill.key,
            status=fill.status,
            headers=fill.headers,
            size=len(body),
            checksum=checksum(body),
            stored_at=fill.stored_at,
            freshness=freshness,
            vary=selection,
        )
        in_memory = len(body) <= self.store.memory_capacity
        if in_memory:
            # Visible at once from the memory tier; the disk copy follows in a worker thread.
            self.store.admit(entry, body)
            if self.fills.get(fill.key) is fill:
                del self.fills[fill.key]
        try:
            await asyncio.get_running_loop().run_in_executor(None, self.store.write_files, entry, body)
        except StoreError as exc:
            log.warning("not caching %s on disk: %s", fill.key, exc)
            if self.store.peek(entry.key) is entry:
                self.store.remove(entry.key, files=False)
            return
        if fill.purged or (in_memory and self.store.peek(entry.key) is not entry):
            if self.store.peek(entry.key) is None:
                self.store.delete_files(entry)  # purged or evicted while the files were written
            return
        if not in_memory:
            self.store.admit(entry, body)
        self.stats.committed += 1

    async def _commit_spool(
        self, fill: Fill, spool: Spool, freshness: Freshness, selection: Selection
    ) -> None:
        """Store a spooled body: rename its file into place (no second copy), then write the meta.

        Never admitted to the memory tier. A body over the capacity or of the wrong length is not
        stored (`_run` then deletes the spool file).
        """
        size = spool.size
        if size > self.store.capacity or (fill.length is not None and size != fill.length):
            return
        entry = Entry(
            key=fill.key,
            status=fill.status,
            headers=fill.headers,
            size=size,
            checksum=spool.sums.crc,
            stored_at=fill.stored_at,
            freshness=freshness,
            vary=selection,
            blocks=spool.sums.blocks(),
        )
        # The rename replaces the body file of an entry already stored under this key: unlist that
        # entry first, so no disk hit opens the new body with the old checksums. Meanwhile requests
        # join this fill (still listed, done), which reads from the spool's open descriptor.
        self.store.remove(fill.key, files=False)
        try:
            await asyncio.get_running_loop().run_in_executor(None, self.store.commit_spool, entry, spool.path)
        except StoreError as exc:
            log.warning("not caching %s on disk: %s", fill.key, exc)
            return
        spool.committed()
        if fill.purged:
            if self.store.peek(entry.key) is None:
                self.store.delete_files(entry)  # purged while the files were written
            return
        self.store.admit(entry)
        self.stats.committed += 1


def _with_date(headers: dict[str, str], response_time: float) -> dict[str, str]:
    """The headers with a Date: the time received if the upstream sent none (RFC 9110 §6.6.1).

    Expires and the heuristic are measured from Date; without one they would count from nothing.
    """
    if "date" in headers:
        return headers
    return {**headers, "date": format_http_date(response_time)}


def _conditional_headers(stale: Entry | None) -> list[tuple[str, str]]:
    """If-None-Match / If-Modified-Since for revalidating a stale entry."""
    if stale is None or stale.status != 200:
        return []
    headers = []
    etag = stale.header("etag")
    if etag:
        headers.append(("If-None-Match", etag))
    modified = stale.header("last-modified")
    if modified:
        headers.append(("If-Modified-Since", modified))
    return headers
