"""A tiny live DASH origin on loopback for the player's live tests.

Serves a dynamic MPD (SegmentTemplate $Number$, constant duration) whose availabilityStartTime is
`back` seconds before the server started; segment n (1-based) becomes available at AST + n × d and
is a 404 before (and, with `lag`, for `lag` seconds after). When segment `last` is available the
MPD turns static with mediaPresentationDuration = last × d (the event ended). Every request is
recorded with its wall-clock time and status. Its clock may be `skew` seconds off the real one (AST,
availability, answers, `Date` header; the Date alone with `date_skew`); `/live/time` answers that
clock as an xs:dateTime and `utc_timing` lists the MPD's UTCTiming elements (scheme, value).
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from xml.sax.saxutils import quoteattr

__all__ = ["XSDATE", "LiveOrigin", "LiveRequest"]

_SEGMENT = re.compile(r"/live/(v\d)/seg-(\d+)\.m4s")
BANDWIDTHS = {"v1": 100_000, "v2": 300_000}
XSDATE = "urn:mpeg:dash:utc:http-xsdate:2014"


@dataclass(frozen=True, slots=True)
class LiveRequest:
    """One request the origin answered: method, path, time on the origin's clock (POSIX seconds), status."""

    method: str
    path: str
    time: float
    status: int


class LiveOrigin:
    """Serve /live/manifest.mpd and its segments on 127.0.0.1, a free port; close() when done."""

    def __init__(
        self,
        *,
        duration: float = 0.5,
        back: float = 10.0,
        last: int | None = None,
        depth: float = 30.0,
        update: float = 1.0,
        lag: float = 0.0,
        skew: float = 0.0,
        date_skew: float | None = None,
        utc_timing: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.skew = skew  # seconds the origin's clock is ahead of the real one (negative: behind)
        self.date_skew = skew if date_skew is None else date_skew  # the same for its Date header
        self.utc_timing = list(utc_timing)  # (schemeIdUri, value) of each UTCTiming element, in order
        self.duration = duration
        self.ast = math.floor(self.now() - back)  # whole seconds: an exact xs:dateTime
        self.last = last
        self.depth = depth
        self.update = update
        self.lag = lag
        self.requests: list[LiveRequest] = []
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/live/manifest.mpd"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)

    def __enter__(self) -> LiveOrigin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def time_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/live/time"

    def now(self) -> float:
        """The origin's clock: the real one plus `skew`, POSIX seconds."""
        return time.time() + self.skew

    def available_at(self, number: int) -> float:
        """When segment `number` (1-based) becomes available, POSIX seconds (as the MPD says)."""
        return self.ast + number * self.duration

    def newest(self, now: float) -> int:
        """The newest segment number available at `now`."""
        newest = math.floor((now - self.ast) / self.duration + 1e-9)
        return newest if self.last is None else min(newest, self.last)

    def ended(self, now: float) -> bool:
        return self.last is not None and now >= self.available_at(self.last)

    def record(self, method: str, path: str, now: float, status: int) -> None:
        with self._lock:
            self.requests.append(LiveRequest(method, path, now, status))

    def media(self, method: str = "GET") -> list[LiveRequest]:
        """The requests for media segments, in order."""
        with self._lock:
            return [r for r in self.requests if r.method == method and _SEGMENT.fullmatch(r.path)]

    def mpd(self, now: float) -> bytes:
        """The MPD as it is at `now`: dynamic, or static once the last segment is available."""
        when = datetime.fromtimestamp(self.ast, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if self.ended(now):
            head = f'type="static" mediaPresentationDuration="PT{(self.last or 0) * self.duration:g}S"'
        else:
            head = (
                f'type="dynamic" minimumUpdatePeriod="PT{self.update:g}S" '
                f'timeShiftBufferDepth="PT{self.depth:g}S"'
            )
        reps = "".join(
            f'<Representation id="{rid}" bandwidth="{bw}" width="320" height="180" codecs="avc1.42c00d"/>'
            for rid, bw in BANDWIDTHS.items()
        )
        return (
            '<?xml version="1.0"?>\n<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" '
            f'profiles="urn:mpeg:dash:profile:isoff-live:2011" {head} availabilityStartTime="{when}" '
            'minBufferTime="PT1S"><Period id="p0" start="PT0S">'
            '<AdaptationSet contentType="video" mimeType="video/mp4" segmentAlignment="true">'
            f'<SegmentTemplate timescale="1000" duration="{round(self.duration * 1000)}" startNumber="1" '
            'media="$RepresentationID$/seg-$Number$.m4s" initialization="$RepresentationID$/init.mp4"/>'
            f"{reps}</AdaptationSet></Period>{self._utc_timing()}</MPD>"
        ).encode()

    def _utc_timing(self) -> str:
        return "".join(
            f"<UTCTiming schemeIdUri={quoteattr(scheme)} value={quoteattr(value)}/>"
            for scheme, value in self.utc_timing
        )

    def answer(self, path: str, now: float) -> tuple[int, bytes]:
        """(status, body) of a GET or HEAD of `path` at `now`."""
        if path == "/live/manifest.mpd":
            return 200, self.mpd(now)
        if path == "/live/time":
            return 200, datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds").replace(
                "+00:00", "Z"
            ).encode()
        if path in ("/live/v1/init.mp4", "/live/v2/init.mp4"):
            return 200, b"init" * 8
        match = _SEGMENT.fullmatch(path)
        if match is None:
            return 404, b"not found"
        rid, number = match.group(1), int(match.group(2))
        too_late = self.last is not None and number > self.last
        if too_late or now < self.available_at(number) + self.lag:
            return 404, b"not available"
        size = BANDWIDTHS[rid] * self.duration // 8
        return 200, f"{rid}-{number}|".encode().ljust(int(size), b".")


def _make_handler(owner: LiveOrigin) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are two writes: Nagle would hold the body ~40 ms

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            pass

        def date_time_string(self, timestamp: float | None = None) -> str:
            """The Date header, on the origin's clock (plus its `date_skew`)."""
            return formatdate(time.time() + owner.date_skew if timestamp is None else timestamp, usegmt=True)

        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            self._reply(body=True)

        def do_HEAD(self) -> None:  # noqa: N802 - stdlib name
            self._reply(body=False)

        def _reply(self, *, body: bool) -> None:
            now = owner.now()
            path = self.path.split("?")[0]
            status, data = owner.answer(path, now)
            owner.record(self.command, path, now, status)
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Content-Type", _content_type(path))
            self.end_headers()
            if body:
                self.wfile.write(data)

    return Handler


def _content_type(path: str) -> str:
    if path.endswith(".mpd"):
        return "application/dash+xml"
    return "text/plain" if path == "/live/time" else "video/mp4"
