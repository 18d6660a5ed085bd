"""The one ffmpeg command that packages a video: graph built with ffmpeg-python, argv returned (pure).

Plan: decode the input once, make it constant frame rate, `split` it into one branch per rendition,
`scale` each branch and set the exact SAR that keeps the display aspect identical, encode each
with libx264 at its bitrate, and the first audio track with AAC; the dash muxer writes fMP4 init and
media segments with a SegmentTemplate ($Number$) manifest, video and audio in separate
AdaptationSets. With `layout="single-file"` it writes one fMP4 per Representation instead, indexed
by one sidx (`media-N.mp4`, the on-demand profile; see origin.mpd_single).

Closed, aligned GOPs: every rendition gets a keyframe on exactly the same frames (every
`gop_frames` frames, forced by frame number, scene-cut detection off, closed GOPs, fixed keyint),
and the dash muxer cuts a segment at each of those keyframes. So every chunk of every rendition
starts with a keyframe at the same presentation time and lasts exactly `gop_frames` frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal, get_args

import ffmpeg

from origin.errors import ConfigError
from origin.ladder import Rendition
from origin.mpd_single import SINGLE_FILE_TEMPLATE
from origin.probe import input_options, input_url

__all__ = [
    "DEFAULT_PRESET",
    "INIT_TEMPLATE",
    "MANIFEST_NAME",
    "MEDIA_TEMPLATE",
    "PRESETS",
    "LAYOUTS",
    "EncodeSettings",
    "Layout",
    "build_package_argv",
    "gop_frames",
    "output_fps",
]

MANIFEST_NAME = "manifest.mpd"
INIT_TEMPLATE = "init-$RepresentationID$.$ext$"
MEDIA_TEMPLATE = "chunk-$RepresentationID$-$Number%05d$.$ext$"
DEFAULT_PRESET = "veryfast"
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
# "segments": one init + one file per chunk, SegmentTemplate $Number$ (the live profile);
# "single-file": one fMP4 per Representation with a sidx, SegmentBase byte ranges (on-demand profile).
Layout = Literal["segments", "single-file"]
LAYOUTS: tuple[Layout, ...] = get_args(Layout)
FALLBACK_FPS = Fraction(30)
MAX_FPS = Fraction(120)
STANDARD_FPS = tuple(
    [Fraction(n) for n in (10, 12, 15, 24, 25, 30, 48, 50, 60, 90, 100, 120)]
    + [Fraction(n * 1000, 1001) for n in (24, 30, 48, 60, 120)]
)


@dataclass(frozen=True, slots=True, kw_only=True)
class EncodeSettings:
    """Encoder settings shared by every rendition of one package."""

    segment_seconds: int
    preset: str = DEFAULT_PRESET
    layout: Layout = "segments"
    audio_bitrate: int = 128_000
    audio_channels: int = 2
    audio_sample_rate: int = 48_000
    maxrate_factor: Fraction = Fraction(3, 2)
    bufsize_factor: Fraction = Fraction(2)

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ConfigError(f"x264 preset {self.preset!r} is not one of {', '.join(PRESETS)}")
        if self.layout not in LAYOUTS:
            raise ConfigError(f"package layout {self.layout!r} is not one of {', '.join(LAYOUTS)}")
        if self.segment_seconds <= 0:
            raise ConfigError(f"segment duration {self.segment_seconds} s must be positive")


def output_fps(source_fps: Fraction | None) -> Fraction:
    """The constant frame rate we encode at, from the source's average rate.

    A rate within 2 % of a standard one (24, 25, 30, 50, 60, their NTSC 1000/1001 variants, ...)
    becomes that rate, as variable-frame-rate phone videos report e.g. 29.83; other rates are
    rounded to whole frames per second; unknown or implausible ones become 30.
    """
    if source_fps is None or not 1 <= source_fps <= MAX_FPS:
        return FALLBACK_FPS
    nearest = min(STANDARD_FPS, key=lambda rate: abs(rate - source_fps))
    if abs(nearest - source_fps) <= nearest * Fraction(2, 100):
        return nearest
    return Fraction(max(1, round(source_fps)))


def gop_frames(fps: Fraction, segment_seconds: int) -> int:
    """Frames per segment (and GOP): the whole number of frames nearest `segment_seconds`."""
    return max(1, round(fps * segment_seconds))


def _video_options(index: int, rendition: Rendition, settings: EncodeSettings) -> dict[str, Any]:
    return {
        f"b:v:{index}": str(rendition.bitrate),
        f"maxrate:v:{index}": str(round(rendition.bitrate * settings.maxrate_factor)),
        f"bufsize:v:{index}": str(round(rendition.bitrate * settings.bufsize_factor)),
    }


def _encoder_options(gop: int, settings: EncodeSettings) -> dict[str, Any]:
    x264 = f"keyint={gop}:min-keyint={gop}:scenecut=0:open-gop=0"
    return {
        "c:v": "libx264",
        "preset:v": settings.preset,
        "pix_fmt": "yuv420p",
        "g": str(gop),
        "keyint_min": str(gop),
        "sc_threshold": "0",
        "forced-idr:v": "1",  # forced keyframes are IDR frames: each chunk decodes on its own
        "force_key_frames": f"expr:eq(mod(n,{gop}),0)",
        "x264-params:v": x264,
    }


def _audio_options(settings: EncodeSettings) -> dict[str, Any]:
    return {
        "c:a": "aac",
        "b:a": str(settings.audio_bitrate),
        "ac": str(settings.audio_channels),
        "ar": str(settings.audio_sample_rate),
    }


def _layout_options(layout: Layout) -> dict[str, Any]:
    if layout == "segments":
        return {"single_file": "0", "init_seg_name": INIT_TEMPLATE, "media_seg_name": MEDIA_TEMPLATE}
    # One fragment per segment as before, plus one global sidx after the moov indexing all of them;
    # without global_sidx ffmpeg writes a sidx per fragment and no SegmentBase@indexRange is possible.
    return {"single_file": "1", "global_sidx": "1", "single_file_name": SINGLE_FILE_TEMPLATE}


def _dash_options(segment: Fraction, has_audio: bool, layout: Layout = "segments") -> dict[str, Any]:
    sets = "id=0,streams=v id=1,streams=a" if has_audio else "id=0,streams=v"
    return {
        "f": "dash",
        "seg_duration": f"{float(segment):.6f}",
        "use_template": "1",
        "use_timeline": "0",
        **_layout_options(layout),
        "dash_segment_type": "mp4",
        "adaptation_sets": sets,
        "map_metadata": "-1",
        "map_chapters": "-1",
        "shortest": None,
        "protocol_whitelist": "file",  # the muxer writes local files only
    }


def _scaled(stream: Any, rendition: Rendition) -> Any:
    """Scale one branch and pin its SAR exactly (setsar's default `max=100` would round 1280:1281)."""
    sar = rendition.sar
    scaled = stream.filter("scale", rendition.width, rendition.height)
    return scaled.filter(
        "setsar", r=f"{sar.numerator}/{sar.denominator}", max=max(sar.numerator, sar.denominator, 1)
    )


def build_package_argv(
    *,
    ffmpeg_path: str,
    input_path: Path,
    output_dir: Path,
    renditions: tuple[Rendition, ...],
    source_fps: Fraction | None,
    has_audio: bool,
    settings: EncodeSettings,
    video_index: int = 0,
) -> list[str]:
    """The full argv of the packaging run, writing `output_dir/manifest.mpd` and its segments.

    `video_index` picks the input's video stream (`0:v:N`; cover art may come first). Progress is
    written as `key=value` blocks on stdout (`-progress pipe:1`).
    """
    if not renditions:
        raise ConfigError("cannot package with no renditions")
    fps = output_fps(source_fps)
    gop = gop_frames(fps, settings.segment_seconds)
    source = ffmpeg.input(input_url(input_path), **input_options(input_path))
    branches = source[f"v:{video_index}"].filter("fps", fps=f"{fps.numerator}/{fps.denominator}").split()
    streams = [_scaled(branches[i], r) for i, r in enumerate(renditions)]
    if has_audio:  # padded with silence; -shortest then ends every stream with the video
        streams.append(source["a:0"].filter("apad"))
    options: dict[str, Any] = {
        **_encoder_options(gop, settings),
        **_dash_options(gop / fps, has_audio, settings.layout),
    }
    for index, rendition in enumerate(renditions):
        options.update(_video_options(index, rendition, settings))
    if has_audio:
        options.update(_audio_options(settings))
    out = ffmpeg.output(*streams, f"file:{output_dir / MANIFEST_NAME}", **options)
    head = [
        ffmpeg_path,
        "-hide_banner",
        "-nostdin",
        "-y",
        "-v",
        "error",
        "-nostats",
        "-progress",
        "pipe:1",
        "-stats_period",
        "0.5",
    ]
    argv: list[str] = out.compile(cmd=head)
    return argv
