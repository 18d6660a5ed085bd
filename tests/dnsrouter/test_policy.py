"""Choosing edges: nearest first, skip down and overloaded ones, degrade gracefully, cache per network."""

from __future__ import annotations

from collections import Counter

import pytest

from cdn.topology import Location, Topology
from dnsrouter.geo import Located, LocatedBy, Via
from dnsrouter.policy import EdgeState, Health, Router, choose

PARIS = Location(48.86, 2.35)
UP, DOWN = EdgeState(Health.UP), EdgeState(Health.DOWN)
FULL = EdgeState(Health.UP, overloaded=True)


def at(location: Location | None, network: str = "127.10.9.0/24") -> Located:
    by = LocatedBy.CLIENT_NETWORK if location else LocatedBy.FALLBACK
    return Located(location, by, Via.SOURCE, network, 24)


def names(edges: tuple[object, ...]) -> list[str]:
    return [e.name for e in edges]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("states", "chosen", "degraded"),
    [
        ({}, ["eu-west-1", "eu-west-shield"], None),
        ({"eu-west-1": DOWN}, ["eu-west-shield", "us-east-1"], None),
        ({"eu-west-1": FULL}, ["eu-west-shield", "us-east-1"], None),
        ({"eu-west-1": DOWN, "eu-west-shield": DOWN, "us-east-1": FULL}, ["ap-south-1"], None),
        (
            {"eu-west-1": FULL, "eu-west-shield": FULL, "us-east-1": FULL, "ap-south-1": DOWN},
            ["eu-west-1", "eu-west-shield"],
            "overloaded",
        ),  # fmt: skip
        (
            {n: DOWN for n in ("eu-west-1", "eu-west-shield", "us-east-1", "ap-south-1")},
            ["eu-west-1", "eu-west-shield"],
            "all-down",
        ),  # fmt: skip
    ],
)
def test_choose(
    demo_topology: Topology, states: dict[str, EdgeState], chosen: list[str], degraded: str | None
) -> None:
    decision = choose(demo_topology.edges, at(PARIS), states, 2)
    assert names(decision.chosen_v4) == chosen
    assert decision.chosen_v6 == ()
    assert decision.degraded == degraded
    assert [round(c.distance_km) for c in decision.candidates][:2] == [0, 0]


def test_spread_fallback_uses_every_edge(demo_topology: Topology) -> None:
    first = Counter(
        choose(demo_topology.edges, at(None, f"198.51.{i}.0/24"), {}, 1).chosen_v4[0].name for i in range(200)
    )
    assert set(first) == {e.name for e in demo_topology.edges}
    assert max(first.values()) < 100
    again = choose(demo_topology.edges, at(None, "198.51.7.0/24"), {}, 1)
    assert again == choose(demo_topology.edges, at(None, "198.51.7.0/24"), {}, 1)  # stable per network


def test_fallback_location_spreads_over_the_edges_near_it(demo_topology: Topology) -> None:
    frankfurt = Location(50.11, 8.68)
    first = Counter(
        choose(
            demo_topology.edges,
            Located(frankfurt, LocatedBy.FALLBACK, Via.SOURCE, f"198.51.{i}.0/24", 24),
            {},
            1,
        )
        .chosen_v4[0]
        .name
        for i in range(200)
    )
    # both eu-west edges share the unknown networks; far regions only take them when eu-west is down
    assert set(first) == {"eu-west-1", "eu-west-shield"}
    assert min(first.values()) > 50
    down = {"eu-west-1": DOWN, "eu-west-shield": DOWN}
    located = Located(frankfurt, LocatedBy.FALLBACK, Via.SOURCE, "198.51.7.0/24", 24)
    decision = choose(demo_topology.edges, located, down, 1)
    nearest_up = min((c for c in decision.candidates if c.state.usable), key=lambda c: c.distance_km)
    assert names(decision.chosen_v4) == [nearest_up.edge.name]  # beyond the spread: by distance


def test_router_caches_per_network_and_invalidates_on_change(demo_topology: Topology) -> None:
    router = Router(demo_topology.edges, answer_count=1)
    d1, fresh1 = router.decide(at(PARIS))
    d2, fresh2 = router.decide(at(PARIS))
    assert (fresh1, fresh2) == (True, False)
    assert d1 is d2
    assert router.set_state("eu-west-1", UP)  # unknown -> up: a change
    assert not router.set_state("eu-west-1", UP)  # no change: cache kept
    generation = router.generation
    _, fresh3 = router.decide(at(PARIS))
    assert fresh3
    router.set_state("eu-west-1", DOWN)
    assert router.generation == generation + 1
    d4, fresh4 = router.decide(at(PARIS))
    assert fresh4
    assert names(d4.chosen_v4) == ["eu-west-shield"]
