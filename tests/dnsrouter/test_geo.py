"""Locating clients: client networks (longest prefix), a real MaxMind database, the fallback; distances."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.edns
import dns.message
import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from cdn.topology import ClientNetwork, Location, Topology, parse_topology
from dnsrouter.errors import GeoDatabaseError
from dnsrouter.geo import GeoReader, LocatedBy, Locator, Via, geo_location, great_circle_km, open_geo_database
from dnsrouter.service import build_responder

PARIS, ASHBURN, MUMBAI, LONDON = (
    Location(48.86, 2.35),
    Location(39.04, -77.49),
    Location(19.08, 72.88),
    Location(51.51, -0.13),
)


def ip(text: str) -> int:
    return int(ipaddress.ip_address(text))


@pytest.fixture
def locator(demo_topology: Topology) -> Locator:
    return Locator(demo_topology.clients, fallback=demo_topology.dns.fallback)


def test_great_circle() -> None:
    assert great_circle_km(PARIS, PARIS) == 0
    assert great_circle_km(PARIS, LONDON) == pytest.approx(344, abs=5)
    assert great_circle_km(PARIS, ASHBURN) == pytest.approx(6200, rel=0.02)
    assert great_circle_km(Location(0, 179.5), Location(0, -179.5)) == pytest.approx(
        111, abs=1
    )  # across the date line


@pytest.mark.parametrize(
    ("address", "by", "region", "network", "scope"),
    [
        ("127.10.1.77", LocatedBy.CLIENT_NETWORK, "eu-west", "127.10.1.0/24", 24),
        ("127.20.200.1", LocatedBy.CLIENT_NETWORK, None, "127.20.0.0/16", 16),
        ("fd00:10:3::99", LocatedBy.CLIENT_NETWORK, "ap-south", "fd00:10:3::/48", 48),
        ("127.99.1.2", LocatedBy.FALLBACK, None, "127.99.1.0/24", 24),
        ("2001:db8:1:2::1", LocatedBy.FALLBACK, None, "2001:db8:1::/56", 56),
    ],
)
def test_locate(
    locator: Locator, address: str, by: LocatedBy, region: str | None, network: str, scope: int
) -> None:
    family = ipaddress.ip_address(address).version
    located = locator.locate(family, ip(address), Via.SOURCE)
    assert (located.by, located.region, located.network, located.scope) == (by, region, network, scope)


def test_longest_prefix_wins() -> None:
    nets = [
        ClientNetwork(ipaddress.ip_network("10.0.0.0/8"), PARIS, "a"),
        ClientNetwork(ipaddress.ip_network("10.1.0.0/16"), ASHBURN, "b"),
        ClientNetwork(ipaddress.ip_network("10.1.2.0/28"), MUMBAI, "c"),
    ]
    loc = Locator(nets, fallback=None)
    assert [loc.locate(4, ip(a), Via.SOURCE).region for a in ("10.9.9.9", "10.1.9.9", "10.1.2.5", "10.1.2.17")] == [
        "a", "b", "c", "b",
    ]  # fmt: skip


def test_ecs_usable(locator: Locator) -> None:
    assert locator.ecs_usable(4, ip("127.10.1.0"), 24)  # loopback, but a configured client network
    assert not locator.ecs_usable(4, ip("10.0.0.0"), 8)  # private, unknown
    assert not locator.ecs_usable(4, ip("192.168.1.0"), 24)
    assert locator.ecs_usable(4, ip("8.8.8.0"), 24)  # public
    assert not locator.ecs_usable(4, ip("8.8.8.0"), 0)  # /0: the client opted out (RFC 7871 §7.1.2)


def test_fallback_scope_bounded_by_source_prefix(locator: Locator) -> None:
    located = locator.locate(4, ip("8.8.0.0"), Via.ECS, 16)
    assert (located.network, located.scope) == ("8.8.0.0/16", 16)


@pytest.fixture
def geo_db(tmp_path: Path) -> Path:
    """A tiny MaxMind-format City database written with mmdb-writer."""
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-City")
    writer.insert_network(IPSet(["8.8.8.0/24"]), {"location": {"latitude": 39.0, "longitude": -77.5}})
    writer.insert_network(IPSet(["1.186.0.0/16"]), {"location": {"latitude": 19.0, "longitude": 72.8}})
    writer.insert_network(IPSet(["2001:db8:aa::/48"]), {"location": {"latitude": 48.8, "longitude": 2.3}})
    writer.insert_network(IPSet(["9.9.9.0/24"]), {"country": {"iso_code": "XX"}})  # no coordinates
    path = tmp_path / "city.mmdb"
    writer.to_db_file(str(path))
    return path


@pytest.fixture
def reader(geo_db: Path) -> Iterator[GeoReader]:
    db = open_geo_database(str(geo_db))
    yield db
    db.close()  # type: ignore[attr-defined]


def test_geoip_database(reader: GeoReader) -> None:
    loc = Locator([], fallback=LONDON, geo=reader)
    us = loc.locate(4, ip("8.8.8.8"), Via.SOURCE)
    assert (us.by, us.network, us.scope, us.location) == (
        LocatedBy.GEOIP,
        "8.8.8.0/24",
        24,
        Location(39.0, -77.5),
    )
    assert loc.locate(4, ip("1.186.3.4"), Via.SOURCE).network == "1.186.0.0/16"
    assert loc.locate(6, ip("2001:db8:aa::1"), Via.SOURCE).by is LocatedBy.GEOIP
    assert loc.locate(4, ip("9.9.9.9"), Via.SOURCE).by is LocatedBy.FALLBACK  # record without coordinates
    assert loc.locate(4, ip("4.4.4.4"), Via.SOURCE).location == LONDON


def test_geoip_database_routes_ecs_clients(demo_data: dict[str, Any], geo_db: Path) -> None:
    demo_data["dns"]["geoip_db"] = str(geo_db)
    topology = parse_topology(demo_data)
    db = open_geo_database(str(topology.dns.geoip_db))
    try:
        responder = build_responder(topology, geo=db)
        query = dns.message.make_query(
            "video.cdn.test", "A", use_edns=0, options=[dns.edns.ECSOption("1.186.7.0", 24)]
        )
        out = responder.handle_wire(query.to_wire(), ("127.10.1.1", 53), "udp")
        assert out is not None
        reply = dns.message.from_wire(out)
        assert [rd.address for rd in reply.answer[0]] == ["127.0.3.1"]  # Mumbai
        assert reply.options[0].scopelen == 16
    finally:
        db.close()  # type: ignore[attr-defined]


def test_bad_geo_database(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mmdb"
    bad.write_bytes(b"not a database")
    with pytest.raises(GeoDatabaseError, match="bad.mmdb"):
        open_geo_database(str(bad))
    with pytest.raises(GeoDatabaseError, match="missing"):
        open_geo_database(str(tmp_path / "missing.mmdb"))


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"location": {"latitude": 1.5, "longitude": 2}}, Location(1.5, 2.0)),
        ({"location": {"latitude": 91, "longitude": 2}}, None),
        ({"location": {}}, None),
        ("text", None),
        (None, None),
    ],
)
def test_geo_location(record: object, expected: Location | None) -> None:
    assert geo_location(record) == expected
