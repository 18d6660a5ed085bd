"""Counters the DNS router keeps and their Prometheus text rendering (exposition format 0.0.4).

Plain dict counters: incrementing one costs a dict update on the hot path, far less than a
prometheus_client metric with labels.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

import dns.rcode
import dns.rdatatype

from dnsrouter.policy import EdgeState, Health

__all__ = ["Metrics"]


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


class Metrics:
    """Queries by type and rcode, decisions by how the client was located, dropped messages."""

    def __init__(self) -> None:
        self.queries: Counter[tuple[int, int]] = Counter()
        self.decisions: Counter[tuple[str, str]] = Counter()
        self.dropped = 0
        self.decisions_computed = 0

    def render(self, states: Mapping[str, EdgeState], details: Mapping[str, Mapping[str, float]]) -> str:
        """The Prometheus text for these counters and the edges' health."""
        lines = [
            "# HELP cdn_dns_queries_total DNS queries answered, by query type and response code.",
            "# TYPE cdn_dns_queries_total counter",
        ]
        for (qtype, rcode), n in sorted(self.queries.items()):
            lines.append(
                f'cdn_dns_queries_total{{qtype="{_type_name(qtype)}",rcode="{_rcode_name(rcode)}"}} {n}'
            )
        lines += [
            "# HELP cdn_dns_decisions_total Routed answers, by how the client was located and from which address.",
            "# TYPE cdn_dns_decisions_total counter",
        ]
        for (by, via), n in sorted(self.decisions.items()):
            lines.append(f'cdn_dns_decisions_total{{located_by="{by}",via="{via}"}} {n}')
        lines += [
            "# HELP cdn_dns_decisions_computed_total Routing decisions computed (cache misses).",
            "# TYPE cdn_dns_decisions_computed_total counter",
            f"cdn_dns_decisions_computed_total {self.decisions_computed}",
            "# HELP cdn_dns_dropped_total Messages dropped without an answer (garbage, responses).",
            "# TYPE cdn_dns_dropped_total counter",
            f"cdn_dns_dropped_total {self.dropped}",
        ]
        lines += _edge_lines(states, details)
        return "\n".join(lines) + "\n"


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
