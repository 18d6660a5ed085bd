"""The MPD parser: `parse_mpd(xml, base_url=...)` turns MPD bytes into frozen dataclasses (pure, no I/O).

Segment information (SegmentTemplate, SegmentList, SegmentBase) is inherited Period → AdaptationSet →
Representation (see `player.segment_info`, whose dataclasses are re-exported here).
BaseURLs are resolved through every level into `Representation.base_url`. Expanding segments to
URLs is `player.timeline`'s job. UTCTiming time sources are kept as written, in document order
(`player.clocksync` asks them). Errors raise `ManifestError` naming the element and attribute.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urljoin

from player.errors import ManifestError
from player.mpd_xml import Attr, parse_datetime, parse_duration, parse_frame_rate, parse_unsigned, parse_xml
from player.segment_info import (
    ByteRange,
    Scope,
    SegmentBase,
    SegmentInfo,
    SegmentList,
    SegmentTemplate,
    SegmentURL,
    TimelineEntry,
    URLRef,
    merge_scope,
    segment_info,
)

__all__ = [
    "AdaptationSet",
    "ByteRange",
    "ContentType",
    "Manifest",
    "Period",
    "Representation",
    "SegmentBase",
    "SegmentInfo",
    "SegmentList",
    "SegmentTemplate",
    "SegmentURL",
    "TimelineEntry",
    "URLRef",
    "UtcTiming",
    "parse_mpd",
]

ContentType = Literal["video", "audio", "text", "other"]
_XLINK_HREF = "{http://www.w3.org/1999/xlink}href"


@dataclass(frozen=True, slots=True, kw_only=True)
class Representation:
    """One rendition. `base_url` is absolute (resolved through every BaseURL level); bandwidth in bit/s."""

    id: str
    bandwidth: int
    base_url: str
    width: int | None = None
    height: int | None = None
    frame_rate: float | None = None
    codecs: str | None = None
    mime_type: str | None = None
    segment_info: SegmentInfo | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AdaptationSet:
    """A set of interchangeable representations; `content_type` is inferred when not given."""

    id: str | None
    content_type: ContentType
    representations: tuple[Representation, ...]
    mime_type: str | None = None
    lang: str | None = None
    codecs: str | None = None

    def ladder(self) -> tuple[Representation, ...]:
        """The representations sorted by ascending bandwidth (the order ABR indices refer to)."""
        return tuple(sorted(self.representations, key=lambda r: (r.bandwidth, r.id)))


@dataclass(frozen=True, slots=True, kw_only=True)
class Period:
    """A period; `start` and `duration` in seconds (duration None when open-ended)."""

    id: str | None
    start: float
    duration: float | None
    base_url: str
    adaptation_sets: tuple[AdaptationSet, ...]

    def adaptation_set(self, content_type: ContentType) -> AdaptationSet | None:
        """The first adaptation set of that content type, or None."""
        return next((a for a in self.adaptation_sets if a.content_type == content_type), None)


@dataclass(frozen=True, slots=True)
class UtcTiming:
    """A time source of the MPD (ISO/IEC 23009-1 §5.8.4.11): `scheme` (@schemeIdUri) and `value`, as written."""

    scheme: str
    value: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Manifest:
    """A parsed MPD. Times in seconds; wall-clock instants as POSIX seconds (None when absent)."""

    type: Literal["static", "dynamic"]
    periods: tuple[Period, ...]
    base_url: str
    min_buffer_time: float
    media_presentation_duration: float | None = None
    availability_start_time: float | None = None
    publish_time: float | None = None
    minimum_update_period: float | None = None
    time_shift_buffer_depth: float | None = None
    max_segment_duration: float | None = None
    suggested_presentation_delay: float | None = None
    remote_periods: int = field(default=0)
    utc_timing: tuple[UtcTiming, ...] = ()  # in document order: the MPD author's preference

    def video_ladder(self, period_index: int = 0) -> tuple[Representation, ...]:
        """The video representations of a period, ascending bandwidth; empty when there is no video."""
        if not 0 <= period_index < len(self.periods):
            return ()
        aset = self.periods[period_index].adaptation_set("video")
        return aset.ladder() if aset else ()


# --- content type and BaseURL -------------------------------------------------------------------

_VIDEO_CODECS = ("avc", "hev", "hvc", "vp0", "vp8", "vp9", "av01", "mvc", "dvh", "dva", "mp4v")
_AUDIO_CODECS = ("mp4a", "ac-3", "ec-3", "ac-4", "opus", "vorbis", "flac", "mhm", "dts", "mp3")
_TEXT_CODECS = ("stpp", "wvtt", "tx3g", "ttml", "vtt")


def infer_content_type(content_type: str | None, mime_types: list[str], codecs: list[str]) -> ContentType:
    """Content type from @contentType, else the MIME types, else the codecs ('other' when unknown)."""
    if content_type in ("video", "audio", "text"):
        return content_type  # type: ignore[return-value]
    for mime in mime_types:
        major = mime.split("/", 1)[0].strip().lower()
        if major in ("video", "audio", "text"):
            return major  # type: ignore[return-value]
        if "ttml" in mime or "vtt" in mime:
            return "text"
    for codec_list in codecs:
        first = codec_list.split(",")[0].strip().lower()
        for prefixes, kind in ((_VIDEO_CODECS, "video"), (_AUDIO_CODECS, "audio"), (_TEXT_CODECS, "text")):
            if first.startswith(prefixes):
                return kind  # type: ignore[return-value]
    return "other"


def _base_url(parent: str, elem: ET.Element) -> str:
    """`parent` joined with the first BaseURL child (RFC 3986 resolution), or `parent` when none."""
    found = elem.find("BaseURL")
    if found is None or not (found.text or "").strip():
        return parent
    return urljoin(parent, (found.text or "").strip())


# --- elements -----------------------------------------------------------------------------------


def _representation(elem: ET.Element, aset: ET.Element, base: str, scope: Scope) -> Representation:
    a, inherited = Attr("Representation", elem.attrib), Attr("AdaptationSet", aset.attrib)
    rep_id = a.required("id", str)
    if not rep_id.strip():
        raise ManifestError("must not be empty", element="Representation", attribute="id")
    return Representation(
        id=rep_id, bandwidth=a.required("bandwidth", parse_unsigned), base_url=_base_url(base, elem),
        width=a.optional("width", parse_unsigned) or inherited.optional("width", parse_unsigned),
        height=a.optional("height", parse_unsigned) or inherited.optional("height", parse_unsigned),
        frame_rate=a.optional("frameRate", parse_frame_rate) or inherited.optional("frameRate", parse_frame_rate),
        codecs=a.raw("codecs") or inherited.raw("codecs"), mime_type=a.raw("mimeType") or inherited.raw("mimeType"),
        segment_info=segment_info(merge_scope(scope, elem)),
    )  # fmt: skip


def _adaptation_set(elem: ET.Element, base: str, scope: Scope) -> AdaptationSet:
    a = Attr("AdaptationSet", elem.attrib)
    base, scope = _base_url(base, elem), merge_scope(scope, elem)
    reps = tuple(_representation(r, elem, base, scope) for r in elem.findall("Representation"))
    mimes = [m for m in [a.raw("mimeType"), *(r.mime_type for r in reps)] if m]
    codecs = [c for c in [a.raw("codecs"), *(r.codecs for r in reps)] if c]
    return AdaptationSet(
        id=a.raw("id"), content_type=infer_content_type(a.raw("contentType"), mimes, codecs),
        representations=reps, mime_type=a.raw("mimeType"), lang=a.raw("lang"), codecs=a.raw("codecs"),
    )  # fmt: skip


def _period(elem: ET.Element, base: str, start: float, duration: float | None) -> Period:
    base = _base_url(base, elem)
    scope = merge_scope(Scope(), elem)
    sets = tuple(_adaptation_set(s, base, scope) for s in elem.findall("AdaptationSet"))
    return Period(id=elem.get("id"), start=start, duration=duration, base_url=base, adaptation_sets=sets)


def _period_times(elems: list[ET.Element], mpd_duration: float | None) -> list[tuple[float, float | None]]:
    """(start, duration) of each period per §5.3.2.1: explicit @start, else the previous end, else 0."""
    starts: list[float | None] = []
    durations: list[float | None] = []
    for i, elem in enumerate(elems):
        a = Attr("Period", elem.attrib)
        start, duration = a.optional("start", parse_duration), a.optional("duration", parse_duration)
        if start is None:
            prev_start, prev_duration = (starts[-1], durations[-1]) if i else (0.0, 0.0)
            start = (
                prev_start + prev_duration if prev_start is not None and prev_duration is not None else None
            )
        starts.append(start)
        durations.append(duration)
    times: list[tuple[float, float | None]] = []
    for i, (start, duration) in enumerate(zip(starts, durations, strict=True)):
        if start is None:
            raise ManifestError(
                f"period {i} has no start and the previous period no duration",
                element="Period",
                attribute="start",
            )
        if duration is None:
            following = starts[i + 1] if i + 1 < len(starts) else None
            end = following if following is not None else (mpd_duration if i + 1 == len(starts) else None)
            duration = end - start if end is not None else None
        if duration is not None and duration < 0:
            raise ManifestError(
                f"period {i} ends before it starts ({duration:g} s)", element="Period", attribute="duration"
            )
        times.append((start, duration))
    return times


def _utc_timing(elem: ET.Element) -> UtcTiming:
    a = Attr("UTCTiming", elem.attrib)
    return UtcTiming(scheme=a.required("schemeIdUri", str), value=a.required("value", str))


def _presentation_type(kind: str) -> Literal["static", "dynamic"]:
    if kind == "static":
        return "static"
    if kind == "dynamic":
        return "dynamic"
    raise ManifestError(f"{kind!r} is not 'static' or 'dynamic'", element="MPD", attribute="type", value=kind)


def parse_mpd(xml: bytes, *, base_url: str) -> Manifest:
    """Parse MPD bytes into a `Manifest`; `base_url` is the URL (or path) the MPD was fetched from.

    Raises ManifestError (naming element and attribute) for malformed XML, DOCTYPE/entities, a root
    that is not MPD, or attributes of the wrong type. Remote (xlink) periods are skipped and counted.
    """
    root = parse_xml(xml)
    if root.tag != "MPD":
        raise ManifestError(
            f"the root element is {root.tag!r}, not MPD: is this a DASH manifest?", element=root.tag
        )
    a = Attr("MPD", root.attrib)
    kind = _presentation_type(a.get("type", str, "static"))
    mpd_duration = a.optional("mediaPresentationDuration", parse_duration)
    base = _base_url(base_url, root)
    all_periods = root.findall("Period")
    local = [p for p in all_periods if not (p.get(_XLINK_HREF) and len(p) == 0)]
    times = _period_times(local, mpd_duration)
    return Manifest(
        type=kind, base_url=base, min_buffer_time=a.get("minBufferTime", parse_duration, 0.0),
        periods=tuple(_period(p, base, s, d) for p, (s, d) in zip(local, times, strict=True)),
        media_presentation_duration=mpd_duration,
        availability_start_time=a.optional("availabilityStartTime", parse_datetime),
        publish_time=a.optional("publishTime", parse_datetime),
        minimum_update_period=a.optional("minimumUpdatePeriod", parse_duration),
        time_shift_buffer_depth=a.optional("timeShiftBufferDepth", parse_duration),
        max_segment_duration=a.optional("maxSegmentDuration", parse_duration),
        suggested_presentation_delay=a.optional("suggestedPresentationDelay", parse_duration),
        remote_periods=len(all_periods) - len(local),
        utc_timing=tuple(_utc_timing(u) for u in root.findall("UTCTiming")),
    )  # fmt: skip
