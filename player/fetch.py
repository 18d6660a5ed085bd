"""Fetch manifest and chunks from the CDN edges, with retries, back-off and failover.

Each request goes to a resolved edge address (the URL's host replaced by the IP) with the original
Host header, from `--source-ip` when given. A chunk is only returned when its body is complete
(received bytes == Content-Length); connection errors, timeouts, 5xx and short bodies are retried at
the same edge with back-off, then the edge is marked failed, the host is re-resolved without it,
and the same URL is fetched from another edge. Each result records the serving edge, the retries and
the measured download time, throughput and recent rate (over the last `RECENT_SECONDS` of the body).
A `progress` callback sees the bytes as they arrive and may abandon the download (`Abandoned`); a
per-request `read_timeout` (the longest wait between two socket reads, never above the client's) lets
the caller leave a silent edge sooner: it fails the attempt like any other timeout.
For https URLs the TLS name is the URL's host, not the edge's IP: it is the SNI and the name the
certificate is checked against (always); the CAs are httpx's bundle, or with `--ca` the system CAs
plus that file (`client_tls_context`). A refused certificate is an attempt that failed, named as such.
"""

from __future__ import annotations

import random
import re
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import httpx

from cdn.tls import TlsFileError, verify_failure
from cdn.tls import client_tls_context as shared_client_tls_context
from player.abr.base import RECENT_SECONDS
from player.backoff import backoff_delay
from player.edgepool import EdgePool
from player.errors import PlayerError
from player.resolve import ResolveError

__all__ = [
    "Abandoned",
    "CaFileError",
    "ChunkFetch",
    "FetchError",
    "Fetcher",
    "ProgressCallback",
    "ResolveError",
    "client_tls_context",
    "default_backoff",
    "recent_rate",
    "request_timeout",
]

MAX_REDIRECTS = 5


