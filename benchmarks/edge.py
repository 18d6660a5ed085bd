"""Benchmark: our edge against Debian's nginx proxy_cache, in front of the same origin.

Both caches run side by side on loopback, pinned to core 0 (one nginx worker, one edge process);
wrk and the origin run on the other core. The origin is nginx serving static files (a 2 MiB chunk,
a 1 KiB manifest, cold objects rate-limited so a fill takes ~130 ms, a Zipf catalogue, and one
64 MiB object for the memory figures). Prints one line per figure. Whole run < 3 minutes;
`--large` runs only the memory figures (edge against edge: spooling/streaming vs whole in memory).
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvloop

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
WRK_SECONDS = 3
WRK_ROUNDS = 3
HOST = "127.0.0.1"


def ensure_tools() -> None:
    """Install nginx and wrk from Debian's packages when they are missing."""
    missing = [t for t in ("nginx", "wrk") if not (shutil.which(t) or Path("/usr/sbin/" + t).exists())]
    if missing:
        print(f"# installing {' '.join(missing)} with apt-get", flush=True)
        subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", *missing],
            check=True,
            capture_output=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )


def nginx_bin() -> str:
    return shutil.which("nginx") or "/usr/sbin/nginx"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def pin(core: int) -> list[str]:
    """A taskset prefix pinning to `core` when the machine has more than one core."""
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        return ["taskset", "-c", str(core)]
    return []


NGINX_COMMON = """
daemon off; master_process on; worker_processes 1; user root;
pid {tmp}/{name}.pid; error_log {tmp}/{name}-error.log warn;
events {{ worker_connections 8192; }}
http {{
  client_body_temp_path {tmp}/{name}-body; proxy_temp_path {tmp}/{name}-proxy;
  fastcgi_temp_path {tmp}/{name}-fcgi; uwsgi_temp_path {tmp}/{name}-uwsgi; scgi_temp_path {tmp}/{name}-scgi;
  sendfile on; tcp_nopush on; tcp_nodelay on; keepalive_requests 10000000; keepalive_timeout 75;
  default_type application/octet-stream;
  {body}
}}
"""

ORIGIN_BODY = """
  access_log {tmp}/origin-access.log;
  server {{
    listen {host}:{port} backlog=4096;
    root {tmp}/origin;
    location /videos/ {{ expires 1h; etag on; }}
    location /videos/cold/ {{ expires 1h; limit_rate 16m; }}
  }}
"""

CACHE_BODY = """
  access_log off;
  proxy_cache_path {tmp}/nginx-cache levels=1:2 keys_zone=edge:32m max_size=4g inactive=1h use_temp_path=off;
  upstream origin {{ server {host}:{origin_port}; keepalive 64; }}
  server {{
    listen {host}:{port} backlog=4096;
    location /videos/ {{
      proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_cache edge; proxy_cache_lock on; proxy_cache_lock_timeout 30s; proxy_cache_valid 200 1h;
      add_header X-Cache $upstream_cache_status;
    }}
  }}
"""


