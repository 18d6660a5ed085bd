"""A small real HTTP/1.1 origin for the edge tests, whose behaviour each test scripts.

It listens on 127.0.0.1 port 0 in a thread, speaks keep-alive, answers HEAD with the GET's head and
no body, answers If-None-Match / If-Modified-Since with 304 when the resource allows it, counts
requests per path (and method), can pick the body by request headers (content negotiation), and can
hold the body half-way on a gate, die mid-body, stall, or answer 5xx.
"""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Resource:
    """What the origin answers for one path."""

    body: bytes = b""
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=lambda: [("Cache-Control", "max-age=60")])
    etag: str | None = None
    last_modified: str | None = None
    chunked: bool = False
    close_delimited: bool = False  # no Content-Length: the body ends when the connection closes
    gate_after: int | None = None  # send this many body bytes, then wait for `gate`
    gate: threading.Event = field(default_factory=threading.Event)
    die_after: int | None = None  # send this many body bytes, then drop the connection
    delay: float = 0.0  # seconds before the response head
    hold: threading.Event | None = None  # if given, the head waits until it is set
    not_modified: bool = True  # answer conditional requests with 304 when validators match
    send_date: bool = True  # False: no Date header (allowed for a server without a clock)
    body_on_head: bool = False  # misbehave: send the body after the head of a HEAD response too
    negotiate: Callable[[dict[str, str]], bytes] | None = None  # the body for these request headers


@dataclass
class Seen:
    """One request the origin received."""

    path: str
    headers: dict[str, str]
    method: str = "GET"


class Origin:
    """The scripted origin: `resources[path] = Resource(...)`, then read `requests`."""

    def __init__(self) -> None:
        self.resources: dict[str, Resource] = {}
        self.requests: list[Seen] = []
        self.connections = 0  # TCP connections accepted
        self.lock = threading.Lock()
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                outer._serve_connection(self.request)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port = int(self._server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        self._conns: set[socket.socket] = set()

    def count(self, path: str, method: str | None = None) -> int:
        """How many requests for `path` (with `method`, if given) arrived."""
        with self.lock:
            return sum(1 for s in self.requests if s.path == path and method in (None, s.method))

    def methods(self, path: str) -> list[str]:
        """The methods of the requests for `path`, in order of arrival."""
        with self.lock:
            return [s.method for s in self.requests if s.path == path]

    def stop(self) -> None:
        """Stop listening and drop every open connection (the origin goes down)."""
        self._server.shutdown()
        self._server.server_close()
        with self.lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(5)

    # -- connection handling ---------------------------------------------------------------

    def _serve_connection(self, sock: socket.socket) -> None:
        with self.lock:
            self._conns.add(sock)
            self.connections += 1
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = sock.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path = lines[0].split(" ")[:2]
                headers = {
                    k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])
                }
                with self.lock:
                    self.requests.append(Seen(path, headers, method))
                if not self._respond(sock, path, headers, head_only=method == "HEAD"):
                    return
        except OSError:
            return
        finally:
            with self.lock:
                self._conns.discard(sock)
            sock.close()

    def _respond(self, sock: socket.socket, path: str, headers: dict[str, str], *, head_only: bool) -> bool:
        res = self.resources.get(path)
        if res is None:
            res = Resource(body=b"not found\n", status=404, headers=[])
        if res.delay:
            time.sleep(res.delay)
        if res.hold is not None:
            res.hold.wait(30)
        extra = list(res.headers)
        if res.etag:
            extra.append(("ETag", res.etag))
        if res.last_modified:
            extra.append(("Last-Modified", res.last_modified))
        if res.send_date:
            extra.append(("Date", time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())))
        if res.not_modified and res.status == 200 and _matches(res, headers):
            sock.sendall(_head(304, extra))
            return True
        body = res.body if res.negotiate is None else res.negotiate(headers)
        if res.close_delimited:
            sent = b"" if head_only and not res.body_on_head else body
            sock.sendall(_head(res.status, [*extra, ("Connection", "close")]) + sent)
            return False
        if res.chunked:
            sock.sendall(_head(res.status, [*extra, ("Transfer-Encoding", "chunked")]))
        else:
            sock.sendall(_head(res.status, [*extra, ("Content-Length", str(len(body)))]))
        if head_only and not res.body_on_head:
            return True  # RFC 9110 §9.3.2: the head a GET would get, without its body
        return self._send_body(sock, res, body)

    def _send_body(self, sock: socket.socket, res: Resource, body: bytes) -> bool:
        pos = 0
        if res.gate_after is not None:
            self._send(sock, body[: res.gate_after], res.chunked)
            res.gate.wait(30)
            pos = res.gate_after
        if res.die_after is not None:
            self._send(sock, body[pos : res.die_after], res.chunked)
            sock.shutdown(socket.SHUT_RDWR)
            return False
        self._send(sock, body[pos:], res.chunked)
        if res.chunked:
            sock.sendall(b"0\r\n\r\n")
        return True

    @staticmethod
    def _send(sock: socket.socket, data: bytes, chunked: bool) -> None:
        if not data:
            return
        sock.sendall(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)


def _matches(res: Resource, headers: dict[str, str]) -> bool:
    if "if-none-match" in headers:
        return res.etag is not None and headers["if-none-match"] == res.etag
    return res.last_modified is not None and headers.get("if-modified-since") == res.last_modified


def _head(status: int, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} X"] + [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
