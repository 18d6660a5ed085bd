"""HTTP semantics of serving a stored file, as pure functions (no sockets, files or clock).

The app's I/O shell stats the file and hands `plan_file_response` the request's conditional and
range headers; it gets back a `ResponsePlan` (status, headers, which bytes to send) to carry out.
Rules follow RFC 9110: validators (§8.8), preconditions in the order of §13.2.2, ranges (§14).

Choices: a Range with several ranges is answered 200 with the whole file (416 when none of them is
satisfiable); an invalid Range header is ignored (200); HEAD ignores Range like any method but GET.
"""

from __future__ import annotations

import enum
import hashlib
import re
from dataclasses import dataclass
from typing import Literal

from cdn.httpdate import format_http_date
from cdn.httpdate import parse_http_date as parse_any_http_date

__all__ = [
    "CORS_HEADERS",
    "ByteRange",
    "Conditions",
    "EntityTag",
    "FileKind",
    "FileStat",
    "Precondition",
    "RangeDecision",
    "ResponsePlan",
    "cache_control",
    "content_type",
    "evaluate_preconditions",
    "file_kind",
    "http_date",
    "if_range_allows",
    "is_valid_file_name",
    "is_valid_video_id",
    "make_etag",
    "parse_etags",
    "parse_http_date",
    "parse_range",
    "plan_file_response",
]

# Names we serve: no dot first (so never `.`, `..`, `.tmp-*`), then a small safe alphabet.
# No `/`, `\`, `%`, NUL or whitespace can pass, which closes every traversal spelling by construction.
_VIDEO_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}")  # as origin.packager
_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,200}")
_ETAG_ITEM = re.compile(r'\s*(W/)?"([\x21\x23-\x7e\x80-\xff]*)"\s*(?:,|$)')
_RANGE_SPEC = re.compile(r"^\s*(\d{0,19})\s*-\s*(\d{0,19})\s*$")

CORS_HEADERS: tuple[tuple[str, str], ...] = (
    ("access-control-allow-origin", "*"),
    (
        "access-control-expose-headers",
        "Content-Length, Content-Range, Content-Type, ETag, Last-Modified, Accept-Ranges, Cache-Control, Date",
    ),
)


class FileKind(enum.Enum):
    """What a stored file is, which decides its Content-Type and Cache-Control."""

    MANIFEST = "manifest"
    INIT = "init"
    MEDIA = "media"


class Precondition(enum.Enum):
    """Outcome of evaluating If-Match / If-None-Match / If-(Un)Modified-Since."""

    PROCEED = 200
    NOT_MODIFIED = 304
    FAILED = 412


@dataclass(frozen=True, slots=True)
class FileStat:
    """The parts of a `stat_result` that HTTP needs: size in bytes, mtime in ns, inode number."""

    size: int
    mtime_ns: int
    inode: int

    def __post_init__(self) -> None:
        if self.size < 0 or self.mtime_ns < 0:
            raise ValueError(f"negative size or mtime: {self.size=} {self.mtime_ns=}")

    @property
    def mtime(self) -> int:
        """Modification time in whole seconds (the resolution of HTTP dates)."""
        return self.mtime_ns // 1_000_000_000


@dataclass(frozen=True, slots=True)
class EntityTag:
    """One entity-tag: its opaque value (without quotes) and whether it is weak (`W/`)."""

    opaque: str
    weak: bool = False

    def strong_match(self, other: EntityTag) -> bool:
        """RFC 9110 §8.8.3.2 strong comparison: both strong and the same opaque value."""
        return not self.weak and not other.weak and self.opaque == other.opaque

    def weak_match(self, other: EntityTag) -> bool:
        """RFC 9110 §8.8.3.2 weak comparison: the same opaque value, weakness ignored."""
        return self.opaque == other.opaque


@dataclass(frozen=True, slots=True)
class ByteRange:
    """Bytes `start` to `stop - 1` of a representation of `size` bytes."""

    start: int
    stop: int
    size: int

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.stop <= self.size:
            raise ValueError(f"bad byte range {self.start}..{self.stop} of {self.size}")

    @property
    def length(self) -> int:
        return self.stop - self.start

    @property
    def content_range(self) -> str:
        return f"bytes {self.start}-{self.stop - 1}/{self.size}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Conditions:
    """The request headers that decide a file response (None when absent)."""

    if_match: str | None = None
    if_none_match: str | None = None
    if_modified_since: str | None = None
    if_unmodified_since: str | None = None
    if_range: str | None = None
    range: str | None = None


