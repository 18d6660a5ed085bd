"""The HTTP/1.1 server connection: httptools parsing, keep-alive, pipelining, limits and timeouts.

`HttpConnection` is an asyncio Protocol that parses requests with httptools and hands each
complete `Request` to its `Handler`, strictly one at a time and in order (pipelining-safe): the
handler's `try_fast` answers cache hits synchronously from memory without creating a task; anything
else runs as one task and the queue waits for it. The connection enforces the header size limit
(431), a header deadline against slowloris, an idle keep-alive timeout, and write back-pressure.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable
from http import HTTPStatus
from typing import Protocol

import httptools

from edge.cachecontrol import format_http_date

__all__ = ["Handler", "HttpConnection", "Request", "http_date", "reason", "render_head"]

log = logging.getLogger("edge.http")

_MAX_BODY = 1024 * 1024
_MAX_QUEUE = 64
_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
_date_cache: tuple[int, bytes] = (0, b"")
# Headers that make a request more than a plain GET (checked by name length first: cheap).
_SPECIAL = frozenset(
    {b"range", b"if-range", b"if-none-match", b"if-modified-since", b"if-match", b"if-unmodified-since"}
)
_SPECIAL_LENGTHS = frozenset(len(n) for n in _SPECIAL)
_METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH")}


def reason(status: int) -> bytes:
    """The reason phrase of a status code."""
    return _REASONS.get(status, b"Unknown")


def http_date() -> bytes:
    """The current IMF-fixdate, recomputed at most once a second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, format_http_date(now).encode())
    return _date_cache[1]


def render_head(status: int, headers: list[tuple[str, str]]) -> bytes:
    """A status line plus header lines, without the blank line that ends the head."""
    lines = [b"HTTP/1.1 %d %s\r\n" % (status, reason(status))]
    lines += [f"{k}: {v}\r\n".encode("latin-1", "replace") for k, v in headers]
    return b"".join(lines)


class Request:
    """One parsed request; `plain` is False when it carries Range or conditional headers."""

    __slots__ = (
        "_headers",
        "body",
        "keep_alive",
        "method",
        "plain",
        "raw_headers",
        "started",
        "target",
        "version",
    )

    def __init__(
        self,
        *,
        method: str,
        target: str,
        raw_headers: list[tuple[bytes, bytes]],
        body: bytes = b"",
        keep_alive: bool = True,
        version: str = "1.1",
        started: float = 0.0,
        plain: bool = True,
    ) -> None:
        self.method = method
        self.target = target
        self.raw_headers = raw_headers
        self.body = body
        self.keep_alive = keep_alive
        self.version = version
        self.started = started
        self.plain = plain
        self._headers: dict[str, str] | None = None

    @property
    def headers(self) -> dict[str, str]:
        """Headers by lower-case name (repeated ones joined with ', '), decoded on first use."""
        if self._headers is None:
            headers: dict[str, str] = {}
            for name, value in self.raw_headers:
                key = name.decode("latin-1").lower()
                text = value.decode("latin-1")
                headers[key] = f"{headers[key]}, {text}" if key in headers else text
            self._headers = headers
        return self._headers


class Handler(Protocol):
    """What a connection needs from the server."""

    header_timeout: float
    keepalive_timeout: float
    max_header_bytes: int

    def try_fast(self, conn: HttpConnection, req: Request) -> bool: ...

    def handle(self, conn: HttpConnection, req: Request) -> Awaitable[None]: ...

    def connection_opened(self, conn: HttpConnection) -> None: ...

    def connection_closed(self, conn: HttpConnection) -> None: ...


