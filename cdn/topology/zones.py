"""Parsing the `zone` and `content_zones` sections: owner names, record values, SOA, routed names."""

from __future__ import annotations

import ipaddress
from typing import Any

from cdn.topology.model import RECORD_TYPES, Record, RecordType, Soa, Zone
from cdn.topology.reader import Node, hostname, int_in, list_item, nonempty

__all__ = ["parse_zone"]


def _owner(name: str, zone: str) -> str:
    """An owner name relative to `zone` (`@`, `www`) or absolute (`www.cdn.test.`), made absolute."""
    if name == "@":
        return zone
    absolute = hostname(name) if name.endswith(".") else hostname(f"{name}.{zone}")
    if not (absolute == zone or absolute.endswith("." + zone)):
        raise ValueError(f"is outside the zone {zone}")
    return absolute


def _record_value(rtype: RecordType, value: Any, zone: str) -> str:
    text = str(value) if isinstance(value, int | float) and rtype == "TXT" else nonempty(value)
    if rtype == "A":
        return str(ipaddress.IPv4Address(text))
    if rtype == "AAAA":
        return str(ipaddress.IPv6Address(text))
    if rtype in ("CNAME", "NS"):
        return _owner_any(text, zone)
    if rtype == "MX":
        pref, _, host = text.partition(" ")
        if not pref.isdigit() or int(pref) > 65535 or not host.strip():
            raise ValueError("expected 'PREFERENCE HOST', e.g. '10 mail.cdn.test.'")
        return f"{int(pref)} {_owner_any(host.strip(), zone)}"
    if len(text.encode()) > 255 * 16:
        raise ValueError("TXT value longer than 4080 bytes")
    return text


def _owner_any(name: str, zone: str) -> str:
    """A target name: absolute when it ends with a dot, else relative to the zone."""
    return hostname(name) if name.endswith(".") else hostname(f"{name}.{zone}")


def _record(path: str, item: object, zone: str, ttl: int, source: str) -> Record:
    node = Node(item, path, source)
    node.only("name", "type", "value", "ttl")
    rtype = node.get("type", _record_type, required=True)
    name = node.get("name", lambda v: _owner(nonempty(v), zone), required=True)
    value = node.get("value", lambda v: _record_value(rtype, v, zone), required=True)
    return Record(name, rtype, value, node.get("ttl", int_in(0), ttl))


def _record_type(v: Any) -> RecordType:
    text = nonempty(v).upper()
    if text not in RECORD_TYPES:
        raise ValueError(f"is not a supported type (known: {', '.join(RECORD_TYPES)})")
    return text


def _soa(node: Node, zone: str, default: Soa | None) -> Soa:
    node.only("mname", "rname", "serial", "refresh", "retry", "expire", "minimum")
    d = default or Soa(mname=f"ns1.{zone}", rname=f"hostmaster.{zone}", serial=1)
    return Soa(
        mname=node.get("mname", hostname, d.mname),
        rname=node.get("rname", hostname, d.rname),
        serial=node.get("serial", int_in(0, 2**32 - 1), d.serial),
        refresh=node.get("refresh", int_in(0), d.refresh),
        retry=node.get("retry", int_in(0), d.retry),
        expire=node.get("expire", int_in(0), d.expire),
        minimum=node.get("minimum", int_in(0), d.minimum),
    )


def parse_zone(node: Node, parent: Zone | None) -> Zone:
    """A zone section; a content zone (`parent` given) inherits TTL, SOA and NS from the CDN zone."""
    node.only("name", "ttl", "soa", "ns", "routed", "records")
    name = node.get("name", hostname, required=True)
    ttl = node.get("ttl", int_in(0), parent.ttl if parent else 300)
    soa = _soa(node.child("soa"), name, parent.soa if parent else None)
    ns = tuple(list_item(p, v, hostname, node.source) for p, v in node.items("ns")) or (
        parent.ns if parent else (soa.mname,)
    )
    routed = tuple(
        list_item(p, v, lambda v: _owner(nonempty(v), name), node.source) for p, v in node.items("routed")
    )
    records = tuple(_record(p, v, name, ttl, node.source) for p, v in node.items("records"))
    _check_owners(node, records, routed)
    return Zone(name=name, ttl=ttl, soa=soa, ns=ns, records=records, routed=routed)


def _check_owners(node: Node, records: tuple[Record, ...], routed: tuple[str, ...]) -> None:
    """A CNAME owner holds nothing else (RFC 1034 §3.6.2), and routed names have no static records."""
    owners: dict[str, set[str]] = {}
    for r in records:
        owners.setdefault(r.name, set()).add(r.type)
    for owner, types in owners.items():
        if "CNAME" in types and len(types) > 1:
            raise node.fail(
                "records", f"{owner!r} has a CNAME and other records ({', '.join(sorted(types))})"
            )
        if owner in routed:
            raise node.fail("records", f"{owner!r} is a routed name and cannot also have static records")
    if node.get("name", hostname) in {r.name for r in records if r.type == "CNAME"}:
        raise node.fail("records", "the zone apex cannot be a CNAME")
