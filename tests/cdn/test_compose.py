"""docker-compose.yml, checked statically (no Docker engine here): schema, topology, commands."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from cdn.compose import CONTAINER_STATE, TLS_DIR, container_argv, render_compose, render_compose_text
from cdn.plan import plan_services
from cdn.topology import Topology, load_topology, parse_topology

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = {"cdn": "cdn.cli", "cdn-origin": "origin.cli", "cdn-edge": "edge.cli", "cdn-dns": "dnsrouter.cli",
           "cdn-player": "player.cli"}  # fmt: skip


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(doc, dict)
    return doc


@pytest.fixture(scope="module")
def topology() -> Topology:
    return load_topology(ROOT / "topology.yaml")


def test_validates_against_the_compose_spec(compose: dict[str, Any], shared_dir: Path) -> None:
    import jsonschema

    schema = json.loads((shared_dir / "compose-schema" / "compose-spec.json").read_text())
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(compose), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:10])


def test_is_generated_from_the_current_topology(topology: Topology) -> None:
    raw = yaml.safe_load((ROOT / "topology.yaml").read_text())
    expected = render_compose_text(topology, raw)
    assert (ROOT / "docker-compose.yml").read_text() == expected, (
        "docker-compose.yml is out of date: run `cdn compose -o docker-compose.yml`"
    )


def test_services_match_the_plan(compose: dict[str, Any], topology: Topology) -> None:
    services = compose["services"]
    for spec in plan_services(topology, CONTAINER_STATE):
        svc = services[spec.name]
        assert svc["command"] == container_argv(spec, topology)
        assert svc["command"][0] == spec.argv[0]
        port = spec.listen.port
        published = {p.split("/")[0] for p in svc["ports"]}
        assert f"{spec.listen.host}:{port}:{port}" in published  # the topology's address and port on the host
        assert set(spec.depends_on) <= set(svc.get("depends_on", {}))
    planned = {s.name for s in plan_services(topology, CONTAINER_STATE)}
    extra = set(services) - planned
    assert extra == {"sample"} | {f"player-{r}" for r in topology.regions}


def test_edges_sit_on_their_region_network(compose: dict[str, Any], topology: Topology) -> None:
    nets = {
        name: ipaddress.ip_network(n["ipam"]["config"][0]["subnet"])
        for name, n in compose["networks"].items()
    }
    for edge in topology.edges:
        attached = compose["services"][edge.name]["networks"]
        address = ipaddress.ip_address(attached[f"region-{edge.region}"]["ipv4_address"])
        assert address in nets[f"region-{edge.region}"]
        argv = compose["services"][edge.name]["command"]
        if edge.parent:
            assert (
                argv[argv.index("--parent") + 1] == f"http://{edge.parent}:{topology.edge(edge.parent).port}"
            )


def test_container_topology_routes_each_player_to_its_region(
    compose: dict[str, Any], topology: Topology
) -> None:
    inner = parse_topology(yaml.safe_load(compose["configs"]["topology"]["content"]))
    assert [(e.name, e.region, e.port, e.parent) for e in inner.edges] == [
        (e.name, e.region, e.port, e.parent) for e in topology.edges
    ]
    for e in inner.edges:  # the router answers with the address the containers can reach
        assert compose["services"][e.name]["networks"][f"region-{e.region}"]["ipv4_address"] == e.address
    for region in topology.regions:
        player = compose["services"][f"player-{region}"]
        source = ipaddress.ip_address(player["networks"][f"region-{region}"]["ipv4_address"])
        matches = [c for c in inner.clients if source in c.network]
        best = max(matches, key=lambda c: c.network.prefixlen)
        assert best.region == region
        dns = player["command"][player["command"].index("--dns") + 1]
        assert dns.endswith(f":{topology.dns.listen.port}")
        assert (
            compose["services"]["dns"]["networks"][f"region-{region}"]["ipv4_address"]
            == dns.rsplit(":", 1)[0]
        )


@pytest.fixture(scope="module")
def tls_compose() -> dict[str, Any]:
    """The compose document of topology.yaml with a `tls:` section (host paths of its PEM files)."""
    raw = yaml.safe_load((ROOT / "topology.yaml").read_text())
    raw["tls"] = {"cert": "/pki/cert.pem", "key": "/pki/key.pem", "ca": "/pki/ca.pem"}
    return render_compose(parse_topology(raw), raw)


def _healthchecks(compose: dict[str, Any]) -> dict[str, list[str]]:
    return {
        name: svc["healthcheck"]["test"] for name, svc in compose["services"].items() if "healthcheck" in svc
    }


def test_http_health_checks_need_no_ca(compose: dict[str, Any], topology: Topology) -> None:
    checks = _healthchecks(compose)
    assert set(checks) == {s.name for s in plan_services(topology, CONTAINER_STATE)}
    for name, test in checks.items():
        port = compose["services"][name]["ports"][-1].split(":")[2]
        assert test == ["CMD", "cdn", "check", f"http://127.0.0.1:{port}/healthz"]


def test_tls_edges_are_checked_over_https_with_the_mounted_ca(
    tls_compose: dict[str, Any], topology: Topology
) -> None:
    checks = _healthchecks(tls_compose)
    for edge in topology.edges:
        assert checks[edge.name] == ["CMD", "cdn", "check", f"https://{edge.name}:{edge.port}/healthz",
                                     "--ca", str(TLS_DIR / "ca.pem")]  # fmt: skip
        assert f"/pki/ca.pem:{TLS_DIR / 'ca.pem'}:ro" in tls_compose["services"][edge.name]["volumes"]
    assert "--ca" not in checks["origin"] + checks["dns"]  # plain http on their own port


@pytest.mark.parametrize("doc", ["compose", "tls_compose"])
def test_no_container_replaces_its_system_ca_store(doc: str, request: pytest.FixtureRequest) -> None:
    for name, svc in request.getfixturevalue(doc)["services"].items():
        env = svc.get("environment", {})
        assert not {"SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE"} & set(env), name


def _commands(compose: dict[str, Any]) -> list[list[str]]:
    out = []
    for svc in compose["services"].values():
        out.append(svc["command"])
        if "healthcheck" in svc:
            out.append(svc["healthcheck"]["test"][1:])
    return out


@cache
def _help(script: str, sub: str | None) -> str:
    argv = [sys.executable, "-m", SCRIPTS[script], *([sub] if sub else []), "--help"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False, cwd=ROOT)
    assert out.returncode == 0, f"{' '.join(argv[2:])} failed: {out.stderr[-500:]}"
    return out.stdout


@pytest.mark.parametrize("doc", ["compose", "tls_compose"])
def test_every_command_is_our_script_with_existing_options(doc: str, request: pytest.FixtureRequest) -> None:
    for command in _commands(request.getfixturevalue(doc)):
        script = command[0]
        assert script in SCRIPTS, f"{command}: not one of our console scripts"
        sub = command[1] if len(command) > 1 and command[1].isalpha() else None
        text = _help(script, sub)
        for option in (a for a in command if a.startswith("--")):
            assert option in text, f"{script} {sub or ''}: no option {option} (command {command})"
