"""The `cdn-origin` command line (origin.cli): package subcommand, exit codes, serve delegation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from origin.cli import build_parser, main, store_default
from origin.ladder import DEFAULT_LADDER


def test_package_prints_a_summary_and_exits_0(
    tmp_path: Path, clip_noaudio: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "package",
            str(clip_noaudio),
            "--id",
            "cli1",
            "--store",
            str(tmp_path),
            "--segment-seconds",
            "2",
            "--ladder",
            "144p:200k,72p:100k",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "packaged cli1" in out
    assert "256x144" in out
    assert "128x72" in out
    assert "realtime" in out
    assert json.loads((tmp_path / "cli1" / "package.json").read_text())["segment_seconds"] == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--segment-seconds", "11"], "2 to 10"),
        (["--segment-seconds", "1"], "2 to 10"),
        (["--segment-seconds", "eight"], "whole number"),
        (["--ladder", "720:3M"], "HEIGHTp:RATE"),
        (["--id", ".hidden"], "safe slug"),
        (["--preset", "warp9"], "invalid choice"),
    ],
)
def test_bad_usage_exits_2(
    args: list[str], message: str, tmp_path: Path, clip: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["package", str(clip), "--store", str(tmp_path / "s"), *args]
    if "--id" not in args:
        argv += ["--id", "x"]
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_missing_id_exits_2(clip: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["package", str(clip)])
    assert info.value.code == 2
    assert "--id" in capsys.readouterr().err


def test_bad_input_exits_1_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("hello\n")
    code = main(["package", str(notes), "--id", "x", "--store", str(tmp_path / "s"), "-q"])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("cdn-origin: error: notes.txt: not a video file")
    assert err.count("\n") == 1
    assert not (tmp_path / "s").exists() or not any((tmp_path / "s").iterdir())


def test_protocol_input_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["package", "concat:/etc/passwd", "--id", "x", "--store", str(tmp_path)]) == 1
    assert "URL or an ffmpeg protocol" in capsys.readouterr().err


def test_defaults() -> None:
    args = build_parser({}, with_serve=False).parse_args(["package", "in.mp4", "--id", "a"])
    assert args.store == Path("var/store")
    assert args.segment_seconds == 8
    assert args.ladder == DEFAULT_LADDER
    assert args.preset == "veryfast"
    assert store_default({"CDN_STORE": "/srv/videos"}) == Path("/srv/videos")
    parsed = build_parser({"CDN_STORE": "/srv/videos"}, with_serve=False).parse_args(
        ["package", "i", "--id", "a"]
    )
    assert parsed.store == Path("/srv/videos")


def test_help_lists_both_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "package" in out
    assert "serve" in out


def test_serve_help_comes_from_origin_serve(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("origin.serve")
    with pytest.raises(SystemExit) as info:
        main(["serve", "--help"])
    assert info.value.code == 0
    assert "--listen" in capsys.readouterr().out


def test_console_script_module_runs() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "origin.cli", "package", "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0
    assert "--segment-seconds" in done.stdout
