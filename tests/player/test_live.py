"""player.session with a dynamic MPD: a real live origin on loopback whose segments appear with time."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from player.config import PlayerConfig
from player.edgepool import EdgePool
from player.fetch import Fetcher
from player.playloop import SessionError
from player.report import report_document, write_report
from player.resolve import Resolver
from player.session import SessionResult, play
from tests.conftest import free_port
from tests.player.liveorigin import XSDATE, LiveOrigin, LiveRequest

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
    assert result.clock_offset == 0.0  # no UTCTiming, and the MPD's Date agrees with the local clock
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


# --- clock sync (UTCTiming, the MPD's Date) ------------------------------------------------------


def play_to_the_end(origin: LiveOrigin, *, more: int = 4) -> tuple[SessionResult, list[LiveRequest]]:
    """Play `origin` until its event ends, `more` segments after the newest one now."""
    origin.last = origin.newest(origin.now()) + more
    result = play_live(origin)
    return result, list(origin.requests)


def assert_played_on_time(origin: LiveOrigin, result: SessionResult, requests: list[LiveRequest],
                          *, early: float = 0.0) -> None:  # fmt: skip
    """Joined 3 segments behind the origin's live edge, played every segment to the last, none asked for
    more than `early` s before the origin's clock says it is available (with 0: never, so no 404)."""
    first_mpd = next(r for r in requests if r.path.endswith(".mpd"))
    newest = origin.newest(first_mpd.time)
    got = numbers(result)
    assert newest - 2 - (early > 0) <= got[0] <= newest - 1, (got, newest)
    assert got == list(range(got[0], (origin.last or 0) + 1))
    assert result.ended == "mpd-static"
    for r in (r for r in requests if "/seg-" in r.path):
        number = int(r.path.rsplit("-", 1)[1].split(".")[0])
        assert r.time >= origin.available_at(number) - early, r
        assert early > 0 or r.status == 200, r


@pytest.mark.parametrize("skew", [20.0, -20.0])
def test_a_skewed_origin_is_played_on_its_utc_timing_clock(skew: float, tmp_path: Path) -> None:
    with LiveOrigin(duration=0.5, back=10.0, skew=skew, utc_timing=[(XSDATE, "time")]) as origin:
        result, requests = play_to_the_end(origin)
    assert result.clock_offset == pytest.approx(skew, abs=0.25)
    assert_played_on_time(origin, result, requests)
    noted = re.fullmatch(r"live: clock offset ([+-]\d+\.\d\d) s from (.*)", result.events[0])
    assert noted is not None, result.events[0]
    assert float(noted[1]) == pytest.approx(skew, abs=0.25)
    assert noted[2] == f"{XSDATE} ({origin.time_url})"
    doc = report_document(url=origin.url, abr=result.abr, speed=1, summary=result.summary.to_dict(),
                          records=result.records, events=result.events, clock_offset=result.clock_offset)  # fmt: skip
    report = json.loads(write_report(tmp_path / "r.json", doc).read_text())
    assert report["clock_offset"] == pytest.approx(skew, abs=0.25)


@pytest.mark.parametrize("skew", [20.0, -20.0])
def test_without_utc_timing_the_mpd_date_header_sets_the_clock(skew: float) -> None:
    with LiveOrigin(duration=0.5, back=10.0, skew=skew) as origin:
        result, requests = play_to_the_end(origin)
    assert result.clock_offset == pytest.approx(skew, abs=0.6)  # a Date has whole seconds
    assert_played_on_time(origin, result, requests, early=0.6)  # so a segment may be asked for 0.5 s early
    assert result.events[0].endswith(f"from the Date header of {origin.url}")


def test_a_dead_or_garbage_time_source_falls_through_to_the_next() -> None:
    dead = f"http://127.0.0.1:{free_port()}/time"
    with LiveOrigin(duration=0.5, back=10.0, skew=20.0, date_skew=0.0) as origin:
        origin.utc_timing = [(XSDATE, dead), (XSDATE, "manifest.mpd"), (XSDATE, origin.time_url)]
        result, requests = play_to_the_end(origin, more=2)
    assert result.clock_offset == pytest.approx(20.0, abs=0.25)
    assert_played_on_time(origin, result, requests)
    failed = [e for e in result.events if e.startswith("live: time source failed: ")]
    assert len(failed) == 2
    assert dead in failed[0]
    assert "not an xs:dateTime" in failed[1]
    assert any(e.endswith(f"from {XSDATE} ({origin.time_url})") for e in result.events)


def test_an_origin_20_s_ahead_is_unplayable_without_the_offset_and_plays_with_it() -> None:
    # The origin's MPD and segments run 20 s ahead, its Date header is right: with no UTCTiming the player
    # trusts its own clock (the Date agrees within 1 s), so no segment is available yet by that clock.
    with LiveOrigin(duration=0.5, back=10.0, skew=20.0, date_skew=0.0) as origin:
        with pytest.raises(SessionError, match="lists no segment yet"):
            play_live(origin)
        origin.utc_timing = [(XSDATE, "time")]
        result = play_live(origin, duration=1.0)
    assert result.clock_offset == pytest.approx(20.0, abs=0.25)
    assert len(result.records) == 2
    assert all(r.status == 200 for r in origin.media())


def test_a_static_mpd_is_not_synced() -> None:
    with LiveOrigin(duration=0.5, back=10.0, last=4, skew=20.0, utc_timing=[(XSDATE, "time")]) as origin:
        result = play_live(origin)
        asked = [r.path for r in origin.requests]
    assert result.clock_offset is None
    assert numbers(result) == [1, 2, 3, 4]
    assert "/live/time" not in asked
    assert not any("clock offset" in e for e in result.events)
