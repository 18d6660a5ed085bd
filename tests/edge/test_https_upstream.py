"""https upstreams: TLS to the origin and the parent, verified against the system CAs plus `--upstream-ca`.

A CA and certificates made in the test with trustme; real TLS servers on 127.0.0.1: the scripted
`Origin` behind a TLS listener (`TlsOrigin`), and the real origin app under uvicorn with a TLS
certificate in front of `cdn-edge serve` as a process.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import socket
import socketserver
import ssl
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import trustme
import uvloop

from cdn.asgiserver import serve_in_thread
from edge.cli import main
from edge.config import EdgeConfig, parse_upstream_url
from edge.errors import ConfigError, UpstreamConnectError
from edge.upstream import UpstreamPool, client_tls_context
from origin.app import create_app
from origin.config import ServeConfig
from tests.conftest import free_port
from tests.edge.conftest import (
    Clock,
    EdgeFactory,
    EdgeThread,
    assert_miss_then_hit,
    wait_healthy,
    wait_stored,
)
from tests.edge.upstream_server import Origin, Resource

PATH = "/videos/v1/1.m4s"
# the pool runs on the edge's uvloop; its TLS layer is uvloop's own, so check both loops
LOOPS = [pytest.param(asyncio.run, id="asyncio"), pytest.param(uvloop.run, id="uvloop")]
T = TypeVar("T")
Runner = Callable[[Coroutine[Any, Any, T]], T]


class TlsOrigin:
    """The scripted `Origin`, also served over TLS on its own 127.0.0.1 port (bound to port 0).

    `use(cert)` picks the certificate later handshakes present; `handshakes` counts the completed
    ones (= TLS connections), `sni` the server names clients asked for.
    """

    def __init__(self, origin: Origin, cert: trustme.LeafCert) -> None:
        self.origin = origin
        self.handshakes = 0
        self.sni: list[str | None] = []
        self._context = self._server_context(cert)
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                outer._serve(self.request)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port = int(self._server.server_address[1])
        self.url = f"https://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def _server_context(self, cert: trustme.LeafCert) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(ctx)
        ctx.sni_callback = lambda _sock, name, _ctx: self.sni.append(name)
        return ctx

    def use(self, cert: trustme.LeafCert) -> None:
        """Present `cert` from now on and drop the open connections (so clients handshake again)."""
        self._context = self._server_context(cert)
        with self.origin.lock:
            conns = list(self.origin._conns)
        for conn in conns:
            conn.shutdown(socket.SHUT_RDWR)

    def _serve(self, sock: socket.socket) -> None:
        sock.settimeout(5)  # for the handshake only
        try:
            tls = self._context.wrap_socket(sock, server_side=True)
        except OSError:
            return  # the client refused our certificate, or went away
        tls.settimeout(None)
        with self.origin.lock:
            self.handshakes += 1
        self.origin._serve_connection(tls)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


class RawServer:
    """A TCP listener on 127.0.0.1 that misbehaves at TLS: answers plain HTTP, resets, or stays silent."""

    def __init__(self, mode: str) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"https://127.0.0.1:{self._sock.getsockname()[1]}"
        self._mode = mode
        if mode != "silent":  # silent: the kernel completes the TCP handshake; nobody reads
            threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        try:
            conn, _ = self._sock.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(5)
            conn.recv(65536)  # the ClientHello
            if self._mode == "reset":  # SO_LINGER on, 0 s: close() sends an RST
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            conn.shutdown(socket.SHUT_WR)
            while conn.recv(65536):  # until the client gives up (no RST racing our answer)
                pass

    def stop(self) -> None:
        self._sock.close()


# -- certificates ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def good_cert(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert("localhost", "127.0.0.1")


@pytest.fixture
def tls_origin(origin: Origin, good_cert: trustme.LeafCert) -> Iterator[TlsOrigin]:
    srv = TlsOrigin(origin, good_cert)
    yield srv
    srv.stop()


def _tls_edge(
    make_edge: EdgeFactory, tls: TlsOrigin, ca_file: Path | None, **overrides: object
) -> EdgeThread:
    return make_edge(origin=tls.url, upstream_ca=ca_file, **overrides)


def _get(edge: EdgeThread, path: str = PATH, **headers: str) -> httpx.Response:
    with httpx.Client(base_url=edge.url, timeout=10) as client:
        return client.get(path, headers=headers)


# -- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "url"),
    [
        ("https://origin.example", "https://origin.example"),
        ("https://origin.example:8443/", "https://origin.example:8443"),
        ("HTTPS://[::1]:8443", "https://[::1]:8443"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
    ],
)
def test_https_urls_are_accepted(text: str, url: str) -> None:
    assert parse_upstream_url(text, option="--origin") == url


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("ftp://x", "https://HOST"),
        ("https://", "https://HOST"),
        ("https://x/videos", "path"),
        ("https://x:0", "bad port"),
        ("https://x:99999", "bad port"),
    ],
)
def test_bad_upstream_urls_are_refused(text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_upstream_url(text, option="--origin")


def test_credentials_in_the_url_are_refused_without_echoing_them() -> None:
    with pytest.raises(ConfigError, match="user:password") as info:
        parse_upstream_url("https://admin:hunter2@origin.example", option="--parent")
    assert "hunter2" not in str(info.value)


def test_upstream_ca_option_and_default_port(ca_file: Path) -> None:
    argv = ["--origin", "https://origin.example", "--cache-dir", "/tmp/c", "--upstream-ca", str(ca_file)]
    cfg = EdgeConfig.from_args(argv, {})
    assert (cfg.origin, cfg.upstream_ca) == ("https://origin.example", ca_file)
    pool = UpstreamPool(cfg.origin, connect_timeout=1, read_timeout=1)
    assert (pool.host, pool.port, pool.host_header) == ("origin.example", 443, "origin.example")
    assert pool.tls is not None
    assert (pool.tls.verify_mode, pool.tls.check_hostname) == (ssl.CERT_REQUIRED, True)
    assert UpstreamPool("http://h", connect_timeout=1, read_timeout=1).tls is None


def _bad_ca_files(tmp: Path, good_cert: trustme.LeafCert) -> dict[str, tuple[Path, str]]:
    (tmp / "garbage.pem").write_bytes(b"this is not a certificate\n")
    good_cert.private_key_pem.write_to_path(str(tmp / "key.pem"))
    good_cert.cert_chain_pems[0].write_to_path(str(tmp / "leaf.pem"))
    return {
        "missing": (tmp / "missing.pem", "cannot read it: No such file"),
        "directory": (tmp, "cannot read it"),
        "garbage": (tmp / "garbage.pem", "no PEM certificate"),
        "private key": (tmp / "key.pem", "no PEM certificate"),
        "leaf, not a CA": (tmp / "leaf.pem", "no CA certificate in it"),
    }


@pytest.mark.parametrize("kind", ["missing", "directory", "garbage", "private key", "leaf, not a CA"])
def test_a_bad_upstream_ca_is_a_config_error(tmp_path: Path, good_cert: trustme.LeafCert, kind: str) -> None:
    path, match = _bad_ca_files(tmp_path, good_cert)[kind]
    with pytest.raises(ConfigError, match=match) as info:
        client_tls_context(path)
    assert str(info.value).startswith(f"--upstream-ca {path}: ")


def test_cli_refuses_a_bad_upstream_ca_before_serving(
    tmp_path: Path, good_cert: trustme.LeafCert, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = _bad_ca_files(tmp_path, good_cert)["missing"]
    argv = ["serve", "--origin", "https://127.0.0.1:1", "--upstream-ca", str(path)]
    assert main([*argv, "--cache-dir", str(tmp_path / "c"), "--listen", "127.0.0.1:0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"cdn-edge: --upstream-ca {path}: cannot read it: No such file")


@pytest.mark.network
def test_cdn_edge_exits_with_a_clear_message_for_a_garbage_ca(
    tmp_path: Path, good_cert: trustme.LeafCert
) -> None:
    path, _ = _bad_ca_files(tmp_path, good_cert)["garbage"]
    port = free_port()
    cmd = [sys.executable, "-m", "edge.cli", "serve", "--origin", "https://127.0.0.1:1", "--upstream-ca"]
    cmd += [str(path), "--listen", f"127.0.0.1:{port}", "--cache-dir", str(tmp_path / "c")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert f"cdn-edge: --upstream-ca {path}: no PEM certificate" in done.stderr
    assert "listening" not in done.stderr  # it stopped before serving


# -- the pool over TLS -------------------------------------------------------------------------


async def _fetch(pool: UpstreamPool, path: str) -> tuple[int, bytes]:
    resp = await pool.start(path)
    parts: list[bytes] = []
    resp.stream(parts.append)
    await resp.finished()
    return resp.status, b"".join(parts)


@pytest.mark.network
@pytest.mark.parametrize("run_loop", LOOPS)
def test_tls_connections_are_kept_alive_and_reused(
    tls_origin: TlsOrigin, origin: Origin, ca_file: Path, run_loop: Runner[list[tuple[int, bytes]]]
) -> None:
    origin.resources["/videos/a"] = Resource(body=b"A" * 100_000)
    origin.resources["/videos/b"] = Resource(body=b"B" * 10, chunked=True)
    origin.resources["/videos/c"] = Resource(body=b"C" * 10, close_delimited=True)

    async def run() -> list[tuple[int, bytes]]:
        pool = UpstreamPool(
            tls_origin.url, connect_timeout=2, read_timeout=2, tls=client_tls_context(ca_file)
        )
        try:
            return [await _fetch(pool, p) for p in ("/videos/a", "/videos/b", "/videos/a", "/videos/c")]
        finally:
            pool.close()

    results = run_loop(run())
    assert results == [(200, b"A" * 100_000), (200, b"B" * 10), (200, b"A" * 100_000), (200, b"C" * 10)]
    assert tls_origin.handshakes == 1  # one TLS connection for all four (the last one closes it)
    assert tls_origin.sni == [None]  # no SNI for an IP address (RFC 6066 §3); the IP is checked instead
    assert origin.requests[0].headers["host"] == f"127.0.0.1:{tls_origin.port}"


@pytest.mark.network
def test_sni_and_host_header_are_the_urls_host(tls_origin: TlsOrigin, origin: Origin, ca_file: Path) -> None:
    origin.resources["/videos/a"] = Resource(body=b"a")
    url = f"https://localhost:{tls_origin.port}"

    async def run() -> tuple[int, bytes]:
        pool = UpstreamPool(url, connect_timeout=2, read_timeout=2, tls=client_tls_context(ca_file))
        try:
            return await _fetch(pool, "/videos/a")
        finally:
            pool.close()

    assert asyncio.run(run()) == (200, b"a")
    assert tls_origin.sni == ["localhost"]
    assert origin.requests[0].headers["host"] == f"localhost:{tls_origin.port}"


@pytest.mark.network
@pytest.mark.parametrize(
    ("cert", "trusted", "reason"),
    [
        ("other-name", True, "certificate verify failed: IP address mismatch"),
        ("unknown-ca", True, "certificate verify failed: unable to get local issuer certificate"),
        ("good", False, "certificate verify failed: unable to get local issuer certificate"),
    ],
)
def test_tls_verification_failures_are_connect_errors(
    origin: Origin, ca: trustme.CA, ca_file: Path, cert: str, trusted: bool, reason: str
) -> None:
    leaf = {
        "other-name": ca.issue_cert("origin.example"),
        "unknown-ca": trustme.CA().issue_cert("127.0.0.1"),
        "good": ca.issue_cert("127.0.0.1"),
    }[cert]
    tls = TlsOrigin(origin, leaf)

    async def run() -> None:
        pool = UpstreamPool(
            tls.url, connect_timeout=2, read_timeout=2, tls=client_tls_context(ca_file if trusted else None)
        )
        with pytest.raises(UpstreamConnectError) as info:
            await pool.start("/videos/a")
        msg = str(info.value)
        assert msg.startswith(f"cannot connect to {tls.url}: TLS handshake failed: {reason}"), msg
        assert (info.value.url, info.value.status) == (tls.url, 502)
        assert ("--upstream-ca" in msg) == (cert != "other-name")  # the hint, when a CA is missing

    try:
        asyncio.run(run())
    finally:
        tls.stop()
    assert origin.count("/videos/a") == 0


@pytest.mark.network
@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("plain", "TLS handshake failed: wrong version number (is it serving plain http?)"),
        ("reset", "TLS handshake failed: Connection reset by peer"),
        ("silent", "TCP connect and TLS handshake timed out after 0.3 s"),
    ],
)
@pytest.mark.parametrize("run_loop", LOOPS)
def test_handshake_failures_and_the_connect_timeout(mode: str, reason: str, run_loop: Runner[float]) -> None:
    srv = RawServer(mode)

    async def run() -> float:
        pool = UpstreamPool(srv.url, connect_timeout=0.3, read_timeout=5)
        started = time.monotonic()
        with pytest.raises(
            UpstreamConnectError, match=re.escape(f"cannot connect to {srv.url}: ") + ".*" + re.escape(reason)
        ):
            await pool.start("/videos/a")
        return time.monotonic() - started

    try:
        assert run_loop(run()) < 2  # the connect timeout covers the TLS handshake
    finally:
        srv.stop()


# -- a real edge in front of a TLS origin ---------------------------------------------------------


@pytest.mark.network
def test_miss_hit_and_revalidation_over_tls(
    make_edge: EdgeFactory, tls_origin: TlsOrigin, origin: Origin, ca_file: Path, clock: Clock
) -> None:
    body = os.urandom(300_000)
    origin.resources[PATH] = Resource(body=body, headers=[("Cache-Control", "max-age=10")], etag='"v1"')
    edge = _tls_edge(make_edge, tls_origin, ca_file)
    first, second = _get(edge), _get(edge)
    assert (first.status_code, first.headers["x-cache"], first.content) == (200, "MISS", body)
    assert (second.status_code, second.headers["x-cache"], second.content) == (200, "HIT", body)
    clock.advance(11)
    third = _get(edge)
    assert (third.status_code, third.headers["x-cache"], third.content) == (200, "REVALIDATED", body)
    assert [s.headers.get("if-none-match") for s in origin.requests] == [None, '"v1"']
    assert tls_origin.handshakes == 1  # the revalidation reused the kept-alive TLS connection
    assert edge.server.filler.stats.not_modified == 1


@pytest.mark.network
@pytest.mark.parametrize("cert", ["other-name", "unknown-ca"])
def test_a_bad_certificate_is_a_502_and_nothing_is_cached(
    make_edge: EdgeFactory, origin: Origin, ca: trustme.CA, ca_file: Path, cert: str
) -> None:
    leaf = ca.issue_cert("origin.example") if cert == "other-name" else trustme.CA().issue_cert("127.0.0.1")
    tls = TlsOrigin(origin, leaf)
    origin.resources[PATH] = Resource(body=b"secret chunk")
    try:
        edge = _tls_edge(make_edge, tls, ca_file)
        for _ in range(2):
            resp = _get(edge)
            assert (resp.status_code, resp.headers["x-cache"]) == (502, "MISS")
            assert (
                f"cannot connect to {tls.url}: TLS handshake failed: certificate verify failed" in resp.text
            )
        assert edge.call(lambda: edge.server.store.peek(PATH)) is None
        assert origin.count(PATH) == 0
    finally:
        tls.stop()


@pytest.mark.network
def test_no_upstream_ca_against_a_private_ca_is_a_502_and_one_warning(
    make_edge: EdgeFactory, tls_origin: TlsOrigin, origin: Origin, caplog: pytest.LogCaptureFixture
) -> None:
    origin.resources[PATH] = Resource(body=b"chunk")
    edge = _tls_edge(make_edge, tls_origin, None)  # the system CAs only: our test CA is unknown
    with caplog.at_level(logging.WARNING, logger="edge.upstream"):
        bodies = [_get(edge).text for _ in range(3)]
    for text in bodies:
        assert "certificate verify failed: unable to get local issuer certificate" in text
    warnings = [r.getMessage() for r in caplog.records if r.name == "edge.upstream"]
    assert len(warnings) == 1  # logged once, not once per request
    assert warnings[0].startswith(
        f"upstream {tls_origin.url}: TLS handshake failed: certificate verify failed"
    )
    assert "s3cret" not in caplog.text  # the admin token never reaches the log


@pytest.mark.network
def test_stale_copy_is_served_when_the_certificate_goes_bad(
    make_edge: EdgeFactory, tls_origin: TlsOrigin, origin: Origin, ca_file: Path, clock: Clock
) -> None:
    origin.resources[PATH] = Resource(body=b"v1", headers=[("Cache-Control", "max-age=10")])
    edge = _tls_edge(make_edge, tls_origin, ca_file)
    assert _get(edge).headers["x-cache"] == "MISS"
    wait_stored(edge, PATH)
    tls_origin.use(trustme.CA().issue_cert("127.0.0.1"))  # re-keyed with a CA the edge does not trust
    clock.advance(20)
    stale = _get(edge)
    assert (stale.status_code, stale.headers["x-cache"], stale.content) == (200, "STALE", b"v1")
    assert origin.count(PATH) == 1  # the edge never sent the request: the handshake failed
    clock.advance(400)  # past --stale-if-error (300 s): the error shows
    assert _get(edge).status_code == 502


@pytest.mark.network
def test_a_parent_with_a_bad_certificate_falls_back_to_the_origin(
    make_edge: EdgeFactory, tls_origin: TlsOrigin, origin: Origin, ca_file: Path
) -> None:
    origin.resources[PATH] = Resource(body=b"from the origin")
    bad_parent = TlsOrigin(Origin(), trustme.CA().issue_cert("127.0.0.1"))
    try:
        edge = _tls_edge(make_edge, tls_origin, ca_file, parent=bad_parent.url)
        resp = _get(edge)
        assert (resp.status_code, resp.content) == (200, b"from the origin")
        assert edge.server.upstream.fallbacks == 1
    finally:
        bad_parent.stop()
        bad_parent.origin.stop()


# -- `cdn-edge serve` in front of the real origin app over TLS -----------------------------------


@pytest.fixture
def https_origin_app(packaged_store: Path, good_cert: trustme.LeafCert, tmp_path: Path) -> Iterator[str]:
    """The origin app over `packaged_store` under uvicorn with a TLS certificate; yields its https URL."""
    pem = tmp_path / "origin.pem"
    good_cert.private_key_and_cert_chain_pem.write_to_path(str(pem))
    app = create_app(ServeConfig(store=packaged_store, manifest_max_age=0))
    with serve_in_thread(app, ssl_keyfile=str(pem), ssl_certfile=str(pem)) as url:
        yield url.replace("http://", "https://", 1)


@pytest.mark.network
def test_cdn_edge_serve_pulls_from_an_https_origin(
    https_origin_app: str, packaged_store: Path, ca_file: Path, tmp_path: Path
) -> None:
    chunk = sorted((packaged_store / "demo").glob("*.m4s"))[0]
    manifest = packaged_store / "demo" / "manifest.mpd"
    port = free_port()
    cmd = [sys.executable, "-m", "edge.cli", "serve", "--origin", https_origin_app, "--upstream-ca"]
    cmd += [str(ca_file), "--listen", f"127.0.0.1:{port}", "--cache-dir", str(tmp_path / "c")]
    env = {**os.environ, "CDN_ADMIN_TOKEN": "tok-from-env"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            wait_healthy(client)
            assert_miss_then_hit(client, chunk)
            # max-age=0: stored, then revalidated over TLS with a conditional GET answered 304
            first, again = client.get("/videos/demo/manifest.mpd"), client.get("/videos/demo/manifest.mpd")
            assert (first.headers["x-cache"], again.headers["x-cache"]) == ("MISS", "REVALIDATED")
            assert first.content == again.content == manifest.read_bytes()
            metrics = client.get("/metrics").text
            assert "\ncdn_edge_upstream_not_modified_total 1\n" in metrics
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0, out.decode(errors="replace")
    assert f"origin {https_origin_app}".encode() in out
    assert b"tok-from-env" not in out
