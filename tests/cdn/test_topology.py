"""The topology loader: the demo file loads, and every bad key or value is named in the error."""

from __future__ import annotations

import copy
import ipaddress
from pathlib import Path
from typing import Any

import pytest
import yaml

from cdn.topology import (
    Location,
    TopologyError,
    format_size,
    load_topology,
    parse_size,
    parse_topology,
)

DEMO = Path(__file__).resolve().parents[2] / "topology.yaml"


@pytest.fixture
def demo() -> dict[str, Any]:
    data = yaml.safe_load(DEMO.read_text())
    assert isinstance(data, dict)
    return data


def test_demo_topology_loads() -> None:
    topo = load_topology(DEMO)
    assert topo.zone.name == "cdn.test."
    assert topo.zone.routed == ("video.cdn.test.",)
    assert [z.name for z in topo.content_zones] == ["example.test."]
    assert topo.content_zones[0].soa == topo.zone.soa
    assert topo.dns.listen.port == 5353
    assert topo.dns.answer_ttl == 20
    assert topo.dns.fallback == Location(50.11, 8.68)
    assert topo.origin.store == DEMO.parent / "var" / "store"
    shield, eu1 = topo.edges[0], topo.edges[1]
    assert shield.shield
    assert eu1.parent == "eu-west-shield"
    assert eu1.health_url == "http://127.0.1.2:8080/healthz"
    assert eu1.url == "http://127.0.1.2:8080"
    assert eu1.cache_size == 512 << 20
    assert eu1.memory_cache == 64 << 20
    assert eu1.capacity.inflight == 2000
    assert eu1.capacity.mbps == 4000.0
    assert eu1.location == topo.regions["eu-west"]
    assert topo.edge("us-east-1").address == "127.0.2.1"
    london = topo.clients[-1]
    assert london.network == ipaddress.ip_network("127.20.0.0/16")
    assert london.region is None


def test_relative_records_become_absolute() -> None:
    topo = load_topology(DEMO)
    by_key = {(r.name, r.type): r for r in topo.zone.records}
    assert by_key[("www.cdn.test.", "CNAME")].value == "video.cdn.test."
    assert by_key[("cdn.test.", "MX")].value == "10 mail.cdn.test."
    assert by_key[("ns1.cdn.test.", "A")].ttl == 300


