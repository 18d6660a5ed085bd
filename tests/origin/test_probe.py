"""Probing without ffprobe: the stderr parser on captured texts, input resolution, real probes."""

from __future__ import annotations

import os
import subprocess
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdn.ffmpeg import ffmpeg_exe
from cdn.samples import generate_clip
from origin.errors import InputError
from origin.probe import (
    ALLOWED_DEMUXERS,
    check_tail_decodes,
    input_args,
    last_out_time,
    parse_probe_output,
    probe,
    resolve_input,
)

MP4 = """\
Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'file:/tmp/pk/clip.mp4':
  Metadata:
    major_brand     : isom
  Duration: 00:00:05.00, start: 0.000000, bitrate: 878 kb/s
  Stream #0:0[0x1](und): Video: h264 (Constrained Baseline) (avc1 / 0x31637661), yuv420p(progressive), 320x180 [SAR 1:1 DAR 16:9], 771 kb/s, 30 fps, 30 tbr, 15360 tbn (default)
    Metadata:
      handler_name    : VideoHandler
  Stream #0:1[0x2](und): Audio: aac (LC) (mp4a / 0x6134706D), 48000 Hz, mono, fltp, 96 kb/s (default)
At least one output file must be specified
"""

MKV_NTSC_ANAMORPHIC = """\
Input #0, matroska,webm, from 'file:/tmp/pk/ana.mkv':
  Metadata:
    ENCODER         : Lavf63.1.102
  Duration: 01:02:03.50, start: 0.000000, bitrate: 3635 kb/s
  Stream #0:0: Video: h264 (High), yuv420p(tv, bt709, progressive), 720x576 [SAR 64:45 DAR 16:9], 29.97 fps, 29.97 tbr, 1k tbn
  Stream #0:1(eng): Audio: opus, 48000 Hz, stereo, fltp (default)
  Stream #0:2(eng): Subtitle: subrip
"""

ROTATED = """\
Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'file:/tmp/pk/rot.mp4':
  Duration: 00:00:05.00, start: 0.000000, bitrate: 825 kb/s
  Stream #0:0[0x1](und): Video: h264 (Constrained Baseline) (avc1 / 0x31637661), yuv420p(progressive), 320x180 [SAR 1:1 DAR 16:9], 747 kb/s, 30 fps, 30 tbr, 15360 tbn (default)
    Side data:
      Display Matrix: rotation of -90.00 degrees
  Stream #0:1[0x2](und): Audio: aac (LC) (mp4a / 0x6134706D), 44100 Hz, mono, fltp, 69 kb/s (default)
"""

AUDIO_ONLY_WITH_COVER = """\
Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'file:/tmp/pk/song.m4a':
  Duration: 00:03:00.00, start: 0.000000, bitrate: 130 kb/s
  Stream #0:0[0x1](und): Audio: aac (LC) (mp4a / 0x6134706D), 44100 Hz, stereo, fltp, 128 kb/s (default)
  Stream #0:1[0x0]: Video: mjpeg (Baseline), yuvj420p(pc, bt470bg/unknown/unknown), 600x600 [SAR 1:1 DAR 1:1], 90k tbr, 90k tbn (attached pic)
"""

CONTAINER_SAR = """\
Input #0, matroska,webm, from 'file:/tmp/pk/odd2.mkv':
  Duration: 00:00:03.00, start: 0.000000, bitrate: 1200 kb/s
  Stream #0:0: Video: h264 (High 4:4:4 Predictive), yuv444p(tv, progressive), 641x361 [SAR 3301:3297 DAR 705319:396742], SAR 5776:5769 DAR 16:9, 25 fps, 25 tbr, 1k tbn
"""

COVER_FIRST = """\
Input #0, matroska,webm, from 'file:/tmp/pk/covered.mkv':
  Duration: 00:00:04.00, start: 0.000000, bitrate: 600 kb/s
  Stream #0:0: Video: mjpeg (Baseline), yuvj420p(pc, bt470bg/unknown/unknown), 600x600 [SAR 1:1 DAR 1:1], 90k tbr, 90k tbn (attached pic)
  Stream #0:1: Video: h264 (High), yuv420p(progressive), 1280x720 [SAR 1:1 DAR 16:9], 25 fps, 25 tbr, 1k tbn
  Stream #0:2: Audio: aac (LC), 48000 Hz, stereo, fltp
"""

