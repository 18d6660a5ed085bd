"""`cdn loadtest`: N simulated players in one asyncio (uvloop) process against the edges.

Each player picks a video by Zipf popularity, finds its edge (round robin over `--edge` URLs, or
the DNS router from a client address in its region with `--topology`), fetches the manifest, then
chunks at playback pace with a throughput ABR (`cdn.loadmodel`). A recorder keeps per-second
figures; the edges' /metrics are read before and after, so hit ratio and origin offload are deltas
over the run. Every loop is bounded by the run's deadline. Reporting lives in `cdn.loadreport`.
https edges get TLS from one client context per run, checked against the name a player would use.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import random
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cdn.hostport import HostPort
from cdn.loadclient import Connection, HTTPClientError, Response
from cdn.loadmodel import (
    PlayerState,
    VideoPlan,
    after_fetch,
    choose_rendition,
    drained,
    pick,
    video_plan,
    wait_time,
    zipf_cdf,
)
from cdn.promtext import EdgeCounters, PromTextError, edge_counters, parse_prometheus_text

__all__ = [
    "LoadConfig",
    "Recorder",
    "Target",
    "client_context",
    "edge_target",
    "fetch_once",
    "host_header",
    "run_load",
]

_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class Target:
    """Where one player sends its requests: an edge's host and port, from a client source address.

    `tls_name` is set for https: the name sent as SNI and checked in the edge's certificate.
    """

    host: str
    port: int
    source: str | None = None
    tls_name: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadConfig:
    """One load test run."""

    edges: tuple[str, ...]  # base URLs (http:// or https://) of the edges whose /metrics are read
    edge_names: tuple[str, ...] = ()  # their names, for the report (same order)
    players: int
    duration: float
    videos: tuple[str, ...]
    zipf: float = 1.0
    ramp: float = 5.0
    speed: float = 1.0
    target_buffer: float = 8.0
    request_timeout: float = 10.0
    host_header: str = "video.cdn.test"
    seed: int = 1
    dns: tuple[str, int] | None = None  # the router, when players resolve their edge through DNS
    dns_name: str = "video.cdn.test"
    client_networks: tuple[str, ...] = ()  # one per region; players take source addresses in them
    ca: Path | None = None  # a PEM CA bundle trusted for https edges, besides the system CAs

    def __post_init__(self) -> None:
        if not 1 <= self.players <= 100_000:
            raise ValueError(f"--players {self.players}: expected 1..100000")
        if not 0 < self.duration <= 24 * 3600:
            raise ValueError(f"--duration {self.duration}: expected 0 < seconds <= 86400")
        if not self.videos:
            raise ValueError("the catalogue is empty: give at least one video")
        if not self.edges:
            raise ValueError("no edge to load: give --edge URL or --topology FILE")
        if self.edge_names and len(self.edge_names) != len(self.edges):
            raise ValueError(f"{len(self.edge_names)} edge names for {len(self.edges)} edges")
        schemes = {_split(e)[0] for e in self.edges}
        if self.dns is not None and len(schemes) > 1:
            raise ValueError("edges reached through DNS must all be http:// or all https://")
        if self.ca is not None and not self.tls:
            raise ValueError(
                f"--ca {self.ca} is for https edges, but every edge is http://: "
                "give https:// edge URLs (with --topology: --scheme https)"
            )

    @property
    def tls(self) -> bool:
        """Does any edge speak https (then the run needs a TLS client context)?"""
        return any(e.startswith("https://") for e in self.edges)


@dataclass(slots=True)
class Second:
    """The figures of one second of the run."""

    requests: int = 0
    bytes: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    active: int = 0


class Recorder:
    """Collects every request's outcome into per-second buckets (the shell's only shared state)."""

    def __init__(self, start: float, duration: float) -> None:
        self.start = start
        self.seconds = [Second() for _ in range(int(duration) + 2)]
        self.statuses: dict[str, int] = {}
        self.cache: dict[str, int] = {}
        self.active = 0
        self.stalled = 0.0
        self.switches = 0
        self.error_samples: list[str] = []
        self.cut = 0  # requests still running when the run ended (neither served nor failed)
        self.connections = 0  # connections opened (with https: completed TLS handshakes)

    def _bucket(self, now: float) -> Second:
        return self.seconds[min(len(self.seconds) - 1, max(0, int(now - self.start)))]

    def ok(self, now: float, latency: float, size: int, status: int, cache: str | None) -> None:
        b = self._bucket(now)
        b.requests += 1
        b.bytes += size
        b.latencies.append(latency)
        self.statuses[str(status)] = self.statuses.get(str(status), 0) + 1
        if cache:
            key = cache.split()[0].upper()
            self.cache[key] = self.cache.get(key, 0) + 1
        if status >= 400:
            b.errors += 1

    def error(self, now: float, message: str) -> None:
        self._bucket(now).errors += 1
        self.statuses["error"] = self.statuses.get("error", 0) + 1
        if len(self.error_samples) < 5:
            self.error_samples.append(message)

    def mark_active(self, now: float) -> None:
        self._bucket(now).active = max(self._bucket(now).active, self.active)


class Catalogue:
    """Manifests parsed once per video (all players share the parsed plans)."""

    def __init__(self) -> None:
        self.plans: dict[str, VideoPlan] = {}

    def plan(self, video_id: str, xml: bytes, base_url: str) -> VideoPlan:
        if video_id not in self.plans:
            from player.mpd import parse_mpd

            self.plans[video_id] = video_plan(parse_mpd(xml, base_url=base_url), video_id)
        return self.plans[video_id]


async def resolve_edge(cfg: LoadConfig, template: Target) -> Target:
    """Ask the DNS router for the content name from the template's source; the first A record is the edge."""
    import dns.asyncquery
    import dns.message
    import dns.rdatatype

    assert cfg.dns is not None
    source = template.source or "127.0.0.1"
    query = dns.message.make_query(cfg.dns_name, dns.rdatatype.A)
    reply = await dns.asyncquery.udp(query, cfg.dns[0], port=cfg.dns[1], timeout=2.0, source=source)
    for rrset in reply.answer:
        if rrset.rdtype == dns.rdatatype.A:
            return dataclasses.replace(template, host=str(next(iter(rrset)).address), source=source)
    raise HTTPClientError(f"no A record for {cfg.dns_name} from {source}")


