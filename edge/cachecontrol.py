"""Pure HTTP freshness rules (RFC 9111) for a shared cache: no clock, no I/O.

`parse_cache_control` reads the directives, `freshness_of` turns response headers into a
`Freshness` (how long the response is fresh and may be served stale), and `decide` says, for an
entry of a given age, whether to serve it, serve it while revalidating, or revalidate first.
Every function takes `now` explicitly so the tests can walk through time.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass

from cdn.httpdate import format_http_date, parse_http_date

__all__ = [
    "CacheControl",
    "Decision",
    "Freshness",
    "decide",
    "format_http_date",
    "freshness_of",
    "initial_age",
    "parse_cache_control",
    "parse_http_date",
    "stale_if_error_ok",
]

_DIRECTIVE_RE = re.compile(
    r'\s*([!#$%&\'*+\-.^_`|~0-9A-Za-z]+)\s*(?:=\s*("(?:[^"\\]|\\.)*"|[^,]*))?\s*(?:,|$)'
)
_MAX_DELTA = 2**31  # RFC 9111 §1.2.2: delta-seconds beyond this are treated as 2^31
HEURISTIC_FRACTION = 0.1  # RFC 9111 §4.2.2: 10 % of the time since Last-Modified
HEURISTIC_CAP = 86400.0


class Decision(enum.Enum):
    """What to do with a cached entry of a given age."""

    FRESH = "fresh"
    STALE_WHILE_REVALIDATE = "stale-while-revalidate"
    REVALIDATE = "revalidate"


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheControl:
    """The directives of one Cache-Control header that a shared cache cares about."""

    max_age: int | None = None
    s_maxage: int | None = None
    no_store: bool = False
    no_cache: bool = False
    private: bool = False
    public: bool = False
    must_revalidate: bool = False
    stale_while_revalidate: int | None = None
    stale_if_error: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Freshness:
    """How long a stored response is fresh (seconds from its origin date) and may be served stale."""

    ttl: float
    stale_while_revalidate: float = 0.0
    stale_if_error: float | None = None
    must_revalidate: bool = False

    def __post_init__(self) -> None:
        if self.ttl < 0 or self.stale_while_revalidate < 0:
            raise ValueError(f"freshness ttl {self.ttl} / swr {self.stale_while_revalidate} must be >= 0")


def _delta(value: str | None) -> int | None:
    """Parse delta-seconds; None when missing or malformed (such a directive is ignored)."""
    if value is None:
        return None
    value = value.strip().strip('"')
    if not value.isdigit() or not value.isascii():
        return None
    return min(int(value), _MAX_DELTA)


def parse_cache_control(header: str) -> CacheControl:
    """Parse a Cache-Control header value; unknown or malformed directives are ignored."""
    found: dict[str, str | None] = {}
    for part in header.split(","):
        match = _DIRECTIVE_RE.match(part)
        if match:
            found.setdefault(match.group(1).lower(), match.group(2))
    return CacheControl(
        max_age=_delta(found.get("max-age")),
        s_maxage=_delta(found.get("s-maxage")),
        no_store="no-store" in found,
        no_cache="no-cache" in found,
        private="private" in found,
        public="public" in found,
        must_revalidate="must-revalidate" in found or "proxy-revalidate" in found,
        stale_while_revalidate=_delta(found.get("stale-while-revalidate")),
        stale_if_error=_delta(found.get("stale-if-error")),
    )


def initial_age(headers: Mapping[str, str], *, request_time: float, response_time: float) -> float:
    """Corrected initial age of a response (RFC 9111 §4.2.3): its Age plus the response delay.

    The Date-based apparent age is deliberately ignored: it only adds clock skew between hosts,
    while a parent edge's Age header already carries the age accumulated upstream.
    """
    age = _delta(headers.get("age")) or 0
    return float(age) + max(0.0, response_time - request_time)


def freshness_of(
    status: int,
    headers: Mapping[str, str],
    *,
    negative_ttl: float,
) -> Freshness | None:
    """The freshness of a response for a shared cache, or None when it must not be stored.

    `headers` maps lower-case names to values. 200 is stored by its own rules; 404 and 410 are
    negative-cached for at most `negative_ttl` seconds; anything else is never stored.
    """
    cc = parse_cache_control(headers.get("cache-control", ""))
    if cc.no_store or cc.private or status not in (200, 404, 410):
        return None
    explicit = _explicit_ttl(cc, headers)
    if status != 200:
        ttl = negative_ttl if explicit is None else min(negative_ttl, explicit)
        return Freshness(ttl=ttl) if ttl > 0 else None
    if cc.no_cache:
        ttl = 0.0
    else:
        ttl = _heuristic_ttl(headers) if explicit is None else explicit
    return Freshness(
        ttl=ttl,
        stale_while_revalidate=float(cc.stale_while_revalidate or 0),
        stale_if_error=None if cc.stale_if_error is None else float(cc.stale_if_error),
        # s-maxage also carries proxy-revalidate's semantics (RFC 9111 §5.2.2.10): no stale serving
        must_revalidate=cc.must_revalidate or cc.no_cache or cc.s_maxage is not None,
    )


def _explicit_ttl(cc: CacheControl, headers: Mapping[str, str]) -> float | None:
    """s-maxage, then max-age, then Expires − Date (RFC 9111 §4.2.1); None if none is given."""
    if cc.s_maxage is not None:
        return float(cc.s_maxage)
    if cc.max_age is not None:
        return float(cc.max_age)
    if "expires" in headers:
        expires = parse_http_date(headers["expires"])
        date = parse_http_date(headers.get("date"))
        if expires is None or date is None:
            return 0.0  # an invalid Expires means "already expired" (RFC 9111 §5.3)
        return max(0.0, expires - date)
    return None


def _heuristic_ttl(headers: Mapping[str, str]) -> float:
    """10 % of the time since Last-Modified, capped at a day; 0 without Last-Modified."""
    modified = parse_http_date(headers.get("last-modified"))
    date = parse_http_date(headers.get("date"))
    if modified is None or date is None or date <= modified:
        return 0.0
    return min(HEURISTIC_CAP, (date - modified) * HEURISTIC_FRACTION)


def decide(freshness: Freshness, age: float) -> Decision:
    """Serve (FRESH), serve stale and revalidate in the background, or revalidate first."""
    if age < freshness.ttl:
        return Decision.FRESH
    if not freshness.must_revalidate and age < freshness.ttl + freshness.stale_while_revalidate:
        return Decision.STALE_WHILE_REVALIDATE
    return Decision.REVALIDATE


def stale_if_error_ok(freshness: Freshness, age: float, *, default_window: float) -> bool:
    """May a stale entry of this age stand in for an upstream error (RFC 5861 §4)?

    The response's own stale-if-error wins over the edge's `--stale-if-error` default;
    must-revalidate forbids it unless the response explicitly allowed stale-if-error.
    """
    if freshness.stale_if_error is not None:
        window = freshness.stale_if_error
    elif freshness.must_revalidate:
        return False
    else:
        window = default_window
    return age < freshness.ttl + window
