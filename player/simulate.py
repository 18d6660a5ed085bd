"""The trace simulator: the same ABR and playout code as the real player, against a throughput trace.

`simulate()` is pure (a trace, an AbrContext, an algorithm → per-chunk records and the QoE
summary). The shell part builds the context from an MPD (chunk sizes from the package's files when
the MPD sits in a store, else bandwidth × duration) or a Sabre movie JSON, and is the
`cdn-player simulate` subcommand: `add_simulate_arguments(parser)` / `run_simulate(args) -> int`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from player.abr import (
    ALGORITHMS,
    DEFAULT_ABR,
    AbrAlgorithm,
    AbrContext,
    Observation,
    ThroughputSample,
    make_abr,
)
from player.abr.base import PROGRESS_SECONDS, RECENT_SECONDS, Progress, abandon_choice
from player.errors import PlayerError
from player.playout import Playout, PlayoutConfig
from player.qoe import ChunkOutcome, QoeSummary, render_table, summarize
from player.trace import Trace, load_trace

__all__ = [
    "ChunkRecord",
    "SimulationResult",
    "add_simulate_arguments",
    "audio_from_manifest",
    "context_from_manifest",
    "context_from_movie",
    "run_simulate",
    "simulate",
]

SAMPLE_WINDOW = 20  # throughput samples handed to the ABR each chunk


@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkRecord:
    """One simulated chunk: choice, size (bytes), timing (s), throughput (bit/s), buffer after (s)."""

    index: int
    representation: int
    bitrate: float
    size: int
    requested_at: float
    wait: float
    download_time: float
    throughput: float
    buffer_level: float
    stall: float
    abandoned: int = 0  # downloads of this chunk abandoned for a lower representation
    wasted: int = 0  # bytes received by those abandoned downloads


@dataclass(frozen=True, slots=True)
class SimulationResult:
    """Every chunk's record and the QoE summary of the run."""

    records: tuple[ChunkRecord, ...]
    summary: QoeSummary


def simulate(
    trace: Trace, ctx: AbrContext, algorithm: AbrAlgorithm[Any], *, playout: PlayoutConfig | None = None,
    latency: float | None = None, chunks: int | None = None, audio: Sequence[int] = (),
) -> SimulationResult:  # fmt: skip
    """Play `chunks` (default ctx.chunk_count) chunks over `trace` (looped) and score them with QoE_lin.

    Downloads are sequential; before each request the player waits until the chunk fits under
    the buffer cap; `latency` (s) overrides the trace's per-request latency. `audio[k]` is the size in
    bytes of the audio that goes with chunk k (none when shorter): as in the real player, it is
    fetched on the same link right after the video, the chunk plays once both are in, and the ABR's
    sample is the video's bytes over both downloads' time (`ThroughputSample.with_overhead`).
    """
    count = chunks if chunks is not None else ctx.chunk_count
    if count is None:
        raise ValueError("the number of chunks is unknown: pass chunks= or set AbrContext.chunk_count")
    config = playout or PlayoutConfig(max_buffer=ctx.max_buffer)
    state, buffer = algorithm.initial_state(ctx), Playout.start(config, 0.0)
    samples: list[ThroughputSample] = []
    records: list[ChunkRecord] = []
    clock, last = 0.0, None
    for k in range(count):
        wait = buffer.wait_before_request(ctx.segment_duration)
        clock += wait
        buffer = buffer.advance(clock)
        obs = Observation(chunk_index=k, buffer_level=buffer.buffer, last_index=last,
                          samples=tuple(samples[-SAMPLE_WINDOW:]), sample_count=len(samples))  # fmt: skip
        decision = algorithm.choose(ctx, state, obs)
        state, q = decision.state, decision.index
        abandoned = wasted = 0
        while True:
            requested, size = clock, ctx.chunk_size(q, k)
            begin = requested + (trace.latency_at(requested) if latency is None else latency)  # first byte
            finished = trace.finish_time(requested, size, latency=latency)
            cut = _abandonment(trace, ctx, algorithm, state, buffer, k, q, last, requested, begin, finished)
            if cut is None:
                break
            clock, q, received = cut
            buffer = buffer.advance(clock)
            abandoned, wasted = abandoned + 1, wasted + received
        elapsed, clock = finished - requested, finished
        tail = min(RECENT_SECONDS, finished - begin)
        recent = trace.bits_sent(finished - tail, finished) / tail if tail > 0 else None
        sample = ThroughputSample(int(size), elapsed, recent=recent)
        if k < len(audio):
            clock = trace.finish_time(finished, audio[k], latency=latency)
            sample = sample.with_overhead(clock - finished)
        buffer = buffer.add_chunk(clock, ctx.segment_duration)
        samples.append(sample)
        records.append(ChunkRecord(index=k, representation=q, bitrate=ctx.bitrates[q], size=int(size), requested_at=requested,
                                   wait=wait, download_time=elapsed, throughput=size * 8 / elapsed,
                                   buffer_level=buffer.buffer, stall=buffer.stall_for_chunk(k), abandoned=abandoned,
                                   wasted=wasted))  # fmt: skip
        last = q
    buffer = buffer.end_of_stream(clock)
    outcomes = [ChunkOutcome(r.index, r.representation, r.bitrate, r.stall) for r in records]
    summary = summarize(outcomes, stall_durations=[s.duration for s in buffer.stalls],
                        startup_delay=buffer.startup_delay, algorithm=getattr(algorithm, "name", None))  # fmt: skip
    return SimulationResult(tuple(records), summary)


