"""The topology's values: frozen dataclasses for zones, settings, regions, edges and client networks.

Also `TopologyError` and the size helpers (`parse_size("512MiB")`, `format_size(1 << 30)`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cdn.hostport import HostPort
from cdn.sizes import format_size, parse_size

__all__ = [
    "RECORD_TYPES",
    "Capacity",
    "ClientNetwork",
    "ContentZone",
    "DnsSettings",
    "Edge",
    "HealthSettings",
    "IPNetwork",
    "Location",
    "OriginSettings",
    "Record",
    "RecordType",
    "Soa",
    "TlsSettings",
    "Topology",
    "TopologyError",
    "Zone",
    "format_size",
    "parse_size",
]

RecordType = Literal["A", "AAAA", "CNAME", "MX", "TXT", "NS"]
RECORD_TYPES: tuple[RecordType, ...] = ("A", "AAAA", "CNAME", "MX", "TXT", "NS")
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class TopologyError(ValueError):
    """Raised when the topology file is missing, not YAML, or has a bad key or value."""

    def __init__(self, message: str, *, source: str = "", key: str = "", value: object = None) -> None:
        self.source, self.key, self.value = source, key, value
        where = ": ".join(p for p in (source, key) if p)
        super().__init__(f"{where}: {message}" if where else message)


@dataclass(frozen=True, slots=True)
class Location:
    """A point on Earth in degrees."""

    lat: float
    lon: float

    def __post_init__(self) -> None:
        if not (-90.0 <= self.lat <= 90.0 and -180.0 <= self.lon <= 180.0):
            raise ValueError(
                f"({self.lat}, {self.lon}) is not a latitude in -90..90 and longitude in -180..180"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class Soa:
    """The zone's SOA fields; `minimum` is the negative-caching TTL (RFC 2308)."""

    mname: str
    rname: str
    serial: int
    refresh: int = 3600
    retry: int = 600
    expire: int = 86400
    minimum: int = 30


@dataclass(frozen=True, slots=True)
class Record:
    """One static record; `name` is absolute and lower case (`www.cdn.test.`)."""

    name: str
    type: RecordType
    value: str
    ttl: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Zone:
    """A zone we are authoritative for; `routed` names get the nearest healthy edge."""

    name: str
    ttl: int
    soa: Soa
    ns: tuple[str, ...]
    records: tuple[Record, ...] = ()
    routed: tuple[str, ...] = ()


ContentZone = Zone


@dataclass(frozen=True, slots=True)
class HealthSettings:
    """How the DNS router polls edge health: seconds, and fall/rise hysteresis counts."""

    interval: float = 1.0
    timeout: float = 0.8
    fall: int = 2
    rise: int = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class DnsSettings:
    """The DNS router's settings; `fallback` is a location or None to spread unknown clients."""

    listen: HostPort = HostPort("127.0.0.1", 5353)
    http: HostPort = HostPort("127.0.0.1", 8053)
    answer_ttl: int = 20
    answer_count: int = 1
    geoip_db: Path | None = None
    fallback: Location | None = None
    health: HealthSettings = field(default_factory=HealthSettings)
    trusted_proxies: tuple[IPNetwork, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class OriginSettings:
    """Where the origin listens and keeps its store."""

    listen: HostPort = HostPort("127.0.0.1", 8000)
    store: Path = Path("var/store")
    manifest_max_age: int = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsSettings:
    """The `tls:` section: every edge serves viewers with `cert`/`key`; routers and child edges trust `ca`."""

    cert: Path
    key: Path
    ca: Path


@dataclass(frozen=True, slots=True)
class Capacity:
    """Load above which an edge gets no new clients (None: no limit)."""

    inflight: int | None = None
    mbps: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Edge:
    """One edge cache: where it listens, where it stands, and how much it can take."""

    name: str
    region: str
    address: str
    port: int
    location: Location
    health_url: str
    capacity: Capacity = Capacity()
    shield: bool = False
    parent: str | None = None
    cache_size: int = 1 << 30
    memory_cache: int = 64 << 20
    tls: bool = False  # serves viewers over TLS (the topology has a `tls:` section)

    @property
    def url(self) -> str:
        """Base URL of the edge (`http://127.0.1.1:8080`, `https://...` when it serves TLS)."""
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{HostPort(self.address, self.port).url_host}:{self.port}"

    @property
    def is_ipv6(self) -> bool:
        return ":" in self.address


@dataclass(frozen=True, slots=True)
class ClientNetwork:
    """A client network and where its clients are; `region` is None when given by coordinates."""

    network: IPNetwork
    location: Location
    region: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Topology:
    """The whole CDN as described by topology.yaml."""

    source: str
    zone: Zone
    content_zones: tuple[Zone, ...]
    dns: DnsSettings
    origin: OriginSettings
    regions: Mapping[str, Location]
    edges: tuple[Edge, ...]
    clients: tuple[ClientNetwork, ...]
    tls: TlsSettings | None = None

    def edge(self, name: str) -> Edge:
        """The edge called `name`; raise KeyError naming the known edges."""
        for e in self.edges:
            if e.name == name:
                return e
        raise KeyError(f"no edge {name!r} (known: {', '.join(e.name for e in self.edges)})")

    @property
    def zones(self) -> tuple[Zone, ...]:
        """The CDN zone then the content zones."""
        return (self.zone, *self.content_zones)