RangeDecision = Literal["full", "unsatisfiable"] | ByteRange


@dataclass(frozen=True, slots=True)
class ResponsePlan:
    """What to send: status, headers, and the byte range of the file body (None: no body)."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: ByteRange | None
    text: bytes = b""  # a short explanatory body for 412/416 (GET only)


def is_valid_video_id(text: str) -> bool:
    """True when `text` is a video id we may look up (also what uploads may be named)."""
    return _VIDEO_ID.fullmatch(text) is not None


def is_valid_file_name(text: str) -> bool:
    """True when `text` is a servable file name: safe alphabet and a known media extension."""
    return _FILE_NAME.fullmatch(text) is not None and file_kind(text) is not None


def file_kind(name: str) -> FileKind | None:
    """Classify a file name by extension (`.mpd`, init `.mp4`/`init*`, media `.m4s`); None: not served."""
    lower = name.lower()
    ext = lower.rpartition(".")[2] if "." in lower else ""
    if ext == "mpd":
        return FileKind.MANIFEST
    if ext == "mp4" or (lower.startswith("init") and ext in {"m4s", "m4v", "m4a", "cmfv", "cmfa"}):
        return FileKind.INIT
    if ext in {"m4s", "m4v", "m4a", "cmfv", "cmfa"}:
        return FileKind.MEDIA
    return None


def content_type(kind: FileKind) -> str:
    """The Content-Type for a kind: the DASH MPD type, MP4 for init segments, ISO segment for chunks."""
    return {
        FileKind.MANIFEST: "application/dash+xml",
        FileKind.INIT: "video/mp4",
        FileKind.MEDIA: "video/iso.segment",
    }[kind]


def cache_control(kind: FileKind, *, manifest_max_age: int, chunk_max_age: int) -> str:
    """Manifests get a short max-age (a package may be replaced); chunks are immutable (RFC 8246)."""
    if kind is FileKind.MANIFEST:
        return f"public, max-age={manifest_max_age}"
    return f"public, max-age={chunk_max_age}, immutable"


def make_etag(st: FileStat) -> str:
    """A strong ETag (quoted) from size, mtime (ns) and inode: a republished file gets a new one."""
    digest = hashlib.blake2b(f"{st.size}:{st.mtime_ns}:{st.inode}".encode(), digest_size=12).hexdigest()
    return f'"{digest}"'


def http_date(epoch_seconds: int) -> str:
    """Format a Unix time as an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`)."""
    return format_http_date(epoch_seconds)


def parse_http_date(text: str) -> int | None:
    """Parse an HTTP date into whole Unix seconds (`cdn.httpdate`); None when it is not a valid date."""
    parsed = parse_any_http_date(text)
    return None if parsed is None else int(parsed)


def parse_etags(header: str) -> list[EntityTag] | Literal["*"]:
    """Parse an If-Match / If-None-Match value: `*` or a list of entity-tags (malformed items dropped)."""
    if header.strip() == "*":
        return "*"
    tags: list[EntityTag] = []
    pos = 0
    while pos < len(header):
        m = _ETAG_ITEM.match(header, pos)
        if m is None:  # skip a malformed member up to the next comma
            comma = header.find(",", pos)
            if comma < 0:
                break
            pos = comma + 1
            continue
        tags.append(EntityTag(m.group(2), weak=m.group(1) is not None))
        pos = m.end()
    return tags


def _parse_one_etag(etag: str) -> EntityTag:
    tags = parse_etags(etag)
    if not isinstance(tags, list) or len(tags) != 1:
        raise ValueError(f"not a single entity-tag: {etag!r}")
    return tags[0]


def evaluate_preconditions(method: str, cond: Conditions, *, etag: str, last_modified: int) -> Precondition:
    """Evaluate preconditions in RFC 9110 §13.2.2 order for an existing file."""
    current = _parse_one_etag(etag)
    if cond.if_match is not None:
        tags = parse_etags(cond.if_match)
        if tags != "*" and not any(t.strong_match(current) for t in tags):
            return Precondition.FAILED
    elif cond.if_unmodified_since is not None:
        since = parse_http_date(cond.if_unmodified_since)
        if since is not None and last_modified > since:
            return Precondition.FAILED
    if cond.if_none_match is not None:
        tags = parse_etags(cond.if_none_match)
        if tags == "*" or any(t.weak_match(current) for t in tags):
            return Precondition.NOT_MODIFIED if method in ("GET", "HEAD") else Precondition.FAILED
    elif cond.if_modified_since is not None and method in ("GET", "HEAD"):
        since = parse_http_date(cond.if_modified_since)
        if since is not None and last_modified <= since:
            return Precondition.NOT_MODIFIED
    return Precondition.PROCEED


def if_range_allows(if_range: str | None, *, etag: str, last_modified: int) -> bool:
    """RFC 9110 §13.1.5: honour Range only if the If-Range validator still matches (strongly)."""
    if if_range is None:
        return True
    value = if_range.strip()
    if value.startswith(('"', "W/")):
        tags = parse_etags(value)
        return isinstance(tags, list) and len(tags) == 1 and tags[0].strong_match(_parse_one_etag(etag))
    date = parse_http_date(value)
    return date is not None and date == last_modified


def _parse_spec(spec: str, size: int) -> tuple[int, int] | Literal["unsatisfiable"] | None:
    """One `first-last`, `first-` or `-suffix` spec -> (start, stop); None when it is invalid."""
    m = _RANGE_SPEC.match(spec)
    if m is None or (not m.group(1) and not m.group(2)):
        return None
    first, last = m.group(1), m.group(2)
    if not first:  # suffix: the last N bytes
        n = int(last)
        return (size - min(n, size), size) if n > 0 and size > 0 else "unsatisfiable"
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= size:
        return "unsatisfiable"
    stop = size if not last else min(int(last) + 1, size)
    return (start, stop)


def parse_range(header: str | None, size: int) -> RangeDecision:
    """Decide a Range header against a file of `size` bytes: "full", "unsatisfiable" or one ByteRange."""
    if header is None:
        return "full"
    unit, sep, specs = header.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return "full"  # unknown unit or no `=`: ignore the header (RFC 9110 §14.2)
    parsed = [_parse_spec(s, size) for s in specs.split(",") if s.strip()]
    if not parsed or any(p is None for p in parsed):
        return "full"  # invalid ranges-specifier: ignored
    satisfiable = [p for p in parsed if isinstance(p, tuple)]
    if not satisfiable:
        return "unsatisfiable"
    if len(parsed) > 1:
        return "full"  # several ranges: we send the whole file rather than multipart/byteranges
    start, stop = satisfiable[0]
    return ByteRange(start, stop, size)


def plan_file_response(
    method: str, cond: Conditions, st: FileStat, kind: FileKind, *, manifest_max_age: int, chunk_max_age: int
) -> ResponsePlan:
    """Decide the whole response to a GET or HEAD of an existing file."""
    etag, last_modified = make_etag(st), st.mtime
    validators = (
        ("etag", etag),
        ("last-modified", http_date(last_modified)),
        (
            "cache-control",
            cache_control(kind, manifest_max_age=manifest_max_age, chunk_max_age=chunk_max_age),
        ),
    )
    outcome = evaluate_preconditions(method, cond, etag=etag, last_modified=last_modified)
    if outcome is Precondition.NOT_MODIFIED:
        return ResponsePlan(304, validators, None)
    if outcome is Precondition.FAILED:
        return _text_plan(412, b"precondition failed: the file's ETag or date differs\n", method, ())
    entity = (("content-type", content_type(kind)), ("accept-ranges", "bytes"), *validators)
    decision: RangeDecision = "full"
    if method == "GET" and if_range_allows(cond.if_range, etag=etag, last_modified=last_modified):
        decision = parse_range(cond.range, st.size)
    if decision == "unsatisfiable":
        text = f"range not satisfiable: the file has {st.size} bytes\n".encode()
        return _text_plan(416, text, method, (("content-range", f"bytes */{st.size}"), *validators[:2]))
    if isinstance(decision, ByteRange):
        headers = (
            *entity,
            ("content-range", decision.content_range),
            ("content-length", str(decision.length)),
        )
        return ResponsePlan(206, headers, decision)
    body = ByteRange(0, st.size, st.size) if st.size and method == "GET" else None
    return ResponsePlan(200, (*entity, ("content-length", str(st.size))), body)


def _text_plan(status: int, text: bytes, method: str, extra: tuple[tuple[str, str], ...]) -> ResponsePlan:
    headers = (
        ("content-type", "text/plain; charset=utf-8"),
        ("content-length", str(len(text))),
        ("cache-control", "no-store"),
        *extra,
    )
    return ResponsePlan(status, headers, None, text if method == "GET" else b"")
