"""Exceptions raised by the player.

PlayerError                 root: everything this package raises derives from it
"""

from __future__ import annotations

__all__ = ["PlayerError"]


class PlayerError(Exception):
    """Root of every error raised by the player."""
