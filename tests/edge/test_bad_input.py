"""Hostile and broken clients get the right 4xx or a closed connection; everyone else is served."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from tests.edge.conftest import EdgeFactory, EdgeThread, wait_until
from tests.edge.upstream_server import Origin, Resource

pytestmark = pytest.mark.network

CHUNK = "/videos/v1/1.m4s"


def _raw(edge: EdgeThread, data: bytes, timeout: float = 3.0) -> bytes:
    """Send raw bytes and read until the edge closes the connection or goes quiet."""
    with socket.create_connection(("127.0.0.1", edge.server.port), timeout=timeout) as sock:
        sock.sendall(data)
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except (TimeoutError, ConnectionResetError):
            pass
        return out


@pytest.mark.parametrize(
    ("target", "status"),
    [
        ("/videos/../etc/passwd", 400),
        ("/videos/%2e%2e/%2e%2e/etc/passwd", 400),
        ("/videos/a%2fb", 400),
        ("/videos/a%5c..%5cb", 400),
        ("/videos/a/%00", 400),
        ("/etc/passwd", 404),
        ("/", 404),
        ("/admin", 404),
    ],
)
def test_path_traversal_and_unproxied_paths(
    origin: Origin, edge: EdgeThread, target: str, status: int
) -> None:
    resp = _raw(edge, f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    assert resp.startswith(f"HTTP/1.1 {status}".encode()), resp[:100]
    assert not origin.requests


@pytest.mark.parametrize(
    ("range_header", "status"),
    [
        ("bytes=0-1,5-6", 416),
        ("bytes=" + ",".join(f"{i}-{i}" for i in range(500)), 416),
        ("bytes=999999999999999999999999-", 416),
        ("bytes=5000-", 416),
        ("bytes=abc", 416),
        ("bytes=10-5", 416),
        ("items=0-5", 200),
        ("bytes=0-", 206),
    ],
)
def test_absurd_ranges(origin: Origin, edge: EdgeThread, range_header: str, status: int) -> None:
    origin.resources[CHUNK] = Resource(body=b"z" * 1000)
    with httpx.Client(base_url=edge.url) as client:
        client.get(CHUNK)
        resp = client.get(CHUNK, headers={"Range": range_header})
    assert resp.status_code == status
    if status == 416:
        assert resp.headers["content-range"] == "bytes */1000"


def test_huge_headers_get_431(edge: EdgeThread) -> None:
    resp = _raw(edge, f"GET {CHUNK} HTTP/1.1\r\nHost: x\r\nX-Big: {'a' * 100_000}\r\n\r\n".encode())
    assert resp.startswith(b"HTTP/1.1 431")


def test_many_headers_get_431(edge: EdgeThread) -> None:
    lines = "".join(f"X-H{i}: {'v' * 50}\r\n" for i in range(2000))
    resp = _raw(edge, f"GET {CHUNK} HTTP/1.1\r\nHost: x\r\n{lines}\r\n".encode())
    assert resp.startswith(b"HTTP/1.1 431")


@pytest.mark.parametrize(
    "data",
    [
        b"GARBAGE\r\n\r\n",
        b"GET /videos/x HTTP/9.9\r\n\r\n",
        b"\x00\x01\x02\r\n\r\n",
        b"GET /videos/x HTTP/1.1\r\nBad Header\r\n\r\n",
    ],
)
def test_malformed_requests_get_400(edge: EdgeThread, data: bytes) -> None:
    resp = _raw(edge, data)
    assert resp.startswith(b"HTTP/1.1 400")


def test_methods_other_than_get_and_head(edge: EdgeThread) -> None:
    with httpx.Client(base_url=edge.url) as client:
        resp = client.post(CHUNK, content=b"x")
    assert resp.status_code == 405
    assert resp.headers["allow"] == "GET, HEAD"


def test_slowloris_is_closed_while_others_are_served(origin: Origin, make_edge: EdgeFactory) -> None:
    edge = make_edge(header_timeout=0.5)
    origin.resources[CHUNK] = Resource(body=b"ok")
    slow = [socket.create_connection(("127.0.0.1", edge.server.port)) for _ in range(20)]
    try:
        for sock in slow:
            sock.sendall(b"GET /videos/v1/1.m4s HTTP/1.1\r\nHost: x\r\n")
        with httpx.Client(base_url=edge.url) as client:
            for _ in range(5):
                assert client.get(CHUNK).content == b"ok"
                time.sleep(0.05)
        time.sleep(0.8)
        for sock in slow:
            sock.settimeout(2)
            try:
                sock.sendall(b"X-Slow: 1\r\n")
                assert sock.recv(100) == b""  # closed by the edge
            except (ConnectionResetError, BrokenPipeError):
                pass
    finally:
        for sock in slow:
            sock.close()


def test_pipelined_requests_are_answered_in_order(origin: Origin, edge: EdgeThread) -> None:
    for i in range(3):
        origin.resources[f"/videos/p/{i}"] = Resource(body=f"body-{i}".encode())
    reqs = b"".join(f"GET /videos/p/{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for i in (0, 1, 2, 1, 0))
    out = _raw(edge, reqs + b"GET /videos/p/2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    bodies = [part.split(b"\r\n\r\n", 1)[1][:6] for part in out.split(b"HTTP/1.1 200 OK")[1:]]
    assert bodies == [b"body-0", b"body-1", b"body-2", b"body-1", b"body-0", b"body-2"]


def test_garbage_after_a_pipelined_request_is_answered_after_it(origin: Origin, edge: EdgeThread) -> None:
    body = b"q" * 50_000
    origin.resources[CHUNK] = Resource(body=body)
    out = _raw(edge, f"GET {CHUNK} HTTP/1.1\r\nHost: x\r\n\r\n".encode() + b"NONSENSE\r\n\r\n")
    first, _, rest = out.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200")
    assert rest[: len(body)] == body
    assert rest[len(body) :].startswith(b"HTTP/1.1 400")


def _buffered(edge: EdgeThread) -> int:
    """Bytes the edge holds in user-space send buffers, over all its connections."""
    return edge.call(
        lambda: sum(
            c.transport.get_write_buffer_size() for c in edge.server.connections if c.transport is not None
        )
    )


def test_pipelined_hits_to_a_client_that_does_not_read_stay_bounded(origin: Origin, edge: EdgeThread) -> None:
    body = b"b" * 256 * 1024
    origin.resources[CHUNK] = Resource(body=body)
    with httpx.Client(base_url=edge.url) as client:
        assert client.get(CHUNK).content == body  # now a memory-tier hit
    with socket.create_connection(("127.0.0.1", edge.server.port)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(f"GET {CHUNK} HTTP/1.1\r\nHost: x\r\n\r\n".encode() * 100)
        time.sleep(0.5)
        # without back-pressure the edge would queue all 100 bodies (25 MiB) in memory
        assert _buffered(edge) < 1024 * 1024
        assert edge.call(lambda: len(edge.server.connections)) == 1


def test_a_client_that_stops_reading_is_dropped(origin: Origin, make_edge: EdgeFactory) -> None:
    edge = make_edge(keepalive_timeout=0.5)
    body = b"b" * 256 * 1024
    origin.resources[CHUNK] = Resource(body=body)
    with httpx.Client(base_url=edge.url) as client:
        assert client.get(CHUNK).content == body
    with socket.create_connection(("127.0.0.1", edge.server.port)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(f"GET {CHUNK} HTTP/1.1\r\nHost: x\r\n\r\n".encode() * 100)
        wait_until(lambda: edge.call(lambda: len(edge.server.connections)) == 0, timeout=5)
        with httpx.Client(base_url=edge.url) as client:
            assert client.get(CHUNK).content == body  # everyone else is still served


def test_a_request_body_trickled_byte_by_byte_is_cut_off(make_edge: EdgeFactory) -> None:
    edge = make_edge(header_timeout=0.5)
    with socket.create_connection(("127.0.0.1", edge.server.port)) as sock:
        sock.sendall(b"POST /admin/purge HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
        closed = False
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline and not closed:
            try:
                sock.sendall(b"{")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
            time.sleep(0.1)
        assert closed or edge.call(lambda: len(edge.server.connections)) == 0
