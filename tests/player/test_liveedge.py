"""player.liveedge: the pure live decisions (join point, availability, next segment, refresh, end)."""

from __future__ import annotations

import math

import pytest

from player.liveedge import (
    NOT_YET_WAIT,
    Next,
    availability_time,
    join_index,
    live_delay,
    next_segment,
    presentation_over,
    refresh_due,
    refresh_wait,
    stale_limit,
)
from player.mpd import Manifest
from player.timeline import Segment

AST = 1_700_000_000.0


def manifest(kind: str = "dynamic", **kw: float | None) -> Manifest:
    return Manifest(type=kind, periods=(), base_url="http://o/", min_buffer_time=1.0,  # type: ignore[arg-type]
                    availability_start_time=AST, **kw)  # type: ignore[arg-type]  # fmt: skip


def segs(first: int, count: int, d: float = 2.0, period_start: float = 0.0) -> list[Segment]:
    return [
        Segment(number=n, start=period_start + (n - 1) * d, duration=d, url=f"s{n}")
        for n in range(first, first + count)
    ]


@pytest.mark.parametrize(
    ("count", "delay", "expected"),
    [
        (10, 6.0, 7),  # three 2 s segments behind the edge: the third newest
        (10, 5.0, 7),  # not a whole number of segments: the newest starting at least 5 s back
        (10, 0.0, 9),  # no delay: the newest
        (2, 6.0, 0),  # a short list: its first segment
        (1, 6.0, 0),
    ],
)
def test_join_index(count: int, delay: float, expected: int) -> None:
    assert join_index(segs(1, count), delay) == expected


def test_join_index_refuses_an_empty_list() -> None:
    with pytest.raises(ValueError, match="no segment"):
        join_index([], 6.0)


def test_live_delay_is_the_suggested_presentation_delay_else_three_segments() -> None:
    assert live_delay(manifest(), 2.0) == 6.0
    assert live_delay(manifest(suggested_presentation_delay=10.0), 2.0) == 10.0


def test_availability_time_is_the_segment_end_after_the_availability_start() -> None:
    seg = segs(3, 1, d=2.0, period_start=100.0)[0]  # [104, 106) on the presentation timeline
    assert availability_time(manifest(), seg) == AST + 106.0
    assert availability_time(manifest(), seg, offset=1.5) == AST + 104.5
    assert availability_time(manifest("static"), seg) == -math.inf


@pytest.mark.parametrize(
    ("position", "expected"),
    [
        (4.0, Next(0, 2, 0.0)),  # contiguous: the segment starting where the last one ended
        (4.0004, Next(0, 2, 0.0)),  # float noise is no gap
        (0.0, Next(0, 0, 0.0)),
        (-4.0, Next(0, 0, 4.0)),  # the segments before the first listed one left the window: a jump
        (10.0, Next(1, 0, 0.0)),  # into the next period
        (13.0, Next(1, 2, 1.0)),  # a position inside a segment: the next one, never a replay
        (16.0, None),  # nothing listed yet
    ],
)
def test_next_segment(position: float, expected: Next | None) -> None:
    lists = [segs(1, 5), segs(1, 3, period_start=10.0)]
    assert next_segment(lists, position) == expected


def test_presentation_over_needs_a_duration() -> None:
    assert not presentation_over(manifest(), 1e9)
    assert presentation_over(manifest(media_presentation_duration=20.0), 20.0)
    assert not presentation_over(manifest(media_presentation_duration=20.0), 18.0)


def test_refresh_due_after_the_minimum_update_period_of_a_dynamic_mpd() -> None:
    assert refresh_due(manifest(minimum_update_period=2.0), 100.0, 102.0)
    assert not refresh_due(manifest(minimum_update_period=2.0), 100.0, 101.9)
    assert not refresh_due(manifest(), 100.0, 1e9)  # no minimumUpdatePeriod: refresh when out of segments
    assert not refresh_due(manifest("static", minimum_update_period=2.0), 100.0, 1e9)


def test_refresh_wait_until_the_next_segment_is_due_never_a_busy_poll() -> None:
    m = manifest()
    assert refresh_wait(m, 20.0, 2.0, now=AST + 20.5) == pytest.approx(1.5)  # due at AST + 22
    assert 0 < refresh_wait(m, 20.0, 2.0, now=AST + 30.0) < NOT_YET_WAIT + 1e-9  # overdue: a short pause


def test_stale_limit_grows_with_the_segment_duration_and_update_period() -> None:
    assert stale_limit(manifest(), 1.0) == 30.0
    assert stale_limit(manifest(), 10.0) == 40.0
    assert stale_limit(manifest(minimum_update_period=60.0), 1.0) == 120.0
