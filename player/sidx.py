"""Parse an ISO BMFF segment index (`sidx` box, ISO/IEC 14496-12 §8.16.3) into byte ranges (pure).

A SegmentBase representation is one file; its `indexRange` holds a `sidx` whose references give
each subsegment's size and duration. The network side fetches `timeline.index_segment()`, calls
`parse_sidx(data, data_offset=first byte of that range)` and hands the result to
`timeline.segments(..., sidx=...)`. Offsets in a sidx count from the first byte after the box.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from player.errors import SegmentIndexError

__all__ = ["SidxReference", "find_box", "parse_sidx"]

_BOX_HEADER = struct.Struct(">I4s")
_LARGE_SIZE = struct.Struct(">Q")
_SIDX_V0 = struct.Struct(
    ">IIIIIHH"
)  # version/flags, reference_ID, timescale, ept, first_offset, reserved, count
_SIDX_V1 = struct.Struct(">IIIQQHH")
_REFERENCE = struct.Struct(">III")


@dataclass(frozen=True, slots=True)
class SidxReference:
    """One media subsegment: inclusive file `byte_range`, `start` and `duration` in seconds."""

    byte_range: tuple[int, int]
    start: float
    duration: float


def find_box(data: bytes, box_type: bytes) -> tuple[int, int] | None:
    """(offset, size) of the first top-level box of `box_type` in `data`, or None if absent."""
    pos = 0
    while pos + 8 <= len(data):
        size, kind = _BOX_HEADER.unpack_from(data, pos)
        header = 8
        if size == 1:
            if pos + 16 > len(data):
                return None
            (size,) = _LARGE_SIZE.unpack_from(data, pos + 8)
            header = 16
        elif size == 0:
            size = len(data) - pos
        if size < header:
            raise SegmentIndexError(f"box {kind!r} at byte {pos} has an impossible size {size}")
        if kind == box_type:
            return pos, size
        pos += size
    return None


def parse_sidx(data: bytes, *, data_offset: int) -> list[SidxReference]:
    """Parse the first `sidx` box found in `data` (bytes read from file offset `data_offset`).

    Returns one SidxReference per media reference, with absolute file byte ranges. Raises
    SegmentIndexError when no sidx is present, the box is truncated, or it references other
    sidx boxes (hierarchical indexes are not supported: use a single-level index).
    """
    found = find_box(data, b"sidx")
    if found is None:
        raise SegmentIndexError(
            f"no sidx box in the {len(data)} bytes of the index range; check SegmentBase@indexRange"
        )
    pos, size = found
    if pos + size > len(data):
        raise SegmentIndexError(f"the sidx box needs {size} bytes but only {len(data) - pos} were given")
    box = data[pos : pos + size]
    body = 16 if _BOX_HEADER.unpack_from(box)[0] == 1 else 8
    if len(box) < body + 4:
        raise SegmentIndexError("the sidx box is truncated before its version")
    version = box[body]
    layout = _SIDX_V1 if version == 1 else _SIDX_V0
    if len(box) < body + layout.size:
        raise SegmentIndexError("the sidx box is truncated in its header")
    _, _, timescale, earliest, first_offset, _, count = layout.unpack_from(box, body)
    if timescale == 0:
        raise SegmentIndexError("the sidx timescale is 0")
    refs_at = body + layout.size
    if len(box) < refs_at + count * _REFERENCE.size:
        raise SegmentIndexError(f"the sidx box declares {count} references but is too short for them")
    return _references(box, refs_at, count, timescale, earliest, data_offset + pos + size + first_offset)


def _references(
    box: bytes, at: int, count: int, timescale: int, earliest: int, offset: int
) -> list[SidxReference]:
    out = []
    time = earliest
    for i in range(count):
        word, duration, _sap = _REFERENCE.unpack_from(box, at + i * _REFERENCE.size)
        if word >> 31:
            raise SegmentIndexError("the sidx references another sidx (hierarchical index): not supported")
        size = word & 0x7FFFFFFF
        if size == 0:
            raise SegmentIndexError(f"sidx reference {i} has size 0")
        out.append(SidxReference((offset, offset + size - 1), time / timescale, duration / timescale))
        offset += size
        time += duration
    return out
