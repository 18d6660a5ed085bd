"""Playout buffer: startup, draining, stalls with durations, the buffer cap, end of stream."""

from __future__ import annotations

import pytest

from player.backoff import backoff_delay
from player.playout import Playout, PlayoutConfig, Stall

CONFIG = PlayoutConfig(startup_threshold=4.0, max_buffer=10.0)


def test_startup_waits_for_threshold() -> None:
    p = Playout.start(CONFIG, 100.0).add_chunk(101.0, 2.0)
    assert p.started_at is None
    assert p.buffer == 2.0
    p = p.advance(105.0)
    assert p.buffer == 2.0, "nothing drains before playback starts"
    p = p.add_chunk(106.0, 2.0)
    assert p.started_at == 106.0
    assert p.startup_delay == 6.0
    assert p.playing


@pytest.mark.parametrize(
    ("arrivals", "stalls"),
    [
        ([(1.0, 4.0), (3.0, 4.0), (7.0, 4.0)], []),  # each chunk arrives before the buffer empties
        ([(1.0, 4.0), (7.0, 4.0)], [Stall(5.0, 2.0, 1)]),  # empty at 5, chunk 1 at 7
        ([(1.0, 4.0), (7.0, 4.0), (14.0, 4.0)], [Stall(5.0, 2.0, 1), Stall(11.0, 3.0, 2)]),
    ],
)
def test_stalls_table(arrivals: list[tuple[float, float]], stalls: list[Stall]) -> None:
    p = Playout.start(CONFIG, 0.0)
    for when, seconds in arrivals:
        p = p.add_chunk(when, seconds)
    assert list(p.stalls) == stalls
    assert p.stall_time == sum(s.duration for s in stalls)


def test_stall_is_charged_to_the_chunk_that_ends_it() -> None:
    p = Playout.start(CONFIG, 0.0).add_chunk(1.0, 4.0).add_chunk(8.0, 4.0)
    assert p.stall_for_chunk(1) == 3.0
    assert p.stall_for_chunk(0) == 0.0
    assert p.advance(9.0).buffer == 3.0


def test_buffer_cap_wait() -> None:
    p = Playout.start(CONFIG, 0.0).add_chunk(1.0, 4.0).add_chunk(1.5, 4.0)
    assert p.buffer == pytest.approx(7.5)
    assert p.wait_before_request(4.0) == pytest.approx(1.5)
    p = p.advance(3.0)
    assert p.wait_before_request(4.0) == 0.0


def test_no_wait_before_start_or_while_stalled() -> None:
    p = Playout.start(PlayoutConfig(startup_threshold=20.0, max_buffer=10.0), 0.0).add_chunk(1.0, 12.0)
    assert p.wait_before_request(4.0) == 0.0


def test_end_of_stream_is_not_a_stall_and_starts_short_videos() -> None:
    p = Playout.start(CONFIG, 0.0).add_chunk(1.0, 2.0).end_of_stream(1.5)
    assert p.started_at == 1.5
    p = p.advance(10.0)
    assert p.buffer == 0.0
    assert p.stall_since is None
    assert p.played == 2.0


def test_clock_cannot_go_back() -> None:
    with pytest.raises(ValueError, match="clock went back"):
        Playout.start(CONFIG, 5.0).advance(4.0)


def test_drained_at() -> None:
    p = Playout.start(CONFIG, 0.0).add_chunk(1.0, 4.0)
    assert p.drained_at() == 5.0


@pytest.mark.parametrize(
    ("attempt", "rand", "expected"),
    [(1, 0.0, 0.125), (1, 1.0, 0.25), (2, 1.0, 0.5), (3, 0.5, 0.75), (10, 1.0, 8.0), (100, 1.0, 8.0)],
)
def test_backoff_delay_table(attempt: int, rand: float, expected: float) -> None:
    assert backoff_delay(attempt, base=0.25, cap=8.0, jitter_fraction=0.5, rand=rand) == pytest.approx(
        expected
    )


@pytest.mark.parametrize(
    "kwargs", [{"attempt": 0}, {"attempt": 1, "base": -1}, {"attempt": 1, "jitter_fraction": 2}]
)
def test_backoff_delay_rejects_bad_input(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        backoff_delay(**kwargs)  # type: ignore[arg-type]
