"""The I/O shell: DNS over UDP and TCP on asyncio, moving bytes to and from `Responder.handle_wire`.

UDP answers each datagram (in batches with recvmmsg/sendmmsg on Linux, see `udpbatch`). TCP reads 2-byte length-prefixed messages (RFC 1035 §4.2.2), answers
several per connection in order (RFC 7766 §6.2.1), stops reading while the client is not reading its
answers (so its write buffer stays bounded), and closes a connection idle for `idle_timeout`
seconds or one that sends a frame we cannot answer at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import Any

from dnsrouter import udpbatch
from dnsrouter.answer import Responder

__all__ = ["TcpProtocol", "UdpProtocol", "start_dns"]

log = logging.getLogger("dnsrouter.server")
DEFAULT_IDLE_TIMEOUT = 10.0
MAX_TCP_BUFFER = 2 * 65537
UDP_RECEIVE_BUFFER = 4 << 20
UdpEndpoint = asyncio.DatagramTransport | udpbatch.BatchedUdp


class UdpProtocol(asyncio.DatagramProtocol):
    """One datagram in, at most one datagram out."""

    def __init__(self, responder: Responder) -> None:
        self.handle = responder.handle_wire
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        response = self.handle(data, addr, "udp")
        if response is not None and self.transport is not None:
            self.transport.sendto(response, addr)

    def error_received(self, exc: Exception) -> None:  # e.g. ICMP port unreachable from a gone client
        log.debug("UDP error: %s", exc)


class TcpProtocol(asyncio.Protocol):
    """Length-prefixed DNS messages on one connection, with an idle timeout."""

    def __init__(self, responder: Responder, idle_timeout: float = DEFAULT_IDLE_TIMEOUT) -> None:
        self.responder = responder
        self.idle_timeout = idle_timeout
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.peer: Any = ("", 0)
        self._idle: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.peer = transport.get_extra_info("peername") or ("", 0)
        self._arm()

    def _arm(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        loop = asyncio.get_running_loop()
        self._idle = loop.call_later(self.idle_timeout, self._close)

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._arm()
        while len(self.buffer) >= 2:
            length = int.from_bytes(self.buffer[:2], "big")
            if len(self.buffer) < 2 + length:
                break
            message = bytes(self.buffer[2 : 2 + length])
            del self.buffer[: 2 + length]
            response = self.responder.handle_wire(message, self.peer, "tcp")
            if response is None:  # garbage: no way to answer it, and nothing good will follow
                self._close()
                return
            if self.transport is not None:
                self.transport.write(len(response).to_bytes(2, "big") + response)
        if len(self.buffer) > MAX_TCP_BUFFER:
            self._close()

    def pause_writing(self) -> None:  # the client is not reading its answers: stop reading its queries
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None:
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle is not None:
            self._idle.cancel()
        self.transport = None


def _grow_receive_buffer(sock: socket.socket | None) -> None:
    """Ask for a larger UDP receive buffer so bursts are queued rather than dropped (capped by rmem_max)."""
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)


async def start_dns(
    responder: Responder,
    host: str,
    port: int,
    *,
    reuse_port: bool = False,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    batched_udp: bool = True,
) -> tuple[UdpEndpoint, asyncio.Server]:
    """Bind UDP and TCP on host:port and start serving; raise OSError when the port is taken.

    UDP uses batched system calls (`udpbatch`) where available unless `batched_udp` is False.
    With port 0, UDP picks a free port and TCP takes the same number; if TCP finds it taken, try again.
    """
    for attempt in range(20):
        try:
            return await _bind_pair(responder, host, port, reuse_port, idle_timeout, batched_udp)
        except OSError:
            if port != 0 or attempt == 19:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


async def _bind_udp(
    responder: Responder, host: str, port: int, reuse_port: bool, batched: bool
) -> UdpEndpoint:
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if batched and udpbatch.available():
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
        _grow_receive_buffer(sock)
        endpoint = udpbatch.BatchedUdp(sock, responder.handle_wire)
        endpoint.start(loop)
        return endpoint
    udp, _ = await loop.create_datagram_endpoint(
        lambda: UdpProtocol(responder), local_addr=(host, port), family=family, reuse_port=reuse_port or None
    )
    _grow_receive_buffer(udp.get_extra_info("socket"))
    return udp


async def _bind_pair(
    responder: Responder, host: str, port: int, reuse_port: bool, idle_timeout: float, batched: bool
) -> tuple[UdpEndpoint, asyncio.Server]:
    loop = asyncio.get_running_loop()
    udp = await _bind_udp(responder, host, port, reuse_port, batched)
    bound = udp.get_extra_info("sockname")[1]
    try:
        tcp = await loop.create_server(
            lambda: TcpProtocol(responder, idle_timeout), host, bound,
            family=socket.AF_INET6 if ":" in host else socket.AF_INET,
            reuse_address=True, reuse_port=reuse_port or None,
        )  # fmt: skip
    except OSError:
        udp.close()
        raise
    return udp, tcp
