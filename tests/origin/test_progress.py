"""Parsing ffmpeg's `-progress` output into packaging progress (origin.progress)."""

from __future__ import annotations

import pytest

from origin.progress import PackagingProgress, ProgressParser, parse_speed

TRANSCRIPT = """\
frame=0
out_time_us=N/A
speed=N/A
progress=continue
frame=75
out_time_us=2500000
speed=1.31x
progress=continue
frame=150
out_time_us=5000000
speed=  26x
progress=end
"""


def test_transcript() -> None:
    parser = ProgressParser(duration=5.0)
    updates = [u for u in map(parser.feed, TRANSCRIPT.splitlines()) if u is not None]
    assert updates == [
        PackagingProgress(fraction=0.0, speed_x_realtime=None, out_time=0.0),
        PackagingProgress(fraction=0.5, speed_x_realtime=1.31, out_time=2.5),
        PackagingProgress(fraction=1.0, speed_x_realtime=26.0, out_time=5.0, done=True),
    ]
    assert parser.last_out_time == 5.0


def test_fraction_is_capped_and_never_goes_back() -> None:
    parser = ProgressParser(duration=4.0)
    assert parser.feed("out_time_us=6000000") is None
    first = parser.feed("progress=continue")
    parser.feed("out_time_us=1000000")
    second = parser.feed("progress=continue")
    assert first is not None
    assert second is not None
    assert first.fraction == 1.0
    assert second.fraction == 1.0


@pytest.mark.parametrize(
    ("text", "value"), [("26x", 26.0), ("  1.31x", 1.31), ("N/A", None), ("", None), ("4e+03x", 4000.0)]
)
def test_parse_speed(text: str, value: float | None) -> None:
    assert parse_speed(text) == value


def test_garbage_lines_are_ignored() -> None:
    parser = ProgressParser(duration=1.0)
    assert parser.feed("no equals sign") is None
    assert parser.feed("") is None


def test_fraction_must_be_in_range() -> None:
    with pytest.raises(ValueError, match="outside"):
        PackagingProgress(fraction=1.5)
