"""The fragmented-MP4 reader (origin.fmp4) on synthetic boxes, real segments, and arbitrary bytes."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from origin.fmp4 import FMP4Error, InitInfo, iter_boxes, parse_init, parse_media

VIDEO = InitInfo(handler="vide", timescale=15360, codecs="avc1.64000d")
SYNC, NON_SYNC = 0x0200_0000, 0x0101_0000  # depends_on=2 (I frame) / depends_on=1 + non-sync bit


def box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def full(kind: bytes, version: int, flags: int, payload: bytes) -> bytes:
    return box(kind, struct.pack(">I", (version << 24) | flags) + payload)


def segment(
    *, tfdt: int, samples: list[tuple[int, int, int, int]], first_flags: int | None = None, version: int = 1
) -> bytes:
    """A styp+moof+mdat segment; samples are (duration, size, flags, composition offset)."""
    tfhd = full(b"tfhd", 0, 0x020000, struct.pack(">I", 1))  # default-base-is-moof
    tfdt_box = full(b"tfdt", 1, 0, struct.pack(">Q", tfdt))
    flags = 0x001 | 0x100 | 0x200 | 0x800 | (0x004 if first_flags is not None else 0x400)
    body = struct.pack(">Ii", len(samples), 0)
    if first_flags is not None:
        body += struct.pack(">I", first_flags)
    for duration, size, sflags, cto in samples:
        body += struct.pack(">II", duration, size)
        if first_flags is None:
            body += struct.pack(">I", sflags)
        body += struct.pack(">i", cto)
    trun = full(b"trun", version, flags, body)
    moof = box(b"moof", full(b"mfhd", 0, 0, struct.pack(">I", 1)) + box(b"traf", tfhd + tfdt_box + trun))
    return box(b"styp", b"msdhmsdh") + moof + box(b"mdat", b"\0" * sum(s[1] for s in samples))


def test_sync_first_sample_with_per_sample_flags() -> None:
    data = segment(tfdt=30720, samples=[(512, 10, SYNC, 1024), (512, 5, NON_SYNC, 0)])
    info = parse_media(data, VIDEO)
    assert (info.decode_time, info.duration, info.samples) == (30720, 1024, 2)
    assert info.first_is_sync
    assert info.first_presentation_time == 31744
    assert info.first_sample_size == 10


def test_non_sync_first_sample_is_detected() -> None:
    data = segment(tfdt=0, samples=[(512, 10, NON_SYNC, 0), (512, 5, SYNC, 0)])
    assert not parse_media(data, VIDEO).first_is_sync


def test_first_sample_flags_field_wins() -> None:
    assert parse_media(segment(tfdt=0, samples=[(1, 1, 0, 0)], first_flags=SYNC), VIDEO).first_is_sync
    assert not parse_media(segment(tfdt=0, samples=[(1, 1, 0, 0)], first_flags=NON_SYNC), VIDEO).first_is_sync


def test_negative_composition_offset_in_version_1() -> None:
    data = segment(tfdt=1000, samples=[(512, 1, SYNC, -512)])
    assert parse_media(data, VIDEO).first_presentation_time == 488


def test_64_bit_box_size() -> None:
    payload = b"abc"
    data = struct.pack(">I4sQ", 1, b"free", 16 + len(payload)) + payload
    boxes = list(iter_boxes(data))
    assert [(b.type, bytes(b.payload)) for b in boxes] == [(b"free", b"abc")]


@pytest.mark.parametrize(
    "data", [b"\0\0\0", struct.pack(">I4s", 100, b"moof"), struct.pack(">I4s", 4, b"moof")]
)
def test_malformed_headers(data: bytes) -> None:
    with pytest.raises(FMP4Error):
        list(iter_boxes(data))


def test_media_without_moof() -> None:
    with pytest.raises(FMP4Error, match="no moof"):
        parse_media(box(b"mdat", b"x"), VIDEO)


def test_real_init_and_media_segments(packaged_store: Path) -> None:
    folder = packaged_store / "demo"
    video = parse_init((folder / "init-0.m4s").read_bytes())
    assert (video.handler, video.width, video.height) == ("vide", 320, 180)
    assert video.codecs.startswith("avc1.64")
    audio = parse_init((folder / "init-2.m4s").read_bytes())
    assert (audio.handler, audio.codecs, audio.timescale) == ("soun", "mp4a.40.2", 48000)
    second = parse_media((folder / "chunk-0-00002.m4s").read_bytes(), video)
    assert second.decode_time == 2 * video.timescale
    assert second.samples == 60


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_raise_our_error(data: bytes) -> None:
    for parse in (parse_init, lambda d: parse_media(d, VIDEO)):
        try:
            parse(data)
        except FMP4Error:
            pass


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=400), st.binary(min_size=1, max_size=8))
def test_corrupted_real_shape_only_raises_our_error(cut: int, junk: bytes) -> None:
    data = bytearray(segment(tfdt=5, samples=[(512, 10, SYNC, 0), (512, 5, NON_SYNC, 0)]))
    data[cut % len(data) : cut % len(data) + len(junk)] = junk
    try:
        parse_media(bytes(data), VIDEO)
    except FMP4Error:
        pass
