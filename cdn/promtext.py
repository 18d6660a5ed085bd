"""A tiny parser for the Prometheus text exposition format, and the edge figures built on it.

`cdn status` and `cdn loadtest` read the edges' `/metrics` (names in docs/architecture.md) and turn
them into hit ratio and origin offload. Only what those need: samples with labels, comments skipped,
escapes in label values handled. Pure: text in, values out.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = [
    "EdgeCounters",
    "PromTextError",
    "Sample",
    "edge_counters",
    "parse_prometheus_text",
]

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\S+)?\s*$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,|$)')
_HIT_STATES = ("HIT", "STALE", "REVALIDATED", "COALESCED")


class PromTextError(ValueError):
    """Raised when a metrics line is not valid Prometheus text format."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One sample: metric name, labels (sorted pairs) and value."""

    name: str
    labels: tuple[tuple[str, str], ...]
    value: float

    def label(self, key: str) -> str | None:
        """The value of label `key`, or None."""
        return dict(self.labels).get(key)


def _unescape(value: str) -> str:
    return value.replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")


def _parse_labels(text: str, line: str) -> tuple[tuple[str, str], ...]:
    labels: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text.rstrip()):
        m = _LABEL.match(text, pos)
        if m is None:
            raise PromTextError(f"bad labels in metrics line {line!r}")
        labels.append((m.group(1), _unescape(m.group(2))))
        pos = m.end()
    return tuple(sorted(labels))


def _parse_value(text: str, line: str) -> float:
    special = {"+Inf": math.inf, "-Inf": -math.inf, "NaN": math.nan}
    if text in special:
        return special[text]
    try:
        return float(text)
    except ValueError:
        raise PromTextError(f"bad value {text!r} in metrics line {line!r}") from None


def parse_prometheus_text(text: str) -> list[Sample]:
    """Parse exposition text into samples; raise PromTextError naming the first bad line."""
    samples = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if m is None:
            raise PromTextError(f"not a metrics sample: {line!r}")
        labels = _parse_labels(m.group(3), line) if m.group(3) else ()
        samples.append(Sample(m.group(1), labels, _parse_value(m.group(4), line)))
    return samples


@dataclass(frozen=True, slots=True, kw_only=True)
class EdgeCounters:
    """An edge's cumulative counters, as read from its /metrics."""

    requests: Mapping[str, float]
    upstream_fetches: float = 0.0
    bytes_served: float = 0.0
    bytes_fetched: float = 0.0

    @property
    def total_requests(self) -> float:
        """All requests counted by cache outcome."""
        return sum(self.requests.values())

    @property
    def hit_ratio(self) -> float | None:
        """(HIT + STALE + REVALIDATED + COALESCED) / the cache lookups; None before any lookup.

        HEADs forwarded upstream (PASS) are neither hits nor misses of the cache and are left out.
        """
        total = self.total_requests - self.requests.get("PASS", 0.0)
        if total <= 0:
            return None
        return sum(self.requests.get(s, 0.0) for s in _HIT_STATES) / total

    @property
    def origin_offload(self) -> float | None:
        """1 - fetched/served bytes; None before any byte was served."""
        if self.bytes_served <= 0:
            return None
        return 1.0 - self.bytes_fetched / self.bytes_served

    def minus(self, before: EdgeCounters) -> EdgeCounters:
        """The counters' growth since `before` (counters reset by a restart count from zero)."""

        def delta(now: float, then: float) -> float:
            return now - then if now >= then else now

        keys = set(self.requests) | set(before.requests)
        return EdgeCounters(
            requests={k: delta(self.requests.get(k, 0.0), before.requests.get(k, 0.0)) for k in keys},
            upstream_fetches=delta(self.upstream_fetches, before.upstream_fetches),
            bytes_served=delta(self.bytes_served, before.bytes_served),
            bytes_fetched=delta(self.bytes_fetched, before.bytes_fetched),
        )


def _total(samples: Iterable[Sample], name: str) -> float:
    return sum(s.value for s in samples if s.name == name)


def edge_counters(samples: Iterable[Sample]) -> EdgeCounters:
    """Collect the edge metrics named in docs/architecture.md from parsed samples."""
    samples = list(samples)
    requests: dict[str, float] = {}
    for s in samples:
        if s.name == "cdn_edge_requests_total":
            state = (s.label("cache") or "UNKNOWN").upper()
            requests[state] = requests.get(state, 0.0) + s.value
    return EdgeCounters(
        requests=requests,
        upstream_fetches=_total(samples, "cdn_edge_upstream_fetches_total"),
        bytes_served=_total(samples, "cdn_edge_bytes_served_total"),
        bytes_fetched=_total(samples, "cdn_edge_bytes_fetched_total"),
    )