def test_ipv6_edge_health_url(demo: dict[str, Any]) -> None:
    demo["edges"][2]["address"] = "::1"
    topo = parse_topology(demo)
    assert topo.edges[2].health_url == "http://[::1]:8080/healthz"
    assert topo.edges[2].is_ipv6


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda d: d["edges"][1].update(region="eu-wset"),
            r"edges\[1\]\.region: 'eu-wset' is not a region \(known: eu-west, us-east, ap-south\)$",
        ),
        (lambda d: d["edges"][0].update(address="300.1.1.1"), r"edges\[0\]\.address: '300\.1\.1\.1'"),
        (lambda d: d["edges"][0].update(port=70000), r"edges\[0\]\.port: 70000: expected 1\.\.65535"),
        (lambda d: d["edges"][1].update(parent="nope"), r"edges\[1\]\.parent: 'nope' is not an edge"),
        (lambda d: d["edges"][0].update(parent="eu-west-1"), r"parent loop"),
        (
            lambda d: d["edges"][2].update(name="eu-west-1"),
            r"edges\[2\]\.name: 'eu-west-1' is also edges\[1\]",
        ),
        (
            lambda d: d["edges"][2].update(name="dns"),
            r"edges\[2\]\.name: 'dns' is the name of another service",
        ),
        (lambda d: d["edges"][3].update(name="origin"), r"edges\[3\]\.name: 'origin' is the name of another"),
        (
            lambda d: d["edges"][3].update(name="player-x"),
            r"edges\[3\]\.name: 'player-x' is the name of another",
        ),
        (lambda d: d["edges"][0].update(cache_size="lots"), r"edges\[0\]\.cache_size: 'lots'"),
        (lambda d: d["edges"][0].update(colour="red"), r"edges\[0\]\.colour: unknown key"),
        (lambda d: d["clients"][0].update(network="10.0.0.0/33"), r"clients\[0\]\.network: '10\.0\.0\.0/33'"),
        (
            lambda d: d["clients"][0].update(location={"lat": 1, "lon": 2}),
            r"exactly one of 'region' or 'location'",
        ),
        (lambda d: d["clients"][6]["location"].update(lat=95), r"clients\[6\]\.location: .*latitude"),
        (
            lambda d: d["zone"]["records"][0].update(type="SRV"),
            r"zone\.records\[0\]\.type: 'SRV' is not a supported type",
        ),
        (lambda d: d["zone"]["records"][0].update(value="::1"), r"zone\.records\[0\]\.value: '::1'"),
        (
            lambda d: d["zone"]["records"][2].update(value="mail"),
            r"zone\.records\[2\]\.value: 'mail': expected 'PREFERENCE HOST'",
        ),
        (
            lambda d: d["zone"]["records"].append({"name": "video", "type": "A", "value": "1.2.3.4"}),
            r"routed name",
        ),
        (
            lambda d: d["zone"]["records"].append({"name": "www", "type": "A", "value": "1.2.3.4"}),
            r"has a CNAME and other",
        ),
        (lambda d: d["zone"]["soa"].update(serial=-1), r"zone\.soa\.serial: -1"),
        (lambda d: d["zone"].update(ns=["bad name!"]), r"zone\.ns\[0\]: 'bad name!'"),
        (lambda d: d["dns"].update(answer_count=0), r"dns\.answer_count: 0: expected 1\.\.1000"),
        (lambda d: d["dns"].update(listen="nowhere"), r"dns\.listen: 'nowhere'"),
        (lambda d: d["dns"]["health"].update(fall="two"), r"dns\.health\.fall: 'two': expected an integer"),
        (lambda d: d["dns"]["health"].update(interval=0), r"dns\.health\.interval: 0"),
        (lambda d: d["regions"].update(mars={"lat": 1}), r"regions\.mars\.lon: is required"),
        (lambda d: d.pop("zone"), r"zone: is required"),
        (lambda d: d.update(edges=[]), r"edges: at least one edge"),
        (lambda d: d.update(extra=1), r"extra: unknown key"),
    ],
)
def test_errors_name_key_and_value(demo: dict[str, Any], edit: Any, message: str) -> None:
    data = copy.deepcopy(demo)
    edit(data)
    with pytest.raises(TopologyError, match=message) as info:
        parse_topology(data, source="t.yaml")
    assert str(info.value).startswith("t.yaml: ")
    assert isinstance(info.value, ValueError)


def test_error_has_structured_fields(demo: dict[str, Any]) -> None:
    demo["edges"][1]["region"] = "eu-wset"
    with pytest.raises(TopologyError) as info:
        parse_topology(demo, source="t.yaml")
    assert (info.value.source, info.value.key, info.value.value) == ("t.yaml", "edges[1].region", "eu-wset")


def test_fallback_spread_and_trusted_proxies(demo: dict[str, Any]) -> None:
    del demo["dns"]["fallback"]  # spread is the default
    demo["dns"]["trusted_proxies"] = ["127.0.0.0/8"]
    topo = parse_topology(demo)
    assert topo.dns.fallback is None
    assert topo.dns.trusted_proxies == (ipaddress.ip_network("127.0.0.0/8"),)


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(TopologyError, match="cannot read"):
        load_topology(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("zone: [unclosed\n")
    with pytest.raises(TopologyError, match="not valid YAML"):
        load_topology(bad)
    bad.write_text("- a list\n")
    with pytest.raises(TopologyError, match="mapping at the top level"):
        load_topology(bad)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1GiB", 1 << 30),
        ("512MiB", 512 << 20),
        ("2G", 2_000_000_000),
        ("1000", 1000),
        (4096, 4096),
        ("1.5KiB", 1536),
    ],
)
def test_parse_size(text: str | int, size: int) -> None:
    assert parse_size(text) == size


def test_format_size_round_trip() -> None:
    for n in (1 << 30, 96 << 20, 1234, 0):
        assert parse_size(format_size(n)) == n
    assert format_size(1 << 30) == "1GiB"
