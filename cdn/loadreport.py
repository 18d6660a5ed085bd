"""Results of `cdn loadtest`: the summary document, its table, its plot, and the CLI glue.

`summarise` turns the recorder and the edges' before/after counters into one JSON-able document
(requests/s, throughput, latency percentiles, errors, per-edge hit ratio and origin offload, and a
per-second timeline). `results_table` and `write_plot` render it; `run_and_report` is the command.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from cdn.console import make_console
from cdn.loadclient import HTTPClientError, TLSFailure
from cdn.loadmodel import percentile
from cdn.loadtest import LoadConfig, Recorder, client_context, fetch_once, run_load
from cdn.promtext import EdgeCounters

__all__ = ["ensure_catalogue", "preflight", "results_table", "run_and_report", "summarise", "write_plot"]


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 2)


def _edge_doc(before: EdgeCounters | None, after: EdgeCounters | None) -> dict[str, Any]:
    if after is None:
        return {"reachable": False}
    delta = after.minus(before) if before is not None else after
    return {
        "reachable": True, "requests": delta.total_requests, "by_cache": dict(sorted(delta.requests.items())),
        "hit_ratio": delta.hit_ratio, "origin_offload": delta.origin_offload,
        "bytes_served": delta.bytes_served, "bytes_fetched": delta.bytes_fetched,
    }  # fmt: skip


def _timeline(rec: Recorder, seconds: int) -> list[dict[str, Any]]:
    out = []
    for t, b in enumerate(rec.seconds[: max(1, seconds)]):
        lat = sorted(b.latencies)
        out.append({"t": t, "requests": b.requests, "mbps": b.bytes * 8 / 1e6, "errors": b.errors,
                    "p50_ms": _ms(percentile(lat, 0.5)), "p95_ms": _ms(percentile(lat, 0.95)),
                    "active": b.active})  # fmt: skip
    return out


def summarise(
    cfg: LoadConfig,
    rec: Recorder,
    before: dict[str, EdgeCounters | None],
    after: dict[str, EdgeCounters | None],
    *,
    elapsed: float,
) -> dict[str, Any]:
    """The result document of one run (pure: values in, dict out)."""
    lat = sorted(x for b in rec.seconds for x in b.latencies)
    requests = sum(b.requests for b in rec.seconds)
    total_bytes = sum(b.bytes for b in rec.seconds)
    errors = sum(b.errors for b in rec.seconds)
    elapsed = max(elapsed, 1e-9)
    return {
        "players": cfg.players, "peak_active": max((b.active for b in rec.seconds), default=0),
        "duration_s": round(elapsed, 3), "videos": list(cfg.videos), "zipf": cfg.zipf,
        "requests": requests, "requests_per_s": requests / elapsed, "bytes": total_bytes,
        "throughput_mbps": total_bytes * 8 / 1e6 / elapsed,
        "latency_ms": {"p50": _ms(percentile(lat, 0.5)), "p95": _ms(percentile(lat, 0.95)),
                       "p99": _ms(percentile(lat, 0.99)), "max": _ms(lat[-1] if lat else None)},
        "errors": errors, "error_rate": errors / (requests + rec.statuses.get("error", 0) or 1),
        "statuses": dict(sorted(rec.statuses.items())), "x_cache": dict(sorted(rec.cache.items())),
        "stall_s_per_player": rec.stalled / cfg.players, "cut_at_end": rec.cut, "error_samples": rec.error_samples,
        "connections": rec.connections,
        "edges": {e: {**_edge_doc(before.get(e), after.get(e)), **({"name": n} if n else {})}
                  for e, n in zip(cfg.edges, cfg.edge_names or ("",) * len(cfg.edges), strict=True)},
        "timeline": _timeline(rec, int(elapsed + 0.999)),
    }  # fmt: skip


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.1f} %"


def results_table(doc: dict[str, Any]) -> tuple[Table, Table]:
    """Two tables: the run's figures, and each edge's hit ratio and origin offload over the run."""
    run = Table(title=f"load test: {doc['players']} players, {doc['duration_s']:.0f} s")
    run.add_column("figure")
    run.add_column("value", justify="right")
    lat = doc["latency_ms"]
    for name, value in (
        ("peak active players", f"{doc['peak_active']}"),
        ("requests", f"{doc['requests']}"), ("requests/s", f"{doc['requests_per_s']:.1f}"),
        ("throughput", f"{doc['throughput_mbps']:.1f} Mbit/s"), ("latency p50", f"{lat['p50']} ms"),
        ("latency p95", f"{lat['p95']} ms"), ("latency p99", f"{lat['p99']} ms"),
        ("errors", f"{doc['errors']} ({doc['error_rate'] * 100:.2f} %)"),
        ("connections opened", f"{doc['connections']}"),
        ("stall per player", f"{doc['stall_s_per_player']:.2f} s"),
    ):  # fmt: skip
        run.add_row(name, value)
    edges = Table(title="edges (deltas over the run, from /metrics)")
    for col in ("edge", "requests", "hit ratio", "origin offload"):
        edges.add_column(col, justify="left" if col == "edge" else "right")
    for url, e in doc["edges"].items():
        label = f"{e['name']} ({url})" if e.get("name") else url
        if not e["reachable"]:
            edges.add_row(label, "unreachable", "-", "-")
        else:
            edges.add_row(label, f"{e['requests']:.0f}", _pct(e["hit_ratio"]), _pct(e["origin_offload"]))
    return run, edges


def write_plot(doc: dict[str, Any], path: Path) -> None:
    """A PNG with requests/s, throughput, latency p50/p95 and active players over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tl = doc["timeline"]
    t = [p["t"] for p in tl]
    fig, axes = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    try:
        axes[0].plot(t, [p["requests"] for p in tl], label="requests/s")
        axes[0].plot(t, [p["errors"] for p in tl], label="errors/s", color="red")
        axes[0].set_ylabel("per second")
        axes[0].legend(loc="upper left")
        ax2 = axes[0].twinx()
        ax2.plot(t, [p["active"] for p in tl], color="grey", linestyle=":", label="active players")
        ax2.set_ylabel("players")
        axes[1].plot(t, [p["mbps"] for p in tl], color="green")
        axes[1].set_ylabel("Mbit/s")
        axes[2].plot(t, [p["p50_ms"] or 0 for p in tl], label="p50")
        axes[2].plot(t, [p["p95_ms"] or 0 for p in tl], label="p95")
        axes[2].set_ylabel("latency (ms)")
        axes[2].set_xlabel("seconds")
        axes[2].legend(loc="upper left")
        fig.suptitle(f"cdn loadtest: {doc['players']} players, Zipf {doc['zipf']}")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)


