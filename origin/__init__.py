"""The origin service: packages videos into MPEG-DASH and serves the store over HTTP.

Packaging API (used by `cdn-origin package`, the upload jobs and the test fixtures):
`package(input, video_id=, store=, segment_seconds=, ladder=, progress=)` with `parse_ladder`,
`DEFAULT_LADDER` and the errors below. The HTTP server lives in `origin.app` / `origin.serve`
and is not imported here, so packaging does not pay for FastAPI.
"""

from __future__ import annotations

from origin.errors import (
    ConfigError,
    EncodeError,
    InputError,
    InvalidVideoId,
    LadderError,
    ManifestError,
    OriginError,
    PackagingError,
    PublishError,
)
from origin.ladder import DEFAULT_LADDER, Ladder, Rendition, Rung, parse_ladder, plan_renditions
from origin.packager import PackageSummary, RenditionSummary, package
from origin.progress import PackagingProgress

__all__ = [
    "DEFAULT_LADDER",
    "ConfigError",
    "EncodeError",
    "InputError",
    "InvalidVideoId",
    "Ladder",
    "LadderError",
    "ManifestError",
    "OriginError",
    "PackageSummary",
    "PackagingError",
    "PackagingProgress",
    "PublishError",
    "Rendition",
    "RenditionSummary",
    "Rung",
    "package",
    "parse_ladder",
    "plan_renditions",
]
