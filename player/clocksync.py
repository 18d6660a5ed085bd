"""Clock sync of a live session with the stream's time source (MPD UTCTiming, ISO/IEC 23009-1 §5.8.4.11,
DASH-IF IOP 4.7): live availability is judged on the server's clock, not the player's.

Pure part: which sources to ask (`time_sources`), reading their answers (`parse_instant`,
`read_http_date`) and the offset (`offset_of`, `date_fallback`). I/O part: `sync_clock` asks each
source in turn through the session's fetcher and falls back to the MPD response's Date header, as
dash.js does by default.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from urllib.parse import urljoin, urlsplit

import httpx

from cdn.httpdate import parse_http_date
from player.errors import PlayerError
from player.fetch import ChunkFetch
from player.mpd import Manifest, UtcTiming

__all__ = [
    "DATE_MIDPOINT",
    "FALLBACK_THRESHOLD",
    "SCHEMES",
    "ClockSync",
    "ClockSyncError",
    "Exchange",
    "Method",
    "TimeSource",
    "date_fallback",
    "offset_of",
    "parse_age",
    "parse_instant",
    "read_http_date",
    "server_time",
    "sync_clock",
    "time_sources",
]

Method = Literal["body", "head", "direct"]
"""How a source tells the time: its body (xs:dateTime / ISO 8601), its Date header, or the @value itself."""

_SCHEME_NAMES: tuple[tuple[str, Method], ...] = (
    ("http-xsdate", "body"),
    ("http-iso", "body"),
    ("http-head", "head"),
    ("direct", "direct"),
)
SCHEMES: dict[str, Method] = {
    f"urn:mpeg:dash:utc:{name}:{year}": method for name, method in _SCHEME_NAMES for year in ("2014", "2012")
}  # the schemes dash.js supports; ntp, sntp and http-ntp need more than HTTP GET and are skipped

DATE_MIDPOINT = 0.5  # a Date header is truncated to the second: the true time is on average 0.5 s later
FALLBACK_THRESHOLD = 1.0  # seconds: the MPD's Date (1 s resolution) corrects the clock only beyond this

_INSTANT = re.compile(
    r"\s*(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)([.,]\d+)?(Z|[+-]\d\d(?::?\d\d)?)?\s*",
    re.IGNORECASE | re.ASCII,
)


class ClockSyncError(PlayerError):
    """Raised when a time source's answer cannot be read as a time (or it gave none)."""

    def __init__(self, message: str, *, text: str | None = None) -> None:
        super().__init__(message)
        self.text = text


@dataclass(frozen=True, slots=True)
class TimeSource:
    """One place to ask the time: its UTCTiming scheme, how it tells the time, and its URL (direct: the value)."""

    scheme: str
    method: Method
    target: str

    def __str__(self) -> str:
        return f"{self.scheme} ({self.target})"


@dataclass(frozen=True, slots=True, kw_only=True)
class Exchange:
    """One HTTP answer on the local wall clock: its URL, body and Date header, and when it was asked and
    answered (POSIX seconds)."""

    url: str
    body: bytes
    date: str | None
    sent: float
    received: float
    age: float = 0.0  # seconds a cache held the answer (its Age header): it was written that much earlier

    @property
    def midpoint(self) -> float:
        """When the server most likely read its clock: halfway between sending and receiving (as NTP)."""
        return (self.sent + self.received) / 2

    @classmethod
    def of(cls, got: ChunkFetch, received: float) -> Exchange:
        """The exchange of a fetch that arrived at `received` (wall clock); it was sent `download_seconds`
        before (the last attempt's, so retries and back-off before it do not blur the midpoint)."""
        return cls(url=got.url, body=got.data, date=got.date, sent=received - got.download_seconds,
                   received=received, age=parse_age(got.age))  # fmt: skip


@dataclass(frozen=True, slots=True)
class ClockSync:
    """Seconds to add to the local wall clock to get the stream's, where they came from, and the sources
    that failed first ("source: why")."""

    offset: float
    source: str
    failures: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not math.isfinite(self.offset):
            raise ValueError(f"clock offset must be finite, got {self.offset}")

    def clock(self, wall: Callable[[], float]) -> Callable[[], float]:
        """The stream's clock: `wall()` + offset, POSIX seconds."""
        offset = self.offset
        return lambda: wall() + offset

    def describe(self) -> str:
        """One line for the session's events, e.g. ``clock offset +20.31 s from urn:... (http://.../time)``."""
        return f"clock offset {self.offset:+.2f} s from {self.source}"


def time_sources(timings: Sequence[UtcTiming], mpd_url: str) -> list[TimeSource]:
    """The sources to ask, in the MPD's order: each URL of a @value (whitespace-separated, relative ones
    resolved against `mpd_url`), the @value itself for direct; unsupported schemes and non-HTTP URLs skipped."""
    sources: list[TimeSource] = []
    for timing in timings:
        scheme = timing.scheme.strip()
        method = SCHEMES.get(scheme)
        if method == "direct":
            sources.append(TimeSource(scheme, method, timing.value.strip()))
        elif method is not None:
            urls = (urljoin(mpd_url, u) for u in timing.value.split())
            sources += [
                TimeSource(scheme, method, u) for u in urls if urlsplit(u).scheme in ("http", "https")
            ]
    return sources


