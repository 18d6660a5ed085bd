"""The play loop: manifest → for each chunk, ask the ABR, fetch, feed the playout model, record.

Goals: drive the same pure ABR (`player.abr`) and buffer model (`player.playout`) as the simulator,
but with real downloads through the CDN. Plan: fetch and parse the MPD; per period, take the video
adaptation set's ladder and segment lists (and one fixed audio representation, the highest, whose
segments are fetched alongside the video chunk they overlap); before each request wait until the
chunk fits under the buffer cap; fetch the init segment the first time a representation is used,
then the chunk; record it. While a video chunk downloads, every `PROGRESS_SECONDS` of media time
the ABR may abandon it for a lower representation (as in `player.simulate`): the partial body is
dropped and the same chunk is fetched again lower, so only complete chunks are ever used. A chunk's
(video or audio) read timeout (the longest wait for the next bytes) is what the viewer can afford
(`chunk_read_timeout`): half the wall-clock time the buffer still lasts, between `READ_TIMEOUT_FLOOR`
and `--timeout`, the floor before playback starts; so a link that stops dead mid-chunk is retried (then
failed over) before the buffer runs dry. Caveats: the session clock is the wall clock × `speed`, so
`--speed N` drains the buffer N times faster and every download counts N times longer in media time
(the ABR sees throughput / N); chunk sizes for the ABR come from HEAD requests a few chunks ahead.
A dynamic (live) MPD is played by `_Live` (decisions in `player.liveedge`): join a few segments
behind the live edge, wait for each segment's availability time, re-fetch the MPD every
@minimumUpdatePeriod and when out of segments, until it turns static, reaches its duration, the
`--duration` limit or Ctrl-C (which, for any stream, ends the session with what was played).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from player.abr import DEFAULT_ABR, AbrAlgorithm, AbrContext, Observation, ThroughputSample, make_abr
from player.abr.base import PROGRESS_SECONDS, Progress, abandon_choice
from player.config import DEFAULT_TIMEOUT, READ_TIMEOUT_FLOOR, PlayerConfig
from player.errors import ManifestError, PlayerError, SegmentIndexError
from player.fetch import Abandoned, ChunkFetch, EdgePool, Fetcher, FetchError, ProgressCallback
from player.live import LiveView
from player.liveedge import (
    NOT_YET_TRIES,
    NOT_YET_WAIT,
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
from player.mpd import Manifest, Period, Representation, parse_mpd
from player.output import OutputRecorder
from player.playout import Playout, PlayoutConfig
from player.qoe import ChunkOutcome, QoeSummary, summarize
from player.report import ChunkRecord
from player.resolve import Resolver
from player.sidx import SidxReference, parse_sidx
from player.timeline import Segment, SegmentRef, index_segment, init_segment, segments

__all__ = [
    "BUFFER_SHARE",
    "SessionError",
    "SessionResult",
    "Track",
    "build_track",
    "chunk_read_timeout",
    "load_manifest",
    "play",
    "run",
]

SAMPLE_WINDOW = 20  # throughput samples handed to the ABR (as in player.simulate)
SIZE_LOOKAHEAD = 5  # chunks ahead whose real sizes are asked for (MPC's horizon)
BUFFER_SHARE = 0.5  # of the buffer's remaining time a silent link may take (the rest is for the refetch)


class SessionError(PlayerError):
    """Raised when the stream cannot be played: unusable manifest, no video, a chunk that cannot be had."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Track:
    """One period's video ladder (ascending bandwidth) with its segments, and the audio to go with it."""

    period: Period
    ladder: tuple[Representation, ...]
    segments: tuple[tuple[Segment, ...], ...]  # per ladder index
    audio: Representation | None = None
    audio_segments: tuple[Segment, ...] = ()

    @property
    def count(self) -> int:
        """Chunks playable in every representation."""
        return min(len(s) for s in self.segments)

    @property
    def segment_duration(self) -> float:
        """The mean chunk duration in seconds."""
        first = self.segments[0][: self.count]
        return sum(s.duration for s in first) / len(first)


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionResult:
    """What a session played: one record per video chunk and the QoE summary."""

    records: tuple[ChunkRecord, ...]
    summary: QoeSummary
    abr: str
    audio: str | None = None
    ended: End = "end"
    events: tuple[str, ...] = ()  # live events worth a line in the report (jumps, late segments, Ctrl-C)


