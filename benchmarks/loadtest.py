"""Benchmark: 1000 simulated players from one process against a local origin + edge.

Starts `cdn-origin serve` and one `cdn-edge serve` on free loopback ports in a temporary directory,
packages a small catalogue (4 videos, 2 s chunks), then runs `cdn loadtest`'s engine with 1000
players for a bounded time and prints one line per figure. Usage:
    ./run.sh bench loadtest [--players 1000] [--duration 30]
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console  # noqa: E402

from cdn.hostport import HostPort  # noqa: E402
from cdn.launcher import Supervisor  # noqa: E402
from cdn.loadreport import ensure_catalogue  # noqa: E402
from cdn.loadtest import LoadConfig, run_load  # noqa: E402
from cdn.plan import ServiceSpec  # noqa: E402


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _specs(work: Path) -> list[ServiceSpec]:
    op, ep = _free_port("127.0.0.1"), _free_port("127.0.0.1")
    origin = ServiceSpec(
        name="origin", kind="origin", listen=HostPort("127.0.0.1", op),
        argv=("cdn-origin", "serve", "--store", str(work / "store"), "--listen", f"127.0.0.1:{op}",
              "--log-level", "warning"),
        health_url=f"http://127.0.0.1:{op}/healthz", log_path=work / "logs" / "origin.log",
    )  # fmt: skip
    edge = ServiceSpec(
        name="edge", kind="edge", listen=HostPort("127.0.0.1", ep), depends_on=("origin",),
        argv=("cdn-edge", "serve", "--origin", f"http://127.0.0.1:{op}", "--listen", f"127.0.0.1:{ep}",
              "--cache-dir", str(work / "cache"), "--cache-size", "1GiB", "--memory-cache", "256MiB",
              "--name", "bench-edge"),
        health_url=f"http://127.0.0.1:{ep}/healthz", log_path=work / "logs" / "edge.log",
    )  # fmt: skip
    return [origin, edge]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--players", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--videos", type=int, default=4)
    args = parser.parse_args()
    load1, load5, _ = os.getloadavg()
    print(
        f"machine: {os.cpu_count()} cores, load average {load1:.2f} {load5:.2f}, python {sys.version.split()[0]}"
    )
    with tempfile.TemporaryDirectory(prefix="cdn-bench-") as tmp:
        work = Path(tmp)
        videos = [f"loadtest-{i}" for i in range(1, args.videos + 1)]
        ensure_catalogue(videos, work / "store", console=Console(stderr=True), seconds=24)
        sup = Supervisor(work)
        try:
            origin, edge = _specs(work)
            sup.start(origin)
            sup.wait_healthy(["origin"], timeout=30)
            sup.start(edge)
            sup.wait_healthy(["edge"], timeout=30)
            cfg = LoadConfig(edges=(edge.url,), players=args.players, duration=args.duration,
                             videos=tuple(videos), ramp=min(10.0, args.duration / 3))  # fmt: skip
            started = time.process_time()
            doc = _run(cfg)
            cpu = time.process_time() - started
        finally:
            sup.close()
    e = doc["edges"][edge.url]
    lat = doc["latency_ms"]
    print(f"players: {doc['players']} (concurrent simulated players, one process)")
    print(f"peak active players: {doc['peak_active']} (players playing at once)")
    print(f"duration: {doc['duration_s']:.1f} (s)")
    print(f"requests: {doc['requests']} (requests)")
    print(f"request rate: {doc['requests_per_s']:.1f} (requests/s)")
    print(f"throughput: {doc['throughput_mbps']:.1f} (Mbit/s)")
    print(f"latency p50: {lat['p50']} (ms)")
    print(f"latency p95: {lat['p95']} (ms)")
    print(f"latency p99: {lat['p99']} (ms)")
    print(f"errors: {doc['errors']} ({doc['error_rate'] * 100:.2f} %)")
    print(f"stall per player: {doc['stall_s_per_player']:.2f} (s)")
    print(f"edge hit ratio: {_pct(e.get('hit_ratio'))} (%)")
    print(f"edge origin offload: {_pct(e.get('origin_offload'))} (%)")
    print(f"load generator CPU: {cpu / max(doc['duration_s'], 1e-9) * 100:.0f} (% of one core)")
    return 0


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
