"""TLS for viewers: `--tls-cert/--tls-key` make the edge's one port speak TLS only.

A CA and certificates made in the test with trustme (names `video.cdn.test`, `localhost`, 127.0.0.1);
real edges (in a thread, and `cdn-edge serve` as a process) in front of the scripted origin or the
real origin app; clients are httpx verifying against the test CA, and raw sockets that misbehave.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import ssl
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme

from cdn.asgiserver import serve_in_thread
from edge.cli import main
from edge.config import EdgeConfig
from edge.errors import ConfigError
from edge.tls import server_tls_context
from origin.app import create_app
from origin.config import ServeConfig
from tests.conftest import free_port
from tests.edge.conftest import EdgeFactory, EdgeThread, assert_miss_then_hit, wait_healthy, wait_until
from tests.edge.upstream_server import Origin, Resource

PATH = "/videos/v1/1.m4s"
NAMES = ("video.cdn.test", "localhost", "127.0.0.1")
AUTH = {"Authorization": "Bearer s3cret"}


@pytest.fixture(scope="module")
def pki(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with cert.pem/key.pem (for NAMES), ca.pem, and the broken files of the error tests."""
    d = tmp_path_factory.mktemp("pki")
    leaf = ca.issue_cert(*NAMES)
    leaf.cert_chain_pems[0].write_to_path(str(d / "cert.pem"))
    leaf.private_key_pem.write_to_path(str(d / "key.pem"))
    leaf.private_key_and_cert_chain_pem.write_to_path(str(d / "both.pem"))
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    ca.issue_cert("other.example").private_key_pem.write_to_path(str(d / "other-key.pem"))
    (d / "garbage.pem").write_bytes(b"not a certificate\n")
    (d / "broken.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    (d / "broken-key.pem").write_bytes(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    (d / "encrypted-key.pem").write_bytes(_encrypted(leaf))
    return d


def _encrypted(leaf: trustme.LeafCert) -> bytes:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), password=None)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    )


@pytest.fixture(scope="module")
def trusted(ca: trustme.CA) -> ssl.SSLContext:
    """A client context that trusts the test CA (and checks host names)."""
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


@pytest.fixture
def tls_edge(make_edge: EdgeFactory, pki: Path) -> EdgeThread:
    return make_edge(tls_cert=pki / "cert.pem", tls_key=pki / "key.pem")


def _client(edge: EdgeThread, trusted: ssl.SSLContext) -> httpx.Client:
    return httpx.Client(base_url=edge.url, verify=trusted, timeout=10)


def _failures(edge: EdgeThread) -> int:
    counters = edge.call(lambda: edge.server.tls_counters)
    assert counters is not None
    return counters.failures


# -- configuration -----------------------------------------------------------------------------


def test_cert_and_key_go_together(tmp_path: Path) -> None:
    base = ["--origin", "http://127.0.0.1:1", "--cache-dir", str(tmp_path)]
    both = EdgeConfig.from_args([*base, "--tls-cert", "c.pem", "--tls-key", "k.pem"], {})
    assert (both.tls, both.tls_cert, both.tls_key) == (True, Path("c.pem"), Path("k.pem"))
    assert not EdgeConfig.from_args(base, {}).tls
    with pytest.raises(ConfigError, match="--tls-cert needs --tls-key too"):
        EdgeConfig.from_args([*base, "--tls-cert", "c.pem"], {})
    with pytest.raises(ConfigError, match="--tls-key needs --tls-cert too"):
        EdgeConfig.from_args([*base, "--tls-key", "k.pem"], {})


def test_the_server_context(pki: Path) -> None:
    ctx = server_tls_context(pki / "cert.pem", pki / "key.pem")
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert server_tls_context(pki / "both.pem", pki / "both.pem") is not None  # key and chain in one file


