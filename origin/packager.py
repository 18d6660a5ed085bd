"""Package one video into the store: probe, one ffmpeg run, measure, fix the MPD, publish atomically.

This is the I/O shell around the pure parts (ladder, ffmpeg_args, progress, mpd, fmp4). The
package is built in a hidden temporary folder inside the store (`STORE/.tmp-ID-xxxx`), so the final
rename stays on one filesystem and is atomic; readers see either the old complete package or the
new one, never a half-written folder. Any failure removes the temporary folder and raises a
PackagingError subclass saying why.
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import IO, Any

from cdn.ffmpeg import ffmpeg_exe
from origin.errors import ConfigError, EncodeError, InvalidVideoId, ManifestError, PublishError
from origin.ffmpeg_args import (
    DEFAULT_PRESET,
    MANIFEST_NAME,
    EncodeSettings,
    Layout,
    build_package_argv,
    gop_frames,
    output_fps,
)
from origin.ladder import DEFAULT_LADDER, Ladder, Rendition, plan_renditions
from origin.measure import measure_segments, measure_single_files
from origin.mpd import RepresentationStats, rewrite_mpd, validate_mpd
from origin.mpd_single import SingleFileLayout
from origin.probe import MediaInfo, check_tail_decodes, probe, resolve_input
from origin.progress import PackagingProgress, ProgressParser
from origin.publish import publish_dir

__all__ = [
    "MAX_SEGMENT_SECONDS",
    "MIN_SEGMENT_SECONDS",
    "PACKAGE_JSON",
    "PackageSummary",
    "RenditionSummary",
    "package",
    "validate_segment_seconds",
    "validate_single_file_chunks",
    "validate_video_id",
]

log = logging.getLogger(__name__)

MIN_SEGMENT_SECONDS = 2
MAX_SEGMENT_SECONDS = 10
PACKAGE_JSON = "package.json"
MAX_SIDX_REFERENCES = 0xFFFF
_VIDEO_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")
_STDERR_TAIL = 2000


@dataclass(frozen=True, slots=True, kw_only=True)
class RenditionSummary:
    """One published Representation (video or audio) and what it weighs."""

    id: str
    kind: str
    width: int
    height: int
    bandwidth: int
    codecs: str
    frame_rate: float | None
    chunks: int
    bytes: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PackageSummary:
    """The outcome of one successful `package()` call."""

    video_id: str
    path: Path
    duration: float
    segment_seconds: int
    chunks: int
    audio: bool
    renditions: tuple[RenditionSummary, ...]
    total_bytes: int
    wall_seconds: float

    @property
    def speed_x_realtime(self) -> float:
        """Seconds of video packaged per second of wall time."""
        return self.duration / self.wall_seconds if self.wall_seconds > 0 else 0.0


def validate_video_id(video_id: str) -> str:
    """Return `video_id` if it is a safe slug ([A-Za-z0-9._-], no leading dot, 1-64 chars)."""
    if not isinstance(video_id, str) or not _VIDEO_ID.match(video_id):
        raise InvalidVideoId(
            f"video id {video_id!r} is not a safe slug: use 1-64 characters from A-Z a-z 0-9 . _ -, "
            "not starting with a dot"
        )
    return video_id


def validate_segment_seconds(value: int) -> int:
    """Return `value` if it is a whole number of seconds in 2..10; raise ConfigError otherwise."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not (MIN_SEGMENT_SECONDS <= value <= MAX_SEGMENT_SECONDS)
    ):
        raise ConfigError(
            f"segment duration {value!r} s is not allowed: choose a whole number of seconds from "
            f"{MIN_SEGMENT_SECONDS} to {MAX_SEGMENT_SECONDS} (the default is 8)"
        )
    return value


def validate_single_file_chunks(duration: float, segment_seconds: int) -> None:
    """Raise ConfigError when a single-file package would need more chunks than one sidx can index.

    A sidx counts its references in 16 bits (ISO/IEC 14496-12 §8.16.3): at most 65535 chunks,
    about 36 hours at 2 s chunks.
    """
    chunks = math.ceil(duration / segment_seconds)
    if chunks > MAX_SIDX_REFERENCES:
        raise ConfigError(
            f"--single-file cannot index {chunks} chunks of {segment_seconds} s (a sidx holds at most "
            f"{MAX_SIDX_REFERENCES}): use longer chunks (--segment-seconds) or the default layout"
        )


