"""Choose the edges for a located client: the nearest that are up and not overloaded.

Pure: the router holds the health snapshot it is told about and a decision cache keyed by client
network; any change of an edge's state bumps `generation` and empties the cache, so cached answers
never outlive the health they were computed from.

Goals / plan / caveats:
- nearest first by great-circle distance; `answer_count` edges of the query's address family;
- overloaded edges (alive, above capacity) get no new clients unless no edge has room: then the
  nearest live ones are used; if every edge is down, the nearest anyway (and the caller logs it);
- unknown clients never pile on one central edge: with `fallback: spread` they are ordered by
  rendezvous hashing of their /24 over all edges; with a fallback location, over every edge within
  FALLBACK_SPREAD_KM of the edge nearest that location (the rest follow by distance), so each
  unknown network is stable on one edge while the networks spread over the edges near the fallback.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from cdn.topology import Edge
from dnsrouter.geo import Located, LocatedBy, great_circle_km

__all__ = ["FALLBACK_SPREAD_KM", "Candidate", "Decision", "EdgeState", "Health", "Router", "choose"]

FALLBACK_SPREAD_KM = 2000.0  # unknown clients spread over the edges this close to the nearest one


class Health(StrEnum):
    """An edge's state as seen by the poller."""

    UNKNOWN = "unknown"  # not polled yet: routed to, like up
    UP = "up"
    DOWN = "down"


@dataclass(frozen=True, slots=True)
class EdgeState:
    """What routing needs to know about an edge right now."""

    health: Health = Health.UNKNOWN
    overloaded: bool = False

    @property
    def usable(self) -> bool:
        return self.health is not Health.DOWN


@dataclass(frozen=True, slots=True)
class Candidate:
    """One edge considered for a client, with its distance and state."""

    edge: Edge
    distance_km: float
    state: EdgeState


@dataclass(frozen=True, slots=True)
class Decision:
    """The routing decision for one client network: ranked candidates and the chosen edges per family."""

    located: Located
    candidates: tuple[Candidate, ...]
    chosen_v4: tuple[Edge, ...]
    chosen_v6: tuple[Edge, ...]
    degraded: str | None  # None, "overloaded" (all with room were full) or "all-down"

    def chosen(self, family: int) -> tuple[Edge, ...]:
        return self.chosen_v4 if family == 4 else self.chosen_v6


def _rank(edges: Iterable[Edge], located: Located, states: dict[str, EdgeState]) -> list[Candidate]:
    where = located.location
    cands = [
        Candidate(e, great_circle_km(where, e.location) if where else 0.0, states.get(e.name, EdgeState()))
        for e in edges
    ]
    if where is None:
        return sorted(cands, key=lambda c: _spread_key(located.network, c.edge.name))
    by_distance = sorted(cands, key=lambda c: (round(c.distance_km, 3), c.edge.name))
    if located.by is not LocatedBy.FALLBACK or not by_distance:
        return by_distance
    limit = by_distance[0].distance_km + FALLBACK_SPREAD_KM
    near = [c for c in by_distance if c.distance_km <= limit]
    near.sort(key=lambda c: _spread_key(located.network, c.edge.name))
    return near + by_distance[len(near) :]


def _spread_key(network: str, name: str) -> bytes:
    return hashlib.blake2b(f"{network}|{name}".encode(), digest_size=8).digest()


def _pick(cands: list[Candidate], count: int) -> tuple[tuple[Edge, ...], str | None]:
    good = [c.edge for c in cands if c.state.usable and not c.state.overloaded]
    if good:
        return tuple(good[:count]), None
    alive = [c.edge for c in cands if c.state.usable]
    if alive:
        return tuple(alive[:count]), "overloaded"
    return tuple(c.edge for c in cands[:count]), ("all-down" if cands else None)


def choose(edges: Iterable[Edge], located: Located, states: dict[str, EdgeState], count: int) -> Decision:
    """Rank every edge for `located` and choose `count` per address family."""
    cands = _rank(edges, located, states)
    v4, degraded4 = _pick([c for c in cands if not c.edge.is_ipv6], count)
    v6, degraded6 = _pick([c for c in cands if c.edge.is_ipv6], count)
    return Decision(located, tuple(cands), v4, v6, degraded4 or degraded6)


class Router:
    """Edge health snapshot plus a decision cache per client network, invalidated on every change."""

    def __init__(self, edges: Iterable[Edge], *, answer_count: int, max_cached: int = 65536) -> None:
        self.edges = tuple(edges)
        self.answer_count = answer_count
        self.states: dict[str, EdgeState] = {e.name: EdgeState() for e in self.edges}
        self.generation = 0
        self._cache: dict[tuple[str, str], Decision] = {}
        self._max_cached = max_cached

    def set_state(self, name: str, state: EdgeState) -> bool:
        """Record an edge's state; return True (and drop cached decisions) when it changed."""
        if self.states.get(name) == state:
            return False
        self.states[name] = state
        self.generation += 1
        self._cache.clear()
        return True

    def decide(self, located: Located) -> tuple[Decision, bool]:
        """The decision for `located`, and whether it was freshly computed (not from the cache)."""
        cached = self._cache.get(located.key)
        if cached is not None and cached.located == located:
            return cached, False
        if len(self._cache) >= self._max_cached:
            self._cache.clear()
        decision = choose(self.edges, located, self.states, self.answer_count)
        self._cache[located.key] = decision
        return decision, True
