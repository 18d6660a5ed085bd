"""Exceptions raised by the DNS router.

DNSRouterError                 root: everything this package raises derives from it
├── ConfigError                bad settings or topology (fix the file or the option)
│   └── GeoDatabaseError       the MaxMind database cannot be opened or read
└── MalformedQuery             a DNS message we cannot answer normally (carries the rcode to send)
"""

from __future__ import annotations

__all__ = ["ConfigError", "DNSRouterError", "GeoDatabaseError", "MalformedQuery"]


class DNSRouterError(Exception):
    """Root of every error raised by the DNS router."""


class ConfigError(DNSRouterError):
    """Raised when the topology or a command-line setting is invalid; fix it and start again."""


class GeoDatabaseError(ConfigError):
    """Raised when the geo database named by `dns.geoip_db` cannot be opened or is not MaxMind format."""


class MalformedQuery(DNSRouterError):
    """Raised by the wire parser for a query that gets FORMERR (or silence when `rcode` is None)."""

    def __init__(self, message: str, *, rcode: int | None = 1) -> None:
        super().__init__(message)
        self.rcode = rcode
