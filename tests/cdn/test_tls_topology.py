"""A topology with a `tls:` section: parsing, the plan's flags and URLs, the compose file, `cdn status`."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from cdn.compose import TLS_DIR, manifest_url, render_compose
from cdn.launcher import Supervisor, resolve_argv
from cdn.plan import Health, ServiceSpec, plan_services
from cdn.status import collect_status
from cdn.topology import TlsSettings, Topology, TopologyError, load_topology, parse_topology
from cdn.up import try_commands
from tests.conftest import free_port

DEMO = Path(__file__).resolve().parents[2] / "topology.yaml"
TLS = {"cert": "/pki/cert.pem", "key": "/pki/key.pem", "ca": "/pki/ca.pem"}


@pytest.fixture
def demo() -> dict[str, Any]:
    data = yaml.safe_load(DEMO.read_text())
    assert isinstance(data, dict)
    return data


def with_tls(data: dict[str, Any], tls: object = None) -> dict[str, Any]:
    out = copy.deepcopy(data)
    out["tls"] = dict(TLS) if tls is None else tls
    return out


def argv_of(specs: list[ServiceSpec], name: str) -> list[str]:
    return list(next(s for s in specs if s.name == name).argv)


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


# ---------------------------------------------------------------- parsing


def test_without_the_section_everything_stays_http(demo: dict[str, Any]) -> None:
    topo = parse_topology(demo)
    assert topo.tls is None
    assert all(e.url.startswith("http://") and e.health_url.startswith("http://") for e in topo.edges)


def test_the_section_makes_edges_https(demo: dict[str, Any]) -> None:
    topo = parse_topology(with_tls(demo))
    assert topo.tls == TlsSettings(
        cert=Path("/pki/cert.pem"), key=Path("/pki/key.pem"), ca=Path("/pki/ca.pem")
    )
    assert topo.edge("eu-west-1").url == "https://127.0.1.2:8080"
    assert topo.edge("eu-west-1").health_url == "https://127.0.1.2:8080/healthz"


def test_paths_are_relative_to_the_topology_file(demo: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "conf" / "topology.yaml"
    path.parent.mkdir()
    path.write_text(
        yaml.safe_dump(with_tls(demo, {"cert": "pki/cert.pem", "key": "/abs/key.pem", "ca": "ca.pem"}))
    )
    tls = load_topology(path).tls
    assert tls is not None
    assert (tls.cert, tls.key, tls.ca) == (
        path.parent / "pki/cert.pem",
        Path("/abs/key.pem"),
        path.parent / "ca.pem",
    )


@pytest.mark.parametrize(
    ("tls", "message"),
    [
        ({"cert": "c.pem", "key": "k.pem"}, "t: tls.ca: is required"),
        ({"key": "k.pem", "ca": "ca.pem"}, "t: tls.cert: is required"),
        ({**TLS, "verify": False}, "t: tls.verify: unknown key"),
        ({**TLS, "key": ""}, "t: tls.key: '': expected a non-empty string"),
        (None, "t: tls: expected a mapping, got None"),
    ],
)
def test_bad_sections_name_the_key(demo: dict[str, Any], tls: object, message: str) -> None:
    data = copy.deepcopy(demo)
    data["tls"] = tls
    with pytest.raises(TopologyError) as info:
        parse_topology(data, source="t")
    assert str(info.value).startswith(message)


# ---------------------------------------------------------------- the plan and what `cdn up` prints


def test_plan_gives_edges_and_router_the_tls_flags(demo: dict[str, Any], tmp_path: Path) -> None:
    topo = parse_topology(with_tls(demo))
    specs = plan_services(topo, tmp_path)
    shield, child = argv_of(specs, "eu-west-shield"), argv_of(specs, "eu-west-1")
    for argv in (shield, child):
        assert (option(argv, "--tls-cert"), option(argv, "--tls-key")) == ("/pki/cert.pem", "/pki/key.pem")
        assert option(argv, "--origin").startswith("http://")  # the origin stays plain http
    assert "--parent" not in shield
    assert "--upstream-ca" not in shield
    assert (option(child, "--parent"), option(child, "--upstream-ca")) == (
        "https://127.0.1.1:8080",
        "/pki/ca.pem",
    )
    assert option(argv_of(specs, "dns"), "--health-ca") == "/pki/ca.pem"
    edges = [s for s in specs if s.kind == "edge"]
    assert all(s.url.startswith("https://") and s.ca == Path("/pki/ca.pem") for s in edges)
    assert all(s.url.startswith("http://") and s.ca is None for s in specs if s.kind != "edge")


def test_plan_without_tls_has_no_tls_flags(demo: dict[str, Any], tmp_path: Path) -> None:
    words = {w for s in plan_services(parse_topology(demo), tmp_path) for w in s.argv}
    assert not words & {"--tls-cert", "--tls-key", "--upstream-ca", "--health-ca"}


def test_try_commands_use_https_and_the_ca(demo: dict[str, Any]) -> None:
    lines = try_commands(parse_topology(with_tls(demo), source="topo.yaml"), Path("var"))
    players = [line for line in lines if "player/cli.py" in line]
    assert players
    assert all("https://video.example.test:8080/" in p and "--ca /pki/ca.pem" in p for p in players)
    assert "curl -sI --cacert /pki/ca.pem https://127.0.1.1:8080/" in "\n".join(lines)
    assert any(
        line.startswith("cdn loadtest --topology topo.yaml --scheme https --ca /pki/ca.pem") for line in lines
    )


# ---------------------------------------------------------------- compose


def test_compose_mounts_the_files_and_passes_container_paths(demo: dict[str, Any]) -> None:
    data = with_tls(demo)
    doc = render_compose(parse_topology(data), data)
    child = doc["services"]["eu-west-1"]
    argv = child["command"]
    assert option(argv, "--tls-cert") == str(TLS_DIR / "cert.pem")
    assert (option(argv, "--parent"), option(argv, "--upstream-ca")) == (
        "https://eu-west-shield:8080", str(TLS_DIR / "ca.pem"),
    )  # fmt: skip
    assert f"/pki/key.pem:{TLS_DIR / 'key.pem'}:ro" in child["volumes"]
    assert child["healthcheck"]["test"] == [
        "CMD", "cdn", "check", "https://eu-west-1:8080/healthz", "--ca", str(TLS_DIR / "ca.pem"),
    ]  # fmt: skip
    assert "environment" not in child  # no SSL_CERT_FILE: the container's system CAs stay as they are
    assert option(doc["services"]["dns"]["command"], "--health-ca") == str(TLS_DIR / "ca.pem")
    player = doc["services"]["player-eu-west"]["command"]
    assert player[1].startswith("https://")
    assert option(player, "--ca") == str(TLS_DIR / "ca.pem")
    assert manifest_url(parse_topology(data), "x").startswith("https://")


def test_a_tls_compose_file_validates_against_the_compose_spec(
    demo: dict[str, Any], shared_dir: Path
) -> None:
    import json

    import jsonschema

    data = with_tls(demo)
    doc = render_compose(parse_topology(data), data)
    schema = json.loads((shared_dir / "compose-schema" / "compose-spec.json").read_text())
    errors = [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(doc)]
    assert not errors, errors[:5]


# ---------------------------------------------------------------- a real TLS edge


@pytest.fixture
def tls_topology(ca: trustme.CA, tmp_path: Path) -> Path:
    """A one-edge TLS topology on loopback (free ports), its files next to it, relative paths."""
    leaf = ca.issue_cert("video.cdn.test", "127.0.0.1")
    leaf.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    leaf.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    data = {
        "zone": {"name": "cdn.test", "routed": ["video"]},
        "dns": {"listen": f"127.0.0.1:{free_port()}", "http": f"127.0.0.1:{free_port()}"},
        "origin": {"listen": f"127.0.0.1:{free_port()}"},
        "regions": {"eu-west": {"lat": 48.86, "lon": 2.35}},
        "edges": [{"name": "e1", "region": "eu-west", "address": "127.0.0.1", "port": free_port()}],
        "tls": {"cert": "cert.pem", "key": "key.pem", "ca": "ca.pem"},
    }
    path = tmp_path / "topology.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.network
def test_status_probes_a_tls_edge_trusting_the_ca(tls_topology: Path, tmp_path: Path) -> None:
    topo: Topology = load_topology(tls_topology)
    state = tmp_path / "state"
    edge = next(s for s in plan_services(topo, state, topology_path=tls_topology) if s.kind == "edge")
    sup = Supervisor(state)
    try:
        sup.start(edge)
        sup.wait_healthy([edge.name], timeout=30)  # the launcher's health probe over https
        rows = {r.name: r for r in collect_status(state, tls_topology)}
        health_check = _compose_health_check(topo, edge, tls_topology)
        checked = subprocess.run(health_check, capture_output=True, text=True, timeout=60, check=False)
    finally:
        sup.close()
    assert checked.returncode == 0, checked.stderr
    assert rows["e1"].health is Health.UP
    assert rows["e1"].url == edge.url
    assert edge.url.startswith("https://127.0.0.1:")
    assert rows["e1"].counters is not None  # /metrics read over https too


def _compose_health_check(topo: Topology, edge: ServiceSpec, path: Path) -> list[str]:
    """The edge's compose health check as a host command: the container's URL and CA path swapped
    for the edge's own health URL and the topology's CA file."""
    test = render_compose(topo, yaml.safe_load(path.read_text()))["services"][edge.name]["healthcheck"][
        "test"
    ]
    assert test[:3] == ["CMD", "cdn", "check"]
    assert topo.tls is not None
    swap = {
        f"https://{edge.name}:{edge.listen.port}/healthz": edge.health_url,
        str(TLS_DIR / "ca.pem"): str(topo.tls.ca),
    }
    return resolve_argv([swap.get(word, word) for word in test[1:]])


def test_the_load_test_follows_the_topology_scheme_and_trusts_its_ca(tls_topology: Path) -> None:
    from types import SimpleNamespace

    from cdn.loadreport import _config

    def config(**changes: object) -> Any:
        args = {"topology": tls_topology, "scheme": None, "ca": None, "edge": None, "store": None, "videos": 1,
                "players": 1, "duration": 1.0, "zipf": 1.0, "ramp": 0.0, "speed": 1.0, **changes}  # fmt: skip
        return _config(SimpleNamespace(**args))[0]

    port = load_topology(tls_topology).edges[0].port
    cfg = config()
    assert cfg.edges == (f"https://127.0.0.1:{port}",)  # not https://https://...
    assert cfg.ca == tls_topology.parent / "ca.pem"
    assert config(scheme="http").edges == (f"http://127.0.0.1:{port}",)
    assert config(scheme="http").ca is None


def test_try_commands_take_viewer_addresses_from_the_client_networks(demo: dict[str, Any]) -> None:
    moved = copy.deepcopy(demo)
    moved["clients"] = [
        {"network": "127.11.1.0/24", "region": "eu-west"},
        {"network": "127.11.2.0/24", "region": "us-east"},
    ]
    lines = try_commands(parse_topology(moved), Path("var"))
    players = [line for line in lines if "player/cli.py" in line]
    assert [p.split("--source-ip ")[1] for p in players] == ["127.11.1.20", "127.11.2.20"]
    assert lines[0].endswith(" -b 127.11.1.20")  # dig from the first region too
    moved["clients"] = [{"network": "fd00:10:1::/48", "region": "eu-west"}]
    lines = try_commands(parse_topology(moved), Path("var"))
    assert [
        line for line in lines if "player/cli.py" in line and "--source-ip" not in line
    ]  # no IPv4 viewer: plain
