"""Per-block CRC-32s of large bodies: what lets a disk hit verify a block before sending any of it.

A body above `--large-object` is never read whole: a disk hit streams it block by block
(`edge.bodyfile`), and each block is checked against its own CRC-32 from the meta (version 3,
`"blocks": {"size": 262144, "crc": [...]}`) before its bytes go out. `BlockSums` computes those
checksums (and the whole body's) incrementally while a fill spools the body (`edge.spool`), so a
commit never reads the body again. Pure: no files, no clock.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

__all__ = ["BLOCK_SIZE", "BlockSums", "Blocks", "block_count"]

BLOCK_SIZE = 256 * 1024  # big enough that a block costs one thread hop per 256 KiB, small enough to hold two


def block_count(size: int, block_size: int) -> int:
    """How many blocks of `block_size` bytes a body of `size` bytes has (the last one may be short)."""
    return -(-size // block_size)


@dataclass(frozen=True, slots=True)
class Blocks:
    """The block size of a stored body and the CRC-32 of each of its blocks, in order."""

    size: int
    crc: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.size <= 0:
            raise ValueError(f"block size {self.size} must be positive")

    def span(self, index: int, body_size: int) -> tuple[int, int]:
        """The byte offset and length of block `index` in a body of `body_size` bytes."""
        start = index * self.size
        return start, min(self.size, body_size - start)

    def fits(self, body_size: int) -> bool:
        """Is there exactly one checksum per block of a body of `body_size` bytes?"""
        return len(self.crc) == block_count(body_size, self.size)

    def to_json(self) -> dict[str, object]:
        """The meta's `blocks` value."""
        return {"size": self.size, "crc": list(self.crc)}

    @classmethod
    def from_json(cls, doc: object) -> Blocks:
        """Parse the meta's `blocks` value; raise ValueError/KeyError/TypeError when it is damaged."""
        if not isinstance(doc, dict):
            raise TypeError(f"blocks must be an object, not {type(doc).__name__}")
        crc = doc["crc"]
        if not isinstance(crc, list):
            raise TypeError("blocks.crc must be a list of CRC-32 values")
        return cls(int(doc["size"]), tuple(int(c) for c in crc))


class BlockSums:
    """CRC-32 of each block and of the whole body, fed with the body's chunks in order.

    Chunks arrive in whatever sizes the network gives; a chunk that crosses a block boundary is
    split so that each block's checksum covers exactly its bytes.
    """

    def __init__(self, block_size: int = BLOCK_SIZE) -> None:
        self.block_size = block_size
        self.size = 0
        self.crc = 0  # of the whole body so far
        self._done: list[int] = []
        self._current = 0  # CRC-32 of the bytes of the block being filled
        self._filled = 0  # bytes in that block

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Account for the next bytes of the body."""
        self.crc = zlib.crc32(data, self.crc)
        self.size += len(data)
        view = memoryview(data)
        while view:
            take = min(len(view), self.block_size - self._filled)
            self._current = zlib.crc32(view[:take], self._current)
            self._filled += take
            view = view[take:]
            if self._filled == self.block_size:
                self._done.append(self._current)
                self._current, self._filled = 0, 0

    def blocks(self) -> Blocks:
        """The checksums of the body fed so far (its last block may be short)."""
        tail = [self._current] if self._filled else []
        return Blocks(self.block_size, (*self._done, *tail))
