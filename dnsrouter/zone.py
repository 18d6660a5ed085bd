"""Our zones' data and the authoritative lookup: name and type in, rcode and RRsets out.

Pure: built once from the topology as dnspython RRsets. Routed names get their A/AAAA records from
a callback, so the lookup stays independent of how the client was located; CNAMEs are chased
inside our zones (RFC 1034 §4.3.2 step 3a), as an authoritative server does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from cdn.topology import Topology, Zone

__all__ = ["Lookup", "ZoneData"]

RCODE_NOERROR, RCODE_NXDOMAIN, RCODE_REFUSED = 0, 3, 5
MAX_CHAIN = 8
FAMILIES: dict[int, tuple[int, ...]] = {
    dns.rdatatype.A: (4,),
    dns.rdatatype.AAAA: (6,),
    dns.rdatatype.ANY: (4, 6),
}
Router = Callable[[int], tuple[str, ...]]  # family (4 or 6) -> edge addresses


@dataclass(slots=True)
class Lookup:
    """The outcome of a lookup: rcode, AA, the sections, and whether the client's location mattered."""

    rcode: int
    authoritative: bool = True
    answer: list[dns.rrset.RRset] = field(default_factory=list)
    authority: list[dns.rrset.RRset] = field(default_factory=list)
    routed: bool = False


@dataclass(frozen=True, slots=True)
class _ZoneIndex:
    origin: dns.name.Name
    soa: dns.rrset.RRset
    nodes: dict[dns.name.Name, dict[int, dns.rrset.RRset]]
    routed: frozenset[dns.name.Name]
    answer_ttl: int

    def has_below(self, name: dns.name.Name) -> bool:
        """Whether `name` is an empty non-terminal (some owner lies below it), so it exists."""
        return any(n != name and n.is_subdomain(name) for n in (*self.nodes, *self.routed))


def _rrset(name: dns.name.Name, ttl: int, rtype: str, *values: str) -> dns.rrset.RRset:
    return dns.rrset.from_text_list(name, ttl, "IN", rtype, list(values))


def _index(zone: Zone, answer_ttl: int) -> _ZoneIndex:
    origin = dns.name.from_text(zone.name)
    s = zone.soa
    soa_text = f"{s.mname} {s.rname} {s.serial} {s.refresh} {s.retry} {s.expire} {s.minimum}"
    # The SOA's TTL is capped by MINIMUM so negative answers are cached for MINIMUM (RFC 2308 §5).
    soa = _rrset(origin, min(zone.ttl, s.minimum), "SOA", soa_text)
    grouped: dict[tuple[dns.name.Name, str], tuple[int, list[str]]] = {}
    for r in zone.records:
        value = f'"{_escape(r.value)}"' if r.type == "TXT" else r.value
        ttl, values = grouped.setdefault((dns.name.from_text(r.name), r.type), (r.ttl, []))
        values.append(value)
    nodes: dict[dns.name.Name, dict[int, dns.rrset.RRset]] = {origin: {}}
    nodes[origin][dns.rdatatype.SOA] = _rrset(origin, zone.ttl, "SOA", soa_text)
    nodes[origin][dns.rdatatype.NS] = _rrset(origin, zone.ttl, "NS", *zone.ns)
    for (name, rtype), (ttl, values) in grouped.items():
        rrset = _rrset(name, ttl, rtype, *values)
        nodes.setdefault(name, {})[rrset.rdtype] = rrset
    routed = frozenset(dns.name.from_text(n) for n in zone.routed)
    return _ZoneIndex(origin, soa, nodes, routed, answer_ttl)


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


class ZoneData:
    """Every zone we serve, looked up by the longest matching origin."""

    def __init__(self, topology: Topology) -> None:
        ttl = topology.dns.answer_ttl
        self.zones = sorted((_index(z, ttl) for z in topology.zones), key=lambda z: -len(z.origin))

    def find_zone(self, name: dns.name.Name) -> _ZoneIndex | None:
        for z in self.zones:
            if name.is_subdomain(z.origin):
                return z
        return None

    def lookup(self, name: dns.name.Name, qtype: int, route: Router) -> Lookup:
        """Answer `name`/`qtype` (class IN) from our zones; REFUSED outside them."""
        zone = self.find_zone(name)
        if zone is None:
            return Lookup(RCODE_REFUSED, authoritative=False)
        result = Lookup(RCODE_NOERROR)
        for _ in range(MAX_CHAIN):
            target = self._step(zone, name, qtype, route, result)
            if target is None:
                return result
            zone_next = self.find_zone(target)
            if zone_next is None:  # CNAME out of our zones: the resolver chases it
                return result
            zone, name = zone_next, target
        return result

    def _step(
        self, zone: _ZoneIndex, name: dns.name.Name, qtype: int, route: Router, result: Lookup
    ) -> dns.name.Name | None:
        """Add what `name` holds to `result`; return a CNAME target to follow, or None when done."""
        if name in zone.routed:
            self._routed(name, qtype, route, zone, result)
            return None
        node = zone.nodes.get(name)
        if node is None:
            if not zone.has_below(name):
                result.rcode = RCODE_NXDOMAIN
            result.authority.append(zone.soa)
            return None
        if qtype == dns.rdatatype.ANY:
            result.answer.extend(node.values())
            return None
        if qtype in node:
            result.answer.append(node[qtype])
            return None
        cname = node.get(dns.rdatatype.CNAME)
        if cname is not None:
            result.answer.append(cname)
            target: dns.name.Name = cname[0].target
            return target
        result.authority.append(zone.soa)  # NODATA (RFC 2308 §2.2)
        return None

    @staticmethod
    def _routed(name: dns.name.Name, qtype: int, route: Router, zone: _ZoneIndex, result: Lookup) -> None:
        result.routed = True
        wanted = FAMILIES.get(qtype, ())
        for family in wanted:
            addresses = route(family)
            if addresses:
                rtype = "A" if family == 4 else "AAAA"
                result.answer.append(_rrset(name, zone.answer_ttl, rtype, *addresses))
        if not any(r.name == name for r in result.answer):
            result.authority.append(zone.soa)  # NODATA: e.g. MX at a routed name, or no IPv6 edge
