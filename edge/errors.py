"""Exceptions raised by the edge cache.

EdgeError                 root: everything this package raises derives from it
├── ConfigError           bad command line / configuration value (fix the config)
├── RequestError          a client request we refuse (carries the HTTP status to answer)
│   ├── BadPathError      path traversal or a path outside /videos/ (400/404)
│   └── RangeNotSatisfiable  absurd or multi-part Range (416)
├── UpstreamError         the origin or parent failed (retry, fall back, or serve stale)
│   ├── UpstreamConnectError   could not connect
│   ├── UpstreamTimeout        no byte within the read timeout
│   └── UpstreamBrokenError    the connection broke or the response was malformed
└── StoreError            the disk cache could not be read or written
    └── CorruptBodyError  a stored body failed its checksum while being served (drop it, refetch)
"""

from __future__ import annotations

__all__ = [
    "BadPathError",
    "ConfigError",
    "CorruptBodyError",
    "EdgeError",
    "RangeNotSatisfiable",
    "RequestError",
    "StoreError",
    "UpstreamBrokenError",
    "UpstreamConnectError",
    "UpstreamError",
    "UpstreamTimeout",
]


class EdgeError(Exception):
    """Root of every error raised by the edge cache."""


class ConfigError(EdgeError, ValueError):
    """Raised when a configuration value (option, size, URL) is invalid; fix it and restart."""


class RequestError(EdgeError):
    """Raised when a client request is refused; `status` is the HTTP status to answer with."""

    status = 400

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class BadPathError(RequestError):
    """Raised for path traversal, control characters or paths the edge does not proxy."""


class RangeNotSatisfiable(RequestError):
    """Raised when a Range header cannot be satisfied (beyond the end, multi-part, absurd)."""

    status = 416


class UpstreamError(EdgeError):
    """Raised when the origin or the parent edge fails; `url` names it, `status` is what to answer."""

    status = 502

    def __init__(self, message: str, *, url: str = "") -> None:
        super().__init__(message)
        self.url = url


class UpstreamConnectError(UpstreamError):
    """Raised when no connection to the upstream could be opened."""


class UpstreamTimeout(UpstreamError):
    """Raised when the upstream sent nothing within the read timeout."""

    status = 504


class UpstreamBrokenError(UpstreamError):
    """Raised when the upstream connection broke mid-response or sent malformed HTTP."""


class StoreError(EdgeError):
    """Raised when the disk cache directory cannot be created, read or written."""


class CorruptBodyError(StoreError):
    """Raised when a block of a stored body cannot be read or fails its CRC-32; `block` is its index."""

    def __init__(self, message: str, *, block: int) -> None:
        super().__init__(message)
        self.block = block
