"""Throughput traces for the simulator: parse them and integrate them into download times (pure).

Formats: text lines `<time_seconds> <throughput_Mbit/s>` (Pensieve-style, ../shared/traces/), each
sample holding until the next one (the last for the median interval); and Sabre's JSON network
format, a list of `{"duration_ms", "bandwidth_kbps", "latency_ms"}`. A trace loops when the video
outlasts it. `Trace.finish_time(start, size)` is the exact integral of the piecewise-constant rate.
"""

from __future__ import annotations

import bisect
import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from player.errors import TraceError

__all__ = ["Trace", "load_trace", "parse_json_trace", "parse_text_trace"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Trace:
    """A looping piecewise-constant link: `durations` (s), `bandwidths` (bit/s), optional `latencies` (s)."""

    name: str
    durations: tuple[float, ...]
    bandwidths: tuple[float, ...]
    latencies: tuple[float, ...] | None = None
    starts: tuple[float, ...] = ()
    cumulative: tuple[float, ...] = ()  # bits sent by each start, len = n + 1

    @classmethod
    def build(
        cls, name: str, durations: list[float], bandwidths: list[float], latencies: list[float] | None = None
    ) -> Trace:
        """Validate and precompute the integral; TraceError when empty, negative or never sending."""
        if not durations or len(durations) != len(bandwidths):
            raise TraceError(f"trace {name!r} has no samples", path=name)
        if any(d <= 0 for d in durations) or any(b < 0 for b in bandwidths):
            raise TraceError(f"trace {name!r} has a non-positive duration or a negative bandwidth", path=name)
        if sum(d * b for d, b in zip(durations, bandwidths, strict=True)) <= 0:
            raise TraceError(f"trace {name!r} never sends a bit: every bandwidth is 0", path=name)
        starts, cumulative, t, bits = [], [0.0], 0.0, 0.0
        for d, b in zip(durations, bandwidths, strict=True):
            starts.append(t)
            t, bits = t + d, bits + d * b
            cumulative.append(bits)
        return cls(name=name, durations=tuple(durations), bandwidths=tuple(bandwidths),
                   latencies=tuple(latencies) if latencies else None, starts=tuple(starts), cumulative=tuple(cumulative))  # fmt: skip

    @property
    def period(self) -> float:
        """Length of one loop in seconds."""
        return self.starts[-1] + self.durations[-1]

    @property
    def mean_bandwidth(self) -> float:
        """Time-weighted mean throughput in bit/s."""
        return self.cumulative[-1] / self.period

    def _bits_at(self, local: float) -> float:
        i = max(0, bisect.bisect_right(self.starts, local) - 1)
        return self.cumulative[i] + self.bandwidths[i] * (local - self.starts[i])

    def _time_of(self, bits: float) -> float:
        i = min(bisect.bisect_right(self.cumulative, bits) - 1, len(self.durations) - 1)
        while self.bandwidths[i] <= 0:  # a zero-rate sample whose cumulative equals `bits`
            i += 1
        return self.starts[i] + (bits - self.cumulative[i]) / self.bandwidths[i]

    def bits_sent(self, start: float, end: float) -> float:
        """Bits the link carries between instants `start` and `end` (s, looping; latency not included)."""
        return self._bits_by(end) - self._bits_by(start)

    def _bits_by(self, when: float) -> float:
        loops, local = divmod(when, self.period)
        return loops * self.cumulative[-1] + self._bits_at(local)

    def latency_at(self, when: float) -> float:
        """The trace's latency in seconds at `when` (0 when the trace has none)."""
        if not self.latencies:
            return 0.0
        local = when % self.period
        return self.latencies[max(0, bisect.bisect_right(self.starts, local) - 1)]

    def finish_time(self, start: float, size_bytes: float, *, latency: float | None = None) -> float:
        """When a download of `size_bytes` started at `start` ends: latency, then the rate integral."""
        begin = start + (self.latency_at(start) if latency is None else latency)
        loops, local = divmod(begin, self.period)
        target = self._bits_at(local) + size_bytes * 8
        extra, rest = divmod(target, self.cumulative[-1])
        if rest == 0 and extra > 0:
            extra, rest = extra - 1, self.cumulative[-1]
        return (loops + extra) * self.period + self._time_of(rest)

    def download_time(self, start: float, size_bytes: float, *, latency: float | None = None) -> float:
        """Seconds from request at `start` to the last byte of `size_bytes`."""
        return self.finish_time(start, size_bytes, latency=latency) - start


def parse_text_trace(text: str, *, name: str = "trace") -> Trace:
    """`<seconds> <Mbit/s>` lines (blank lines and # comments ignored)."""
    times: list[float] = []
    rates: list[float] = []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        try:
            if len(fields) < 2:
                raise ValueError
            t, r = float(fields[0]), float(fields[1])
        except ValueError:
            raise TraceError(
                f"{name}:{number}: expected '<seconds> <Mbit/s>', got {line.strip()!r}",
                path=name,
                line=number,
            ) from None
        if times and t < times[-1]:
            raise TraceError(f"{name}:{number}: time {t} goes back from {times[-1]}", path=name, line=number)
        times.append(t)
        rates.append(r * 1e6)
    if not times:
        raise TraceError(f"{name}: no samples; expected '<seconds> <Mbit/s>' lines", path=name)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False) if b > a]
    last = statistics.median(gaps) if gaps else 1.0
    durations, bandwidths = [], []
    for i, (t, r) in enumerate(zip(times, rates, strict=True)):
        d = times[i + 1] - t if i + 1 < len(times) else last
        if d > 0:
            durations.append(d)
            bandwidths.append(r)
    return Trace.build(name, durations, bandwidths)


def parse_json_trace(text: str, *, name: str = "trace") -> Trace:
    """Sabre's network JSON: a list of {"duration_ms", "bandwidth_kbps", "latency_ms"}."""
    try:
        entries = json.loads(text)
        durations = [float(e["duration_ms"]) / 1000 for e in entries]
        bandwidths = [float(e["bandwidth_kbps"]) * 1000 for e in entries]
        latencies = [float(e.get("latency_ms", 0)) / 1000 for e in entries]
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise TraceError(
            f"{name}: not a Sabre network trace (list of duration_ms/bandwidth_kbps): {exc}", path=name
        ) from None
    return Trace.build(name, durations, bandwidths, latencies)


def load_trace(path: Path) -> Trace:
    """Read a trace file: JSON when it starts with '[', text lines otherwise."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeError) as exc:
        raise TraceError(f"cannot read trace {path}: {exc}", path=str(path)) from exc
    parse = parse_json_trace if text.lstrip().startswith("[") else parse_text_trace
    return parse(text, name=path.name)
