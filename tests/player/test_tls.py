"""The player over https: a real TLS edge (in front of the real origin app) trusted through `--ca`.

The certificates are made with trustme for `video.cdn.test` only (no IP address in them), so a
session that plays proves the player checks the URL's host, not the edge IP it connects to; the
edge records the SNI names it was asked for. Without `--ca`, or with a certificate for another
name, every attempt fails on the certificate and the session ends naming it.
"""

from __future__ import annotations

import hashlib
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme

from cdn.asgiserver import serve_in_thread
from cdn.hostport import HostPort
from edge.config import EdgeConfig
from origin.app import create_app
from origin.config import ServeConfig
from player.cli import main
from player.config import PlayerConfig
from player.edgepool import EdgePool
from player.fetch import CaFileError, Fetcher, FetchError, client_tls_context
from player.resolve import Resolver
from player.session import SessionResult, play
from tests.edge.conftest import EdgeThread, wait_until
from tests.player.netfixtures import DnsResponder

HOST = "video.cdn.test"
EdgeMaker = Callable[[str], EdgeThread]


@pytest.fixture(scope="module")
def origin_url(packaged_store: Path) -> Iterator[str]:
    with serve_in_thread(create_app(ServeConfig(store=packaged_store))) as url:
        yield url


@pytest.fixture
def tls_edge(ca: trustme.CA, origin_url: str, tmp_path: Path) -> Iterator[EdgeMaker]:
    """Start a TLS edge on 127.0.0.1 whose certificate names the given host (only that name)."""
    started: list[EdgeThread] = []

    def make(name: str) -> EdgeThread:
        leaf = ca.issue_cert(name)
        cert, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
        leaf.cert_chain_pems[0].write_to_path(str(cert))
        leaf.private_key_pem.write_to_path(str(key))
        config = EdgeConfig(origin=origin_url, listen=HostPort("127.0.0.1", 0), cache_dir=tmp_path / "cache",
                            cache_size=64 * 1024**2, tls_cert=cert, tls_key=key)  # fmt: skip
        started.append(EdgeThread(config, time.time))
        return started[-1]

    yield make
    for edge in started:
        edge.stop()


@pytest.fixture
def dns() -> Iterator[DnsResponder]:
    with DnsResponder({HOST: [("A", "127.0.0.1")]}, ttl=20) as responder:
        yield responder


def _config(edge: EdgeThread, dns: DnsResponder, ca: Path | None) -> PlayerConfig:
    url = f"https://{HOST}:{edge.server.port}/videos/demo/manifest.mpd"
    return PlayerConfig(url=url, dns=HostPort("127.0.0.1", dns.port), speed=50, quiet=True, max_buffer=8,
                        startup=2, ca=ca)  # fmt: skip


def _play(config: PlayerConfig, *, retries: int = 2, failovers: int = 1) -> SessionResult:
    pool = EdgePool(Resolver(server=config.dns, timeout=2))
    with Fetcher(pool, timeout=2, retries_per_edge=retries, max_failovers=failovers,
                 backoff=lambda n: 0.01 * n, ca=config.ca) as fetcher:  # fmt: skip
        return play(config, fetcher)


def _record_sni(edge: EdgeThread) -> list[str | None]:
    names: list[str | None] = []
    assert edge.server.tls is not None
    context = edge.server.tls
    edge.call(lambda: setattr(context, "sni_callback", lambda _sock, name, _ctx: names.append(name)))
    return names


