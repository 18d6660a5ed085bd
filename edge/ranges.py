"""Pure parsing of the `Range` request header (RFC 9110 §14) for a single-part byte range.

The edge answers one satisfiable byte range with 206. A multi-part range, a malformed `bytes=`
range or one that starts beyond the end is answered with 416 (we never build
multipart/byteranges bodies: DASH players ask for one range at a time). A unit other than
`bytes` is ignored, as RFC 9110 §14.2 requires, and the whole object is served with 200.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from edge.errors import RangeNotSatisfiable

__all__ = ["ByteRange", "content_range", "parse_range"]

_MAX_DIGITS = 18  # more than 10^18 bytes is absurd for any object; refuse before int() work
_SPEC_RE = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")


@dataclass(frozen=True, slots=True)
class ByteRange:
    """An inclusive byte range `start..end` within an object."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if not 0 <= self.start <= self.end:
            raise ValueError(f"byte range {self.start}-{self.end} is not 0 <= start <= end")

    @property
    def length(self) -> int:
        """Number of bytes in the range."""
        return self.end - self.start + 1


def content_range(rng: ByteRange | None, size: int) -> str:
    """The Content-Range value: `bytes START-END/SIZE`, or `bytes */SIZE` for a 416."""
    if rng is None:
        return f"bytes */{size}"
    return f"bytes {rng.start}-{rng.end}/{size}"


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The one range to serve from an object of `size` bytes, or None to serve it all (200).

    Raises RangeNotSatisfiable (416) for multi-part, malformed or unsatisfiable byte ranges.
    """
    if header is None:
        return None
    unit, sep, spec = header.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    if "," in spec:
        raise RangeNotSatisfiable(f"multi-part Range {header[:80]!r} is not supported; ask for one range")
    match = _SPEC_RE.match(spec)
    if not match or not (match.group(1) or match.group(2)):
        raise RangeNotSatisfiable(f"Range {header[:80]!r} is malformed; expected bytes=START-END")
    first, last = match.group(1), match.group(2)
    if len(first) > _MAX_DIGITS or len(last) > _MAX_DIGITS:
        raise RangeNotSatisfiable(f"Range {header[:80]!r} is absurdly large")
    if not first:
        return _suffix(int(last), size, header)
    start = int(first)
    end = size - 1 if not last else min(int(last), size - 1)
    if last and int(last) < start:
        raise RangeNotSatisfiable(f"Range {header[:80]!r} ends before it starts")
    if start >= size:
        raise RangeNotSatisfiable(f"Range {header[:80]!r} starts beyond the object's {size} bytes")
    return ByteRange(start, end)


def _suffix(length: int, size: int, header: str) -> ByteRange:
    """The last `length` bytes (`bytes=-N`)."""
    if length == 0 or size == 0:
        raise RangeNotSatisfiable(f"suffix Range {header[:80]!r} selects no bytes of a {size}-byte object")
    return ByteRange(max(0, size - length), size - 1)
