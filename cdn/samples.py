"""Generate sample videos with ffmpeg's lavfi test sources, so nothing is downloaded.

Used by `cdn up` (a 60 s sample when the catalogue is empty), the benchmarks (a 60 s 1080p30 clip)
and the tests (clips of a few seconds at small sizes).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from cdn.ffmpeg import ffmpeg_exe

__all__ = ["generate_clip", "sample_clip_args"]


def sample_clip_args(
    output: Path,
    *,
    seconds: float,
    width: int,
    height: int,
    fps: int = 30,
    audio: bool = True,
    pattern: str = "testsrc2",
) -> list[str]:
    """Return the ffmpeg argv that writes an H.264/AAC MP4 test clip (pure: no I/O)."""
    if seconds <= 0 or width <= 0 or height <= 0 or fps <= 0:
        raise ValueError(f"bad clip geometry: {seconds=} {width=} {height=} {fps=}")
    args = [
        ffmpeg_exe(),
        "-hide_banner",
        "-loglevel",
        "error",
        "-nostdin",
        "-y",
        "-f",
        "lavfi",
        "-i",
        f"{pattern}=size={width}x{height}:rate={fps}:duration={seconds}",
    ]
    if audio:
        args += [
            "-f",
            "lavfi",
            "-i",
            f"sine=frequency=440:beep_factor=4:sample_rate=48000:duration={seconds}",
        ]
    args += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", str(fps)]
    if audio:
        args += ["-c:a", "aac", "-b:a", "96k"]
    args += ["-movflags", "+faststart", "-t", str(seconds), "file:" + str(output)]
    return args


def generate_clip(
    output: Path,
    *,
    seconds: float = 4,
    width: int = 320,
    height: int = 180,
    fps: int = 30,
    audio: bool = True,
    pattern: str = "testsrc2",
) -> Path:
    """Write a test clip to `output` and return it; raise subprocess.CalledProcessError on failure."""
    output.parent.mkdir(parents=True, exist_ok=True)
    args = sample_clip_args(
        output, seconds=seconds, width=width, height=height, fps=fps, audio=audio, pattern=pattern
    )
    subprocess.run(args, check=True, capture_output=True, timeout=600)
    return output