TS_NO_DURATION = """\
Input #0, mpegts, from 'file:/tmp/live.ts':
  Duration: N/A, start: 1.400000, bitrate: N/A
  Program 1
  Stream #0:0[0x100]: Video: h264 (High) ([27][0][0][0] / 0x001B), yuv420p(tv, progressive), 1920x1080, 25 tbr, 90k tbn
"""

NOT_ON_WHITELIST = """\
[in#0 @ 0x556c886c91c0] Format not on whitelist 'mov,matroska'
[in#0 @ 0x556c886c8e80] Error opening input: Invalid argument
Error opening input file file:/tmp/pk/evil.m3u8.
"""

INVALID = """\
[in#0 @ 0x55bfafb82d00] Error opening input: Invalid data found when processing input
Error opening input file file:/tmp/pk/text.txt.
Error opening input files: Invalid data found when processing input
"""

MOOV_MISSING = """\
[in#0 @ 0x558ec9787080] moov atom not found
[in#0 @ 0x558ec9786d00] Error opening input: Invalid data found when processing input
Error opening input file file:/tmp/pk/trunc_nofs.mp4.
"""


def test_parse_mp4_with_audio() -> None:
    info = parse_probe_output(MP4)
    assert info.format_name == "mov,mp4,m4a,3gp,3g2,mj2"
    assert info.duration == 5.0
    assert info.video is not None
    assert (info.video.codec, info.video.width, info.video.height) == ("h264", 320, 180)
    assert info.video.sar == 1
    assert info.video.fps == 30
    assert info.video.display_aspect == Fraction(16, 9)
    assert info.has_audio
    assert info.audio_codec == "aac"


def test_parse_mkv_ntsc_anamorphic() -> None:
    info = parse_probe_output(MKV_NTSC_ANAMORPHIC)
    assert info.duration == pytest.approx(3723.5)
    assert info.video is not None
    assert info.video.sar == Fraction(64, 45)
    assert info.video.display_aspect == Fraction(16, 9)
    assert info.video.fps == Fraction(30000, 1001)
    assert info.audio_codec == "opus"


def test_parse_rotation_swaps_the_frame() -> None:
    info = parse_probe_output(ROTATED)
    assert info.video is not None
    assert (info.video.width, info.video.height, info.video.rotation) == (180, 320, 270)


def test_container_sar_wins_over_the_bitstream_sar() -> None:
    info = parse_probe_output(CONTAINER_SAR)
    assert info.video is not None
    assert info.video.sar == Fraction(5776, 5769)
    assert info.video.display_aspect == Fraction(16, 9)


def test_cover_art_is_not_a_video_stream() -> None:
    info = parse_probe_output(AUDIO_ONLY_WITH_COVER)
    assert info.video is None
    assert info.has_audio


def test_real_video_after_cover_art_is_picked_by_index() -> None:
    info = parse_probe_output(COVER_FIRST)
    assert info.video is not None
    assert (info.video.codec, info.video.width, info.video.index) == ("h264", 1280, 1)


MKV_COVER_WITHOUT_FLAG = """\
Input #0, matroska,webm, from 'file:/tmp/pk/cover.mkv':
  Duration: 00:00:05.00, start: 0.000000, bitrate: 1000 kb/s
  Stream #0:0: Video: mjpeg (Baseline), yuvj444p(pc, bt470bg/unknown/unknown, progressive), 320x240 [SAR 1:1 DAR 4:3], 25 fps, 25 tbr, 1k tbn
  Stream #0:1: Video: h264 (Constrained Baseline), yuv420p(progressive), 320x180 [SAR 1:1 DAR 16:9], 30 fps, 30 tbr, 1k tbn (default)
  Stream #0:2: Audio: aac (LC), 48000 Hz, mono, fltp (default)
"""


def test_default_flagged_video_wins() -> None:
    info = parse_probe_output(MKV_COVER_WITHOUT_FLAG)
    assert info.video is not None
    assert (info.video.codec, info.video.index) == ("h264", 1)


