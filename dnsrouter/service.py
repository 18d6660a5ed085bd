"""Assemble the DNS router from a topology and run it: responder, health poller, DNS and HTTP servers.

`build_responder(topology)` wires the pure parts; `DnsRouterService` owns the sockets and tasks
(`start()` / `stop()`, or `async with`), and reports the ports it actually bound (port 0 allowed).
In the main process of `--workers N` it also owns the links to the extra workers (`workers.WorkerPool`):
it pushes them every change of edge state its poller sees, and its /metrics adds their counters to its own.
An extra worker runs with `poll_health=False` and gets its edge states over its link (see cli.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from types import TracebackType

from cdn.hostport import HostPort
from cdn.topology import Topology
from dnsrouter.answer import Responder
from dnsrouter.geo import GeoReader, Locator, open_geo_database
from dnsrouter.health import HealthPoller
from dnsrouter.http import HttpApp, serve_http
from dnsrouter.metrics import Metrics
from dnsrouter.policy import Router
from dnsrouter.server import DEFAULT_IDLE_TIMEOUT, UdpEndpoint, start_dns
from dnsrouter.workers import WorkerPool
from dnsrouter.zone import ZoneData

__all__ = ["DnsRouterService", "build_responder"]


def build_responder(topology: Topology, *, geo: GeoReader | None = None) -> Responder:
    """The responder for `topology` (geo: an open MaxMind reader, or None for none)."""
    locator = Locator(topology.clients, fallback=topology.dns.fallback, geo=geo)
    router = Router(topology.edges, answer_count=topology.dns.answer_count)
    return Responder(ZoneData(topology), locator, router, Metrics())


class DnsRouterService:
    """The running DNS router: UDP+TCP DNS, the HTTP side port and the health poller."""

    def __init__(
        self, topology: Topology, *, listen: HostPort, http: HostPort | None, reuse_port: bool = False,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT, poll_health: bool = True, batched_udp: bool = True,
        workers: WorkerPool | None = None, health_tls: ssl.SSLContext | None = None,
    ) -> None:  # fmt: skip
        self.topology, self.listen, self.http = topology, listen, http
        self.reuse_port, self.idle_timeout, self.poll_health = reuse_port, idle_timeout, poll_health
        self.batched_udp, self.workers = batched_udp, workers
        db = topology.dns.geoip_db
        self.geo = open_geo_database(str(db)) if db is not None else None
        self.responder = build_responder(topology, geo=self.geo)
        self.poller = HealthPoller(
            topology.edges, topology.dns.health, self.responder.router, on_change=self._push_states,
            tls=health_tls,
        )  # fmt: skip
        collect = workers.collect if workers is not None else None
        self.app = HttpApp(topology, self.responder, self.poller.details, workers=collect)
        self._closers: list[UdpEndpoint | asyncio.Server] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.dns_port = 0
        self.http_port = 0

    async def start(self) -> None:
        """Bind every socket, open the workers' links and start polling; raise OSError when a port is taken."""
        udp, tcp = await start_dns(
            self.responder, self.listen.host, self.listen.port, reuse_port=self.reuse_port,
            idle_timeout=self.idle_timeout, batched_udp=self.batched_udp,
        )  # fmt: skip
        self._closers += [udp, tcp]
        self.dns_port = udp.get_extra_info("sockname")[1]
        if self.http is not None:
            server = await serve_http(self.app, self.http.host, self.http.port)
            self._closers.append(server)
            self.http_port = server.sockets[0].getsockname()[1]
        if self.workers is not None:
            await self.workers.start()
            self._push_states()  # the whole table at once: each worker waits for it before serving
        if self.poll_health:
            self._tasks.append(asyncio.create_task(self.poller.run(), name="health-poller"))

    def _push_states(self) -> None:
        if self.workers is not None:
            router = self.responder.router
            self.workers.push_states(router.states, router.generation)

    async def stop(self) -> None:
        """Close every socket and link, cancel the poller and close the geo database."""
        if self.workers is not None:
            await self.workers.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for closer in self._closers:
            closer.close()
            if isinstance(closer, asyncio.Server):
                await closer.wait_closed()
        self._closers.clear()
        self._tasks.clear()
        if self.geo is not None and hasattr(self.geo, "close"):
            self.geo.close()
            self.geo = None

    async def __aenter__(self) -> DnsRouterService:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
