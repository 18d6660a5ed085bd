"""Counters the DNS router keeps, their snapshots, and their Prometheus text rendering (format 0.0.4).

Plain dict counters: incrementing one costs a dict update on the hot path, far less than a
prometheus_client metric with labels. `Metrics.snapshot()` freezes them into `Counters`, which add up
(the worker processes' counters are summed into the main process's /metrics) and travel as JSON.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import dns.rcode
import dns.rdatatype

from dnsrouter.policy import EdgeState, Health

__all__ = ["NO_WORKERS", "Counters", "Metrics", "WorkerCounters", "render"]

_K = TypeVar("_K")


def _type_name(qtype: int) -> str:
    try:
        return dns.rdatatype.to_text(dns.rdatatype.RdataType.make(qtype))
    except ValueError:  # pragma: no cover - to_text falls back to TYPEnnn
        return f"TYPE{qtype}"


def _rcode_name(rcode: int) -> str:
    try:
        return dns.rcode.to_text(dns.rcode.Rcode(rcode))
    except ValueError:
        return f"RCODE{rcode}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Counters:
    """One process's counters at one moment, or the sum of several processes' counters."""

    queries: Mapping[tuple[int, int], int] = field(default_factory=dict)  # (qtype, rcode) -> n
    decisions: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (located_by, via) -> n
    decisions_computed: int = 0
    dropped: int = 0

    def __post_init__(self) -> None:
        counts = (*self.queries.values(), *self.decisions.values(), self.decisions_computed, self.dropped)
        if any(n < 0 for n in counts):
            raise ValueError(f"counters cannot be negative: {self!r}")

    def __add__(self, other: Counters) -> Counters:
        return Counters(
            queries=_summed(self.queries, other.queries),
            decisions=_summed(self.decisions, other.decisions),
            decisions_computed=self.decisions_computed + other.decisions_computed,
            dropped=self.dropped + other.dropped,
        )

    def to_json(self) -> bytes:
        """The counters as compact JSON (keys flattened into lists, since JSON keys are strings)."""
        data = {
            "queries": [[qtype, rcode, n] for (qtype, rcode), n in self.queries.items()],
            "decisions": [[by, via, n] for (by, via), n in self.decisions.items()],
            "decisions_computed": self.decisions_computed,
            "dropped": self.dropped,
        }
        return json.dumps(data, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, body: bytes) -> Counters:
        """Counters from `to_json` output; raise ValueError naming the part that is not as expected."""
        data = json.loads(body)
        if not isinstance(data, dict):
            raise ValueError(f"counters: expected a JSON object, got {type(data).__name__}")
        queries = {
            (_int(q, "queries"), _int(r, "queries")): _int(n, "queries") for q, r, n in _rows(data, "queries")
        }
        decisions = {
            (_str(b, "decisions"), _str(v, "decisions")): _int(n, "decisions")
            for b, v, n in _rows(data, "decisions")
        }
        return cls(
            queries=queries,
            decisions=decisions,
            decisions_computed=_int(data.get("decisions_computed"), "decisions_computed"),
            dropped=_int(data.get("dropped"), "dropped"),
        )


def _summed(a: Mapping[_K, int], b: Mapping[_K, int]) -> dict[_K, int]:
    out = dict(a)
    for key, n in b.items():
        out[key] = out.get(key, 0) + n
    return out


def _rows(data: Mapping[str, Any], key: str) -> list[list[Any]]:
    rows = data.get(key)
    if not isinstance(rows, list) or not all(isinstance(r, list) and len(r) == 3 for r in rows):
        raise ValueError(f"counters: {key} must be a list of [key, key, count] triples, got {rows!r:.80}")
    return rows


def _int(value: Any, key: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"counters: {key} holds {value!r:.40}, expected an integer")
    return value


def _str(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"counters: {key} holds {value!r:.40}, expected a string")
    return value


@dataclass(frozen=True, slots=True)
class WorkerCounters:
    """The extra worker processes' counters as collected for one scrape, and how many answered.

    `counters` sums the fresh counters of those that answered and the last known counters of those that
    did not, so the totals never go backwards (Prometheus would read a drop as a counter reset).
    """

    counters: Counters
    workers: int  # extra worker processes started (not counting the main process)
    answered: int  # how many of them answered this scrape in time

    def __post_init__(self) -> None:
        if not 0 <= self.answered <= self.workers:
            raise ValueError(f"answered={self.answered} must be between 0 and workers={self.workers}")


NO_WORKERS = WorkerCounters(Counters(), 0, 0)


class Metrics:
    """Queries by type and rcode, decisions by how the client was located, dropped messages."""

    def __init__(self) -> None:
        self.queries: Counter[tuple[int, int]] = Counter()
        self.decisions: Counter[tuple[str, str]] = Counter()
        self.dropped = 0
        self.decisions_computed = 0

    def snapshot(self) -> Counters:
        """A frozen copy of the counters as they are now."""
        return Counters(
            queries=dict(self.queries),
            decisions=dict(self.decisions),
            decisions_computed=self.decisions_computed,
            dropped=self.dropped,
        )


def render(
    counters: Counters,
    states: Mapping[str, EdgeState],
    details: Mapping[str, Mapping[str, float]],
    workers: WorkerCounters = NO_WORKERS,
) -> str:
    """The Prometheus text for the whole server: `counters` (this process's) plus the workers' counters,
    the workers' liveness, and the edges' health as this process sees it (not summed)."""
    lines = (
        _counter_lines(counters + workers.counters) + _worker_lines(workers) + _edge_lines(states, details)
    )
    return "\n".join(lines) + "\n"


def _counter_lines(total: Counters) -> list[str]:
    lines = [
        "# HELP cdn_dns_queries_total DNS queries answered, by query type and response code.",
        "# TYPE cdn_dns_queries_total counter",
    ]
    for (qtype, rcode), n in sorted(total.queries.items()):
        lines.append(f'cdn_dns_queries_total{{qtype="{_type_name(qtype)}",rcode="{_rcode_name(rcode)}"}} {n}')
    lines += [
        "# HELP cdn_dns_decisions_total Routed answers, by how the client was located and from which address.",
        "# TYPE cdn_dns_decisions_total counter",
    ]
    for (by, via), n in sorted(total.decisions.items()):
        lines.append(f'cdn_dns_decisions_total{{located_by="{by}",via="{via}"}} {n}')
    return lines + [
        "# HELP cdn_dns_decisions_computed_total Routing decisions computed (cache misses).",
        "# TYPE cdn_dns_decisions_computed_total counter",
        f"cdn_dns_decisions_computed_total {total.decisions_computed}",
        "# HELP cdn_dns_dropped_total Messages dropped without an answer (garbage, responses).",
        "# TYPE cdn_dns_dropped_total counter",
        f"cdn_dns_dropped_total {total.dropped}",
    ]


def _worker_lines(workers: WorkerCounters) -> list[str]:
    return [
        "# HELP cdn_dns_workers Processes serving the DNS port (--workers).",
        "# TYPE cdn_dns_workers gauge",
        f"cdn_dns_workers {1 + workers.workers}",
        "# HELP cdn_dns_workers_up Processes whose counters are fresh in this scrape (the others: last known).",
        "# TYPE cdn_dns_workers_up gauge",
        f"cdn_dns_workers_up {1 + workers.answered}",
    ]


def _edge_lines(states: Mapping[str, EdgeState], details: Mapping[str, Mapping[str, float]]) -> list[str]:
    lines = [
        "# HELP cdn_dns_edge_up Edge health as polled: 1 up (or not polled yet), 0 down.",
        "# TYPE cdn_dns_edge_up gauge",
    ]
    lines += [f'cdn_dns_edge_up{{edge="{n}"}} {int(s.health is not Health.DOWN)}' for n, s in states.items()]
    lines += [
        "# HELP cdn_dns_edge_overloaded 1 when the edge reports load above its capacity.",
        "# TYPE cdn_dns_edge_overloaded gauge",
    ]
    lines += [f'cdn_dns_edge_overloaded{{edge="{n}"}} {int(s.overloaded)}' for n, s in states.items()]
    for key, help_text in (("inflight", "Requests in flight"), ("mbps", "Megabits per second served")):
        lines += [
            f"# HELP cdn_dns_edge_{key} {help_text}, as last reported.",
            f"# TYPE cdn_dns_edge_{key} gauge",
        ]
        lines += [f'cdn_dns_edge_{key}{{edge="{n}"}} {d[key]:g}' for n, d in details.items() if key in d]
    return lines