def ensure_catalogue(videos: list[str], store: Path, *, console: Console, seconds: float = 24.0) -> list[str]:
    """Package the load-test videos missing from `store` (one generated clip, 2 s chunks); return them."""
    from cdn.launcher import LaunchError, resolve_argv
    from cdn.samples import generate_clip

    missing = [v for v in videos if not (store / v / "package.json").is_file()]
    if not missing:
        return []
    clip = store.parent / "loadtest-source.mp4"
    if not clip.is_file():
        with console.status(f"generating a {seconds:.0f} s load-test clip"):
            generate_clip(clip, seconds=seconds, width=426, height=240)
    for video in missing:
        argv = resolve_argv(["cdn-origin", "package", str(clip), "--id", video, "--store", str(store),
                             "--segment-seconds", "2"])  # fmt: skip
        with console.status(f"packaging {video} into {store}"):
            out = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)  # noqa: S603
        if out.returncode != 0:
            raise LaunchError(
                f"packaging {video} failed (exit {out.returncode}): {out.stderr.strip()[-1500:]}"
            )
    return missing


def _config(args: Any) -> tuple[LoadConfig, Path | None]:
    videos = tuple(f"loadtest-{i}" for i in range(1, args.videos + 1))
    common = {"players": args.players, "duration": args.duration, "videos": videos, "zipf": args.zipf,
              "ramp": args.ramp, "speed": args.speed}  # fmt: skip
    if args.topology is None:
        if args.scheme is not None:
            raise ValueError("--scheme goes with --topology; with --edge the URL says it (https://HOST:PORT)")
        return LoadConfig(edges=tuple(args.edge), ca=args.ca, **common), args.store
    from cdn.compose import content_host
    from cdn.topology import load_topology

    topo = load_topology(args.topology)
    nets = tuple(str(c.network) for c in topo.clients if c.region and c.network.version == 4)
    dns = topo.dns.listen
    # the edges' scheme is the topology's (https with a `tls:` section, whose CA is then the default
    # --ca); --scheme overrides it, e.g. for edges started by hand with --tls-cert
    scheme = args.scheme or ("https" if topo.tls is not None else "http")
    edges = tuple(f"{scheme}://{e.url.split('://', 1)[1]}" for e in topo.edges)
    ca = args.ca
    if ca is None and scheme == "https" and topo.tls is not None:
        ca = topo.tls.ca
    cfg = LoadConfig(edges=edges, edge_names=tuple(e.name for e in topo.edges), ca=ca,
                     dns=(dns.host, dns.port), dns_name=content_host(topo), host_header=content_host(topo),
                     client_networks=nets, **common)  # fmt: skip
    store = args.store or (topo.origin.store if topo.origin.store.is_dir() else None)
    return cfg, store


