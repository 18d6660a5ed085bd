"""Batched UDP for Linux: `recvmmsg`/`sendmmsg` through ctypes, driven by the event loop's reader callback.

Goals: fewer system calls per query than one `recvfrom` plus one `sendto` (the bulk of the cost of a
cached answer in Python). Plan: when the socket is readable, read up to `BATCH` datagrams with one
non-blocking `recvmmsg`, answer each with `Responder.handle_wire`, and send all answers with one
`sendmmsg`, reusing each query's source address buffer as the answer's destination. Everything runs
on the event loop thread, so the responder needs no locking.
Caveats: Linux only (falls back to asyncio's datagram transport elsewhere); answers that do not fit
the send buffer right now are dropped, as with any UDP server under overload (the client retries).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import errno
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

__all__ = ["BatchedUdp", "available"]

log = logging.getLogger("dnsrouter.server")
BATCH = 64
MAX_DATAGRAM = 4096  # larger queries are truncated by the kernel and then fail to parse: FORMERR or silence
NAME_SIZE = 28  # sizeof(struct sockaddr_in6), enough for IPv4 too
MSG_DONTWAIT = 0x40
Handler = Callable[[bytes, Any, Any], bytes | None]


class _Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.POINTER(_Iovec)),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _Msghdr), ("msg_len", ctypes.c_uint)]


def _libc_calls() -> tuple[Any, Any] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        recvmmsg, sendmmsg = libc.recvmmsg, libc.sendmmsg
    except (OSError, AttributeError):
        return None
    msgs = ctypes.POINTER(_Mmsghdr)
    recvmmsg.argtypes = [ctypes.c_int, msgs, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
    sendmmsg.argtypes = [ctypes.c_int, msgs, ctypes.c_uint, ctypes.c_int]
    recvmmsg.restype = sendmmsg.restype = ctypes.c_int
    return recvmmsg, sendmmsg


_CALLS = _libc_calls()


def available() -> bool:
    """Whether this system has recvmmsg/sendmmsg (Linux)."""
    return _CALLS is not None


def _buffer(size: int) -> tuple[bytearray, int]:
    """A bytearray and the address of its memory, for iovecs pointing into it."""
    buf = bytearray(size)
    return buf, ctypes.addressof((ctypes.c_char * size).from_buffer(buf))


class BatchedUdp:
    """Serves DNS on one bound UDP socket with batched system calls (see the module docstring)."""

    def __init__(self, sock: socket.socket, handle: Handler) -> None:
        assert _CALLS is not None, "check available() first"
        self.sock, self.handle = sock, handle
        self._recvmmsg, self._sendmmsg = _CALLS
        self.family = sock.family
        self._namelen = 16 if sock.family == socket.AF_INET else NAME_SIZE
        self._rbuf, rbase = _buffer(BATCH * MAX_DATAGRAM)
        self._sbuf, sbase = _buffer(BATCH * MAX_DATAGRAM)
        self._nbuf, self._nbase = _buffer(BATCH * NAME_SIZE)
        self._riov, self._siov = (_Iovec * BATCH)(), (_Iovec * BATCH)()
        self._rmsgs, self._smsgs = (_Mmsghdr * BATCH)(), (_Mmsghdr * BATCH)()
        for i in range(BATCH):
            self._riov[i].iov_base, self._riov[i].iov_len = rbase + i * MAX_DATAGRAM, MAX_DATAGRAM
            self._siov[i].iov_base = sbase + i * MAX_DATAGRAM
            r, s = self._rmsgs[i].msg_hdr, self._smsgs[i].msg_hdr
            # Every source address on this socket has the family's size, so the lengths never change.
            r.msg_name, r.msg_namelen = self._nbase + i * NAME_SIZE, self._namelen
            s.msg_namelen = self._namelen
            r.msg_iov, r.msg_iovlen = ctypes.pointer(self._riov[i]), 1
            s.msg_iov, s.msg_iovlen = ctypes.pointer(self._siov[i]), 1
        self._shdrs = [self._smsgs[i].msg_hdr for i in range(BATCH)]
        self._slens = [self._siov[i] for i in range(BATCH)]
        self._hosts: dict[bytes, str] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self.dropped = 0  # answers the kernel did not take (full send buffer, refused destination)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start answering whenever the socket is readable."""
        self.sock.setblocking(False)
        self._loop = loop
        loop.add_reader(self.sock.fileno(), self._on_readable)

    def close(self) -> None:
        """Stop reading and close the socket."""
        if self._loop is not None:
            self._loop.remove_reader(self.sock.fileno())
            self._loop = None
        self.sock.close()

    def get_extra_info(self, name: str) -> Any:
        """Like a transport's: `sockname` and `socket`."""
        return {"sockname": self.sock.getsockname(), "socket": self.sock}.get(name)

    def _peer(self, offset: int) -> tuple[str, int]:
        """The source address stored at `offset` in the name buffer (sockaddr_in or sockaddr_in6)."""
        n = self._nbuf
        raw = (
            bytes(n[offset + 4 : offset + 8])
            if self.family == socket.AF_INET
            else bytes(n[offset + 8 : offset + 24])
        )
        host = self._hosts.get(raw)
        if host is None:
            if len(self._hosts) > 65536:
                self._hosts.clear()
            host = self._hosts[raw] = socket.inet_ntop(self.family, raw)
        return host, (n[offset + 2] << 8) | n[offset + 3]

    def _send_one(self, response: bytes, offset: int) -> None:
        host, port = self._peer(offset)
        try:
            self.sock.sendto(response, (host, port))
        except OSError as exc:
            log.debug("UDP send to %s failed: %s", host, exc)

    def _send_batch(self, out: int) -> None:
        """Send the first `out` prepared answers; one that fails is skipped, not the rest of the batch.

        `sendmmsg` stops at the first message it cannot send and returns how many went out. A full
        send buffer (EAGAIN) drops the rest (the clients retry); any other error drops only that
        answer (say, a destination the kernel refuses) and the batch goes on after it.
        """
        fd, first = self.sock.fileno(), 0
        while first < out:
            ctypes.set_errno(0)
            sent = self._sendmmsg(fd, ctypes.byref(self._smsgs[first]), out - first, MSG_DONTWAIT)
            if sent > 0:
                first += sent
                continue
            err = ctypes.get_errno()
            if err in (errno.EAGAIN, errno.EWOULDBLOCK):
                self.dropped += out - first
                log.debug("UDP send buffer full: %d answers dropped", out - first)
                return
            self.dropped += 1
            log.debug("UDP answer not sent: %s", os.strerror(err) if err else "unknown error")
            first += 1

    def _on_readable(self) -> None:
        count = self._recvmmsg(self.sock.fileno(), self._rmsgs, BATCH, MSG_DONTWAIT, None)
        if count <= 0:
            return
        rview, sbuf, rmsgs = memoryview(self._rbuf), self._sbuf, self._rmsgs
        out = 0
        for i in range(count):
            start = i * MAX_DATAGRAM
            wire = bytes(rview[start : start + rmsgs[i].msg_len])
            try:
                response = self.handle(wire, self._peer(i * NAME_SIZE), "udp")
            except Exception:  # the responder already guards itself; this keeps the batch going
                log.exception("internal error in the UDP batch")
                continue
            if response is None:
                continue
            if len(response) > MAX_DATAGRAM:  # rare (large EDNS answers): send it on its own
                self._send_one(response, i * NAME_SIZE)
                continue
            base = out * MAX_DATAGRAM
            sbuf[base : base + len(response)] = response
            self._slens[out].iov_len = len(response)
            self._shdrs[out].msg_name = self._nbase + i * NAME_SIZE
            out += 1
        if out:
            self._send_batch(out)
        if count == BATCH and self._loop is not None:  # more may be waiting: read again soon, fairly
            self._loop.call_soon(self._on_readable)