def client_context(ca: Path | None) -> ssl.SSLContext:
    """The run's one TLS client context: the system CAs plus `ca`, certificate and name checks always on.

    ALPN offers `http/1.1` only. Raise ValueError (the player's CaFileError) naming a `ca` file that is
    missing, unreadable or holds no PEM CA certificate.
    """
    if ca is None:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    else:
        from player.fetch import client_tls_context

        context = client_tls_context(ca)
    context.set_alpn_protocols(["http/1.1"])
    return context


def edge_target(url: str, cfg: LoadConfig) -> Target:
    """The host and port of an edge URL; for https the TLS name, the Host a player would send (pure).

    That is the URL's host, or in DNS mode the content name (`cfg.host_header`): the player asks the
    router for it and connects to the address it answers, but still expects a certificate for the name.
    """
    scheme, host, port = _split(url)
    if scheme != "https":
        return Target(host, port)
    return Target(host, port, tls_name=cfg.host_header if cfg.dns is not None else host)


def host_header(cfg: LoadConfig, target: Target) -> str:
    """The Host header of a target (pure): an https URL's own host[:port], else the configured one."""
    if cfg.dns is not None or target.tls_name is None:
        return cfg.host_header
    name = HostPort(target.tls_name, target.port).url_host
    return name if target.port == _DEFAULT_PORTS["https"] else f"{name}:{target.port}"


def connection(cfg: LoadConfig, target: Target, tls: ssl.SSLContext | None) -> Connection:
    """A (not yet connected) keep-alive connection to `target`, over TLS when it is an https edge."""
    if target.tls_name is not None and tls is None:
        raise RuntimeError(f"{target.host}:{target.port} speaks https: give the run's TLS client context")
    return Connection(
        target.host, target.port, host_header=host_header(cfg, target), source=target.source,
        tls=tls if target.tls_name is not None else None, server_name=target.tls_name,
    )  # fmt: skip


