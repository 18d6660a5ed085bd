"""player.session with a dynamic MPD: a real live origin on loopback whose segments appear with time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from player.config import PlayerConfig
from player.fetch import EdgePool, Fetcher
from player.report import report_document, write_report
from player.resolve import Resolver
from player.session import SessionResult, play
from tests.player.liveorigin import LiveOrigin

pytestmark = pytest.mark.network

ROOT = Path(__file__).resolve().parents[2]


def play_live(
    origin: LiveOrigin, *, duration: float | None = None, sleep: Callable[[float], None] = time.sleep
) -> SessionResult:
    config = PlayerConfig(url=origin.url, quiet=True, max_buffer=4, startup=1, timeout=2, duration=duration)
    with Fetcher(
        EdgePool(Resolver(server=None, timeout=2)), timeout=2, retries_per_edge=2, max_failovers=1
    ) as fetcher:
        return play(config, fetcher, sleep=sleep)


def numbers(result: SessionResult) -> list[int]:
    return [r.number for r in result.records]


def test_joins_near_the_live_edge_refreshes_and_ends_when_the_mpd_turns_static(tmp_path: Path) -> None:
    with LiveOrigin(duration=0.5, back=10.0, update=1.0) as origin:
        origin.last = origin.newest(time.time()) + 8  # the event ends 4 s from now
        result = play_live(origin)
        requests = list(origin.requests)
    first_mpd = next(r for r in requests if r.path.endswith(".mpd"))
    newest = origin.newest(first_mpd.time)
    got = numbers(result)
    assert got[0] in (newest - 2, newest - 1)  # three segments (1.5 s) behind the live edge, not segment 1
    assert got == list(range(got[0], origin.last + 1))  # no repeat, no skip, up to the last one
    assert len(got) > newest - got[0] + 1  # more than the first MPD listed: the refreshes worked
    assert sum(r.path.endswith(".mpd") for r in requests) >= 3
    media = [r for r in requests if "/seg-" in r.path]
    for r in media:  # nothing asked for before its availability time (so no 404 either)
        number = int(r.path.rsplit("-", 1)[1].split(".")[0])
        assert r.time >= origin.available_at(number), r
        assert r.status == 200, r
    assert result.ended == "mpd-static"
    assert all(r.retries == 0 and r.failovers == 0 for r in result.records)
    doc = report_document(url=origin.url, abr=result.abr, speed=1, summary=result.summary.to_dict(),
                          records=result.records, ended=result.ended, events=result.events)  # fmt: skip
    report = json.loads(write_report(tmp_path / "r.json", doc).read_text())
    assert [c["number"] for c in report["chunks"]] == got
    assert report["ended"] == "mpd-static"
    assert report["summary"]["chunks"] == len(got)
    assert any("joining at segment" in e for e in report["events"])


def test_a_late_segment_is_asked_again_not_failed_over_and_duration_ends_the_session() -> None:
    with LiveOrigin(duration=0.5, back=6.0, update=5.0, lag=0.3) as origin:
        result = play_live(origin, duration=2.5)
        media = origin.media()
    got = numbers(result)
    assert result.ended == "limit"
    assert len(got) == 5  # 2.5 s of 0.5 s segments
    assert got == list(range(got[0], got[0] + 5))
    assert any(r.status == 404 for r in media)  # the origin lags the MPD's clock by 0.3 s
    assert all(r.retries == 0 and r.failovers == 0 for r in result.records)  # a 404 is not an edge failure
    assert any("not available yet" in e for e in result.events)


def test_falls_behind_the_time_shift_window_and_jumps_ahead() -> None:
    calls = 0

    def slow_once(seconds: float) -> None:  # the first wait oversleeps by 2 s (a suspended laptop, say)
        nonlocal calls
        calls += 1
        time.sleep(seconds + (2.0 if calls == 1 else 0.0))

    with LiveOrigin(duration=0.5, back=6.0, update=0.5, depth=1.0) as origin:
        result = play_live(origin, duration=4.0, sleep=slow_once)
    got = numbers(result)
    steps = [b - a for a, b in zip(got, got[1:], strict=False)]
    assert all(s >= 1 for s in steps)  # never a repeat
    assert any(s > 1 for s in steps)  # a jump over the segments that left the 1 s window
    assert any("jumped" in e and "time-shift window" in e for e in result.events)


def test_ctrl_c_ends_a_live_session_with_what_was_played() -> None:
    def interrupt(seconds: float) -> None:
        raise KeyboardInterrupt

    with LiveOrigin(duration=0.5, back=6.0) as origin:
        result = play_live(origin, sleep=interrupt)  # the first wait (for the next segment) is Ctrl-C
    assert result.ended == "interrupted"
    assert len(result.records) >= 1
    assert result.summary.chunks == len(result.records)


def test_cli_writes_the_report_after_ctrl_c(tmp_path: Path) -> None:
    report = tmp_path / "live.json"
    with LiveOrigin(duration=0.5, back=6.0) as origin:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "player" / "cli.py"), origin.url, "--quiet", "--report", str(report),
             "--startup", "1", "--max-buffer", "4"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while len([r for r in origin.media() if r.status == 200]) < 4 and time.monotonic() < deadline:
                time.sleep(0.05)
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 130, err
    doc = json.loads(report.read_text())
    assert doc["ended"] == "interrupted"
    assert len(doc["chunks"]) >= 3
    assert "interrupted" in out


def test_duration_option() -> None:
    assert PlayerConfig.from_args(["http://o/m.mpd", "--duration", "30"]).duration == 30.0
    assert PlayerConfig.from_args(["http://o/m.mpd"]).duration is None
    with pytest.raises(ValueError, match="--duration"):
        PlayerConfig(url="http://o/m.mpd", duration=0)
