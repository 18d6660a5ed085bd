"""Exceptions raised by the origin (packaging and serving).

OriginError                 root: everything this package raises derives from it
├── ConfigError             a setting or argument is invalid (also a ValueError): fix it and retry
│   ├── LadderError         a `--ladder` specification cannot be parsed or is empty
│   └── InvalidVideoId      a video id is not a safe slug
└── PackagingError          packaging failed; nothing was published
    ├── InputError          the input file cannot be packaged (not a video, truncated, unsafe name, ...)
    ├── EncodeError         ffmpeg failed while encoding a valid-looking input
    ├── ManifestError       the MPD ffmpeg wrote is missing something or fails the DASH schema
    └── PublishError        the store cannot be written or the package not moved into place
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "EncodeError",
    "InputError",
    "InvalidVideoId",
    "LadderError",
    "ManifestError",
    "OriginError",
    "PackagingError",
    "PublishError",
]


class OriginError(Exception):
    """Root of every error raised by the origin (packaging and serving)."""


class ConfigError(OriginError, ValueError):
    """Raised when a setting or command-line argument has an invalid value."""


class LadderError(ConfigError):
    """Raised when a bitrate ladder specification cannot be parsed or leaves no rendition."""


class InvalidVideoId(ConfigError):
    """Raised when a video id is not a safe slug ([A-Za-z0-9._-], no leading dot, at most 64 chars)."""


class PackagingError(OriginError):
    """Raised when packaging a video fails; nothing is published under its id."""


class InputError(PackagingError):
    """Raised when the input file cannot be packaged: unreadable, not a video, truncated or unsafe."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class EncodeError(PackagingError):
    """Raised when ffmpeg exits with an error while encoding; carries its exit code and stderr tail."""

    def __init__(self, message: str, *, returncode: int | None = None, stderr_tail: str = "") -> None:
        super().__init__(message)
        self.returncode = returncode
        self.stderr_tail = stderr_tail


class ManifestError(PackagingError):
    """Raised when the MPD written by ffmpeg is incomplete or does not validate against the DASH schema."""


class PublishError(PackagingError):
    """Raised when the store cannot be written or the finished package cannot be moved into place."""
