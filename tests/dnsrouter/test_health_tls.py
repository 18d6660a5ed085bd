"""https health URLs: the poller verifies them against the system CAs plus `cdn-dns serve --health-ca`.

A CA made with trustme; a real edge serving viewers (and /healthz) over TLS on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from cdn.hostport import HostPort
from cdn.topology import HealthSettings, parse_topology
from dnsrouter.cli import main
from dnsrouter.config import DnsRouterConfig, parse_args
from dnsrouter.errors import ConfigError
from dnsrouter.health import HealthPoller, Probe, health_tls_context
from dnsrouter.policy import Health, Router
from edge.config import EdgeConfig
from tests.dnsrouter.conftest import DEMO
from tests.edge.conftest import EdgeThread


@pytest.fixture
def tls_edge(ca: trustme.CA, tmp_path: Path) -> Iterator[EdgeThread]:
    leaf = ca.issue_cert("127.0.0.1")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    config = EdgeConfig(origin="http://127.0.0.1:1", listen=HostPort("127.0.0.1", 0), cache_dir=tmp_path / "c",
                        cache_size=1024**2, tls_cert=cert, tls_key=key)  # fmt: skip
    edge = EdgeThread(config, time.time)
    yield edge
    edge.stop()


def _poll(demo_data: dict[str, Any], url: str, ca_file: Path | None) -> Probe:
    topology = parse_topology({**demo_data, "edges": [{**demo_data["edges"][2], "health_url": url}]})
    settings = HealthSettings(interval=1.0, timeout=2.0, fall=1, rise=1)
    tls = health_tls_context(ca_file) if ca_file is not None else None
    poller = HealthPoller(topology.edges, settings, Router(topology.edges, answer_count=1), tls=tls)

    async def once() -> None:
        async with poller.client() as client:
            await poller.poll_once(client)

    asyncio.run(once())
    tracker = poller.trackers[topology.edges[0].name]
    assert tracker.last is not None
    assert tracker.health is (Health.UP if tracker.last.ok else Health.DOWN)
    return tracker.last


@pytest.mark.network
def test_an_https_health_url_is_verified_with_the_health_ca(
    demo_data: dict[str, Any], tls_edge: EdgeThread, ca_file: Path
) -> None:
    url = f"https://127.0.0.1:{tls_edge.server.port}/healthz"
    assert _poll(demo_data, url, ca_file).ok
    refused = _poll(demo_data, url, None)  # the system CAs only: the test CA is unknown
    assert not refused.ok
    assert "certificate verify failed" in (refused.error or "")


def test_health_ca_option(ca_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = DnsRouterConfig.from_args(
        parse_args(["serve", "--topology", str(DEMO), "--health-ca", str(ca_file)])
    )
    assert config.health_ca == ca_file
    assert DnsRouterConfig.from_args(parse_args(["serve", "--topology", str(DEMO)])).health_ca is None
    missing = tmp_path / "missing.pem"
    assert main(["serve", "--topology", str(DEMO), "--health-ca", str(missing)]) == 2
    assert f"cdn-dns: --health-ca {missing}: cannot read it: No such file" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "words"),
    [(b"not a certificate\n", "no PEM certificate in it"), (None, "no CA certificate in it (no CA:TRUE)")],
)
def test_a_bad_health_ca_is_a_config_error(
    tmp_path: Path, ca: trustme.CA, content: bytes | None, words: str
) -> None:
    path = tmp_path / "bad.pem"
    if content is None:
        ca.issue_cert("edge.example").cert_chain_pems[0].write_to_path(str(path))  # a leaf, not a CA
    else:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=re.escape(f"--health-ca {path}: {words}")):
        health_tls_context(path)
