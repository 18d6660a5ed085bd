"""Counters: snapshots, sums, their JSON on the workers' link, and the Prometheus text of the whole server."""

from __future__ import annotations

import pytest

from cdn.promtext import parse_prometheus_text
from dnsrouter.metrics import NO_WORKERS, Counters, Metrics, WorkerCounters, render
from dnsrouter.policy import EdgeState, Health

A, AAAA, NOERROR, NXDOMAIN = 1, 28, 0, 3
STATES = {"e1": EdgeState(Health.UP, False), "e2": EdgeState(Health.DOWN, False)}
DETAILS = {"e1": {"inflight": 5.0, "mbps": 1.5}}


def counters(**queries: int) -> Counters:
    return Counters(
        queries={(A, NOERROR): queries.get("a", 0), (AAAA, NXDOMAIN): queries.get("nx", 0)},
        decisions={("fallback", "ecs"): queries.get("a", 0)},
        decisions_computed=1,
        dropped=queries.get("dropped", 0),
    )


def values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, s.labels): s.value for s in parse_prometheus_text(text)}


def test_snapshot_is_a_frozen_copy() -> None:
    m = Metrics()
    m.queries[A, NOERROR] += 2
    m.decisions["client-network", "ecs"] += 1
    snap = m.snapshot()
    m.queries[A, NOERROR] += 1
    m.dropped += 1
    assert snap == Counters(queries={(A, NOERROR): 2}, decisions={("client-network", "ecs"): 1})


def test_counters_add_key_by_key() -> None:
    total = counters(a=3, dropped=1) + Counters(queries={(A, NOERROR): 2, (A, 5): 1}, dropped=4)
    assert total.queries == {(A, NOERROR): 5, (AAAA, NXDOMAIN): 0, (A, 5): 1}
    assert total.decisions == {("fallback", "ecs"): 3}
    assert (total.decisions_computed, total.dropped) == (1, 5)
    assert sum([counters(a=1), counters(a=2)], Counters()) == counters(a=1) + counters(a=2)


def test_json_round_trip() -> None:
    original = counters(a=7, nx=2, dropped=3)
    assert Counters.from_json(original.to_json()) == original
    assert Counters.from_json(Counters().to_json()) == Counters()


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"not json", "Expecting value"),
        (b"[]", "expected a JSON object"),
        (b'{"queries": {}, "decisions": []}', "queries must be a list"),
        (b'{"queries": [[1, 0]], "decisions": []}', "queries must be a list"),
        (
            b'{"queries": [[1, 0, "3"]], "decisions": [], "decisions_computed": 0, "dropped": 0}',
            "expected an integer",
        ),
        (
            b'{"queries": [], "decisions": [[1, "ecs", 1]], "decisions_computed": 0, "dropped": 0}',
            "expected a string",
        ),
        (b'{"queries": [], "decisions": [], "decisions_computed": true, "dropped": 0}', "decisions_computed"),
        (b'{"queries": [], "decisions": [], "decisions_computed": 0}', "dropped holds None"),
        (b'{"queries": [], "decisions": [], "decisions_computed": 0, "dropped": -1}', "cannot be negative"),
    ],
)
def test_from_json_rejects_what_it_did_not_write(body: bytes, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Counters.from_json(body)


def test_worker_counters_check_answered() -> None:
    with pytest.raises(ValueError, match="answered=3"):
        WorkerCounters(Counters(), 2, 3)


def test_render_one_process() -> None:
    text = render(counters(a=2, nx=1, dropped=1), STATES, DETAILS)
    assert render(counters(a=2, nx=1, dropped=1), STATES, DETAILS, NO_WORKERS) == text
    got = values(text)
    assert got["cdn_dns_queries_total", (("qtype", "A"), ("rcode", "NOERROR"))] == 2
    assert got["cdn_dns_queries_total", (("qtype", "AAAA"), ("rcode", "NXDOMAIN"))] == 1
    assert got["cdn_dns_decisions_total", (("located_by", "fallback"), ("via", "ecs"))] == 2
    assert got["cdn_dns_dropped_total", ()] == 1
    assert (got["cdn_dns_workers", ()], got["cdn_dns_workers_up", ()]) == (1, 1)
    assert "# TYPE cdn_dns_workers_up gauge" in text


def test_render_sums_the_workers_counters_but_not_the_edges() -> None:
    others = WorkerCounters(counters(a=10, nx=4) + counters(a=1), workers=2, answered=1)
    got = values(render(counters(a=2, dropped=1), STATES, DETAILS, others))
    assert got["cdn_dns_queries_total", (("qtype", "A"), ("rcode", "NOERROR"))] == 13
    assert got["cdn_dns_queries_total", (("qtype", "AAAA"), ("rcode", "NXDOMAIN"))] == 4
    assert got["cdn_dns_decisions_total", (("located_by", "fallback"), ("via", "ecs"))] == 13
    assert got["cdn_dns_decisions_computed_total", ()] == 3
    assert got["cdn_dns_dropped_total", ()] == 1
    assert (got["cdn_dns_workers", ()], got["cdn_dns_workers_up", ()]) == (3, 2)
    # the edges' health is this process's view, reported once
    assert got["cdn_dns_edge_up", (("edge", "e1"),)] == 1
    assert got["cdn_dns_edge_up", (("edge", "e2"),)] == 0
    assert got["cdn_dns_edge_inflight", (("edge", "e1"),)] == 5
