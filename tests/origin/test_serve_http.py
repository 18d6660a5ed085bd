"""The origin under a real uvicorn server on 127.0.0.1 (port 0): keep-alive, raw un-normalised request
targets that try to leave the store, ffmpeg playing the MPD over HTTP, and the `serve` command itself."""

from __future__ import annotations

import argparse
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from cdn.asgiserver import ServerStartError, serve_in_thread
from origin.app import create_app
from origin.config import ServeConfig, ServeConfigError, parse_size
from origin.serve import add_serve_arguments, build_config
from tests.conftest import assert_decodes_whole_clip

SECRET = b"TOP-SECRET-OUTSIDE-THE-STORE"
CHUNK = bytes(range(256)) * 2000  # 512000 bytes: streamed in several reads


@pytest.fixture(scope="module")
def trap_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with one tiny video and, next to it, files that must never be served."""
    root = tmp_path_factory.mktemp("http")
    store, outside = root / "store", root / "outside"
    (store / "demo").mkdir(parents=True)
    outside.mkdir()
    (store / "demo" / "manifest.mpd").write_bytes(b"<MPD/>\n")
    (store / "demo" / "chunk-0-00001.m4s").write_bytes(CHUNK)
    for name in ("passwd", "secret.m4s", "manifest.mpd"):
        (outside / name).write_bytes(SECRET)
    (store / "demo" / "leak.m4s").symlink_to(outside / "secret.m4s")
    (store / "evil").symlink_to(outside, target_is_directory=True)
    (store / ".tmp-demo-x").mkdir()
    (store / ".tmp-demo-x" / "manifest.mpd").write_bytes(SECRET)
    return store


@pytest.fixture(scope="module")
def base_url(trap_store: Path) -> Iterator[str]:
    app = create_app(ServeConfig(store=trap_store, read_size=64 * 1024))
    with serve_in_thread(app, loop="uvloop", http="httptools") as url:
        yield url


def _connection(base_url: str) -> http.client.HTTPConnection:
    parts = urlsplit(base_url)
    assert parts.hostname is not None
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)


def _raw(base_url: str, request: bytes) -> tuple[int, bytes]:
    """Send bytes exactly as given (no client-side normalisation); return (status, whole response)."""
    parts = urlsplit(base_url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while data := sock.recv(65536):
            chunks.append(data)
    response = b"".join(chunks)
    m = re.match(rb"HTTP/1\.[01] (\d{3}) ", response)
    assert m, response[:200]
    return int(m.group(1)), response


def _get(target: str) -> bytes:
    return f"GET {target} HTTP/1.1\r\nHost: origin.test\r\nConnection: close\r\n\r\n".encode()


@pytest.mark.network
@pytest.mark.parametrize(
    "target",
    [
        "/videos/demo/../../outside/passwd",
        "/videos/demo/../../outside/manifest.mpd",
        "/videos/demo/%2e%2e/%2e%2e/outside/manifest.mpd",
        "/videos/%2e%2e/outside/manifest.mpd",
        "/videos/demo/..%2f..%2foutside%2fsecret.m4s",
        "/videos/demo/%2e%2e%2f%2e%2e%2foutside%2fsecret.m4s",
        "/videos/demo/..%252f..%252foutside%252fsecret.m4s",  # double encoding
        "/videos/demo/..%5c..%5coutside%5csecret.m4s",
        "/videos/demo/%00manifest.mpd",
        "/videos/demo/manifest.mpd%00.m4s",
        "/videos/%2fetc/passwd",
        "/videos/demo/%2fetc%2fpasswd",
        "//etc/passwd",
        "/../../../../etc/passwd",
        "/videos/../../../../etc/passwd",
        "/videos/demo/leak.m4s",
        "/videos/evil/secret.m4s",
        "/videos/evil/manifest.mpd",
        "/videos/.tmp-demo-x/manifest.mpd",
        "/videos/%2etmp-demo-x/manifest.mpd",
        "http://origin.test/videos/demo/../../outside/passwd",  # absolute-form target
        "/videos/demo/chunk-0-00001.m4s/..%2f..%2f..%2foutside%2fpasswd",
    ],
)
def test_raw_traversal_attempts_are_404(base_url: str, target: str) -> None:
    status, response = _raw(base_url, _get(target))
    assert status == 404, response[:300]
    assert SECRET not in response


@pytest.mark.network
@pytest.mark.parametrize("target", ["/videos/demo/..\\..\\outside\\passwd", "/videos/demo/a b.m4s"])
def test_raw_malformed_targets_never_reach_a_file(base_url: str, target: str) -> None:
    status, response = _raw(base_url, _get(target))
    assert status in (400, 404)  # the HTTP parser may refuse the request line itself
    assert SECRET not in response


@pytest.mark.network
def test_connection_is_kept_alive_across_requests(base_url: str) -> None:
    conn = _connection(base_url)
    try:
        local_ports = set()
        for method, path in [
            ("GET", "/videos/demo/manifest.mpd"),
            ("HEAD", "/videos/demo/chunk-0-00001.m4s"),
            ("GET", "/videos/demo/chunk-0-00001.m4s"),
            ("GET", "/videos/demo/nope.m4s"),
            ("GET", "/healthz"),
        ]:
            conn.request(method, path)
            response = conn.getresponse()
            body = response.read()
            assert response.getheader("connection", "").lower() != "close"
            assert conn.sock is not None
            local_ports.add(conn.sock.getsockname()[1])
            if method == "HEAD":
                assert body == b""
                assert response.getheader("content-length") == str(len(CHUNK))
        assert len(local_ports) == 1  # all five on one TCP connection
    finally:
        conn.close()


@pytest.mark.network
def test_streamed_range_over_http(base_url: str) -> None:
    start, stop = 70_000, 400_001
    status, response = _raw(
        base_url,
        (
            "GET /videos/demo/chunk-0-00001.m4s HTTP/1.1\r\nHost: origin.test\r\n"
            f"Range: bytes={start}-{stop - 1}\r\nConnection: close\r\n\r\n"
        ).encode(),
    )
    head, _, body = response.partition(b"\r\n\r\n")
    assert status == 206
    assert f"content-range: bytes {start}-{stop - 1}/{len(CHUNK)}".encode() in head.lower()
    assert body == CHUNK[start:stop]


@pytest.fixture(scope="module")
def packaged_url(packaged_store: Path) -> Iterator[str]:
    with serve_in_thread(
        create_app(ServeConfig(store=packaged_store)), loop="uvloop", http="httptools"
    ) as url:
        yield url


@pytest.mark.network
def test_ffmpeg_decodes_every_representation_over_http(packaged_url: str) -> None:
    url = f"{packaged_url}/videos/demo/manifest.mpd"
    assert_decodes_whole_clip(url)
    conn = _connection(packaged_url)
    try:
        conn.request("GET", "/metrics")
        metrics = conn.getresponse().read().decode()
    finally:
        conn.close()
    served = sum(
        float(n)
        for n in re.findall(
            r'cdn_origin_requests_total\{route="/videos/\{video_id\}/\{name\}",status="20[06]"\} (\S+)',
            metrics,
        )
    )
    assert served >= 1 + 3 * 4  # the MPD, then 3 inits + 3 chunks for each of the 3 representations


SERVE_SCRIPT = (
    "import argparse, sys\n"
    "from origin.serve import add_serve_arguments, run_serve\n"
    "p = argparse.ArgumentParser()\n"
    "add_serve_arguments(p)\n"
    "sys.exit(run_serve(p.parse_args(sys.argv[1:])))\n"
)


@pytest.mark.network
def test_serve_command_runs_and_stops_cleanly_without_logging_the_token(tmp_path: Path) -> None:
    token = "very-secret-admin-token"
    env = {**os.environ, "CDN_ADMIN_TOKEN": token}
    store = tmp_path / "new-store"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            SERVE_SCRIPT,
            "--store",
            str(store),
            "--listen",
            "127.0.0.1:0",
            "--manifest-max-age",
            "5",
            "--max-upload-size",
            "10MiB",
        ],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stderr is not None
    try:
        first = proc.stderr.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)/videos", first)
        assert m, first
        conn = http.client.HTTPConnection("127.0.0.1", int(m.group(1)), timeout=10)
        try:
            conn.request("GET", "/healthz")
            response = conn.getresponse()
            health = response.read()
        finally:
            conn.close()
        assert response.status == 200
        assert b'"uploads":true' in health
        assert store.is_dir()  # created at start-up
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert token not in first + err


def test_serve_command_refuses_a_store_that_is_a_file(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    result = subprocess.run(
        [sys.executable, "-c", SERVE_SCRIPT, "--store", str(not_a_dir), "--listen", "127.0.0.1:0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "is not a folder" in result.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2GiB", 2 * 1024**3),
        ("500MB", 500_000_000),
        ("64k", 64000),
        ("64KiB", 65536),
        ("1048576", 1048576),
        ("1.5 MiB", 1572864),
        ("10 b", 10),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "lots", "-1GiB", "0", "5 parsecs", "1e9"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ServeConfigError, match="size"):
        parse_size(text)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    return parser.parse_args(argv)


def test_serve_options_defaults_and_environment() -> None:
    config = build_config(_parse([]), {"CDN_STORE": "/srv/store", "CDN_ADMIN_TOKEN": "from-env"})
    assert config.store == Path("/srv/store")
    assert str(config.listen) == "127.0.0.1:8000"
    assert config.admin_token == "from-env"
    assert config.uploads_enabled
    assert config.manifest_max_age == 2
    assert config.max_upload_bytes == 2 * 1024**3
    assert "from-env" not in repr(config)  # the token is never printed
    config = build_config(_parse([]), {})
    assert config.store == Path("var/store")
    assert config.admin_token is None
    assert not config.uploads_enabled


def test_serve_options_override_the_environment() -> None:
    args = _parse(
        [
            "--store",
            "s",
            "--listen",
            "[::1]:9000",
            "--admin-token",
            "cli",
            "--manifest-max-age",
            "0",
            "--max-upload-size",
            "10MiB",
            "--log-level",
            "debug",
        ]
    )
    config = build_config(args, {"CDN_STORE": "/env", "CDN_ADMIN_TOKEN": "env"})
    assert (config.store, config.listen.host, config.listen.port) == (Path("s"), "::1", 9000)
    assert config.admin_token == "cli"
    assert (config.manifest_max_age, config.max_upload_bytes, config.log_level) == (0, 10 * 1024**2, "debug")


@pytest.mark.parametrize(
    "argv",
    [
        ["--listen", "nowhere"],
        ["--max-upload-size", "big"],
        ["--manifest-max-age", "-3"],
        ["--log-level", "loud"],
    ],
)
def test_serve_options_reject_bad_values(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        _parse(argv)
    assert exc.value.code == 2
    assert argv[1] in capsys.readouterr().err


@pytest.mark.parametrize(
    "changes",
    [
        {"manifest_max_age": -1},
        {"max_upload_bytes": 0},
        {"read_size": 10},
        {"admin_token": " "},
        {"log_level": "x"},
    ],
)
def test_serve_config_validates(changes: dict[str, object]) -> None:
    with pytest.raises(ServeConfigError):
        ServeConfig(store=Path("s"), **changes)  # type: ignore[arg-type]


@pytest.mark.network
def test_serve_in_thread_reports_a_failed_start() -> None:
    async def app(scope: dict[str, object], receive: object, send: object) -> None:
        if scope["type"] == "lifespan":
            raise RuntimeError("cannot start")

    with pytest.raises(ServerStartError), serve_in_thread(app, lifespan="on", log_level="critical"):
        pass  # pragma: no cover - never reached
