"""Live (dynamic MPD) playback: join near the live edge, refresh the MPD, play each segment once it is available.

The decisions are pure functions in `player.liveedge`; this is the driver that sleeps, re-fetches
and hands each chunk to the `PlayLoop`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from player.liveedge import (
    End,
    availability_offset,
    availability_time,
    join_index,
    live_delay,
    next_segment,
    presentation_over,
    refresh_due,
    refresh_wait,
    stale_limit,
)
from player.mpd import Manifest
from player.playloop import PlayLoop, SessionError, Track, load_manifest

__all__ = ["LiveDriver", "period_key"]


@dataclass
class LiveDriver:
    """The live driver: join near the live edge, then refresh the MPD and play what appears, in order.

    Goals: play a dynamic MPD as dash.js does by default, through the same fetcher (so failover
    applies to the MPD too) and the same ABR and playout model as a static one. Plan: join
    `live_delay` behind the newest listed segment (`join_index`); before each chunk, re-fetch the
    MPD when it is older than @minimumUpdatePeriod, then sleep until the chunk's availability time;
    with no listed chunk left, sleep until the next one is due and re-fetch. The next chunk is the
    first listed one starting where the last one ended (`next_segment`), so none is played twice or
    skipped while listed; a gap (segments that left the time-shift window) is jumped and noted.
    Caveats: availability is judged on `wall`, the local wall clock synced to the stream's time source
    (`player.clocksync`, once, before joining), so `--speed N` does not move the live edge; a period
    is joined only once it lists a segment; `stale_limit` seconds without a new one is an error.
    """

    loop: PlayLoop
    url: str
    wall: Callable[[], float]  # the stream's clock, POSIX seconds (the local one plus the synced offset)
    build: Callable[[Manifest, float], list[Track]]
    manifest: Manifest
    tracks: list[Track]
    refreshed_at: float
    position: float = 0.0  # presentation time where the next chunk starts (the end of the last one played)

    def refresh(self) -> None:
        """Fetch and parse the MPD again (same URL, same edges)."""
        self.manifest = load_manifest(self.loop.fetcher, self.url)
        self.refreshed_at = self.wall()
        self.tracks = self.build(self.manifest, self.refreshed_at)

    def join(self) -> None:
        """Start `live_delay` behind the live edge of the newest period that lists segments."""
        if not self.tracks:
            raise SessionError(
                f"the live manifest at {self.url} lists no segment yet; try again once the event has begun"
            )
        track = self.tracks[-1]
        segs = track.segments[0][: track.count]
        k = join_index(segs, live_delay(self.manifest, track.segment_duration))
        self.position = self.loop.audio_from = segs[k].start
        self.loop.note(f"live: joining at segment {segs[k].number}, {len(segs) - k} behind the live edge")

    def run(self) -> End:
        """Play until the MPD turns static (to its end), its duration is reached or the --duration limit."""
        self.join()
        current: Track | None = None
        fresh = self.wall()  # when the last new chunk was found
        while not self.loop.limit_reached():
            nxt = next_segment([t.segments[0][: t.count] for t in self.tracks], self.position)
            if nxt is None:
                ended = self.out_of_segments(fresh)
                if ended is not None:
                    if current is not None:
                        self.loop.fetch_audio(current, until=float("inf"))
                    return ended
                continue
            if refresh_due(self.manifest, self.refreshed_at, self.wall()):
                self.refresh()
                continue
            track = self.tracks[nxt.track]
            if current is not None and period_key(track) != period_key(current):  # a new period
                self.loop.fetch_audio(current, until=float("inf"))
            current = track
            if nxt.gap:
                self.loop.note(
                    f"live: jumped {nxt.gap:.2f} s ahead to segment {track.segments[0][nxt.index].number}: "
                    "the segments in between left the time-shift window"
                )
            self.play(track, nxt.index)
            fresh = self.wall()
        return "limit"

    def out_of_segments(self, fresh: float) -> End | None:
        """No listed chunk left: why the session ends, or None after waiting and refreshing the MPD."""
        if self.manifest.type == "static":
            return "mpd-static"
        if presentation_over(self.manifest, self.position):
            return "mpd-duration"
        duration = self.tracks[-1].segment_duration if self.tracks else 1.0
        stale = self.wall() - fresh
        if stale > stale_limit(self.manifest, duration):
            raise SessionError(
                f"the live manifest at {self.url} has listed no new segment for {stale:.0f} s; "
                "is the live encoder still running?"
            )
        offset = availability_offset(self.tracks[-1].ladder[0]) if self.tracks else 0.0
        self.loop.sleep(refresh_wait(self.manifest, self.position, duration, now=self.wall(), offset=offset))
        self.refresh()
        return None

    def play(self, track: Track, k: int) -> None:
        """Wait until chunk `k` is available (ISO/IEC 23009-1 §5.3.9.5.3), then play it like a static one."""
        seg = track.segments[0][k]
        wait = (
            availability_time(self.manifest, seg, offset=availability_offset(track.ladder[0])) - self.wall()
        )
        if (
            wait > 0
        ):  # at the live edge the buffer is limited by availability; the playout model decides stalls
            self.loop.sleep(wait)
        self.loop.enter(track)
        self.loop.view.total = len(self.loop.records) + track.count - k
        played = self.loop.play_chunk(track, k)
        self.position = played.start + played.duration


def period_key(track: Track) -> tuple[str | None, float]:
    """A period's identity across MPD refreshes (its duration may appear when the MPD turns static)."""
    return track.period.id, track.period.start
