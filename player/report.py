"""The per-chunk records of a session, the `--report` JSON and the `--plot` PNG.

`ChunkRecord` is what the play loop keeps for every chunk it used. `report_document` (pure) builds
the JSON document: `{"url", "abr", "speed", "clock_offset", "summary": {...QoE...}, "chunks": [...]}`;
`write_report` and `write_plot` (matplotlib, Agg backend) do the file I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["ChunkRecord", "report_document", "write_plot", "write_report"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkRecord:
    """One video chunk the player used, and how it got it."""

    index: int  # 0-based position in the stream
    number: int  # the segment number in the manifest ($Number$)
    representation: str
    bitrate: int  # the representation's @bandwidth, bits per second
    duration: float  # media seconds in the chunk
    bytes: int
    download_seconds: float  # wall-clock, request to last byte
    throughput_bps: float  # measured: bytes * 8 / download_seconds
    buffer_seconds: float  # media buffered right after this chunk arrived
    stall_seconds: float  # playback stalled while this chunk was downloading
    time: float  # media-clock seconds since the session started, when the chunk arrived
    edge: str  # "ip:port" of the edge that served it
    retries: int
    failovers: int
    url: str
    sha256: str
    cache: str | None = None  # the edge's X-Cache header
    abandoned: int = 0  # downloads of this chunk given up for a lower representation before this one
    wasted_bytes: int = 0  # bytes received by those abandoned downloads

    def __post_init__(self) -> None:
        if self.index < 0 or self.bytes < 0 or self.download_seconds < 0:
            raise ValueError(f"chunk record {self.index}: negative index, size or time")
        if self.abandoned < 0 or self.wasted_bytes < 0:
            raise ValueError(f"chunk record {self.index}: negative abandoned count or wasted bytes")


def report_document(
    *,
    url: str,
    abr: str,
    speed: float,
    summary: Mapping[str, Any],
    records: Sequence[ChunkRecord],
    audio: str | None = None,
    ended: str | None = None,
    events: Sequence[str] = (),
    clock_offset: float | None = None,
) -> dict[str, Any]:
    """The JSON-ready report: settings, the QoE summary and one entry per chunk.

    `ended` says why the session ended (player.liveedge.End) and `events` lists what a live session
    noted on the way (the clock sync, the join point, jumps, late segments); both are left out when
    not given. `clock_offset` is the seconds a live session added to the local clock (null: static).
    """
    doc: dict[str, Any] = {
        "url": url,
        "abr": abr,
        "speed": speed,
        "clock_offset": clock_offset,
        "audio_representation": audio,
        "summary": dict(summary),
        "chunks": [asdict(r) for r in records],
    }
    if ended is not None:
        doc["ended"] = ended
    if events:
        doc["events"] = list(events)
    return doc


def write_report(path: Path, document: Mapping[str, Any]) -> Path:
    """Write the report JSON (indented, UTF-8); return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return path


def write_plot(path: Path, records: Sequence[ChunkRecord], *, title: str = "") -> Path:
    """Plot bitrate and throughput (Mbit/s) and buffer (s) over media time into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    times = [r.time for r in records]
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(9, 6), dpi=100)
    try:
        top.step(times, [r.bitrate / 1e6 for r in records], where="post", label="chosen bitrate")
        throughputs = [r.throughput_bps / 1e6 for r in records]
        top.plot(times, throughputs, "o--", markersize=3, label="measured throughput")
        if throughputs and max(throughputs) > 20 * min(r.bitrate / 1e6 for r in records):
            top.set_yscale("log")  # loopback throughput dwarfs the ladder
        top.set_ylabel("Mbit/s")
        top.legend(loc="best")
        top.grid(alpha=0.3)
        saw_t, saw_b = _sawtooth(records)
        bottom.plot(saw_t, saw_b, "-", color="tab:green", label="buffer")
        stalls = [r for r in records if r.stall_seconds > 0]
        if stalls:
            bottom.scatter(
                [r.time for r in stalls], [0] * len(stalls), color="tab:red", label="stall", zorder=3
            )
        bottom.set_ylabel("buffer (s)")
        bottom.set_xlabel("media time (s)")
        bottom.legend(loc="best")
        bottom.grid(alpha=0.3)
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
    return path


def _sawtooth(records: Sequence[ChunkRecord]) -> tuple[list[float], list[float]]:
    """Buffer level just before and just after each arrival (it drains linearly in between)."""
    times: list[float] = []
    levels: list[float] = []
    for r in records:
        times += [r.time, r.time]
        levels += [max(0.0, r.buffer_seconds - r.duration), r.buffer_seconds]
    return times, levels