def chunk_read_timeout(
    buffer: float, *, speed: float, playing: bool, ceiling: float, floor: float = READ_TIMEOUT_FLOOR
) -> float:
    """The read timeout of a video chunk in wall-clock seconds, from `buffer` media seconds at `speed`.

    Playing, the buffer lasts buffer / speed wall seconds; a silent link may take `BUFFER_SHARE` of
    that, so the retry still has the rest to bring the chunk before a stall. Before playback starts
    (or while stalled, with nothing buffered) every silent second is a second of black screen: the
    floor. Clamped to [floor, ceiling]; `ceiling` (the `--timeout`) wins when it is the smaller.
    """
    affordable = BUFFER_SHARE * buffer / speed if playing else 0.0
    return min(ceiling, max(floor, affordable))


def load_manifest(fetcher: Fetcher, url: str) -> Manifest:
    """Fetch and parse the MPD (relative URLs resolve against the URL after redirects); SessionError names it."""
    got = fetcher.get(url)
    try:
        return parse_mpd(got.data, base_url=got.url)
    except ManifestError as exc:
        raise SessionError(f"the manifest at {url} cannot be parsed: {exc}; is this a DASH MPD?") from exc


def build_track(
    manifest: Manifest,
    period: Period,
    *,
    now: float,
    sidx_of: Callable[[Period, Representation], list[SidxReference] | None],
    empty_ok: bool = False,
) -> Track | None:
    """The video track of `period` (None when it has no video); SessionError when segments are missing.

    `empty_ok`: None instead when a representation lists no segment (a live period not yet, or no
    longer, in the availability window).
    """
    video = period.adaptation_set("video")
    if video is None or not video.representations:
        return None
    ladder = video.ladder()
    try:
        lists = tuple(tuple(segments(manifest, period, r, now=now, sidx=sidx_of(period, r))) for r in ladder)
        audio_set = period.adaptation_set("audio")
        audio = audio_set.ladder()[-1] if audio_set and audio_set.representations else None
        audio_segs = (
            tuple(segments(manifest, period, audio, now=now, sidx=sidx_of(period, audio))) if audio else ()
        )
    except (ManifestError, SegmentIndexError) as exc:
        raise SessionError(f"period {period.id or period.start}: {exc}") from exc
    if min(len(s) for s in lists) == 0:
        if empty_ok:
            return None
        raise SessionError(f"period {period.id or period.start}: a video representation lists no segments")
    return Track(period=period, ladder=ladder, segments=lists, audio=audio, audio_segments=audio_segs)


@dataclass(frozen=True, slots=True)
class _Fetched:
    """A video chunk that arrived whole: its representation, body and init, and what was given up first."""

    index: int  # ladder index of the representation it came from
    got: ChunkFetch
    init: bytes
    abandoned: int = 0
    wasted: int = 0


@dataclass
class _Watch:
    """The progress callback of one video download: shows it to the ABR every PROGRESS_SECONDS of media.

    Elapsed time and buffer are in media seconds (wall × speed); `lower` is the ABR's choice when it
    abandons. Nothing is asked at the lowest rung (there is nothing lower), as in the simulator.
    """

    loop: _Loop
    ctx: AbrContext
    state: Any
    chunk: int
    index: int
    size: int
    last: int | None
    next_check: float = PROGRESS_SECONDS
    lower: int | None = None

    def __call__(self, received: int, seconds: float) -> bool:
        """True to abandon the download after `received` bytes in `seconds` (wall clock)."""
        elapsed = seconds * self.loop.speed
        if self.index == 0 or elapsed < self.next_check:
            return False
        self.next_check = elapsed + PROGRESS_SECONDS
        loop = self.loop
        loop.playout = loop.playout.advance(max(loop.now(), loop.playout.clock))
        progress = Progress(chunk_index=self.chunk, index=self.index, size=self.size, received=received,
                            elapsed=elapsed, buffer_level=loop.playout.buffer,
                            playing=loop.playout.started_at is not None, last_index=self.last)  # fmt: skip
        self.lower = abandon_choice(loop.algorithm, self.ctx, self.state, progress)
        return self.lower is not None


