"""Exceptions raised by the origin (packaging and serving).

OriginError                 root: everything this package raises derives from it
"""

from __future__ import annotations

__all__ = ["OriginError"]


class OriginError(Exception):
    """Root of every error raised by the origin (packaging and serving)."""
