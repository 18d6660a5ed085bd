"""Counters of one edge and their Prometheus text rendering, cheap enough for the hit path.

The hit path only increments plain ints and drops one latency into a bucket (`bisect`); the text
format is produced on demand by `render` when `/metrics` is scraped. `RateMeter` turns the
bytes-served counter into the bytes/s figure `/healthz` reports to the DNS router.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass
from typing import Literal, get_args

from edge.store import StoreStats

__all__ = [
    "CACHE_STATUSES",
    "HIT_STATUSES",
    "CacheStatus",
    "LATENCY_BUCKETS",
    "Metrics",
    "RateMeter",
    "TlsCounters",
    "UpstreamCounters",
]

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


# The X-Cache value of a response (a Literal, not an Enum: it is hashed on every hit). PASS is a
# HEAD relayed upstream without touching the cache (Varnish's and Fastly's word): not a lookup.
CacheStatus = Literal["HIT", "MISS", "STALE", "REVALIDATED", "COALESCED", "PASS"]
CACHE_STATUSES: tuple[CacheStatus, ...] = get_args(CacheStatus)
# Answered from the cache or from a fetch another request started; MISS is the only other lookup.
HIT_STATUSES: tuple[CacheStatus, ...] = ("HIT", "STALE", "REVALIDATED", "COALESCED")


@dataclass(frozen=True, slots=True, kw_only=True)
class UpstreamCounters:
    """Upstream-side figures gathered when rendering."""

    fetches: int
    bytes_fetched: int
    not_modified: int
    failures: int
    aborted: int
    fallbacks: int
    coalesced_probes: int  # HEADs that shared another's upstream HEAD
    spooled: int = 0  # fills of large objects that went to a spool file
    spooling: int = 0  # spool files in flight (neither committed nor deleted)


@dataclass(frozen=True, slots=True)
class TlsCounters:
    """Handshakes on the TLS viewer port: completed (= TLS connections) and failed (dropped)."""

    handshakes: int
    failures: int


class RateMeter:
    """Bytes per second over the last few one-second samples of a monotonically growing counter."""

    def __init__(self, window: int = 5) -> None:
        self._samples: deque[tuple[float, int]] = deque(maxlen=window + 1)

    def sample(self, now: float, total: int) -> None:
        """Record the counter's value at `now` (call about once a second)."""
        self._samples.append((now, total))

    def rate(self) -> float:
        """Average bytes/s across the window; 0 until two samples exist."""
        if len(self._samples) < 2:
            return 0.0
        (t0, b0), (t1, b1) = self._samples[0], self._samples[-1]
        return (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0


class Metrics:
    """Request counters, bytes served, in-flight gauge and the latency histogram."""

    def __init__(self) -> None:
        self.requests: dict[str, int] = dict.fromkeys(CACHE_STATUSES, 0)
        self.errors: dict[int, int] = {}
        self.bytes_served = 0
        self.disk_streamed = 0  # body bytes of large entries sent block by block from disk
        self.inflight = 0
        self.coalesced_waiters = 0
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0

    def served(self, status: CacheStatus, nbytes: int, seconds: float) -> None:
        """Count one proxied response."""
        self.requests[status] += 1
        self.bytes_served += nbytes
        self.buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum += seconds

    def hit_ratio(self) -> float | None:
        """Hits / (hits + misses); None before any. PASS (a relayed HEAD) is neither, so left out."""
        hits = sum(self.requests[s] for s in HIT_STATUSES)
        lookups = hits + self.requests["MISS"]
        return hits / lookups if lookups else None

    def error(self, status: int) -> None:
        """Count one error response the edge produced itself (4xx/5xx)."""
        self.errors[status] = self.errors.get(status, 0) + 1

    def render(self, store: StoreStats, upstream: UpstreamCounters, tls: TlsCounters | None = None) -> str:
        """The Prometheus text exposition (format 0.0.4); the TLS families only when `tls` is given."""
        out: list[str] = []
        _family(out, "cdn_edge_requests_total", "counter", "Proxied responses by cache status.")
        out += [f'cdn_edge_requests_total{{cache="{s}"}} {n}' for s, n in self.requests.items()]
        _family(out, "cdn_edge_errors_total", "counter", "Error responses produced by the edge, by status.")
        out += [f'cdn_edge_errors_total{{status="{s}"}} {n}' for s, n in sorted(self.errors.items())]
        for name, kind, doc, value in (
            (
                "cdn_edge_upstream_fetches_total",
                "counter",
                "Requests sent to the parent or origin.",
                upstream.fetches,
            ),
            (
                "cdn_edge_upstream_not_modified_total",
                "counter",
                "Revalidations answered 304.",
                upstream.not_modified,
            ),
            (
                "cdn_edge_upstream_failures_total",
                "counter",
                "Upstream exchanges that failed.",
                upstream.failures,
            ),
            ("cdn_edge_upstream_aborted_total", "counter", "Fills broken mid-body.", upstream.aborted),
            (
                "cdn_edge_parent_fallbacks_total",
                "counter",
                "Times the origin replaced a failed parent.",
                upstream.fallbacks,
            ),
            ("cdn_edge_bytes_served_total", "counter", "Body bytes sent to clients.", self.bytes_served),
            (
                "cdn_edge_bytes_fetched_total",
                "counter",
                "Body bytes received from upstream.",
                upstream.bytes_fetched,
            ),
            (
                "cdn_edge_coalesced_waiters_total",
                "counter",
                "Requests that joined another's fill.",
                self.coalesced_waiters,
            ),
            (
                "cdn_edge_coalesced_probes_total",
                "counter",
                "HEADs that shared another's upstream HEAD (PASS).",
                upstream.coalesced_probes,
            ),
            (
                "cdn_edge_spooled_fills_total",
                "counter",
                "Fills of large objects spooled to disk instead of memory.",
                upstream.spooled,
            ),
            (
                "cdn_edge_spool_files",
                "gauge",
                "Spool files of large fills in flight (not yet committed or deleted).",
                upstream.spooling,
            ),
            (
                "cdn_edge_disk_streamed_bytes_total",
                "counter",
                "Body bytes of large entries streamed from disk block by block.",
                self.disk_streamed,
            ),
            ("cdn_edge_inflight_requests", "gauge", "Requests being answered now.", self.inflight),
            ("cdn_edge_cache_bytes", "gauge", "Bytes in the disk cache.", store.bytes),
            ("cdn_edge_cache_capacity_bytes", "gauge", "Capacity of the disk cache.", store.capacity),
            ("cdn_edge_cache_entries", "gauge", "Entries in the disk cache.", store.entries),
            ("cdn_edge_memory_cache_bytes", "gauge", "Bytes in the memory tier.", store.memory_bytes),
            ("cdn_edge_memory_cache_entries", "gauge", "Entries in the memory tier.", store.memory_entries),
            (
                "cdn_edge_cache_evictions_total",
                "counter",
                "Entries evicted from disk (LRU).",
                store.evictions,
            ),
            (
                "cdn_edge_memory_evictions_total",
                "counter",
                "Entries evicted from memory.",
                store.memory_evictions,
            ),
            (
                "cdn_edge_cache_corrupt_total",
                "counter",
                "Disk entries that failed verification.",
                store.corrupt,
            ),
            (
                "cdn_edge_cache_varied_entries",
                "gauge",
                "Entries stored with Vary (each variant of a URL counts once).",
                store.varied_entries,
            ),
            (
                "cdn_edge_cache_extra_variants",
                "gauge",
                "Variants stored beyond the first of their URL.",
                store.extra_variants,
            ),
            (
                "cdn_edge_cache_variant_evictions_total",
                "counter",
                "Variants evicted because their URL already had --max-variants.",
                store.variant_evictions,
            ),
        ):
            _family(out, name, kind, doc)
            out.append(f"{name} {value}")
        if tls is not None:
            _render_tls(out, tls)
        self._render_histogram(out)
        return "\n".join(out) + "\n"

    def _render_histogram(self, out: list[str]) -> None:
        name = "cdn_edge_request_duration_seconds"
        _family(out, name, "histogram", "Time from request parsed to response handed to the socket.")
        total = 0
        for bound, count in zip((*LATENCY_BUCKETS, float("inf")), self.buckets, strict=True):
            total += count
            le = "+Inf" if bound == float("inf") else repr(bound)
            out.append(f'{name}_bucket{{le="{le}"}} {total}')
        out.append(f"{name}_sum {self.latency_sum}")
        out.append(f"{name}_count {total}")


def _render_tls(out: list[str], tls: TlsCounters) -> None:
    for name, doc, value in (
        ("cdn_edge_tls_handshakes_total", "TLS handshakes completed (TLS connections).", tls.handshakes),
        (
            "cdn_edge_tls_handshake_failures_total",
            "Clients dropped in the TLS handshake (plain HTTP, resets, refused certificates, timeouts).",
            tls.failures,
        ),
    ):
        _family(out, name, "counter", doc)
        out.append(f"{name} {value}")


def _family(out: list[str], name: str, kind: str, doc: str) -> None:
    out.append(f"# HELP {name} {doc}")
    out.append(f"# TYPE {name} {kind}")
