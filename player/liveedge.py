"""Live (dynamic MPD) decisions: where to join, when a segment is available, what comes next, when to stop.

Pure: manifests, segment lists and instants in, values out; the live driver of `player.session`
does the waiting and the refreshing. Media times are seconds on the presentation timeline (period
start included, as in `player.timeline`); instants (`now`, availability) are POSIX seconds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from player.mpd import Manifest, Representation, SegmentTemplate
from player.timeline import Segment

__all__ = [
    "LIVE_DELAY_SEGMENTS",
    "NOT_YET_TRIES",
    "NOT_YET_WAIT",
    "End",
    "Next",
    "availability_offset",
    "availability_time",
    "join_index",
    "live_delay",
    "next_segment",
    "presentation_over",
    "refresh_due",
    "refresh_wait",
    "stale_limit",
]

LIVE_DELAY_SEGMENTS = (
    3  # join this many segment durations behind the live edge (no suggestedPresentationDelay)
)
TIME_EPSILON = 1e-3  # seconds: two media times closer than this are the same instant
POLL_SECONDS = 0.1  # the shortest wait between two MPD fetches when no new segment is listed (no busy poll)
NOT_YET_WAIT = 0.25  # wall seconds before asking again for a segment answered 404 (not there yet)
NOT_YET_TRIES = 12  # 404 answers to one live request before giving up (3 s at NOT_YET_WAIT)
STALE_FLOOR = 30.0  # wall seconds without a new segment before a live session is given up, at least

End = Literal["end", "mpd-static", "mpd-duration", "limit", "interrupted"]
"""Why a session ended: played to the end (static MPD), a live MPD turned static and was played to its
end, a live MPD's mediaPresentationDuration was reached, the --duration limit, or Ctrl-C."""


@dataclass(frozen=True, slots=True)
class Next:
    """The next segment to play: list `track`, position `index`, and `gap` seconds of media skipped first."""

    track: int
    index: int
    gap: float = 0.0


def live_delay(manifest: Manifest, segment_duration: float) -> float:
    """How far behind the live edge to join, seconds: @suggestedPresentationDelay, else 3 segments."""
    if manifest.suggested_presentation_delay is not None:
        return manifest.suggested_presentation_delay
    return LIVE_DELAY_SEGMENTS * segment_duration


def join_index(segs: Sequence[Segment], delay: float) -> int:
    """Where to join a live list: the newest segment starting at least `delay` s before the live edge.

    The live edge is the end of the newest listed (available) segment, as in dash.js's default
    (ISO/IEC 23009-1 Annex A.3). With delay = 3 durations this is the third newest segment; when
    the list is shorter than `delay`, its first segment. Raises ValueError for an empty list.
    """
    if not segs:
        raise ValueError("no segment to join")
    edge = segs[-1].start + segs[-1].duration
    for k in range(len(segs) - 1, -1, -1):
        if segs[k].start <= edge - delay + TIME_EPSILON:
            return k
    return 0


def availability_offset(representation: Representation) -> float:
    """The @availabilityTimeOffset of a SegmentTemplate representation, seconds (0 otherwise)."""
    info = representation.segment_info
    return info.availability_time_offset if isinstance(info, SegmentTemplate) else 0.0


def availability_time(manifest: Manifest, seg: Segment, *, offset: float = 0.0) -> float:
    """When `seg` may be requested, POSIX seconds; -inf for a static MPD (everything is available).

    ISO/IEC 23009-1 §5.3.9.5.3: availabilityStartTime + period start + segment end (−
    availabilityTimeOffset); `seg.start` already includes the period start.
    """
    if manifest.type == "static":
        return -math.inf
    return (manifest.availability_start_time or 0.0) + seg.start + seg.duration - offset


def next_segment(lists: Sequence[Sequence[Segment]], position: float) -> Next | None:
    """The first listed segment starting at or after `position` (the end of the last one played).

    `lists` are the segments of each period, in presentation order. Matching by start time never
    plays a segment twice or skips one that is listed; `gap` > 0 says the segments in between are
    no longer listed (they left the timeShiftBufferDepth window). None: nothing listed yet.
    """
    for t, segs in enumerate(lists):
        for k, seg in enumerate(segs):
            if seg.start >= position - TIME_EPSILON:
                gap = seg.start - position
                return Next(t, k, gap if gap > TIME_EPSILON else 0.0)
    return None


def presentation_over(manifest: Manifest, position: float) -> bool:
    """True when the MPD has a mediaPresentationDuration and `position` (seconds) reached it."""
    end = manifest.media_presentation_duration
    return end is not None and position >= end - TIME_EPSILON


def refresh_due(manifest: Manifest, refreshed_at: float, now: float) -> bool:
    """True when a dynamic MPD fetched at `refreshed_at` is older than its minimumUpdatePeriod at `now`."""
    period = manifest.minimum_update_period
    return manifest.type == "dynamic" and period is not None and now >= refreshed_at + period


def refresh_wait(
    manifest: Manifest, position: float, segment_duration: float, *, now: float, offset: float = 0.0
) -> float:
    """Wall seconds to wait, with no listed segment left, before fetching the MPD again.

    Until the segment starting at `position` is due (its availability time), at least POLL_SECONDS:
    an MPD that lags its own clock is asked again a little later, never in a busy loop.
    """
    nxt = Segment(number=0, start=position, duration=segment_duration, url="")
    return max(availability_time(manifest, nxt, offset=offset) - now, POLL_SECONDS)


def stale_limit(manifest: Manifest, segment_duration: float) -> float:
    """Wall seconds without a new live segment after which the session gives up (a stopped encoder)."""
    return max(STALE_FLOOR, 4 * segment_duration, 2 * (manifest.minimum_update_period or 0.0))