def parse_instant(text: str) -> float:
    """An xs:dateTime or ISO 8601 instant (``2024-01-31T12:00:00.123Z``, ``...+01:00``), POSIX seconds.

    Fractional seconds of any length, ``Z`` or a ±hh:mm offset (none: UTC), surrounding whitespace;
    a leap second (``:60``) counts as the next second. Raises ClockSyncError naming the text.
    """
    match = _INSTANT.fullmatch(text)
    if match is None:
        raise ClockSyncError(
            f"{_clip(text)} is not an xs:dateTime such as 2024-01-31T12:00:00.123Z", text=text
        )
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    try:
        when = datetime(year, month, day, hour, minute, min(second, 59), tzinfo=UTC) - _zone(match[8])
    except (ValueError, OverflowError) as exc:
        raise ClockSyncError(f"{_clip(text)} is not a valid time: {exc}", text=text) from None
    fraction = float("0." + match[7][1:]) if match[7] else 0.0
    return when.timestamp() + fraction + (1 if second == 60 else 0)


def _zone(text: str | None) -> timedelta:
    """A zone designator as an offset from UTC: Z or none is 0; ValueError beyond 23:59."""
    if text is None or text.upper() == "Z":
        return timedelta(0)
    digits = text[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:] or 0)
    if hours > 23 or minutes > 59:
        raise ValueError(f"zone offset {text} out of range")
    sign = -1 if text[0] == "-" else 1
    return sign * timedelta(hours=hours, minutes=minutes)


def read_http_date(text: str) -> float:
    """An HTTP Date (`cdn.httpdate`: IMF-fixdate, ``Sun, 06 Nov 1994 08:49:37 GMT``, or an obsolete form a
    recipient must accept), as POSIX seconds (whole ones). Raises ClockSyncError naming the text."""
    when = parse_http_date(text)
    if when is None:
        raise ClockSyncError(
            f"{_clip(text)} is not an HTTP date such as Sun, 06 Nov 1994 08:49:37 GMT", text=text
        )
    return when


def _clip(text: str, limit: int = 60) -> str:
    """`text` quoted for an error message, cut to `limit` characters (an answer may be a whole page)."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _body_text(exchange: Exchange) -> str:
    try:
        return exchange.body.decode("utf-8")
    except UnicodeDecodeError:
        raise ClockSyncError(
            f"the answer of {exchange.url} is not text ({len(exchange.body)} bytes)"
        ) from None


def parse_age(text: str | None) -> float:
    """An Age header's seconds (RFC 9111 §5.1: a non-negative integer); 0 when absent or not one."""
    if text is None or not text.strip().isdigit():
        return 0.0
    return float(text.strip())


def server_time(source: TimeSource, exchange: Exchange) -> float:
    """The server's time in `exchange` as `source` tells it, POSIX seconds; raises ClockSyncError.

    A Date header gives whole seconds: DATE_MIDPOINT is added (the expected truncation). An answer a
    cache kept (`Age`, e.g. an MPD or a time response served by an edge) was written `age` seconds
    before it was sent on: that age is added, whatever the method.
    """
    if source.method == "direct":
        return parse_instant(source.target) + exchange.age
    if source.method == "body":
        return parse_instant(_body_text(exchange)) + exchange.age
    if exchange.date is None:
        raise ClockSyncError(f"the answer of {exchange.url} has no Date header")
    return read_http_date(exchange.date) + DATE_MIDPOINT + exchange.age


def offset_of(source: TimeSource, exchange: Exchange) -> float:
    """Server time − local time, seconds: the server read its clock at the exchange's midpoint
    (direct: the MPD's exchange, when the value was written). Raises ClockSyncError."""
    return server_time(source, exchange) - exchange.midpoint


def date_fallback(mpd: Exchange, failures: tuple[str, ...] = ()) -> ClockSync:
    """The clock from the MPD response's Date header (dash.js's default), when no time source answered.

    Its 1 s resolution cannot tell apart clocks closer than FALLBACK_THRESHOLD: within it (or with no
    readable Date) the local clock is trusted, offset 0.
    """
    if mpd.date is not None:
        try:
            offset = read_http_date(mpd.date) + DATE_MIDPOINT + mpd.age - mpd.midpoint
        except ClockSyncError as exc:
            failures = (*failures, f"the Date header of {mpd.url}: {exc}")
        else:
            if abs(offset) > FALLBACK_THRESHOLD:
                return ClockSync(offset, f"the Date header of {mpd.url}", failures)
    return ClockSync(0.0, "local clock", failures)


def sync_clock(
    manifest: Manifest, fetch: Callable[[str], ChunkFetch], wall: Callable[[], float], *, mpd: Exchange
) -> ClockSync:
    """The offset of the stream's clock from `wall`: the first UTCTiming source that answers, else the
    MPD's Date header (`date_fallback`); never raises.

    `fetch` GETs a URL (the session's `Fetcher.get`: same resolver, edges and failover); `mpd` is the
    exchange that brought the manifest (its URL resolves relative sources; its Date is the fallback).
    A source that cannot be fetched or answers something unreadable is recorded and the next one asked.
    """
    failures: list[str] = []
    for source in time_sources(manifest.utc_timing, mpd.url):
        try:
            exchange = mpd if source.method == "direct" else _ask(fetch, source.target, wall)
            return ClockSync(offset_of(source, exchange), str(source), tuple(failures))
        except (PlayerError, httpx.InvalidURL) as exc:  # FetchError, ResolveError, ClockSyncError; a bad URL
            failures.append(f"{source}: {exc}")
    return date_fallback(mpd, tuple(failures))


def _ask(fetch: Callable[[str], ChunkFetch], url: str, wall: Callable[[], float]) -> Exchange:
    """GET `url` and note when the answer arrived on the local wall clock."""
    got = fetch(url)
    return Exchange.of(got, wall())
