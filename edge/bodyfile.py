"""Large bodies read back from disk block by block for a disk hit: never the whole body in memory.

`BlockFile` (blocking: worker threads only) reads one block with `pread` and checks it against its
CRC-32 from the meta (`edge.blocks`). `BlockReader` (event-loop side) delivers the verified bytes of
one byte range: one `run_in_executor` hop per block, the next block read ahead while the current
one is being sent, so a response holds at most two blocks. The file is opened once per response:
an entry evicted or purged mid-response keeps streaming from its unlinked inode.
`scan_blocks` computes the block checksums of a body stored before they existed (meta v1/v2).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import weakref
import zlib
from pathlib import Path

from edge.blocks import BLOCK_SIZE, Blocks, BlockSums
from edge.errors import CorruptBodyError

__all__ = ["BlockFile", "BlockReader", "scan_blocks"]

_SCAN_READ = 1024 * 1024


class BlockFile:
    """A large body file opened for one response (blocking I/O: call its methods in a worker thread).

    The descriptor is closed when the object is dropped (`weakref.finalize`), never explicitly: a
    worker still reading holds a reference, so it can never be closed (and its number reused) under
    that read, even when the response was cancelled meanwhile.
    """

    def __init__(self, path: Path, blocks: Blocks, size: int) -> None:
        try:
            self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise CorruptBodyError(f"cannot open {path}: {exc.strerror or exc}", block=0) from exc
        self._closer = weakref.finalize(self, os.close, self._fd)
        with contextlib.suppress(OSError, AttributeError):  # a hint: read-ahead for a sequential scan
            os.posix_fadvise(self._fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        self.path = path
        self.blocks = blocks
        self.size = size

    def read(self, index: int) -> bytes:
        """Block `index`, verified; raise CorruptBodyError if it is short, unreadable or altered."""
        offset, length = self.blocks.span(index, self.size)
        try:
            data = os.pread(self._fd, length, offset)
        except OSError as exc:
            raise CorruptBodyError(f"cannot read block {index} of {self.path}: {exc}", block=index) from exc
        if len(data) != length or zlib.crc32(data) != self.blocks.crc[index]:
            raise CorruptBodyError(f"block {index} of {self.path} failed its CRC-32 check", block=index)
        return data

    @classmethod
    def open_and_read(cls, path: Path, blocks: Blocks, size: int, index: int) -> tuple[BlockFile, bytes]:
        """Open the file and read its first block needed, in one thread hop."""
        file = cls(path, blocks, size)
        return file, file.read(index)


class BlockReader:
    """The verified bytes `start..stop-1` of a large body, block by block, one block read ahead."""

    def __init__(self, path: Path, blocks: Blocks, size: int, start: int, stop: int) -> None:
        self.path, self.blocks, self.size = path, blocks, size
        self.start, self.stop = start, stop
        self._index = start // blocks.size
        self._last = (stop - 1) // blocks.size
        self._file: BlockFile | None = None
        self._ahead: asyncio.Future[bytes] | None = None

    async def next(self) -> bytes:
        """The next verified piece (b"" once the range is done); raise CorruptBodyError."""
        if self._index > self._last:
            return b""
        loop = asyncio.get_running_loop()
        index = self._index
        if self._file is None:
            opened = loop.run_in_executor(
                None, BlockFile.open_and_read, self.path, self.blocks, self.size, index
            )
            self._file, data = await opened
        else:
            ahead, self._ahead = self._ahead, None
            data = await (ahead or loop.run_in_executor(None, self._file.read, index))
        self._index += 1
        if self._index <= self._last:  # read the next block while this one is being sent
            self._ahead = loop.run_in_executor(None, self._file.read, self._index)
        offset = index * self.blocks.size
        lo, hi = max(0, self.start - offset), min(len(data), self.stop - offset)
        return data if lo == 0 and hi == len(data) else data[lo:hi]

    def close(self) -> None:
        """Stop: cancel the read ahead and drop the file, which closes once no worker reads it."""
        ahead, self._ahead, self._file = self._ahead, None, None
        if ahead is not None and not ahead.cancel() and not ahead.cancelled():
            ahead.exception()  # it had finished: a failure nobody will read is no news


def scan_blocks(path: Path, block_size: int = BLOCK_SIZE) -> BlockSums | None:
    """Read a whole body file once (blocking, in bounded pieces) for its CRC-32s; None if unreadable."""
    sums = BlockSums(block_size)
    try:
        with open(path, "rb", buffering=0) as fh:
            while piece := fh.read(_SCAN_READ):
                sums.feed(piece)
    except OSError:
        return None
    return sums
