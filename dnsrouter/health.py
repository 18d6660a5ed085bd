"""Edge health: a pure hysteresis tracker and the async poller that feeds it.

Every `interval` seconds each edge's health URL is fetched (GET, JSON as in docs/architecture.md),
each fetch bounded by `timeout` in total. A killed edge is marked down after `fall` failed polls:
at worst `fall * interval + timeout` after it died (2.8 s with topology.yaml's 1.0 s, 0.8 s, fall 2;
about `fall * interval` when its port refuses connections, as a killed process's does).
`fall` consecutive failures mark an edge down and `rise` consecutive successes mark it up again; the
first result decides at once, so an edge that is not running at start-up is never routed to. An edge
whose reported load exceeds its capacity is *overloaded*: still up, but gets no new clients.
An `https://` health URL is always verified: against httpx's CA bundle, or the system CAs plus
`--health-ca` when the edges' certificates come from a private CA (`health_tls_context`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import httpx

from cdn.tls import TlsFileError, client_tls_context
from cdn.topology import Capacity, Edge, HealthSettings
from dnsrouter.errors import ConfigError
from dnsrouter.policy import EdgeState, Health, Router

__all__ = [
    "HealthPoller",
    "Probe",
    "Tracker",
    "health_tls_context",
    "is_overloaded",
    "observe",
    "parse_probe",
]

log = logging.getLogger("dnsrouter.health")


@dataclass(frozen=True, slots=True)
class Probe:
    """One poll's outcome: reachable and healthy or not, and the load it reported."""

    ok: bool
    inflight: int | None = None
    mbps: float | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Tracker:
    """Hysteresis state of one edge: its health and the current run of equal results."""

    health: Health = Health.UNKNOWN
    successes: int = 0
    failures: int = 0
    overloaded: bool = False
    last: Probe | None = None

    @property
    def state(self) -> EdgeState:
        return EdgeState(self.health, self.overloaded and self.health is not Health.DOWN)


def parse_probe(status: int, body: bytes) -> Probe:
    """A Probe from the health response: HTTP 200 with a JSON object whose status is "ok"."""
    if status != 200:
        return Probe(False, error=f"HTTP {status}")
    try:
        data = json.loads(body)
    except ValueError:
        return Probe(False, error="the body is not JSON")
    if not isinstance(data, dict) or data.get("status", "ok") != "ok":
        return Probe(False, error=f"status {data.get('status') if isinstance(data, dict) else data!r}")
    inflight = data.get("inflight")
    bps = data.get("bytes_per_second")
    return Probe(
        True,
        inflight=inflight if isinstance(inflight, int) and not isinstance(inflight, bool) else None,
        mbps=bps * 8 / 1e6 if isinstance(bps, int | float) and not isinstance(bps, bool) else None,
    )


def is_overloaded(probe: Probe, capacity: Capacity) -> bool:
    """Whether the reported load exceeds the edge's capacity (inflight requests or Mbit/s)."""
    if capacity.inflight is not None and probe.inflight is not None and probe.inflight > capacity.inflight:
        return True
    return capacity.mbps is not None and probe.mbps is not None and probe.mbps > capacity.mbps


def observe(tracker: Tracker, probe: Probe, settings: HealthSettings, capacity: Capacity) -> Tracker:
    """The tracker after one more probe (k failures to go down, m successes to come up)."""
    if probe.ok:
        successes, failures = tracker.successes + 1, 0
        up = tracker.health is Health.UP or tracker.health is Health.UNKNOWN or successes >= settings.rise
        health = Health.UP if up else Health.DOWN
    else:
        successes, failures = 0, tracker.failures + 1
        down = tracker.health is not Health.UP or failures >= settings.fall
        health = Health.DOWN if down else Health.UP
    overloaded = is_overloaded(probe, capacity) if probe.ok else tracker.overloaded
    return Tracker(health, successes, failures, overloaded, probe)


