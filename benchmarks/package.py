"""Benchmark: `origin.packager.package` against the equivalent hand-written ffmpeg command.

Generates (once, cached under var/bench/) a 60 s 1080p30 H.264/AAC clip, packages it with the
default ladder (5 renditions at 1080p) and 8 s chunks, then runs the same single ffmpeg command
written out by hand below (same filter graph, encoder and muxer settings, no probing, no MPD
post-processing, no validation, no atomic publish). Prints our wall time, the hand-written one,
their ratio (our overhead; target <= 1.05) and our speed in x realtime.

Usage: ./run.sh bench package [--rounds 2] [--preset veryfast]   (about 3 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cdn.ffmpeg import ffmpeg_exe, ffmpeg_version  # noqa: E402
from cdn.samples import generate_clip  # noqa: E402
from origin import mpd  # noqa: E402
from origin.ladder import DEFAULT_LADDER  # noqa: E402
from origin.packager import _measure, package  # noqa: E402
from origin.probe import check_tail_decodes, probe, resolve_input  # noqa: E402

BENCH = ROOT / "var" / "bench"
SECONDS, WIDTH, HEIGHT, FPS = 60, 1920, 1080, 30
SEGMENT = 8


def hand_written_argv(clip: Path, out: Path, preset: str) -> list[str]:
    """The single ffmpeg command a person would write for the same package (1080p30 source)."""
    gop = str(FPS * SEGMENT)
    graph = (
        "[0:v:0]fps=fps=30/1[f];[f]split=5[a][b][c][d][e];"
        "[a]scale=1920:1080,setsar=1/1[v0];[b]scale=1280:720,setsar=1/1[v1];"
        "[c]scale=854:480,setsar=r=1280/1281:max=1281[v2];[d]scale=640:360,setsar=1/1[v3];"
        "[e]scale=426:240,setsar=r=640/639:max=640[v4];[0:a:0]apad[a0]"
    )
    return [
        ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", "-v", "error", "-nostats",
        "-i", str(clip),
        "-filter_complex", graph,
        "-map", "[v0]", "-map", "[v1]", "-map", "[v2]", "-map", "[v3]", "-map", "[v4]", "-map", "[a0]", "-shortest",
        "-c:v", "libx264", "-preset:v", preset, "-pix_fmt", "yuv420p",
        "-g", gop, "-keyint_min", gop, "-sc_threshold", "0", "-forced-idr:v", "1",
        "-force_key_frames", f"expr:eq(mod(n,{gop}),0)",
        "-x264-params:v", f"keyint={gop}:min-keyint={gop}:scenecut=0:open-gop=0",
        "-b:v:0", "5M", "-maxrate:v:0", "7.5M", "-bufsize:v:0", "10M",
        "-b:v:1", "3M", "-maxrate:v:1", "4.5M", "-bufsize:v:1", "6M",
        "-b:v:2", "1200k", "-maxrate:v:2", "1800k", "-bufsize:v:2", "2400k",
        "-b:v:3", "600k", "-maxrate:v:3", "900k", "-bufsize:v:3", "1200k",
        "-b:v:4", "300k", "-maxrate:v:4", "450k", "-bufsize:v:4", "600k",
        "-c:a", "aac", "-b:a", "128k", "-ac", "2", "-ar", "48000",
        "-f", "dash", "-seg_duration", str(SEGMENT), "-use_template", "1", "-use_timeline", "0",
        "-adaptation_sets", "id=0,streams=v id=1,streams=a",
        "-init_seg_name", "init-$RepresentationID$.$ext$",
        "-media_seg_name", "chunk-$RepresentationID$-$Number%05d$.$ext$",
        str(out / "manifest.mpd"),
    ]  # fmt: skip


def conditions() -> str:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"machine: {os.cpu_count()} cores, load average {load}, {' '.join(ffmpeg_version().split()[:3])}"


def source_clip() -> Path:
    clip = BENCH / f"clip-{HEIGHT}p{FPS}-{SECONDS}s.mp4"
    if not clip.is_file():
        print(f"# generating {clip.relative_to(ROOT)} (cached for later runs)", flush=True)
        tmp = clip.with_suffix(".part.mp4")
        generate_clip(tmp, seconds=SECONDS, width=WIDTH, height=HEIGHT, fps=FPS, audio=True)
        tmp.rename(clip)
    return clip


def _cpu_seconds() -> float:
    """CPU time (user + system) of this process and its finished children so far."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def time_ours(clip: Path, preset: str) -> tuple[float, float, int]:
    """(wall s, CPU s, video renditions) of one package() call."""
    store = BENCH / "store"
    started, cpu = time.monotonic(), _cpu_seconds()
    summary = package(
        clip, video_id="bench", store=store, segment_seconds=SEGMENT, ladder=DEFAULT_LADDER, preset=preset
    )
    wall = time.monotonic() - started
    return wall, _cpu_seconds() - cpu, len([r for r in summary.renditions if r.kind == "video"])


