"""HTTP dates (RFC 9110 §5.6.7), one implementation for the origin, the edge and the player.

`parse_http_date` accepts what a recipient must: the IMF-fixdate servers send
(`Sun, 06 Nov 1994 08:49:37 GMT`) and the obsolete asctime form; anything else is None, so a bad
date is ignored rather than trusted. `format_http_date` writes IMF-fixdate.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime

__all__ = ["format_http_date", "parse_http_date"]


def parse_http_date(text: str | None) -> float | None:
    """An HTTP date as POSIX seconds (whole ones); None when absent or not a valid date."""
    if not text:
        return None
    try:
        parsed = parsedate_to_datetime(text.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:  # asctime form: HTTP dates are always GMT
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.timestamp()
    except (OverflowError, OSError, ValueError):
        return None


def format_http_date(timestamp: float) -> str:
    """A POSIX timestamp as an IMF-fixdate (`Tue, 24 Nov 2026 18:00:00 GMT`), whole seconds."""
    return format_datetime(datetime.fromtimestamp(int(timestamp), UTC), usegmt=True)
