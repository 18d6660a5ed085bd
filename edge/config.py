"""Configuration of one edge cache: a frozen `EdgeConfig` built from the command line.

Only `EdgeConfig.from_args` reads the outside world (argv and the `CDN_ADMIN_TOKEN` environment
variable); every component receives the finished config through its constructor. File paths
(`--upstream-ca`, `--tls-cert`, `--tls-key`) are only named here: the server loads them at start-up.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from cdn.hostport import HostPort, parse_hostport
from cdn.sizes import parse_size as _parse_size
from edge.errors import ConfigError

__all__ = [
    "DEFAULT_HEADER_TIMEOUT",
    "DEFAULT_LARGE_OBJECT",
    "DEFAULT_MAX_VARIANTS",
    "DEFAULT_MEMORY_CACHE",
    "DEFAULT_NEGATIVE_TTL",
    "DEFAULT_STALE_IF_ERROR",
    "EdgeConfig",
    "build_parser",
    "parse_size",
    "UPSTREAM_SCHEMES",
    "parse_upstream_url",
]

DEFAULT_MEMORY_CACHE = 256 * 1024**2
DEFAULT_LARGE_OBJECT = 8 * 1024**2  # above this, fills spool to disk and disk hits stream block by block
DEFAULT_MAX_VARIANTS = 8  # Vary variants kept per URL (RFC 9111 §4.1)
DEFAULT_STALE_IF_ERROR = 300.0
DEFAULT_NEGATIVE_TTL = 10.0
DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_KEEPALIVE_TIMEOUT = 75.0
DEFAULT_UPSTREAM_CONNECT_TIMEOUT = 3.0
DEFAULT_UPSTREAM_READ_TIMEOUT = 10.0
DEFAULT_MAX_HEADER_BYTES = 16 * 1024
UPSTREAM_SCHEMES = ("http", "https")


def parse_size(text: str) -> int:
    """Parse a byte size such as `2GiB`, `256MiB`, `500MB`, `1024` (see cdn.sizes); raise ConfigError."""
    try:
        return _parse_size(text)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _size_option(text: str, option: str) -> int:
    """A size option's value in bytes; raise ConfigError naming the option."""
    try:
        return parse_size(text)
    except ConfigError as exc:
        raise ConfigError(f"{option}: {exc}") from None


def parse_upstream_url(text: str, *, option: str) -> str:
    """Check an `http://` or `https://HOST[:PORT]` upstream URL; return it without a trailing slash.

    Raise ConfigError naming the option. https upstreams are verified against the system CAs plus
    `--upstream-ca` (edge.upstream.client_tls_context); credentials in the URL are refused.
    """
    parts = urlsplit(text)
    if parts.username is not None or parts.password is not None:
        # never echo this URL: the part before '@' may be a password
        raise ConfigError(f"{option} must not carry user:password@; give http(s)://HOST:PORT")
    if parts.scheme not in UPSTREAM_SCHEMES or not parts.hostname:
        raise ConfigError(f"{option} {text!r} is not an http://HOST[:PORT] or https://HOST[:PORT] URL")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"{option} {text!r} must not have a path or query; give {parts.scheme}://HOST:PORT")
    try:
        port = parts.port  # urlsplit checks the port only when it is read
    except ValueError:
        port = -1
    if port is not None and not 1 <= port <= 65535:
        raise ConfigError(f"{option} {text!r} has a bad port; give a number from 1 to 65535")
    return f"{parts.scheme}://{parts.netloc}"


