"""Segment lists: a pure function of (manifest, period, representation, now) → URLs and times.

Expands SegmentTemplate ($Number$, $Time$, $RepresentationID$, $Bandwidth$, `%0Nd` format tags,
`$$`), SegmentTimeline (S@t/@d/@r, r = -1 repeating to the next S, the period end or `now`),
SegmentList (SegmentURL@media/@mediaRange) and SegmentBase (from a parsed `sidx`, see
`player.sidx`). Times are seconds on the presentation timeline (period start included).
A live (dynamic) presentation lists the segments available at `now` (POSIX seconds) within the
time-shift buffer (ISO/IEC 23009-1 §5.3.9.5.3 and Annex A.3).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from urllib.parse import urljoin

from player.errors import IndexRequired, ManifestError
from player.mpd import ByteRange, Manifest, Period, Representation, SegmentBase, SegmentList, SegmentTemplate
from player.mpd import TimelineEntry as S
from player.sidx import SidxReference

__all__ = [
    "DEFAULT_LIVE_DEPTH",
    "MAX_SEGMENTS",
    "Segment",
    "SegmentRef",
    "expand_template",
    "index_segment",
    "init_segment",
    "segments",
]

MAX_SEGMENTS = 500_000  # a representation with more is refused (a fuzzed r="1e12" must not eat memory)
DEFAULT_LIVE_DEPTH = 3600.0  # seconds listed behind the live edge when the MPD has no timeShiftBufferDepth
_IDENT = re.compile(r"\$(RepresentationID|Number|Bandwidth|Time|SubNumber)(?:%0?(\d{1,2})d)?\$")


@dataclass(frozen=True, slots=True)
class SegmentRef:
    """Where an initialization or index segment is: absolute URL and optional inclusive byte range."""

    url: str
    byte_range: ByteRange | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Segment:
    """One media segment: `number`, `start`/`duration` in seconds, absolute `url`, optional byte range."""

    number: int
    start: float
    duration: float
    url: str
    byte_range: ByteRange | None = None


def expand_template(
    template: str, *, representation_id: str, bandwidth: int, number: int | None = None, time: int | None = None,
    attribute: str = "media",
) -> str:  # fmt: skip
    """Substitute DASH template identifiers (§5.3.9.4.4); ManifestError on unknown or unterminated ones."""
    values: dict[str, object | None] = {
        "RepresentationID": representation_id, "Bandwidth": bandwidth, "Number": number, "Time": time,
        "SubNumber": None,
    }  # fmt: skip
    out: list[str] = []
    pos = 0
    while (dollar := template.find("$", pos)) >= 0:
        out.append(template[pos:dollar])
        if template.startswith("$$", dollar):
            out.append("$")
            pos = dollar + 2
            continue
        match = _IDENT.match(template, dollar)
        if not match:
            raise ManifestError(
                f"{template!r} has an unknown or unterminated identifier at {template[dollar:dollar + 20]!r}",
                element="SegmentTemplate", attribute=attribute, value=template,
            )  # fmt: skip
        name, width = match.group(1), match.group(2)
        value = values[name]
        if value is None:
            raise ManifestError(f"{template!r} uses ${name}$, which this segment list has no value for",
                                element="SegmentTemplate", attribute=attribute, value=template)  # fmt: skip
        out.append(f"{value:0{int(width)}d}" if width and isinstance(value, int) else str(value))
        pos = match.end()
    out.append(template[pos:])
    return "".join(out)


def init_segment(period: Period, representation: Representation) -> SegmentRef | None:
    """The initialization segment of a representation, or None when it has none (self-initialising)."""
    info, base = representation.segment_info, representation.base_url
    if isinstance(info, SegmentTemplate):
        if info.initialization is None:
            return None
        url = expand_template(info.initialization, representation_id=representation.id,
                              bandwidth=representation.bandwidth, attribute="initialization")  # fmt: skip
        return SegmentRef(urljoin(base, url))
    if isinstance(info, SegmentList | SegmentBase) and info.initialization is not None:
        ref = info.initialization
        return SegmentRef(urljoin(base, ref.source_url) if ref.source_url else base, ref.byte_range)
    return None


def index_segment(period: Period, representation: Representation) -> SegmentRef | None:
    """Where the `sidx` of a SegmentBase representation is (fetch it, then `parse_sidx`), or None."""
    info, base = representation.segment_info, representation.base_url
    if not isinstance(info, SegmentBase):
        return None
    if info.representation_index is not None:
        ref = info.representation_index
        return SegmentRef(urljoin(base, ref.source_url) if ref.source_url else base, ref.byte_range)
    return SegmentRef(base, info.index_range) if info.index_range else None


def segments(
    manifest: Manifest, period: Period, representation: Representation, *, now: float | None = None,
    sidx: Sequence[SidxReference] | None = None,
) -> list[Segment]:  # fmt: skip
    """The media segments of `representation` in `period`, in order.

    `now` (POSIX seconds) is needed for a dynamic presentation whose period has no known end; it
    limits the list to the segments available at that instant. `sidx` is the parsed index of a
    SegmentBase representation (raises IndexRequired when that index is needed but not given).
    Raises ManifestError when the segment information is incomplete or its templates are invalid.
    """
    info = representation.segment_info
    if isinstance(info, SegmentTemplate):
        return _template_segments(manifest, period, representation, info, now)
    if isinstance(info, SegmentList):
        return _list_segments(period, representation, info)
    if isinstance(info, SegmentBase) and (info.index_range or info.representation_index):
        if sidx is None:
            raise IndexRequired(
                f"representation {representation.id!r} is indexed by a sidx box: fetch index_segment(), "
                "parse it with player.sidx.parse_sidx and pass it as sidx="
            )
        return _sidx_segments(period, representation, info, sidx)
    return [
        Segment(number=1, start=period.start, duration=period.duration or 0.0, url=representation.base_url)
    ]


# --- time ranges ----------------------------------------------------------------------------------


def _window(manifest: Manifest, period: Period, now: float | None, ato: float) -> tuple[float, float]:
    """[earliest start, latest end] in period-relative seconds of the segments that may be listed."""
    end = period.duration if period.duration is not None else math.inf
    if manifest.type == "static" or now is None:
        if math.isinf(end):
            raise ManifestError(
                "the period has no known end: pass now= (POSIX seconds) to list a live presentation's segments",
                element="Period", attribute="duration",
            )  # fmt: skip
        return 0.0, end
    ast = manifest.availability_start_time or 0.0
    live_edge = now - ast - period.start + ato
    depth = manifest.time_shift_buffer_depth
    earliest = live_edge - (DEFAULT_LIVE_DEPTH if depth is None else depth) - ato
    return max(0.0, earliest), min(end, live_edge)


def _timeline_entries(
    entries: Sequence[S], scale: int, pto: int, limit_end: float
) -> Iterator[tuple[int, int]]:
    """(t, d) of every segment in a SegmentTimeline, expanding r (r = -1 up to the next S or limit)."""
    t = 0
    count = 0
    for i, entry in enumerate(entries):
        t = entry.t if entry.t is not None else t
        if entry.r >= 0:
            repeat = entry.r
        else:
            nxt = entries[i + 1].t if i + 1 < len(entries) else None
            stop = nxt if nxt is not None else pto + limit_end * scale
            if math.isinf(stop):
                raise ManifestError("r=-1 repeats to an unknown end: the period needs a duration, or pass now=",
                                    element="S", attribute="r")  # fmt: skip
            repeat = max(0, math.ceil((stop - t) / entry.d) - 1)
        count += repeat + 1
        if count > MAX_SEGMENTS:
            raise ManifestError(f"more than {MAX_SEGMENTS} segments", element="SegmentTimeline")
        for _ in range(repeat + 1):
            yield t, entry.d
            t += entry.d


def _template_segments(
    manifest: Manifest, period: Period, rep: Representation, info: SegmentTemplate, now: float | None
) -> list[Segment]:
    if info.media is None:
        raise ManifestError(
            f"missing for representation {rep.id!r}", element="SegmentTemplate", attribute="media"
        )
    live = manifest.type == "dynamic" and now is not None
    if info.timeline is not None and not live:
        first, last = 0.0, period.duration if period.duration is not None else math.inf
    else:
        first, last = _window(manifest, period, now, info.availability_time_offset)
    out = []
    for k, (t, d) in enumerate(_times(info, rep, first, last)):
        number = info.start_number + k if info.timeline is not None else info.start_number + _index(info, t)
        start, duration = (t - info.presentation_time_offset) / info.timescale, d / info.timescale
        if (info.end_number is not None and number > info.end_number) or (
            start + duration > last + 1e-9 if live else start >= last - 1e-9
        ):
            break
        if start + duration <= first:
            continue
        if not live and info.timeline is None:
            duration = min(duration, last - start)  # the last constant-duration segment ends with the period
        url = expand_template(
            info.media, representation_id=rep.id, bandwidth=rep.bandwidth, number=number, time=t
        )
        out.append(
            Segment(
                number=number, start=period.start + start, duration=duration, url=urljoin(rep.base_url, url)
            )
        )
    return out


def _index(info: SegmentTemplate, t: int) -> int:
    """Position of a constant-duration segment from its time (segments may start past the first)."""
    return (t - info.presentation_time_offset) // (info.duration or 1)


def _times(
    info: SegmentTemplate | SegmentList, rep: Representation, first: float, last: float
) -> Iterator[tuple[int, int]]:
    """(t, d) in timescale units of each candidate segment, from the timeline or the constant duration."""
    if info.timeline is not None:
        yield from _timeline_entries(info.timeline, info.timescale, info.presentation_time_offset, last)
        return
    if info.duration is None:
        raise ManifestError(f"representation {rep.id!r} has neither @duration nor a SegmentTimeline",
                            element=type(info).__name__, attribute="duration")  # fmt: skip
    seconds = info.duration / info.timescale
    skip = max(0, math.floor(first / seconds)) if math.isfinite(first) else 0
    count = math.ceil(last / seconds - 1e-9) - skip if math.isfinite(last) else 0
    if count > MAX_SEGMENTS:
        raise ManifestError(
            f"{count} segments is more than {MAX_SEGMENTS}", element=type(info).__name__, attribute="duration"
        )
    for k in range(skip, skip + max(count, 0)):
        yield info.presentation_time_offset + k * info.duration, info.duration


def _list_segments(period: Period, rep: Representation, info: SegmentList) -> list[Segment]:
    """One segment per SegmentURL, timed by @duration or the SegmentTimeline (§5.3.9.3)."""
    if info.timeline is None and info.duration is None and len(info.urls) > 1:
        raise ManifestError(f"representation {rep.id!r} lists several segments but no @duration or SegmentTimeline",
                            element="SegmentList", attribute="duration")  # fmt: skip
    pto, end = info.presentation_time_offset, period.duration if period.duration is not None else math.inf
    if info.timeline is not None:
        pairs = list(
            itertools.islice(_timeline_entries(info.timeline, info.timescale, pto, end), len(info.urls))
        )
    elif info.duration is not None:
        pairs = [(pto + k * info.duration, info.duration) for k in range(len(info.urls))]
    else:
        pairs = [(pto, round((period.duration or 0.0) * info.timescale))]
    return [
        Segment(
            number=info.start_number + k,
            start=period.start + (t - pto) / info.timescale,
            duration=d / info.timescale,
            url=urljoin(rep.base_url, url.media) if url.media else rep.base_url,
            byte_range=url.media_range,
        )  # fmt: skip
        for k, (url, (t, d)) in enumerate(zip(info.urls, pairs, strict=False))
    ]


def _sidx_segments(
    period: Period, rep: Representation, info: SegmentBase, sidx: Sequence[SidxReference]
) -> list[Segment]:
    offset = info.presentation_time_offset / info.timescale
    return [
        Segment(
            number=k + 1,
            start=period.start + ref.start - offset,
            duration=ref.duration,
            url=rep.base_url,
            byte_range=ref.byte_range,
        )  # fmt: skip
        for k, ref in enumerate(sidx)
    ]
