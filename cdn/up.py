"""`cdn up`: start the whole CDN described by the topology, package a sample, wait for Ctrl-C.

The shell around `cdn.plan` and `cdn.launcher`: check the ports are free, start the services in plan
order and wait for each group to be healthy, ask the DNS router for the routed name, package the
sample when the store has no video, print where everything is, then sleep until SIGINT/SIGTERM
and stop every process group.
"""

from __future__ import annotations

import contextlib
import ipaddress
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import NoReturn

from rich.console import Console
from rich.table import Table

from cdn.compose import content_host, manifest_url
from cdn.console import make_console
from cdn.launcher import STOP_SIGNALS, LaunchError, Supervisor, resolve_argv, run_group
from cdn.plan import ServiceSpec, plan_services
from cdn.status import active_supervisor
from cdn.tls import TlsFileError, client_tls_context
from cdn.topology import Topology, load_topology

__all__ = [
    "DemoClient",
    "UpOptions",
    "demo_clients",
    "sigterm_as_interrupt",
    "dns_query_ok",
    "ensure_sample",
    "port_conflicts",
    "running_cdn",
    "run_up",
]

SAMPLE_ID = "sample"
SAMPLE_LADDER = "360p:800k,240p:400k,144p:200k"


@dataclass(frozen=True, slots=True, kw_only=True)
class UpOptions:
    """What `cdn up` was asked to do."""

    topology_path: Path = Path("topology.yaml")
    state_dir: Path = Path("var")
    sample: bool = True
    sample_seconds: float = 60.0
    segment_seconds: int = 4
    timeout: float = 60.0


def port_conflicts(specs: list[ServiceSpec], topology: Topology) -> list[str]:
    """HOST:PORT of the plan that something else already listens on (TCP; the DNS port also UDP)."""
    busy = []
    binds = [(s.listen.host, s.listen.port, socket.SOCK_STREAM) for s in specs]
    dns = topology.dns.listen
    binds += [(dns.host, dns.port, socket.SOCK_DGRAM), (dns.host, dns.port, socket.SOCK_STREAM)]
    for host, port, kind in binds:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, kind) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError:
                busy.append(f"{host}:{port}/{'udp' if kind == socket.SOCK_DGRAM else 'tcp'}")
    return busy


def dns_query_ok(topology: Topology, *, timeout: float = 1.0) -> bool:
    """True when the router answers an A query for the routed name with at least one address."""
    import dns.exception
    import dns.message
    import dns.query
    import dns.rdatatype

    name = topology.zone.routed[0] if topology.zone.routed else topology.zone.name
    query = dns.message.make_query(name, dns.rdatatype.A)
    try:
        reply = dns.query.udp(query, topology.dns.listen.host, port=topology.dns.listen.port, timeout=timeout)
    except (OSError, dns.exception.DNSException):
        return False
    return any(r.rdtype == dns.rdatatype.A for r in reply.answer)


def has_videos(store: Path) -> bool:
    """True when the store holds at least one packaged video."""
    return store.is_dir() and any(store.glob("*/package.json"))


def ensure_sample(
    store: Path,
    work: Path,
    *,
    seconds: float,
    segment_seconds: int,
    console: Console,
    video_id: str = SAMPLE_ID,
) -> bool:
    """Generate and package the sample when the store is empty; return True when it packaged one."""
    if has_videos(store) and (store / video_id / "package.json").is_file():
        return False
    from cdn.samples import generate_clip

    clip = work / f"{video_id}-source.mp4"
    with console.status(f"generating a {seconds:.0f} s test clip with ffmpeg (lavfi testsrc2 + sine)"):
        generate_clip(clip, seconds=seconds, width=640, height=360, fps=30, audio=True)
    argv = resolve_argv(["cdn-origin", "package", str(clip), "--id", video_id, "--store", str(store),
                         "--segment-seconds", str(segment_seconds), "--ladder", SAMPLE_LADDER])  # fmt: skip
    started = time.monotonic()
    console.print(f"packaging {video_id!r} into {store} ({segment_seconds} s chunks, ladder {SAMPLE_LADDER})")
    # The packager draws its own progress bar on our terminal; its errors show there too. It runs in
    # its own process group, so an interrupted `cdn up` stops its ffmpeg as well.
    code = run_group(argv, timeout=600)
    if code != 0:
        raise LaunchError(f"packaging the sample failed (exit {code}); see the messages above")
    console.print(f"packaged [bold]{video_id}[/] in {time.monotonic() - started:.1f} s")
    return True


@contextlib.contextmanager
def running_cdn(options: UpOptions, console: Console | None = None) -> Iterator[tuple[Supervisor, Topology]]:
    """Start the whole CDN, yield (supervisor, topology) once healthy, stop everything on exit."""
    console = console or make_console(stderr=True)
    topology = load_topology(options.topology_path)
    _check_tls(topology)
    state = options.state_dir.resolve()
    other = active_supervisor(state)
    if other is not None:  # its state file would be overwritten and its services lost track of
        raise LaunchError(
            f"another `cdn up` (pid {other}) runs from {state}; stop it (`cdn down --state-dir "
            f"{options.state_dir}`) or give this one another --state-dir"
        )
    specs = plan_services(topology, state, topology_path=options.topology_path.resolve(),
                          admin_token=secrets.token_urlsafe(18))  # fmt: skip
    busy = port_conflicts(specs, topology)
    if busy:
        raise LaunchError(
            f"already in use: {', '.join(busy)}; stop the other CDN (`cdn down`) or edit the topology"
        )
    sup = Supervisor(state)
    try:
        for group in _start_groups(specs):
            with console.status(f"starting {', '.join(s.name for s in group)}"):
                for spec in group:
                    sup.start(spec)
                last = group[-1].kind == "dns"
                sup.wait_healthy([s.name for s in group], timeout=options.timeout,
                                 extra=(lambda: dns_query_ok(topology)) if last else None)  # fmt: skip
            console.print(f"[green]healthy[/]: {', '.join(s.name for s in group)}")
        if options.sample:
            ensure_sample(state / "store", state, seconds=options.sample_seconds,
                          segment_seconds=options.segment_seconds, console=console)  # fmt: skip
        yield sup, topology
    finally:
        sup.close()