@dataclass(frozen=True, slots=True, kw_only=True)
class EdgeConfig:
    """Everything one edge needs: where to listen, where to fetch, how much to cache."""

    origin: str
    listen: HostPort = field(default_factory=lambda: HostPort("127.0.0.1", 8080))
    cache_dir: Path
    cache_size: int
    memory_cache: int = DEFAULT_MEMORY_CACHE
    large_object: int = DEFAULT_LARGE_OBJECT
    max_variants: int = DEFAULT_MAX_VARIANTS
    region: str = "default"
    name: str = "edge"
    parent: str | None = None
    upstream_ca: Path | None = None  # PEM CA bundle trusted for https upstreams, besides the system CAs
    tls_cert: Path | None = None  # PEM certificate chain of the viewer port (with tls_key: TLS only)
    tls_key: Path | None = None  # its PEM private key (never read here, never logged)
    admin_token: str | None = field(default=None, repr=False)
    stale_if_error: float = DEFAULT_STALE_IF_ERROR
    negative_ttl: float = DEFAULT_NEGATIVE_TTL
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    keepalive_timeout: float = DEFAULT_KEEPALIVE_TIMEOUT
    upstream_connect_timeout: float = DEFAULT_UPSTREAM_CONNECT_TIMEOUT
    upstream_read_timeout: float = DEFAULT_UPSTREAM_READ_TIMEOUT
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES

    def __post_init__(self) -> None:
        parse_upstream_url(self.origin, option="--origin")
        if self.parent is not None:
            parse_upstream_url(self.parent, option="--parent")
        if self.cache_size <= 0:
            raise ConfigError(f"--cache-size {self.cache_size} must be positive, e.g. 2GiB")
        if not 0 <= self.memory_cache:
            raise ConfigError(f"--memory-cache {self.memory_cache} must be >= 0")
        if self.large_object <= 0:
            raise ConfigError(f"--large-object {self.large_object} must be positive, e.g. 8MiB")
        if self.max_variants < 1:
            raise ConfigError(
                f"--max-variants {self.max_variants} must be >= 1 (1 keeps one variant per URL)"
            )
        for label, value in (
            ("--stale-if-error", self.stale_if_error),
            ("--negative-ttl", self.negative_ttl),
            ("header timeout", self.header_timeout),
            ("upstream read timeout", self.upstream_read_timeout),
        ):
            if value < 0:
                raise ConfigError(f"{label} {value} must be >= 0 seconds")
        if not self.name or any(c in self.name for c in "\r\n, "):
            raise ConfigError(f"--name {self.name!r} must be a non-empty token (no spaces or commas)")
        if (self.tls_cert is None) != (self.tls_key is None):
            given, missing = (
                ("--tls-cert", "--tls-key") if self.tls_key is None else ("--tls-key", "--tls-cert")
            )
            raise ConfigError(
                f"{given} needs {missing} too: give both (the PEM certificate chain and its private key) "
                "to serve viewers over TLS, or neither for plain HTTP"
            )

    @property
    def tls(self) -> bool:
        """Does the viewer port speak TLS (only TLS: there is no plain-HTTP fallback on it)?"""
        return self.tls_cert is not None

    @classmethod
    def from_args(cls, argv: Sequence[str], environ: Mapping[str, str]) -> EdgeConfig:
        """Build the config from `serve` options; the token falls back to env CDN_ADMIN_TOKEN."""
        ns = build_parser().parse_args(list(argv))
        try:
            listen = parse_hostport(ns.listen)
        except ValueError as exc:
            raise ConfigError(f"--listen: {exc}") from exc
        return cls(
            origin=parse_upstream_url(ns.origin, option="--origin"),
            listen=listen,
            cache_dir=Path(ns.cache_dir),
            cache_size=_size_option(ns.cache_size, "--cache-size"),
            memory_cache=_size_option(ns.memory_cache, "--memory-cache"),
            large_object=_size_option(ns.large_object, "--large-object"),
            max_variants=ns.max_variants,
            region=ns.region,
            name=ns.name or f"edge-{listen.port}",
            parent=parse_upstream_url(ns.parent, option="--parent") if ns.parent else None,
            upstream_ca=Path(ns.upstream_ca) if ns.upstream_ca else None,
            tls_cert=Path(ns.tls_cert) if ns.tls_cert else None,
            tls_key=Path(ns.tls_key) if ns.tls_key else None,
            admin_token=ns.admin_token or environ.get("CDN_ADMIN_TOKEN") or None,
            stale_if_error=ns.stale_if_error,
            negative_ttl=ns.negative_ttl,
            header_timeout=ns.header_timeout,
            upstream_read_timeout=ns.upstream_timeout,
        )


def build_parser() -> argparse.ArgumentParser:
    """The option parser of `cdn-edge serve`."""
    p = argparse.ArgumentParser(prog="cdn-edge serve", description="Run an edge cache.")
    p.add_argument("--origin", required=True, help="origin URL, http://HOST:PORT or https://HOST[:PORT]")
    p.add_argument("--listen", default="127.0.0.1:8080", help="HOST:PORT to listen on")
    p.add_argument("--cache-dir", required=True, help="directory of the disk cache")
    p.add_argument("--cache-size", default="2GiB", help="disk cache capacity, e.g. 2GiB")
    p.add_argument("--memory-cache", default="256MiB", help="in-memory tier capacity, e.g. 256MiB")
    p.add_argument(
        "--large-object",
        default="8MiB",
        metavar="SIZE",
        help="bodies larger than this are spooled to disk while fetched and streamed from disk on hits",
    )
    p.add_argument(
        "--max-variants",
        type=int,
        default=DEFAULT_MAX_VARIANTS,
        metavar="N",
        help="Vary variants kept per URL (>= 1); one more evicts the URL's least recently used variant",
    )
    p.add_argument("--region", default="default", help="region name reported by /healthz")
    p.add_argument("--name", default="", help="edge name (Via header, /healthz); default edge-PORT")
    p.add_argument("--parent", default=None, help="parent edge (shield) URL; origin is the fallback")
    p.add_argument(
        "--upstream-ca",
        default=None,
        metavar="FILE",
        help="PEM CA bundle trusted for https upstreams, besides the system CAs (verification is always on)",
    )
    p.add_argument(
        "--tls-cert",
        default=None,
        metavar="FILE",
        help="serve viewers over TLS only: PEM certificate (leaf first, then intermediates); needs --tls-key",
    )
    p.add_argument(
        "--tls-key", default=None, metavar="FILE", help="PEM private key of --tls-cert (unencrypted)"
    )
    p.add_argument("--admin-token", default=None, help="admin bearer token (prefer env CDN_ADMIN_TOKEN)")
    p.add_argument("--stale-if-error", type=float, default=DEFAULT_STALE_IF_ERROR, metavar="SECONDS")
    p.add_argument("--negative-ttl", type=float, default=DEFAULT_NEGATIVE_TTL, metavar="SECONDS")
    p.add_argument("--header-timeout", type=float, default=DEFAULT_HEADER_TIMEOUT, metavar="SECONDS")
    p.add_argument("--upstream-timeout", type=float, default=DEFAULT_UPSTREAM_READ_TIMEOUT, metavar="SECONDS")
    return p
