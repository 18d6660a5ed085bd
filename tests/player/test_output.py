"""player.output: joining rendition runs of a real packaged store into one playable MP4 with ffmpeg."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from cdn.ffmpeg import ffmpeg_exe
from player.output import OutputError, OutputRecorder, RunFile, join_args, verify_decodes


def decoded(path: Path) -> tuple[int, str, bool]:
    """(video frames decoded, WxH, has audio) of an MP4, by decoding it with ffmpeg."""
    done = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path), "-f", "null", "-"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    frames = [int(m) for m in re.findall(r"frame=\s*(\d+)", done.stderr)]
    size = re.search(r"Video: .*?(\d{2,5}x\d{2,5})", done.stderr)
    assert size is not None, done.stderr
    return frames[-1], size.group(1), "Audio:" in done.stderr


def add(rec: OutputRecorder, store: Path, rep: str, number: int, *, width: int, height: int) -> None:
    demo = store / "demo"
    rec.add_video(
        rep,
        (demo / f"init-{rep}.m4s").read_bytes(),
        (demo / f"chunk-{rep}-{number:05d}.m4s").read_bytes(),
        width=width,
        height=height,
    )


def add_audio(rec: OutputRecorder, store: Path, chunks: int) -> None:
    demo = store / "demo"
    for n in range(1, chunks + 1):
        rec.add_audio((demo / "init-2.m4s").read_bytes(), (demo / f"chunk-2-{n:05d}.m4s").read_bytes())


def test_join_args_copy_for_one_run(tmp_path: Path) -> None:
    args = join_args(
        [RunFile(tmp_path / "a.mp4", "0", 320, 180, 3)], [tmp_path / "audio.mp4"], tmp_path / "o.mp4"
    )
    assert args[args.index("-c:v") + 1] == "copy"
    assert args.count("-protocol_whitelist") == 2
    assert all(args[i + 1] == "file" for i, a in enumerate(args) if a == "-protocol_whitelist")
    assert "1:a:0" in args
    assert args[-1] == f"file:{tmp_path / 'o.mp4'}"


def test_join_args_scales_and_concatenates_several_runs(tmp_path: Path) -> None:
    runs = [
        RunFile(tmp_path / "a.mp4", "1", 256, 144, 1),
        RunFile(tmp_path / "b.mp4", "0", 320, 180, 2),
        RunFile(tmp_path / "c.mp4", "1", 256, 144, 1),
    ]
    args = join_args(runs, [], tmp_path / "o.mp4")
    graph = args[args.index("-filter_complex") + 1]
    assert graph.count("scale=320:180") == 3
    assert "concat=n=3:v=1:a=0[v]" in graph
    assert args[args.index("-c:v") + 1] == "libx264"
    assert "-shortest" not in args


def test_recorder_starts_a_run_per_switch(tmp_path: Path, packaged_store: Path) -> None:
    with OutputRecorder(tmp_path) as rec:
        add(rec, packaged_store, "1", 1, width=256, height=144)
        add(rec, packaged_store, "0", 2, width=320, height=180)
        add(rec, packaged_store, "0", 3, width=320, height=180)
        assert [(r.representation, r.chunks) for r in rec.runs] == [("1", 1), ("0", 2)]
        demo = packaged_store / "demo"
        expected = b"".join(
            (demo / n).read_bytes() for n in ("init-0.m4s", "chunk-0-00002.m4s", "chunk-0-00003.m4s")
        )
        assert rec.runs[1].path.read_bytes() == expected
    assert not rec.dir.exists()


def test_switching_session_becomes_one_playable_mp4(tmp_path: Path, packaged_store: Path) -> None:
    with OutputRecorder(tmp_path) as rec:
        add(rec, packaged_store, "1", 1, width=256, height=144)
        add(rec, packaged_store, "0", 2, width=320, height=180)
        add(rec, packaged_store, "1", 3, width=256, height=144)
        add_audio(rec, packaged_store, 3)
        out = rec.finish(tmp_path / "watched.mp4")
    frames, size, audio = decoded(out)
    assert size == "320x180"
    assert audio
    assert 140 <= frames <= 160  # 5 s at 30 fps, every chunk once


def test_switching_without_sizes_in_the_mpd_reads_them_from_the_chunks(
    tmp_path: Path, packaged_store: Path
) -> None:
    with OutputRecorder(tmp_path) as rec:  # an MPD without @width/@height: the recorder gets 0x0
        add(rec, packaged_store, "1", 1, width=0, height=0)
        add(rec, packaged_store, "0", 2, width=0, height=0)
        add_audio(rec, packaged_store, 2)
        out = rec.finish(tmp_path / "watched.mp4")
    frames, size, _audio = decoded(out)
    assert size == "320x180"
    assert 110 <= frames <= 130  # 4 s at 30 fps


def test_single_rendition_is_remuxed(tmp_path: Path, packaged_store: Path) -> None:
    with OutputRecorder(tmp_path) as rec:
        for n in (1, 2, 3):
            add(rec, packaged_store, "1", n, width=256, height=144)
        out = rec.finish(tmp_path / "sub" / "watched.mp4")
    frames, size, audio = decoded(out)
    assert (size, audio) == ("256x144", False)
    assert 140 <= frames <= 160


def test_nothing_played_is_an_error(tmp_path: Path) -> None:
    with OutputRecorder(tmp_path) as rec, pytest.raises(OutputError, match="no video chunk"):
        rec.finish(tmp_path / "w.mp4")


def test_verify_rejects_a_broken_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypisom" + b"\x00" * 100)
    with pytest.raises(OutputError, match="does not decode"):
        verify_decodes(bad)


def test_audio_runs_of_several_periods_are_joined(tmp_path: Path, packaged_store: Path) -> None:
    demo = packaged_store / "demo"
    with OutputRecorder(tmp_path) as rec:
        for period in ("a", "b"):  # the same two chunks twice, as two periods: clocks restart at 0
            for n in (1, 2):
                video = (demo / f"chunk-1-{n:05d}.m4s").read_bytes()
                rec.add_video(f"{period}/1", (demo / "init-1.m4s").read_bytes(), video, width=256, height=144)
                rec.add_audio((demo / "init-2.m4s").read_bytes(), (demo / f"chunk-2-{n:05d}.m4s").read_bytes(),
                              run=period)  # fmt: skip
        assert len(rec.audio) == 2
        out = rec.finish(tmp_path / "watched.mp4")
    frames, size, audio = decoded(out)
    assert (size, audio) == ("256x144", True)
    assert 230 <= frames <= 250  # 8 s: both periods, not cut to the first one's audio
