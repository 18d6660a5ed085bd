"""Media probing without ffprobe: parse what `ffmpeg -i FILE` prints, and check the input decodes.

The imageio-ffmpeg binary ships no ffprobe, so `probe()` runs `ffmpeg -hide_banner -nostdin -i
file:PATH` (which prints the input's description and exits) and `parse_probe_output()` turns that
text into a MediaInfo (pure, tested on captured outputs). `check_tail_decodes()` decodes the last
seconds of the video to catch truncated files whose header still announces the full duration.
Every input reaches ffmpeg through `input_args()`: the `file:` protocol only, a list of container
demuxers (no playlists such as HLS or ffconcat that could open other files), so a crafted input can
neither read other files nor reach the network.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from cdn.ffmpeg import ffmpeg_exe
from origin.errors import InputError

__all__ = [
    "ALLOWED_DEMUXERS",
    "MediaInfo",
    "VideoStream",
    "check_tail_decodes",
    "input_args",
    "input_options",
    "input_url",
    "parse_probe_output",
    "probe",
    "resolve_input",
]

# Container demuxers we accept. Deliberately absent: hls, dash, concat, image2 and every other
# demuxer that follows references to other files or URLs.
ALLOWED_DEMUXERS = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,mpegts,mpeg,flv,ogg,asf,mxf,nut"
PROBE_TIMEOUT = 60.0
TAIL_SECONDS = 2.0
MIN_DIMENSION = 16

_URL_PREFIX = re.compile(
    r"^(?:[A-Za-z][A-Za-z0-9+.\-]*:|subfile,)", re.IGNORECASE
)  # how ffmpeg spots a protocol
_INPUT = re.compile(r"^Input #0, (?P<fmt>.+?), from '")
_DURATION = re.compile(r"^\s*Duration: (?P<d>N/A|(?P<h>\d+):(?P<m>\d\d):(?P<s>\d\d(?:\.\d+)?))")
_STREAM = re.compile(r"^\s*Stream #0:\d+\S*: (?P<kind>Video|Audio|Subtitle|Data|Attachment): (?P<rest>.*)$")
_CODEC = re.compile(r"^(?P<codec>[A-Za-z0-9_]+)")
_SIZE = re.compile(
    r"(?:^|[ ,])(?P<w>\d{1,5})x(?P<h>\d{1,5})(?=[ ,]|$)(?: \[SAR (?P<sn>\d+):(?P<sd>\d+) DAR \d+:\d+\])?"
)
_SAR = re.compile(r"SAR (\d+):(\d+) DAR \d+:\d+")
_FPS = re.compile(r"(?:^|, )(?P<v>\d+(?:\.\d+)?)(?P<k>k?) (?P<unit>fps|tbr)\b")
_ROTATION = re.compile(r"(?:Display Matrix|displaymatrix): rotation of (?P<deg>-?\d+(?:\.\d+)?) degrees")
_NTSC = {
    Fraction("23.98"): Fraction(24000, 1001),
    Fraction("29.97"): Fraction(30000, 1001),
    Fraction("59.94"): Fraction(60000, 1001),
    Fraction("47.95"): Fraction(48000, 1001),
    Fraction("119.88"): Fraction(120000, 1001),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class VideoStream:
    """The first real video stream as ffmpeg will decode it (after auto-rotation)."""

    codec: str
    width: int
    height: int
    sar: Fraction = Fraction(1)
    fps: Fraction | None = None
    rotation: int = 0
    index: int = 0  # position among the input's video streams: ffmpeg's `0:v:INDEX`

    @property
    def display_aspect(self) -> Fraction:
        """Display aspect ratio width * SAR / height."""
        return self.width * self.sar / self.height


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaInfo:
    """What the probe learnt: container, duration (s, None if unknown), video stream, audio presence."""

    format_name: str
    duration: float | None
    video: VideoStream | None
    has_audio: bool
    audio_codec: str | None = None


def _parse_duration(line: str) -> float | None:
    m = _DURATION.match(line)
    if not m or m.group("d") == "N/A":
        return None
    return int(m.group("h")) * 3600 + int(m.group("m")) * 60 + float(m.group("s"))


def _parse_fps(rest: str) -> Fraction | None:
    """Frame rate from `30 fps` (preferred) or `30 tbr`; 29.97 and friends become NTSC fractions."""
    found = {m.group("unit"): m for m in _FPS.finditer(rest)}
    m = found.get("fps") or found.get("tbr")
    if m is None:
        return None
    value = Fraction(m.group("v")) * (1000 if m.group("k") else 1)
    return _NTSC.get(value, value) if value > 0 else None


def _parse_video(rest: str, rotation: int, index: int) -> VideoStream | None:
    size = _SIZE.search(rest)
    codec = _CODEC.match(rest)
    if size is None or codec is None or "(attached pic)" in rest:
        return None
    width, height = int(size.group("w")), int(size.group("h"))
    # `WxH [SAR a:b DAR c:d], SAR e:f DAR g:h`: the second pair is the container's, which ffmpeg prefers
    sars = _SAR.findall(rest[size.start() :])
    sar = Fraction(int(sars[-1][0]), int(sars[-1][1])) if sars and int(sars[-1][1]) else Fraction(1)
    if sar <= 0:
        sar = Fraction(1)
    if rotation % 180:
        width, height, sar = height, width, 1 / sar
    return VideoStream(
        codec=codec.group("codec"),
        width=width,
        height=height,
        sar=sar,
        fps=_parse_fps(rest),
        rotation=rotation,
        index=index,
    )


def _rotation_after(lines: list[str], index: int) -> int:
    """The display-matrix rotation in the side data following stream line `index`, in degrees."""
    for line in lines[index + 1 :]:
        if _STREAM.match(line) or not line.startswith("    "):
            break
        m = _ROTATION.search(line)
        if m:
            return round(float(m.group("deg"))) % 360
    return 0


def _pick_video(candidates: list[tuple[bool, VideoStream | None]]) -> VideoStream | None:
    """The stream to package: default-flagged first, then the largest picture; cover art never."""
    real = [(default, v) for default, v in candidates if v is not None]
    if not real:
        return None
    return max(real, key=lambda item: (item[0], item[1].width * item[1].height, -item[1].index))[1]


def parse_probe_output(text: str) -> MediaInfo:
    """Parse the stderr of `ffmpeg -hide_banner -i FILE` into a MediaInfo; raise InputError on failure."""
    lines = text.splitlines()
    fmt = next((m.group("fmt") for m in map(_INPUT.match, lines) if m), None)
    if fmt is None:
        raise InputError(f"not a video file ffmpeg can read ({_error_reason(lines)})")
    duration = next((_parse_duration(line) for line in lines if _DURATION.match(line)), None)
    candidates: list[tuple[bool, VideoStream | None]] = []
    audio_codec: str | None = None
    for index, line in enumerate(lines):
        m = _STREAM.match(line)
        if not m:
            continue
        if m.group("kind") == "Video":
            parsed = _parse_video(m.group("rest"), _rotation_after(lines, index), len(candidates))
            candidates.append(("(default)" in m.group("rest"), parsed))
        elif m.group("kind") == "Audio" and audio_codec is None:
            codec = _CODEC.match(m.group("rest"))
            audio_codec = codec.group("codec") if codec else "unknown"
    video = _pick_video(candidates)
    return MediaInfo(
        format_name=fmt,
        duration=duration,
        video=video,
        has_audio=audio_codec is not None,
        audio_codec=audio_codec,
    )


def _error_reason(lines: list[str]) -> str:
    """The most telling error line ffmpeg printed, without its `[in#0 @ 0x...]` prefix."""
    interesting = [re.sub(r"^\[[^\]]*\]\s*", "", line).strip() for line in lines if line.strip()]
    interesting = [line for line in interesting if not line.startswith("At least one output")]
    for key in (
        "not on whitelist",
        "moov atom not found",
        "Unsafe file name",
        "No such file",
        "Permission denied",
        "Invalid data found",
    ):
        for line in interesting:
            if key in line:
                if "not on whitelist" in key:
                    return "its container format is not one we accept (MP4/MOV, MKV/WebM, AVI, MPEG-TS/PS, FLV, ...)"
                return line
    return interesting[-1] if interesting else "no output from ffmpeg"


def resolve_input(raw: str | os.PathLike[str]) -> Path:
    """Resolve `raw` to the absolute path of a readable, non-empty regular local file.

    Names that ffmpeg could read as a protocol URL (`concat:`, `http:`, `subfile,`...) or as an
    option (a leading `-`) are refused. Raises InputError with the reason.
    """
    text = os.fspath(raw)
    if not text or "\x00" in text:
        raise InputError("the input path is empty or contains a NUL byte", path=text)
    if _URL_PREFIX.match(text):
        raise InputError(
            f"{text!r} looks like a URL or an ffmpeg protocol; give the path of a local file "
            f"(write ./{text} for a local file with that name)",
            path=text,
        )
    path = Path(text).expanduser().resolve()
    try:
        st = path.stat()
    except OSError as exc:
        raise InputError(f"cannot open {text!r}: {exc.strerror or exc}", path=text) from exc
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{text!r} is not a regular file", path=text)
    if st.st_size == 0:
        raise InputError(f"{text!r} is empty (zero length)", path=text)
    if not os.access(path, os.R_OK):
        raise InputError(f"{text!r} is not readable (permission denied)", path=text)
    return path


def input_options(path: Path) -> dict[str, str]:
    """ffmpeg input options that lock reading `path` to the local file and accepted containers."""
    if not path.is_absolute():
        raise InputError(f"internal: input path {path} must be absolute", path=str(path))
    return {"protocol_whitelist": "file", "format_whitelist": ALLOWED_DEMUXERS}


def input_url(path: Path) -> str:
    """The input as ffmpeg must see it: `file:` + absolute path (never a protocol, never an option)."""
    if not path.is_absolute():
        raise InputError(f"internal: input path {path} must be absolute", path=str(path))
    return f"file:{path}"


def input_args(path: Path) -> list[str]:
    """The ffmpeg input options and `-i` for `path` (absolute), locked to local files and containers."""
    flat = [item for key, value in input_options(path).items() for item in (f"-{key}", value)]
    return [*flat, "-i", input_url(path)]


def probe(path: Path) -> MediaInfo:
    """Describe the media file at `path` (absolute, from resolve_input); raise InputError if unusable."""
    argv = [ffmpeg_exe(), "-hide_banner", "-nostdin", *input_args(path)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=PROBE_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        raise InputError(
            f"probing {path.name} took longer than {PROBE_TIMEOUT:.0f} s", path=str(path)
        ) from exc
    try:
        info = parse_probe_output(done.stderr)
    except InputError as exc:
        raise InputError(f"{path.name}: {exc}", path=str(path)) from None
    if info.video is None:
        raise InputError(f"{path.name} has no video stream (found {info.format_name})", path=str(path))
    if info.duration is None or info.duration <= 0:
        raise InputError(
            f"{path.name} has no usable duration (zero length or not a video file)", path=str(path)
        )
    if min(info.video.width, info.video.height) < MIN_DIMENSION:
        raise InputError(
            f"{path.name} has a {info.video.width}x{info.video.height} picture: too small to package "
            f"(at least {MIN_DIMENSION}x{MIN_DIMENSION})",
            path=str(path),
        )
    return info


def _tail_args(path: Path, tail: float, video_index: int) -> list[str]:
    return [
        ffmpeg_exe(),
        "-hide_banner",
        "-nostdin",
        "-v",
        "error",
        "-xerror",
        "-nostats",
        "-progress",
        "pipe:1",
        "-sseof",
        f"-{tail:.3f}",
        *input_args(path),
        "-map",
        f"0:v:{video_index}",
        "-map",
        "0:a:0?",  # the container's duration may be the audio's, longer than the video
        "-f",
        "null",
        "-",
    ]


def check_tail_decodes(path: Path, info: MediaInfo) -> None:
    """Decode the last seconds of the input; raise InputError if they are missing or corrupt.

    The decoded length is the longest stream's (video or first audio), as the announced duration is.
    """
    duration = info.duration or 0.0
    tail = min(TAIL_SECONDS, duration)
    try:
        done = subprocess.run(
            _tail_args(path, tail, info.video.index if info.video else 0),
            capture_output=True,
            text=True,
            errors="replace",
            timeout=PROBE_TIMEOUT,
        )
    except subprocess.TimeoutExpired as exc:
        raise InputError(f"decoding the end of {path.name} took too long", path=str(path)) from exc
    decoded = last_out_time(done.stdout)
    if done.returncode != 0 or decoded < tail - max(0.5, 0.25 * tail):
        reason = (
            _error_reason(done.stderr.splitlines()) if done.stderr.strip() else "its last frames are missing"
        )
        raise InputError(
            f"{path.name} looks truncated or corrupt: decoding its last {tail:.1f} s of {duration:.1f} s "
            f"gave {decoded:.2f} s ({reason})",
            path=str(path),
        )


def last_out_time(progress_text: str) -> float:
    """The last `out_time_us` (as seconds) in ffmpeg `-progress` output, 0.0 when there is none."""
    values = re.findall(r"^out_time_us=(\d+)\s*$", progress_text, flags=re.MULTILINE)
    return int(values[-1]) / 1e6 if values else 0.0
