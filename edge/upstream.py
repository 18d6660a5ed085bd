"""A minimal pooled HTTP/1.1 client for the origin and the parent edge, on the server's own loop.

`UpstreamPool.start(path, headers)` sends a GET (or a HEAD) on a kept-alive connection and returns
as soon as the status line and headers are in (`UpstreamResponse`); `response.stream(on_body)` then
hands every body chunk to a callback the moment it arrives, and `await response.finished()` completes
when the message does (for a HEAD: with the head), or raises if the connection broke mid-body. No task or queue per chunk:
the miss path adds microseconds, not milliseconds, over the origin's own TTFB.
`UpstreamChain` tries the parent first and falls back to the origin when it fails.
An `https://` upstream is reached over TLS (`client_tls_context`: system CAs plus `--upstream-ca`,
certificate and host-name checks always on); the connect timeout covers the handshake too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import httptools

from cdn.tls import TlsFileError, verify_failure
from cdn.tls import client_tls_context as shared_client_tls_context
from edge.errors import ConfigError, UpstreamBrokenError, UpstreamConnectError, UpstreamError, UpstreamTimeout

__all__ = [
    "Method",
    "UpstreamChain",
    "UpstreamPool",
    "UpstreamResponse",
    "client_tls_context",
    "connect_failure",
]

log = logging.getLogger("edge.upstream")

BodySink = Callable[[bytes], None]
Method = Literal["GET", "HEAD"]
_MAX_IDLE = 64
_DEFAULT_PORTS = {"http": 80, "https": 443}
# OpenSSL's "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)": keep the words only
_SSL_NOISE = re.compile(r"^\[[^\]]*\]\s*|\s*\(_ssl\.c:\d+\)$")
_TLS_FAILED = "TLS handshake failed: "


def client_tls_context(ca_file: Path | None = None) -> ssl.SSLContext:
    """A TLS client context for https upstreams (`cdn.tls`): the system CAs plus `--upstream-ca`.

    Certificate and host-name verification are always on. Raise ConfigError for a bad CA file.
    """
    try:
        return shared_client_tls_context(ca_file, option="--upstream-ca")
    except TlsFileError as exc:
        raise ConfigError(str(exc)) from None


def _ssl_words(exc: ssl.SSLError) -> str:
    """OpenSSL's message without its `[LIB: CODE]` prefix and `(_ssl.c:N)` suffix."""
    text = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], str) else str(exc)
    return _SSL_NOISE.sub("", text)