def _abandonment(
    trace: Trace, ctx: AbrContext, algorithm: AbrAlgorithm[Any], state: Any, buffer: Playout, k: int, q: int,
    last: int | None, requested: float, begin: float, finished: float,
) -> tuple[float, int, int] | None:  # fmt: skip
    """(when, lower representation, bytes received) if the ABR abandons the download of chunk k at q,
    checked every PROGRESS_SECONDS while it runs (bytes flow from `begin`); None when it runs to the end."""
    if q == 0 or not hasattr(algorithm, "abandon"):
        return None
    size, now = ctx.chunk_size(q, k), requested + PROGRESS_SECONDS
    while now < finished - 1e-9:
        level = buffer.advance(now)
        received = int(min(trace.bits_sent(begin, max(now, begin)) / 8, size))
        progress = Progress(chunk_index=k, index=q, size=int(size), received=received, elapsed=now - requested,
                            buffer_level=level.buffer, playing=level.started_at is not None, last_index=last)  # fmt: skip
        lower = abandon_choice(algorithm, ctx, state, progress)
        if lower is not None:
            return now, lower, received
        now += PROGRESS_SECONDS
    return None


# --- building the context (I/O) -----------------------------------------------------------------


def context_from_movie(path: Path, *, max_buffer: float = 25.0) -> AbrContext:
    """An AbrContext from a Sabre movie JSON (`segment_duration_ms`, `bitrates_kbps`, `segment_sizes_bits`)."""
    try:
        movie = json.loads(path.read_text(encoding="utf-8"))
        bitrates = tuple(float(b) * 1000 for b in movie["bitrates_kbps"])
        per_chunk = movie["segment_sizes_bits"]
        sizes = tuple(tuple(int(chunk[q]) // 8 for chunk in per_chunk) for q in range(len(bitrates)))
        duration = float(movie["segment_duration_ms"]) / 1000
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise PlayerError(
            f"{path} is not a Sabre movie JSON (segment_duration_ms, bitrates_kbps, segment_sizes_bits): {exc}"
        ) from exc
    return AbrContext(
        bitrates=bitrates,
        segment_duration=duration,
        chunk_count=len(per_chunk),
        chunk_sizes=sizes,
        max_buffer=max_buffer,
    )


def context_from_manifest(path: Path, *, max_buffer: float = 25.0) -> AbrContext:
    """An AbrContext for the video of a local MPD; real chunk sizes when its segment files are beside it."""
    from player.mpd import parse_mpd
    from player.timeline import segments

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PlayerError(f"cannot read the manifest {path}: {exc}") from exc
    manifest = parse_mpd(data, base_url=path.resolve().as_uri())
    ladder = manifest.video_ladder()
    if not ladder:
        raise PlayerError(f"{path} has no video adaptation set in its first period")
    period = manifest.periods[0]
    lists = [segments(manifest, period, rep) for rep in ladder]
    count = min(len(s) for s in lists)
    if count == 0:
        raise PlayerError(f"{path}: the video representations list no segments")
    duration = lists[0][0].duration  # nominal: the last chunk may be shorter
    sizes = _file_sizes(lists, count)
    return AbrContext(bitrates=tuple(float(r.bandwidth) for r in ladder), segment_duration=duration,
                      chunk_count=count, chunk_sizes=sizes, max_buffer=max_buffer)  # fmt: skip


def audio_from_manifest(path: Path, count: int) -> tuple[int, ...]:
    """The bytes of audio that go with each of the first `count` video chunks of a local MPD: the audio
    the real player fetches (the highest-bandwidth representation of the first period's audio set),
    file sizes when the files are beside it, else bandwidth × duration; () without audio."""
    from player.mpd import parse_mpd
    from player.timeline import segments

    manifest = parse_mpd(path.read_bytes(), base_url=path.resolve().as_uri())
    period = manifest.periods[0]
    video = segments(manifest, period, manifest.video_ladder()[0])[:count]
    aset = period.adaptation_set("audio")
    if aset is None or not aset.representations or not video:
        return ()
    rep = max(aset.representations, key=lambda r: r.bandwidth)
    try:
        audio = segments(manifest, period, rep)
    except PlayerError:  # e.g. SegmentBase audio: its sidx is not read here; simulate the video alone
        return ()
    files = _file_sizes([audio], len(audio))
    sizes = files[0] if files else tuple(int(rep.bandwidth * a.duration / 8) for a in audio)
    # each chunk brings the audio segments that start before its end and were not fetched yet
    out, taken = [], 0
    for seg in video:
        end = seg.start + seg.duration
        first = taken
        while taken < len(audio) and audio[taken].start < end - 1e-6:
            taken += 1
        out.append(sum(sizes[first:taken]))
    return tuple(out)


def _file_sizes(lists: list[list[Any]], count: int) -> tuple[tuple[int, ...], ...] | None:
    """Sizes of the segment files when every one is a local file (a store), else None."""
    from urllib.parse import unquote, urlparse

    sizes = []
    for segs in lists:
        row = []
        for seg in segs[:count]:
            url = urlparse(seg.url)
            file = Path(unquote(url.path))
            if url.scheme != "file" or not file.is_file():
                return None
            row.append(seg.byte_range[1] - seg.byte_range[0] + 1 if seg.byte_range else file.stat().st_size)
        sizes.append(tuple(row))
    return tuple(sizes)


# --- command line ---------------------------------------------------------------------------------


def add_simulate_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of `cdn-player simulate` to `parser` (the CLI's subcommand parser)."""
    parser.add_argument(
        "--trace", type=Path, required=True, help="throughput trace: '<s> <Mbit/s>' lines or Sabre JSON"
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--manifest", type=Path, help="a local MPD (chunk sizes from its files when in a store)"
    )
    source.add_argument(
        "--movie", type=Path, help="a Sabre movie JSON with real chunk sizes (e.g. pensieve_movie.json)"
    )
    parser.add_argument(
        "--abr",
        default=DEFAULT_ABR,
        choices=sorted(ALGORITHMS),
        help=f"ABR algorithm (default {DEFAULT_ABR})",
    )
    parser.add_argument(
        "--chunk-sizes", type=Path, help="Sabre movie JSON whose segment_sizes_bits override the MPD's sizes"
    )
    parser.add_argument("--max-buffer", type=float, default=25.0, help="buffer cap in seconds (default 25)")
    parser.add_argument(
        "--startup", type=float, default=4.0, help="seconds buffered before playback starts (default 4)"
    )
    parser.add_argument(
        "--latency",
        type=float,
        default=None,
        help="seconds added to every request (default: the trace's, or 0)",
    )
    parser.add_argument("--chunks", type=int, default=None, help="chunks to play (default: the whole video)")
    parser.add_argument(
        "--json", action="store_true", help="print the summary and records as JSON instead of a table"
    )


def run_simulate(args: argparse.Namespace) -> int:
    """Run `cdn-player simulate`; prints the QoE table (or JSON); returns the exit status."""
    try:
        trace = load_trace(args.trace)
        ctx = context_from_movie(args.movie, max_buffer=args.max_buffer) if args.movie else \
            context_from_manifest(args.manifest, max_buffer=args.max_buffer)  # fmt: skip
        if args.chunk_sizes:
            movie = context_from_movie(args.chunk_sizes, max_buffer=args.max_buffer)
            if len(movie.bitrates) != len(ctx.bitrates):
                raise PlayerError(
                    f"{args.chunk_sizes} has {len(movie.bitrates)} renditions, the manifest {len(ctx.bitrates)}"
                )
            ctx = AbrContext(bitrates=ctx.bitrates, segment_duration=ctx.segment_duration, chunk_count=movie.chunk_count,
                             chunk_sizes=movie.chunk_sizes, max_buffer=args.max_buffer)  # fmt: skip
        config = PlayoutConfig(startup_threshold=args.startup, max_buffer=args.max_buffer)
        audio = audio_from_manifest(args.manifest, ctx.chunk_count or 0) if args.manifest else ()
        result = simulate(
            trace,
            ctx,
            make_abr(args.abr),
            playout=config,
            latency=args.latency,
            chunks=args.chunks,
            audio=audio,
        )
    except (PlayerError, ValueError) as exc:
        print(f"cdn-player simulate: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(
            json.dumps(
                {"summary": result.summary.to_dict(), "chunks": [_record_dict(r) for r in result.records]},
                indent=2,
            )
        )
    else:
        from cdn.console import make_console

        make_console().print(render_table(result.summary, title=f"QoE report: {args.trace.name}"))
    return 0


def _record_dict(record: ChunkRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in ChunkRecord.__dataclass_fields__}


def main(argv: list[str] | None = None) -> int:
    """`python -m player.simulate ...`: the simulator without the player CLI."""
    parser = argparse.ArgumentParser(prog="cdn-player simulate", description=__doc__)
    add_simulate_arguments(parser)
    return run_simulate(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