@dataclass
class _Loop:
    """The mutable state of one session, owned by `play` (the pure parts live in abr/playout/qoe)."""

    fetcher: Fetcher
    algorithm: AbrAlgorithm[Any]
    playout: Playout
    speed: float
    clock: Callable[[], float]
    sleep: Callable[[float], None]
    view: LiveView
    recorder: OutputRecorder | None
    total: int
    t0: float
    max_buffer: float = 30.0
    samples: list[ThroughputSample] = field(default_factory=list)
    records: list[ChunkRecord] = field(default_factory=list)
    outcomes: list[ChunkOutcome] = field(default_factory=list)
    inits: dict[tuple[str, str], bytes] = field(default_factory=dict)
    head_sizes: bool = True  # ask the edge for chunk sizes (HEAD) a few chunks ahead
    timeout: float = DEFAULT_TIMEOUT  # the longest read timeout of a video chunk (--timeout), wall seconds
    sizes: dict[str, int | None] = field(default_factory=dict)
    live: bool = False  # a dynamic MPD: open-ended ABR context, 404 = not available yet
    limit: float | None = None  # --duration: media seconds to play at most
    state: Any = None  # the ABR's state and its last choice (ladder index)
    last: int | None = None
    ladder: tuple[float, ...] | None = None  # the bitrates the ABR state belongs to
    audio_from: float = -math.inf  # presentation time up to which audio has been fetched
    events: list[str] = field(default_factory=list)

    def now(self) -> float:
        """Media-clock seconds since the session started."""
        return (self.clock() - self.t0) * self.speed

    def note(self, message: str) -> None:
        """An event for the live view and the report."""
        self.events.append(message)
        self.view.note(message)

    def limit_reached(self) -> bool:
        """True when --duration seconds of media have been played."""
        return self.limit is not None and sum(r.duration for r in self.records) >= self.limit - 1e-9

    def read_timeout(self) -> float:
        """The read timeout of a video chunk requested now (`chunk_read_timeout` of the buffer left)."""
        self.playout = self.playout.advance(max(self.now(), self.playout.clock))
        playing = self.playout.started_at is not None
        return chunk_read_timeout(
            self.playout.buffer, speed=self.speed, playing=playing, ceiling=self.timeout
        )

    def get(
        self,
        url: str,
        *,
        byte_range: tuple[int, int] | None = None,
        expected_size: int | None = None,
        progress: ProgressCallback | None = None,
        read_timeout: float | None = None,
    ) -> ChunkFetch:
        """`Fetcher.get`; live, a 404 is a segment not there yet (origin lag, clocks apart): asked again
        after NOT_YET_WAIT s, up to NOT_YET_TRIES times, and never counted against the edge."""
        for attempt in range(NOT_YET_TRIES + 1):
            try:
                return self.fetcher.get(
                    url, byte_range=byte_range, expected_size=expected_size, progress=progress,
                    read_timeout=read_timeout,
                )  # fmt: skip
            except FetchError as exc:
                if not self.live or exc.status != 404 or attempt == NOT_YET_TRIES:
                    raise
            self.note(f"{url.rsplit('/', 1)[-1]}: not available yet (HTTP 404), asking again")
            self.sleep(NOT_YET_WAIT)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def init_of(self, period: Period, rep: Representation) -> bytes:
        """The initialization segment of `rep` (fetched once), b"" when self-initialising."""
        key = (period.id or str(period.start), rep.id)
        if key not in self.inits:
            ref = init_segment(period, rep)
            self.inits[key] = b"" if ref is None else self.fetch_ref(ref)
        return self.inits[key]

    def fetch_ref(self, ref: SegmentRef) -> bytes:
        return self.get(ref.url, byte_range=ref.byte_range).data

    def size_of(self, seg: Segment) -> int | None:
        """The real size of a chunk (byte range, else a HEAD request), None when unknown."""
        if seg.byte_range is not None:
            return seg.byte_range[1] - seg.byte_range[0] + 1
        if not self.head_sizes:
            return None
        if seg.url not in self.sizes:
            self.sizes[seg.url] = self.fetcher.size(seg.url)
        return self.sizes[seg.url]

    def context(self, track: Track, k: int, first: int = 0) -> AbrContext:
        """The ABR context with the real sizes known so far (a prefix of every list, from chunk `first`).

        Live, `first` is the chunk about to be played and the stream has no known end (chunk_count
        None): sizes are asked only a few chunks ahead, never for the whole time-shift window.
        """
        known: list[tuple[int, ...]] = []
        end = min(track.count, k + SIZE_LOOKAHEAD)
        for segs in track.segments:
            row: list[int] = []
            for seg in segs[first:end]:
                size = self.size_of(seg)
                if size is None:
                    break
                row.append(size)
            known.append(tuple(row))
        common = min(len(r) for r in known)
        return AbrContext(
            bitrates=tuple(float(r.bandwidth) for r in track.ladder),
            segment_duration=track.segment_duration,
            chunk_count=None if self.live else track.count,
            chunk_sizes=tuple(r[:common] for r in known) if common else None,
            max_buffer=self.max_buffer,
        )

    def wait_for_room(self, seconds: float) -> None:
        """Honour the buffer cap: sleep (scaled by speed) until a chunk of `seconds` fits."""
        self.playout = self.playout.advance(self.now())
        wait = self.playout.wait_before_request(seconds)
        if wait > 0:
            self.sleep(wait / self.speed)
            self.playout = self.playout.advance(max(self.now(), self.playout.clock))

    def enter(self, track: Track) -> None:
        """About to play from `track`: a new ladder starts the ABR afresh (as at the session's start)."""
        bitrates = tuple(float(r.bandwidth) for r in track.ladder)
        if bitrates != self.ladder:
            self.state = self.algorithm.initial_state(self.context(track, 0))
            self.last, self.ladder = None, bitrates

    def play_track(self, track: Track) -> None:
        """Play every chunk of `track` (up to the --duration limit), then the rest of its audio."""
        self.enter(track)
        for k in range(track.count):
            if self.limit_reached():
                return
            self.play_chunk(track, k)
        self.fetch_audio(track, until=float("inf"))

    def play_chunk(self, track: Track, k: int) -> Segment:
        """Choose, fetch and record chunk `k` of `track` (and the audio it overlaps); return it."""
        self.wait_for_room(track.segments[0][k].duration)
        first = k if self.live else 0  # live: the ABR's chunk indices count from the chunk at hand
        obs = Observation(
            chunk_index=k - first,
            buffer_level=self.playout.buffer,
            last_index=self.last,
            samples=tuple(self.samples[-SAMPLE_WINDOW:]),
            sample_count=len(self.samples),
        )
        ctx = self.context(track, k, first)
        decision = self.algorithm.choose(ctx, self.state, obs)
        self.state = decision.state
        fetched = self.fetch_video(track, ctx, k, first, decision.index)
        q, got = fetched.index, fetched.got
        seg = track.segments[q][k]
        self.fetch_audio(track, until=seg.start + seg.duration)
        self.arrived(track, q, seg, got.data, fetched.init)
        self.samples.append(self.sample(got))
        self.record(track, seg, fetched)
        self.last = q
        return seg

    def fetch_video(self, track: Track, ctx: AbrContext, k: int, first: int, q: int) -> _Fetched:
        """Fetch chunk `k` at representation `q`, going lower each time the ABR abandons a download."""
        abandoned = wasted = 0
        while True:
            rep, seg = track.ladder[q], track.segments[q][k]
            init = self.init_of(track.period, rep)
            size = self.size_of(seg) or int(ctx.chunk_size(q, k - first))
            watch = _Watch(
                loop=self, ctx=ctx, state=self.state, chunk=k - first, index=q, size=size, last=self.last
            )
            try:
                got = self.get(
                    seg.url,
                    byte_range=seg.byte_range,
                    expected_size=self.sizes.get(seg.url),
                    progress=watch,
                    read_timeout=self.read_timeout(),
                )
            except Abandoned as exc:
                if watch.lower is None:  # only `watch` abandons this download; anything else is a bug
                    raise
                abandoned, wasted = abandoned + 1, wasted + exc.received
                self.view.note(
                    f"chunk {len(self.records) + 1}: abandoned {rep.id} after {exc.elapsed:.2f} s at "
                    f"{exc.received * 8 / max(exc.elapsed, 1e-6) / 1e6:.2f} Mbit/s, "
                    f"refetching at {track.ladder[watch.lower].id}"
                )
                q = watch.lower
                continue
            return _Fetched(index=q, got=got, init=init, abandoned=abandoned, wasted=wasted)

    def sample(self, got: ChunkFetch) -> ThroughputSample:
        """The ABR's view of a download, in media time: seconds × speed, rates / speed."""
        recent = None if got.recent_bps is None else got.recent_bps / self.speed
        return ThroughputSample(len(got.data), max(got.download_seconds * self.speed, 1e-6), recent=recent)

    def record(self, track: Track, seg: Segment, fetched: _Fetched) -> None:
        """Keep the record of a chunk that arrived, score it and show it."""
        rep, got = track.ladder[fetched.index], fetched.got
        index = len(self.records)
        record = ChunkRecord(
            index=index,
            number=seg.number,
            representation=rep.id,
            bitrate=rep.bandwidth,
            duration=seg.duration,
            bytes=len(got.data),
            download_seconds=got.download_seconds,
            throughput_bps=got.throughput_bps,
            buffer_seconds=self.playout.buffer,
            stall_seconds=self.playout.stall_for_chunk(index),
            time=self.playout.clock,
            edge=got.edge,
            retries=got.retries,
            failovers=got.failovers,
            url=got.url,
            sha256=hashlib.sha256(got.data).hexdigest(),
            cache=got.cache,
            abandoned=fetched.abandoned,
            wasted_bytes=fetched.wasted,
        )
        self.records.append(record)
        self.outcomes.append(ChunkOutcome(index, fetched.index, float(rep.bandwidth), record.stall_seconds))
        self.view.update(record)
        if got.retries:
            self.view.note(
                f"chunk {index + 1}: {got.retries} failed attempts ({got.errors[-1]}); served by {got.edge}"
            )

    def arrived(self, track: Track, q: int, seg: Segment, data: bytes, init: bytes) -> None:
        """A video chunk is complete: into the buffer model and the output file."""
        self.playout = self.playout.add_chunk(max(self.now(), self.playout.clock), seg.duration)
        if self.recorder is not None:
            rep = track.ladder[q]
            run = f"{track.period.id or track.period.start}/{rep.id}"  # a new period starts a new run
            self.recorder.add_video(run, init, data, width=rep.width or 0, height=rep.height or 0)

    def fetch_audio(self, track: Track, *, until: float) -> None:
        """Fetch the audio segments not fetched yet (ending after `audio_from`) that begin before `until`."""
        if track.audio is None:
            return
        for seg in track.audio_segments:
            if seg.start >= until - 1e-6:
                break
            if seg.start + seg.duration <= self.audio_from + 1e-6:
                continue
            init = self.init_of(track.period, track.audio)
            data = self.get(seg.url, byte_range=seg.byte_range, read_timeout=self.read_timeout()).data
            if self.recorder is not None:
                self.recorder.add_audio(init, data, run=str(track.period.id or track.period.start))
            self.audio_from = seg.start + seg.duration


