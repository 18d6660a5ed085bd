"""End to end over TLS: `cdn up` with a `tls:` copy of topology.yaml, players, `cdn status`, `cdn loadtest`.

The copy moves every address off topology.yaml's (services on 127.0.1N.x instead of 127.0.N.x, edges
on port 8443, client networks 127.11.N.0/24 instead of 127.10.N.0/24), so it never meets the http
module or a running demo; the module skips when its addresses are busy all the same. Its `tls:`
section names files (relative paths) from the session's trustme CA: one certificate for the names
players use (video.example.test, its CNAME target video.cdn.test) and every edge's address (health
checks, a shield's child, `cdn status` and the router's redirects connect by address).
One `cdn up` (16 s sample, 2 s chunks) serves the module; it is stopped with SIGINT at the end.
"""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from cdn.topology import Topology, load_topology
from tests.e2e.cdnup import CDN, check_chunks, finish, play, running_cdn_up, served_by, skip_when_busy

pytestmark = [pytest.mark.slow, pytest.mark.network]

ROOT = Path(__file__).resolve().parents[2]
EDGE_PORT = 8443
EU, US = "127.11.1.20", "127.11.2.20"  # in the shifted client networks of eu-west and us-east
_SERVICE = re.compile(r"^127\.0\.(\d+)\.(\d+)$")
_CLIENTS = re.compile(r"^127\.10\.(\d+)\.0/24$")


def shifted(address: str) -> str:
    """127.0.N.M -> 127.0.(N+10).M: the copy's address of a service of topology.yaml."""
    match = _SERVICE.match(address)
    assert match, f"topology.yaml has a service on {address}: shift it too"
    return f"127.0.{int(match[1]) + 10}.{match[2]}"


def tls_copy(raw: dict[str, Any], state: Path) -> dict[str, Any]:
    """topology.yaml on shifted addresses, the origin store in `state`, a `tls:` section (pki/...)."""
    doc = copy.deepcopy(raw)
    for edge in doc["edges"]:
        edge["address"], edge["port"] = shifted(edge["address"]), EDGE_PORT
    for section, keys in (("dns", ("listen", "http")), ("origin", ("listen",))):
        for key in keys:
            host, port = doc[section][key].rsplit(":", 1)
            doc[section][key] = f"{shifted(host)}:{port}"
    doc["origin"]["store"] = str(state / "store")  # where `cdn up` puts it: `cdn loadtest` packages there
    for client in doc["clients"]:
        client["network"] = _CLIENTS.sub(r"127.11.\1.0/24", client["network"])
    doc["tls"] = {"cert": "pki/edge-chain.pem", "key": "pki/edge-key.pem", "ca": "pki/test-ca.pem"}
    return doc


def write_pki(ca: trustme.CA, folder: Path, topology: Topology) -> None:
    """The edges' certificate (content and routed names, every edge address), its key, the CA."""
    folder.mkdir()
    names = ["video.example.test", "video.cdn.test", *(e.address for e in topology.edges)]
    leaf = ca.issue_cert(*names)
    leaf.cert_chain_pems[0].write_to_path(str(folder / "edge-chain.pem"))
    leaf.private_key_pem.write_to_path(str(folder / "edge-key.pem"))
    ca.cert_pem.write_to_path(str(folder / "test-ca.pem"))


@pytest.fixture(scope="module")
def cdn(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CDN]:
    conf, state = tmp_path_factory.mktemp("tls-topology"), tmp_path_factory.mktemp("cdn-up-tls")
    path = conf / "topology.yaml"
    path.write_text(yaml.safe_dump(tls_copy(yaml.safe_load((ROOT / "topology.yaml").read_text()), state)))
    topology = load_topology(path)
    write_pki(ca, conf / "pki", topology)
    skip_when_busy(topology, state, "the TLS copy of topology.yaml")
    with running_cdn_up(path, state, stop_signal=signal.SIGINT) as running:
        yield running


def ca_of(cdn: CDN) -> str:
    assert cdn.topology.tls is not None
    return str(cdn.topology.tls.ca)


def run_cdn(*argv: str) -> subprocess.CompletedProcess[str]:
    """A `cdn` command as a subprocess, on a wide terminal (the status table stays on one line per row)."""
    return subprocess.run([sys.executable, "-m", "cdn.cli", *argv], capture_output=True, text=True, timeout=120,
                          check=False, cwd=ROOT, env={**os.environ, "COLUMNS": "200"})  # fmt: skip


def test_players_play_the_sample_over_https_from_their_region(cdn: CDN, tmp_path: Path) -> None:
    ca = ("--ca", ca_of(cdn))
    eu = play(cdn, EU, tmp_path / "eu.json", speed=8, extra=ca)
    us = play(cdn, US, tmp_path / "us.json", speed=8, extra=ca)
    docs = {"eu-west": finish(eu, tmp_path / "eu.json"), "us-east": finish(us, tmp_path / "us.json")}
    for region, doc in docs.items():
        assert (doc["url"].startswith(f"https://video.example.test:{EDGE_PORT}/"), doc["ended"]) == (
            True,
            "end",
        )
        check_chunks(cdn, doc)  # every chunk played, in order, byte-identical to the origin's
        assert (doc["summary"]["stall_count"], doc["summary"]["stall_time"]) == (0, 0)
        assert all(c["url"].startswith("https://video.example.test:") for c in doc["chunks"])
        assert {cdn.topology.edge(name).region for name in served_by(cdn.topology, doc)} == {region}
    assert served_by(cdn.topology, docs["us-east"]) == {"us-east-1"}


def test_a_player_without_the_ca_fails_clearly(cdn: CDN, tmp_path: Path) -> None:
    proc = play(cdn, EU, tmp_path / "eu.json", speed=8)
    out = proc.communicate(timeout=60)[0].decode(errors="replace")
    assert proc.returncode not in (0, None), out
    assert "certificate verify failed" in out
    assert "--ca" in out  # the hint: pass the CA that signed it
    assert "Traceback" not in out


def test_status_shows_every_edge_up_over_https(cdn: CDN) -> None:
    out = run_cdn("status", "--state-dir", str(cdn.state))
    assert out.returncode == 0, out.stdout + out.stderr
    rows = {line.split("│")[1].strip(): line for line in out.stdout.splitlines() if line.count("│") > 3}
    for edge in cdn.topology.edges:
        assert " up " in rows[edge.name], out.stdout
        assert f"https://{edge.address}:{EDGE_PORT}" in rows[edge.name]
    assert "%" in rows["us-east-1"]  # it served the sample above over https: it has a hit ratio


def test_loadtest_over_https_has_no_errors(cdn: CDN, tmp_path: Path) -> None:
    report = tmp_path / "load.json"
    out = run_cdn("loadtest", "--topology", str(cdn.topology.source), "--players", "10", "--duration", "3",
                  "--videos", "1", "--ramp", "1", "--json", str(report), "--quiet")  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    doc = json.loads(report.read_text())
    assert doc["requests"] > 0
    assert (doc["errors"], doc["error_samples"]) == (0, [])
    assert doc["connections"] >= 10  # each player's handshake(s), counted
    assert all(url.startswith("https://") for url in doc["edges"])
    assert sum(e.get("requests", 0) for e in doc["edges"].values()) > 0
