"""What `cdn up` starts, in which order, with which argv: a pure function of the topology.

`plan_services(topology, state_dir)` returns one `ServiceSpec` per process (origin, edges with
shields before their children, DNS router last). The launcher carries the plan out; the compose
generator and its test derive docker-compose.yml from the same plan, so the two cannot drift.
Health evaluation of a service's /healthz answer is pure too (`evaluate_health`).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cdn.hostport import HostPort
from cdn.topology import Edge, Topology, format_size

__all__ = [
    "Health",
    "ServiceSpec",
    "evaluate_health",
    "origin_url",
    "plan_services",
    "service_order",
]

Kind = Literal["origin", "edge", "dns"]


class Health(enum.Enum):
    """The state of one service as seen through its health URL."""

    UP = "up"
    OVERLOADED = "overloaded"
    DOWN = "down"


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceSpec:
    """One process of the CDN: its console-script argv, environment, health URL and log file."""

    name: str
    kind: Kind
    argv: tuple[str, ...]
    listen: HostPort
    health_url: str
    log_path: Path
    env: Mapping[str, str] = field(default_factory=dict)
    depends_on: tuple[str, ...] = ()
    region: str | None = None
    ca: Path | None = None  # set when the service serves TLS: the CA to trust for its URLs (https)

    def __post_init__(self) -> None:
        if not self.name or not self.argv:
            raise ValueError(f"service spec needs a name and an argv, got {self.name!r} {self.argv!r}")
        if not self.health_url.startswith(("http://", "https://")):
            raise ValueError(
                f"service {self.name}: health URL {self.health_url!r} must be http:// or https://"
            )

    @property
    def url(self) -> str:
        """The service's base URL (`http://HOST:PORT`, `https://HOST:PORT` when it serves TLS)."""
        scheme = "https" if self.ca is not None else "http"
        return f"{scheme}://{self.listen.url_host}:{self.listen.port}"


def origin_url(topology: Topology) -> str:
    """The origin's base URL from the topology."""
    hp = topology.origin.listen
    return f"http://{hp.url_host}:{hp.port}"


def service_order(edges: Sequence[Edge]) -> list[Edge]:
    """Edges ordered so that every parent starts before its children (stable otherwise).

    Raises ValueError when a parent is unknown or the parent chain loops (the loader checks this
    too; the plan stays safe for hand-built topologies).
    """
    by_name = {e.name: e for e in edges}
    done: list[Edge] = []
    seen: set[str] = set()

    def visit(edge: Edge, depth: int) -> None:
        if edge.name in seen:
            return
        if depth > len(edges):
            raise ValueError(f"edge {edge.name!r}: parent chain loops; check `parent:` in the topology")
        if edge.parent:
            if edge.parent not in by_name:
                raise ValueError(f"edge {edge.name!r}: parent {edge.parent!r} is not an edge of the topology")
            visit(by_name[edge.parent], depth + 1)
        seen.add(edge.name)
        done.append(edge)

    for edge in edges:
        visit(edge, 0)
    return done


def _origin_spec(topology: Topology, state_dir: Path, env: Mapping[str, str]) -> ServiceSpec:
    hp = topology.origin.listen
    argv = ("cdn-origin", "serve", "--store", str(state_dir / "store"), "--listen", str(hp),
            "--manifest-max-age", str(topology.origin.manifest_max_age))  # fmt: skip
    return ServiceSpec(
        name="origin", kind="origin", argv=argv, listen=hp, env=env,
        health_url=f"http://{hp.url_host}:{hp.port}/healthz", log_path=state_dir / "logs" / "origin.log",
    )  # fmt: skip


def _edge_spec(topology: Topology, edge: Edge, state_dir: Path, env: Mapping[str, str]) -> ServiceSpec:
    hp = HostPort(edge.address, edge.port)
    argv = ["cdn-edge", "serve", "--origin", origin_url(topology), "--listen", str(hp),
            "--cache-dir", str(state_dir / "cache" / edge.name), "--cache-size", format_size(edge.cache_size),
            "--memory-cache", format_size(edge.memory_cache), "--region", edge.region, "--name", edge.name]  # fmt: skip
    tls = topology.tls
    if tls is not None:
        argv += ["--tls-cert", str(tls.cert), "--tls-key", str(tls.key)]
    if edge.parent:
        argv += ["--parent", topology.edge(edge.parent).url]
        if tls is not None:
            argv += ["--upstream-ca", str(tls.ca)]
    return ServiceSpec(
        name=edge.name, kind="edge", argv=tuple(argv), listen=hp, env=env, region=edge.region,
        health_url=edge.health_url, log_path=state_dir / "logs" / f"{edge.name}.log",
        depends_on=(edge.parent,) if edge.parent else ("origin",), ca=tls.ca if tls else None,
    )  # fmt: skip


def _dns_spec(topology: Topology, topology_path: Path, state_dir: Path, edges: Sequence[str]) -> ServiceSpec:
    listen, http = topology.dns.listen, topology.dns.http
    argv = [
        "cdn-dns",
        "serve",
        "--topology",
        str(topology_path),
        "--listen",
        str(listen),
        "--http",
        str(http),
    ]
    if topology.tls is not None:
        argv += ["--health-ca", str(topology.tls.ca)]
    return ServiceSpec(
        name="dns",
        kind="dns",
        argv=tuple(argv),
        listen=http,
        env={},
        health_url=f"http://{http.url_host}:{http.port}/healthz",
        log_path=state_dir / "logs" / "dns.log",
        depends_on=tuple(edges),
    )


def plan_services(
    topology: Topology,
    state_dir: Path,
    *,
    topology_path: Path = Path("topology.yaml"),
    admin_token: str | None = None,
) -> list[ServiceSpec]:
    """The processes `cdn up` starts, in start order: origin, edges (parents first), DNS router.

    The admin token, when given, goes to the origin and edges through CDN_ADMIN_TOKEN (never argv,
    so it does not show in `ps`). Raises ValueError when an edge's parent is unknown or loops.
    """
    env = {"CDN_ADMIN_TOKEN": admin_token} if admin_token else {}
    specs = [_origin_spec(topology, state_dir, env)]
    edges = service_order(list(topology.edges))
    specs += [_edge_spec(topology, e, state_dir, env) for e in edges]
    specs.append(_dns_spec(topology, topology_path, state_dir, [e.name for e in edges]))
    return specs


def evaluate_health(status: int | None, body: bytes) -> Health:
    """Classify one /healthz answer: no answer or non-200 is DOWN; `"status": "overloaded"` is OVERLOADED.

    A 200 whose body is not JSON still counts as UP (the DNS router's side port may answer plain text).
    """
    if status != 200:
        return Health.DOWN
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return Health.UP
    state = str(doc.get("status", "ok")).lower() if isinstance(doc, dict) else "ok"
    if state in {"ok", "up", "healthy", "serving"}:
        return Health.UP
    return Health.OVERLOADED if state == "overloaded" else Health.DOWN