def _stderr_tail(handle: IO[bytes]) -> str:
    handle.seek(0)
    text = handle.read().decode("utf-8", "replace").strip()
    return text[-_STDERR_TAIL:]


def encode_timeout(duration: float) -> float:
    """Seconds the packaging run may take before it is killed: generous (30x the input's duration)."""
    return 120.0 + 30.0 * max(duration, 0.0)


def _run_ffmpeg(
    argv: list[str], duration: float, progress: Callable[[PackagingProgress], None] | None
) -> float:
    """Run the packaging ffmpeg, reporting progress; return the seconds of output it encoded."""
    parser = ProgressParser(duration)
    limit = encode_timeout(duration)
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors, text=True, errors="replace"
        )
        timed_out = threading.Event()

        def stop() -> None:
            timed_out.set()
            proc.kill()

        watchdog = threading.Timer(limit, stop)  # reading stdout has no timeout of its own
        watchdog.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                update = parser.feed(line)
                if update is not None and progress is not None:
                    progress(update)
            returncode = proc.wait()
        finally:
            watchdog.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        if timed_out.is_set():
            raise EncodeError(f"ffmpeg took longer than {limit:.0f} s and was stopped", returncode=returncode)
        if returncode != 0:
            tail = _stderr_tail(errors)
            last = tail.splitlines()[-1] if tail else "no error message"
            raise EncodeError(
                f"ffmpeg failed (exit {returncode}): {last}", returncode=returncode, stderr_tail=tail
            )
    return parser.last_out_time


def _rendition_summaries(
    stats: dict[str, RepresentationStats], fps: Fraction
) -> tuple[RenditionSummary, ...]:
    out = []
    for rep, s in sorted(stats.items(), key=lambda kv: int(kv[0])):
        video = s.handler == "vide"
        out.append(
            RenditionSummary(
                id=rep,
                kind="video" if video else "audio",
                width=s.width,
                height=s.height,
                bandwidth=s.peak_bandwidth,
                codecs=s.codecs,
                frame_rate=round(float(fps), 3) if video else None,
                chunks=s.chunks,
                bytes=s.bytes,
            )
        )
    return tuple(out)


def package_document(summary: PackageSummary, created: datetime) -> dict[str, Any]:
    """The `package.json` document (docs/architecture.md) for a summary (pure)."""
    return {
        "id": summary.video_id,
        "duration": summary.duration,
        "segment_seconds": summary.segment_seconds,
        "chunks": summary.chunks,
        "audio": summary.audio,
        "renditions": [
            {
                "id": r.id,
                "width": r.width,
                "height": r.height,
                "bandwidth": r.bandwidth,
                "codecs": r.codecs,
                "frame_rate": r.frame_rate,
            }
            for r in summary.renditions
            if r.kind == "video"
        ],
        "created": created.isoformat(timespec="seconds").replace("+00:00", "Z"),
    }


def _finish_manifest(
    folder: Path,
    *,
    stats: dict[str, RepresentationStats],
    fps: Fraction,
    segment: Fraction,
    renditions: tuple[Rendition, ...],
    video_id: str,
    duration: Fraction,
    single_files: dict[str, SingleFileLayout] | None,
) -> None:
    """Rewrite the MPD in `folder` with the measured values and validate it."""
    sars = {str(i): r.sar for i, r in enumerate(renditions)}
    manifest = folder / MANIFEST_NAME
    if not manifest.is_file():
        raise ManifestError("ffmpeg wrote no manifest.mpd")
    xml = rewrite_mpd(
        manifest.read_bytes(),
        stats=stats,
        fps=fps,
        segment=segment,
        duration=duration,
        sars=sars,
        display_aspect=renditions[0].display_aspect,
        title=video_id,
        single_files=single_files,
    )
    validate_mpd(xml)
    manifest.write_bytes(xml)