def health_tls_context(ca_file: Path) -> ssl.SSLContext:
    """A TLS client context for https health URLs (`cdn.tls`): the system CAs plus `--health-ca`.

    Certificate and host-name checks stay on. Raise ConfigError for a bad file.
    """
    try:
        return client_tls_context(ca_file, option="--health-ca")
    except TlsFileError as exc:
        raise ConfigError(str(exc)) from None


class HealthPoller:
    """Polls every edge's health URL on a fixed schedule and tells the router about changes.

    `tls`: the context https health URLs are verified with (None: httpx's default, certifi's CAs).
    """

    def __init__(
        self, edges: Iterable[Edge], settings: HealthSettings, router: Router,
        *, on_change: Callable[[], None] | None = None, tls: ssl.SSLContext | None = None,
    ) -> None:  # fmt: skip
        self.edges = tuple(edges)
        self.settings = settings
        self.router = router
        self.tls = tls
        self.on_change = on_change  # after any edge's state changed: the main process tells its workers
        self.trackers: dict[str, Tracker] = {e.name: Tracker() for e in self.edges}
        self.polls = 0

    def client(self) -> httpx.AsyncClient:
        """The HTTP client of the polls: kept-alive connections to every edge, TLS verified."""
        timeout = httpx.Timeout(self.settings.timeout)
        limits = httpx.Limits(max_connections=max(4, len(self.edges)), keepalive_expiry=30)
        verify: ssl.SSLContext | bool = self.tls if self.tls is not None else True
        return httpx.AsyncClient(timeout=timeout, limits=limits, verify=verify, trust_env=False)

    async def run(self) -> None:
        """Poll forever (until cancelled), one round every `interval` seconds."""
        async with self.client() as client:
            deadline = time.monotonic()
            while True:
                await self.poll_once(client)
                deadline = max(deadline + self.settings.interval, time.monotonic())
                await asyncio.sleep(deadline - time.monotonic())

    async def poll_once(self, client: httpx.AsyncClient) -> None:
        """Poll every edge once, concurrently, applying each result as soon as it is in.

        A dead edge's result (connection refused, at once) is not held back by a slow edge's timeout.
        """

        async def one(edge: Edge) -> None:
            self.apply(edge, await self._probe(client, edge, self.settings.timeout))

        await asyncio.gather(*(one(e) for e in self.edges))
        self.polls += 1

    def apply(self, edge: Edge, probe: Probe) -> None:
        """Feed one probe to the edge's tracker; log and tell the router when its state changes."""
        before = self.trackers[edge.name]
        after = observe(before, probe, self.settings, edge.capacity)
        self.trackers[edge.name] = after
        if self.router.set_state(edge.name, after.state):
            if self.on_change is not None:
                self.on_change()
            log.info(
                "edge %s is now %s%s (%s)", edge.name, after.health.value,
                ", overloaded" if after.state.overloaded else "", probe.error or "health check passed",
            )  # fmt: skip

    @staticmethod
    async def _probe(client: httpx.AsyncClient, edge: Edge, within: float) -> Probe:
        """GET the health URL; the whole exchange is bounded by `within` s (httpx's own timeouts are
        per phase and per read, so a server trickling bytes would otherwise hold the poll round)."""
        try:
            async with asyncio.timeout(within):
                response = await client.get(edge.health_url)
        except TimeoutError:
            return Probe(False, error=f"no answer within {within:g} s")
        except httpx.HTTPError as exc:
            return Probe(False, error=f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        return parse_probe(response.status_code, response.content)

    def details(self) -> dict[str, dict[str, float]]:
        """Last reported load per edge, for /metrics and /explain."""
        out: dict[str, dict[str, float]] = {}
        for name, t in self.trackers.items():
            if t.last is not None and t.last.ok:
                out[name] = {
                    k: v for k, v in (("inflight", t.last.inflight), ("mbps", t.last.mbps)) if v is not None
                }
        return out