async def fetch_once(
    cfg: LoadConfig, url: str, path: str, *, tls: ssl.SSLContext | None, time_limit: float
) -> Response:
    """GET `path` from the edge at `url` on a connection of its own (body kept); raise HTTPClientError."""
    conn = connection(cfg, edge_target(url, cfg), tls)
    try:
        return await conn.get(path, time_limit=time_limit, keep_body=True)
    finally:
        await conn.close()


def source_address(networks: Sequence[str], index: int) -> str | None:
    """Player `index`'s client address: regions in turn, hosts .10 upwards within each network."""
    if not networks:
        return None
    net = ipaddress.ip_network(networks[index % len(networks)])
    host = 10 + (index // len(networks)) % max(1, min(net.num_addresses - 12, 240))
    return str(net.network_address + host)


class Player:
    """One simulated player: the I/O around `cdn.loadmodel`'s buffer and ABR."""

    def __init__(self, index: int, cfg: LoadConfig, rec: Recorder, cat: Catalogue, target: Target,
                 rng: random.Random, deadline: float, tls: ssl.SSLContext | None = None) -> None:  # fmt: skip
        self.index, self.cfg, self.rec, self.cat = index, cfg, rec, cat
        self.target, self.rng, self.deadline, self.tls = target, rng, deadline, tls
        self.cdf = zipf_cdf(len(cfg.videos), cfg.zipf)
        self.conn: Connection | None = None

    async def _get(self, path: str, keep_body: bool = False) -> tuple[int, int, bytes, float]:
        assert self.conn is not None
        started = time.monotonic()
        timeout = max(0.1, min(self.cfg.request_timeout, self.deadline - started))
        try:
            resp = await self.conn.get(path, time_limit=timeout, keep_body=keep_body)
        except HTTPClientError as exc:
            if time.monotonic() >= self.deadline:  # cut by the end of the run: not the edge's fault
                self.rec.cut += 1
            else:
                self.rec.error(time.monotonic(), str(exc))
            raise
        took = time.monotonic() - started
        self.rec.ok(time.monotonic(), took, resp.size, resp.status, resp.cache)
        return resp.status, resp.size, resp.body, took

    async def _ensure_connection(self) -> None:
        if self.conn is not None:
            return
        if self.cfg.dns is not None:
            self.target = await resolve_edge(self.cfg, self.target)
        self.conn = connection(self.cfg, self.target, self.tls)

    async def _play(self, video_id: str) -> PlayerState:
        status, _, xml, _ = await self._get(f"/videos/{video_id}/manifest.mpd", keep_body=True)
        if status != 200:
            raise HTTPClientError(f"manifest of {video_id}: HTTP {status}")
        assert self.conn is not None
        base = f"{self.conn.scheme}://{HostPort(self.target.host, self.target.port)}"
        plan = self.cat.plan(video_id, xml, f"{base}/videos/{video_id}/manifest.mpd")
        bandwidths = [r.bandwidth for r in plan.renditions]
        state, inited = PlayerState(), set()
        while state.next_chunk < plan.chunks and time.monotonic() < self.deadline:
            rep = choose_rendition(bandwidths, state.throughput)
            init = plan.renditions[rep].init
            if init and rep not in inited:
                await self._get(init)
                inited.add(rep)
            _, size, _, took = await self._get(plan.renditions[rep].media[state.next_chunk])
            state = after_fetch(state, rendition=rep, seconds=took, size=size, segment_seconds=plan.segment_seconds,
                                speed=self.cfg.speed)  # fmt: skip
            pause = min(wait_time(state, target=self.cfg.target_buffer, speed=self.cfg.speed),
                        self.deadline - time.monotonic())  # fmt: skip
            if pause > 0:
                await asyncio.sleep(pause)
                state = drained(state, pause, self.cfg.speed)
        return state

    async def run(self, start_delay: float) -> None:
        """Play videos one after another until the deadline; errors back off 0.5 s and retry."""
        await asyncio.sleep(start_delay)
        self.rec.active += 1
        try:
            for _ in range(100_000):  # bounded; the deadline ends it long before
                if time.monotonic() >= self.deadline:
                    return
                video = self.cfg.videos[pick(self.cdf, self.rng.random())]
                try:
                    await self._ensure_connection()
                    state = await self._play(video)
                    self.rec.stalled += state.stalled
                    self.rec.switches += state.switches
                except (HTTPClientError, OSError, ValueError) as exc:
                    if self.conn is None:
                        self.rec.error(time.monotonic(), str(exc))
                    await self._reset()
                    await asyncio.sleep(min(0.5, max(0.0, self.deadline - time.monotonic())))
        finally:
            self.rec.active -= 1
            await self._reset()

    async def _reset(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            self.rec.connections += conn.opened  # before the await: a cancelled close still counts
            await conn.close()


def _split(url: str) -> tuple[str, str, int]:
    """Scheme, host and port of an edge URL (https defaults to 443); raise ValueError naming it (pure)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = 0
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname or port == 0:
        raise ValueError(f"edge URL {url!r}: expected http://HOST:PORT or https://HOST[:PORT]")
    return parts.scheme, parts.hostname, port or _DEFAULT_PORTS[parts.scheme]


async def read_counters(cfg: LoadConfig, url: str, tls: ssl.SSLContext | None) -> EdgeCounters | None:
    """An edge's counters from its /metrics (over TLS for https), or None when it does not answer."""
    try:
        resp = await fetch_once(cfg, url, "/metrics", tls=tls, time_limit=2.0)
    except HTTPClientError:
        return None
    if resp.status != 200:
        return None
    try:
        return edge_counters(parse_prometheus_text(resp.body.decode("utf-8", "replace")))
    except PromTextError:
        return None


async def snapshot(cfg: LoadConfig, tls: ssl.SSLContext | None) -> dict[str, EdgeCounters | None]:
    """Every edge's counters (None for an edge that does not answer)."""
    results = await asyncio.gather(*(read_counters(cfg, e, tls) for e in cfg.edges))
    return dict(zip(cfg.edges, results, strict=True))


async def run_load(
    cfg: LoadConfig, *, progress: Any = None, tls: ssl.SSLContext | None = None
) -> dict[str, Any]:
    """Run the load test; return the result document (see `cdn.loadreport.summarise`).

    `tls` is the client context every https connection shares (default: `client_context(cfg.ca)`,
    built once here). Raise ValueError for an unusable `cfg.ca`.
    """
    from cdn.loadreport import summarise

    if tls is None and cfg.tls:
        tls = client_context(cfg.ca)
    before = await snapshot(cfg, tls)
    start = time.monotonic()
    deadline = start + cfg.duration
    rec = Recorder(start, cfg.duration)
    cat = Catalogue()
    rng = random.Random(cfg.seed)
    direct = [edge_target(e, cfg) for e in cfg.edges]
    players = []
    for i in range(cfg.players):
        if cfg.dns is not None:  # the host comes from the router; port and TLS name from the edges
            target = dataclasses.replace(direct[0], host="", source=source_address(cfg.client_networks, i))
        else:
            target = direct[i % len(direct)]
        players.append(Player(i, cfg, rec, cat, target, random.Random(rng.random()), deadline, tls))
    step = cfg.ramp / cfg.players if cfg.players else 0.0
    tasks = [asyncio.create_task(p.run(min(i * step, cfg.duration))) for i, p in enumerate(players)]
    ticker = asyncio.create_task(_tick(rec, deadline, progress))
    await asyncio.wait(tasks, timeout=cfg.duration + cfg.request_timeout + 5)
    for t in (*tasks, ticker):
        t.cancel()
    await asyncio.gather(*tasks, ticker, return_exceptions=True)
    after = await snapshot(cfg, tls)
    return summarise(cfg, rec, before, after, elapsed=min(time.monotonic() - start, cfg.duration + 1e-9))


async def _tick(rec: Recorder, deadline: float, progress: Any) -> None:
    """Once a second: note the active players and update the live view (bounded by the deadline)."""
    while time.monotonic() < deadline:
        rec.mark_active(time.monotonic())
        if progress is not None:
            progress(rec, time.monotonic())
        await asyncio.sleep(min(1.0, max(0.01, deadline - time.monotonic())))


def run_loadtest_cli(args: Any) -> int:
    """`cdn loadtest`: build the config from the CLI arguments, run it, report; the exit code."""
    from cdn.loadreport import run_and_report

    return run_and_report(args)