def _build(
    path: Path,
    info: MediaInfo,
    folder: Path,
    *,
    video_id: str,
    renditions: tuple[Rendition, ...],
    settings: EncodeSettings,
    progress: Callable[[PackagingProgress], None] | None,
    started: float,
) -> PackageSummary:
    assert info.video is not None
    argv = build_package_argv(
        ffmpeg_path=ffmpeg_exe(),
        input_path=path,
        output_dir=folder,
        renditions=renditions,
        source_fps=info.video.fps,
        has_audio=info.has_audio,
        settings=settings,
        video_index=info.video.index,
    )
    log.debug("packaging argv: %s", argv)
    # The encode may end before the announced duration legitimately (audio longer than the video is
    # cut by -shortest); truncation was caught before by check_tail_decodes.
    _run_ffmpeg(argv, info.duration or 0.0, progress)
    fps = output_fps(info.video.fps)
    segment = Fraction(gop_frames(fps, settings.segment_seconds)) / fps
    single_files = None
    if settings.layout == "single-file":
        stats, duration, single_files = measure_single_files(folder, segment)
    else:
        stats, duration = measure_segments(folder, segment)
    _finish_manifest(
        folder,
        stats=stats,
        fps=fps,
        segment=segment,
        renditions=renditions,
        video_id=video_id,
        duration=duration,
        single_files=single_files,
    )
    summary = PackageSummary(
        video_id=video_id,
        path=folder,
        duration=round(float(duration), 3),
        segment_seconds=settings.segment_seconds,
        chunks=max(s.chunks for s in stats.values() if s.handler == "vide"),
        audio=any(s.handler == "soun" for s in stats.values()),
        renditions=_rendition_summaries(stats, fps),
        total_bytes=sum(s.bytes for s in stats.values()),
        wall_seconds=time.monotonic() - started,
    )
    document = package_document(summary, datetime.now(UTC))
    (folder / PACKAGE_JSON).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return summary


def package(
    input_path: Path,
    *,
    video_id: str,
    store: Path,
    segment_seconds: int = 8,
    ladder: Ladder | None = None,
    progress: Callable[[PackagingProgress], None] | None = None,
    preset: str = DEFAULT_PRESET,
    layout: Layout = "segments",
) -> PackageSummary:
    """Package `input_path` as `store/video_id/` (manifest.mpd, segments, package.json).

    `layout="single-file"` writes one `media-N.mp4` per Representation (SegmentBase byte ranges,
    the on-demand profile) instead of an init segment and one file per chunk.

    Raises ConfigError (bad id, segment duration, preset or ladder), InputError (the input cannot be
    packaged), EncodeError, ManifestError or PublishError; on any failure nothing is published and
    an existing package with that id is left untouched.
    """
    started = time.monotonic()
    validate_video_id(video_id)
    settings = EncodeSettings(
        segment_seconds=validate_segment_seconds(segment_seconds), preset=preset, layout=layout
    )
    path = resolve_input(input_path)
    info = probe(path)
    if layout == "single-file":
        validate_single_file_chunks(info.duration or 0.0, settings.segment_seconds)
    check_tail_decodes(path, info)
    assert info.video is not None
    renditions = plan_renditions(
        ladder or DEFAULT_LADDER, width=info.video.width, height=info.video.height, sar=info.video.sar
    )
    folder = _make_build_folder(Path(store), video_id)
    try:
        summary = _build(
            path,
            info,
            folder,
            video_id=video_id,
            renditions=renditions,
            settings=settings,
            progress=progress,
            started=started,
        )
        final = Path(store) / video_id
        folder.chmod(0o755)
        publish_dir(folder, final)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    summary = replace(summary, path=final, wall_seconds=time.monotonic() - started)
    log.info("packaged %s as %s in %.1f s", path.name, final, summary.wall_seconds)
    return summary


def _make_build_folder(store: Path, video_id: str) -> Path:
    """Create the store (if needed) and a hidden build folder inside it, on the same filesystem."""
    try:
        store.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".tmp-{video_id}-", dir=store))
    except OSError as exc:
        raise PublishError(f"cannot write to the store {store}: {exc.strerror or exc}") from exc
