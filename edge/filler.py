"""The filler: runs fills and probes, several per key (one per variant), and has finished fills stored.

`Filler.start` starts a fill in its own task, so it finishes and commits even if every client has
left. The fills in flight are listed per key: a request joins one that serves it (RFC 9111 §4.1:
the variant its Vary and the request's headers select), which is known only once the fill's head
is in, so `Filler.candidate` offers a fill known to serve it first, then fills still waiting for
their heads; a request none of them serves starts its own, which later requests of its variant
join. `Filler.probe` is the exception to "one exchange fills": a HEAD upstream for a client's HEAD
miss, answered as a `Probe` and never stored; concurrent HEADs share a probe in flight the same
way. A finished probe is forgotten, so a later HEAD asks again. Storing is `edge.commit`'s.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from edge.cachecontrol import format_http_date, freshness_of, initial_age
from edge.commit import Committer, with_date
from edge.entry import Entry
from edge.errors import UpstreamBrokenError, UpstreamError
from edge.fill import Fill, FillOutcome, Probe, content_length, stored_headers
from edge.spool import Spooler
from edge.store import Store
from edge.upstream import UpstreamChain
from edge.vary import Forwarded

__all__ = ["FillStats", "Filler"]

log = logging.getLogger("edge.filler")

T = TypeVar("T")


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
    """Starts fills and probes, lists those in flight per key, and commits finished fills to the store."""

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
        self.committer = Committer(store, negative_ttl=negative_ttl)
        self.fills: dict[str, list[Fill]] = {}  # key -> fills in flight, oldest first
        self.probes: dict[str, list[tuple[Forwarded, asyncio.Task[Probe]]]] = {}  # key -> (request, probe)
        self.stats = FillStats()
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def inflight(self) -> int:
        """Fills in flight, all keys and variants."""
        return sum(len(fills) for fills in self.fills.values())

    # -- fills ---------------------------------------------------------------------------------

    def candidate(self, key: str, request: Forwarded, tried: set[Fill]) -> Fill | None:
        """A fill in flight for `key` not in `tried` that serves `request` or may; None: start one.

        First a fill whose head is in and that serves it, then one still waiting for its head
        that the same forwarded headers started (it serves them unless it turns out private),
        then any other one still waiting: whether it varies on a header whose value differs is
        known only with its head. The caller checks `Fill.serves` once the head is in.
        """
        waiting: Fill | None = None
        for fill in self.fills.get(key, ()):
            if fill in tried:
                continue
            if fill.head.done():
                if fill.head.result() is FillOutcome.STREAM and fill.serves(request):
                    return fill
            elif fill.request == request:
                return fill
            elif waiting is None:
                waiting = fill
        return waiting

    def start(self, key: str, stale: Entry | None = None, request: Forwarded = ()) -> Fill:
        """Start and list a fill of `key` for `request` (a conditional GET revalidating `stale`, if given)."""
        fill = Fill(key, stale, self.clock(), request, spooler=self.spooler)
        self.fills.setdefault(key, []).append(fill)
        self._spawn(self._run(fill))
        return fill

    def revalidate(self, stale: Entry, request: Forwarded) -> None:
        """Revalidate `stale` in the background (stale-while-revalidate), unless a fill in flight may serve it.

        A fill still waiting for its head counts: one upstream exchange per key at a time is the
        cheap side of the doubt, and the next request in the window asks again.
        """
        for fill in self.fills.get(stale.key, ()):
            if not fill.head.done() or fill.serves(request):
                return
        self.start(stale.key, stale, request)

    def _unlist(self, fill: Fill) -> None:
        """Take `fill` off its key's list: requests arriving from now on do not join it."""
        fills = self.fills.get(fill.key)
        if fills is not None and fill in fills:
            fills.remove(fill)
            if not fills:
                del self.fills[fill.key]

    def _spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run `coro` in a task of its own, which `close` waits for (then cancels)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- probes --------------------------------------------------------------------------------

    async def probe(self, key: str, request: Forwarded = ()) -> Probe:
        """HEAD `key` upstream for a client's HEAD miss, or join a HEAD in flight that answers it.

        Players learn chunk sizes with HEAD across every representation; filling on HEAD would
        fetch and cache renditions nobody watches, and N players probing the same chunk at once
        must not send N HEADs upstream. A HEAD carries the forwarded headers `request` of the
        caller that starts it; a joiner checks `Probe.serves` and, when the answer is another
        variant, joins another probe in flight or starts its own. A probe runs in its own task:
        a caller leaving does not cancel it for the others. Nothing is stored. Raise UpstreamError
        (every caller of the probe gets the same one), also when the edge shuts down first.
        """
        tried: set[asyncio.Task[Probe]] = set()
        while (task := self._probe_candidate(key, request, tried)) is not None:
            if not tried:
                self.stats.probe_waiters += 1
            tried.add(task)
            probe = await self._answer(task, key)
            if probe.serves(request):
                return probe
        return await self._answer(self._start_probe(key, request), key)

    def _probe_candidate(
        self, key: str, request: Forwarded, tried: set[asyncio.Task[Probe]]
    ) -> asyncio.Task[Probe] | None:
        """A probe in flight for `key` not in `tried`: one the same headers started first; None: start one."""
        waiting = None
        for started, task in self.probes.get(key, ()):
            if task in tried or task.done():  # done while listed: cancelled by `close` before it ran
                continue
            if started == request:
                return task
            if waiting is None:
                waiting = task
        return waiting

    def _start_probe(self, key: str, request: Forwarded) -> asyncio.Task[Probe]:
        task = self._spawn(self._probe(key, request))
        listed = [(r, t) for r, t in self.probes.get(key, ()) if not t.done()]
        self.probes[key] = [*listed, (request, task)]
        return task

    @staticmethod
    async def _answer(task: asyncio.Task[Probe], key: str) -> Probe:
        """The probe's answer; its task is shielded from this caller leaving."""
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if task.cancelled() and (current is None or not current.cancelling()):
                # `close` cancelled the shared probe, not this caller: an upstream failure to it
                raise UpstreamBrokenError(f"the edge is shutting down; {key} was not probed") from None
            raise

    async def _probe(self, key: str, request: Forwarded) -> Probe:
        """One HEAD upstream behind `probe`; forgotten before its answer is handed out."""
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
            self._unlist_probe(key, asyncio.current_task())
        headers = stored_headers(resp.header_list)
        if "date" not in resp.headers:
            headers.append(("Date", format_http_date(response_time)))
        return Probe(
            status=resp.status,
            headers=tuple(headers),
            length=content_length(resp.headers.get("content-length")),
            age=initial_age(resp.headers, request_time=request_time, response_time=response_time),
            request=request,
        )

    def _unlist_probe(self, key: str, task: asyncio.Task[Any] | None) -> None:
        listed = [(r, t) for r, t in self.probes.get(key, ()) if t is not task]
        if listed:
            self.probes[key] = listed
        else:
            self.probes.pop(key, None)

    # -- life cycle ----------------------------------------------------------------------------

    def purge(self, match: Callable[[str], bool]) -> None:
        """Mark in-flight fills whose key matches so that they are not committed.

        Probes in flight are left to finish: they store nothing and are forgotten once answered.
        """
        for key, fills in self.fills.items():
            if match(key):
                for fill in fills:
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
            self._unlist(fill)
            fill.release()

    async def _exchange(self, fill: Fill) -> None:
        request_time = self.clock()
        self.stats.fetches += 1
        resp = await self.upstream.start(fill.key, [*_conditional_headers(fill.stale), *fill.request])
        response_time = self.clock()
        if fill.stale is not None and resp.status == 304:
            await resp.finished()
            self.committer.refresh(fill.stale, fill.request, resp, request_time, response_time)
            self.stats.not_modified += 1
            fill._resolve(FillOutcome.NOT_MODIFIED)
            return
        if fill.stale is not None and resp.status >= 500:
            resp.close()
            raise UpstreamBrokenError(f"upstream answered {resp.status} for {fill.key}")
        dated = with_date(resp.headers, response_time)
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
            if await self.committer.commit(fill, freshness, selection, self._unlist):
                self.stats.committed += 1


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
