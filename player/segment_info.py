"""Segment information of an MPD: SegmentTemplate, SegmentList, SegmentBase and their inheritance.

The dataclasses are re-exported by `player.mpd`. Attributes of a lower level (Representation)
override the higher ones (AdaptationSet, Period) and missing children (SegmentTimeline,
Initialization, SegmentURL) are taken from above (ISO/IEC 23009-1 §5.3.9.1); SegmentList and
SegmentTemplate also inherit @timescale and @presentationTimeOffset from a SegmentBase.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from player.errors import ManifestError
from player.mpd_xml import Attr, parse_byte_range, parse_float, parse_int, parse_positive, parse_unsigned

__all__ = [
    "ByteRange",
    "Scope",
    "SegmentBase",
    "SegmentInfo",
    "SegmentList",
    "SegmentTemplate",
    "SegmentURL",
    "TimelineEntry",
    "URLRef",
    "merge_scope",
    "segment_info",
]

ByteRange = tuple[int, int]  # (first, last), inclusive, as in an HTTP Range header


@dataclass(frozen=True, slots=True)
class URLRef:
    """An Initialization / RepresentationIndex element: a URL (None = the BaseURL) and an optional range."""

    source_url: str | None
    byte_range: ByteRange | None = None


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One SegmentTimeline `S` element: start time `t` (None = previous end), duration `d`, repeat `r`."""

    t: int | None
    d: int
    r: int = 0

    def __post_init__(self) -> None:
        if self.d <= 0:
            raise ManifestError(f"{self.d} must be greater than zero", element="S", attribute="d")
        if self.r < -1:
            raise ManifestError(f"{self.r} must be -1 or more", element="S", attribute="r")


@dataclass(frozen=True, slots=True)
class SegmentURL:
    """One SegmentList `SegmentURL`: media URL (None = the BaseURL) and optional media range."""

    media: str | None
    media_range: ByteRange | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SegmentTemplate:
    """Resolved SegmentTemplate: `media`/`initialization`/`index` are URL templates ($Number$, $Time$...)."""

    media: str | None
    initialization: str | None = None
    index: str | None = None
    timescale: int = 1
    duration: int | None = None
    start_number: int = 1
    end_number: int | None = None
    presentation_time_offset: int = 0
    availability_time_offset: float = 0.0
    timeline: tuple[TimelineEntry, ...] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SegmentList:
    """Resolved SegmentList: explicit segment URLs with a constant `duration` or a `timeline`."""

    urls: tuple[SegmentURL, ...]
    initialization: URLRef | None = None
    timescale: int = 1
    duration: int | None = None
    start_number: int = 1
    presentation_time_offset: int = 0
    timeline: tuple[TimelineEntry, ...] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SegmentBase:
    """Resolved SegmentBase: one file whose `sidx` (at `index_range`) lists the segments."""

    index_range: ByteRange | None = None
    initialization: URLRef | None = None
    representation_index: URLRef | None = None
    timescale: int = 1
    presentation_time_offset: int = 0


SegmentInfo = SegmentTemplate | SegmentList | SegmentBase


@dataclass(frozen=True, slots=True)
class _Raw:
    """Merged attributes and children of one kind of segment-information element."""

    attrs: dict[str, str]
    children: dict[str, tuple[ET.Element, ...]]


@dataclass(frozen=True, slots=True)
class Scope:
    """Segment information inherited so far, and the kind defined most specifically."""

    raws: dict[str, _Raw] = field(default_factory=dict)
    kind: str | None = None


_KINDS = ("SegmentBase", "SegmentList", "SegmentTemplate")
_CHILD_TAGS = ("SegmentTimeline", "Initialization", "RepresentationIndex", "SegmentURL")


def merge_scope(scope: Scope, elem: ET.Element) -> Scope:
    raws, kind = dict(scope.raws), scope.kind
    for name in _KINDS:
        found = elem.findall(name)
        if len(found) > 1:
            raise ManifestError(
                f"{len(found)} {name} elements in one {elem.tag}; at most one is allowed", element=name
            )
        if not found:
            continue
        child, parent = found[0], raws.get(name)
        attrs = {**(parent.attrs if parent else {}), **child.attrib}
        children = dict(parent.children) if parent else {}
        for tag in _CHILD_TAGS:
            own = tuple(child.findall(tag))
            if own:
                children[tag] = own
        raws[name], kind = _Raw(attrs, children), name
    return Scope(raws, kind)


def _timeline(raw: _Raw) -> tuple[TimelineEntry, ...] | None:
    timelines = raw.children.get("SegmentTimeline", ())
    if not timelines:
        return None
    entries = []
    for s in timelines[0].findall("S"):
        a = Attr("S", s.attrib)
        entries.append(
            TimelineEntry(
                a.optional("t", parse_unsigned), a.required("d", parse_unsigned), a.get("r", parse_int, 0)
            )
        )
    return tuple(entries)


def _url_ref(raw: _Raw, tag: str, attribute: str | None = None) -> URLRef | None:
    elems = raw.children.get(tag, ())
    if elems:
        a = Attr(tag, elems[0].attrib)
        return URLRef(a.raw("sourceURL"), a.optional("range", parse_byte_range))
    if attribute and attribute in raw.attrs:
        return URLRef(raw.attrs[attribute])
    return None


def _common(a: Attr, base: _Raw | None) -> dict[str, int]:
    """timescale and presentationTimeOffset, which SegmentList/Template inherit from SegmentBase too."""
    fallback = Attr("SegmentBase", base.attrs) if base else None
    timescale = a.optional("timescale", parse_positive) or (
        fallback.get("timescale", parse_positive, 1) if fallback else 1
    )
    pto = a.optional("presentationTimeOffset", parse_unsigned)
    if pto is None:
        pto = fallback.get("presentationTimeOffset", parse_unsigned, 0) if fallback else 0
    return {"timescale": timescale, "presentation_time_offset": pto}


def segment_info(scope: Scope) -> SegmentInfo | None:
    if scope.kind is None:
        return None
    raw, base = scope.raws[scope.kind], scope.raws.get("SegmentBase")
    a = Attr(scope.kind, raw.attrs)
    if scope.kind == "SegmentTemplate":
        return SegmentTemplate(
            media=a.raw("media"), initialization=a.raw("initialization"), index=a.raw("index"),
            duration=a.optional("duration", parse_positive), start_number=a.get("startNumber", parse_unsigned, 1),
            end_number=a.optional("endNumber", parse_unsigned),
            availability_time_offset=a.get("availabilityTimeOffset", _parse_ato, 0.0),
            timeline=_timeline(raw), **_common(a, base),
        )  # fmt: skip
    if scope.kind == "SegmentList":
        urls = []
        for s in raw.children.get("SegmentURL", ()):
            u = Attr("SegmentURL", s.attrib)
            urls.append(SegmentURL(u.raw("media"), u.optional("mediaRange", parse_byte_range)))
        return SegmentList(
            urls=tuple(urls), initialization=_url_ref(raw, "Initialization"),
            duration=a.optional("duration", parse_positive), start_number=a.get("startNumber", parse_unsigned, 1),
            timeline=_timeline(raw), **_common(a, base),
        )  # fmt: skip
    return SegmentBase(
        index_range=a.optional("indexRange", parse_byte_range), initialization=_url_ref(raw, "Initialization"),
        representation_index=_url_ref(raw, "RepresentationIndex"), **_common(a, None),
    )  # fmt: skip


def _parse_ato(text: str) -> float:
    return float("inf") if text.strip() == "INF" else parse_float(text)
