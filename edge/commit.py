"""Storing what fills bring: finished bodies become entries, 304s refresh the entry they revalidated.

`Committer.commit` turns a finished, storable fill into an `Entry` of the variant it was fetched
for (its selection, RFC 9111 §4.1) and admits it: a small body to the memory tier at once, its
files then written in a worker thread; a spooled (large) body by renaming the spool file into
place, never through memory. `Committer.refresh` applies a 304's headers to the one entry the
conditional GET revalidated (RFC 9111 §4.3.4), files it under a new selection if the 304 changed
its Vary, or drops it for `Vary: *`. An entry purged, evicted or replaced while its files were
being written leaves no files behind.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from edge.cachecontrol import Freshness, format_http_date, freshness_of, initial_age
from edge.entry import Entry, checksum
from edge.errors import StoreError
from edge.fill import Fill, stored_headers
from edge.spool import Spool
from edge.store import Store
from edge.upstream import UpstreamResponse
from edge.vary import Forwarded, Selection, select, vary_names

__all__ = ["Committer", "with_date"]

log = logging.getLogger("edge.filler")


def with_date(headers: dict[str, str], response_time: float) -> dict[str, str]:
    """The headers with a Date: the time received if the upstream sent none (RFC 9110 §6.6.1).

    Expires and the heuristic are measured from Date; without one they would count from nothing.
    """
    if "date" in headers:
        return headers
    return {**headers, "date": format_http_date(response_time)}


class Committer:
    """Commits fills and 304 refreshes to one store."""

    def __init__(self, store: Store, *, negative_ttl: float) -> None:
        self.store = store
        self.negative_ttl = negative_ttl

    def refresh(
        self,
        entry: Entry,
        request: Forwarded,
        resp: UpstreamResponse,
        request_time: float,
        response_time: float,
    ) -> None:
        """Apply a 304's headers to the revalidated entry (RFC 9111 §4.3.4) and restart its age.

        Only this variant is refreshed: `request` (which matched its selection) sent the conditional GET.
        """
        fresh = dict(stored_headers(resp.header_list))
        lower = {k.lower() for k in fresh}
        entry.headers = [(k, v) for k, v in entry.headers if k.lower() not in lower] + list(fresh.items())
        names = vary_names(entry.headers)
        if names is None:  # the 304 says `Vary: *`: the entry can never be reused (RFC 9111 §4.1)
            self.store.drop(entry)
            return
        selection = select(names, request)  # `request` matched the old values; the names may have changed
        if selection != entry.vary:
            self.store.revary(entry, selection)
        merged = with_date({k.lower(): v for k, v in entry.headers} | resp.headers, response_time)
        entry.freshness = (
            freshness_of(entry.status, merged, negative_ttl=self.negative_ttl) or entry.freshness
        )
        entry.stored_at = response_time - initial_age(
            resp.headers, request_time=request_time, response_time=response_time
        )
        entry.rendered.clear()
        if not self.store.holds(entry):
            return  # purged, evicted or replaced meanwhile: its files are gone, write no orphan meta
        try:
            self.store.write_meta(entry)
        except StoreError as exc:
            log.warning("could not persist the refreshed entry %s: %s", entry.key, exc)

    async def commit(
        self, fill: Fill, freshness: Freshness, selection: Selection, unlist: Callable[[Fill], None]
    ) -> bool:
        """Store a finished fill as the variant `selection`; True when it was stored.

        `unlist` takes the fill off the filler's list once its entry answers requests instead.
        """
        if fill.spool is not None:
            return await self._commit_spool(fill, fill.spool, freshness, selection)
        body = fill.body()
        if len(body) > self.store.capacity or (fill.length is not None and len(body) != fill.length):
            return False
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
            unlist(fill)
        try:
            await asyncio.get_running_loop().run_in_executor(None, self.store.write_files, entry, body)
        except StoreError as exc:
            log.warning("not caching %s on disk: %s", fill.key, exc)
            self.store.drop(entry, files=False)
            return False
        if fill.purged or (in_memory and not self.store.holds(entry)):
            self._orphaned(entry)
            return False
        if not in_memory:
            self.store.admit(entry, body)
        return True

    def _orphaned(self, entry: Entry) -> None:
        """The entry went (purged or evicted) while its files were written: delete them, unless reused."""
        if not self.store.holds(entry) and not self.store.files_in_use(entry):
            self.store.delete_files(entry)

    async def _commit_spool(
        self, fill: Fill, spool: Spool, freshness: Freshness, selection: Selection
    ) -> bool:
        """Store a spooled body: rename its file into place (no second copy), then write the meta.

        Never admitted to the memory tier. A body over the capacity or of the wrong length is not
        stored (the filler then deletes the spool file).
        """
        size = spool.size
        if size > self.store.capacity or (fill.length is not None and size != fill.length):
            return False
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
            fid=fill.file_id,  # the spool file sits beside these files
        )
        # The rename replaces the body file of an entry already stored in this variant's files:
        # unlist that entry first, so no disk hit opens the new body with the old checksums.
        # Meanwhile requests join this fill (still listed, done), which reads from the spool's
        # open descriptor.
        self.store.vacate(entry)
        try:
            await asyncio.get_running_loop().run_in_executor(None, self.store.commit_spool, entry, spool.path)
        except StoreError as exc:
            log.warning("not caching %s on disk: %s", fill.key, exc)
            return False
        spool.committed()
        if fill.purged:
            self._orphaned(entry)  # purged while the files were written
            return False
        self.store.admit(entry)
        return True
