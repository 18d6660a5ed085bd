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
(the ABR sees throughput / N); chunk sizes for the ABR come from HEAD requests a few chunks ahead; a
dynamic (live) MPD is played from the segments available when it was fetched, without refresh.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from player.abr import DEFAULT_ABR, AbrAlgorithm, AbrContext, Observation, ThroughputSample, make_abr
from player.abr.base import PROGRESS_SECONDS, Progress, abandon_choice
from player.config import DEFAULT_TIMEOUT, READ_TIMEOUT_FLOOR, PlayerConfig
from player.errors import ManifestError, PlayerError, SegmentIndexError
from player.fetch import Abandoned, ChunkFetch, EdgePool, Fetcher
from player.live import LiveView
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
) -> Track | None:
    """The video track of `period` (None when it has no video); SessionError when segments are missing."""
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
    samples: list[ThroughputSample] = field(default_factory=list)
    records: list[ChunkRecord] = field(default_factory=list)
    outcomes: list[ChunkOutcome] = field(default_factory=list)
    inits: dict[tuple[str, str], bytes] = field(default_factory=dict)
    head_sizes: bool = True  # ask the edge for chunk sizes (HEAD) a few chunks ahead
    timeout: float = DEFAULT_TIMEOUT  # the longest read timeout of a video chunk (--timeout), wall seconds
    sizes: dict[str, int | None] = field(default_factory=dict)

    def now(self) -> float:
        """Media-clock seconds since the session started."""
        return (self.clock() - self.t0) * self.speed

    def read_timeout(self) -> float:
        """The read timeout of a video chunk requested now (`chunk_read_timeout` of the buffer left)."""
        self.playout = self.playout.advance(max(self.now(), self.playout.clock))
        playing = self.playout.started_at is not None
        return chunk_read_timeout(
            self.playout.buffer, speed=self.speed, playing=playing, ceiling=self.timeout
        )

    def init_of(self, period: Period, rep: Representation) -> bytes:
        """The initialization segment of `rep` (fetched once), b"" when self-initialising."""
        key = (period.id or str(period.start), rep.id)
        if key not in self.inits:
            ref = init_segment(period, rep)
            self.inits[key] = b"" if ref is None else self.fetch_ref(ref)
        return self.inits[key]

    def fetch_ref(self, ref: SegmentRef) -> bytes:
        return self.fetcher.get(ref.url, byte_range=ref.byte_range).data

    def size_of(self, seg: Segment) -> int | None:
        """The real size of a chunk (byte range, else a HEAD request), None when unknown."""
        if seg.byte_range is not None:
            return seg.byte_range[1] - seg.byte_range[0] + 1
        if not self.head_sizes:
            return None
        if seg.url not in self.sizes:
            self.sizes[seg.url] = self.fetcher.size(seg.url)
        return self.sizes[seg.url]

    def context(self, track: Track, k: int, max_buffer: float) -> AbrContext:
        """The ABR context with the real sizes known so far (a prefix of every list)."""
        known: list[tuple[int, ...]] = []
        end = min(track.count, k + SIZE_LOOKAHEAD)
        for segs in track.segments:
            row: list[int] = []
            for seg in segs[:end]:
                size = self.size_of(seg)
                if size is None:
                    break
                row.append(size)
            known.append(tuple(row))
        common = min(len(r) for r in known)
        return AbrContext(
            bitrates=tuple(float(r.bandwidth) for r in track.ladder),
            segment_duration=track.segment_duration,
            chunk_count=track.count,
            chunk_sizes=tuple(r[:common] for r in known) if common else None,
            max_buffer=max_buffer,
        )

    def wait_for_room(self, seconds: float) -> None:
        """Honour the buffer cap: sleep (scaled by speed) until a chunk of `seconds` fits."""
        self.playout = self.playout.advance(self.now())
        wait = self.playout.wait_before_request(seconds)
        if wait > 0:
            self.sleep(wait / self.speed)
            self.playout = self.playout.advance(max(self.now(), self.playout.clock))

    def play_track(
        self, track: Track, max_buffer: float, state: Any, last: int | None
    ) -> tuple[Any, int | None]:
        """Play every chunk of `track`; return the ABR state and the last choice."""
        audio_next = 0
        for k in range(track.count):
            self.wait_for_room(track.segments[0][k].duration)
            obs = Observation(
                chunk_index=k,
                buffer_level=self.playout.buffer,
                last_index=last,
                samples=tuple(self.samples[-SAMPLE_WINDOW:]),
                sample_count=len(self.samples),
            )
            ctx = self.context(track, k, max_buffer)
            decision = self.algorithm.choose(ctx, state, obs)
            state = decision.state
            fetched = self.fetch_video(track, ctx, state, k, decision.index, last)
            q, got = fetched.index, fetched.got
            seg = track.segments[q][k]
            audio_next = self.fetch_audio(track, audio_next, until=seg.start + seg.duration)
            self.arrived(track, q, seg, got.data, fetched.init)
            self.samples.append(self.sample(got))
            self.record(track, seg, fetched)
            last = q
        self.fetch_audio(track, audio_next, until=float("inf"))
        return state, last

    def fetch_video(
        self, track: Track, ctx: AbrContext, state: Any, k: int, q: int, last: int | None
    ) -> _Fetched:
        """Fetch chunk `k` at representation `q`, going lower each time the ABR abandons a download."""
        abandoned = wasted = 0
        while True:
            rep, seg = track.ladder[q], track.segments[q][k]
            init = self.init_of(track.period, rep)
            size = self.size_of(seg) or int(ctx.chunk_size(q, k))
            watch = _Watch(loop=self, ctx=ctx, state=state, chunk=k, index=q, size=size, last=last)
            try:
                got = self.fetcher.get(
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

    def fetch_audio(self, track: Track, start: int, *, until: float) -> int:
        """Fetch the audio segments that begin before `until` (seconds); return the next one to fetch."""
        if track.audio is None:
            return start
        i = start
        while i < len(track.audio_segments) and track.audio_segments[i].start < until - 1e-6:
            seg = track.audio_segments[i]
            init = self.init_of(track.period, track.audio)
            data = self.fetcher.get(seg.url, byte_range=seg.byte_range, read_timeout=self.read_timeout()).data
            if self.recorder is not None:
                self.recorder.add_audio(init, data, run=str(track.period.id or track.period.start))
            i += 1
        return i


def _sidx_loader(fetcher: Fetcher) -> Callable[[Period, Representation], list[SidxReference] | None]:
    """Fetch and parse the segment index of SegmentBase representations (None for the others)."""

    def load(period: Period, rep: Representation) -> list[SidxReference] | None:
        ref = index_segment(period, rep)
        if ref is None:
            return None
        data = fetcher.get(ref.url, byte_range=ref.byte_range).data
        return parse_sidx(data, data_offset=ref.byte_range[0] if ref.byte_range else 0)

    return load


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

    `algorithm` replaces the one `config.abr` names (any object implementing the ABR interface).
    """
    manifest = load_manifest(fetcher, config.url)
    load_sidx = _sidx_loader(fetcher)
    tracks = [t for p in manifest.periods if (t := build_track(manifest, p, now=wall(), sidx_of=load_sidx))]
    if not tracks:
        raise SessionError(f"the manifest at {config.url} has no video adaptation set to play")
    if algorithm is None:
        algorithm = make_abr(config.abr or DEFAULT_ABR)
    playout_config = PlayoutConfig(startup_threshold=config.startup, max_buffer=config.max_buffer)
    t0 = clock()
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
        t0=t0,
    )
    loop.view.total = loop.total
    state: Any = None
    last: int | None = None
    previous: tuple[float, ...] | None = None
    for track in tracks:
        bitrates = tuple(float(r.bandwidth) for r in track.ladder)
        if bitrates != previous:  # a new ladder: the ABR starts afresh
            state = algorithm.initial_state(loop.context(track, 0, config.max_buffer))
            last, previous = None, bitrates
        state, last = loop.play_track(track, config.max_buffer, state, last)
    loop.playout = loop.playout.end_of_stream(max(loop.now(), loop.playout.clock))
    summary = summarize(
        loop.outcomes,
        stall_durations=[s.duration for s in loop.playout.stalls],
        startup_delay=loop.playout.startup_delay,
        algorithm=algorithm.name,
    )
    audio = next((t.audio.id for t in tracks if t.audio is not None), None)
    return SessionResult(records=tuple(loop.records), summary=summary, abr=algorithm.name, audio=audio)


def run(config: PlayerConfig) -> int:
    """The whole `cdn-player URL` run: resolve, play with the live view, then the report files; exit 0."""
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
            )
            console.print(f"report: {write_report(config.report, doc)}")
        if config.plot is not None:
            console.print(f"plot: {write_plot(config.plot, result.records, title=config.url)}")
        if recorder is not None and config.output is not None:
            console.print(f"watched video: {recorder.finish(config.output)}")
    finally:
        if recorder is not None:
            recorder.close()
    return 0