@contextmanager
def process(cmd: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_nginx(tmp: Path, name: str, body: str, core: int) -> subprocess.Popen[bytes]:
    conf = tmp / f"{name}.conf"
    conf.write_text(NGINX_COMMON.format(tmp=tmp, name=name, body=body))
    return subprocess.Popen(
        [*pin(core), nginx_bin(), "-c", str(conf), "-p", str(tmp), "-e", str(tmp / f"{name}-error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_http(url: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                resp.read()
                return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def http_get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as resp:
        body: bytes = resp.read()
        return body


def wrk(url: str, seconds: int = WRK_SECONDS) -> float:
    out = subprocess.run(
        [*pin(1), "wrk", "-t1", "-c64", f"-d{seconds}s", url], capture_output=True, text=True, check=True
    ).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        print(f"# warning: {errors.group(1)} non-2xx responses from {url}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]


async def fetch(port: int, path: str) -> tuple[float, float, int]:
    """One GET on a fresh connection: (time to first byte, total time, body+head bytes)."""
    t0 = time.perf_counter()
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
    first = await reader.read(65536)
    ttfb = time.perf_counter() - t0
    n = len(first)
    while chunk := await reader.read(1 << 20):
        n += len(chunk)
    total = time.perf_counter() - t0
    writer.close()
    await writer.wait_closed()
    return ttfb, total, n


async def cold_burst(port: int, path: str, n: int = 64) -> list[tuple[float, float, int]]:
    return await asyncio.gather(*(fetch(port, path) for _ in range(n)))


def origin_count(tmp: Path, path: str) -> int:
    return sum(1 for line in (tmp / "origin-access.log").read_text().splitlines() if f"GET {path} " in line)


def metrics(port: int) -> dict[str, float]:
    text = http_get(f"http://{HOST}:{port}/metrics").decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def make_origin(tmp: Path) -> None:
    videos = tmp / "origin" / "videos"
    (videos / "bench").mkdir(parents=True)
    (videos / "cold").mkdir()
    (videos / "zipf").mkdir()
    (videos / "ttfb").mkdir()
    (videos / "bench" / "chunk.m4s").write_bytes(os.urandom(2 * 1024 * 1024))
    (videos / "bench" / "manifest.mpd").write_bytes(os.urandom(1024))
    for i in range(4):
        (videos / "cold" / f"c{i}.m4s").write_bytes(os.urandom(2 * 1024 * 1024))
    for i in range(60):
        (videos / "ttfb" / f"t{i}.m4s").write_bytes(os.urandom(16 * 1024))
    for i in range(ZIPF_OBJECTS):
        (videos / "zipf" / f"z{i}.m4s").write_bytes(os.urandom(ZIPF_SIZE))
    (videos / "large").mkdir()
    with open(videos / "large" / "movie.mp4", "wb") as fh:
        for _ in range(LARGE_SIZE // 2**20):
            fh.write(os.urandom(2**20))


ZIPF_OBJECTS = 500
ZIPF_SIZE = 64 * 1024
ZIPF_CACHE = 8 * 1024 * 1024  # 128 objects of 500 fit: the catalogue is ~4x the cache
ZIPF_REQUESTS = 4000
LARGE_SIZE = 64 * 1024 * 1024  # one big object (a single-file representation, a download)
LARGE_CLIENTS = 20
LARGE_PATH = "/videos/large/movie.mp4"


def zipf_paths(n: int, objects: int, s: float = 1.0, seed: int = 7) -> list[str]:
    rnd = random.Random(seed)
    weights = [1 / (k**s) for k in range(1, objects + 1)]
    return [f"/videos/zipf/z{i}.m4s" for i in rnd.choices(range(objects), weights=weights, k=n)]


async def zipf_load(port: int, paths: list[str], concurrency: int = 16) -> None:
    queue = list(reversed(paths))

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            while queue:
                path = queue.pop()
                writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
                await reader.readexactly(length)
        finally:
            writer.close()
            await writer.wait_closed()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def ttfb_overhead(edge_port: int, origin_port: int, nginx_port: int) -> tuple[float, float, float]:
    """Median TTFB of misses through the edge and nginx minus the origin's own, in ms."""

    async def run() -> tuple[list[float], list[float], list[float]]:
        direct, via_edge, via_nginx = [], [], []
        for i in range(20):
            direct.append((await fetch(origin_port, f"/videos/ttfb/t{i}.m4s"))[0])
            via_edge.append((await fetch(edge_port, f"/videos/ttfb/t{i + 20}.m4s"))[0])
            via_nginx.append((await fetch(nginx_port, f"/videos/ttfb/t{i + 40}.m4s"))[0])
        return direct, via_edge, via_nginx

    direct, via_edge, via_nginx = uvloop.run(run())
    base = statistics.median(direct)
    return (
        base * 1000,
        (statistics.median(via_edge) - base) * 1000,
        (statistics.median(via_nginx) - base) * 1000,
    )


def edge_command(oport: int, port: int, cache_dir: Path, name: str, *extra: str) -> list[str]:
    """`cdn-edge serve` pinned to core 0, in front of the nginx origin."""
    return [
        *pin(0),
        str(VENV_BIN / "cdn-edge"),
        "serve",
        "--origin",
        f"http://{HOST}:{oport}",
        "--listen",
        f"{HOST}:{port}",
        "--cache-dir",
        str(cache_dir),
        "--name",
        name,
        *extra,
    ]


def memory_kib(pid: int, field: str) -> int:
    """A `/proc/PID/status` memory figure in KiB (VmHWM: peak resident set, VmRSS: current)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def large_phase(
    tmp: Path, oport: int, cache: Path, large_object: str, phase: str
) -> tuple[float, float, float]:
    """One edge process serving LARGE_CLIENTS concurrent GETs of the big object: (peak MiB, idle MiB, MB/s).

    `cold`: a fresh cache (one fill, the rest coalesced); `disk`: the entry left by `cold`, read by
    a newly started edge (its memory tier is empty). Peak RSS is VmHWM at the end, the commit included.
    """
    port = free_port()
    cmd = edge_command(
        oport,
        port,
        cache,
        f"large-{phase}",
        "--cache-size",
        "2GiB",
        "--memory-cache",
        "256MiB",
        "--large-object",
        large_object,
    )
    with process(cmd, tmp / f"large-{large_object}-{phase}.log") as proc:
        wait_http(f"http://{HOST}:{port}/healthz")
        idle = memory_kib(proc.pid, "VmRSS")
        t0 = time.perf_counter()
        results = uvloop.run(cold_burst(port, LARGE_PATH, LARGE_CLIENTS))
        elapsed = time.perf_counter() - t0
        if any(n < LARGE_SIZE for _, _, n in results):
            print(f"# warning: incomplete bodies in the {phase} round with --large-object {large_object}")
        deadline = time.monotonic() + 30
        while metrics(port).get("cdn_edge_cache_entries", 0) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)  # the commit (rename, or the write of the joined body) is part of the cost
        peak = memory_kib(proc.pid, "VmHWM")
    return peak / 1024, idle / 1024, LARGE_CLIENTS * LARGE_SIZE / elapsed / 1e6


def run_large(tmp: Path, oport: int) -> None:
    """Peak RSS and throughput of a cold fill and of disk hits of a 64 MiB object, 20 clients at once."""
    rounds: dict[str, dict[str, tuple[float, float, float]]] = {}
    for large_object in ("8MiB", "1TiB"):  # the default, and every object "small" (all in memory)
        cache = tmp / f"large-cache-{large_object}"
        rounds[large_object] = {
            phase: large_phase(tmp, oport, cache, large_object, phase) for phase in ("cold", "disk")
        }
    for phase, what, how in (
        ("cold", "cold fill, one origin fetch", "spooled to disk"),
        ("disk", "disk hit of a restarted edge", "streamed block by block"),
    ):
        (new, idle, new_rate), (old, _, old_rate) = rounds["8MiB"][phase], rounds["1TiB"][phase]
        print(
            f"large object {what}: {LARGE_CLIENTS} clients x {LARGE_SIZE // 2**20} MiB: edge peak RSS "
            f"{new:.0f} MiB {how} (--large-object 8MiB) vs {old:.0f} MiB whole in memory "
            f"(--large-object 1TiB), ratio {new / old:.2f}x; {new_rate:,.0f} vs {old_rate:,.0f} MB/s "
            f"aggregate (idle edge {idle:.0f} MiB)",
            flush=True,
        )


def main(argv: list[str]) -> int:
    large_only = "--large" in argv
    ensure_tools()
    load = os.getloadavg()
    print(
        f"machine: {os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, "
        f"Python {sys.version.split()[0]}, caches pinned to core 0, wrk and origin to core 1"
        + ("" if pin(0) else " (no pinning: single core or no taskset)"),
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="edge-bench-") as tmpname:
        tmp = Path(tmpname)
        make_origin(tmp)
        oport, nport, eport, zport = free_port(), free_port(), free_port(), free_port()
        origin = start_nginx(tmp, "origin", ORIGIN_BODY.format(tmp=tmp, host=HOST, port=oport), 1)
        if large_only:
            try:
                os.environ["CDN_LOG_LEVEL"] = "WARNING"
                wait_http(f"http://{HOST}:{oport}/videos/bench/manifest.mpd")
                run_large(tmp, oport)
            finally:
                origin.terminate()
                origin.wait(10)
            return 0
        cache = start_nginx(
            tmp, "cache", CACHE_BODY.format(tmp=tmp, host=HOST, port=nport, origin_port=oport), 0
        )
        edge_cmd = edge_command(
            oport, eport, tmp / "edge-cache", "bench-edge", "--cache-size", "2GiB", "--memory-cache", "256MiB"
        )
        zipf_cmd = edge_command(
            oport,
            zport,
            tmp / "zipf-cache",
            "zipf-edge",
            "--cache-size",
            str(ZIPF_CACHE),
            "--memory-cache",
            "4MiB",
        )
        env_log = {**os.environ, "CDN_LOG_LEVEL": "WARNING"}
        os.environ.update(env_log)
        try:
            with process(edge_cmd, tmp / "edge.log"), process(zipf_cmd, tmp / "zipf.log"):
                for port in (oport, nport, eport, zport):
                    wait_http(f"http://{HOST}:{port}/videos/bench/manifest.mpd")
                run_all(tmp, oport, nport, eport, zport)
            run_large(tmp, oport)
        finally:
            for proc in (cache, origin):
                proc.terminate()
                proc.wait(10)
    return 0


def run_all(tmp: Path, oport: int, nport: int, eport: int, zport: int) -> None:
    # -- cache-hit throughput -------------------------------------------------------------------
    for label, path in (
        ("2 MiB chunk", "/videos/bench/chunk.m4s"),
        ("1 KiB manifest", "/videos/bench/manifest.mpd"),
    ):
        for port in (eport, nport):
            http_get(f"http://{HOST}:{port}{path}")
            http_get(f"http://{HOST}:{port}{path}")
        # alternate short rounds so that load from other processes hits both contestants alike
        edge_runs, nginx_runs = [], []
        for _ in range(WRK_ROUNDS):
            edge_runs.append(wrk(f"http://{HOST}:{eport}{path}"))
            nginx_runs.append(wrk(f"http://{HOST}:{nport}{path}"))
        edge_rps, nginx_rps = statistics.mean(edge_runs), statistics.mean(nginx_runs)
        print(
            f"hit throughput {label}: edge {edge_rps:,.0f} req/s, nginx proxy_cache {nginx_rps:,.0f} req/s, "
            f"ratio edge/nginx {edge_rps / nginx_rps:.2f}x (wrk -t1 -c64, keep-alive, "
            f"{WRK_ROUNDS} alternating rounds of {WRK_SECONDS}s each)",
            flush=True,
        )

    # -- 64 concurrent cold requests ----------------------------------------------------------------
    for name, port, obj in (
        ("edge", eport, "/videos/cold/c0.m4s"),
        ("nginx (proxy_cache_lock on)", nport, "/videos/cold/c1.m4s"),
    ):
        results = uvloop.run(cold_burst(port, obj))
        complete = sum(1 for _, _, n in results if n >= 2 * 1024 * 1024)
        ttfbs = sorted(r[0] * 1000 for r in results)
        totals = sorted(r[1] * 1000 for r in results)
        print(
            f"cold burst {name}: origin requests {origin_count(tmp, obj)} for 64 concurrent cold requests "
            f"({complete}/64 complete bodies); waiters' time to first byte p50 {statistics.median(ttfbs):.0f} ms "
            f"max {ttfbs[-1]:.0f} ms; time to last byte p50 {statistics.median(totals):.0f} ms max {totals[-1]:.0f} ms",
            flush=True,
        )

    # -- miss TTFB overhead ---------------------------------------------------------------------
    base, edge_extra, nginx_extra = ttfb_overhead(eport, oport, nport)
    print(
        f"miss TTFB overhead: edge +{edge_extra:.2f} ms, nginx +{nginx_extra:.2f} ms over the origin's own "
        f"{base:.2f} ms (median of 20 cold 16 KiB objects each, new connection per request)",
        flush=True,
    )

    # -- Zipf workload ----------------------------------------------------------------------------
    paths = zipf_paths(ZIPF_REQUESTS, ZIPF_OBJECTS)
    t0 = time.perf_counter()
    uvloop.run(zipf_load(zport, paths))
    elapsed = time.perf_counter() - t0
    m = metrics(zport)
    hits = sum(
        m.get(f'cdn_edge_requests_total{{cache="{c}"}}', 0)
        for c in ("HIT", "STALE", "REVALIDATED", "COALESCED")
    )
    total = hits + m.get('cdn_edge_requests_total{cache="MISS"}', 0)
    served, fetched = m["cdn_edge_bytes_served_total"], m["cdn_edge_bytes_fetched_total"]
    print(
        f"zipf workload: hit ratio {hits / total:.3f}, origin offload {1 - fetched / served:.3f} "
        f"({ZIPF_REQUESTS} requests, Zipf s=1.0 over {ZIPF_OBJECTS} x {ZIPF_SIZE // 1024} KiB = "
        f"{ZIPF_OBJECTS * ZIPF_SIZE / 2**20:.0f} MiB catalogue, cache {ZIPF_CACHE / 2**20:.0f} MiB, "
        f"{int(m['cdn_edge_cache_evictions_total'])} evictions, {ZIPF_REQUESTS / elapsed:,.0f} req/s with 16 clients)",
        flush=True,
    )


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