def preflight(cfg: LoadConfig, tls: ssl.SSLContext | None = None) -> str | None:
    """Why the run cannot start (an edge down, the catalogue missing), or None when it can.

    A refused TLS handshake does not stop the run: it is what the run measures, every request an error.
    """
    edge = cfg.edges[0].rstrip("/")
    for video in cfg.videos:
        path = f"/videos/{video}/manifest.mpd"
        try:
            status = asyncio.run(fetch_once(cfg, edge, path, tls=tls, time_limit=5.0)).status
        except TLSFailure:
            return None
        except HTTPClientError:
            return f"{cfg.edges[0]} does not answer: start the CDN first (`cdn up`)"
        if status != 200:
            return (f"{edge}{path} answered HTTP {status}: package the load-test videos with --store DIR "
                    "(the origin's store, var/store for `cdn up`)")  # fmt: skip
    return None


def _live_view(rec: Recorder, now: float, duration: float) -> Table:
    recent = rec.seconds[max(0, int(now - rec.start) - 1)]
    lat = sorted(recent.latencies)
    table = Table(title="cdn loadtest (live)")
    for col in ("elapsed", "active", "req/s", "Mbit/s", "p95 ms", "errors"):
        table.add_column(col, justify="right")
    table.add_row(f"{now - rec.start:.0f}/{duration:.0f} s", str(rec.active), str(recent.requests),
                  f"{recent.bytes * 8 / 1e6:.1f}", str(_ms(percentile(lat, 0.95)) or "-"),
                  str(sum(b.errors for b in rec.seconds)))  # fmt: skip
    return table


def run_and_report(args: Any) -> int:
    """`cdn loadtest`: package missing videos, run under uvloop with live progress, print and save."""
    console = make_console(stderr=True)
    try:
        cfg, store = _config(args)
        tls = client_context(cfg.ca) if cfg.tls else None  # once per run, shared by every player
    except ValueError as exc:
        console.print(f"[red]cdn loadtest[/]: {exc}", highlight=False)
        return 2
    if store is not None:
        ensure_catalogue(list(cfg.videos), store, console=console)
    problem = preflight(cfg, tls)
    if problem:
        console.print(f"[red]cdn loadtest[/]: {problem}")
        return 1
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency
        runner = asyncio.run
    if args.quiet or not console.is_terminal:
        doc = runner(run_load(cfg, tls=tls))
    else:
        with Live(console=console, refresh_per_second=2, transient=True) as live:

            def view(rec: Recorder, now: float) -> None:
                live.update(_live_view(rec, now, cfg.duration))

            doc = runner(run_load(cfg, progress=view, tls=tls))
    out = make_console()
    for table in results_table(doc):
        out.print(table)
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2))
        out.print(f"wrote {args.json}")
    if args.plot:
        write_plot(doc, args.plot)
        out.print(f"wrote {args.plot}")
    for sample in doc["error_samples"]:
        print(f"error sample: {sample}", file=sys.stderr)
    return 0 if doc["requests"] > 0 and doc["error_rate"] < 0.05 else 1
