"""Spool files: where a fill of a large object keeps its body while it arrives, instead of memory.

Goals: a fill above `--large-object` holds no body chunk in memory once written; every reader of
the fill (the MISS, COALESCED joiners, late joiners, Range requests) reads the bytes back from the
file; committing it is a rename to the body path, never a second copy.

Plan: `Spooler.open(fid)` creates `<fid>.body.<pid>.<n>.tmp` in the directory of the final body
(same filesystem, so the commit is an atomic rename; `Store.open` removes `*.tmp` leftovers after a
crash). `Spool.write` appends each upstream chunk and feeds `BlockSums`, so the whole CRC-32 and
the per-block ones are ready at the end; `Spool.read` is a `pread` at any offset.

Caveats, and why the writes and reads run on the event-loop thread: the bytes just written sit in
the page cache, so a `write` of one upstream chunk or a `pread` of at most 256 KiB costs tens of
microseconds, less than the thread hop that would move it (nginx, too, writes its proxy temp files
with a blocking `write` in its event loop unless `aio threads` is on). A worker thread would also
need a queue bounded by back-pressure on the upstream socket to keep memory bounded. The price: a
disk under heavy writeback throttling can stall the loop for milliseconds; a cache dir on a slow
network filesystem is not a supported set-up. The descriptor lives as long as the `Spool` object
(`weakref.finalize`): a reader that still holds the fill can read everything written, even after the
file was renamed (committed) or unlinked (not stored); a failed fill closes it at once, and its
readers check the failure before every read.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import weakref
from collections.abc import Callable
from pathlib import Path

from edge.blocks import BLOCK_SIZE, BlockSums

__all__ = ["Spool", "Spooler"]


class Spool:
    """One large body on its way to disk: appended on the loop thread, readable at any offset."""

    def __init__(self, path: Path, on_settled: Callable[[], None], block_size: int = BLOCK_SIZE) -> None:
        self.path = path
        self.sums = BlockSums(block_size)
        self.settled = False  # renamed into place (committed) or unlinked (discarded)
        self._on_settled = on_settled
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        self._closer = weakref.finalize(self, os.close, self._fd)

    @property
    def size(self) -> int:
        """Bytes written so far."""
        return self.sums.size

    def write(self, data: bytes) -> None:
        """Append `data` (all of it) and update the checksums; raise OSError (e.g. ENOSPC)."""
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        self.sums.feed(data)

    def read(self, offset: int, length: int) -> bytes:
        """Up to `length` bytes from `offset`; only bytes already written are meant to be read."""
        return os.pread(self._fd, length, offset)

    def committed(self) -> None:
        """The file was renamed to its body path (`Store.commit_spool`): it is no longer ours to delete."""
        self._settle()

    def discard(self) -> None:
        """Unlink the file unless it was committed; readers holding the spool can still read it."""
        if not self.settled:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        self._settle()

    def close(self) -> None:
        """Close the descriptor now (a failed fill: no reader reads again)."""
        self._closer()

    def _settle(self) -> None:
        if not self.settled:
            self.settled = True
            self._on_settled()


class Spooler:
    """Opens the spool files of large fills and counts them (`/metrics`)."""

    def __init__(
        self, threshold: int, body_path: Callable[[str], Path], *, block_size: int = BLOCK_SIZE
    ) -> None:
        self.threshold = threshold  # bodies of more bytes than this are spooled
        self.block_size = block_size
        self._body_path = body_path
        self._serial = itertools.count()
        self.active = 0  # spool files neither committed nor discarded yet
        self.total = 0  # fills that spooled

    def open(self, fid: str) -> Spool:
        """A new spool file beside the body path of the files named `fid` (edge.entry); raise OSError."""
        body = self._body_path(fid)
        body.parent.mkdir(exist_ok=True)
        path = body.with_name(f"{body.name}.{os.getpid()}.{next(self._serial)}.tmp")
        spool = Spool(path, self._settled, self.block_size)
        self.active += 1
        self.total += 1
        return spool

    def _settled(self) -> None:
        self.active -= 1
