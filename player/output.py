"""`--output watched.mp4`: a playable MP4 of exactly what the player used.

While playing, `OutputRecorder` appends each chunk to a file of its rendition *run* (a run is a
stretch of consecutive chunks of one representation, written as init + chunks: a valid fragmented
MP4). At the end `finish()` joins the runs with ffmpeg: one run is remuxed with `-c copy`; several
runs (the bitrate switched) are scaled to one size and joined with the concat filter, re-encoding
the video (H.264 parameters differ between renditions, so a stream copy would not decode). The
audio, fetched at one fixed representation, is copied (joined and re-encoded only when several
periods restart its clock). Only files we wrote are read, with the protocol whitelist `file`.
The result is checked by decoding it.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cdn.ffmpeg import ffmpeg_exe
from player.errors import PlayerError

__all__ = ["OutputError", "OutputRecorder", "RunFile", "join_args", "verify_decodes"]

FFMPEG_TIMEOUT = 600.0


class OutputError(PlayerError):
    """Raised when the watched video cannot be written or does not decode."""


@dataclass(frozen=True, slots=True)
class RunFile:
    """One run of same-representation chunks on disk (init + chunks)."""

    path: Path
    representation: str
    width: int
    height: int
    chunks: int


def join_args(runs: Sequence[RunFile], audio: Sequence[Path], output: Path) -> list[str]:
    """The ffmpeg argv joining the video `runs` and the `audio` runs into `output` (pure)."""
    args = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y"]
    for path in [*(r.path for r in runs), *audio]:
        args += ["-protocol_whitelist", "file", "-i", f"file:{path}"]
    graph: list[str] = []
    if len(runs) == 1:
        maps, codecs = ["-map", "0:v:0"], ["-c:v", "copy"]
    else:
        graph.append(_video_concat(runs))
        maps, codecs = (
            ["-map", "[v]"],
            ["-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p"],
        )
    if len(audio) == 1:
        maps += ["-map", f"{len(runs)}:a:0"]
        codecs += ["-c:a", "copy"]
    elif audio:  # one audio run per period: their clocks restart, so join them like the video
        graph.append(_audio_concat(len(runs), len(audio)))
        maps += ["-map", "[a]"]
        codecs += ["-c:a", "aac", "-b:a", "128k"]
    if graph:
        args += ["-filter_complex", ";".join(graph)]
    if audio:
        codecs.append("-shortest")
    return [*args, *maps, *codecs, "-movflags", "+faststart", f"file:{output}"]


def _video_concat(runs: Sequence[RunFile]) -> str:
    """Scale and pad every run to the largest size, restart its clock at 0, concatenate."""
    width = max(r.width for r in runs) // 2 * 2
    height = max(r.height for r in runs) // 2 * 2
    parts = [
        f"[{i}:v:0]scale={width}:{height}:force_original_aspect_ratio=decrease,"
        f"pad={width}:{height}:(ow-iw)/2:(oh-ih)/2,setsar=1,setpts=PTS-STARTPTS[v{i}]"
        for i in range(len(runs))
    ]
    inputs = "".join(f"[v{i}]" for i in range(len(runs)))
    return ";".join(parts) + f";{inputs}concat=n={len(runs)}:v=1:a=0[v]"


def _audio_concat(first: int, count: int) -> str:
    """Restart the clock of audio inputs first..first+count-1 at 0 and concatenate them."""
    parts = [f"[{first + i}:a:0]asetpts=PTS-STARTPTS[a{i}]" for i in range(count)]
    inputs = "".join(f"[a{i}]" for i in range(count))
    return ";".join(parts) + f";{inputs}concat=n={count}:v=0:a=1[a]"


def verify_decodes(path: Path) -> None:
    """Decode the whole file with ffmpeg; raise OutputError if it fails or reports an error."""
    args = [
        ffmpeg_exe(),
        "-hide_banner",
        "-loglevel",
        "error",
        "-nostdin",
        "-xerror",
        "-protocol_whitelist",
        "file",
        "-i",
        f"file:{path}",
        "-f",
        "null",
        "-",
    ]
    done = subprocess.run(args, capture_output=True, text=True, timeout=FFMPEG_TIMEOUT, check=False)
    if done.returncode != 0 or done.stderr.strip():
        raise OutputError(f"{path} does not decode cleanly: {done.stderr.strip()[:500] or done.returncode}")


def _with_size(run: RunFile) -> RunFile:
    """`run` with its frame size read from the file when the MPD did not give it (@width/@height are optional)."""
    if run.width > 0 and run.height > 0:
        return run
    args = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-protocol_whitelist", "file", "-i", f"file:{run.path}"]
    try:  # without an output ffmpeg exits 1 after printing the stream list, which is all we need
        done = subprocess.run(args, capture_output=True, text=True, timeout=FFMPEG_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise OutputError(f"ffmpeg could not read {run.path}: {exc}") from exc
    found = re.search(r"Video: .*?, (\d{1,5})x(\d{1,5})", done.stderr)
    if found is None:
        raise OutputError(
            f"no video size in {run.path} (representation {run.representation}): {done.stderr[-300:]}"
        )
    return RunFile(run.path, run.representation, int(found[1]), int(found[2]), run.chunks)


class OutputRecorder:
    """Collect the chunks the player used into run files; `finish(output)` writes the MP4."""

    def __init__(self, workdir: Path | None = None) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="cdn-player-", dir=workdir)
        self.dir = Path(self._tmp.name)
        self.runs: list[RunFile] = []
        self.audio: list[Path] = []
        self._audio_run = ""

    def __enter__(self) -> OutputRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Delete the run files."""
        self._tmp.cleanup()

    def add_video(self, representation: str, init: bytes, chunk: bytes, *, width: int, height: int) -> None:
        """Append `chunk`; a new representation starts a new run file with its init segment."""
        if not self.runs or self.runs[-1].representation != representation:
            path = self.dir / f"run-{len(self.runs):04d}.mp4"
            path.write_bytes(init)
            self.runs.append(RunFile(path, representation, width, height, 0))
        run = self.runs[-1]
        with run.path.open("ab") as f:
            f.write(chunk)
        self.runs[-1] = RunFile(run.path, run.representation, run.width, run.height, run.chunks + 1)

    def add_audio(self, init: bytes, chunk: bytes, *, run: str = "") -> None:
        """Append an audio chunk; a new `run` key (a new period) starts a new audio file."""
        if not self.audio or run != self._audio_run:
            self.audio.append(self.dir / f"audio-{len(self.audio):04d}.mp4")
            self.audio[-1].write_bytes(init)
            self._audio_run = run
        with self.audio[-1].open("ab") as f:
            f.write(chunk)

    def finish(self, output: Path) -> Path:
        """Write `output` and check that it decodes; raise OutputError."""
        if not self.runs:
            raise OutputError(f"no video chunk was played, so {output} cannot be written")
        output.parent.mkdir(parents=True, exist_ok=True)
        runs = [_with_size(r) for r in self.runs] if len(self.runs) > 1 else self.runs
        args = join_args(runs, self.audio, output.resolve())
        try:
            done = subprocess.run(args, capture_output=True, text=True, timeout=FFMPEG_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise OutputError(f"ffmpeg could not write {output}: {exc}") from exc
        if done.returncode != 0:
            raise OutputError(f"ffmpeg could not write {output}: {done.stderr.strip()[-800:]}")
        verify_decodes(output)
        return output
