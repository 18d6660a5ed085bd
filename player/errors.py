"""Exceptions raised by the player.

PlayerError                 root: everything this package raises derives from it
├── ManifestError           an MPD cannot be parsed or describes impossible segments (bad input)
├── SegmentIndexError       a `sidx` box (SegmentBase@indexRange) is truncated or malformed
├── IndexRequired           timeline.segments() needs the parsed sidx of a SegmentBase (also a RuntimeError)
├── TraceError              a throughput trace file cannot be read (bad input)
├── AbrError                an ABR algorithm name is unknown or its inputs are inconsistent (also ValueError)
├── ClockSyncError          a live stream's time source answered something that is not a time
│                           (defined in player.clocksync; sync_clock catches it and tries the next source)
└── CaFileError             a `--ca` file is missing, unreadable or holds no PEM CA certificate (also
                            ValueError; defined in player.fetch, next to FetchError and Abandoned)
"""

from __future__ import annotations

__all__ = ["AbrError", "IndexRequired", "ManifestError", "PlayerError", "SegmentIndexError", "TraceError"]


class PlayerError(Exception):
    """Root of every error raised by the player."""


class ManifestError(PlayerError):
    """Raised when an MPD cannot be parsed or describes segments that cannot be addressed.

    `element` and `attribute` name where the problem is (e.g. ``SegmentTemplate`` and ``duration``),
    `value` is the offending text when there is one.
    """

    def __init__(
        self,
        message: str,
        *,
        element: str | None = None,
        attribute: str | None = None,
        value: str | None = None,
    ) -> None:
        where = element or ""
        if attribute:
            where = f"{where}@{attribute}"
        super().__init__(f"{where}: {message}" if where else message)
        self.element = element
        self.attribute = attribute
        self.value = value


class SegmentIndexError(PlayerError):
    """Raised when a segment index (`sidx` box) is truncated, malformed or of an unsupported kind."""


class IndexRequired(PlayerError, RuntimeError):
    """Raised when segments of a SegmentBase representation are asked for without its parsed sidx."""


class TraceError(PlayerError):
    """Raised when a throughput trace file is empty, malformed or has non-increasing times."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.line = line


class AbrError(PlayerError, ValueError):
    """Raised when an ABR algorithm is unknown or given inconsistent inputs (e.g. no bitrates)."""
