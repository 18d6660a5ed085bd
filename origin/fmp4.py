"""A small fragmented-MP4 (ISO BMFF, CMAF) reader: what the packager needs to measure its chunks (pure).

`parse_init(data)` reads an init segment (`moov`): track timescale, handler, frame size and the
RFC 6381 codecs string (`avc1.PPCCLL` from `avcC`, `mp4a.40.N` from `esds`). `parse_media(data)`
reads a media segment (`moof`): decode start (`tfdt`), duration, sample count, whether the first
sample is a sync sample, and its presentation time. Box layouts: ISO/IEC 14496-12 §8.8 (movie
fragments), ISO/IEC 14496-15 §5.3 (avcC), ISO/IEC 14496-1 §7.2.6 (ES descriptors).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["Box", "FMP4Error", "InitInfo", "SegmentInfo", "iter_boxes", "parse_init", "parse_media"]

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_HEADER = struct.Struct(">I4s")
_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"mvex", b"moof", b"traf", b"edts"}
# Sample flags (§8.8.3.1): sample_depends_on in bits 24-25, sample_is_non_sync_sample in bit 16.
_NON_SYNC = 0x0001_0000
_DEPENDS_MASK = 0x0300_0000
_DEPENDS_ON_OTHERS = 0x0100_0000


class FMP4Error(ValueError):
    """Raised when bytes are not the fragmented MP4 box structure the reader expects."""


@dataclass(frozen=True, slots=True)
class Box:
    """One box: its four-character type and the payload bytes after the header."""

    type: bytes
    payload: memoryview


@dataclass(frozen=True, slots=True, kw_only=True)
class InitInfo:
    """What an init segment declares for its (single) track."""

    handler: str
    timescale: int
    codecs: str
    width: int = 0
    height: int = 0
    default_sample_duration: int = 0
    default_sample_flags: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class SegmentInfo:
    """Timing of one media segment, in the track's timescale."""

    decode_time: int
    duration: int
    samples: int
    first_is_sync: bool
    first_presentation_time: int
    first_sample_size: int = 0


def iter_boxes(data: bytes | memoryview) -> Iterator[Box]:
    """Yield the boxes at the top level of `data`; raise FMP4Error on a malformed header."""
    view = memoryview(data)
    pos = 0
    while pos < len(view):
        if len(view) - pos < 8:
            raise FMP4Error(f"truncated box header at offset {pos}")
        size, kind = _HEADER.unpack_from(view, pos)
        header = 8
        if size == 1:
            if len(view) - pos < 16:
                raise FMP4Error(f"truncated 64-bit box size at offset {pos}")
            size, header = _U64.unpack_from(view, pos + 8)[0], 16
        elif size == 0:
            size = len(view) - pos
        if size < header or pos + size > len(view):
            raise FMP4Error(f"box {kind!r} at offset {pos} has size {size} beyond the data")
        yield Box(bytes(kind), view[pos + header : pos + size])
        pos += size


def _find(data: bytes | memoryview, path: str) -> Box | None:
    """The first box at `path` (types joined by '/'), descending through containers."""
    first, _, rest = path.partition("/")
    for box in iter_boxes(data):
        if box.type == first.encode():
            return _find(box.payload, rest) if rest else box
    return None


def _require(data: bytes | memoryview, path: str) -> Box:
    box = _find(data, path)
    if box is None:
        raise FMP4Error(f"no {path} box")
    return box


def _u32(view: memoryview, offset: int) -> int:
    if offset + 4 > len(view):
        raise FMP4Error("box payload too short")
    return int(_U32.unpack_from(view, offset)[0])


def _full_box(view: memoryview) -> tuple[int, int]:
    """Version and flags of a FullBox payload."""
    word = _u32(view, 0)
    return word >> 24, word & 0xFFFFFF


def _mdhd_timescale(mdhd: memoryview) -> int:
    version, _ = _full_box(mdhd)
    return _u32(mdhd, 20 if version == 1 else 12)


def _avc_codecs(entry: memoryview) -> tuple[str, int, int]:
    """`avc1.PPCCLL` plus width and height from an avc1/avc3 sample entry."""
    width, height = struct.unpack_from(">HH", entry, 24)
    avcc = _find(entry[78:], "avcC")
    if avcc is None or len(avcc.payload) < 4:
        raise FMP4Error("avc1 sample entry has no avcC box")
    p = avcc.payload
    return f"avc1.{p[1]:02x}{p[2]:02x}{p[3]:02x}", width, height


def _es_descriptor_oti_aot(esds: memoryview) -> tuple[int, int]:
    """Object type indication and AAC audio object type from an esds payload (after version/flags)."""
    data = bytes(esds[4:])
    oti = aot = 0
    pos = 0
    while pos < len(data):
        tag = data[pos]
        pos += 1
        length = 0
        for _ in range(4):
            byte = data[pos]
            pos += 1
            length = (length << 7) | (byte & 0x7F)
            if not byte & 0x80:
                break
        if tag == 0x03:  # ES_Descriptor: ES_ID(2) + flags(1), then sub-descriptors
            flags = data[pos + 2]
            pos += 3 + (2 if flags & 0x80 else 0) + (2 if flags & 0x20 else 0)
            continue
        if tag == 0x04:  # DecoderConfigDescriptor: objectTypeIndication first, 13 bytes, then DSI
            oti = data[pos]
            pos += 13
            continue
        if tag == 0x05 and length:  # DecoderSpecificInfo: AudioSpecificConfig, AOT in the top 5 bits
            aot = data[pos] >> 3
        pos += length
    return oti, aot