def connect_failure(exc: OSError, *, tls: bool) -> str:
    """Say in words why connecting (TCP, then the TLS handshake when `tls`) failed, with a hint."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"{_TLS_FAILED}{verify_failure(exc, ca_option='--upstream-ca')}"
    if isinstance(exc, ssl.SSLError):
        hint = " (is it serving plain http?)" if exc.reason == "WRONG_VERSION_NUMBER" else ""
        return f"{_TLS_FAILED}{_ssl_words(exc)}{hint}"
    if tls and isinstance(exc, ConnectionError) and not isinstance(exc, ConnectionRefusedError):
        return f"{_TLS_FAILED}{exc.strerror or exc}"  # reset or closed mid-handshake
    return str(exc.strerror or exc)


class UpstreamResponse(asyncio.Protocol):
    """One connection to an upstream; carries one response at a time (keep-alive)."""

    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.status = 0
        self.headers: dict[str, str] = {}
        self._header_list: list[tuple[str, str]] = []
        self._parser = httptools.HttpResponseParser(self)
        self._head: asyncio.Future[None] | None = None
        self._done: asyncio.Future[None] | None = None
        self._sink: BodySink | None = None
        self._pending: list[bytes] = []
        self._timer: asyncio.TimerHandle | None = None
        self._name = b""
        self._method: Method = "GET"
        self.reusable = False
        self.reused = False
        self.closed = False

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._arm_timer()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(
                UpstreamBrokenError(f"malformed response from {self.pool.url}: {exc}", url=self.pool.url)
            )

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._cancel_timer()
        if exc is None and self._delimited_by_close():
            self.on_message_complete()  # RFC 9112 §6.3: no length, not chunked: the body ends at EOF
            return
        self._fail(
            UpstreamBrokenError(f"{self.pool.url} closed the connection mid-response", url=self.pool.url)
        )

    def _delimited_by_close(self) -> bool:
        """Is the response in flight one whose body simply runs until the connection closes?"""
        head_in = self._head is not None and self._head.done() and not self._head.exception()
        return (
            head_in
            and self.status not in (204, 304)
            and "content-length" not in self.headers
            and "chunked" not in self.headers.get("transfer-encoding", "").lower()
        )

    # -- httptools callbacks -------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_list.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        self.headers = {k.lower(): v for k, v in self._header_list}
        if self._head is not None and not self._head.done():
            self._head.set_result(None)
        if self._method == "HEAD":
            # A response to HEAD ends with its head (RFC 9110 §9.3.2) whatever its Content-Length
            # says; httptools cannot be told so, and `send` gives the next exchange a fresh parser.
            self.on_message_complete()

    def on_body(self, body: bytes) -> None:
        if self._method == "HEAD":
            self.close()  # a body after a HEAD response: the connection's framing is lost
            return
        self.pool.bytes_fetched += len(body)
        if self._sink is not None:
            self._sink(body)
        else:
            self._pending.append(body)

    def on_message_complete(self) -> None:
        self._cancel_timer()
        self.reusable = not self.closed and self._parser.should_keep_alive()
        if self._done is not None and not self._done.done():
            self._done.set_result(None)

    # -- request life cycle ------------------------------------------------------------------

    def send(self, path: str, headers: Sequence[tuple[str, str]], method: Method = "GET") -> None:
        """Write a GET or HEAD request and arm the read timeout."""
        loop = asyncio.get_running_loop()
        self._head, self._done = loop.create_future(), loop.create_future()
        self._header_list, self._pending, self._sink, self.status = [], [], None, 0
        self._parser = httptools.HttpResponseParser(self)
        self._method = method
        host = f"Host: {self.pool.host_header}"
        lines = [f"{method} {path} HTTP/1.1", host, *(f"{k}: {v}" for k, v in headers)]
        assert self.transport is not None
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        self._arm_timer()

    @property
    def header_list(self) -> list[tuple[str, str]]:
        """Response headers in order, original case."""
        return self._header_list

    async def wait_head(self) -> None:
        """Wait for the status line and headers; raise UpstreamError."""
        assert self._head is not None
        await self._head

    def stream(self, sink: BodySink) -> None:
        """Deliver body chunks (already received ones first) to `sink` as they arrive."""
        pending, self._pending = self._pending, []
        for chunk in pending:
            sink(chunk)
        self._sink = sink

    async def finished(self) -> None:
        """Wait for the end of the body, then return the connection to the pool; raise UpstreamError."""
        assert self._done is not None
        try:
            await self._done
        except BaseException:
            self.close()
            raise
        self._sink = None
        self.pool.release(self)

    def close(self) -> None:
        """Drop the connection (after an error or an unwanted response)."""
        self.reusable = False
        self._cancel_timer()
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.abort()

    def _fail(self, exc: UpstreamError) -> None:
        for fut in (self._head, self._done):
            if fut is not None and not fut.done():
                fut.set_exception(exc)
                fut.exception()  # mark retrieved: the caller may be waiting on the other one
        self.close()

    def _arm_timer(self) -> None:
        self._cancel_timer()
        if self._done is not None and not self._done.done():
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.pool.read_timeout, self._timed_out)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self) -> None:
        msg = f"{self.pool.url} sent nothing for {self.pool.read_timeout:g} s"
        self._fail(UpstreamTimeout(msg, url=self.pool.url))


class UpstreamPool:
    """Kept-alive connections to one upstream (`http://host:port` or `https://host:port`).

    For https, `tls` is the client context (default: `client_tls_context()`, the system CAs); the
    SNI and the name checked against the certificate are the URL's host.
    """

    def __init__(
        self,
        url: str,
        *,
        connect_timeout: float,
        read_timeout: float,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(url)
        self.url = url
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or _DEFAULT_PORTS.get(parts.scheme, 80)
        self.host_header = parts.netloc
        self.tls = (tls or client_tls_context()) if parts.scheme == "https" else None
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._last_tls_failure = ""
        self._idle: list[UpstreamResponse] = []
        self.bytes_fetched = 0
        self.requests = 0

    async def start(
        self, path: str, headers: Sequence[tuple[str, str]] = (), *, method: Method = "GET"
    ) -> UpstreamResponse:
        """Send `method` `path`; return once the response head is in. Raise UpstreamError."""
        conn = self._take_idle()
        if conn is not None:
            try:
                return await self._exchange(conn, path, headers, method)
            except UpstreamBrokenError:
                pass  # the idle connection was closed by the server meanwhile: retry on a new one
        return await self._exchange(await self._connect(), path, headers, method)

    async def _exchange(
        self, conn: UpstreamResponse, path: str, headers: Sequence[tuple[str, str]], method: Method
    ) -> UpstreamResponse:
        self.requests += 1
        conn.send(path, headers, method)
        try:
            await conn.wait_head()
        except BaseException:
            conn.close()
            raise
        return conn

    def _take_idle(self) -> UpstreamResponse | None:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed:
                conn.reused = True
                return conn
        return None

    async def _connect(self) -> UpstreamResponse:
        loop = asyncio.get_running_loop()
        sni = self.host if self.tls is not None else None  # also the name the certificate must match
        try:
            async with asyncio.timeout(self.connect_timeout):  # the TLS handshake included
                _, proto = await loop.create_connection(
                    lambda: UpstreamResponse(self), self.host, self.port, ssl=self.tls, server_hostname=sni
                )
        except TimeoutError as exc:
            what = "TCP connect and TLS handshake" if self.tls else "TCP connect"
            msg = f"cannot connect to {self.url}: {what} timed out after {self.connect_timeout:g} s"
            raise UpstreamConnectError(msg, url=self.url) from exc
        except OSError as exc:
            reason = connect_failure(exc, tls=self.tls is not None)
            self._report_tls_failure(reason)
            raise UpstreamConnectError(f"cannot connect to {self.url}: {reason}", url=self.url) from exc
        self._last_tls_failure = ""
        return proto

    def _report_tls_failure(self, reason: str) -> None:
        """Log a TLS failure once until it changes or a connection succeeds (a 502 alone hides it)."""
        if reason.startswith(_TLS_FAILED) and reason != self._last_tls_failure:
            log.warning("upstream %s: %s", self.url, reason)
        self._last_tls_failure = reason

    def release(self, conn: UpstreamResponse) -> None:
        """Keep a finished connection for the next request (or close it)."""
        if conn.reusable and not conn.closed and len(self._idle) < _MAX_IDLE:
            self._idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        """Close every idle connection."""
        while self._idle:
            self._idle.pop().close()


class UpstreamChain:
    """The parent edge first (if any), the origin as the fallback."""

    def __init__(self, pools: Sequence[UpstreamPool]) -> None:
        if not pools:
            raise ValueError("an upstream chain needs at least the origin")
        self.pools = list(pools)
        self.fallbacks = 0

    async def start(
        self, path: str, headers: Sequence[tuple[str, str]] = (), *, method: Method = "GET"
    ) -> UpstreamResponse:
        """GET (or HEAD) from the first upstream that answers without a 5xx; raise the last error."""
        last: UpstreamError | None = None
        for i, pool in enumerate(self.pools):
            is_last = i == len(self.pools) - 1
            try:
                resp = await pool.start(path, headers, method=method)
            except UpstreamError as exc:
                last = exc
                self.fallbacks += not is_last
                continue
            if resp.status >= 500 and not is_last:
                resp.close()
                self.fallbacks += 1
                continue
            return resp
        assert last is not None
        raise last

    @property
    def requests(self) -> int:
        """Upstream requests sent, over every pool."""
        return sum(p.requests for p in self.pools)

    @property
    def bytes_fetched(self) -> int:
        """Body bytes received, over every pool."""
        return sum(p.bytes_fetched for p in self.pools)

    def close(self) -> None:
        """Close every idle connection."""
        for pool in self.pools:
            with contextlib.suppress(Exception):
                pool.close()