def _sidx_loader(fetcher: Fetcher) -> Callable[[Period, Representation], list[SidxReference] | None]:
    """Fetch and parse the segment index of SegmentBase representations (None for the others)."""

    def load(period: Period, rep: Representation) -> list[SidxReference] | None:
        ref = index_segment(period, rep)
        if ref is None:
            return None
        data = fetcher.get(ref.url, byte_range=ref.byte_range).data
        return parse_sidx(data, data_offset=ref.byte_range[0] if ref.byte_range else 0)

    return load


@dataclass
class _Live:
    """The live driver: join near the live edge, then refresh the MPD and play what appears, in order.

    Goals: play a dynamic MPD as dash.js does by default, through the same fetcher (so failover
    applies to the MPD too) and the same ABR and playout model as a static one. Plan: join
    `live_delay` behind the newest listed segment (`join_index`); before each chunk, re-fetch the
    MPD when it is older than @minimumUpdatePeriod, then sleep until the chunk's availability time;
    with no listed chunk left, sleep until the next one is due and re-fetch. The next chunk is the
    first listed one starting where the last one ended (`next_segment`), so none is played twice or
    skipped while listed; a gap (segments that left the time-shift window) is jumped and noted.
    Caveats: availability is wall-clock time, so `--speed N` does not move the live edge; a period
    is joined only once it lists a segment; `stale_limit` seconds without a new one is an error.
    """

    loop: _Loop
    url: str
    wall: Callable[[], float]
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
            if current is not None and _period_key(track) != _period_key(current):  # a new period
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


