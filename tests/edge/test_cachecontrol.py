"""Freshness rules as tables, plus fuzzing of the header parsers."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.cachecontrol import (
    CacheControl,
    Decision,
    Freshness,
    decide,
    format_http_date,
    freshness_of,
    initial_age,
    parse_cache_control,
    parse_http_date,
    stale_if_error_ok,
)

DATE = "Tue, 24 Nov 2026 12:00:00 GMT"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("", CacheControl()),
        ("max-age=60", CacheControl(max_age=60)),
        ("MAX-AGE=60, Public", CacheControl(max_age=60, public=True)),
        ('max-age="30"', CacheControl(max_age=30)),
        ("s-maxage=5, max-age=60", CacheControl(max_age=60, s_maxage=5)),
        ("no-store", CacheControl(no_store=True)),
        ('private="set-cookie"', CacheControl(private=True)),
        ("no-cache", CacheControl(no_cache=True)),
        (
            "max-age=10, stale-while-revalidate=30, stale-if-error=600",
            CacheControl(max_age=10, stale_while_revalidate=30, stale_if_error=600),
        ),
        ("must-revalidate", CacheControl(must_revalidate=True)),
        ("proxy-revalidate", CacheControl(must_revalidate=True)),
        ("max-age=-1", CacheControl()),
        ("max-age=abc", CacheControl()),
        ("max-age=99999999999999", CacheControl(max_age=2**31)),
        ("max-age=1, max-age=100", CacheControl(max_age=1)),
        (",,, ,", CacheControl()),
    ],
)
def test_parse_cache_control(header: str, expected: CacheControl) -> None:
    assert parse_cache_control(header) == expected


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (200, {"cache-control": "max-age=60"}, Freshness(ttl=60)),
        (200, {"cache-control": "max-age=60, s-maxage=5"}, Freshness(ttl=5, must_revalidate=True)),
        (200, {"cache-control": "no-store"}, None),
        (200, {"cache-control": "private, max-age=60"}, None),
        (200, {"cache-control": "no-cache"}, Freshness(ttl=0, must_revalidate=True)),
        (
            200,
            {"cache-control": "max-age=1, stale-while-revalidate=9, stale-if-error=99"},
            Freshness(ttl=1, stale_while_revalidate=9, stale_if_error=99),
        ),
        (200, {"date": DATE, "expires": "Tue, 24 Nov 2026 12:01:00 GMT"}, Freshness(ttl=60)),
        (200, {"date": DATE, "expires": "0"}, Freshness(ttl=0)),
        (
            200,
            {"date": DATE, "expires": "Tue, 24 Nov 2026 12:01:00 GMT", "cache-control": "max-age=5"},
            Freshness(ttl=5),
        ),
        (200, {"date": DATE, "last-modified": "Tue, 24 Nov 2026 11:00:00 GMT"}, Freshness(ttl=360)),
        (200, {}, Freshness(ttl=0)),
        (404, {}, Freshness(ttl=10)),
        (404, {"cache-control": "max-age=3"}, Freshness(ttl=3)),
        (404, {"cache-control": "no-store"}, None),
        (500, {"cache-control": "max-age=60"}, None),
        (206, {"cache-control": "max-age=60"}, None),
        (302, {"cache-control": "max-age=60"}, None),
    ],
)
def test_freshness_of(status: int, headers: dict[str, str], expected: Freshness | None) -> None:
    assert freshness_of(status, headers, negative_ttl=10) == expected


@pytest.mark.parametrize(
    ("freshness", "age", "decision"),
    [
        (Freshness(ttl=10), 0, Decision.FRESH),
        (Freshness(ttl=10), 9.9, Decision.FRESH),
        (Freshness(ttl=10), 10, Decision.REVALIDATE),
        (Freshness(ttl=10, stale_while_revalidate=5), 12, Decision.STALE_WHILE_REVALIDATE),
        (Freshness(ttl=10, stale_while_revalidate=5), 15, Decision.REVALIDATE),
        (Freshness(ttl=10, stale_while_revalidate=5, must_revalidate=True), 12, Decision.REVALIDATE),
        (Freshness(ttl=0, must_revalidate=True), 0, Decision.REVALIDATE),
    ],
)
def test_decide(freshness: Freshness, age: float, decision: Decision) -> None:
    assert decide(freshness, age) is decision


@pytest.mark.parametrize(
    ("freshness", "age", "ok"),
    [
        (Freshness(ttl=10), 50, True),
        (Freshness(ttl=10), 200, False),
        (Freshness(ttl=10, stale_if_error=500), 200, True),
        (Freshness(ttl=10, stale_if_error=0), 11, False),
        (Freshness(ttl=10, must_revalidate=True), 11, False),
        (Freshness(ttl=10, must_revalidate=True, stale_if_error=60), 11, True),
    ],
)
def test_stale_if_error_ok(freshness: Freshness, age: float, ok: bool) -> None:
    assert stale_if_error_ok(freshness, age, default_window=100) is ok


def test_initial_age_uses_age_header_and_delay() -> None:
    assert initial_age({"age": "30"}, request_time=100, response_time=101.5) == 31.5
    assert initial_age({"age": "junk"}, request_time=100, response_time=100) == 0


def test_http_dates_round_trip() -> None:
    ts = parse_http_date(DATE)
    assert ts is not None
    assert format_http_date(ts) == DATE
    assert parse_http_date("Tuesday, 24-Nov-26 12:00:00 GMT") is not None
    assert parse_http_date("not a date") is None
    assert parse_http_date("") is None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_fuzz_cache_control_never_raises(header: str) -> None:
    cc = parse_cache_control(header)
    assert cc.max_age is None or 0 <= cc.max_age <= 2**31
    freshness_of(200, {"cache-control": header, "expires": header, "date": header}, negative_ttl=5)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_fuzz_http_date_never_raises(text: str) -> None:
    parse_http_date(text)
