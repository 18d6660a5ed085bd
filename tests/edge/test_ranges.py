"""Range parsing as a table, plus fuzzing: it returns a valid range, None, or raises 416."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.errors import RangeNotSatisfiable
from edge.ranges import ByteRange, content_range, parse_range


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 100, None),
        ("bytes=0-9", 100, ByteRange(0, 9)),
        ("bytes=10-", 100, ByteRange(10, 99)),
        ("bytes=-10", 100, ByteRange(90, 99)),
        ("bytes=-1000", 100, ByteRange(0, 99)),
        ("bytes=90-1000", 100, ByteRange(90, 99)),
        ("Bytes = 5 - 6", 100, ByteRange(5, 6)),
        ("items=0-5", 100, None),
        ("garbage", 100, None),
    ],
)
def test_parse_range(header: str | None, size: int, expected: ByteRange | None) -> None:
    assert parse_range(header, size) == expected


@pytest.mark.parametrize(
    ("header", "size"),
    [
        ("bytes=0-1,3-4", 100),
        ("bytes=100-", 100),
        ("bytes=5-2", 100),
        ("bytes=-0", 100),
        ("bytes=-", 100),
        ("bytes=abc", 100),
        ("bytes=0-0", 0),
        ("bytes=" + "9" * 40 + "-", 100),
    ],
)
def test_unsatisfiable(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable) as info:
        parse_range(header, size)
    assert info.value.status == 416


def test_content_range() -> None:
    assert content_range(ByteRange(0, 9), 100) == "bytes 0-9/100"
    assert content_range(None, 100) == "bytes */100"


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(st.text(max_size=60), st.from_regex(r"bytes=\d{0,4}-\d{0,4}", fullmatch=True)),
    st.integers(0, 5000),
)
def test_fuzz_parse_range(header: str, size: int) -> None:
    try:
        rng = parse_range(header, size)
    except RangeNotSatisfiable:
        return
    if rng is not None:
        assert 0 <= rng.start <= rng.end < size
