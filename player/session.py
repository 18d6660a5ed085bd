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
A dynamic (live) MPD is played by `player.livesession.LiveDriver` (decisions in `player.liveedge`): join a few segments
behind the live edge, wait for each segment's availability time, re-fetch the MPD every
@minimumUpdatePeriod and when out of segments, until it turns static, reaches its duration, the
`--duration` limit or Ctrl-C (which, for any stream, ends the session with what was played). Before
joining, the wall clock is synced once to the stream's time source (`player.clocksync`: UTCTiming,
else the MPD's Date header); every availability time is judged on that clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from player.abr import DEFAULT_ABR, AbrAlgorithm, make_abr
from player.clocksync import ClockSync, Exchange, sync_clock
from player.config import PlayerConfig
from player.edgepool import EdgePool
from player.errors import ManifestError, SegmentIndexError
from player.fetch import Fetcher
from player.live import LiveView
from player.liveedge import (
    End,
)
from player.livesession import LiveDriver
from player.mpd import Manifest, Period, Representation
from player.output import OutputRecorder
from player.playloop import (
    BUFFER_SHARE,
    PlayLoop,
    SessionError,
    Track,
    chunk_read_timeout,
    fetch_manifest,
    load_manifest,
)
from player.playout import Playout, PlayoutConfig
from player.qoe import QoeSummary, summarize
from player.report import ChunkRecord
from player.resolve import Resolver
from player.sidx import SidxReference, parse_sidx
from player.timeline import index_segment, segments

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


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionResult:
    """What a session played: one record per video chunk and the QoE summary."""

    records: tuple[ChunkRecord, ...]
    summary: QoeSummary
    abr: str
    audio: str | None = None
    ended: End = "end"
    events: tuple[str, ...] = ()  # live events worth a line in the report (jumps, late segments, Ctrl-C)
    clock_offset: float | None = (
        None  # live: seconds added to the wall clock (player.clocksync); static: None
    )


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

    A dynamic MPD is played live (`LiveDriver`) until it ends or `config.duration`; Ctrl-C
    (KeyboardInterrupt) ends a session too, with the result of what was played (ended="interrupted").
    `algorithm` replaces the one `config.abr` names (any object implementing the ABR interface).
    `wall` is the local wall clock; live, it is synced once to the stream's time source before joining.
    """
    manifest, got = fetch_manifest(fetcher, config.url)
    live = manifest.type == "dynamic"
    sync = sync_clock(manifest, fetcher.get, wall, mpd=Exchange.of(got, wall())) if live else None
    stream_clock = sync.clock(wall) if sync is not None else wall  # availability is judged on this clock
    load_sidx = _sidx_loader(fetcher)

    def build(m: Manifest, now: float) -> list[Track]:
        return [t for p in m.periods if (t := build_track(m, p, now=now, sidx_of=load_sidx, empty_ok=live))]

    refreshed_at = stream_clock()
    tracks = build(manifest, refreshed_at)
    if not tracks and not live:
        raise SessionError(f"the manifest at {config.url} has no video adaptation set to play")
    if algorithm is None:
        algorithm = make_abr(config.abr or DEFAULT_ABR)
    playout_config = PlayoutConfig(startup_threshold=config.startup, max_buffer=config.max_buffer)
    loop = PlayLoop(
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
    if sync is not None:
        _note_sync(loop, sync)
    ended: End = "end"
    try:
        if live:
            driver = LiveDriver(loop=loop, url=config.url, wall=stream_clock, build=build, manifest=manifest,
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
    return _result(loop, tracks, ended, clock_offset=sync.offset if sync is not None else None)


def _note_sync(loop: PlayLoop, sync: ClockSync) -> None:
    """The clock sync as session events: each time source that failed, then the offset and its source."""
    for failure in sync.failures:
        loop.note(f"live: time source failed: {failure}")
    loop.note(f"live: {sync.describe()}")


def _result(loop: PlayLoop, tracks: list[Track], ended: End, *, clock_offset: float | None) -> SessionResult:
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
        events=tuple(loop.events), clock_offset=clock_offset,
    )  # fmt: skip


def run(config: PlayerConfig) -> int:
    """The whole `cdn-player URL` run: resolve, play with the live view, then the report files.

    Returns the exit code: 0, or 130 after Ctrl-C (the report, plot and video of what was played
    are still written).
    """
    from cdn.console import make_console
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
                ca=config.ca,
            ) as fetcher,
            LiveView(total=0, title=f"playing {config.url}", quiet=config.quiet) as view,
        ):
            result = play(config, fetcher, view=view, recorder=recorder)
        console = make_console()
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
                clock_offset=result.clock_offset,
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
