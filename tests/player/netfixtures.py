"""Real loopback servers for the player's network tests.

`DnsResponder`: a tiny authoritative DNS server (dnspython answers over real UDP and TCP sockets on
127.0.0.1) that records the source address and the EDNS Client Subnet of every query it gets.
`FaultyHTTPServer`: a threaded HTTP server serving a directory, with injectable faults (5xx answers,
short bodies, dying mid-stream, going silent mid-body), recording the path, Host header and peer of every request.
"""

from __future__ import annotations

import contextlib
import re
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset

__all__ = ["DnsQuery", "DnsResponder", "FaultyHTTPServer", "Faults"]


@dataclass(frozen=True, slots=True)
class DnsQuery:
    """What the responder saw: the peer address, the question and the ECS option (if any)."""

    peer: str
    name: str
    rdtype: str
    ecs: str | None
    tcp: bool


class DnsResponder:
    """Answer A/AAAA/CNAME from `records` ({name: [(type, value), ...]}); TTL `ttl`."""

    def __init__(
        self,
        records: dict[str, list[tuple[str, str]]],
        *,
        ttl: int = 20,
        truncate_udp: bool = False,
        servfail: frozenset[str] = frozenset(),
    ) -> None:
        self.records = records
        self.servfail = servfail  # query types answered SERVFAIL (a server that cannot do AAAA, say)
        self.ttl = ttl
        self.truncate_udp = truncate_udp
        self.queries: list[DnsQuery] = []
        self.udp, self.tcp = _bind_pair()
        self.port = int(self.udp.getsockname()[1])
        self.udp.settimeout(0.1)
        self.tcp.settimeout(0.1)
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._serve_udp, daemon=True),
            threading.Thread(target=self._serve_tcp, daemon=True),
        ]
        for t in self._threads:
            t.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(5)
        self.udp.close()
        self.tcp.close()

    def __enter__(self) -> DnsResponder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def answer(self, wire: bytes, peer: str, *, tcp: bool) -> bytes:
        """Bytes in, bytes out: build the response to one query."""
        query = dns.message.from_wire(wire)
        q = query.question[0]
        ecs = next(
            (f"{o.address}/{o.srclen}" for o in query.options if isinstance(o, dns.edns.ECSOption)), None
        )
        self.queries.append(
            DnsQuery(peer, q.name.to_text(omit_final_dot=True), dns.rdatatype.to_text(q.rdtype), ecs, tcp)
        )
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if dns.rdatatype.to_text(q.rdtype) in self.servfail:
            response.set_rcode(dns.rcode.SERVFAIL)
            return response.to_wire()
        if self.truncate_udp and not tcp:
            response.flags |= dns.flags.TC
            return response.to_wire()
        name = q.name.to_text(omit_final_dot=True)
        for _ in range(8):
            entries = self.records.get(name, [])
            cnames = [v for t, v in entries if t == "CNAME"]
            if cnames:
                response.answer.append(
                    dns.rrset.from_text(name + ".", self.ttl, "IN", "CNAME", cnames[0] + ".")
                )
                name = cnames[0]
                continue
            values = [v for t, v in entries if t == dns.rdatatype.to_text(q.rdtype)]
            if values:
                response.answer.append(
                    dns.rrset.from_text_list(
                        name + ".", self.ttl, "IN", dns.rdatatype.to_text(q.rdtype), values
                    )
                )
            break
        return response.to_wire()

    def _serve_udp(self) -> None:
        while not self._stop.is_set():
            try:
                wire, peer = self.udp.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            self.udp.sendto(self.answer(wire, peer[0], tcp=False), peer)

    def _serve_tcp(self) -> None:
        while not self._stop.is_set():
            try:
                conn, peer = self.tcp.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                (length,) = struct.unpack("!H", _recv_exact(conn, 2))
                reply = self.answer(_recv_exact(conn, length), peer[0], tcp=True)
                conn.sendall(struct.pack("!H", len(reply)) + reply)


def _apply_range(header: str | None, body: bytes, ignore: bool, shift: int) -> tuple[int, bytes, str | None]:
    """(206, the part, Content-Range) for a `bytes=a-b` Range header, else (200, body, None)."""
    match = re.fullmatch(r"bytes=(\d+)-(\d+)", header or "")
    if ignore or match is None:
        return 200, body, None
    first, last = int(match.group(1)) + shift, int(match.group(2)) + shift
    return 206, body[first : last + 1], f"bytes {first}-{last}/{len(body)}"


def _bind_pair() -> tuple[socket.socket, socket.socket]:
    """A UDP and a TCP socket on one free port of 127.0.0.1 (retry when the TCP port is taken)."""
    for _ in range(50):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            tcp.bind(("127.0.0.1", udp.getsockname()[1]))
        except OSError:
            udp.close()
            tcp.close()
            continue
        tcp.listen(8)
        return udp, tcp
    raise OSError("no free port for both UDP and TCP on 127.0.0.1")


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    parts = bytearray()
    while len(parts) < n:
        got = conn.recv(n - len(parts))
        if not got:
            raise ConnectionError("peer closed")
        parts += got
    return bytes(parts)


