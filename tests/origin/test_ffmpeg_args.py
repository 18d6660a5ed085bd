"""The packaging argv (origin.ffmpeg_args): one graph, aligned closed GOPs, locked-down input."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from origin.errors import ConfigError
from origin.ffmpeg_args import (
    DEFAULT_PRESET,
    EncodeSettings,
    build_package_argv,
    gop_frames,
    output_fps,
)
from origin.ladder import DEFAULT_LADDER, plan_renditions

INPUT = Path("/media/in put.mp4")
OUT = Path("/store/.tmp-x-1")


def _argv(*, audio: bool = True, fps: Fraction | None = Fraction(30), seconds: int = 8) -> list[str]:
    renditions = plan_renditions(DEFAULT_LADDER, width=1920, height=1080)
    return build_package_argv(
        ffmpeg_path="/bin/ffmpeg",
        input_path=INPUT,
        output_dir=OUT,
        renditions=renditions,
        source_fps=fps,
        has_audio=audio,
        settings=EncodeSettings(segment_seconds=seconds),
    )


def _opt(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_input_is_a_whitelisted_local_file() -> None:
    argv = _argv()
    i = argv.index("-i")
    assert argv[i + 1] == "file:/media/in put.mp4"
    assert argv.index("-protocol_whitelist") < i
    assert _opt(argv, "-protocol_whitelist") == "file"
    assert argv.index("-format_whitelist") < i
    assert argv.count("-i") == 1
    assert argv[i + 2 :].count("-protocol_whitelist") == 1  # the dash muxer may only write local files
    assert argv[-1] == "file:/store/.tmp-x-1/manifest.mpd"


def test_one_graph_splits_once_and_scales_each_rung() -> None:
    graph = _opt(_argv(), "-filter_complex")
    assert graph.count("split=5") == 1
    for size in ("1920:1080", "1280:720", "854:480", "640:360", "426:240"):
        assert f"scale={size}" in graph
    assert "fps=fps=30/1" in graph
    assert graph.count("setsar=") == 5
    assert "setsar=max=1281:r=1280/1281" in graph  # exact: setsar's default max=100 would round it


def test_video_stream_index_is_used() -> None:
    renditions = plan_renditions(DEFAULT_LADDER, width=640, height=360)
    argv = build_package_argv(
        ffmpeg_path="ffmpeg",
        input_path=INPUT,
        output_dir=OUT,
        renditions=renditions,
        source_fps=Fraction(25),
        has_audio=False,
        settings=EncodeSettings(segment_seconds=2),
        video_index=1,
    )
    assert _opt(argv, "-filter_complex").startswith("[0:v:1]")


def test_closed_aligned_gops() -> None:
    argv = _argv(seconds=4)
    assert _opt(argv, "-g") == "120"
    assert _opt(argv, "-keyint_min") == "120"
    assert _opt(argv, "-sc_threshold") == "0"
    assert _opt(argv, "-forced-idr:v") == "1"
    assert _opt(argv, "-force_key_frames") == "expr:eq(mod(n,120),0)"
    assert "scenecut=0" in _opt(argv, "-x264-params:v")
    assert "open-gop=0" in _opt(argv, "-x264-params:v")
    assert _opt(argv, "-preset:v") == DEFAULT_PRESET


def test_bitrates_per_output_stream() -> None:
    argv = _argv()
    assert [_opt(argv, f"-b:v:{i}") for i in range(5)] == [
        "5000000",
        "3000000",
        "1200000",
        "600000",
        "300000",
    ]
    assert _opt(argv, "-maxrate:v:0") == "7500000"
    assert _opt(argv, "-bufsize:v:0") == "10000000"


def test_dash_muxer_options() -> None:
    argv = _argv(seconds=8)
    assert _opt(argv, "-f") == "dash"
    assert _opt(argv, "-use_template") == "1"
    assert _opt(argv, "-use_timeline") == "0"
    assert _opt(argv, "-seg_duration") == "8.000000"
    assert _opt(argv, "-adaptation_sets") == "id=0,streams=v id=1,streams=a"
    assert "$Number%05d$" in _opt(argv, "-media_seg_name")
    assert _opt(argv, "-progress") == "pipe:1"


def test_audio_mapped_only_when_present() -> None:
    with_audio, without = _argv(audio=True), _argv(audio=False)
    assert "[0:a:0]apad" in _opt(with_audio, "-filter_complex")
    assert "-shortest" in with_audio
    assert _opt(with_audio, "-c:a") == "aac"
    assert "0:a" not in " ".join(without)
    assert "-c:a" not in without
    assert _opt(without, "-adaptation_sets") == "id=0,streams=v"


def test_ntsc_segments_are_whole_frames() -> None:
    argv = _argv(fps=Fraction(30000, 1001), seconds=2)
    assert _opt(argv, "-g") == "60"
    assert _opt(argv, "-seg_duration") == "2.002000"


@pytest.mark.parametrize(
    ("fps", "expected"),
    [
        (Fraction(25), 25),
        (None, 30),
        (Fraction(1000), 30),
        (Fraction(1, 2), 30),
        (Fraction("29.83"), Fraction(30000, 1001)),
        (Fraction("24.1"), 24),
        (Fraction(30000, 1001), Fraction(30000, 1001)),
        (Fraction(59), Fraction(60000, 1001)),
        (Fraction(37), 37),
        (Fraction("7.4"), 7),
    ],
)
def test_output_fps(fps: Fraction | None, expected: int) -> None:
    assert output_fps(fps) == expected


@pytest.mark.parametrize(
    ("fps", "seconds", "frames"), [(30, 8, 240), (25, 2, 50), (Fraction(24000, 1001), 8, 192)]
)
def test_gop_frames(fps: Fraction, seconds: int, frames: int) -> None:
    assert gop_frames(Fraction(fps), seconds) == frames


def test_settings_reject_unknown_preset() -> None:
    with pytest.raises(ConfigError, match="preset"):
        EncodeSettings(segment_seconds=8, preset="warp9")
