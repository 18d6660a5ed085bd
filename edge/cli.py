"""Command line of the edge: `cdn-edge serve --origin URL --listen HOST:PORT --cache-dir DIR ...`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence

from edge.config import EdgeConfig, build_parser
from edge.errors import ConfigError, EdgeError

__all__ = ["main", "serve"]

log = logging.getLogger("edge")

_USAGE = """usage: cdn-edge serve --origin URL --listen HOST:PORT --cache-dir DIR --cache-size 2GiB
                      [--memory-cache 256MiB] [--large-object 8MiB] [--max-variants 8]
                      [--region NAME] [--name NAME] [--parent URL]
                      [--upstream-ca FILE] [--tls-cert FILE --tls-key FILE] [--admin-token TOKEN]
                      [--stale-if-error SECONDS] [--negative-ttl SECONDS]
URLs are http://HOST:PORT or https://HOST[:PORT] (certificates always verified; --upstream-ca adds a CA)
--tls-cert/--tls-key make the listen port speak TLS only (https://, no plain-HTTP fallback)
(see `cdn-edge serve --help`; the admin token is better given as env CDN_ADMIN_TOKEN)"""


async def serve(config: EdgeConfig, *, ready: asyncio.Event | None = None) -> None:
    """Run an edge until SIGINT/SIGTERM (or cancellation)."""
    from edge.server import EdgeServer

    server = EdgeServer(config)
    try:
        await server.start()
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {config.listen}: {exc.strerror or exc}; choose another --listen"
        ) from exc
    log.info(
        "edge %s (%s) listening on %s:%d (%s), origin %s, parent %s",
        config.name,
        config.region,
        config.listen.host,
        server.port,
        f"TLS, certificate {config.tls_cert}" if config.tls else "plain HTTP",
        config.origin,
        config.parent or "-",
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        await server.close()


def _run(coro_factory: object) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; asyncio still works
        asyncio.run(coro_factory)  # type: ignore[arg-type]
    else:
        uvloop.run(coro_factory)  # type: ignore[arg-type]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `cdn-edge`."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_USAGE, file=sys.stdout if args else sys.stderr)
        return 0 if args else 2
    if args[0] != "serve":
        print(f"cdn-edge: unknown command {args[0]!r}\n{_USAGE}", file=sys.stderr)
        return 2
    if args[1:2] in (["-h"], ["--help"]):
        build_parser().print_help()
        return 0
    logging.basicConfig(
        level=os.environ.get("CDN_LOG_LEVEL", "INFO"), format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    try:
        config = EdgeConfig.from_args(args[1:], os.environ)
        _run(serve(config))
    except EdgeError as exc:
        print(f"cdn-edge: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
