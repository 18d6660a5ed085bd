"""Where is the client? Longest-prefix match in the topology's client networks, then the geo database, then the fallback.

Pure apart from the optional MaxMind reader it is handed (a lookup table, no I/O per query beyond
its memory map). Addresses are plain integers on the hot path; `Located.key` is what decisions
are cached by, and `Located.scope` is the ECS scope prefix to send back (RFC 7871 §7.2.1).

ECS and special ranges: a Client Subnet in a private, loopback, link-local or otherwise reserved
range says nothing about where the viewer is, so it is ignored (the query's source address is used
instead) -- unless it falls inside a configured client network. The demo topology puts its client
networks in 127.0.0.0/8, and those must keep working.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from cdn.topology import ClientNetwork, Location

__all__ = ["GeoReader", "LocatedBy", "Located", "Locator", "Via", "great_circle_km"]

EARTH_RADIUS_KM = 6371.0088
BITS = {4: 32, 6: 128}
FALLBACK_PREFIX = {4: 24, 6: 56}  # unknown clients are still cached (and spread) per /24 or /56


class LocatedBy(StrEnum):
    """How the client's position was found."""

    CLIENT_NETWORK = "client-network"
    GEOIP = "geoip"
    FALLBACK = "fallback"


class Via(StrEnum):
    """Which address located the client: the EDNS Client Subnet or the query's source."""

    ECS = "ecs"
    SOURCE = "source-address"


class GeoReader(Protocol):
    """The part of `maxminddb.Reader` we use."""

    def get_with_prefix_len(self, ip_address: str) -> tuple[Any, int]: ...


@dataclass(frozen=True, slots=True)
class Located:
    """Where the client is, how we know, and the network the answer is valid for."""

    location: Location | None  # None: unknown and the fallback is "spread"
    by: LocatedBy
    via: Via
    network: str  # CIDR text of the matched network (or the client's /24 or /56)
    scope: int  # ECS scope prefix length to echo
    region: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        """What decisions are cached by: one entry per client network."""
        return (self.by.value, self.network)


def great_circle_km(a: Location, b: Location) -> float:
    """Great-circle distance in km (haversine formula on a spherical Earth)."""
    lat1, lat2 = math.radians(a.lat), math.radians(b.lat)
    dlat, dlon = lat2 - lat1, math.radians(b.lon - a.lon)
    h = math.sin(dlat / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlon / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def _int_network(family: int, value: int, prefix: int) -> str:
    if family == 4:
        return str(ipaddress.IPv4Network((value, prefix)))
    return str(ipaddress.IPv6Network((value, prefix)))


def _mask(family: int, prefix: int) -> int:
    bits = BITS[family]
    return ((1 << bits) - 1) ^ ((1 << (bits - prefix)) - 1)


class Locator:
    """Locate clients by address: client networks (longest prefix), then geo database, then fallback."""

    def __init__(
        self, clients: Iterable[ClientNetwork], *, fallback: Location | None, geo: GeoReader | None = None
    ) -> None:
        self.fallback = fallback
        self.geo = geo
        self._tables: dict[int, list[tuple[int, int, dict[int, ClientNetwork]]]] = {4: [], 6: []}
        by_prefix: dict[tuple[int, int], dict[int, ClientNetwork]] = {}
        for c in clients:
            family: int = c.network.version
            by_prefix.setdefault((family, c.network.prefixlen), {})[int(c.network.network_address)] = c
        for (family, prefix), table in sorted(by_prefix.items(), key=lambda kv: -kv[0][1]):
            self._tables[family].append((prefix, _mask(family, prefix), table))

    def match(self, family: int, address: int) -> ClientNetwork | None:
        """The longest client network holding `address`, or None."""
        for _prefix, mask, table in self._tables[family]:
            hit = table.get(address & mask)
            if hit is not None:
                return hit
        return None

    def ecs_usable(self, family: int, address: int, source_prefix: int) -> bool:
        """Whether to route by this Client Subnet: not opted out (/0), and either known to us or public."""
        if source_prefix == 0:
            return False
        if self.match(family, address) is not None:
            return True
        ip = ipaddress.IPv4Address(address) if family == 4 else ipaddress.IPv6Address(address)
        return ip.is_global

    def locate(self, family: int, address: int, via: Via, source_prefix: int | None = None) -> Located:
        """Locate the client at `address` (an int of the given family, 4 or 6).

        `source_prefix` is the ECS source prefix when `via` is ECS; it bounds the fallback's scope.
        """
        hit = self.match(family, address)
        if hit is not None:
            net = hit.network
            return Located(hit.location, LocatedBy.CLIENT_NETWORK, via, str(net), net.prefixlen, hit.region)
        found = self._geo_lookup(family, address)
        if found is not None:
            location, prefix = found
            network = _int_network(family, address & _mask(family, prefix), prefix)
            return Located(location, LocatedBy.GEOIP, via, network, prefix)
        prefix = (
            FALLBACK_PREFIX[family] if source_prefix is None else min(source_prefix, FALLBACK_PREFIX[family])
        )
        network = _int_network(family, address & _mask(family, prefix), prefix)
        return Located(self.fallback, LocatedBy.FALLBACK, via, network, prefix)

    def _geo_lookup(self, family: int, address: int) -> tuple[Location, int] | None:
        if self.geo is None:
            return None
        ip = ipaddress.IPv4Address(address) if family == 4 else ipaddress.IPv6Address(address)
        try:
            record, prefix = self.geo.get_with_prefix_len(str(ip))
        except ValueError:  # e.g. an IPv6 address in an IPv4-only database
            return None
        location = geo_location(record)
        return None if location is None else (location, prefix)


def geo_location(record: object) -> Location | None:
    """The coordinates of a GeoIP2/GeoLite2-City style record (`location.latitude/longitude`), if any."""
    if not isinstance(record, Mapping):
        return None
    loc = record.get("location")
    if not isinstance(loc, Mapping):
        return None
    lat, lon = loc.get("latitude"), loc.get("longitude")
    if not isinstance(lat, int | float) or not isinstance(lon, int | float):
        return None
    try:
        return Location(float(lat), float(lon))
    except ValueError:
        return None


def open_geo_database(path: str) -> GeoReader:
    """Open a MaxMind-format database; raise GeoDatabaseError naming the file and the next step."""
    import maxminddb

    from dnsrouter.errors import GeoDatabaseError

    try:
        reader: GeoReader = maxminddb.open_database(path)
    except (OSError, maxminddb.InvalidDatabaseError, ValueError) as exc:
        raise GeoDatabaseError(
            f"cannot open the geo database {path!r}: {exc}; fix dns.geoip_db in the topology or remove it"
        ) from exc
    return reader