def _mp4a_codecs(entry: memoryview) -> str:
    esds = _find(entry[28:], "esds")
    if esds is None:
        return "mp4a.40.2"
    oti, aot = _es_descriptor_oti_aot(esds.payload)
    return f"mp4a.{oti:x}.{aot}" if aot else f"mp4a.{oti:x}"


def _sample_entry(stbl: memoryview) -> tuple[str, int, int]:
    stsd = _require(stbl, "stsd").payload
    entry = next(iter_boxes(stsd[8:]), None)
    if entry is None:
        raise FMP4Error("stsd has no sample entry")
    if entry.type in (b"avc1", b"avc3"):
        return _avc_codecs(entry.payload)
    if entry.type == b"mp4a":
        return _mp4a_codecs(entry.payload), 0, 0
    return entry.type.decode("ascii", "replace"), 0, 0


def parse_init(data: bytes) -> InitInfo:
    """Read an init segment's single track; raise FMP4Error if it is not one."""
    try:
        trak = _require(data, "moov/trak").payload
        timescale = _mdhd_timescale(_require(trak, "mdia/mdhd").payload)
        handler = bytes(_require(trak, "mdia/hdlr").payload[8:12]).decode("ascii", "replace")
        codecs, width, height = _sample_entry(_require(trak, "mdia/minf/stbl").payload)
        trex = _find(data, "moov/mvex/trex")
    except (IndexError, struct.error) as exc:
        raise FMP4Error(f"malformed init segment: {exc}") from exc
    duration = flags = 0
    if trex is not None:
        duration, flags = _u32(trex.payload, 12), _u32(trex.payload, 20)
    return InitInfo(
        handler=handler,
        timescale=timescale,
        codecs=codecs,
        width=width,
        height=height,
        default_sample_duration=duration,
        default_sample_flags=flags,
    )


@dataclass(slots=True)
class _Defaults:
    duration: int
    flags: int


def _tfhd_defaults(tfhd: memoryview, init: InitInfo) -> _Defaults:
    _, flags = _full_box(tfhd)
    pos = 8 + (8 if flags & 0x01 else 0) + (4 if flags & 0x02 else 0)
    defaults = _Defaults(init.default_sample_duration, init.default_sample_flags)
    if flags & 0x08:
        defaults.duration = _u32(tfhd, pos)
        pos += 4
    if flags & 0x10:
        pos += 4
    if flags & 0x20:
        defaults.flags = _u32(tfhd, pos)
    return defaults


def _tfdt(traf: memoryview) -> int:
    tfdt = _require(traf, "tfdt").payload
    version, _ = _full_box(tfdt)
    return int(_U64.unpack_from(tfdt, 4)[0]) if version == 1 else _u32(tfdt, 4)


def _is_sync(flags: int) -> bool:
    return not flags & _NON_SYNC and (flags & _DEPENDS_MASK) != _DEPENDS_ON_OTHERS


def _trun(trun: memoryview, defaults: _Defaults) -> tuple[int, int, bool, int, int]:
    """(sample count, total duration, first is sync, first composition offset, first size) of a trun."""
    version, flags = _full_box(trun)
    count = _u32(trun, 4)
    pos = 8 + (4 if flags & 0x001 else 0)
    first_flags = defaults.flags
    if flags & 0x004:
        first_flags = _u32(trun, pos)
        pos += 4
    per_sample = 4 * sum(1 for bit in (0x100, 0x200, 0x400, 0x800) if flags & bit)
    if count * per_sample > len(trun) - pos:
        raise FMP4Error(f"trun declares {count} samples but holds {len(trun) - pos} bytes")
    if per_sample == 0:  # every sample takes the defaults
        return count, count * defaults.duration, _is_sync(first_flags), 0, 0
    total = first_cto = first_size = 0
    for index in range(count):
        duration = defaults.duration
        if flags & 0x100:
            duration, pos = _u32(trun, pos), pos + 4
        if flags & 0x200:
            first_size = _u32(trun, pos) if index == 0 else first_size
            pos += 4
        if flags & 0x400:
            if index == 0 and not flags & 0x004:
                first_flags = _u32(trun, pos)
            pos += 4
        if flags & 0x800:
            cto = _u32(trun, pos)
            if index == 0:
                first_cto = cto - (1 << 32) if version == 1 and cto & 0x8000_0000 else cto
            pos += 4
        total += duration
    return count, total, _is_sync(first_flags), first_cto, first_size


def parse_media(data: bytes, init: InitInfo) -> SegmentInfo:
    """Read a media segment (one or more moof/mdat pairs of one track); raise FMP4Error if malformed."""
    try:
        trafs = [_require(box.payload, "traf").payload for box in iter_boxes(data) if box.type == b"moof"]
        if not trafs:
            raise FMP4Error("media segment has no moof box")
        start = _tfdt(trafs[0])
        samples = duration = 0
        first_sync, first_cto, first_size = False, 0, 0
        for index, traf in enumerate(trafs):
            defaults = _tfhd_defaults(_require(traf, "tfhd").payload, init)
            for box in iter_boxes(traf):
                if box.type != b"trun":
                    continue
                count, total, sync, cto, size = _trun(box.payload, defaults)
                if index == 0 and samples == 0:
                    first_sync, first_cto, first_size = sync, cto, size
                samples += count
                duration += total
    except (IndexError, struct.error) as exc:
        raise FMP4Error(f"malformed media segment: {exc}") from exc
    return SegmentInfo(
        decode_time=start,
        duration=duration,
        samples=samples,
        first_is_sync=first_sync,
        first_presentation_time=start + first_cto,
        first_sample_size=first_size,
    )
