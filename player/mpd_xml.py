"""Safe XML reading and the small attribute parsers the MPD parser is built from (pure, no I/O).

`parse_xml` builds an ElementTree with expat but refuses DOCTYPE and entity declarations (the
billion-laughs and external-entity attacks defusedxml guards against), so an MPD from the network
can be parsed safely. Tags in the DASH namespace (or in none) lose their namespace; others keep
``{ns}local`` so they never match DASH element names. Every parser raises `ManifestError` naming
the element and attribute.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar
from xml.parsers import expat

from player.errors import ManifestError

__all__ = [
    "DASH_NS",
    "MAX_MPD_BYTES",
    "Attr",
    "parse_bool",
    "parse_byte_range",
    "parse_datetime",
    "parse_duration",
    "parse_float",
    "parse_frame_rate",
    "parse_int",
    "parse_unsigned",
    "parse_xml",
]

DASH_NS = "urn:mpeg:dash:schema:mpd:2011"
MAX_MPD_BYTES = 16 * 1024 * 1024
_SEP = "\x1f"  # expat namespace separator: never valid in a name

T = TypeVar("T")


def _local(name: str) -> str:
    """`ns<SEP>local` → `local` for the DASH namespace, `{ns}local` for any other namespace."""
    ns, sep, local = name.rpartition(_SEP)
    if not sep or ns == DASH_NS:
        return local
    return f"{{{ns}}}{local}"


def _forbid(what: str) -> Callable[..., None]:
    def handler(*_args: object) -> None:
        raise ManifestError(f"{what} are not allowed in an MPD (unsafe XML); remove them", element="MPD")

    return handler


def parse_xml(data: bytes) -> ET.Element:
    """Parse XML bytes into an Element tree, rejecting DOCTYPE, entities and oversized input.

    Raises ManifestError for malformed XML (with the expat line and column) or unsafe constructs.
    """
    if len(data) > MAX_MPD_BYTES:
        raise ManifestError(f"document is {len(data)} bytes, over the {MAX_MPD_BYTES} byte limit")
    builder = ET.TreeBuilder()
    parser = expat.ParserCreate(namespace_separator=_SEP)
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _forbid("DOCTYPE declarations")
    parser.EntityDeclHandler = _forbid("entity declarations")
    parser.UnparsedEntityDeclHandler = _forbid("entity declarations")
    parser.ExternalEntityRefHandler = _forbid("external entities")  # type: ignore[assignment]
    parser.StartElementHandler = lambda tag, attrs: builder.start(
        _local(tag), {_local(k): v for k, v in attrs.items()}
    )
    parser.EndElementHandler = lambda tag: builder.end(_local(tag))
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(data, True)
        root = builder.close()
    except expat.ExpatError as exc:
        raise ManifestError(f"not well-formed XML: {exc}; check the document is a complete MPD") from exc
    except (ValueError, LookupError, UnicodeError, AssertionError, RecursionError) as exc:
        raise ManifestError(f"cannot read the XML: {exc}") from exc
    return root


class Attr:
    """Reads typed attributes of one element, naming the element in every error."""

    __slots__ = ("_attrs", "_element")

    def __init__(self, element: str, attrs: dict[str, str]) -> None:
        self._element = element
        self._attrs = attrs

    def raw(self, name: str) -> str | None:
        """The attribute's text, or None when absent."""
        return self._attrs.get(name)

    def get(self, name: str, parser: Callable[[str], T], default: T) -> T:
        """The attribute parsed by `parser`, or `default` when absent; ManifestError when malformed."""
        text = self._attrs.get(name)
        if text is None:
            return default
        return self._parse(name, parser, text)

    def optional(self, name: str, parser: Callable[[str], T]) -> T | None:
        """The attribute parsed by `parser`, or None when absent."""
        text = self._attrs.get(name)
        return None if text is None else self._parse(name, parser, text)

    def required(self, name: str, parser: Callable[[str], T]) -> T:
        """The attribute parsed by `parser`; ManifestError when absent or malformed."""
        text = self._attrs.get(name)
        if text is None:
            raise ManifestError("is required but missing", element=self._element, attribute=name)
        return self._parse(name, parser, text)

    def _parse(self, name: str, parser: Callable[[str], T], text: str) -> T:
        try:
            return parser(text)
        except ValueError as exc:
            raise ManifestError(
                f"{text!r} {exc}", element=self._element, attribute=name, value=text
            ) from None


def parse_int(text: str) -> int:
    """A signed xs:integer."""
    if not re.fullmatch(r"\s*[-+]?\d{1,30}\s*", text):
        raise ValueError("is not an integer")
    return int(text)


def parse_unsigned(text: str) -> int:
    """An xs:unsignedInt/Long (>= 0)."""
    if not re.fullmatch(r"\s*\+?\d{1,30}\s*", text):
        raise ValueError("is not a non-negative integer")
    return int(text)


def parse_positive(text: str) -> int:
    """An integer > 0 (timescale, bandwidth)."""
    value = parse_unsigned(text)
    if value == 0:
        raise ValueError("must be greater than zero")
    return value


def parse_float(text: str) -> float:
    """A finite xs:double."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError("is not a number") from None
    if not math.isfinite(value):
        raise ValueError("is not a finite number")
    return value


def parse_bool(text: str) -> bool:
    """An xs:boolean (true/false/1/0)."""
    lowered = text.strip().lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise ValueError("is not a boolean (true or false)")


_DURATION = re.compile(
    r"\s*(-)?P(?:(\d+(?:\.\d+)?)Y)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)W)?(?:(\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d*)?|\.\d+)S)?)?\s*"
)
_DURATION_UNITS = (365 * 86400.0, 30 * 86400.0, 7 * 86400.0, 86400.0, 3600.0, 60.0, 1.0)


def parse_duration(text: str) -> float:
    """An xs:duration such as ``PT1H2M3.5S`` or ``P1DT2H``, in seconds (years 365 d, months 30 d)."""
    match = _DURATION.fullmatch(text)
    if not match or not any(match.groups()[1:]) or text.strip().endswith("T"):
        raise ValueError("is not an xs:duration such as PT2S or PT1H30M")
    seconds = sum(float(g) * unit for g, unit in zip(match.groups()[1:], _DURATION_UNITS, strict=True) if g)
    if not math.isfinite(seconds):
        raise ValueError("is too large")
    return -seconds if match.group(1) else seconds


def parse_datetime(text: str) -> float:
    """An xs:dateTime, as POSIX seconds; a time without zone is taken as UTC."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError("is not an xs:dateTime such as 2024-01-31T12:00:00Z") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def parse_frame_rate(text: str) -> float:
    """A frame rate, ``30`` or ``30000/1001``, in frames per second."""
    match = re.fullmatch(r"\s*(\d{1,12})(?:/(\d{1,12}))?\s*", text)
    if not match or (match.group(2) is not None and int(match.group(2)) == 0):
        raise ValueError("is not a frame rate such as 25 or 30000/1001")
    return int(match.group(1)) / int(match.group(2) or 1)


def parse_byte_range(text: str) -> tuple[int, int]:
    """A byte range ``first-last`` (inclusive, first <= last)."""
    match = re.fullmatch(r"\s*(\d{1,18})-(\d{1,18})\s*", text)
    if not match or int(match.group(1)) > int(match.group(2)):
        raise ValueError("is not a byte range such as 0-1023 (first-last, inclusive)")
    return int(match.group(1)), int(match.group(2))
