"""The batched UDP engine on a real socket: one answer the kernel refuses does not lose the rest."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from dnsrouter import udpbatch

pytestmark = pytest.mark.skipif(not udpbatch.available(), reason="no recvmmsg/sendmmsg here")


def test_a_refused_answer_is_skipped_and_the_batch_goes_on() -> None:
    async def main() -> list[bytes]:
        server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        server.bind(("127.0.0.1", 0))
        batch: udpbatch.BatchedUdp

        def handle(wire: bytes, peer: Any, transport: Any) -> bytes:
            if wire == b"q2":  # make this answer's destination port 0: the kernel refuses it (EINVAL)
                size = udpbatch.MAX_DATAGRAM
                i = next(i for i in range(udpbatch.BATCH) if batch._rbuf[i * size : i * size + 2] == wire)
                offset = i * udpbatch.NAME_SIZE
                batch._nbuf[offset + 2 : offset + 4] = b"\0\0"
            return b"answer to " + wire

        batch = udpbatch.BatchedUdp(server, handle)
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        client.bind(("127.0.0.1", 0))
        client.setblocking(False)
        loop = asyncio.get_running_loop()
        for q in (b"q1", b"q2", b"q3", b"q4"):  # queued before the engine reads: one batch
            client.sendto(q, server.getsockname())
        batch.start(loop)
        got: list[bytes] = []
        try:
            async with asyncio.timeout(5):
                while len(got) < 3:
                    got.append(await loop.sock_recv(client, 100))
            await asyncio.sleep(0.05)
            with pytest.raises(BlockingIOError):
                client.recv(100)  # and nothing for q2
        finally:
            batch.close()
            client.close()
        assert batch.dropped == 1
        return got

    assert asyncio.run(main()) == [b"answer to q1", b"answer to q3", b"answer to q4"]
