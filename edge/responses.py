"""Writing responses: cached entries (200/206/304/416), growing fills, and small JSON/text answers.

Heads of cached entries are rendered once per (entry, X-Cache value) and kept on the entry, with
the stored response's Date (RFC 9110 §6.6.1); only the Age line is produced per response. Streaming a fill writes each chunk as it
arrives and, if the upstream breaks, aborts the client's connection so that a truncated body can
never pass for a complete one. A large entry is streamed from its file (`stream_entry`), each
block verified before it is sent; a block failing mid-body aborts the connection likewise.
A HEAD miss is answered from the upstream's HEAD (`send_probe`).
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.bodyfile import BlockReader
from edge.cachecontrol import format_http_date, parse_http_date
from edge.entry import Entry
from edge.errors import CorruptBodyError, RangeNotSatisfiable, UpstreamError
from edge.http import HttpConnection, Request, http_date, render_head
from edge.metrics import CacheStatus
from edge.ranges import ByteRange, content_range, parse_range

if TYPE_CHECKING:
    from edge.fill import Fill, Probe
    from edge.server import EdgeServer

__all__ = [
    "json_bytes",
    "not_modified",
    "render_entry",
    "send_416",
    "send_probe",
    "send_simple",
    "serve_entry",
    "stream_entry",
    "stream_fill",
]

_COALESCE_WRITE = 64 * 1024
_VALIDATORS = frozenset({"etag", "cache-control", "expires", "last-modified", "vary", "content-location"})


def json_bytes(doc: Any) -> bytes:
    """Compact JSON plus a newline."""
    return json.dumps(doc, separators=(",", ":")).encode() + b"\n"


def _tail(age: int | None, keep_alive: bool, *, date: bool = True) -> bytes:
    parts = [] if age is None else [b"Age: %d\r\n" % age]
    if date:
        parts.append(b"Date: " + http_date() + b"\r\n")
    if not keep_alive:
        parts.append(b"Connection: close\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def not_modified(req_headers: dict[str, str], headers: list[tuple[str, str]]) -> bool:
    """Does a conditional GET/HEAD match (RFC 9110 §13.2.2: If-None-Match, else If-Modified-Since)?"""
    inm = req_headers.get("if-none-match")
    if inm is None and "if-modified-since" not in req_headers:
        return False
    lower = {k.lower(): v for k, v in headers}
    if inm is not None:
        etag = lower.get("etag")
        if etag is None:
            return False
        tags = {t.strip().removeprefix("W/") for t in inm.split(",")}
        return "*" in tags or etag.removeprefix("W/") in tags
    ims = parse_http_date(req_headers.get("if-modified-since"))
    modified = parse_http_date(lower.get("last-modified"))
    return ims is not None and modified is not None and modified <= ims


def _range_for(req: Request, headers: list[tuple[str, str]], size: int) -> ByteRange | None:
    """The requested range if Range applies (If-Range matches); raise RangeNotSatisfiable."""
    header = req.headers.get("range")
    if header is None:
        return None
    if_range = req.headers.get("if-range")
    if if_range is not None and not _if_range_matches(if_range.strip(), headers):
        return None
    return parse_range(header, size)


def _if_range_matches(value: str, headers: list[tuple[str, str]]) -> bool:
    """RFC 9110 §13.1.5: an entity-tag must match strongly (a weak one never does), a date exactly."""
    lower = {k.lower(): v for k, v in headers}
    if value.startswith(("W/", '"')):
        etag = lower.get("etag")
        return etag is not None and not etag.startswith("W/") and value == etag
    return value == lower.get("last-modified")


def _length_headers(rng: ByteRange | None, length: int | None) -> list[tuple[str, str]]:
    """Content-Range and Content-Length of a 206, or Accept-Ranges and Content-Length of a whole body."""
    if rng is not None:
        return [("Content-Range", content_range(rng, length or 0)), ("Content-Length", str(rng.length))]
    if length is not None:
        return [("Accept-Ranges", "bytes"), ("Content-Length", str(length))]
    return []


def _common(server: EdgeServer, status: CacheStatus) -> list[tuple[str, str]]:
    return [("Via", server.via), ("X-Cache", status)]


def serve_entry(
    server: EdgeServer,
    conn: HttpConnection,
    req: Request,
    entry: Entry,
    body: bytes,
    status: CacheStatus,
    now: float,
) -> int:
    """Answer from a cached entry; return the body bytes sent. Raise RangeNotSatisfiable."""
    answer = _conditional(server, conn, req, entry, status, now)
    if answer is None:
        return 0
    age, rng = answer
    payload: bytes | memoryview = body if rng is None else memoryview(body)[rng.start : rng.end + 1]
    head = _entry_head(server, req, entry, rng, status, age)
    if req.method == "HEAD":
        conn.write(head)
        payload = b""
    elif len(payload) <= _COALESCE_WRITE:
        conn.write(head + payload)
    else:
        conn.writelines([head, payload])
    if not req.keep_alive:
        conn.finish(False)
    return len(payload)


def _conditional(
    server: EdgeServer, conn: HttpConnection, req: Request, entry: Entry, status: CacheStatus, now: float
) -> tuple[int, ByteRange | None] | None:
    """The entry's Age and the Range to send; None when a 304 was sent. Raise RangeNotSatisfiable."""
    age = int(now - entry.stored_at) if now > entry.stored_at else 0
    if req.plain or entry.status != 200:
        return age, None
    if not_modified(req.headers, entry.headers):
        _send_304(server, conn, req, entry.headers, status, age)
        return None
    return age, _range_for(req, entry.headers, entry.size)


