"""DNS benchmark: dnsperf against our router and against gdnsd serving an equivalent zone, side by side.

Both serve cdn.test with `video.cdn.test` routed by client location (ECS first) among the same three
regions, with health checks of the same edges (tiny HTTP health endpoints started here, one per edge
loopback address). The query file holds routed A queries carrying varied ECS subnets (client networks
of every region, unknown public /24s, IPv6 /48s) plus a few static and negative queries; dnsperf
reads it in its binary (length-prefixed wire) format so each query keeps its own ECS option.

    ./run.sh bench dns [--seconds 10] [--workers 1] [--clients 4]

Installs dnsperf and gdnsd from Debian's packages when missing (root + apt-get); if gdnsd cannot be
installed, says so and reports our figures alone.
"""

# ruff: noqa: E402
from __future__ import annotations

import sys
from pathlib import Path

# This file is named dns.py, and its folder comes first on sys.path: drop it so `import dns` is dnspython.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import dns.edns
import dns.exception
import dns.message
import dns.query
import yaml

ROOT = Path(__file__).resolve().parents[1]
REGION_SUBNETS = {"eu-west": "127.10.1", "us-east": "127.10.2", "ap-south": "127.10.3"}
EDGE_FOR_REGION = {"eu-west": "127.0.1.2", "us-east": "127.0.2.1", "ap-south": "127.0.3.1"}


def machine_line() -> str:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"machine: {os.cpu_count()} cores, load average {load} (1/5/15 min), Python {sys.version.split()[0]}"
    )


def ensure_tools() -> dict[str, str | None]:
    """dnsperf and gdnsd paths, installing the Debian packages when they are missing and we can."""
    missing = [pkg for pkg, exe in (("dnsperf", "dnsperf"), ("gdnsd", "gdnsd")) if not _which(exe)]
    if missing and os.geteuid() == 0 and shutil.which("apt-get"):
        for pkg in missing:
            policy = subprocess.run(
                ["apt-cache", "policy", pkg], capture_output=True, text=True, check=False
            ).stdout
            if "Candidate: (none)" in policy or "Candidate:" not in policy:
                print(
                    f"note: Debian package {pkg} is not available here (apt-cache policy shows no candidate)"
                )
                continue
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            subprocess.run(
                ["apt-get", "install", "-y", "-qq", pkg], env=env, capture_output=True, check=False
            )
    return {"dnsperf": _which("dnsperf"), "gdnsd": _which("gdnsd")}


