"""player.clocksync: reading time sources' answers (tables, fuzzing), the offset maths, the fallback, and
`sync_clock` against a real live origin whose clock is off."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from player.clocksync import (
    DATE_MIDPOINT,
    SCHEMES,
    ClockSync,
    ClockSyncError,
    Exchange,
    TimeSource,
    date_fallback,
    offset_of,
    parse_age,
    parse_instant,
    read_http_date,
    sync_clock,
    time_sources,
)
from player.edgepool import EdgePool
from player.fetch import ChunkFetch, Fetcher
from player.mpd import UtcTiming, parse_mpd
from player.resolve import Resolver
from tests.conftest import free_port
from tests.player.liveorigin import XSDATE, LiveOrigin

JAN31 = 1_706_702_400.0  # 2024-01-31T12:00:00Z
MPD_URL = "http://cdn.test/live/event/manifest.mpd"
HEAD = "urn:mpeg:dash:utc:http-head:2014"
DIRECT = "urn:mpeg:dash:utc:direct:2014"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("2024-01-31T12:00:00Z", JAN31),
        ("2024-01-31T12:00:00", JAN31),  # no zone: UTC
        ("  2024-01-31T12:00:00.123Z\r\n", JAN31 + 0.123),
        ("2024-01-31T12:00:00.123456789Z", JAN31 + 0.123456789),
        ("2024-01-31T12:00:00,5Z", JAN31 + 0.5),  # ISO 8601 allows a decimal comma
        ("2024-01-31T13:00:00.250+01:00", JAN31 + 0.25),
        ("2024-01-31T06:30:00-05:30", JAN31),
        ("2024-01-31T13:00:00+0100", JAN31),
        ("2024-01-31T14:00:00+02", JAN31),
        ("2024-01-31t12:00:00z", JAN31),
        ("2016-12-31T23:59:60Z", 1_483_228_800.0),  # a leap second counts as the next second
    ],
)
def test_parse_instant(text: str, seconds: float) -> None:
    assert parse_instant(text) == pytest.approx(seconds, abs=1e-6)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage",
        "2024-01-31",
        "2024-01-31T12:00Z",  # xs:dateTime needs the seconds
        "2024-13-01T00:00:00Z",
        "2024-02-30T00:00:00Z",
        "2024-01-31T12:00:00+24:00",
        "0001-01-01T00:00:00+01:00",  # before year 1 once the zone is taken off
        "1706702400",
        '<?xml version="1.0"?><MPD type="dynamic">' + "x" * 200,
    ],
)
def test_parse_instant_rejects(text: str) -> None:
    with pytest.raises(ClockSyncError, match="is not") as info:
        parse_instant(text)
    assert info.value.text == text
    assert len(str(info.value)) < 160  # a whole page is not pasted into the message


def test_read_http_date() -> None:
    assert read_http_date("Sun, 06 Nov 1994 08:49:37 GMT") == 784_111_777.0
    assert read_http_date("Wed, 31 Jan 2024 12:00:00 GMT\r\n") == JAN31
    # the obsolete forms a recipient must accept (RFC 9110 §5.6.7), as the origin and the edge do
    assert read_http_date("Sunday, 06-Nov-94 08:49:37 GMT") == 784_111_777.0
    assert read_http_date("Sun Nov  6 08:49:37 1994") == 784_111_777.0


@pytest.mark.parametrize(
    "text",
    [
        "Thu, 31 Feb 2024 12:00:00 GMT",
        "Wed, 31 Jan 2024 25:00:00 GMT",
        "1706702400",
    ],
)
def test_read_http_date_rejects(text: str) -> None:
    with pytest.raises(ClockSyncError, match="is not"):
        read_http_date(text)


@given(st.text(max_size=80))
def test_fuzz_parsers_raise_only_clock_sync_error(text: str) -> None:
    for parse in (parse_instant, read_http_date):
        try:
            parse(text)
        except ClockSyncError:
            pass


def test_the_schemes_dash_js_supports_in_both_spellings() -> None:
    for name in ("http-xsdate", "http-iso", "http-head", "direct"):
        assert SCHEMES[f"urn:mpeg:dash:utc:{name}:2014"] == SCHEMES[f"urn:mpeg:dash:utc:{name}:2012"]
    assert len(SCHEMES) == 8


def test_time_sources_keep_the_mpd_order_split_urls_and_skip_what_cannot_be_asked() -> None:
    timings = (
        UtcTiming("urn:mpeg:dash:utc:ntp:2014", "pool.ntp.org"),
        UtcTiming("urn:mpeg:dash:utc:http-iso:2012", " https://t1.test/iso \n ../time  "),
        UtcTiming("urn:example:unknown", "http://u.test/"),
        UtcTiming(HEAD, "ftp://t2.test/ http://t2.test/"),
        UtcTiming(f" {DIRECT} ", " 2024-01-31T12:00:00Z "),
    )
    assert time_sources(timings, MPD_URL) == [
        TimeSource("urn:mpeg:dash:utc:http-iso:2012", "body", "https://t1.test/iso"),
        TimeSource("urn:mpeg:dash:utc:http-iso:2012", "body", "http://cdn.test/live/time"),
        TimeSource(HEAD, "head", "http://t2.test/"),
        TimeSource(DIRECT, "direct", "2024-01-31T12:00:00Z"),
    ]
    assert time_sources((), MPD_URL) == []


def exchange(
    *, body: bytes = b"", date: str | None = None, sent: float = 100.0, received: float = 100.2
) -> Exchange:
    return Exchange(url="http://t.test/time", body=body, date=date, sent=sent, received=received)


def test_offset_is_server_time_minus_the_midpoint_of_the_exchange() -> None:
    body = TimeSource(XSDATE, "body", "http://t.test/time")
    answer = exchange(body=b"2024-01-31T12:00:20.1Z", sent=JAN31, received=JAN31 + 0.2)
    assert offset_of(body, answer) == pytest.approx(20.0)
    head = TimeSource(HEAD, "head", "http://t.test/")
    dated = exchange(date="Wed, 31 Jan 2024 11:59:40 GMT", sent=JAN31, received=JAN31 + 0.2)
    assert offset_of(head, dated) == pytest.approx(-20.0 + DATE_MIDPOINT - 0.1)
    direct = TimeSource(DIRECT, "direct", "2024-01-31T12:00:05Z")
    assert offset_of(direct, exchange(sent=JAN31 - 0.1, received=JAN31 + 0.1)) == pytest.approx(5.0)


@pytest.mark.parametrize(
    ("source", "answer", "match"),
    [
        (TimeSource(HEAD, "head", "http://t.test/"), exchange(), "has no Date header"),
        (TimeSource(XSDATE, "body", "http://t.test/"), exchange(body=b"\xff\xfe\x00"), "is not text"),
        (
            TimeSource(XSDATE, "body", "http://t.test/"),
            exchange(body=b"<html>busy</html>"),
            "not an xs:dateTime",
        ),
        (TimeSource(DIRECT, "direct", "now"), exchange(), "not an xs:dateTime"),
    ],
)
def test_unreadable_answers(source: TimeSource, answer: Exchange, match: str) -> None:
    with pytest.raises(ClockSyncError, match=match):
        offset_of(source, answer)


def test_exchange_of_a_fetch_takes_the_last_attempt_only() -> None:
    got = ChunkFetch(url="http://t.test/time", data=b"x", status=200, edge="127.0.0.1:80", started=5.0,
                     download_seconds=0.3, retries=2, failovers=0, date="Wed, 31 Jan 2024 12:00:00 GMT")  # fmt: skip
    ex = Exchange.of(got, received=JAN31)
    assert (ex.sent, ex.received, ex.midpoint) == pytest.approx((JAN31 - 0.3, JAN31, JAN31 - 0.15))
    assert (ex.url, ex.body, ex.date) == (got.url, b"x", got.date)


@pytest.mark.parametrize(
    ("text", "seconds"), [("5", 5.0), (" 12 ", 12.0), (None, 0.0), ("-3", 0.0), ("2.5", 0.0)]
)
def test_parse_age(text: str | None, seconds: float) -> None:
    assert parse_age(text) == seconds


def test_an_answer_a_cache_kept_was_written_age_seconds_earlier() -> None:
    """An edge serves a cached MPD or time answer with its original Date (and body) plus `Age`:
    without adding it, a player behind a cache would set its clock back by the age."""
    body = TimeSource(XSDATE, "body", "http://t.test/time")
    kept = Exchange(url="http://t.test/time", body=b"2024-01-31T12:00:15Z", date=None, sent=JAN31 - 0.1,
                    received=JAN31 + 0.1, age=5.0)  # fmt: skip
    assert offset_of(body, kept) == pytest.approx(20.0)
    direct = TimeSource(DIRECT, "direct", "2024-01-31T12:00:15Z")
    assert offset_of(direct, kept) == pytest.approx(20.0)
    mpd = Exchange(url=MPD_URL, body=b"", date="Wed, 31 Jan 2024 12:00:00 GMT", sent=JAN31 + 0.4,
                   received=JAN31 + 0.6, age=7.0)  # fmt: skip
    assert date_fallback(mpd).offset == pytest.approx(7.0)
    got = ChunkFetch(url=MPD_URL, data=b"", status=200, edge="127.0.0.1:80", started=0.0, download_seconds=0.1,
                     retries=0, failovers=0, date=mpd.date, age="7")  # fmt: skip
    assert Exchange.of(got, received=JAN31).age == 7.0


@pytest.mark.parametrize(
    ("date", "offset", "source"),
    [
        ("Wed, 31 Jan 2024 12:00:20 GMT", 20.0, f"the Date header of {MPD_URL}"),
        ("Wed, 31 Jan 2024 11:59:40 GMT", -20.0, f"the Date header of {MPD_URL}"),
        ("Wed, 31 Jan 2024 12:00:02 GMT", 2.0, f"the Date header of {MPD_URL}"),
        ("Wed, 31 Jan 2024 12:00:01 GMT", 0.0, "local clock"),  # +1.0 s: not beyond the 1 s resolution
        ("Wed, 31 Jan 2024 12:00:00 GMT", 0.0, "local clock"),
        ("Wed, 31 Jan 2024 11:59:59 GMT", 0.0, "local clock"),  # -1.0 s
        (None, 0.0, "local clock"),
    ],
)
def test_the_mpd_date_fallback_and_its_one_second_rule(date: str | None, offset: float, source: str) -> None:
    mpd = Exchange(url=MPD_URL, body=b"", date=date, sent=JAN31 + 0.4, received=JAN31 + 0.6)  # midpoint +0.5
    sync = date_fallback(mpd, ("earlier: failed",))
    assert (sync.offset, sync.source, sync.failures) == (pytest.approx(offset), source, ("earlier: failed",))


def test_an_unreadable_mpd_date_is_a_failure_and_the_local_clock_is_kept() -> None:
    mpd = Exchange(url=MPD_URL, body=b"", date="yesterday", sent=JAN31, received=JAN31)
    sync = date_fallback(mpd)
    assert (sync.offset, sync.source) == (0.0, "local clock")
    assert len(sync.failures) == 1
    assert "Date header" in sync.failures[0]
    assert "'yesterday'" in sync.failures[0]


def test_clock_sync_clock_and_description() -> None:
    sync = ClockSync(20.314, f"{XSDATE} (http://t.test/time)")
    assert sync.clock(lambda: 100.0)() == pytest.approx(120.314)
    assert sync.describe() == f"clock offset +20.31 s from {XSDATE} (http://t.test/time)"
    assert ClockSync(-3.0, "local clock").describe() == "clock offset -3.00 s from local clock"
    with pytest.raises(ValueError, match="finite"):
        ClockSync(float("nan"), "x")


# --- sync_clock against a real origin (no playback) --------------------------------------------


def fetcher() -> Fetcher:
    return Fetcher(EdgePool(Resolver(server=None, timeout=2)), timeout=2, retries_per_edge=1, max_failovers=0)


def sync_with(origin: LiveOrigin, timings: list[tuple[str, str]]) -> ClockSync:
    """Fetch the origin's MPD as a session does, then sync against its UTCTiming."""
    origin.utc_timing = timings
    with fetcher() as f:
        got = f.get(origin.url)
        manifest = parse_mpd(got.data, base_url=got.url)
        return sync_clock(manifest, f.get, time.time, mpd=Exchange.of(got, time.time()))