def _entry_head(
    server: EdgeServer, req: Request, entry: Entry, rng: ByteRange | None, status: CacheStatus, age: int
) -> bytes:
    """The whole head of a 200/206 (or 404) from a cached entry, its Age and the blank line included."""
    if rng is not None:
        extra = [("Content-Range", content_range(rng, entry.size)), ("Content-Length", str(rng.length))]
        head = render_head(206, _dated(entry) + extra + _common(server, status))
    else:
        head = entry.rendered.get(status) or render_entry(server, entry, status)
    return head + (
        b"Age: %d\r\n\r\n" % age if req.keep_alive else b"Age: %d\r\nConnection: close\r\n\r\n" % age
    )


async def stream_entry(
    server: EdgeServer,
    conn: HttpConnection,
    req: Request,
    entry: Entry,
    status: CacheStatus,
    now: float,
    path: Path,
) -> int | None:
    """Answer from a large entry, streaming its body file `path` block by block; return the bytes sent.

    Each block is verified before any of its bytes goes out, and only the blocks a Range touches
    are read. Return None when the first block needed fails (nothing was sent: the caller drops the
    entry and refetches). Raise RangeNotSatisfiable (nothing sent), or CorruptBodyError when a later
    block fails, after aborting the connection: the client then has fewer bytes than Content-Length,
    never a whole-looking corrupt body. 304s and 416s read nothing; a HEAD reads the first block.
    """
    assert entry.blocks is not None, "a streamed entry has block checksums"
    answer = _conditional(server, conn, req, entry, status, now)
    if answer is None:
        return 0
    age, rng = answer
    start, stop = (rng.start, rng.end + 1) if rng else (0, entry.size)
    if req.method == "HEAD":  # verify the first block (as a small entry is verified), send none
        stop = min(stop, (start // entry.blocks.size + 1) * entry.blocks.size)
    reader = BlockReader(path, entry.blocks, entry.size, start, stop)
    try:
        try:
            piece = await reader.next()
        except CorruptBodyError:
            return None
        conn.write(_entry_head(server, req, entry, rng, status, age))
        sent = 0 if req.method == "HEAD" else await _send_blocks(server, conn, reader, piece)
    finally:
        reader.close()
    if not req.keep_alive:
        conn.finish(False)
    return sent


async def _send_blocks(server: EdgeServer, conn: HttpConnection, reader: BlockReader, piece: bytes) -> int:
    """Write `piece` and the reader's next pieces, waiting while the client is not reading."""
    sent = 0
    while piece and not conn.closed:
        conn.write(piece)
        sent += len(piece)
        server.metrics.disk_streamed += len(piece)
        if conn.write_paused:
            await conn.drain()
            if conn.closed:
                break  # the client left (or stalled and was dropped): read no further block
        try:
            piece = await reader.next()
        except CorruptBodyError:
            conn.abort()
            raise
    return sent


def render_entry(server: EdgeServer, entry: Entry, status: CacheStatus) -> bytes:
    """Render and keep the head of a full (200/404) response from this entry with this X-Cache."""
    extra = [("Accept-Ranges", "bytes"), ("Content-Length", str(entry.size))]
    head = entry.rendered[status] = render_head(entry.status, _dated(entry) + extra + _common(server, status))
    return head


def _dated(entry: Entry) -> list[tuple[str, str]]:
    """The entry's headers with its Date (stored; else when it was stored, for older entries)."""
    if entry.header("date") is not None:
        return entry.headers
    return [*entry.headers, ("Date", format_http_date(entry.stored_at))]


def _send_304(
    server: EdgeServer,
    conn: HttpConnection,
    req: Request,
    headers: list[tuple[str, str]],
    status: CacheStatus,
    age: int | None,
) -> None:
    kept = [(k, v) for k, v in headers if k.lower() in _VALIDATORS]
    conn.write(render_head(304, kept + _common(server, status)) + _tail(age, req.keep_alive))
    conn.finish(req.keep_alive)


def send_416(
    server: EdgeServer, conn: HttpConnection, req: Request, size: int, status: CacheStatus, message: str
) -> None:
    """416 with `Content-Range: bytes */SIZE`."""
    server.metrics.error(416)
    extra = [("Content-Range", content_range(None, size))]
    send_simple(
        server,
        conn,
        req,
        416,
        (message + "\n").encode(),
        "text/plain; charset=utf-8",
        extra + [("X-Cache", status)],
    )


def send_simple(
    server: EdgeServer,
    conn: HttpConnection,
    req: Request,
    status: int,
    body: bytes,
    content_type: str,
    extra: list[tuple[str, str]] | None = None,
) -> None:
    """A small uncached response (errors, JSON, metrics)."""
    keep_alive = req.keep_alive and status not in (400, 413, 431)
    headers = [
        ("Content-Type", content_type),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
        ("Via", server.via),
        *(extra or []),
    ]
    head = render_head(status, headers) + _tail(None, keep_alive)
    conn.write(head if req.method == "HEAD" else head + body)
    conn.finish(keep_alive)


def send_probe(
    server: EdgeServer, conn: HttpConnection, req: Request, probe: Probe, status: CacheStatus
) -> None:
    """Answer a HEAD from the upstream's HEAD: the head a GET from a fill would get (304, 206, 416 too)."""
    headers, length = list(probe.headers), probe.length
    age = int(max(0.0, probe.age))
    if probe.status == 200 and not_modified(req.headers, headers):
        _send_304(server, conn, req, headers, status, age)
        return
    rng = None
    if probe.status == 200 and length is not None and "range" in req.headers:
        try:
            rng = _range_for(req, headers, length)
        except RangeNotSatisfiable as exc:
            send_416(server, conn, req, length, status, str(exc))
            return
    headers += _length_headers(rng, length)
    head = render_head(206 if rng else probe.status, headers + _common(server, status))
    conn.write(head + _tail(age, req.keep_alive, date=False))  # the probe's headers carry a Date
    conn.finish(req.keep_alive)


async def stream_fill(
    server: EdgeServer, conn: HttpConnection, req: Request, fill: Fill, status: CacheStatus
) -> None:
    """Answer from a fill that may still be growing; abort the connection if the upstream breaks."""
    try:
        await _stream_fill(server, conn, req, fill, status)
    except UpstreamError:
        conn.abort()
    except RangeNotSatisfiable as exc:
        send_416(server, conn, req, fill.received if fill.length is None else fill.length, status, str(exc))


async def _stream_fill(
    server: EdgeServer, conn: HttpConnection, req: Request, fill: Fill, status: CacheStatus
) -> None:
    if fill.status == 200 and not_modified(req.headers, fill.headers):
        _send_304(server, conn, req, fill.headers, status, 0)
        server.metrics.served(status, 0, 0.0)
        return
    rng, length = None, fill.length
    if length is None and fill.done:
        length = fill.received
    if fill.status == 200 and "range" in req.headers:
        if length is None:
            await fill.wait_done()
            length = fill.received
        rng = _range_for(req, fill.headers, length)
    headers = fill.headers + _common(server, status)
    headers += _length_headers(rng, length)
    chunked = False
    if rng is None and length is None and req.version == "1.1":
        chunked = True
        headers.append(("Transfer-Encoding", "chunked"))
    keep_alive = req.keep_alive and (length is not None or chunked)
    age = int(max(0.0, server.clock() - fill.stored_at))
    dated = any(k.lower() == "date" for k, _ in fill.headers)  # the filler always stores one
    conn.write(render_head(206 if rng else fill.status, headers) + _tail(age, keep_alive, date=not dated))
    sent = 0
    if req.method != "HEAD":
        start, end = (rng.start, rng.end + 1) if rng else (0, None)
        async with contextlib.aclosing(fill.read(start, end)) as pieces:
            async for piece in pieces:
                if conn.closed:
                    return  # the client left; the fill goes on without it
                conn.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                sent += len(piece)
                if conn.write_paused:
                    await conn.drain()
        if chunked:
            conn.write(b"0\r\n\r\n")
    server.metrics.served(status, sent, 0.0 if conn.closed else _elapsed(req))
    conn.finish(keep_alive)


def _elapsed(req: Request) -> float:
    return time.perf_counter() - req.started
