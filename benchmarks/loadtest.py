"""Benchmark: 1000 simulated players from one process against a local origin + edge.

Starts `cdn-origin serve` and one `cdn-edge serve` on free loopback ports in a temporary directory,
packages a small catalogue (4 videos, 2 s chunks), then runs `cdn loadtest`'s engine with 1000
players for a bounded time and prints one line per figure. With `--https` the edge terminates TLS
(`--tls-cert/--tls-key` from a CA made here with trustme) and the players speak https to it with
that CA; `--compare-https` runs one round of each (a fresh origin and edge for each) and prints the
https/http ratios of latency, request rate and load-generator CPU. Usage:
    ./run.sh bench loadtest [--players 1000] [--duration 30] [--https | --compare-https]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# The repository instead of this folder: benchmarks/dns.py would shadow dnspython (`--https` loads the
# player's TLS context, whose module imports dns.edns).
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from rich.console import Console  # noqa: E402

from cdn.hostport import HostPort  # noqa: E402
from cdn.launcher import LaunchError, Supervisor  # noqa: E402
from cdn.loadclient import HTTPClientError  # noqa: E402
from cdn.loadreport import ensure_catalogue  # noqa: E402
from cdn.loadtest import LoadConfig, client_context, fetch_once, run_load  # noqa: E402
from cdn.plan import ServiceSpec  # noqa: E402


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _make_pki(work: Path) -> list[str]:
    """A test CA (work/pki/ca.pem) and an edge certificate for 127.0.0.1; the edge's --tls-* options."""
    import trustme  # a test dependency: only the --https variant needs it

    pki = work / "pki"
    pki.mkdir()
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    leaf.cert_chain_pems[0].write_to_path(str(pki / "cert.pem"))
    leaf.private_key_pem.write_to_path(str(pki / "key.pem"))
    ca.cert_pem.write_to_path(str(pki / "ca.pem"))
    return ["--tls-cert", str(pki / "cert.pem"), "--tls-key", str(pki / "key.pem")]


def _specs(work: Path, store: Path, tls_args: list[str]) -> list[ServiceSpec]:
    op, ep = _free_port("127.0.0.1"), _free_port("127.0.0.1")
    origin = ServiceSpec(
        name="origin", kind="origin", listen=HostPort("127.0.0.1", op),
        argv=("cdn-origin", "serve", "--store", str(store), "--listen", f"127.0.0.1:{op}",
              "--log-level", "warning"),
        health_url=f"http://127.0.0.1:{op}/healthz", log_path=work / "logs" / "origin.log",
    )  # fmt: skip
    edge = ServiceSpec(
        name="edge", kind="edge", listen=HostPort("127.0.0.1", ep), depends_on=("origin",),
        argv=("cdn-edge", "serve", "--origin", f"http://127.0.0.1:{op}", "--listen", f"127.0.0.1:{ep}",
              "--cache-dir", str(work / "cache"), "--cache-size", "1GiB", "--memory-cache", "256MiB",
              "--name", "bench-edge", *tls_args),
        health_url=f"http://127.0.0.1:{ep}/healthz", log_path=work / "logs" / "edge.log",
    )  # fmt: skip
    return [origin, edge]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--players", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--videos", type=int, default=4)
    scheme = parser.add_mutually_exclusive_group()
    scheme.add_argument(
        "--https", action="store_true", help="the edge terminates TLS; the players speak https"
    )
    scheme.add_argument(
        "--compare-https",
        action="store_true",
        help="one round in http, then one in https (a fresh edge each), and the https/http ratios",
    )
    args = parser.parse_args()
    load1, load5, _ = os.getloadavg()
    print(
        f"machine: {os.cpu_count()} cores, load average {load1:.2f} {load5:.2f}, python {sys.version.split()[0]}"
    )
    with tempfile.TemporaryDirectory(prefix="cdn-bench-") as tmp:
        work = Path(tmp)
        videos = tuple(f"loadtest-{i}" for i in range(1, args.videos + 1))
        ensure_catalogue(list(videos), work / "store", console=Console(stderr=True), seconds=24)
        rounds = [False, True] if args.compare_https else [args.https]
        results = [_round(work / ("https" if https else "http"), work / "store", args, videos, https=https)
                   for https in rounds]  # fmt: skip
    for doc, cpu in results:
        _print_round(doc, cpu)
    if len(results) == 2:
        _print_ratios(results[0], results[1])
    return 0


