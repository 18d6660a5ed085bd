"""A throttling TCP proxy for the end-to-end tests (asyncio, in its own thread).

Everything the upstream sends back to clients shares one bandwidth limit (pacing: each block is
released when a link of `rate_bps` would have finished sending it). The limit can drop part-way:
after `drop_after_bytes` have gone down the link, the rate becomes `drop_to_bps`. Requests going
up are not limited. Used as `with ThrottleProxy(("127.0.0.1", port), rate_bps=8e6) as proxy: ...`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time

__all__ = ["ThrottleProxy"]

BLOCK = 8 * 1024  # bytes released at a time: small, so the pacing is smooth
IDLE_RESET = 0.05  # seconds: a link idle longer than this does not bank the unused time


class ThrottleProxy:
    """Forward 127.0.0.1:<port> to `upstream`, pacing the downstream direction."""

    def __init__(
        self,
        upstream: tuple[str, int],
        *,
        rate_bps: float,
        drop_to_bps: float | None = None,
        drop_after_bytes: int | None = None,
        listen_host: str = "127.0.0.1",
    ) -> None:
        self.upstream = upstream
        self.rate_bps = rate_bps
        self.drop_to_bps = drop_to_bps
        self.drop_after_bytes = drop_after_bytes
        self.bytes_down = 0
        self.dropped_at: float | None = None  # monotonic time of the drop
        self._next = 0.0
        self._sock = socket.create_server((listen_host, 0))
        self.host = listen_host
        self.port = int(self._sock.getsockname()[1])
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stopped: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("throttle proxy did not start within 10 s")

    def __enter__(self) -> ThrottleProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def set_rate(self, rate_bps: float) -> None:
        """Change the downstream limit now (bits per second)."""
        self.rate_bps = rate_bps

    def close(self) -> None:
        """Stop accepting, drop every connection, stop the thread."""
        if self._stopped is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(10)
        self._loop.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        finally:
            self._sock.close()

    async def _main(self) -> None:
        self._stopped = asyncio.Event()
        server = await asyncio.start_server(self._handle, sock=self._sock)
        self._ready.set()
        async with server:
            await self._stopped.wait()
            server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            up_r, up_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            await _close(client_w)
            self._tasks.discard(task)
            return
        try:
            await asyncio.gather(
                self._pipe(client_r, up_w, paced=False), self._pipe(up_r, client_w, paced=True)
            )
        except asyncio.CancelledError:
            pass  # closing the proxy: end quietly (asyncio reports a cancelled connection task as an error)
        finally:
            await _close(up_w)
            await _close(client_w)
            self._tasks.discard(task)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, paced: bool) -> None:
        try:
            while data := await reader.read(BLOCK):
                if paced:
                    await self._pace(len(data))
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(OSError, RuntimeError):
                if writer.can_write_eof():
                    writer.write_eof()

    async def _pace(self, n: int) -> None:
        """Wait until a link of the current rate would have sent `n` more bytes."""
        now = time.monotonic()
        # A link idle for a while starts afresh; a sleep that overshot a little is caught up on.
        start = now if now - self._next > IDLE_RESET else self._next
        self._next = start + n * 8 / self._current_rate()
        self.bytes_down += n
        await asyncio.sleep(self._next - now)

    def _current_rate(self) -> float:
        if (
            self.drop_after_bytes is not None
            and self.drop_to_bps is not None
            and self.bytes_down >= self.drop_after_bytes
        ):
            if self.dropped_at is None:
                self.dropped_at = time.monotonic()
            return self.drop_to_bps
        return self.rate_bps


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, ConnectionError):
        await writer.wait_closed()
