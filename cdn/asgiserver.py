"""Run an ASGI app under a real uvicorn server in a background thread (tests, benchmarks, `cdn up`).

The socket is bound here, before the server starts, so port 0 works without a race: the caller gets
the real port back in the base URL. Leaving the context stops the server cleanly and joins the thread.

    with serve_in_thread(create_app(config)) as base_url:
        httpx.get(base_url + "/healthz")
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

__all__ = ["ServerStartError", "serve_in_thread"]

_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 10.0


class ServerStartError(RuntimeError):
    """Raised when the background uvicorn server did not start listening in time."""


def _bind(host: str, port: int) -> socket.socket:
    """Return a listening TCP socket on (host, port); port 0 picks a free one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _base_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@contextlib.contextmanager
def serve_in_thread(
    app: Any,
    host: str = "127.0.0.1",
    *,
    port: int = 0,
    log_level: str = "warning",
    timeout_keep_alive: int = 20,
    **uvicorn_options: Any,
) -> Iterator[str]:
    """Serve `app` on host:port (0 = any free port) in a thread; yield the base URL, e.g. http://127.0.0.1:41234.

    Raises ServerStartError when the server did not come up within 10 s (the thread's error is chained).
    Extra keyword arguments go to `uvicorn.Config` (e.g. `loop="uvloop"`, `http="httptools"`).
    """
    import uvicorn  # heavy: imported only when a server is actually started

    sock = _bind(host, port)
    options: dict[str, Any] = {
        "log_level": log_level,
        "timeout_keep_alive": timeout_keep_alive,
        "timeout_graceful_shutdown": 5,
        "ws": "none",
        "lifespan": "auto",
    } | uvicorn_options
    server = uvicorn.Server(uvicorn.Config(app, **options))
    failure: list[BaseException] = []

    def run() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # reported to the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=run, name=f"uvicorn-{_base_url(sock)}", daemon=True)
    thread.start()
    try:
        _wait_started(server, thread, failure)
        yield _base_url(sock)
    finally:
        server.should_exit = True
        thread.join(_STOP_TIMEOUT)
        sock.close()


def _wait_started(server: Any, thread: threading.Thread, failure: list[BaseException]) -> None:
    """Block until `server.started`, the thread dies, or the start timeout passes."""
    deadline = time.monotonic() + _START_TIMEOUT
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            cause = failure[0] if failure else None
            raise ServerStartError(
                f"uvicorn did not start within {_START_TIMEOUT:.0f} s; see its log above"
            ) from cause
        time.sleep(0.01)
