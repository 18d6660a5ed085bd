"""`cdn status`: each service's health and the edges' hit ratios, and `cdn down`.

Finds the services from the state file a running `cdn up` writes (or, without one, from the
topology's plan), probes each health URL and reads each edge's /metrics. `collect_status` returns
values; `status_table` renders them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.table import Table

from cdn.launcher import STATE_FILE, probe, read_state, stop_groups
from cdn.plan import Health, evaluate_health, plan_services
from cdn.promtext import EdgeCounters, PromTextError, edge_counters, parse_prometheus_text
from cdn.tls import TlsFileError, client_tls_context
from cdn.topology import load_topology

__all__ = [
    "ServiceStatus",
    "active_supervisor",
    "collect_status",
    "fetch_counters",
    "run_down",
    "status_table",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceStatus:
    """What `cdn status` knows about one service."""

    name: str
    kind: str
    url: str
    health: Health
    pid: int | None = None
    counters: EdgeCounters | None = None


def fetch_counters(
    base_url: str, *, timeout: float = 1.0, context: ssl.SSLContext | None = None
) -> EdgeCounters | None:
    """An edge's counters from its /metrics, or None when it does not answer or the text is bad.

    `context` verifies an https edge (see `probe`).
    """
    status, body = probe(base_url.rstrip("/") + "/metrics", timeout=timeout, context=context)
    if status != 200:
        return None
    try:
        return edge_counters(parse_prometheus_text(body.decode("utf-8", "replace")))
    except PromTextError:
        return None


def _targets(state_dir: Path, topology_path: Path) -> list[dict[str, Any]]:
    state = read_state(state_dir)
    if state and isinstance(state.get("services"), list):
        return [s for s in state["services"] if isinstance(s, dict)]
    topology = load_topology(topology_path)
    return [{"name": s.name, "kind": s.kind, "url": s.url, "health_url": s.health_url, "pid": None,
             "ca": str(s.ca) if s.ca is not None else None}
            for s in plan_services(topology, state_dir, topology_path=topology_path)]  # fmt: skip


def _context(ca: object) -> ssl.SSLContext | None:
    """A client context trusting the target's CA (from the state file or plan), None for plain http.

    A CA file that cannot be used gives the default context: the probe then fails and shows `down`.
    """
    if not isinstance(ca, str) or not ca:
        return None
    try:
        return client_tls_context(Path(ca), option="tls.ca")
    except TlsFileError:
        return client_tls_context()


def collect_status(state_dir: Path, topology_path: Path, *, timeout: float = 1.0) -> list[ServiceStatus]:
    """Probe every service of the running CDN (state file first, topology otherwise)."""
    out = []
    for t in _targets(state_dir, topology_path):
        context = _context(t.get("ca"))
        health = evaluate_health(*probe(str(t["health_url"]), timeout=timeout, context=context))
        edge = t["kind"] == "edge"
        counters = fetch_counters(str(t["url"]), timeout=timeout, context=context) if edge else None
        pid = t.get("pid")
        out.append(ServiceStatus(name=str(t["name"]), kind=str(t["kind"]), url=str(t["url"]), health=health,
                                 pid=pid if isinstance(pid, int) else None, counters=counters))  # fmt: skip
    return out


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f} %"


def status_table(rows: list[ServiceStatus]) -> Table:
    """A rich table: service, health, pid, url, requests, hit ratio, origin offload."""
    table = Table(title="pycdn status")
    for col in ("service", "health", "pid", "url", "requests", "hit ratio", "origin offload"):
        table.add_column(
            col, justify="right" if col in ("requests", "hit ratio", "origin offload") else "left"
        )
    colours = {Health.UP: "green", Health.OVERLOADED: "yellow", Health.DOWN: "red"}
    for r in rows:
        c = r.counters
        table.add_row(
            r.name,
            f"[{colours[r.health]}]{r.health.value}[/]",
            str(r.pid or "-"),
            r.url,
            f"{c.total_requests:.0f}" if c else "-",
            _pct(c.hit_ratio if c else None),
            _pct(c.origin_offload if c else None),
        )
    return table


_SCRIPTS = ("cdn-origin", "cdn-edge", "cdn-dns", "origin.cli", "edge.cli", "dnsrouter.cli")
_SUPERVISOR = ("cdn", "cdn.cli")  # `cdn up` / `cdn demo`, as a console script or `python -m cdn.cli`


def _is_ours(pid: int, names: tuple[str, ...] = _SCRIPTS) -> bool:
    """True when `pid` still runs one of our programs (guards against reused pids).

    Matches whole arguments (or their last path component), so an unrelated process whose command
    line merely mentions "cdn" somewhere (a path, `pytest tests/cdn`) is never signalled.
    """
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return False
    return any(a in names or a.rsplit("/", 1)[-1] in names for a in args[:3])


def active_supervisor(state_dir: Path) -> int | None:
    """The pid of a `cdn up` still running from `state_dir` (its state file is not stale), or None."""
    state = read_state(state_dir) or {}
    sup = state.get("supervisor_pid")
    if isinstance(sup, int) and sup != os.getpid() and _is_ours(sup, _SUPERVISOR):
        return sup
    return None


def run_down(state_dir: Path, *, grace: float = 5.0) -> list[str]:
    """Stop the CDN a `cdn up` in another shell started (its supervisor first); return what was stopped."""
    state = read_state(state_dir)
    if not state:
        return []
    services = [s for s in state.get("services", []) if isinstance(s, dict)]
    pgids = [int(s["pid"]) for s in services if isinstance(s.get("pid"), int) and _is_ours(int(s["pid"]))]
    sup = active_supervisor(state_dir)
    if sup is not None:
        # The supervisor stops its groups itself on SIGTERM; the loop below catches what it leaves.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(sup, signal.SIGTERM)
    stop_groups(pgids, grace=grace)
    # A supervisor that was killed outright left its state file behind: without this, `cdn status`
    # would keep reading the dead services from it instead of the topology.
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    return [str(s["name"]) for s in services if isinstance(s.get("pid"), int) and int(s["pid"]) in pgids]
