"""`cdn loadtest` against TLS edges: one client context per run, the player's names checked, errors in words.

A CA and an edge certificate made with trustme (names `video.cdn.test`, `video.example.test`,
`localhost`; deliberately not 127.0.0.1), a real TLS edge in a thread in front of the real origin app
serving a packaged store, and, for the DNS mode, the real DNS router from a topology file.
"""

from __future__ import annotations

import asyncio
import copy
import json
import shutil
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from cdn.asgiserver import serve_in_thread
from cdn.cli import main
from cdn.hostport import HostPort
from cdn.loadclient import Connection, TLSFailure
from cdn.loadtest import LoadConfig, client_context, edge_target, fetch_once, host_header, run_load
from cdn.topology import parse_topology
from edge.config import EdgeConfig
from origin.app import create_app
from origin.config import ServeConfig
from tests.conftest import free_port
from tests.dnsrouter.conftest import DEMO, start_router, stop_router
from tests.edge.conftest import EdgeThread

VIDEO = "loadtest-1"
NAMES = ("video.cdn.test", "video.example.test", "localhost")  # no IP: the name checked is never the IP


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cert.pem/key.pem for NAMES, ca.pem, and --ca files that cannot be used."""
    d = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    leaf = ca.issue_cert(*NAMES)
    leaf.cert_chain_pems[0].write_to_path(str(d / "cert.pem"))
    leaf.private_key_pem.write_to_path(str(d / "key.pem"))
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    (d / "garbage.pem").write_bytes(b"not a certificate\n")
    return d


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, packaged_store: Path) -> Path:
    """A store holding the packaged test clip as `loadtest-1` (what `cdn loadtest --videos 1` asks for)."""
    root = tmp_path_factory.mktemp("lt-store")
    shutil.copytree(packaged_store / "demo", root / VIDEO)
    return root


@pytest.fixture(scope="module")
def origin_url(store: Path) -> Iterator[str]:
    with serve_in_thread(create_app(ServeConfig(store=store, manifest_max_age=0))) as url:
        yield url


@pytest.fixture(scope="module")
def tls_edge(origin_url: str, pki: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeThread]:
    config = EdgeConfig(origin=origin_url, listen=HostPort("127.0.0.1", 0), cache_size=64 * 1024**2,
                        cache_dir=tmp_path_factory.mktemp("cache"), name="tls-edge", tls_cert=pki / "cert.pem",
                        tls_key=pki / "key.pem")  # fmt: skip
    edge = EdgeThread(config, time.time)
    yield edge
    edge.stop()


@pytest.fixture(scope="module")
def https_url(tls_edge: EdgeThread, store: Path, pki: Path) -> str:
    """The TLS edge by name, every file of the video already cached there (the runs below are all HITs)."""
    url = f"https://localhost:{tls_edge.server.port}"
    files = _files(store)

    async def warm() -> None:
        conn = Connection(
            "127.0.0.1", tls_edge.server.port, tls=client_context(pki / "ca.pem"), server_name="localhost"
        )
        try:
            for path in files:
                assert (await conn.get(path, time_limit=10)).status == 200
        finally:
            await conn.close()

    asyncio.run(warm())
    return url


def _files(store: Path) -> dict[str, bytes]:
    """Every file of the video, by its URL path, with its bytes in the store."""
    paths = sorted(p for p in (store / VIDEO).iterdir() if p.suffix in (".mpd", ".m4s", ".mp4"))
    return {f"/videos/{VIDEO}/{p.name}": p.read_bytes() for p in paths}


def _handshakes(edge: EdgeThread) -> int:
    counters = edge.call(lambda: edge.server.tls_counters)
    assert counters is not None
    return int(counters.handshakes)


# -- targets and the client context (pure) -----------------------------------------------------


@pytest.mark.parametrize(
    ("url", "dns", "expected", "host"),
    [
        ("http://127.0.0.1:8080", False, ("127.0.0.1", 8080, None), "video.cdn.test"),
        ("https://localhost:8443", False, ("localhost", 8443, "localhost"), "localhost:8443"),
        ("https://edge.example", False, ("edge.example", 443, "edge.example"), "edge.example"),
        ("https://[::1]:8443/", False, ("::1", 8443, "::1"), "[::1]:8443"),
        ("https://127.0.1.1:8443", True, ("127.0.1.1", 8443, "video.cdn.test"), "video.cdn.test"),
    ],
)
def test_the_tls_name_is_the_host_a_player_would_use(
    url: str, dns: bool, expected: tuple[str, int, str | None], host: str
) -> None:
    cfg = LoadConfig(
        edges=(url,), players=1, duration=1, videos=("v",), dns=("127.0.0.1", 5353) if dns else None
    )
    target = edge_target(url, cfg)
    assert (target.host, target.port, target.tls_name) == expected
    assert host_header(cfg, target) == host


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"edges": ("ftp://e:21",)}, "expected http://HOST:PORT or https://HOST"),
        ({"edges": ("https://e:99999",)}, "expected http://HOST:PORT or https://HOST"),
        ({"edges": ("http://e:80",), "ca": Path("ca.pem")}, "--ca ca.pem is for https edges"),
        (
            {"edges": ("http://a:80", "https://b:443"), "dns": ("127.0.0.1", 53)},
            "must all be http:// or all https://",
        ),
    ],
)
def test_config_refuses_bad_edge_urls_and_a_useless_ca(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LoadConfig(**{"players": 1, "duration": 1, "videos": ("v",), **fields})


def test_client_context_checks_names_and_loads_the_ca(pki: Path) -> None:
    for ctx in (client_context(None), client_context(pki / "ca.pem")):
        assert ctx.verify_mode is ssl.CERT_REQUIRED
        assert ctx.check_hostname
    assert (
        client_context(pki / "ca.pem").cert_store_stats()["x509_ca"]
        > client_context(None).cert_store_stats()["x509_ca"]
    )
    with pytest.raises(ValueError, match="no PEM certificate in it"):
        client_context(pki / "garbage.pem")
    with pytest.raises(ValueError, match="no CA certificate in it"):
        client_context(pki / "cert.pem")  # the edge's own certificate is not a CA


# -- the client over TLS -----------------------------------------------------------------------


@pytest.mark.network
def test_keep_alive_over_tls_and_the_bytes_are_the_stores(https_url: str, store: Path, pki: Path) -> None:
    files = _files(store)
    assert len(files) >= 4  # the manifest, inits and chunks
    port = int(https_url.rsplit(":", 1)[1])

    async def go() -> dict[str, bytes]:
        conn = Connection("127.0.0.1", port, tls=client_context(pki / "ca.pem"), server_name="video.cdn.test")
        try:
            got = {p: (await conn.get(p, time_limit=10, keep_body=True)).body for p in files}
        finally:
            await conn.close()
        assert conn.opened == 1  # one handshake for every file
        return got

    assert asyncio.run(go()) == files


@pytest.mark.network
@pytest.mark.parametrize(
    ("url", "ca", "message"),
    [
        ("https://localhost:{port}", None, "TLS: certificate verify failed: unable to get local issuer "
         "certificate; pass the CA that signed it with --ca (for localhost)"),
        ("https://127.0.0.1:{port}", "ca.pem", "TLS: certificate verify failed: IP address mismatch"),
    ],
)  # fmt: skip
def test_a_refused_certificate_is_a_tls_failure_in_words(
    tls_edge: EdgeThread, pki: Path, url: str, ca: str | None, message: str
) -> None:
    url = url.format(port=tls_edge.server.port)
    cfg = LoadConfig(edges=(url,), players=1, duration=1, videos=("v",))
    tls = client_context(pki / ca if ca else None)
    with pytest.raises(TLSFailure) as info:
        asyncio.run(fetch_once(cfg, url, "/healthz", tls=tls, time_limit=5))
    assert str(info.value).startswith(f"GET {url}/healthz: {message}"), str(info.value)


# -- bounded runs over https ---------------------------------------------------------------------


@pytest.mark.network
def test_short_https_run_with_the_ca(https_url: str, tls_edge: EdgeThread, pki: Path) -> None:
    cfg = LoadConfig(edges=(https_url,), ca=pki / "ca.pem", players=5, duration=3.0, videos=(VIDEO,),
                     ramp=0.5, speed=8.0, target_buffer=4.0)  # fmt: skip
    handshakes = _handshakes(tls_edge)
    doc = asyncio.run(run_load(cfg))
    assert doc["errors"] == 0, doc["error_samples"]
    assert doc["requests"] > 5 * 3  # manifest, inits and chunks for each player
    assert doc["statuses"] == {"200": doc["requests"]}
    # warmed: chunks are HITs, manifests (max-age 0 at the origin) REVALIDATED, as over plain http
    assert set(doc["x_cache"]) == {"HIT", "REVALIDATED"}
    assert sum(doc["x_cache"].values()) == doc["requests"]
    assert doc["connections"] == cfg.players  # keep-alive: one TLS connection per player
    # the edge saw those handshakes, plus one for each /metrics read (before and after)
    assert _handshakes(tls_edge) - handshakes == cfg.players + 2
    edge = doc["edges"][https_url]  # /metrics read over TLS too
    assert edge["reachable"]
    assert doc["requests"] <= edge["requests"] <= doc["requests"] + cfg.players
    assert edge["hit_ratio"] == pytest.approx(1.0)
    assert doc["bytes"] <= edge["bytes_served"]


@pytest.mark.network
def test_without_the_ca_every_request_is_a_verification_error(https_url: str, tls_edge: EdgeThread) -> None:
    cfg = LoadConfig(edges=(https_url,), players=3, duration=1.5, videos=(VIDEO,), ramp=0.1)
    doc = asyncio.run(run_load(cfg))
    assert doc["requests"] == 0
    assert doc["statuses"] == {"error": doc["errors"]}
    assert doc["errors"] >= 3
    assert doc["connections"] == 0
    assert doc["error_samples"]
    assert all("TLS: certificate verify failed" in s for s in doc["error_samples"]), doc["error_samples"]
    assert doc["edges"][https_url] == {"reachable": False}


# -- the command ---------------------------------------------------------------------------------


def _argv(*extra: str) -> list[str]:
    return ["loadtest", *extra, "--players", "4", "--duration", "2", "--videos", "1", "--ramp", "0.2",
            "--speed", "8", "--quiet"]  # fmt: skip


@pytest.mark.network
def test_cli_over_https_with_ca(https_url: str, pki: Path, tmp_path: Path) -> None:
    out = tmp_path / "lt.json"
    assert main(_argv("--edge", https_url, "--ca", str(pki / "ca.pem"), "--json", str(out))) == 0
    doc = json.loads(out.read_text())
    assert doc["requests"] > 0
    assert doc["errors"] == 0
    assert doc["connections"] == 4


@pytest.mark.network
def test_cli_without_ca_reports_and_exits_1(https_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_argv("--edge", https_url)) == 1
    captured = capsys.readouterr()
    assert "load test: 4 players" in captured.out  # the run ended with its report
    assert "error sample: GET https://localhost:" in captured.err
    assert "TLS: certificate verify failed" in captured.err
    assert "Traceback" not in captured.err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ca", "{pki}/missing.pem"], "--ca {pki}/missing.pem: cannot read it: No such file"),
        (["--ca", "{pki}/garbage.pem"], "--ca {pki}/garbage.pem: no PEM certificate in it"),
        (["--ca", "{pki}/cert.pem"], "--ca {pki}/cert.pem: no CA certificate in it"),
        (["--scheme", "https"], "--scheme goes with --topology"),
    ],
)
def test_cli_refuses_bad_tls_options_before_the_run(
    pki: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    edge = f"https://localhost:{free_port()}"  # nothing listens: exit 2 comes before any connection
    started = time.monotonic()
    assert main(_argv("--edge", edge, *(a.format(pki=pki) for a in args))) == 2
    assert time.monotonic() - started < 2
    err = capsys.readouterr().err.replace("\n", "")
    assert message.format(pki=pki) in err
    assert "Traceback" not in err


# -- DNS mode: `--topology FILE --scheme https` ----------------------------------------------------


@pytest.fixture
def topology_file(tls_edge: EdgeThread, store: Path, tmp_path: Path) -> Iterator[Path]:
    """The demo topology with one edge, the TLS edge on 127.0.0.1, and a real DNS router for it."""
    data = copy.deepcopy(yaml.safe_load(DEMO.read_text()))
    data["edges"] = [{"name": "us-east-1", "region": "us-east", "address": "127.0.0.1",
                      "port": tls_edge.server.port}]  # fmt: skip
    data["origin"]["store"] = str(store)
    router = start_router(parse_topology(data, source="test"))
    try:
        data["dns"]["listen"] = f"127.0.0.1:{router.port}"
        path = tmp_path / "topology.yaml"
        path.write_text(yaml.safe_dump(data))
        yield path
    finally:
        stop_router(router)


@pytest.mark.network
def test_cli_topology_over_https_checks_the_content_name(
    topology_file: Path, https_url: str, pki: Path, tmp_path: Path
) -> None:
    out = tmp_path / "lt.json"
    argv = _argv("--topology", str(topology_file), "--scheme", "https", "--ca", str(pki / "ca.pem"))
    assert main([*argv, "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    # the router answered 127.0.0.1, which the certificate does not name: the name checked was
    # video.example.test, the content name a player asks the router for
    assert doc["errors"] == 0, doc["error_samples"]
    assert doc["requests"] > 0
    assert doc["connections"] == 4
    edge = doc["edges"][f"https://127.0.0.1:{int(https_url.rsplit(':', 1)[1])}"]
    assert edge["reachable"]
    assert edge["name"] == "us-east-1"
