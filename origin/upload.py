"""`POST /videos`: bearer-token check, upload options, and a streaming multipart receiver.

The body is parsed as it arrives (python-multipart) and the `file` part goes straight to a staging
file, counting bytes: past the size limit the upload stops with 413 and the partial file is deleted.
Small fields (`id`, `segment_seconds`, `ladder`) are kept in memory, each at most 1 KiB.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from origin.errors import OriginError
from origin.httpfiles import is_valid_video_id

__all__ = [
    "BadUpload",
    "Unauthorized",
    "UploadError",
    "UploadOptions",
    "UploadTooLarge",
    "UploadsDisabled",
    "check_authorization",
    "parse_upload_options",
    "receive_upload",
]

FIELDS = frozenset({"file", "id", "segment_seconds", "ladder"})
_MAX_FIELD_BYTES = 1024
_BODY_OVERHEAD = 1024 * 1024  # multipart framing and small fields allowed on top of the file limit
_BATCH_BYTES = 1024 * 1024  # hand the parser ~1 MiB per thread hop
_ID_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


class UploadError(OriginError):
    """Raised when an upload is refused; `status` is the HTTP status to answer with."""

    status = 400


class UploadsDisabled(UploadError):
    """Raised when the server was started without an admin token, so uploads are off."""

    status = 503


class Unauthorized(UploadError):
    """Raised when the Authorization header is missing or holds the wrong bearer token."""

    status = 401


class UploadTooLarge(UploadError):
    """Raised when the uploaded file exceeds the server's --max-upload-size."""

    status = 413


class BadUpload(UploadError):
    """Raised when the request is not a well-formed multipart upload with the expected fields."""


@dataclass(frozen=True, slots=True)
class UploadOptions:
    """What to package: the id to publish under, the chunk duration and the ladder (None: default)."""

    video_id: str
    segment_seconds: int
    ladder: Any = None