@dataclass
class Faults:
    """Faults to inject; counters go down as they are used."""

    status_5xx: dict[str, int] = field(default_factory=dict)  # path suffix -> 503 answers left
    short: dict[str, int] = field(default_factory=dict)  # path suffix -> short bodies left
    die_during: str | None = None  # regex: the server dies half-way through the first matching answer
    replace: dict[str, bytes] = field(default_factory=dict)  # path suffix -> body to serve instead
    redirect: dict[str, str] = field(default_factory=dict)  # path suffix -> Location of a 302
    ignore_range: bool = False  # answer 200 with the whole file to a Range request
    chunked_short: dict[str, int] = field(
        default_factory=dict
    )  # path suffix -> cut, cleanly ended bodies left
    silent: dict[str, int] = field(default_factory=dict)  # path suffix -> answers that stop half-way, open
    range_shift: int = 0  # answer a Range request with the bytes this far on (Content-Range says so)
    on_die: Callable[[], None] | None = None  # called when the server dies (e.g. to update DNS)


class FaultyHTTPServer:
    """Serve `root` on (host, port) with `faults`; `requests` lists (path, Host header, peer ip)."""

    def __init__(
        self, root: Path, *, host: str = "127.0.0.1", port: int = 0, faults: Faults | None = None
    ) -> None:
        self.root = root
        self.faults = faults or Faults()
        self.requests: list[tuple[str, str, str]] = []
        self.heads: list[str] = []
        self.connections: set[socket.socket] = set()
        self.released = threading.Event()  # set on close: silent answers end (the connection closes)
        self._lock = threading.Lock()
        handler = _make_handler(self)
        self.server = ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True
        self.host = host
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        self._closed = False

    def close(self) -> None:
        """Stop serving and close the listening socket (new connections are refused)."""
        if self._closed:
            return
        self._closed = True
        self.released.set()
        self.server.shutdown()
        self.server.server_close()
        with self._lock:
            for conn in self.connections:  # a dead server also drops its keep-alive connections
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
        self._thread.join(5)

    def __enter__(self) -> FaultyHTTPServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def take(self, table: dict[str, int], path: str) -> bool:
        """Use one fault from `table` if one matches `path`."""
        with self._lock:
            for suffix, left in table.items():
                if path.endswith(suffix) and left > 0:
                    table[suffix] = left - 1
                    return True
        return False


def _make_handler(owner: FaultyHTTPServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            with owner._lock:
                owner.connections.add(self.connection)

        def finish(self) -> None:
            with owner._lock:
                owner.connections.discard(self.connection)
            with contextlib.suppress(OSError):
                super().finish()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            pass

        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            path = self.path.split("?")[0]
            owner.requests.append((path, self.headers.get("Host", ""), self.client_address[0]))
            location = next((u for sfx, u in owner.faults.redirect.items() if path.endswith(sfx)), None)
            if location is not None:
                self.send_response(302)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if owner.take(owner.faults.status_5xx, path):
                self._send(503, b"busy", close=False)
                return
            body = next((b for s, b in owner.faults.replace.items() if path.endswith(s)), None)
            file = owner.root / path.lstrip("/").removeprefix("videos/")
            if body is None:
                if not file.is_file():
                    self._send(404, b"not found", close=False)
                    return
                body = file.read_bytes()
            if owner.take(owner.faults.chunked_short, path):  # no Content-Length, half the body, a clean end
                self.send_response(200)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                half = body[: len(body) // 2]
                self.wfile.write(f"{len(half):x}\r\n".encode() + half + b"\r\n0\r\n\r\n")
                return
            if owner.take(owner.faults.silent, path):  # a hung edge: headers, half the body, then nothing
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                owner.released.wait()  # neither more bytes nor a close until the server stops
                self.close_connection = True
                return
            dying = owner.faults.die_during is not None and re.search(owner.faults.die_during, path)
            if dying or owner.take(owner.faults.short, path):
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                if dying:
                    owner.faults.die_during = None
                    if owner.faults.on_die is not None:
                        owner.faults.on_die()
                    threading.Thread(target=owner.close, daemon=True).start()
                return
            status, part, content_range = _apply_range(
                self.headers.get("Range"), body, owner.faults.ignore_range, owner.faults.range_shift
            )
            self._send(status, part, close=False, content_range=content_range)

        def do_HEAD(self) -> None:  # noqa: N802 - stdlib name
            path = self.path.split("?")[0]
            owner.heads.append(path)
            file = owner.root / path.lstrip("/").removeprefix("videos/")
            self.send_response(200 if file.is_file() else 404)
            self.send_header("Content-Length", str(file.stat().st_size if file.is_file() else 0))
            self.end_headers()

        def _send(self, status: int, body: bytes, *, close: bool, content_range: str | None = None) -> None:
            self.send_response(status)
            if content_range is not None:
                self.send_header("Content-Range", content_range)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = close

    return Handler
