"""`cdn-dns`: serve the geo-aware DNS router, or check a topology file.

cdn-dns serve --topology topology.yaml [--listen 127.0.0.1:5353] [--http 127.0.0.1:8053] [--workers N]
              [--health-ca FILE]
cdn-dns check --topology topology.yaml

With `--workers N` the main process starts N-1 extra workers (`dnsrouter.workers`) that share the DNS
port; only the main process polls the edges (it pushes their states to the workers) and opens the side
port, and its /metrics adds up every worker's counters.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
import sys
from collections.abc import Sequence

from cdn.topology import TopologyError, load_topology
from dnsrouter.config import DnsRouterConfig, parse_args
from dnsrouter.errors import DNSRouterError
from dnsrouter.health import health_tls_context
from dnsrouter.service import DnsRouterService
from dnsrouter.workers import Worker, WorkerPool, serve_link, spawn_workers, stop_workers

__all__ = ["main"]

log = logging.getLogger("dnsrouter")


async def _serve(config: DnsRouterConfig, workers: Sequence[Worker]) -> None:
    service = DnsRouterService(
        config.topology, listen=config.listen, http=config.http, reuse_port=config.reuse_port,
        idle_timeout=config.idle_timeout, poll_health=config.link_fd is None,
        workers=WorkerPool.of(workers) if workers else None,
        health_tls=health_tls_context(config.health_ca) if config.health_ca is not None else None,
    )  # fmt: skip
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    told = asyncio.Event()
    link = _serve_link(config, service, told, stop)
    if link is not None:  # an extra worker opens its DNS socket only once it knows the edges' states
        await _first_of(told, stop)
    if not stop.is_set():
        async with service:
            gc.freeze()  # everything built so far lives forever: keep it out of the collector's scans
            http = f", HTTP on {config.http.host}:{service.http_port}" if config.http else ""
            log.info(
                "serving DNS for %s on %s:%d (UDP and TCP)%s; %d edges",
                ", ".join(z.name for z in config.topology.zones), config.listen.host, service.dns_port, http,
                len(config.topology.edges),
            )  # fmt: skip
            await stop.wait()
    if link is not None:
        link.cancel()
    log.info("stopped")


def _serve_link(
    config: DnsRouterConfig, service: DnsRouterService, told: asyncio.Event, stop: asyncio.Event
) -> asyncio.Task[None] | None:
    """In an extra worker: take edge states from the main process and serve it counters; stop when it is gone."""
    if config.link_fd is None:
        return None
    sock = socket.socket(fileno=config.link_fd)
    responder = service.responder
    task = asyncio.create_task(serve_link(sock, responder.metrics, responder.router, told), name="link")
    task.add_done_callback(lambda _: stop.set())
    return task


async def _first_of(*events: asyncio.Event) -> None:
    """Wait until any of `events` is set."""
    waits = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


def _check(args_topology: str) -> int:
    try:
        topo = load_topology(args_topology)
    except TopologyError as exc:
        print(f"cdn-dns: {exc}", file=sys.stderr)
        return 2
    print(f"{topo.source}: OK")
    print(f"  zones: {', '.join(z.name for z in topo.zones)}; routed: {', '.join(topo.zone.routed)}")
    print(f"  edges: {', '.join(f'{e.name}@{e.address}:{e.port}' for e in topo.edges)}")
    print(f"  client networks: {len(topo.clients)}; DNS on {topo.dns.listen}, HTTP on {topo.dns.http}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run `cdn-dns`; return the exit status (2 for a bad topology or option)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.command == "check":
        return _check(args.topology)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpcore"):  # one line per health poll otherwise
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        config = DnsRouterConfig.from_args(args)
    except DNSRouterError as exc:
        print(f"cdn-dns: {exc}", file=sys.stderr)
        return 2
    workers = spawn_workers(config, str(args.topology)) if config.workers > 1 else []
    try:
        _run(config, workers)
    except OSError as exc:
        print(f"cdn-dns: cannot listen on {config.listen} or {config.http}: {exc}", file=sys.stderr)
        return 1
    except DNSRouterError as exc:
        print(f"cdn-dns: {exc}", file=sys.stderr)
        return 2
    finally:
        stop_workers(workers)
    return 0


def _run(config: DnsRouterConfig, workers: Sequence[Worker]) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency, but stay usable without it
        asyncio.run(_serve(config, workers))
        return
    uvloop.run(_serve(config, workers))


if __name__ == "__main__":
    raise SystemExit(main())
