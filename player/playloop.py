"""The chunk loop of a session: per chunk, ask the ABR, fetch (abandoning lower when it says so), feed
the playout model, record; shared by static playback (`player.session`) and live (`player.livesession`).

Also the pieces both need: `Track` (one period's ladder and segments), `load_manifest` (and
`fetch_manifest`, which keeps the response), and `chunk_read_timeout` (a chunk's read timeout from
the buffer the viewer has left).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from player.abr import AbrAlgorithm, AbrContext, Observation, ThroughputSample
from player.abr.base import PROGRESS_SECONDS, Progress, abandon_choice
from player.config import DEFAULT_TIMEOUT, READ_TIMEOUT_FLOOR
from player.errors import ManifestError, PlayerError
from player.fetch import Abandoned, ChunkFetch, Fetcher, FetchError, ProgressCallback
from player.live import LiveView
from player.liveedge import (
    NOT_YET_TRIES,
    NOT_YET_WAIT,
)
from player.mpd import Manifest, Period, Representation, parse_mpd
from player.output import OutputRecorder
from player.playout import Playout
from player.qoe import ChunkOutcome
from player.report import ChunkRecord
from player.timeline import Segment, SegmentRef, init_segment

__all__ = [
    "BUFFER_SHARE",
    "PlayLoop",
    "SessionError",
    "Track",
    "chunk_read_timeout",
    "fetch_manifest",
    "load_manifest",
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
    return fetch_manifest(fetcher, url)[0]


def fetch_manifest(fetcher: Fetcher, url: str) -> tuple[Manifest, ChunkFetch]:
    """`load_manifest`, with the response it came in (its final URL and Date header, for clock sync)."""
    got = fetcher.get(url)
    try:
        return parse_mpd(got.data, base_url=got.url), got
    except ManifestError as exc:
        raise SessionError(f"the manifest at {url} cannot be parsed: {exc}; is this a DASH MPD?") from exc


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

    loop: PlayLoop
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
class PlayLoop:
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
        playout = self.playout.advance(max(self.now(), self.playout.clock))  # a look, not a step
        playing = playout.started_at is not None
        return chunk_read_timeout(playout.buffer, speed=self.speed, playing=playing, ceiling=self.timeout)

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
        probing = self.clock()
        ctx = self.context(track, k, first)  # may ask the edge for sizes (HEAD) a few chunks ahead
        probing = self.clock() - probing
        decision = self.algorithm.choose(ctx, self.state, obs)
        self.state = decision.state
        fetched = self.fetch_video(track, ctx, k, first, decision.index)
        q, got = fetched.index, fetched.got
        seg = track.segments[q][k]
        audio = self.fetch_audio(track, until=seg.start + seg.duration)
        self.arrived(track, q, seg, got.data, fetched.init)
        self.samples.append(self.sample(got, overhead=probing + audio))
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

    def sample(self, got: ChunkFetch, *, overhead: float = 0.0) -> ThroughputSample:
        """The ABR's view of a video chunk, in media time (seconds × speed, rates / speed).

        The ABR plans in video bytes, but the link also carries the chunk's audio and the size probes
        made before it, one request after another: their wall seconds (`overhead`) count too
        (`ThroughputSample.with_overhead`), so the sample is the rate at which video gets into the
        buffer. Otherwise the ABR overrates the link by the audio's share and plans chunks that stall
        (the record keeps the video download's own throughput).
        """
        recent = None if got.recent_bps is None else got.recent_bps / self.speed
        video = ThroughputSample(len(got.data), max(got.download_seconds, 1e-6) * self.speed, recent=recent)
        return video.with_overhead(overhead * self.speed)

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

    def fetch_audio(self, track: Track, *, until: float) -> float:
        """Fetch the audio segments not fetched yet (ending after `audio_from`) that begin before `until`.

        Returns the wall seconds their downloads took (request to last byte, the init's included).
        """
        if track.audio is None:
            return 0.0
        spent = 0.0
        for seg in track.audio_segments:
            if seg.start >= until - 1e-6:
                break
            if seg.start + seg.duration <= self.audio_from + 1e-6:
                continue
            started = self.clock()
            init = self.init_of(track.period, track.audio)  # fetched once, then remembered
            spent += self.clock() - started
            got = self.get(seg.url, byte_range=seg.byte_range, read_timeout=self.read_timeout())
            spent += got.download_seconds  # the last attempt's, as for video: retries' waits are not the link
            if self.recorder is not None:
                self.recorder.add_audio(init, got.data, run=str(track.period.id or track.period.start))
            self.audio_from = seg.start + seg.duration
        return spent