def _which(exe: str) -> str | None:
    return shutil.which(exe) or next(
        (p for p in (f"/usr/sbin/{exe}", f"/usr/bin/{exe}") if os.path.exists(p)), None
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP on `host` a moment ago."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind((host, 0))
            port = int(u.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind((host, port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port found")


# ---------------------------------------------------------------- edges' health endpoints


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"status": "ok", "name": "edge", "region": "x", "inflight": 1, "bytes_per_second": 1000.0,
                           "cache_bytes": 0, "cache_capacity_bytes": 1, "cache_fill": 0.0}).encode()  # fmt: skip
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # gdnsd's monitor hangs up after the status line
            pass

    def log_message(self, format: str, *args: Any) -> None:
        pass


def start_health(addresses: list[str]) -> tuple[int, list[ThreadingHTTPServer]]:
    """One health endpoint per edge address, all on one port (gdnsd's http_status wants one port)."""
    for _ in range(20):
        port = free_port(addresses[0])
        servers: list[ThreadingHTTPServer] = []
        try:
            for a in addresses:
                servers.append(ThreadingHTTPServer((a, port), _Health))
        except OSError:
            for s in servers:
                s.server_close()
            continue
        for s in servers:
            threading.Thread(target=s.serve_forever, daemon=True).start()
        return port, servers
    raise RuntimeError("could not bind the edges' health endpoints")


# ---------------------------------------------------------------- queries


def query_file(path: Path, count: int, seed: int = 1) -> dict[str, int]:
    """Write `count` queries in dnsperf's binary format (2-byte length + wire); return the mix."""
    rng = random.Random(seed)
    mix = {"ecs-client-network": 0, "ecs-unknown-public": 0, "ecs-ipv6": 0, "static": 0, "nxdomain": 0}
    with path.open("wb") as out:
        for _ in range(count):
            roll = rng.random()
            if roll < 0.70:
                prefix = rng.choice([*REGION_SUBNETS.values(), f"127.20.{rng.randrange(256)}"])
                opt = dns.edns.ECSOption(f"{prefix}.0", 24)
                name, kind = rng.choice(["video.cdn.test", "ViDeO.CdN.TeSt"]), "ecs-client-network"
            elif roll < 0.85:
                opt = dns.edns.ECSOption(
                    f"{rng.randrange(1, 223)}.{rng.randrange(256)}.{rng.randrange(256)}.0", 24
                )
                name, kind = "video.cdn.test", "ecs-unknown-public"
            elif roll < 0.90:
                opt = dns.edns.ECSOption(f"2a00:{rng.randrange(65536):x}:{rng.randrange(65536):x}::", 48)
                name, kind = "video.cdn.test", "ecs-ipv6"
            elif roll < 0.97:
                opt, name, kind = None, rng.choice(["cdn.test", "ns1.cdn.test", "www.cdn.test"]), "static"
            else:
                opt, name, kind = None, f"n{rng.randrange(1000)}.cdn.test", "nxdomain"
            rdtype = "SOA" if name == "cdn.test" else "A"
            q = dns.message.make_query(name, rdtype, use_edns=0, options=[opt] if opt else [])
            wire = q.to_wire()
            out.write(len(wire).to_bytes(2, "big") + wire)
            mix[kind] += 1
    return mix


# ---------------------------------------------------------------- the two servers


def our_topology(path: Path, dns_port: int, http_port: int, health_port: int) -> None:
    data = yaml.safe_load((ROOT / "topology.yaml").read_text())
    for edge in data["edges"]:
        edge["port"] = health_port
    data["dns"]["listen"] = f"127.0.0.1:{dns_port}"
    data["dns"]["http"] = f"127.0.0.1:{http_port}"
    data["origin"]["store"] = str(path.parent / "store")
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def start_ours(workdir: Path, health_port: int, workers: int) -> tuple[subprocess.Popen[bytes], int]:
    port, http = free_port(), free_port()
    topo = workdir / "topology.yaml"
    our_topology(topo, port, http, health_port)
    cmd = [str(ROOT / ".venv/bin/python"), "-m", "dnsrouter.cli", "serve", "--topology", str(topo),
           "--log-level", "WARNING", "--workers", str(workers)]  # fmt: skip
    if not Path(cmd[0]).exists():
        cmd[0] = sys.executable
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=(workdir / "ours.log").open("wb")
    )
    return proc, port


GDNSD_ZONE = """$TTL 300
@ SOA ns1.cdn.test. hostmaster.cdn.test. 2026112401 3600 600 86400 30
@ NS ns1.cdn.test.
@ MX 10 mail.cdn.test.
@ TXT "pycdn demo zone"
ns1 A 127.0.0.1
origin A 127.0.0.1
www CNAME video.cdn.test.
video 20 DYNA geoip!video
"""


def gdnsd_config(port: int, health_port: int, workdir: Path, threads: int) -> str:
    nets = "\n".join(f"          {p}.0/24 => [{r}]" for r, p in REGION_SUBNETS.items())
    dcmap = ", ".join(f"{r} => {a}" for r, a in EDGE_FOR_REGION.items())
    return f"""options => {{
  listen => [ 127.0.0.1:{port} ]
  run_dir => {workdir}/run
  state_dir => {workdir}/state
  udp_threads => {threads}
  tcp_threads => 1
}}
service_types => {{
  edgehealth => {{ plugin => http_status, port => {health_port}, url_path => /healthz, interval => 2, timeout => 1 }}
}}
plugins => {{
  geoip => {{
    maps => {{
      demo => {{
        datacenters => [eu-west, us-east, ap-south]
        nets => {{
{nets}
          127.20.0.0/16 => [eu-west]
        }}
      }}
    }}
    resources => {{
      video => {{ map => demo, service_types => [edgehealth], dcmap => {{ {dcmap} }} }}
    }}
  }}
}}
"""


def start_gdnsd(
    exe: str, workdir: Path, health_port: int, threads: int
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    cfg = workdir / "gdnsd"
    for sub in ("zones", "run", "state"):
        (cfg / sub).mkdir(parents=True, exist_ok=True)
    (cfg / "config").write_text(gdnsd_config(port, health_port, cfg, threads))
    (cfg / "zones" / "cdn.test").write_text(GDNSD_ZONE)
    log = (workdir / "gdnsd.log").open("wb")
    return subprocess.Popen([exe, "-c", str(cfg), "start"], stdout=log, stderr=log), port


def wait_ready(port: int, proc: subprocess.Popen[bytes], name: str, timeout: float = 20) -> None:
    """Wait until `video.cdn.test` is answered with the health-checked edge for an ap-south subnet."""
    q = dns.message.make_query(
        "video.cdn.test", "A", use_edns=0, options=[dns.edns.ECSOption("127.10.3.0", 24)]
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with status {proc.returncode}")
        try:
            reply = dns.query.udp(q, "127.0.0.1", port=port, timeout=0.5)
            if reply.answer and reply.answer[0][0].address == EDGE_FOR_REGION["ap-south"]:
                return
        except dns.exception.Timeout:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{name} did not answer on port {port} within {timeout} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------- dnsperf


def dnsperf(
    exe: str, port: int, queries: Path, seconds: float, clients: int, outstanding: int
) -> dict[str, float]:
    """Run dnsperf for `seconds` and return qps, average latency and loss from its summary."""
    cmd = [exe, "-s", "127.0.0.1", "-p", str(port), "-d", str(queries), "-B", "-l", str(seconds),
           "-c", str(clients), "-q", str(outstanding), "-t", "2"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30, check=False).stdout

    def grab(pattern: str) -> float:
        m = re.search(pattern, out)
        if not m:
            raise RuntimeError(f"unexpected dnsperf output:\n{out}")
        return float(m.group(1))

    return {
        "qps": grab(r"Queries per second:\s+([\d.]+)"),
        "latency_ms": grab(r"Average Latency \(s\):\s+([\d.]+)") * 1000,
        "stddev_ms": grab(r"Latency StdDev \(s\):\s+([\d.]+)") * 1000,
        "lost_pct": grab(r"Queries lost:\s+\d+ \(([\d.]+)%\)"),
        "completed": grab(r"Queries completed:\s+(\d+)"),
    }


def report(name: str, r: dict[str, float]) -> None:
    q = f"q{r['outstanding']:.0f}"
    print(
        f"dns.{name}.{q}.qps: {r['qps']:.0f} (queries/s, {r['completed']:.0f} completed, {r['lost_pct']:.2f}% lost)"
    )
    print(f"dns.{name}.{q}.latency_avg: {r['latency_ms']:.3f} (ms, stddev {r['stddev_ms']:.3f} ms)")
    print(f"dns.{name}.{q}.cpu_per_query: {r['cpu_us']:.2f} (us of server CPU per answered query)")


def report_ratios(ours: dict[str, float], theirs: dict[str, float]) -> None:
    q = f"q{ours['outstanding']:.0f}"
    print(f"dns.ratio.{q}.qps: {ours['qps'] / theirs['qps']:.2f} (pycdn/gdnsd, target >= 0.75)")
    print(
        f"dns.ratio.{q}.latency_avg: {ours['latency_ms'] / theirs['latency_ms']:.2f} (pycdn/gdnsd, lower is better)"
    )
    print(
        f"dns.ratio.{q}.cpu_per_query: {ours['cpu_us'] / theirs['cpu_us']:.2f} (pycdn/gdnsd, lower is better)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="dnsperf run length per server and load level"
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="our worker processes = gdnsd UDP threads (default 1)"
    )
    parser.add_argument("--clients", type=int, default=4, help="dnsperf clients (sockets)")
    parser.add_argument(
        "--outstanding", default="200,1000", help="dnsperf -q levels (queries in flight), comma-separated"
    )
    parser.add_argument("--queries", type=int, default=5000, help="distinct queries in the file")
    args = parser.parse_args(argv)
    args.levels = [int(x) for x in args.outstanding.split(",")]
    print(machine_line())
    tools = ensure_tools()
    if tools["dnsperf"] is None:
        print(
            "dns: dnsperf is not installed and could not be installed (apt-get install dnsperf); nothing measured"
        )
        return 1
    with tempfile.TemporaryDirectory(prefix="dnsbench-") as tmp:
        workdir = Path(tmp)
        mix = query_file(workdir / "queries.bin", args.queries)
        print(f"setup: {args.queries} distinct queries {mix}; {args.seconds:g} s per server and level; "
              f"{args.workers} worker(s)/UDP thread(s) each; dnsperf -c {args.clients} -q {args.outstanding}")  # fmt: skip
        health_port, health = start_health(sorted({*EDGE_FOR_REGION.values(), "127.0.1.1"}))
        try:
            ours = run_one("pycdn", *start_ours(workdir, health_port, args.workers), workdir, tools, args)
            if tools["gdnsd"] is None:
                print(
                    "dns: gdnsd is NOT installed and could not be installed: no comparison, our figures only"
                )
                return 0
            theirs = run_one("gdnsd", *start_gdnsd(tools["gdnsd"], workdir, health_port, args.workers),
                             workdir, tools, args)  # fmt: skip
        finally:
            for s in health:
                s.shutdown()
                s.server_close()
    for a, b in zip(ours, theirs, strict=True):
        report_ratios(a, b)
    return 0


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by process `pid` and its live children (our --workers), from /proc."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if stat.parent.name == str(pid) or fields[1] == str(pid):
            total += sum(int(f) for f in fields[11:13]) / os.sysconf("SC_CLK_TCK")
    return total


def run_one(
    name: str,
    proc: subprocess.Popen[bytes],
    port: int,
    workdir: Path,
    tools: dict[str, str | None],
    args: Any,
) -> list[dict[str, float]]:
    """Warm up, then one dnsperf run per load level; stop the server; report each run."""
    exe, queries = tools["dnsperf"], workdir / "queries.bin"
    assert exe is not None
    results = []
    try:
        wait_ready(port, proc, name)
        dnsperf(exe, port, queries, min(2.0, args.seconds), args.clients, args.levels[0])  # warm-up
        for level in args.levels:
            before = cpu_seconds(proc.pid)
            result = dnsperf(exe, port, queries, args.seconds, args.clients, level)
            result["cpu_us"] = (cpu_seconds(proc.pid) - before) / max(result["completed"], 1) * 1e6
            result["outstanding"] = level
            results.append(result)
    finally:
        stop(proc)
    for result in results:
        report(name, result)
    return results


if __name__ == "__main__":
    raise SystemExit(main())