@pytest.mark.network
@pytest.mark.parametrize("skew", [20.0, -20.0])
def test_sync_clock_reads_each_scheme_of_a_real_origin(skew: float) -> None:
    with LiveOrigin(skew=skew) as origin:
        xsdate = sync_with(origin, [(XSDATE, "time")])  # relative to the MPD's URL
        assert xsdate.offset == pytest.approx(skew, abs=0.25)
        assert xsdate.source == f"{XSDATE} ({origin.time_url})"
        iso = sync_with(origin, [("urn:mpeg:dash:utc:http-iso:2012", origin.time_url)])
        assert iso.offset == pytest.approx(skew, abs=0.25)
        head = sync_with(origin, [(HEAD, origin.url)])
        assert head.offset == pytest.approx(skew, abs=0.6)  # whole seconds, +0.5
        stamp = origin.now() + 0.1  # a direct value is the server's time when the MPD was written
        when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(stamp)) + f".{int(stamp % 1 * 1000):03d}Z"
        direct = sync_with(origin, [(DIRECT, when)])
        assert direct.offset == pytest.approx(skew + 0.1, abs=0.1)
        requests = [r.path for r in origin.requests]
    assert requests.count("/live/time") == 2  # direct asks nothing; head GETs the URL it names


@pytest.mark.network
def test_sync_clock_falls_through_dead_and_garbage_sources_to_the_next() -> None:
    dead = f"http://127.0.0.1:{free_port()}/time"
    with LiveOrigin(skew=-20.0) as origin:
        sync = sync_with(origin, [
            (XSDATE, f"{dead} missing"),  # a closed port, then a 404 (relative: /live/missing)
            ("urn:mpeg:dash:utc:http-xsdate:2012", "manifest.mpd"),  # answers XML, not a time
            ("urn:mpeg:dash:utc:ntp:2014", "pool.ntp.org"),  # not asked: needs NTP
            (XSDATE, "time"),
        ])  # fmt: skip
    assert sync.offset == pytest.approx(-20.0, abs=0.25)
    assert sync.source == f"{XSDATE} ({origin.time_url})"
    assert len(sync.failures) == 3
    assert sync.failures[0].startswith(f"{XSDATE} ({dead}): GET {dead} failed")
    assert "HTTP 404" in sync.failures[1]
    assert "not an xs:dateTime" in sync.failures[2]
    assert "'<?xml" in sync.failures[2]


@pytest.mark.network
@pytest.mark.parametrize(
    ("skew", "date_skew", "offset"), [(20.0, None, 20.0), (-20.0, None, -20.0), (20.0, 0.0, 0.0)]
)
def test_sync_clock_falls_back_to_the_mpd_date(skew: float, date_skew: float | None, offset: float) -> None:
    with LiveOrigin(skew=skew, date_skew=date_skew) as origin:
        sync = sync_with(origin, [(HEAD, f"http://127.0.0.1:{free_port()}/")])  # nothing listens there
    assert sync.offset == pytest.approx(offset, abs=0.6)
    assert sync.source == ("local clock" if offset == 0 else f"the Date header of {origin.url}")
    assert len(sync.failures) == 1
