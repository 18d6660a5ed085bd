"""The load tester's pure core: catalogue popularity, segment URLs, each player's buffer and ABR.

Goals: each simulated player behaves like a real one at playback pace, cheaply enough that one
process drives a thousand. Plan: a player keeps a buffer (seconds of media); it fetches the next
chunk whenever the buffer is below `target`, otherwise waits until it drains to `target`; playback
drains the buffer at `speed` x real time; the rendition is the highest whose bandwidth fits under
`safety` x the smoothed measured throughput: the player's own throughput rule (`player.abr.throughput`,
dash.js-like fast/slow EWMAs). Caveats: one fetch at a time per player, video only (audio chunks are
ignored), the whole video is played then it stops.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from player.abr.base import ThroughputSample, highest_below
from player.abr.throughput import ThroughputState, ewma_estimate, update_ewma

__all__ = [
    "PlayerState",
    "Rendition",
    "VideoPlan",
    "after_fetch",
    "choose_rendition",
    "drained",
    "percentile",
    "pick",
    "video_plan",
    "wait_time",
    "zipf_cdf",
]

_TEMPLATE = re.compile(r"\$(RepresentationID|Number|Time|Bandwidth)(%0(\d+)d)?\$")


@dataclass(frozen=True, slots=True)
class Rendition:
    """One video rendition: bandwidth (bit/s), init path and media paths in playback order."""

    bandwidth: int
    init: str | None
    media: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class VideoPlan:
    """What a player needs of a manifest: chunk length (s) and renditions by ascending bandwidth."""

    video_id: str
    segment_seconds: float
    renditions: tuple[Rendition, ...]

    @property
    def chunks(self) -> int:
        """Number of media chunks (the shortest rendition's)."""
        return min(len(r.media) for r in self.renditions)


def zipf_cdf(k: int, s: float) -> list[float]:
    """Cumulative Zipf(s) probabilities of ranks 1..k (s = 0 is uniform)."""
    if k < 1:
        raise ValueError(f"the catalogue needs at least one video, got {k}")
    weights = [1.0 / (rank**s) for rank in range(1, k + 1)]
    total = sum(weights)
    cdf, acc = [], 0.0
    for w in weights:
        acc += w / total
        cdf.append(acc)
    cdf[-1] = 1.0
    return cdf


def pick(cdf: Sequence[float], u: float) -> int:
    """The 0-based rank for a uniform draw `u` in [0, 1)."""
    return min(bisect.bisect_right(cdf, u), len(cdf) - 1)


def _expand(template: str, rep_id: str, bandwidth: int, number: int, time: int) -> str:
    def sub(m: re.Match[str]) -> str:
        value: Any = {"RepresentationID": rep_id, "Number": number, "Time": time, "Bandwidth": bandwidth}[
            m.group(1)
        ]
        return f"{int(value):0{m.group(3)}d}" if m.group(3) else str(value)

    return _TEMPLATE.sub(sub, template)


def _numbers_and_times(tmpl: Any, total_seconds: float) -> list[tuple[int, int]]:
    """(number, time) of every segment of a SegmentTemplate, from its timeline or its duration."""
    if tmpl.timeline:
        out, t, n = [], 0, tmpl.start_number
        for entry in tmpl.timeline:
            t = entry.t if entry.t is not None else t
            repeat = entry.r if entry.r >= 0 else 0
            for _ in range(repeat + 1):
                out.append((n, t))
                n, t = n + 1, t + entry.d
        return out
    if not tmpl.duration:
        raise ValueError("SegmentTemplate has neither a timeline nor a duration")
    count = math.ceil(total_seconds * tmpl.timescale / tmpl.duration - 1e-9)
    return [(tmpl.start_number + i, i * tmpl.duration) for i in range(count)]


def _path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def video_plan(manifest: Any, video_id: str) -> VideoPlan:
    """Segment paths of a parsed static MPD (player.mpd.Manifest) with SegmentTemplate addressing."""
    from urllib.parse import urljoin

    total = manifest.media_presentation_duration or 0.0
    renditions, seg_seconds = [], 0.0
    for rep in manifest.video_ladder():
        tmpl = rep.segment_info
        if tmpl is None or not hasattr(tmpl, "media") or tmpl.media is None:
            raise ValueError(f"{video_id}: representation {rep.id} is not SegmentTemplate-addressed")
        nt = _numbers_and_times(tmpl, total)
        media = tuple(
            _path(urljoin(rep.base_url, _expand(tmpl.media, rep.id, rep.bandwidth, n, t))) for n, t in nt
        )
        init = (
            _path(urljoin(rep.base_url, _expand(tmpl.initialization, rep.id, rep.bandwidth, 0, 0)))
            if tmpl.initialization
            else None
        )
        renditions.append(Rendition(rep.bandwidth, init, media))
        seg_seconds = total / len(nt) if total and nt else (tmpl.duration or 1) / tmpl.timescale
    if not renditions:
        raise ValueError(f"{video_id}: the manifest has no video representation")
    return VideoPlan(video_id, seg_seconds, tuple(renditions))


@dataclass(frozen=True, slots=True)
class PlayerState:
    """A simulated player: next chunk index, buffer (s), throughput EWMAs, stall time (s), switches."""

    next_chunk: int = 0
    buffer: float = 0.0
    ewma: ThroughputState = ThroughputState()
    rendition: int = 0
    stalled: float = 0.0
    switches: int = 0

    @property
    def throughput(self) -> float | None:
        """The smoothed throughput estimate in bit/s (None before the first chunk)."""
        return ewma_estimate(self.ewma)


def choose_rendition(bandwidths: Sequence[int], throughput: float | None, safety: float = 0.9) -> int:
    """Highest rendition whose bandwidth is at most `safety` x throughput; the lowest before any sample."""
    if throughput is None:
        return 0
    return highest_below(bandwidths, safety * throughput)


def after_fetch(
    state: PlayerState, *, rendition: int, seconds: float, size: int, segment_seconds: float, speed: float
) -> PlayerState:
    """The state after one chunk of `size` bytes took `seconds`; playback drained the buffer meanwhile."""
    played = seconds * speed
    stall = max(0.0, played - state.buffer) / speed
    sample = ThroughputSample(size, max(seconds, 1e-6))
    return replace(
        state, next_chunk=state.next_chunk + 1, buffer=max(0.0, state.buffer - played) + segment_seconds,
        ewma=update_ewma(state.ewma, sample), rendition=rendition,
        stalled=state.stalled + (stall if state.next_chunk else 0.0),
        switches=state.switches + (1 if state.next_chunk and rendition != state.rendition else 0),
    )  # fmt: skip


def wait_time(state: PlayerState, *, target: float, speed: float) -> float:
    """Real seconds to wait before the next fetch: until the buffer has drained to `target`."""
    return max(0.0, state.buffer - target) / speed


def drained(state: PlayerState, seconds: float, speed: float) -> PlayerState:
    """The state after `seconds` of real time of playback without a fetch."""
    return replace(state, buffer=max(0.0, state.buffer - seconds * speed))


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """The q-quantile (0..1) of already sorted values by nearest rank; None when empty."""
    if not sorted_values:
        return None
    idx = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[idx]
