"""Where the ffmpeg binary comes from.

The system's `ffmpeg` when present on PATH, otherwise the binary shipped inside the imageio-ffmpeg
wheel (no ffprobe there, so nothing in the project may need ffprobe). `CDN_FFMPEG` overrides both.
Run `python -m cdn.ffmpeg` to see which one is used.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys

__all__ = ["FFmpegNotFound", "ffmpeg_exe", "ffmpeg_version"]


class FFmpegNotFound(RuntimeError):
    """Raised when no ffmpeg binary can be found."""


@functools.cache
def ffmpeg_exe() -> str:
    """Return the absolute path of the ffmpeg binary to use; raise FFmpegNotFound if none."""
    override = os.environ.get("CDN_FFMPEG")
    if override:
        if not os.access(override, os.X_OK):
            raise FFmpegNotFound(f"CDN_FFMPEG={override!r} is not an executable file")
        return override
    system = shutil.which("ffmpeg")
    if system:
        return system
    try:
        import imageio_ffmpeg
    except ImportError as exc:  # pragma: no cover - imageio-ffmpeg is a dependency
        raise FFmpegNotFound(
            "no ffmpeg on PATH and imageio-ffmpeg is not installed; run ./run.sh setup"
        ) from exc
    try:
        return str(imageio_ffmpeg.get_ffmpeg_exe())
    except RuntimeError as exc:
        raise FFmpegNotFound(
            f"no ffmpeg on PATH and imageio-ffmpeg has none for this platform: {exc}"
        ) from exc


@functools.cache
def ffmpeg_version() -> str:
    """Return the first line of `ffmpeg -version`."""
    out = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-version"], capture_output=True, text=True, check=True, timeout=30
    )
    return out.stdout.splitlines()[0] if out.stdout else "unknown"


def main() -> int:
    try:
        print(f"ffmpeg: {ffmpeg_exe()} ({ffmpeg_version()})")
    except (FFmpegNotFound, OSError, subprocess.SubprocessError) as exc:
        print(f"ffmpeg: not usable: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