def _round(
    work: Path, store: Path, args: argparse.Namespace, videos: tuple[str, ...], *, https: bool
) -> tuple[dict[str, Any], float]:
    """Start an origin and an edge (TLS with `https`) in `work`, run the load, stop them; (report, CPU s)."""
    work.mkdir()
    sup = Supervisor(work)
    try:
        origin, edge = _specs(work, store, _make_pki(work) if https else [])
        sup.start(origin)
        sup.wait_healthy(["origin"], timeout=30)
        sup.start(edge)
        url = f"https://127.0.0.1:{edge.listen.port}" if https else edge.url
        ca = work / "pki" / "ca.pem" if https else None
        cfg = LoadConfig(edges=(url,), players=args.players, duration=args.duration, videos=videos,
                         ramp=min(10.0, args.duration / 3), ca=ca)  # fmt: skip
        if https:
            _wait_tls_healthy(sup, cfg, timeout=30)
        else:
            sup.wait_healthy(["edge"], timeout=30)
        started = time.process_time()
        doc = _run(cfg)
        doc["scheme"], doc["edge"] = ("https" if https else "http"), url
        return doc, time.process_time() - started
    finally:
        sup.close()


def _print_round(doc: dict[str, Any], cpu: float) -> None:
    e = doc["edges"][doc["edge"]]
    lat = doc["latency_ms"]
    tag = doc["scheme"]
    print(f"scheme: {tag} (players to the edge)")
    print(f"{tag} players: {doc['players']} (concurrent simulated players, one process)")
    print(f"{tag} peak active players: {doc['peak_active']} (players playing at once)")
    print(f"{tag} duration: {doc['duration_s']:.1f} (s)")
    print(f"{tag} requests: {doc['requests']} (requests)")
    print(f"{tag} request rate: {doc['requests_per_s']:.1f} (requests/s)")
    print(f"{tag} throughput: {doc['throughput_mbps']:.1f} (Mbit/s)")
    print(f"{tag} latency p50: {lat['p50']} (ms)")
    print(f"{tag} latency p95: {lat['p95']} (ms)")
    print(f"{tag} latency p99: {lat['p99']} (ms)")
    print(f"{tag} errors: {doc['errors']} ({doc['error_rate'] * 100:.2f} %)")
    print(f"{tag} stall per player: {doc['stall_s_per_player']:.2f} (s)")
    print(f"{tag} connections opened: {doc['connections']} (connections; with https, TLS handshakes)")
    print(f"{tag} edge hit ratio: {_pct(e.get('hit_ratio'))} (%)")
    print(f"{tag} edge origin offload: {_pct(e.get('origin_offload'))} (%)")
    print(f"{tag} load generator CPU: {_cpu_share(doc, cpu):.0f} (% of one core)")


def _print_ratios(plain: tuple[dict[str, Any], float], tls: tuple[dict[str, Any], float]) -> None:
    """https over http, same machine, same run: what TLS termination costs."""
    (a, a_cpu), (b, b_cpu) = plain, tls
    for q in ("p50", "p95", "p99"):
        print(f"https/http latency {q}: {_ratio(b['latency_ms'][q], a['latency_ms'][q])} (ratio)")
    print(f"https/http request rate: {_ratio(b['requests_per_s'], a['requests_per_s'])} (ratio)")
    print(f"https/http load generator CPU: {_ratio(_cpu_share(b, b_cpu), _cpu_share(a, a_cpu))} (ratio)")


def _ratio(over: float | None, under: float | None) -> str:
    return "-" if not over or not under else f"{over / under:.2f}"


def _cpu_share(doc: dict[str, Any], cpu: float) -> float:
    return cpu / max(doc["duration_s"], 1e-9) * 100


def _wait_tls_healthy(sup: Supervisor, cfg: LoadConfig, *, timeout: float) -> None:
    """Wait until the TLS edge answers /healthz over https (the supervisor's probe speaks plain HTTP)."""
    tls = client_context(cfg.ca)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sup.running["edge"].proc.poll() is not None:
            raise LaunchError("the TLS edge exited while starting; see its log")
        try:
            if asyncio.run(fetch_once(cfg, cfg.edges[0], "/healthz", tls=tls, time_limit=2.0)).status == 200:
                return
        except HTTPClientError:
            pass
        time.sleep(0.2)
    raise LaunchError(f"the TLS edge {cfg.edges[0]} was not healthy after {timeout:.0f} s")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}"


def _run(cfg: LoadConfig) -> dict[str, Any]:
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(run_load(cfg))
    return uvloop.run(run_load(cfg))


if __name__ == "__main__":
    raise SystemExit(main())