def check_authorization(header: str | None, token: str | None) -> None:
    """Accept `Authorization: Bearer TOKEN` matching `token` (constant-time); raise otherwise."""
    if token is None:
        raise UploadsDisabled("uploads are disabled: start the origin with --admin-token or CDN_ADMIN_TOKEN")
    scheme, _, given = (header or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise Unauthorized("missing or wrong admin token: send 'Authorization: Bearer TOKEN'")


def default_video_id(filename: str | None, job_id: str) -> str:
    """An id from the uploaded file's name (`My Clip.mp4` -> `My-Clip`), else `upload-<job>`."""
    stem = Path(filename or "").name.rpartition(".")[0] or Path(filename or "").name
    candidate = _ID_CHARS.sub("-", stem).strip("-.")[:64]
    return candidate if candidate and is_valid_video_id(candidate) else f"upload-{job_id}"


def parse_upload_options(fields: dict[str, str], filename: str | None, job_id: str) -> UploadOptions:
    """Validate the form fields; raise BadUpload naming the field and the accepted values."""
    video_id = fields.get("id", "").strip() or default_video_id(filename, job_id)
    if not is_valid_video_id(video_id):
        raise BadUpload(f"id {video_id!r} is not valid: use 1-64 of A-Z a-z 0-9 _ . - (not starting with .)")
    text = fields.get("segment_seconds", "8").strip()
    if not text.isdigit() or not 2 <= int(text) <= 10:
        raise BadUpload(f"segment_seconds {text!r} is not valid: use a whole number from 2 to 10")
    ladder = None
    if fields.get("ladder", "").strip():
        from origin.ladder import parse_ladder

        try:
            ladder = parse_ladder(fields["ladder"])
        except (OriginError, ValueError) as exc:
            raise BadUpload(f"ladder: {exc}") from exc
    return UploadOptions(video_id=video_id, segment_seconds=int(text), ladder=ladder)


@dataclass(slots=True)
class _Part:
    name: str | None = None
    filename: str | None = None
    data: bytearray = field(default_factory=bytearray)


class MultipartSink:
    """Feeds body bytes to the multipart parser, streaming the `file` part into `dest` (blocking I/O)."""

    def __init__(self, boundary: bytes, dest: Path, max_file_bytes: int) -> None:
        self.fields: dict[str, str] = {}
        self.filename: str | None = None
        self.file_bytes = 0
        self.has_file = False
        self.complete = False
        self._dest, self._max = dest, max_file_bytes
        self._file: Any = None
        self._part = _Part()
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._on_part_begin,
                "on_header_field": lambda d, s, e: self._header_name.extend(d[s:e]),
                "on_header_value": lambda d, s, e: self._header_value.extend(d[s:e]),
                "on_header_end": self._on_header_end,
                "on_headers_finished": self._on_headers_finished,
                "on_part_data": self._on_part_data,
                "on_part_end": self._on_part_end,
                "on_end": self._on_end,
            },
        )

    def feed(self, data: bytes) -> None:
        """Parse more body bytes; raise BadUpload / UploadTooLarge."""
        try:
            self._parser.write(data)
        except MultipartParseError as exc:
            raise BadUpload(f"the multipart body is malformed: {exc}") from exc

    def close(self) -> None:
        """Close the staging file (idempotent)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def _on_part_begin(self) -> None:
        self._part = _Part()

    def _on_header_end(self) -> None:
        if bytes(self._header_name).strip().lower() == b"content-disposition":
            _, params = parse_options_header(bytes(self._header_value))
            self._part.name = params.get(b"name", b"").decode("utf-8", "replace")
            raw = params.get(b"filename")
            self._part.filename = None if raw is None else raw.decode("utf-8", "replace")
        self._header_name.clear()
        self._header_value.clear()

    def _on_headers_finished(self) -> None:
        name = self._part.name
        if name not in FIELDS:
            raise BadUpload(
                f"unexpected form field {name!r}: send file, and optionally id, segment_seconds, ladder"
            )
        if name == "file":
            if self.has_file:
                raise BadUpload("more than one 'file' part: upload one video per request")
            self.has_file = True
            self.filename = self._part.filename
            self._file = self._dest.open("wb")

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._part.name == "file":
            self.file_bytes += end - start
            if self.file_bytes > self._max:
                raise UploadTooLarge(f"the upload exceeds the limit of {self._max} bytes (--max-upload-size)")
            self._file.write(data[start:end])
        else:
            self._part.data.extend(data[start:end])
            if len(self._part.data) > _MAX_FIELD_BYTES:
                raise BadUpload(f"form field {self._part.name!r} is longer than {_MAX_FIELD_BYTES} bytes")

    def _on_part_end(self) -> None:
        if self._part.name == "file":
            self.close()
        elif self._part.name:
            self.fields[self._part.name] = self._part.data.decode("utf-8", "replace")

    def _on_end(self) -> None:
        self.complete = True


def _boundary(content_type: str | None) -> bytes:
    ctype, params = parse_options_header(content_type or "")
    if ctype != b"multipart/form-data" or not params.get(b"boundary"):
        raise BadUpload(
            "send the video as multipart/form-data with a 'file' field (e.g. curl -F file=@clip.mp4)"
        )
    return params[b"boundary"]


async def receive_upload(
    chunks: AsyncIterator[bytes],
    *,
    content_type: str | None,
    content_length: str | None,
    dest: Path,
    max_file_bytes: int,
) -> MultipartSink:
    """Stream a multipart body into `dest`; return the sink (fields, filename, bytes). Deletes `dest` on error."""
    boundary = _boundary(content_type)
    max_body = max_file_bytes + _BODY_OVERHEAD
    if content_length and content_length.isdigit() and int(content_length) > max_body:
        raise UploadTooLarge(
            f"the upload of {content_length} bytes exceeds the limit of {max_file_bytes} bytes"
        )
    sink = MultipartSink(boundary, dest, max_file_bytes)
    try:
        batch: list[bytes] = []
        size = total = 0
        async for chunk in chunks:
            batch.append(chunk)
            size += len(chunk)
            total += len(chunk)
            if total > max_body:  # a chunked body has no Content-Length to check up front
                raise UploadTooLarge(
                    f"the upload body exceeds the limit of {max_file_bytes} bytes (--max-upload-size)"
                )
            if size >= _BATCH_BYTES:
                await anyio.to_thread.run_sync(sink.feed, b"".join(batch))
                batch, size = [], 0
        await anyio.to_thread.run_sync(sink.feed, b"".join(batch))
        if not sink.complete:
            raise BadUpload("the upload ended before the closing multipart boundary (truncated request)")
        if not sink.has_file:
            raise BadUpload("no 'file' part: send the video in a form field named 'file'")
    except BaseException:
        sink.close()
        dest.unlink(missing_ok=True)  # noqa: ASYNC240 - must run even when cancelled (client gone)
        raise
    sink.close()
    return sink
