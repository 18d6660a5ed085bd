"""TLS for viewers: the server context of `--tls-cert/--tls-key` and the listener that uses it.

`server_tls_context` loads the certificate chain and key once, at start-up, and turns every way they
can be wrong into a ConfigError naming the file (never its contents). `TlsListener` is the edge's
one port when it speaks TLS: it accepts, runs each handshake within a deadline, and hands the TLS
transport to an `HttpConnection` (edge.http); a client that fails the handshake is dropped and
counted, and logged at debug level only.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable
from pathlib import Path

from cdn.tls import TlsFileError
from cdn.tls import server_tls_context as shared_server_tls_context
from edge.errors import ConfigError

__all__ = ["TlsListener", "server_tls_context"]

log = logging.getLogger("edge.tls")

_ACCEPT_RETRY = 1.0  # seconds to wait after accept() failed (EMFILE...), as asyncio's own servers do


def server_tls_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """The viewer port's TLS context (`cdn.tls.server_tls_context`); raise ConfigError naming the file."""
    try:
        return shared_server_tls_context(cert_file, key_file)
    except TlsFileError as exc:
        raise ConfigError(str(exc)) from None


def _handshake_failure(exc: BaseException) -> str:
    """A handshake failure in words, for the debug log: OpenSSL's reason, or the exception."""
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return exc.reason.lower().replace("_", " ")  # e.g. "http request": plain HTTP on the TLS port
    return str(exc) or type(exc).__name__


class TlsListener:
    """The viewer port speaking TLS only: accept, handshake within `handshake_timeout`, then HTTP.

    Each accepted socket gets its handshake from `loop.connect_accepted_socket` in a task of its own,
    so the outcome is known here: a success hands the TLS transport to the protocol `factory` made
    (its `connection_made` runs after the handshake, as with `create_server(ssl=...)`); a failure
    (plain HTTP, a reset, an unknown CA, too slow) closes the socket and counts in `failures`.
    The loop's own `create_server(ssl=...)` drops those silently, with nothing to count.
    """

    def __init__(
        self,
        factory: Callable[[], asyncio.Protocol],
        context: ssl.SSLContext,
        *,
        handshake_timeout: float | None,
    ) -> None:
        self.factory = factory
        self.context = context
        self.handshake_timeout = handshake_timeout or None  # None: the loop's default (60 s)
        self.handshakes = 0  # completed: the number of TLS connections served
        self.failures = 0
        self.sockets: list[socket.socket] = []
        self._accepting: list[asyncio.Task[None]] = []
        self._pending: set[asyncio.Task[None]] = set()
        self._unstarted: set[socket.socket] = set()  # accepted; their handshake task has not run yet

    async def start(self, host: str, port: int, *, backlog: int) -> None:
        """Bind every address of `host` (port 0 picks a free port) and start accepting; raise OSError."""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        try:
            for family, _type, _proto, _name, address in dict.fromkeys(infos):
                sock = socket.create_server(address, family=family, backlog=backlog)
                self.sockets.append(sock)
                sock.setblocking(False)
        except OSError:
            self._close_sockets()
            raise
        self._accepting = [loop.create_task(self._accept(s)) for s in self.sockets]

    async def close(self) -> None:
        """Stop accepting and drop the handshakes in progress (established connections are the server's)."""
        tasks = [*self._accepting, *self._pending]
        for task in tasks:
            task.cancel()
        for sock in self._unstarted:  # no transport owns these yet
            sock.close()
        self._unstarted.clear()
        self._close_sockets()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _close_sockets(self) -> None:
        for sock in self.sockets:
            sock.close()

    async def _accept(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                client, _peer = await loop.sock_accept(listener)
            except OSError as exc:  # out of descriptors or buffers: wait rather than spin
                log.warning("accept failed on the TLS port: %s; retrying in %g s", exc, _ACCEPT_RETRY)
                await asyncio.sleep(_ACCEPT_RETRY)
                continue
            self._unstarted.add(client)
            task = loop.create_task(self._handshake(client))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _handshake(self, client: socket.socket) -> None:
        self._unstarted.discard(client)  # from here on the transport owns (and closes) the socket
        try:
            await asyncio.get_running_loop().connect_accepted_socket(
                self.factory, client, ssl=self.context, ssl_handshake_timeout=self.handshake_timeout
            )
        except OSError as exc:  # ssl.SSLError, ConnectionError and the handshake timeout are OSErrors
            self.failures += 1
            log.debug("TLS handshake failed: %s", _handshake_failure(exc))
            return
        self.handshakes += 1
