"""A lean HTTP/1.1 keep-alive GET client on asyncio streams, for the load tester's hot loop.

One `Connection` per simulated player: it sends `GET` with a fixed Host header, reads the status
line and headers, then drains the body (Content-Length or chunked) counting bytes, and keeps the
connection for the next request. A thousand of these in one uvloop process cost far less CPU than a
general-purpose client. With an SSL context it speaks TLS (SNI and certificate checked against
`server_name`, never the IP connected to); a refused handshake is a `TLSFailure` in words, not a
traceback. No redirects, no decompression.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

from cdn.tls import verify_failure

__all__ = ["Connection", "HTTPClientError", "Response", "TLSFailure", "describe_failure"]

_READ = 256 * 1024
_MAX_HEADER = 64 * 1024
_CLOSE_WAIT = 2.0  # seconds to wait for a clean close (TLS close_notify) before dropping the socket


class HTTPClientError(Exception):
    """Raised when a load-test request fails: connect error, timeout, or a malformed response."""


class TLSFailure(HTTPClientError):
    """Raised when the TLS handshake fails: the certificate was refused, or the protocol failed."""


@dataclass(frozen=True, slots=True)
class Response:
    """What the load tester keeps of a response: status, body size, the body when asked, cache header."""

    status: int
    size: int
    body: bytes = b""
    cache: str | None = None


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    """Status code and lower-cased headers of a response head (pure)."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise HTTPClientError(f"malformed status line {lines[0][:80]!r}")
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


def describe_failure(exc: BaseException, server_name: str | None = None) -> str:
    """A request failure in words (pure): OpenSSL's reason for TLS, else the exception's type and text."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS: {verify_failure(exc, ca_option='--ca')} (for {server_name})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: handshake failed: {(exc.reason or str(exc)).lower().replace('_', ' ')}"
    return f"{type(exc).__name__} {exc}"


class Connection:
    """A persistent HTTP/1.1 connection to one host:port (reconnects when the server closes it).

    With `tls` (a client context, shared by every connection of a run) it speaks TLS and checks the
    certificate against `server_name` (default `host`), which is also the SNI. `opened` counts the
    connections made (with TLS: completed handshakes), to compare keep-alive reuse.
    """

    def __init__(
        self, host: str, port: int, *, host_header: str | None = None, source: str | None = None,
        tls: ssl.SSLContext | None = None, server_name: str | None = None,
    ) -> None:  # fmt: skip
        self.host, self.port = host, port
        self.host_header = host_header or f"{host}:{port}"
        self.source = source
        self.tls = tls
        self.server_name = (server_name or host) if tls is not None else None
        self.scheme = "https" if tls is not None else "http"
        self.opened = 0
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _connect(self) -> None:
        local = (self.source, 0) if self.source else None
        self._reader, self._writer = await asyncio.open_connection(
            self.host, self.port, local_addr=local, ssl=self.tls, server_hostname=self.server_name
        )
        self.opened += 1

    async def get(self, path: str, *, time_limit: float, keep_body: bool = False) -> Response:
        """GET `path` within `time_limit` seconds (connect and TLS handshake included).

        Raise TLSFailure when the handshake fails, HTTPClientError on any other failure; the
        connection is then closed.
        """
        try:
            return await asyncio.wait_for(self._get(path, keep_body), time_limit)
        except (
            OSError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            TimeoutError,
            ValueError,
        ) as exc:
            await self.close()
            error = TLSFailure if isinstance(exc, ssl.SSLError) else HTTPClientError
            url = f"{self.scheme}://{self.host}:{self.port}{path}"
            raise error(f"GET {url}: {describe_failure(exc, self.server_name)}") from exc
        except HTTPClientError:
            await self.close()
            raise

    async def _get(self, path: str, keep_body: bool) -> Response:
        if self._writer is None or self._writer.is_closing():
            await self._connect()
        assert self._reader is not None
        assert self._writer is not None
        self._writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {self.host_header}\r\nUser-Agent: cdn-loadtest\r\n\r\n".encode()
        )
        head = await self._reader.readuntil(b"\r\n\r\n")
        if len(head) > _MAX_HEADER:
            raise HTTPClientError("response head too large")
        status, headers = _parse_head(head[:-4])
        body = bytearray() if keep_body else None
        if headers.get("transfer-encoding", "").lower() == "chunked":
            size = await self._chunked(body)
        else:
            size = await self._fixed(int(headers.get("content-length", "0")), body)
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return Response(status, size, bytes(body) if body is not None else b"", headers.get("x-cache"))

    async def _fixed(self, length: int, body: bytearray | None) -> int:
        assert self._reader is not None
        left = length
        while left > 0:
            data = await self._reader.read(min(left, _READ))
            if not data:
                raise asyncio.IncompleteReadError(b"", left)
            left -= len(data)
            if body is not None:
                body += data
        return length

    async def _chunked(self, body: bytearray | None) -> int:
        assert self._reader is not None
        total = 0
        for _ in range(1 << 20):  # bounded: a body of more than a million chunks is an error
            line = await self._reader.readuntil(b"\r\n")
            size = int(line.split(b";")[0].strip(), 16)
            if size == 0:
                await self._reader.readuntil(b"\r\n")  # no trailers expected
                return total
            data = await self._reader.readexactly(size + 2)
            total += size
            if body is not None:
                body += data[:-2]
        raise HTTPClientError("chunked body with too many chunks")

    async def close(self) -> None:
        """Close the socket (idempotent); a TLS peer silent to close_notify is dropped after a while."""
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), _CLOSE_WAIT)
            except TimeoutError:
                writer.transport.abort()
            except (OSError, asyncio.CancelledError):
                pass