def _period_key(track: Track) -> tuple[str | None, float]:
    """A period's identity across MPD refreshes (its duration may appear when the MPD turns static)."""
    return track.period.id, track.period.start


def play(
    config: PlayerConfig,
    fetcher: Fetcher,
    *,
    view: LiveView | None = None,
    recorder: OutputRecorder | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    wall: Callable[[], float] = time.time,
    algorithm: AbrAlgorithm[Any] | None = None,
) -> SessionResult:
    """Play the stream of `config.url` (a PlayerConfig) to the end; raise SessionError/FetchError.

    A dynamic MPD is played live (`_Live`) until it ends or `config.duration`; Ctrl-C
    (KeyboardInterrupt) ends a session too, with the result of what was played (ended="interrupted").
    `algorithm` replaces the one `config.abr` names (any object implementing the ABR interface).
    """
    manifest = load_manifest(fetcher, config.url)
    live = manifest.type == "dynamic"
    load_sidx = _sidx_loader(fetcher)

    def build(m: Manifest, now: float) -> list[Track]:
        return [t for p in m.periods if (t := build_track(m, p, now=now, sidx_of=load_sidx, empty_ok=live))]

    refreshed_at = wall()
    tracks = build(manifest, refreshed_at)
    if not tracks and not live:
        raise SessionError(f"the manifest at {config.url} has no video adaptation set to play")
    if algorithm is None:
        algorithm = make_abr(config.abr or DEFAULT_ABR)
    playout_config = PlayoutConfig(startup_threshold=config.startup, max_buffer=config.max_buffer)
    loop = _Loop(
        fetcher=fetcher,
        algorithm=algorithm,
        playout=Playout.start(playout_config, 0.0),
        speed=config.speed,
        clock=clock,
        sleep=sleep,
        view=view or LiveView(total=0, title="", quiet=True),
        recorder=recorder,
        total=sum(t.count for t in tracks),
        head_sizes=config.chunk_sizes == "head",
        timeout=config.timeout,
        t0=clock(),
        max_buffer=config.max_buffer,
        live=live,
        limit=config.duration,
    )
    loop.view.total = loop.total
    ended: End = "end"
    try:
        if live:
            driver = _Live(loop=loop, url=config.url, wall=wall, build=build, manifest=manifest,
                           tracks=tracks, refreshed_at=refreshed_at)  # fmt: skip
            ended = driver.run()
            tracks = driver.tracks
        else:
            for track in tracks:
                loop.play_track(track)
            ended = "limit" if loop.limit_reached() else "end"
    except KeyboardInterrupt:
        ended = "interrupted"
        loop.note(f"interrupted (Ctrl-C) after {len(loop.records)} chunks")
    return _result(loop, tracks, ended)