def test_unknown_duration_and_tbr_only() -> None:
    info = parse_probe_output(TS_NO_DURATION)
    assert info.duration is None
    assert info.video is not None
    assert info.video.fps == 25
    assert info.video.sar == 1
    assert not info.has_audio


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (NOT_ON_WHITELIST, "container format is not one we accept"),
        (INVALID, "Invalid data found"),
        (MOOV_MISSING, "moov atom not found"),
        ("", "no output"),
    ],
)
def test_parse_failures_raise_input_error(text: str, match: str) -> None:
    with pytest.raises(InputError, match=match):
        parse_probe_output(text)


def test_last_out_time() -> None:
    assert last_out_time("out_time_us=N/A\nprogress=continue\nout_time_us=2002000\nprogress=end\n") == 2.002
    assert last_out_time("frame=0\n") == 0.0


@pytest.mark.parametrize(
    "name",
    [
        "concat:a.mp4|b.mp4",
        "http://127.0.0.1/x.mp4",
        "subfile,,start,0,end,9,,:/etc/passwd",
        "file:/etc/passwd",
        "data:video/mp4,AAAA",
        "",
    ],
)
def test_resolve_input_refuses_protocols(name: str) -> None:
    with pytest.raises(InputError):
        resolve_input(name)


def test_resolve_input_checks_the_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.touch()
    with pytest.raises(InputError, match="zero length"):
        resolve_input(empty)
    with pytest.raises(InputError, match="not a regular file"):
        resolve_input(tmp_path)
    with pytest.raises(InputError, match="No such file"):
        resolve_input(tmp_path / "missing.mp4")
    fifo = tmp_path / "fifo.mp4"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="not a regular file"):
        resolve_input(fifo)


def test_input_never_looks_like_an_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dashed = tmp_path / "-i.mp4"
    dashed.write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    path = resolve_input("-i.mp4")
    args = input_args(path)
    assert args[-2:] == ["-i", f"file:{tmp_path / '-i.mp4'}"]
    assert args[:4] == ["-protocol_whitelist", "file", "-format_whitelist", ALLOWED_DEMUXERS]
    for banned in ("hls", "concat", "image2", "dash"):
        assert banned not in ALLOWED_DEMUXERS.split(",")


def test_probe_real_clip(clip: Path) -> None:
    info = probe(resolve_input(clip))
    assert info.duration == 5.0
    assert info.has_audio
    assert info.video is not None
    assert (info.video.width, info.video.height) == (320, 180)
    check_tail_decodes(resolve_input(clip), info)


def test_probe_rejects_audio_only(tmp_path: Path) -> None:
    audio = tmp_path / "audio.m4a"
    subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "sine=duration=1", "-c:a", "aac", f"file:{audio}"],
        check=True,
    )
    with pytest.raises(InputError, match="no video stream"):
        probe(resolve_input(audio))


def test_tail_check_catches_truncation(tmp_path: Path) -> None:
    full = generate_clip(tmp_path / "full.mp4", seconds=4, width=160, height=90)  # moov first (faststart)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    path = resolve_input(cut)
    info = probe(path)  # the header still announces 4 s
    assert info.duration == 4.0
    with pytest.raises(InputError, match="truncated"):
        check_tail_decodes(path, info)


def test_ordinary_names_with_commas_or_colons_inside_are_fine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("a,b.mp4", "take2:final.mp4"):
        (tmp_path / name).write_bytes(b"x")
    assert resolve_input("a,b.mp4") == tmp_path / "a,b.mp4"
    assert resolve_input("./take2:final.mp4") == tmp_path / "take2:final.mp4"
    with pytest.raises(InputError, match=r"write \./take2:final\.mp4"):
        resolve_input("take2:final.mp4")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_parser_on_arbitrary_text_only_raises_input_error(text: str) -> None:
    try:
        parse_probe_output(text)
    except InputError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=len(MP4)), st.text(max_size=20))
def test_parser_on_mangled_real_output_only_raises_input_error(cut: int, junk: str) -> None:
    try:
        info = parse_probe_output(MP4[:cut] + junk + MP4[cut:])
    except InputError:
        return
    if info.video is not None:
        assert info.video.sar > 0


def test_tiny_pictures_are_refused(tmp_path: Path) -> None:
    tiny = tmp_path / "tiny.mp4"
    subprocess.run(
        [
            ffmpeg_exe(),
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=8x8:duration=1",
            "-c:v",
            "libx264",
            f"file:{tiny}",
        ],
        check=True,
    )
    with pytest.raises(InputError, match="too small"):
        probe(resolve_input(tiny))
