"""Exceptions raised by the edge cache.

EdgeError                 root: everything this package raises derives from it
"""

from __future__ import annotations

__all__ = ["EdgeError"]


class EdgeError(Exception):
    """Root of every error raised by the edge cache."""
