"""Settings of the origin HTTP server (`cdn-origin serve`): one frozen ServeConfig and its defaults.

Only `ServeConfig.from_args(args, environ)` reads the outside world (command-line values and the
`CDN_STORE` / `CDN_ADMIN_TOKEN` environment variables); everything else receives the config object.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from cdn.hostport import HostPort, parse_hostport
from cdn.sizes import parse_size as _parse_size
from origin.errors import OriginError

__all__ = [
    "DEFAULT_CHUNK_MAX_AGE",
    "DEFAULT_KEEPALIVE_SECONDS",
    "DEFAULT_LISTEN",
    "DEFAULT_MANIFEST_MAX_AGE",
    "DEFAULT_MAX_QUEUED_JOBS",
    "DEFAULT_MAX_UPLOAD_BYTES",
    "DEFAULT_READ_SIZE",
    "DEFAULT_STORE",
    "STAGING_DIRNAME",
    "LogLevel",
    "ServeConfig",
    "ServeConfigError",
    "parse_size",
]

DEFAULT_STORE = Path("var/store")
DEFAULT_LISTEN = HostPort("127.0.0.1", 8000)
DEFAULT_MANIFEST_MAX_AGE = 2  # seconds: manifests may be replaced by a new package
DEFAULT_CHUNK_MAX_AGE = 31_536_000  # one year: chunk names never get other bytes (RFC 8246 immutable)
DEFAULT_MAX_UPLOAD_BYTES = 2 * 1024**3
DEFAULT_READ_SIZE = 256 * 1024  # bytes per read when streaming a file body
DEFAULT_KEEPALIVE_SECONDS = 20  # players fetch a chunk every few seconds: keep their connection
DEFAULT_MAX_QUEUED_JOBS = 8
STAGING_DIRNAME = ".uploads"  # inside the store (same filesystem); hidden names are never served

LogLevel = Literal["critical", "error", "warning", "info", "debug"]
LOG_LEVELS: tuple[str, ...] = get_args(LogLevel)


class ServeConfigError(OriginError, ValueError):
    """Raised when a serve setting is invalid; the message names the setting, the value and the fix."""


def parse_size(text: str) -> int:
    """Parse a byte size such as `2GiB`, `500MB` or `1048576` (see cdn.sizes); raise ServeConfigError."""
    try:
        value = _parse_size(text)
    except ValueError as exc:
        raise ServeConfigError(f"{exc}") from None
    if value < 1:
        raise ServeConfigError(f"size {text!r} must be at least 1 byte")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class ServeConfig:
    """Everything the origin server needs; built once at start-up and passed to `create_app`."""

    store: Path
    listen: HostPort = DEFAULT_LISTEN
    admin_token: str | None = field(default=None, repr=False)  # never printed or logged
    manifest_max_age: int = DEFAULT_MANIFEST_MAX_AGE
    chunk_max_age: int = DEFAULT_CHUNK_MAX_AGE
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    read_size: int = DEFAULT_READ_SIZE
    keepalive_seconds: int = DEFAULT_KEEPALIVE_SECONDS
    max_queued_jobs: int = DEFAULT_MAX_QUEUED_JOBS
    log_level: LogLevel = "info"
    tls_cert: Path | None = None  # PEM certificate (chain) and its key: serve https instead of http
    tls_key: Path | None = None

    def __post_init__(self) -> None:
        if self.manifest_max_age < 0:
            raise ServeConfigError(
                f"manifest max-age {self.manifest_max_age} is negative: use 0 or more seconds"
            )
        if self.chunk_max_age < 0:
            raise ServeConfigError(f"chunk max-age {self.chunk_max_age} is negative: use 0 or more seconds")
        if self.max_upload_bytes < 1:
            raise ServeConfigError(f"max upload size {self.max_upload_bytes} must be at least 1 byte")
        if not 4096 <= self.read_size <= 16 * 1024**2:
            raise ServeConfigError(f"read size {self.read_size} must be between 4 KiB and 16 MiB")
        if self.keepalive_seconds < 1 or self.max_queued_jobs < 1:
            raise ServeConfigError("keep-alive seconds and max queued jobs must be at least 1")
        if self.log_level not in LOG_LEVELS:
            raise ServeConfigError(f"log level {self.log_level!r} is not one of {', '.join(LOG_LEVELS)}")
        if self.admin_token is not None and not self.admin_token.strip():
            raise ServeConfigError("the admin token is empty: give a non-empty token or none at all")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ServeConfigError(
                "--tls-cert and --tls-key go together: give both (https) or neither (http)"
            )

    @property
    def scheme(self) -> str:
        """`https` with a TLS certificate, else `http`."""
        return "https" if self.tls_cert is not None else "http"

    @property
    def uploads_enabled(self) -> bool:
        """True when an admin token was given, so `POST /videos` is allowed."""
        return self.admin_token is not None

    @property
    def staging_dir(self) -> Path:
        """Where uploads are written while they arrive and wait for packaging."""
        return self.store / STAGING_DIRNAME

    @classmethod
    def from_args(cls, args: argparse.Namespace, environ: Mapping[str, str]) -> ServeConfig:
        """Build the config from parsed `add_serve_arguments` options and the environment."""
        store = args.store or environ.get("CDN_STORE") or DEFAULT_STORE
        token = args.admin_token if args.admin_token is not None else environ.get("CDN_ADMIN_TOKEN")
        listen = args.listen if isinstance(args.listen, HostPort) else parse_hostport(str(args.listen))
        return cls(
            store=Path(store),
            listen=listen,
            admin_token=token or None,
            manifest_max_age=args.manifest_max_age,
            max_upload_bytes=args.max_upload_size,
            log_level=args.log_level,
            tls_cert=getattr(args, "tls_cert", None),
            tls_key=getattr(args, "tls_key", None),
        )
