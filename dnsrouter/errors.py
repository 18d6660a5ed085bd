"""Exceptions raised by the DNS router.

DNSRouterError                 root: everything this package raises derives from it
"""

from __future__ import annotations

__all__ = ["DNSRouterError"]


class DNSRouterError(Exception):
    """Root of every error raised by the DNS router."""
