"""`cdn-origin serve`: its command-line options and the uvicorn shell around `origin.app.create_app`.

`origin.cli` calls `add_serve_arguments(parser)` to declare the options and `run_serve(args)` to run
the server (uvloop + httptools, keep-alive on) until Ctrl-C. The admin token is never logged.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
from collections.abc import Mapping
from pathlib import Path

from cdn.hostport import HostPort, hostport_arg
from cdn.tls import TlsFileError, server_tls_context
from origin.config import (
    DEFAULT_LISTEN,
    DEFAULT_MANIFEST_MAX_AGE,
    DEFAULT_MAX_UPLOAD_BYTES,
    DEFAULT_STORE,
    LOG_LEVELS,
    ServeConfig,
    ServeConfigError,
    parse_size,
)
from origin.errors import OriginError

__all__ = ["add_serve_arguments", "build_config", "check_tls", "run_serve"]

log = logging.getLogger("origin.serve")


def _size_arg(text: str) -> int:
    try:
        return parse_size(text)
    except ServeConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _seconds_arg(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of seconds (0 or more)")
    return int(text)


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of `cdn-origin serve` on `parser`."""
    parser.add_argument(
        "--store",
        metavar="DIR",
        default=None,
        help=f"folder of packaged videos (default: $CDN_STORE or {DEFAULT_STORE})",
    )
    parser.add_argument(
        "--listen",
        metavar="HOST:PORT",
        type=hostport_arg,
        default=DEFAULT_LISTEN,
        help=f"address to listen on (default: {DEFAULT_LISTEN}; port 0 picks a free port)",
    )
    parser.add_argument(
        "--admin-token",
        metavar="TOKEN",
        default=None,
        help="bearer token that allows POST /videos uploads (prefer $CDN_ADMIN_TOKEN: "
        "not visible in ps); without one, uploads are refused",
    )
    parser.add_argument(
        "--manifest-max-age",
        metavar="SECONDS",
        type=_seconds_arg,
        default=DEFAULT_MANIFEST_MAX_AGE,
        help=f"Cache-Control max-age of manifests (default: {DEFAULT_MANIFEST_MAX_AGE}); "
        "chunks are always immutable for a year",
    )
    parser.add_argument(
        "--max-upload-size",
        metavar="SIZE",
        type=_size_arg,
        default=DEFAULT_MAX_UPLOAD_BYTES,
        help="largest accepted upload, e.g. 500MiB or 2GiB (default: 2GiB)",
    )
    parser.add_argument(
        "--log-level", choices=LOG_LEVELS, default="info", help="server log level (default: info)"
    )
    parser.add_argument(
        "--tls-cert",
        metavar="FILE",
        type=Path,
        default=None,
        help="PEM certificate (chain): serve https on --listen instead of http (with --tls-key)",
    )
    parser.add_argument(
        "--tls-key", metavar="FILE", type=Path, default=None, help="PEM private key of --tls-cert"
    )


def build_config(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> ServeConfig:
    """Build the ServeConfig from parsed options and the environment; raise ServeConfigError."""
    return ServeConfig.from_args(args, os.environ if environ is None else environ)


def _prepare_store(config: ServeConfig) -> None:
    """Create the store (and its upload staging folder) or raise ServeConfigError saying why not."""
    if config.store.exists() and not config.store.is_dir():
        raise ServeConfigError(f"store {str(config.store)!r} exists but is not a folder: pass --store DIR")
    try:
        config.store.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ServeConfigError(f"cannot create the store {str(config.store)!r}: {exc.strerror}") from exc


def _bind(listen: HostPort) -> socket.socket:
    family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((listen.host, listen.port))
        sock.listen(1024)
    except OSError as exc:
        sock.close()
        raise ServeConfigError(f"cannot listen on {listen}: {exc.strerror}; pick another --listen") from exc
    return sock


def check_tls(config: ServeConfig) -> None:
    """Load the certificate and key once before serving (`cdn.tls`), so that a missing file, an encrypted
    key (uvicorn would prompt for its passphrase) or a key that does not match becomes a clear
    ServeConfigError (exit 2) instead of a hang or a traceback from inside uvicorn."""
    if config.tls_cert is None or config.tls_key is None:
        return
    try:
        server_tls_context(config.tls_cert, config.tls_key)
    except TlsFileError as exc:
        raise ServeConfigError(str(exc)) from None


def run_serve(args: argparse.Namespace) -> int:
    """Run the origin server until interrupted; return the process exit status."""
    import uvicorn

    from origin.app import create_app

    try:
        config = build_config(args)
        _prepare_store(config)
        check_tls(config)
        sock = _bind(config.listen)
    except (OriginError, ValueError) as exc:
        print(f"cdn-origin serve: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    host, port = sock.getsockname()[:2]
    where = HostPort(host, port)
    uploads = "enabled" if config.uploads_enabled else "disabled (no admin token)"
    print(
        f"origin: serving {config.store} on {config.scheme}://{where.url_host}:{port}/videos ; uploads {uploads}",
        file=sys.stderr,
        flush=True,
    )
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config),
            loop="uvloop",
            http="httptools",
            ws="none",
            lifespan="on",
            log_level=config.log_level,
            timeout_keep_alive=config.keepalive_seconds,
            timeout_graceful_shutdown=10,
            server_header=False,
            ssl_certfile=config.tls_cert,
            ssl_keyfile=config.tls_key,
        )
    )
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal: make that a clean exit 0.
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        sock.close()
    return 0


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
