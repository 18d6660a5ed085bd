from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdn.sizes import format_size, parse_size


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("2GiB", 2 * 1024**3),
        ("256mib", 256 * 1024**2),
        ("64Ki", 64 * 1024),
        ("500MB", 500 * 1000**2),
        ("10K", 10_000),
        ("2G", 2 * 1000**3),
        ("1.5 MiB", 1572864),
        ("7B", 7),
        ("1048576", 1048576),
        (4096, 4096),
    ],
)
def test_binary_prefixes_are_1024_decimal_are_1000(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "lots", "2XB", "-1GiB", "1 GiB GiB", "1e9", True, -5])
def test_rejects_with_the_value_named(text: str | int) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(text)


@given(st.integers(min_value=0, max_value=1 << 50))
def test_format_round_trips(n: int) -> None:
    assert parse_size(format_size(n)) == n