def _check_tls(topology: Topology) -> None:
    """Fail early, naming the key, when the topology's `tls.ca` cannot be trusted (the edges check cert/key)."""
    if topology.tls is None:
        return
    try:
        client_tls_context(topology.tls.ca, option=f"{topology.source}: tls.ca")
    except TlsFileError as exc:
        raise LaunchError(str(exc)) from exc


def _start_groups(specs: list[ServiceSpec]) -> list[list[ServiceSpec]]:
    """Batches that can start together: every service after all it depends on."""
    groups: list[list[ServiceSpec]] = []
    done: set[str] = set()
    pending = list(specs)
    while pending:
        ready = [s for s in pending if set(s.depends_on) <= done]
        if not ready:
            raise LaunchError(f"unsatisfiable dependencies among {', '.join(s.name for s in pending)}")
        groups.append(ready)
        done |= {s.name for s in ready}
        pending = [s for s in pending if s.name not in done]
    return groups


def summary_table(sup: Supervisor, topology: Topology) -> Table:
    """Where everything listens, and the logs."""
    table = Table(title="pycdn is up")
    for col in ("service", "url", "region", "log"):
        table.add_column(col)
    for run in sup.running.values():
        table.add_row(run.spec.name, run.spec.url, run.spec.region or "", str(run.spec.log_path))
    dns = topology.dns.listen
    table.add_row("dns (udp/tcp)", f"{dns.host}:{dns.port}", "", "")
    return table


@dataclass(frozen=True, slots=True)
class DemoClient:
    """One demo viewer: a region and a source address in that region's client network."""

    region: str
    source_ip: str


def demo_clients(topology: Topology, count: int = 2) -> list[DemoClient]:
    """Clients in the first `count` regions that have an IPv4 client network (host .20 of it)."""
    out: list[DemoClient] = []
    for net in topology.clients:
        if net.region and net.network.version == 4 and net.region not in {c.region for c in out}:
            out.append(DemoClient(net.region, str(ipaddress.ip_network(net.network).network_address + 20)))
    return out[:count]


def try_commands(topology: Topology, state_dir: Path) -> list[str]:
    """The commands to try against a running CDN, one per line."""
    dns = topology.dns.listen
    host = content_host(topology)
    edge = topology.edges[0]
    manifest = manifest_url(topology, SAMPLE_ID)
    ca = f" --ca {topology.tls.ca}" if topology.tls else ""
    cacert = f" --cacert {topology.tls.ca}" if topology.tls else ""
    load = f"--topology {topology.source} --scheme https{ca}" if topology.tls else f"--edge {edge.url}"
    viewers = [f" --source-ip {c.source_ip}" for c in demo_clients(topology)] or [""]
    return [
        f"dig @{dns.host} -p {dns.port} {host}{viewers[0].replace(' --source-ip', ' -b')}",
        *(f"python player/cli.py {manifest} --dns {dns}{v}{ca}" for v in viewers),
        f"curl -sI{cacert} {edge.url}/videos/{SAMPLE_ID}/manifest.mpd",
        f"cdn status --state-dir {state_dir}",
        f"cdn loadtest {load} --players 200 --duration 20",
    ]


def wait_for_signal(stop: threading.Event | None = None) -> None:
    """Sleep until SIGINT, SIGTERM or SIGHUP (or `stop` is set)."""
    stop = stop or threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    old = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _interrupt(signum: int, frame: FrameType | None) -> NoReturn:
    raise KeyboardInterrupt


def sigterm_as_interrupt() -> None:
    """Make SIGTERM and SIGHUP (the terminal closed) raise KeyboardInterrupt, so `running_cdn` stops
    what it started on any of them: the services run in their own sessions and would not get SIGHUP."""
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)


def run_up(options: UpOptions) -> int:
    """`cdn up`: start, print, wait for Ctrl-C or SIGTERM, stop; the exit code."""
    console = make_console()
    sigterm_as_interrupt()
    try:
        with running_cdn(options, console) as (sup, topology):
            console.print(summary_table(sup, topology))
            console.print("try:")
            for line in try_commands(topology, options.state_dir):
                console.print(f"  {line}", highlight=False, soft_wrap=True)
            console.print("Ctrl-C stops everything.")
            sys.stdout.flush()
            wait_for_signal()
            console.print("stopping ...")
    except KeyboardInterrupt:
        console.print("stopped")
        return 130
    except LaunchError as exc:
        console.print(f"[red]cdn up failed[/]: {exc}")
        return 1
    console.print("stopped")
    return 0