BAD_FILES = {
    "missing cert": ("missing.pem", "key.pem", "--tls-cert {cert}: cannot read it: No such file"),
    "missing key": ("cert.pem", "missing.pem", "--tls-key {key}: cannot read it: No such file"),
    "cert is a directory": (".", "key.pem", "--tls-cert {cert}: cannot read it"),
    "no certificate": ("garbage.pem", "key.pem", "--tls-cert {cert}: no PEM certificate in it"),
    "broken certificate": ("broken.pem", "key.pem", "--tls-cert {cert}: cannot parse its certificates"),
    "key is a certificate": ("cert.pem", "cert.pem", "--tls-key {key}: no PEM private key in it"),
    "broken key": ("cert.pem", "broken-key.pem", "--tls-key {key}: cannot load the private key"),
    "encrypted key": ("cert.pem", "encrypted-key.pem", "--tls-key {key}: the key is encrypted"),
    "another certificate's key": (
        "cert.pem",
        "other-key.pem",
        "--tls-key {key} is not the private key of the certificate in --tls-cert {cert}",
    ),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_certificate_or_key_is_a_config_error_that_never_shows_the_key(pki: Path, case: str) -> None:
    cert_name, key_name, expected = BAD_FILES[case]
    cert, key = pki / cert_name, pki / key_name
    with pytest.raises(ConfigError) as info:
        server_tls_context(cert, key)
    assert str(info.value).startswith(expected.format(cert=cert, key=key)), str(info.value)
    for secret in ("key.pem", "other-key.pem", "encrypted-key.pem"):
        body = (pki / secret).read_text().splitlines()[1]  # a line of base64 from inside the key
        assert body not in str(info.value)


def test_cli_refuses_a_mismatched_key_before_listening(
    pki: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["serve", "--origin", "http://127.0.0.1:1", "--cache-dir", str(tmp_path / "c")]
    argv += ["--listen", "127.0.0.1:0", "--tls-cert", str(pki / "cert.pem"), "--tls-key"]
    assert main([*argv, str(pki / "other-key.pem")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"cdn-edge: --tls-key {pki / 'other-key.pem'} is not the private key")
    assert "PRIVATE KEY" not in err
    assert not (tmp_path / "c").exists()  # stopped before even opening the cache


@pytest.mark.network
@pytest.mark.parametrize(
    ("cert", "key", "message"),
    [
        ("missing.pem", "key.pem", "cdn-edge: --tls-cert {cert}: cannot read it: No such file"),
        ("cert.pem", "missing.pem", "cdn-edge: --tls-key {key}: cannot read it: No such file"),
        ("cert.pem", "other-key.pem", "cdn-edge: --tls-key {key} is not the private key"),
    ],
)
def test_cdn_edge_exits_2_for_a_bad_certificate_or_key(
    pki: Path, tmp_path: Path, cert: str, key: str, message: str
) -> None:
    port = free_port()
    cmd = [sys.executable, "-m", "edge.cli", "serve", "--origin", "http://127.0.0.1:1", "--cache-dir"]
    cmd += [str(tmp_path / "c"), "--listen", f"127.0.0.1:{port}"]
    cmd += ["--tls-cert", str(pki / cert), "--tls-key", str(pki / key)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2, done.stderr
    assert message.format(cert=pki / cert, key=pki / key) in done.stderr
    assert "listening" not in done.stderr
    assert "Traceback" not in done.stderr
    with socket.socket() as probe:  # nothing was bound
        assert probe.connect_ex(("127.0.0.1", port)) != 0


# -- serving over TLS --------------------------------------------------------------------------


@pytest.mark.network
def test_miss_then_hit_over_one_tls_connection(
    tls_edge: EdgeThread, origin: Origin, trusted: ssl.SSLContext
) -> None:
    body = os.urandom(300_000)
    origin.resources[PATH] = Resource(body=body)
    with _client(tls_edge, trusted) as client:
        responses = [client.get(PATH) for _ in range(3)]
        tls = [r.extensions["network_stream"].get_extra_info("ssl_object") for r in responses]
    assert [r.headers["x-cache"] for r in responses] == ["MISS", "HIT", "HIT"]
    assert all(r.status_code == 200 and r.content == body for r in responses)
    assert tls[0] is tls[1] is tls[2]  # the client kept one TLS connection for the three
    assert tls[0].selected_alpn_protocol() == "http/1.1"
    assert tls[0].version() in ("TLSv1.2", "TLSv1.3")
    counters = tls_edge.call(lambda: tls_edge.server.tls_counters)
    assert (counters.handshakes, counters.failures) == (1, 0)  # one handshake on the edge's side too
    assert origin.count(PATH) == 1


@pytest.mark.network
def test_sni_and_names_in_the_certificate(
    tls_edge: EdgeThread, origin: Origin, trusted: ssl.SSLContext
) -> None:
    origin.resources[PATH] = Resource(body=b"chunk")
    port = tls_edge.server.port
    with httpx.Client(verify=trusted, timeout=10) as client:
        by_name = client.get(f"https://localhost:{port}{PATH}")
        # connect to the IP, ask for video.cdn.test: the SNI and the name checked, as the player does
        by_sni = client.get(
            f"https://127.0.0.1:{port}{PATH}",
            headers={"Host": f"video.cdn.test:{port}"},
            extensions={"sni_hostname": "video.cdn.test"},
        )
    assert by_name.content == by_sni.content == b"chunk"


@pytest.mark.network
def test_a_streaming_miss_range_head_and_the_plain_routes(
    tls_edge: EdgeThread, origin: Origin, trusted: ssl.SSLContext
) -> None:
    body = os.urandom(200_000)
    origin.resources[PATH] = Resource(body=body, gate_after=50_000)
    with _client(tls_edge, trusted) as client:
        with client.stream("GET", PATH) as miss:
            parts = miss.iter_raw()
            first = next(parts)  # the edge streams what it has while the origin holds the rest
            origin.resources[PATH].gate.set()
            streamed = first + b"".join(parts)
        assert (miss.headers["x-cache"], streamed) == ("MISS", body)
        part = client.get(PATH, headers={"Range": "bytes=1000-1999"})
        assert (part.status_code, part.headers["content-range"]) == (206, f"bytes 1000-1999/{len(body)}")
        assert part.content == body[1000:2000]
        head = client.head(PATH)
        assert (head.status_code, head.headers["content-length"], head.content) == (200, str(len(body)), b"")
        health = client.get("/healthz")
        assert (health.status_code, health.json()["status"]) == (200, "ok")
        assert client.get("/admin/stats").status_code == 401
        stats = client.get("/admin/stats", headers=AUTH).json()
        assert stats["tls"] is True
        metrics = client.get("/metrics").text
    assert "\ncdn_edge_tls_handshakes_total 1\n" in metrics
    assert "\ncdn_edge_tls_handshake_failures_total 0\n" in metrics


@pytest.mark.network
def test_a_plain_edge_has_no_tls_families(edge: EdgeThread) -> None:
    with httpx.Client(base_url=edge.url, timeout=10) as client:
        assert "cdn_edge_tls" not in client.get("/metrics").text
        assert client.get("/admin/stats", headers=AUTH).json()["tls"] is False


# -- clients that fail the handshake -----------------------------------------------------------


def _plain_http(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: edge\r\n\r\n")
        got = bytearray()
        while data := sock.recv(65536):
            got += data
        return bytes(got)


def _reset_mid_handshake(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # the start of a ClientHello
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close() sends RST


def _refuse_the_certificate(port: int) -> None:
    untrusting = ssl.create_default_context()  # the system CAs: our test CA is unknown
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        untrusting.wrap_socket(sock, server_hostname="localhost")


@pytest.mark.network
def test_clients_failing_the_handshake_are_dropped_quietly_and_counted(
    tls_edge: EdgeThread, trusted: ssl.SSLContext, caplog: pytest.LogCaptureFixture
) -> None:
    port = tls_edge.server.port
    with caplog.at_level(logging.DEBUG):
        answer = _plain_http(port)
        assert not answer.startswith(b"HTTP/")  # no HTTP answer on the TLS port: it speaks TLS only
        wait_until(lambda: _failures(tls_edge) == 1)
        _reset_mid_handshake(port)
        wait_until(lambda: _failures(tls_edge) == 2)
        _refuse_the_certificate(port)
        wait_until(lambda: _failures(tls_edge) == 3)
        with _client(tls_edge, trusted) as client:
            assert client.get("/healthz").status_code == 200  # the edge stays healthy
    assert tls_edge.call(lambda: tls_edge.server.tls_counters.handshakes) == 1
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert noisy == []
    assert "Traceback" not in caplog.text
    failed = [r.getMessage() for r in caplog.records if r.name == "edge.tls"]
    assert failed[0] == "TLS handshake failed: http request"  # OpenSSL's words: plain HTTP on a TLS port
    assert len(failed) == 3


@pytest.mark.network
def test_a_client_silent_in_the_handshake_is_dropped_at_the_header_deadline(
    make_edge: EdgeFactory, pki: Path
) -> None:
    edge = make_edge(tls_cert=pki / "cert.pem", tls_key=pki / "key.pem", header_timeout=0.3)
    with socket.create_connection(("127.0.0.1", edge.server.port), timeout=5) as sock:
        started = time.monotonic()
        assert sock.recv(1) == b""  # closed by the edge, without a byte
        assert time.monotonic() - started < 3
    wait_until(lambda: _failures(edge) == 1)


# -- `cdn-edge serve --tls-cert/--tls-key` in front of the real origin app ---------------------------


@pytest.fixture
def origin_app(packaged_store: Path) -> Iterator[str]:
    with serve_in_thread(create_app(ServeConfig(store=packaged_store, manifest_max_age=0))) as url:
        yield url


@pytest.mark.network
def test_cdn_edge_serve_over_tls(
    origin_app: str, packaged_store: Path, pki: Path, trusted: ssl.SSLContext, tmp_path: Path
) -> None:
    chunk = sorted((packaged_store / "demo").glob("*.m4s"))[0]
    port = free_port()
    cmd = [sys.executable, "-m", "edge.cli", "serve", "--origin", origin_app, "--listen", f"127.0.0.1:{port}"]
    cmd += ["--cache-dir", str(tmp_path / "c"), "--tls-cert", str(pki / "cert.pem")]
    cmd += ["--tls-key", str(pki / "key.pem")]
    env = {**os.environ, "CDN_LOG_LEVEL": "DEBUG"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        with httpx.Client(base_url=f"https://localhost:{port}", verify=trusted, timeout=10) as client:
            wait_healthy(client)
            assert_miss_then_hit(client, chunk)
            assert _plain_http(port)[:5] != b"HTTP/"
            assert client.get("/healthz").json()["status"] == "ok"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text
    assert f"listening on 127.0.0.1:{port} (TLS, certificate {pki / 'cert.pem'})" in text
    assert "TLS handshake failed: http request" in text  # the plain-HTTP client: one debug line
    assert "Traceback" not in text
    key_lines = (pki / "key.pem").read_text().splitlines()
    assert not any(line in text for line in key_lines[1:-1])
