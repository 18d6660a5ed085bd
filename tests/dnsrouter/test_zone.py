"""The authoritative lookup on its own: empty non-terminals, CNAME chains and loops, ANY."""

from __future__ import annotations

from typing import Any

import dns.name
import dns.rdatatype

from cdn.topology import parse_topology
from dnsrouter.zone import RCODE_NOERROR, RCODE_NXDOMAIN, RCODE_REFUSED, ZoneData


def zones(demo_data: dict[str, Any], *records: dict[str, str]) -> ZoneData:
    demo_data["zone"]["records"] += list(records)
    return ZoneData(parse_topology(demo_data))


def route(family: int) -> tuple[str, ...]:
    return ("192.0.2.1",) if family == 4 else ()


def look(z: ZoneData, name: str, rdtype: str = "A") -> Any:
    return z.lookup(dns.name.from_text(name), dns.rdatatype.from_text(rdtype), route)


def test_empty_non_terminal_is_nodata(demo_data: dict[str, Any]) -> None:
    z = zones(demo_data, {"name": "a.b", "type": "A", "value": "192.0.2.9"})
    result = look(z, "b.cdn.test")
    assert (result.rcode, result.answer, len(result.authority)) == (RCODE_NOERROR, [], 1)
    assert look(z, "c.cdn.test").rcode == RCODE_NXDOMAIN


def test_cname_loop_stops(demo_data: dict[str, Any]) -> None:
    z = zones(
        demo_data, {"name": "x", "type": "CNAME", "value": "y"}, {"name": "y", "type": "CNAME", "value": "x"}
    )
    result = look(z, "x.cdn.test")
    assert 1 < len(result.answer) <= 8


def test_cname_out_of_our_zones_is_left_to_the_resolver(demo_data: dict[str, Any]) -> None:
    z = zones(demo_data, {"name": "ext", "type": "CNAME", "value": "www.example.org."})
    result = look(z, "ext.cdn.test")
    assert [r.rdtype for r in result.answer] == [dns.rdatatype.CNAME]
    assert result.rcode == RCODE_NOERROR


def test_cname_to_missing_name_in_zone_is_nxdomain(demo_data: dict[str, Any]) -> None:
    z = zones(demo_data, {"name": "dangling", "type": "CNAME", "value": "gone"})
    result = look(z, "dangling.cdn.test")
    assert result.rcode == RCODE_NXDOMAIN
    assert len(result.answer) == 1


def test_any_at_apex_and_routed(demo_data: dict[str, Any]) -> None:
    z = zones(demo_data)
    apex = {dns.rdatatype.to_text(r.rdtype) for r in look(z, "cdn.test", "ANY").answer}
    assert apex == {"SOA", "NS", "MX", "TXT"}
    routed = look(z, "video.cdn.test", "ANY")
    assert routed.routed
    assert [r[0].address for r in routed.answer] == ["192.0.2.1"]


def test_refused_and_longest_zone(demo_data: dict[str, Any]) -> None:
    z = zones(demo_data)
    assert look(z, "cdn.test.evil").rcode == RCODE_REFUSED
    assert not look(z, "example").authoritative
    assert look(z, "video.example.test").answer[0].rdtype == dns.rdatatype.CNAME
