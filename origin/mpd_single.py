"""The single-file (DASH on-demand profile) layout: one fMP4 per Representation, addressed by byte ranges.

ffmpeg's dash muxer with `single_file=1` and `global_sidx=1` writes each Representation as
`ftyp moov sidx (moof mdat)*` and an MPD with a SegmentList of `mediaRange`s. `parse_single_file()`
finds the init, the segment index and one byte span per sidx reference (one chunk each);
`trim_single_file()` drops chunks past the presentation's end (rewriting the sidx); and
`set_segment_base()` swaps the SegmentList for `SegmentBase@indexRange` + `Initialization@range`
(ISO/IEC 23009-1 §8.3, the on-demand profile). Pure: bytes and XML elements in, values out.
"""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from origin.errors import ManifestError
from origin.fmp4 import FMP4Error, iter_boxes

__all__ = [
    "ONDEMAND_PROFILE",
    "SINGLE_FILE_TEMPLATE",
    "ByteSpan",
    "SingleFileLayout",
    "parse_single_file",
    "set_segment_base",
    "trim_single_file",
]

ONDEMAND_PROFILE = "urn:mpeg:dash:profile:isoff-on-demand:2011"
SINGLE_FILE_TEMPLATE = "media-$RepresentationID$.$ext$"
_DASH = "{urn:mpeg:dash:schema:mpd:2011}"
_HEADER = struct.Struct(">I4s")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_REFERENCE = struct.Struct(">III")
# sidx body after version/flags, reference_ID, timescale: (ept, first_offset) 32- or 64-bit, then
# reserved u16 and reference_count u16 (ISO/IEC 14496-12 §8.16.3).
_TIMES = {0: 8, 1: 16}


@dataclass(frozen=True, slots=True)
class ByteSpan:
    """Bytes `start` to `end` of a file, both inclusive (an HTTP / DASH byte range)."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if not 0 <= self.start <= self.end:
            raise ValueError(f"byte span {self.start}-{self.end} is empty or negative")

    @property
    def size(self) -> int:
        return self.end - self.start + 1

    def __str__(self) -> str:
        return f"{self.start}-{self.end}"

    def of(self, data: bytes) -> bytes:
        """These bytes of `data`."""
        return data[self.start : self.end + 1]


@dataclass(frozen=True, slots=True)
class SingleFileLayout:
    """Where the parts of one single-file Representation are: init, sidx, and one span per chunk."""

    init: ByteSpan
    index: ByteSpan
    chunks: tuple[ByteSpan, ...]


def _top_boxes(data: bytes) -> list[tuple[bytes, ByteSpan]]:
    out, pos = [], 0
    try:
        for box in iter_boxes(data):
            size = _HEADER.size + len(box.payload)
            if len(data) >= pos + 16 and _U32.unpack_from(data, pos)[0] == 1:
                size += 8  # 64-bit size header
            out.append((box.type, ByteSpan(pos, pos + size - 1)))
            pos += size
    except FMP4Error as exc:
        raise ManifestError(f"ffmpeg wrote an unreadable single-file Representation: {exc}") from exc
    return out


def _sidx_fields(sidx: bytes) -> tuple[int, int, int]:
    """(offset of reference_count, first_offset, reference_count) in a sidx box with an 8-byte header."""
    if _U32.unpack_from(sidx)[0] == 1:
        raise ManifestError("the sidx box has a 64-bit size header, which ffmpeg never writes")
    version = sidx[8]
    if version not in _TIMES:
        raise ManifestError(f"the sidx box has version {version}, expected 0 or 1")
    at = 8 + 12 + _TIMES[version]  # header, version/flags, reference_ID, timescale, times
    if len(sidx) < at + 4:
        raise ManifestError("the sidx box is truncated in its header")
    half = _TIMES[version] // 2
    first_offset = int.from_bytes(sidx[at - half : at], "big")
    (count,) = _U16.unpack_from(sidx, at + 2)
    if len(sidx) < at + 4 + count * _REFERENCE.size:
        raise ManifestError(f"the sidx box declares {count} references but is too short for them")
    return at + 2, first_offset, count


def parse_single_file(data: bytes) -> SingleFileLayout:
    """The layout of a `ftyp moov sidx (moof mdat)*` file; raise ManifestError if it is not one.

    The chunks are the sidx's references (one moof + mdat each, as the dash muxer cuts one fragment
    per segment); they must cover the file from the end of the sidx (+ first_offset) to its end.
    """
    boxes = _top_boxes(data)
    kinds = [kind for kind, _ in boxes]
    if b"moov" not in kinds or b"sidx" not in kinds or kinds.index(b"sidx") < kinds.index(b"moov"):
        raise ManifestError(f"a single-file Representation is not ftyp/moov/sidx/fragments but {kinds[:6]}")
    init = ByteSpan(0, boxes[kinds.index(b"moov")][1].end)
    index = boxes[kinds.index(b"sidx")][1]
    if index.start != init.end + 1:
        raise ManifestError("the sidx box does not follow the init segment (moov) directly")
    count_at, first_offset, count = _sidx_fields(index.of(data))
    pos, chunks = index.end + 1 + first_offset, []
    for i in range(count):
        word = _REFERENCE.unpack_from(data, index.start + count_at + 2 + i * _REFERENCE.size)[0]
        size = word & 0x7FFFFFFF
        if word >> 31 or size == 0:
            raise ManifestError(f"sidx reference {i} is hierarchical or empty")
        chunks.append(ByteSpan(pos, pos + size - 1))
        pos += size
    if not chunks or pos != len(data):
        raise ManifestError(f"the sidx references cover bytes up to {pos} of a {len(data)}-byte file")
    return SingleFileLayout(init, index, tuple(chunks))


def trim_single_file(data: bytes, layout: SingleFileLayout, keep: int) -> tuple[bytes, SingleFileLayout]:
    """`data` with only its first `keep` chunks, its sidx rewritten to reference just those."""
    if not 0 < keep <= len(layout.chunks):
        raise ValueError(f"cannot keep {keep} of {len(layout.chunks)} chunks")
    if keep == len(layout.chunks):
        return data, layout
    sidx = bytearray(layout.index.of(data))
    count_at, _first_offset, _count = _sidx_fields(bytes(sidx))
    del sidx[count_at + 2 + keep * _REFERENCE.size :]
    _U16.pack_into(sidx, count_at, keep)
    _U32.pack_into(sidx, 0, len(sidx))
    tail = data[layout.index.end + 1 : layout.chunks[keep - 1].end + 1]
    out = layout.init.of(data) + bytes(sidx) + tail
    return out, parse_single_file(out)


def set_segment_base(rep: ET.Element, layout: SingleFileLayout, timescale: int) -> None:
    """Replace the Representation's SegmentList (or SegmentTemplate) with a SegmentBase (§5.3.9.2)."""
    old = rep.find(f"{_DASH}SegmentList")
    if old is None:
        old = rep.find(f"{_DASH}SegmentTemplate")
    if old is None:
        raise ManifestError(f"Representation {rep.get('id')} has no SegmentList to turn into a SegmentBase")
    base = ET.Element(
        f"{_DASH}SegmentBase", timescale=str(timescale), indexRange=str(layout.index), indexRangeExact="true"
    )
    ET.SubElement(base, f"{_DASH}Initialization", range=str(layout.init))
    position = list(rep).index(old)
    rep.remove(old)
    rep.insert(position, base)
