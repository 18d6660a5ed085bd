"""The catalogue served at `GET /videos`: one entry per published package in the store.

`parse_package` turns one `STORE/ID/package.json` (format in docs/architecture.md) into a
`CatalogEntry` (pure); `read_catalog(store)` walks the store and is meant to run in a worker thread.
Hidden folders (`.tmp-*` builds, `.uploads`) and folders without a readable package.json are skipped:
a package only counts once it is completely published.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from origin.httpfiles import is_valid_video_id

__all__ = ["CatalogEntry", "Rendition", "parse_package", "read_catalog", "read_entry"]

log = logging.getLogger("origin.catalog")

PACKAGE_FILE = "package.json"
MANIFEST_FILE = "manifest.mpd"


@dataclass(frozen=True, slots=True, kw_only=True)
class Rendition:
    """One video rendition of a package, as listed in its package.json."""

    id: str
    width: int
    height: int
    bandwidth: int
    codecs: str
    frame_rate: str | float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CatalogEntry:
    """One published video: its id, duration (s), chunking, audio flag and renditions."""

    id: str
    duration: float
    segment_seconds: float | int | None
    chunks: int | None
    audio: bool
    renditions: tuple[Rendition, ...]
    created: str | float | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON object of this entry in `GET /videos`."""
        return {
            "id": self.id,
            "duration": self.duration,
            "segment_seconds": self.segment_seconds,
            "chunks": self.chunks,
            "audio": self.audio,
            "renditions": [
                {
                    "id": r.id,
                    "width": r.width,
                    "height": r.height,
                    "bandwidth": r.bandwidth,
                    "codecs": r.codecs,
                    "frame_rate": r.frame_rate,
                }
                for r in self.renditions
            ],
            "created": self.created,
            "manifest": f"/videos/{self.id}/{MANIFEST_FILE}",
        }


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} is {value!r}, expected a non-negative number")
    return float(value)


def _whole(value: float) -> float | int:
    """Keep whole numbers as int in the JSON (`2`, not `2.0`)."""
    return int(value) if value.is_integer() else value


def _rendition(raw: Any) -> Rendition:
    if not isinstance(raw, dict):
        raise ValueError(f"a rendition is {raw!r}, expected an object")
    return Rendition(
        id=str(raw.get("id", "")),
        width=int(_number(raw.get("width"), "rendition width")),
        height=int(_number(raw.get("height"), "rendition height")),
        bandwidth=int(_number(raw.get("bandwidth"), "rendition bandwidth")),
        codecs=str(raw.get("codecs", "")),
        frame_rate=raw.get("frame_rate"),
    )


def parse_package(data: bytes, folder_name: str) -> CatalogEntry:
    """Parse one package.json; raise ValueError saying what is wrong with it."""
    raw = json.loads(data)
    if not isinstance(raw, dict):
        raise ValueError("package.json is not a JSON object")
    video_id = str(raw.get("id", folder_name))
    if video_id != folder_name:
        raise ValueError(f"its id {video_id!r} differs from its folder name {folder_name!r}")
    renditions = raw.get("renditions", [])
    if not isinstance(renditions, list):
        raise ValueError("renditions is not a list")
    seg, chunks = raw.get("segment_seconds"), raw.get("chunks")
    return CatalogEntry(
        id=video_id,
        duration=_number(raw.get("duration"), "duration"),
        segment_seconds=None if seg is None else _whole(_number(seg, "segment_seconds")),
        chunks=None if chunks is None else int(_number(chunks, "chunks")),
        audio=bool(raw.get("audio", False)),
        renditions=tuple(_rendition(r) for r in renditions),
        created=raw.get("created"),
    )


def read_entry(store: Path, video_id: str) -> CatalogEntry | None:
    """Read one package's entry, or None when it is not a valid published package (blocking I/O)."""
    if not is_valid_video_id(video_id):
        return None
    folder = store / video_id
    try:
        if folder.is_symlink() or not (folder / MANIFEST_FILE).is_file():
            return None
        return parse_package((folder / PACKAGE_FILE).read_bytes(), video_id)
    except (OSError, ValueError, TypeError) as exc:
        log.warning("skipping %s in the catalogue: %s", video_id, exc)
        return None


def read_catalog(store: Path) -> list[CatalogEntry]:
    """Every published package in `store`, sorted by id (blocking I/O: run it in a thread)."""
    try:
        names = sorted(entry.name for entry in store.iterdir())
    except OSError as exc:
        log.warning("cannot list the store %s: %s", store, exc.strerror)
        return []
    entries = (read_entry(store, name) for name in names if is_valid_video_id(name))
    return [e for e in entries if e is not None]