class FetchError(PlayerError):
    """Raised when a URL cannot be fetched from any edge (or answers a client error)."""

    def __init__(self, message: str, *, url: str, status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status


class Abandoned(PlayerError):
    """Raised when a `progress` callback gave up a download part-way (not retried, the edge is not blamed).

    `received` is the bytes that arrived before it was dropped, `elapsed` the seconds since the request.
    """

    def __init__(self, *, url: str, received: int, elapsed: float) -> None:
        super().__init__(f"GET {url} abandoned after {received} bytes in {elapsed:.3f} s")
        self.url = url
        self.received = received
        self.elapsed = elapsed


ProgressCallback = Callable[[int, float], bool]
"""Called after each read with (bytes received in this attempt, seconds since the request); True abandons."""


class CaFileError(PlayerError, ValueError):
    """Raised when a `--ca` file is missing, unreadable or holds no PEM CA certificate."""


class _Retryable(Exception):
    """An attempt failed in a way another attempt may fix (5xx, connection error, short body).

    `tls` marks a certificate the player refused: the final message then points at --ca, not the CDN.
    """

    def __init__(self, message: str, *, tls: bool = False) -> None:
        super().__init__(message)
        self.tls = tls


@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkFetch:
    """A complete response body and how it was obtained."""

    url: str
    data: bytes
    status: int
    edge: str  # "ip:port" of the edge that served it
    started: float  # monotonic clock, seconds
    download_seconds: float  # request sent to last byte received
    retries: int  # failed attempts before this one (all edges)
    failovers: int  # re-resolutions to another edge
    errors: tuple[str, ...] = ()  # what the failed attempts saw
    cache: str | None = None  # the edge's X-Cache header, when present
    recent_bps: float | None = None  # bit/s over the last RECENT_SECONDS of the body (None: no body)
    date: str | None = None  # the response's Date header (the server's clock, for player.clocksync)
    age: str | None = None  # the response's Age header (seconds a cache has held it, RFC 9111 §5.1)

    @property
    def throughput_bps(self) -> float:
        """Measured throughput of this download in bits per second."""
        return len(self.data) * 8 / max(self.download_seconds, 1e-6)


def client_tls_context(ca_file: Path) -> ssl.SSLContext:
    """A TLS client context trusting the system CAs plus the PEM CA bundle `ca_file` (`cdn.tls`).

    Certificate and host-name verification stay on. Raise CaFileError for a bad file.
    """
    try:
        return shared_client_tls_context(ca_file, option="--ca")
    except TlsFileError as exc:
        raise CaFileError(str(exc)) from None


def default_backoff(attempt: int) -> float:
    """Seconds to wait before retry `attempt` (1, 2, ...) at the same edge: capped exponential, jittered."""
    return backoff_delay(attempt, rand=random.random())


class Fetcher:
    """GET URLs through the edges with retries and failover; close() when done."""

    def __init__(
        self,
        pool: EdgePool,
        *,
        source_ip: str | None = None,
        timeout: float = 10.0,
        retries_per_edge: int = 3,
        max_failovers: int = 4,
        backoff: Callable[[int], float] = default_backoff,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        ca: Path | None = None,
    ) -> None:
        """`ca`: a PEM CA bundle trusted for https besides the system CAs (raise CaFileError if bad)."""
        self.pool = pool
        self.timeout = timeout
        self.retries_per_edge = retries_per_edge
        self.max_failovers = max_failovers
        self.backoff = backoff
        self.sleep = sleep
        self.clock = clock
        verify: ssl.SSLContext | bool = client_tls_context(ca) if ca is not None else True
        transport = httpx.HTTPTransport(verify=verify, local_address=source_ip, retries=0)
        self._client = httpx.Client(
            transport=transport, timeout=httpx.Timeout(timeout), follow_redirects=False, trust_env=False
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections."""
        self._client.close()

    def get(
        self,
        url: str,
        *,
        byte_range: tuple[int, int] | None = None,
        expected_size: int | None = None,
        progress: ProgressCallback | None = None,
        read_timeout: float | None = None,
    ) -> ChunkFetch:
        """Fetch the whole body of `url` (optionally bytes first..last); raise FetchError or ResolveError.

        `expected_size` (e.g. from an earlier HEAD) is checked too: it catches a short body that came
        without a Content-Length (a chunked answer cut short but terminated cleanly). `progress` is
        called after each socket read with (bytes so far in this attempt, seconds since its request); when it
        returns True the connection is closed (never reused half-read) and Abandoned is raised.
        `read_timeout` is the longest wait in seconds for the next bytes in every attempt (capped at
        the client's `timeout`; None: the client's); when it fires the attempt is retried as a timeout.
        """
        timeout = request_timeout(self.timeout, read_timeout)
        return self._get(
            url, byte_range, redirects=0, expected_size=expected_size, progress=progress, timeout=timeout
        )

    def size(self, url: str) -> int | None:
        """The Content-Length of `url` from one HEAD request, or None when it cannot be had (no retries)."""
        target = httpx.URL(url)
        try:
            ip = self.pool.pick(target.host)
        except ResolveError:
            return None
        try:
            response = self._client.head(
                target.copy_with(host=ip), headers=_headers(target, None), extensions=_tls_name(target)
            )
        except httpx.TransportError:  # a dead edge: leave it now, not after one timeout per probed chunk
            self.pool.fail(target.host, ip)
            return None
        except httpx.HTTPError:
            return None
        length = response.headers.get("content-length")
        return int(length) if response.status_code == 200 and length and length.isdigit() else None

    def _get(
        self,
        url: str,
        byte_range: tuple[int, int] | None,
        *,
        redirects: int,
        timeout: httpx.Timeout,
        expected_size: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> ChunkFetch:
        target = httpx.URL(url)
        errors: list[str] = []
        refused = False  # the last failure was a certificate the player refused
        ip: str | None = None
        for failovers in range(self.max_failovers + 1):
            if ip is not None:  # every attempt at the previous edge failed: exclude it, re-resolve
                self.pool.fail(target.host, ip)
            ip = self.pool.pick(target.host)
            for attempt in range(self.retries_per_edge):
                if attempt:
                    self.sleep(self.backoff(attempt))
                try:
                    got = self._once(
                        target,
                        ip,
                        byte_range,
                        errors=errors,
                        failovers=failovers,
                        redirects=redirects,
                        progress=progress,
                        timeout=timeout,
                    )
                except _Retryable as exc:
                    errors.append(f"{_edge(target, ip)}: {exc}")
                    refused = exc.tls
                    continue
                if expected_size is None or len(got.data) == expected_size:
                    return got
                errors.append(f"{got.edge}: {len(got.data)} bytes, {expected_size} expected; refetching")
                refused = False
        hint = (
            f"does the edges' certificate name {target.host} and chain to a CA the player trusts (--ca adds one)?"
            if refused
            else "is the CDN up?"
        )
        raise FetchError(
            f"GET {url} failed {len(errors)} times on every edge tried (last: {errors[-1]}); {hint}", url=url
        )

    def _once(
        self,
        target: httpx.URL,
        ip: str,
        byte_range: tuple[int, int] | None,
        *,
        errors: list[str],
        failovers: int,
        redirects: int,
        progress: ProgressCallback | None,
        timeout: httpx.Timeout,
    ) -> ChunkFetch:
        headers = _headers(target, byte_range)
        started = self.clock()
        try:
            with self._client.stream(
                "GET",
                target.copy_with(host=ip),
                headers=headers,
                extensions=_tls_name(target),
                timeout=timeout,
            ) as response:
                status = response.status_code
                location = response.headers.get("location") if 300 <= status < 400 else None
                if location is None:
                    _check_status(target, status)
                    data, marks = self._read_body(response, str(target), started, progress)
                length = response.headers.get("content-length")
                content_range = response.headers.get("content-range")
                cache = response.headers.get("x-cache")
                date, age = response.headers.get("date"), response.headers.get("age")
        except httpx.ReadTimeout as exc:
            raise _Retryable(f"timed out: no bytes for {timeout.read:g} s (ReadTimeout)") from exc
        except httpx.TimeoutException as exc:
            raise _Retryable(f"timed out ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            refused = _refused_certificate(exc)
            if refused is not None:
                raise _Retryable(_certificate_failure(refused, target.host), tls=True) from exc
            raise _Retryable(f"{type(exc).__name__}: {exc}") from exc
        if location is not None:
            return self._redirect(
                target, str(target.join(location)), byte_range, redirects, progress, timeout
            )
        finished = self.clock()
        if length is not None and (not length.isdigit() or int(length) != len(data)):
            raise _Retryable(f"short body: {len(data)} of {length} bytes (Content-Length); refetching")
        _check_partial(status, byte_range, content_range)
        if byte_range is not None and status == 200:  # the server ignored Range: cut the part out
            data = data[byte_range[0] : byte_range[1] + 1]
        if byte_range is not None and len(data) != byte_range[1] - byte_range[0] + 1:
            raise _Retryable(f"range {byte_range[0]}-{byte_range[1]} answered with {len(data)} bytes")
        return ChunkFetch(
            url=str(target),
            data=data,
            status=status,
            edge=_edge(target, ip),
            started=started,
            download_seconds=finished - started,
            retries=len(errors),
            failovers=failovers,
            errors=tuple(errors),
            cache=cache,
            recent_bps=recent_rate(marks, RECENT_SECONDS),
            date=date,
            age=age,
        )

    def _read_body(
        self, response: httpx.Response, url: str, started: float, progress: ProgressCallback | None
    ) -> tuple[bytes, list[tuple[float, int]]]:
        """The body and its read marks (clock time, bytes so far), from (started, 0); raise Abandoned."""
        parts: list[bytes] = []
        marks = [(started, 0)]
        received = 0
        for block in response.iter_raw():  # each socket read as it comes (a 64 KiB chunker would hide
            # a slow link's progress for seconds: 64 KiB at 0.3 Mbit/s is 1.7 s)
            parts.append(block)
            received += len(block)
            now = self.clock()
            marks.append((now, received))
            if progress is not None and progress(received, now - started):
                response.close()  # a half-read connection cannot carry another request: it is dropped
                raise Abandoned(url=url, received=received, elapsed=now - started)
        return b"".join(parts), marks

    def _redirect(
        self,
        target: httpx.URL,
        location: str,
        byte_range: tuple[int, int] | None,
        redirects: int,
        progress: ProgressCallback | None,
        timeout: httpx.Timeout,
    ) -> ChunkFetch:
        if redirects >= MAX_REDIRECTS:
            raise FetchError(f"GET {target} redirected more than {MAX_REDIRECTS} times", url=str(target))
        return self._get(location, byte_range, redirects=redirects + 1, progress=progress, timeout=timeout)


def request_timeout(timeout: float, read_timeout: float | None) -> httpx.Timeout:
    """The timeouts of one request: `timeout` seconds for each phase, the read one cut to `read_timeout`.

    A per-request read timeout only ever shortens the client's; raises ValueError when it is not > 0.
    """
    if read_timeout is None:
        return httpx.Timeout(timeout)
    if read_timeout <= 0:
        raise ValueError(f"read_timeout must be > 0 s, got {read_timeout}")
    return httpx.Timeout(timeout, read=min(read_timeout, timeout))


def recent_rate(marks: Sequence[tuple[float, int]], window: float) -> float | None:
    """Bit/s over the last `window` s of a download (or all of it when shorter), None when it took no time.

    `marks` are (time, bytes received so far), ascending, the first at the request; between two
    marks the bytes are taken to have arrived evenly.
    """
    if len(marks) < 2 or marks[-1][0] <= marks[0][0]:
        return None
    end, total = marks[-1]
    start = max(end - window, marks[0][0])
    before = _bytes_at(marks, start)
    return (total - before) * 8 / (end - start)


def _bytes_at(marks: Sequence[tuple[float, int]], when: float) -> float:
    """Bytes received by `when`, interpolated between the marks around it."""
    for (t0, b0), (t1, b1) in zip(marks, marks[1:], strict=False):
        if t0 <= when <= t1:
            return b0 if t1 == t0 else b0 + (b1 - b0) * (when - t0) / (t1 - t0)
    return float(marks[-1][1])


def _tls_name(target: httpx.URL) -> dict[str, str]:
    """The request extension that makes the URL's host (not the edge IP we connect to) the TLS name.

    httpcore sends it as the SNI and checks the certificate against it (RFC 6125): the edge must
    prove it is `video.cdn.test`, not merely 127.0.0.2.
    """
    return {"sni_hostname": target.host} if target.scheme == "https" else {}


def _refused_certificate(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate verification error under an httpx error (httpx → httpcore → ssl), if any."""
    seen: BaseException | None = exc
    for _ in range(8):  # the chain is two or three long; a bound in case one loops
        if seen is None or isinstance(seen, ssl.SSLCertVerificationError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _certificate_failure(exc: ssl.SSLCertVerificationError, host: str) -> str:
    """Why the edge's certificate was refused, for `host`, with the --ca hint when the CA is unknown."""
    return f"TLS for {host}: {verify_failure(exc, ca_option='--ca')}"


def _headers(target: httpx.URL, byte_range: tuple[int, int] | None) -> dict[str, str]:
    """The original Host (we connect to an IP), no compression (lengths are checked), the range."""
    headers = {"Host": target.netloc.decode("ascii"), "Accept-Encoding": "identity"}
    if byte_range is not None:
        headers["Range"] = f"bytes={byte_range[0]}-{byte_range[1]}"
    return headers


def _check_status(target: httpx.URL, status: int) -> None:
    """Raise _Retryable for 5xx, FetchError for other non-2xx answers."""
    if status >= 500:
        raise _Retryable(f"HTTP {status}")
    if status not in (200, 206):
        raise FetchError(
            f"GET {target} answered HTTP {status}; check the URL", url=str(target), status=status
        )


def _check_partial(status: int, byte_range: tuple[int, int] | None, content_range: str | None) -> None:
    """Raise _Retryable when a 206 is not the part asked for (a partial body is never used as a whole)."""
    if status != 206:
        return
    if byte_range is None:
        raise _Retryable(f"HTTP 206 ({content_range or 'no Content-Range'}) to a request for the whole body")
    match = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(?:\d+|\*)\s*", content_range or "")
    if content_range is not None and (match is None or (int(match[1]), int(match[2])) != byte_range):
        raise _Retryable(
            f"asked for bytes {byte_range[0]}-{byte_range[1]}, got Content-Range {content_range!r}"
        )


def _edge(target: httpx.URL, ip: str) -> str:
    port = target.port or (443 if target.scheme == "https" else 80)
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
