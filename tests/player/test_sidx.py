"""sidx parsing: hand-written boxes (v0/v1) and a real one written by ffmpeg."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import pytest

from cdn.ffmpeg import ffmpeg_exe
from player.errors import SegmentIndexError
from player.sidx import find_box, parse_sidx


def sidx_box(refs: list[tuple[int, int]], *, version: int = 0, timescale: int = 1000, ept: int = 0, first: int = 0,
             hierarchical: bool = False) -> bytes:  # fmt: skip
    head = struct.pack(">IIII", version << 24, 1, timescale, ept) + struct.pack(">I", first) if version == 0 else \
        struct.pack(">IIIQQ", version << 24, 1, timescale, ept, first)  # fmt: skip
    if version == 0:
        head = struct.pack(">IIIII", 0, 1, timescale, ept, first)
    body = head + struct.pack(">HH", 0, len(refs))
    for size, duration in refs:
        body += struct.pack(">III", (1 << 31 if hierarchical else 0) | size, duration, 0x90000000)
    return struct.pack(">I4s", 8 + len(body), b"sidx") + body


@pytest.mark.parametrize("version", [0, 1])
def test_handwritten_sidx(version: int) -> None:
    box = sidx_box([(1000, 2000), (500, 1500)], version=version, ept=4000, first=10)
    refs = parse_sidx(b"\0\0\0\x08free" + box, data_offset=100)
    anchor = 100 + 8 + len(box) + 10
    assert [r.byte_range for r in refs] == [(anchor, anchor + 999), (anchor + 1000, anchor + 1499)]
    assert [(r.start, r.duration) for r in refs] == [(4.0, 2.0), (6.0, 1.5)]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\0\0\0\x08free", "no sidx"),
        (sidx_box([(10, 10)])[:-4], "too short|needs"),
        (sidx_box([(10, 10)], hierarchical=True), "hierarchical"),
        (sidx_box([(10, 10)], timescale=0), "timescale"),
        (b"\0\0\0\x02sidx", "impossible size"),
    ],
)
def test_bad_sidx(data: bytes, match: str) -> None:
    with pytest.raises(SegmentIndexError, match=match):
        parse_sidx(data, data_offset=0)


def test_real_sidx_from_ffmpeg(tmp_path: Path, clip_noaudio: Path) -> None:
    out = tmp_path / "indexed.mp4"
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-i", str(clip_noaudio), "-c", "copy",
                    "-f", "mp4", "-movflags", "frag_keyframe+global_sidx+dash", str(out)], check=True, timeout=60)  # fmt: skip
    data = out.read_bytes()
    found = find_box(data, b"sidx")
    assert found is not None
    offset, size = found
    refs = parse_sidx(data[offset : offset + size], data_offset=offset)
    assert refs
    assert sum(r.duration for r in refs) == pytest.approx(4.0, abs=0.1)
    for ref in refs:  # every reference starts at a moof box and they tile the file to its end
        assert data[ref.byte_range[0] + 4 : ref.byte_range[0] + 8] == b"moof"
    assert (
        refs[-1].byte_range[1] == len(data) - 1
        or data[refs[-1].byte_range[1] + 5 : refs[-1].byte_range[1] + 9] != b"moof"
    )