class HttpConnection(asyncio.Protocol):
    """One client connection."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._body = b""
        self._plain = True
        self._head_bytes = 0
        self._in_head = False
        self._in_message = False  # between the first byte of a request and its end (head + body)
        self._queue: deque[Request] = deque()
        self._busy = False
        self._last_activity = time.monotonic()
        self._head_started = 0.0
        self._write_paused = False
        self._stalled_since = 0.0  # when the send buffer last shrank while writing was paused
        self._stalled_size = 0
        self._reading_paused = False
        self._drain: asyncio.Future[None] | None = None
        self._error: int = 0

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.handler.connection_opened(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._queue.clear()
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        self.handler.connection_closed(self)

    def pause_writing(self) -> None:
        self._write_paused = True
        self._stalled_since, self._stalled_size = time.monotonic(), self._buffered()

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        self._update_reading()
        self._process()  # pipelined requests held back while the client was not reading

    def data_received(self, data: bytes) -> None:
        self._last_activity = time.monotonic()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._error = self._error or 400
        except httptools.HttpParserError:
            self._error = self._error or 400
        if not self._error and self._in_head and self._head_bytes > self.handler.max_header_bytes:
            self._error = 431
        self._process()

    # -- httptools callbacks --------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._body = b""
        self._head_bytes = 0
        self._in_head = True
        self._in_message = True
        self._plain = True
        self._head_started = self._last_activity

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_bytes += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value) + 4
        if len(name) in _SPECIAL_LENGTHS and name.lower() in _SPECIAL:
            self._plain = False
        if self._head_bytes <= self.handler.max_header_bytes:
            self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._head_bytes > self.handler.max_header_bytes:
            self._error = 431

    def on_body(self, body: bytes) -> None:
        if len(self._body) + len(body) > _MAX_BODY:
            self._error = self._error or 413
        else:
            self._body += body

    def on_message_complete(self) -> None:
        self._in_message = False
        if self._error:
            return
        parser = self._parser
        raw_method = parser.get_method()
        self._queue.append(
            Request(
                method=_METHODS.get(raw_method) or raw_method.decode("latin-1"),
                target=self._url.decode("latin-1"),
                raw_headers=self._headers,
                body=self._body,
                keep_alive=parser.should_keep_alive(),
                version=parser.get_http_version(),
                started=time.perf_counter(),
                plain=self._plain,
            )
        )

    # -- request queue ---------------------------------------------------------------------

    def _process(self) -> None:
        # Stop while the client is not reading: a burst of pipelined hits must not pile their
        # bodies up in the send buffer (resume_writing picks the queue up again).
        while self._queue and not self._busy and not self.closed and not self._write_paused:
            req = self._queue.popleft()
            if self.handler.try_fast(self, req):
                continue
            self._busy = True
            asyncio.get_running_loop().create_task(self._run(req))
        if self._error:
            # Answer the protocol error only after the requests before it (pipelining order).
            if not self._busy and not self._queue:
                self._fail(self._error)
            elif not self._reading_paused and self.transport is not None:
                self._reading_paused = True
                self.transport.pause_reading()
        elif self._reading_paused or self._write_paused or len(self._queue) > _MAX_QUEUE:
            self._update_reading()

    async def _run(self, req: Request) -> None:
        try:
            await self.handler.handle(self, req)
        except Exception:
            log.exception("error answering %s %s", req.method, req.target[:200])
            self.abort()
        finally:
            self._busy = False
            self._last_activity = time.monotonic()
        self._process()

    def _update_reading(self) -> None:
        if self.transport is None or self.closed or self._error:
            return
        want_pause = self._write_paused or len(self._queue) > _MAX_QUEUE
        if want_pause != self._reading_paused:
            self._reading_paused = want_pause
            (self.transport.pause_reading if want_pause else self.transport.resume_reading)()

    # -- output -------------------------------------------------------------------------------

    @property
    def write_paused(self) -> bool:
        """True while the socket's send buffer is above the high-water mark."""
        return self._write_paused

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Queue bytes on the socket (no-op once the connection is gone)."""
        if not self.closed and self.transport is not None:
            self.transport.write(data)

    def writelines(self, parts: list[bytes | memoryview]) -> None:
        """Queue several buffers at once (one writev on uvloop)."""
        if not self.closed and self.transport is not None:
            self.transport.writelines(parts)

    async def drain(self) -> None:
        """Wait until the send buffer is below its low-water mark (or the client left)."""
        if self._write_paused and not self.closed:
            self._drain = asyncio.get_running_loop().create_future()
            await self._drain

    def finish(self, keep_alive: bool) -> None:
        """End of a response: close gracefully unless the connection is kept alive."""
        if not keep_alive and self.transport is not None and not self.closed:
            self.closed = True
            self.transport.close()

    def abort(self) -> None:
        """Drop the connection at once (the client sees an incomplete response)."""
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.abort()

    def _stalled(self, now: float) -> bool:
        """Has the send buffer not shrunk for the idle timeout while writing was paused?"""
        size = self._buffered()
        if size < self._stalled_size:
            self._stalled_since, self._stalled_size = now, size
        else:
            self._stalled_size = size  # grew (more was queued): progress is a shrink from here
        return now - self._stalled_since > self.handler.keepalive_timeout

    def _buffered(self) -> int:
        return self.transport.get_write_buffer_size() if self.transport is not None else 0

    def _fail(self, status: int) -> None:
        """Answer a protocol error with a short response and close."""
        msg = reason(status)
        head = render_head(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(msg) + 1))])
        self.write(head + b"Connection: close\r\n\r\n" + msg + b"\n")
        self.finish(keep_alive=False)

    # -- timeouts (checked by the server's sweeper, not a timer per request) ------------------

    def check_timeouts(self, now: float) -> None:
        """Close the connection if its request deadline (slowloris), idle keep-alive or stalled send expired.

        The request deadline covers the head and the body: a body trickled a byte at a time is
        as much a slowloris as a head. A client that reads nothing of a response for the idle
        timeout is aborted, so it cannot hold a connection and its buffered bytes for ever.
        """
        if self.transport is None:
            return
        if self._write_paused and self._stalled(now):
            self.closed = True  # also when a graceful close is waiting for the buffer to flush
            self.transport.abort()
            return
        if self._busy or self.closed:
            return
        if self._in_message:
            expired = now - self._head_started > self.handler.header_timeout
        else:
            expired = not self._queue and now - self._last_activity > self.handler.keepalive_timeout
        if expired:
            self.closed = True
            self.transport.close()
