"""Parsing the whole file: settings, regions, edges and client networks, then `parse_topology` / `load_topology`."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cdn.hostport import HostPort
from cdn.topology.model import (
    Capacity,
    ClientNetwork,
    DnsSettings,
    Edge,
    HealthSettings,
    Location,
    OriginSettings,
    TlsSettings,
    Topology,
    TopologyError,
    Zone,
    parse_size,
)
from cdn.topology.reader import (
    LABEL,
    Node,
    boolean,
    hostport,
    int_in,
    ip_text,
    list_item,
    location,
    nonempty,
    positive_float,
    show,
)
from cdn.topology.zones import parse_zone

__all__ = ["load_topology", "parse_topology"]


def _health(node: Node) -> HealthSettings:
    node.only("interval", "timeout", "fall", "rise")
    d = HealthSettings()
    return HealthSettings(
        interval=node.get("interval", positive_float, d.interval),
        timeout=node.get("timeout", positive_float, d.timeout),
        fall=node.get("fall", int_in(1, 100), d.fall),
        rise=node.get("rise", int_in(1, 100), d.rise),
    )


def _fallback(node: Node) -> Location | None:
    """`fallback: {lat, lon}`, or `spread` (the default): unknown clients hashed over the edges."""
    value = node.data.get("fallback")
    if value is None or value == "spread":
        return None
    return location(node.child("fallback"))


def _dns(node: Node, base: Path | None) -> DnsSettings:
    node.only(
        "listen", "http", "answer_ttl", "answer_count", "geoip_db", "fallback", "health", "trusted_proxies"
    )
    d = DnsSettings()
    proxies = tuple(
        list_item(p, v, lambda v: ipaddress.ip_network(nonempty(v)), node.source)
        for p, v in node.items("trusted_proxies")
    )
    return DnsSettings(
        listen=node.get("listen", hostport, d.listen),
        http=node.get("http", hostport, d.http),
        answer_ttl=node.get("answer_ttl", int_in(0, 86400), d.answer_ttl),
        answer_count=node.get("answer_count", int_in(1, 1000), d.answer_count),
        geoip_db=node.get("geoip_db", lambda v: resolve_path(v, base), None),
        fallback=_fallback(node),
        health=_health(node.child("health")),
        trusted_proxies=proxies,
    )


def resolve_path(v: Any, base: Path | None) -> Path:
    path = Path(nonempty(v)).expanduser()
    return path if path.is_absolute() or base is None else base / path


def _origin(node: Node, base: Path | None) -> OriginSettings:
    node.only("listen", "store", "manifest_max_age")
    d = OriginSettings()
    return OriginSettings(
        listen=node.get("listen", hostport, d.listen),
        store=node.get("store", lambda v: resolve_path(v, base), resolve_path(str(d.store), base)),
        manifest_max_age=node.get("manifest_max_age", int_in(0, 86400), d.manifest_max_age),
    )


def _tls(root: Node, base: Path | None) -> TlsSettings | None:
    """`tls: {cert, key, ca}` (all three, paths relative to the topology file), or None without the section."""
    if "tls" not in root.data:
        return None
    node = Node(root.data["tls"], root.key("tls"), root.source)
    node.only("cert", "key", "ca")
    return TlsSettings(
        cert=node.get("cert", lambda v: resolve_path(v, base), required=True),
        key=node.get("key", lambda v: resolve_path(v, base), required=True),
        ca=node.get("ca", lambda v: resolve_path(v, base), required=True),
    )


def _regions(node: Node) -> dict[str, Location]:
    regions = {str(name): location(node.child(str(name), required=True)) for name in node.data}
    if not regions:
        raise TopologyError("at least one region is required", source=node.source, key=node.path or "regions")
    return regions


# ---------------------------------------------------------------- edges and clients


def _region_name(regions: Mapping[str, Location]) -> Callable[[Any], str]:
    def parse(v: Any) -> str:
        if nonempty(v) not in regions:
            raise ValueError(f"is not a region (known: {', '.join(regions)})")
        return str(v)

    return parse


def _capacity(node: Node) -> Capacity:
    node.only("inflight", "mbps")
    return Capacity(node.get("inflight", int_in(0), None), node.get("mbps", positive_float, None))


def _edge(
    path: str, item: object, regions: Mapping[str, Location], source: str, *, tls: bool = False
) -> Edge:
    node = Node(item, path, source)
    node.only("name", "region", "address", "port", "health_url", "capacity", "shield", "parent",
              "cache_size", "memory_cache")  # fmt: skip
    region = node.get("region", _region_name(regions), required=True)
    address = node.get("address", ip_text, required=True)
    port = node.get("port", int_in(1, 65535), required=True)
    scheme = "https" if tls else "http"
    default_health = f"{scheme}://{HostPort(address, port).url_host}:{port}/healthz"
    return Edge(
        name=node.get("name", _label, required=True),
        region=region,
        address=address,
        port=port,
        location=regions[region],
        health_url=node.get("health_url", _url, default_health),
        capacity=_capacity(node.child("capacity")),
        shield=node.get("shield", boolean, False),
        parent=node.get("parent", nonempty, None),
        cache_size=node.get("cache_size", parse_size, 1 << 30),
        memory_cache=node.get("memory_cache", parse_size, 64 << 20),
        tls=tls,
    )


def _label(v: Any) -> str:
    if not LABEL.match(nonempty(v)):
        raise ValueError("expected letters, digits, '-' or '_' (up to 63)")
    return str(v)


def _url(v: Any) -> str:
    if not re.match(r"^https?://[^/\s]+(/\S*)?$", nonempty(v)):
        raise ValueError("expected an http:// or https:// URL")
    return str(v)


RESERVED_NAMES = ("origin", "dns", "sample")  # the other services' names (process, log file, compose)


def _check_edges(edges: tuple[Edge, ...], source: str) -> None:
    """Names and HOST:PORT unique; every parent names another edge; no parent loops."""
    if not edges:
        raise TopologyError("at least one edge is required", source=source, key="edges")
    names: dict[str, int] = {}
    binds: set[tuple[str, int]] = set()
    for i, e in enumerate(edges):
        if e.name in RESERVED_NAMES or e.name.startswith("player-"):
            raise TopologyError(
                f"{e.name!r} is the name of another service of `cdn up` and docker-compose.yml "
                f"({', '.join(RESERVED_NAMES)}, player-REGION); rename the edge",
                source=source, key=f"edges[{i}].name", value=e.name,
            )  # fmt: skip
        if e.name in names:
            raise TopologyError(
                f"{e.name!r} is also edges[{names[e.name]}].name", source=source, key=f"edges[{i}].name"
            )
        if (e.address, e.port) in binds:
            raise TopologyError(
                f"{e.address}:{e.port} is used by another edge", source=source, key=f"edges[{i}].port"
            )
        names[e.name] = i
        binds.add((e.address, e.port))
    for i, e in enumerate(edges):
        _check_parent_chain(i, e, edges, names, source)


def _check_parent_chain(
    i: int, edge: Edge, edges: tuple[Edge, ...], names: Mapping[str, int], source: str
) -> None:
    seen = {edge.name}
    current = edge
    while current.parent is not None:
        if current.parent not in names:
            raise TopologyError(f"{current.parent!r} is not an edge (known: {', '.join(names)})",
                                source=source, key=f"edges[{names[current.name]}].parent", value=current.parent)  # fmt: skip
        if current.parent in seen:
            raise TopologyError(f"{edge.name!r} has a parent loop through {current.parent!r}",
                                source=source, key=f"edges[{i}].parent", value=edge.parent)  # fmt: skip
        seen.add(current.parent)
        current = edges[names[current.parent]]


def _client(path: str, item: object, regions: Mapping[str, Location], source: str) -> ClientNetwork:
    node = Node(item, path, source)
    node.only("network", "region", "location")
    network = node.get("network", lambda v: ipaddress.ip_network(nonempty(v), strict=False), required=True)
    if ("region" in node.data) == ("location" in node.data):
        raise node.fail("network", f"{network}: give exactly one of 'region' or 'location'")
    if "region" in node.data:
        region = node.get("region", _region_name(regions), required=True)
        return ClientNetwork(network, regions[region], region)
    return ClientNetwork(network, location(node.child("location", required=True)))


# ---------------------------------------------------------------- entry points


def parse_topology(
    data: Mapping[str, Any], *, source: str = "topology", base_dir: Path | None = None
) -> Topology:
    """Validate a parsed topology mapping; relative paths resolve against `base_dir`.

    Raises TopologyError naming the key path and the bad value.
    """
    root = Node(data, "", source)
    root.only("zone", "content_zones", "dns", "origin", "regions", "edges", "clients", "tls")
    tls = _tls(root, base_dir)
    zone = parse_zone(root.child("zone", required=True), None)
    content = tuple(parse_zone(Node(v, p, source), zone) for p, v in root.items("content_zones"))
    _check_zone_names(zone, content, source)
    regions = _regions(root.child("regions", required=True))
    edges = tuple(_edge(p, v, regions, source, tls=tls is not None) for p, v in root.items("edges"))
    _check_edges(edges, source)
    clients = tuple(_client(p, v, regions, source) for p, v in root.items("clients"))
    return Topology(
        source=source,
        zone=zone,
        content_zones=content,
        dns=_dns(root.child("dns"), base_dir),
        origin=_origin(root.child("origin"), base_dir),
        regions=regions,
        edges=edges,
        clients=clients,
        tls=tls,
    )


def _check_zone_names(zone: Zone, content: tuple[Zone, ...], source: str) -> None:
    seen = {zone.name}
    for i, z in enumerate(content):
        if z.name in seen:
            raise TopologyError(f"{z.name!r} is listed twice", source=source, key=f"content_zones[{i}].name")
        seen.add(z.name)


def load_topology(path: Path | str) -> Topology:
    """Read and validate a topology YAML file; raise TopologyError (also for a missing file or bad YAML)."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TopologyError(f"cannot read the topology file: {exc.strerror}", source=str(path)) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TopologyError(f"not valid YAML: {exc}", source=str(path)) from exc
    if not isinstance(data, Mapping):
        raise TopologyError(f"expected a mapping at the top level, got {show(data)}", source=str(path))
    return parse_topology(data, source=str(path), base_dir=path.resolve().parent)