@pytest.mark.network
def test_plays_every_chunk_through_a_tls_edge_trusted_with_ca(
    tls_edge: EdgeMaker, dns: DnsResponder, ca_file: Path, packaged_store: Path
) -> None:
    edge = tls_edge(HOST)
    sni = _record_sni(edge)
    result = _play(_config(edge, dns, ca_file))
    assert result.summary.chunks == len(result.records) > 0
    for r in result.records:
        data = (packaged_store / "demo" / r.url.rsplit("/", 1)[1]).read_bytes()
        assert (r.bytes, r.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert {r.edge for r in result.records} == {f"127.0.0.1:{edge.server.port}"}
    assert all(r.retries == 0 for r in result.records)
    assert sni
    assert set(sni) == {HOST}
    counters = edge.call(lambda: edge.server.tls_counters)
    assert counters is not None
    assert counters.failures == 0


@pytest.mark.network
def test_head_size_probes_use_the_urls_host_too(
    tls_edge: EdgeMaker, dns: DnsResponder, ca_file: Path
) -> None:
    edge = tls_edge(HOST)
    config = _config(edge, dns, ca_file)
    with Fetcher(EdgePool(Resolver(server=config.dns, timeout=2)), timeout=2, ca=ca_file) as fetcher:
        manifest = fetcher.get(config.url).data
        assert fetcher.size(config.url) == len(manifest)


@pytest.mark.network
@pytest.mark.parametrize(
    ("name", "trusted", "reason"),
    [
        (HOST, False, "unable to get local issuer certificate; pass the CA that signed it with --ca"),
        ("other.cdn.test", True, f"Hostname mismatch, certificate is not valid for '{HOST}'"),
    ],
)
def test_a_refused_certificate_ends_the_session_naming_it(
    tls_edge: EdgeMaker, dns: DnsResponder, ca_file: Path, name: str, trusted: bool, reason: str
) -> None:
    edge = tls_edge(name)
    with pytest.raises(FetchError) as info:
        _play(_config(edge, dns, ca_file if trusted else None))
    message = str(info.value)
    assert "certificate verify failed" in message
    assert f"TLS for {HOST}: certificate verify failed: {reason}" in message
    assert message.endswith(
        f"does the edges' certificate name {HOST} and chain to a CA the player trusts (--ca adds one)?"
    )
    assert "failed 4 times" in message  # every attempt went through the retry and failover path
    wait_until(lambda: edge.call(lambda: edge.server.tls_counters).failures == 4)  # the edge saw each one


@pytest.mark.network
def test_cdn_player_ca_end_to_end(
    tls_edge: EdgeMaker, dns: DnsResponder, ca_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edge = tls_edge(HOST)
    url = f"https://{HOST}:{edge.server.port}/videos/demo/manifest.mpd"
    common = [url, "--dns", f"127.0.0.1:{dns.port}", "--quiet", "--speed", "50", "--max-buffer", "8"]
    common += ["--startup", "2", "--retries", "1", "--max-failovers", "0"]
    assert main([*common, "--ca", str(ca_file)]) == 0
    assert main(common) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"cdn-player: GET {url} failed 1 times on every edge tried")
    assert "certificate verify failed" in err


# -- the --ca option ---------------------------------------------------------------------------


def test_ca_option_reaches_the_config(ca_file: Path) -> None:
    config = PlayerConfig.from_args([f"https://{HOST}/videos/demo/manifest.mpd", "--ca", str(ca_file)])
    assert config.ca == ca_file
    assert PlayerConfig.from_args([f"https://{HOST}/m.mpd"]).ca is None
    context = client_tls_context(ca_file)
    assert (context.verify_mode, context.check_hostname) == (ssl.CERT_REQUIRED, True)


def _bad_ca_files(tmp: Path, ca: trustme.CA) -> dict[str, tuple[Path, str]]:
    leaf = ca.issue_cert(HOST)
    (tmp / "garbage.pem").write_bytes(b"not a certificate\n")
    leaf.cert_chain_pems[0].write_to_path(str(tmp / "leaf.pem"))
    return {
        "missing": (tmp / "missing.pem", "cannot read it: No such file"),
        "garbage": (tmp / "garbage.pem", "no PEM certificate in it"),
        "leaf, not a CA": (tmp / "leaf.pem", "no CA certificate in it"),
    }


@pytest.mark.parametrize("kind", ["missing", "garbage", "leaf, not a CA"])
def test_a_bad_ca_file_is_a_usage_error(
    tmp_path: Path, ca: trustme.CA, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path, words = _bad_ca_files(tmp_path, ca)[kind]
    with pytest.raises(CaFileError, match=words):
        client_tls_context(path)
    assert main([f"https://{HOST}/m.mpd", "--ca", str(path)]) == 2
    assert f"argument --ca: {path}: {words}" in capsys.readouterr().err


def test_ca_option_in_help() -> None:
    done = subprocess.run(
        [sys.executable, "player/cli.py", "--help"], capture_output=True, text=True, timeout=30,
        cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert done.returncode == 0
    assert "--ca FILE" in done.stdout