def time_hand(clip: Path, preset: str) -> tuple[float, float, int]:
    """(wall s, CPU s, video renditions) of the hand-written command."""
    out = BENCH / "hand"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    started, cpu = time.monotonic(), _cpu_seconds()
    subprocess.run(hand_written_argv(clip, out, preset), check=True, timeout=1800)
    wall = time.monotonic() - started
    return wall, _cpu_seconds() - cpu, len(list(out.glob("init-*.m4s"))) - 1


def extra_steps_seconds(clip: Path) -> float:
    """Wall time of the steps the hand-written command does not do, re-run on the finished package."""
    started = time.monotonic()
    path = resolve_input(clip)
    check_tail_decodes(path, probe(path))
    folder = BENCH / "store" / "bench"
    _measure(folder, Fraction(SEGMENT))
    mpd._schema.cache_clear()  # package() loads the schema once per process: count that too
    mpd.validate_mpd((folder / "manifest.mpd").read_bytes())
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rounds", type=int, default=2, help="runs of each, alternating order; best kept (default 2)"
    )
    parser.add_argument("--preset", default="veryfast", help="x264 preset for both (default veryfast)")
    args = parser.parse_args()
    print(conditions(), flush=True)
    clip = source_clip()
    ours: list[tuple[float, float]] = []
    hand: list[tuple[float, float]] = []
    for round_no in range(args.rounds):
        order = ("ours", "hand") if round_no % 2 == 0 else ("hand", "ours")  # alternate to share the noise
        for which in order:
            if which == "ours":
                wall, cpu, rungs = time_ours(clip, args.preset)
                ours.append((wall, cpu))
                print(
                    f"package wall time (ours, {rungs} renditions + audio): {wall:.2f} (s) cpu {cpu:.1f} (s)",
                    flush=True,
                )
            else:
                wall, cpu, rungs = time_hand(clip, args.preset)
                hand.append((wall, cpu))
                print(
                    f"hand-written ffmpeg wall time ({rungs} renditions + audio): {wall:.2f} (s) cpu {cpu:.1f} (s)",
                    flush=True,
                )
    best_ours, best_hand = min(w for w, _ in ours), min(w for w, _ in hand)
    cpu_ours, cpu_hand = min(c for _, c in ours), min(c for _, c in hand)
    print(f"overhead ratio ours/hand-written (wall): {best_ours / best_hand:.3f} (x) target <= 1.05")
    print(
        f"overhead ratio ours/hand-written (cpu): {cpu_ours / cpu_hand:.3f} (x) less sensitive to other load"
    )
    extra = extra_steps_seconds(clip)
    print(
        f"our extra steps (probe, tail decode, measuring, MPD validation): {extra:.2f} (s) "
        f"= {extra / best_hand:.3f} of the hand-written run"
    )
    print(f"packaging speed: {SECONDS / best_ours:.2f} (x realtime) for {SECONDS} s of 1080p30")
    print(f"hand-written speed: {SECONDS / best_hand:.2f} (x realtime)")
    print(conditions().replace("machine:", "after:"), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