def _result(loop: _Loop, tracks: list[Track], ended: End) -> SessionResult:
    """End the playout model now and summarise the session."""
    loop.playout = loop.playout.end_of_stream(max(loop.now(), loop.playout.clock))
    summary = summarize(
        loop.outcomes,
        stall_durations=[s.duration for s in loop.playout.stalls],
        startup_delay=loop.playout.startup_delay,
        algorithm=loop.algorithm.name,
    )
    audio = next((t.audio.id for t in tracks if t.audio is not None), None)
    return SessionResult(
        records=tuple(loop.records), summary=summary, abr=loop.algorithm.name, audio=audio, ended=ended,
        events=tuple(loop.events),
    )  # fmt: skip


def run(config: PlayerConfig) -> int:
    """The whole `cdn-player URL` run: resolve, play with the live view, then the report files.

    Returns the exit code: 0, or 130 after Ctrl-C (the report, plot and video of what was played
    are still written).
    """
    from rich.console import Console

    from player.qoe import render_table
    from player.report import report_document, write_plot, write_report

    resolver = Resolver(
        server=config.dns,
        client_subnet=config.client_subnet,
        source_ip=config.source_ip,
        timeout=min(config.timeout, 5.0),
    )
    recorder = OutputRecorder() if config.output is not None else None
    try:
        with (
            Fetcher(
                EdgePool(resolver),
                source_ip=config.source_ip,
                timeout=config.timeout,
                retries_per_edge=config.retries_per_edge,
                max_failovers=config.max_failovers,
            ) as fetcher,
            LiveView(total=0, title=f"playing {config.url}", quiet=config.quiet) as view,
        ):
            result = play(config, fetcher, view=view, recorder=recorder)
        console = Console()
        console.print(render_table(result.summary, title="QoE report"))
        if config.report is not None:
            doc = report_document(
                url=config.url,
                abr=result.abr,
                speed=config.speed,
                summary=result.summary.to_dict(),
                records=result.records,
                audio=result.audio,
                ended=result.ended,
                events=result.events,
            )
            console.print(f"report: {write_report(config.report, doc)}")
        if config.plot is not None and result.records:
            console.print(f"plot: {write_plot(config.plot, result.records, title=config.url)}")
        if recorder is not None and config.output is not None and result.records:
            console.print(f"watched video: {recorder.finish(config.output)}")
    finally:
        if recorder is not None:
            recorder.close()
    if result.ended == "interrupted":
        console.print(f"interrupted: the report covers the {len(result.records)} chunks played")
        return 130  # as the shell reports a SIGINT; the files above are written all the same
    return 0
