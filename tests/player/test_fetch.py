"""player.fetch: real HTTP servers on loopback addresses with injected faults, real DNS responder."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cdn.hostport import HostPort
from player.edgepool import STALE_RETRY_SECONDS, EdgePool
from player.fetch import (
    Abandoned,
    Fetcher,
    FetchError,
    recent_rate,
    request_timeout,
)
from player.resolve import Resolution, ResolveError, Resolver
from tests.player.netfixtures import DnsResponder, FaultyHTTPServer
from tests.player.throttle import ThrottleProxy

BODY = bytes(range(256)) * 400  # 100 KiB


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "chunk-1.m4s").write_bytes(BODY)
    (tmp_path / "demo" / "chunk-2.m4s").write_bytes(BODY[::-1])
    return tmp_path


@pytest.fixture
def edges(root: Path) -> Iterator[tuple[FaultyHTTPServer, FaultyHTTPServer]]:
    a = FaultyHTTPServer(root, host="127.0.0.2")
    try:
        b = FaultyHTTPServer(root, host="127.0.0.3", port=a.port)
    except OSError:
        a.close()
        pytest.skip("port taken on 127.0.0.3")
    yield a, b
    a.close()
    b.close()


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def make_fetcher(
    responder: DnsResponder,
    *,
    source_ip: str | None = None,
    sleeps: Sleeps | None = None,
    retries: int = 3,
    failovers: int = 2,
    timeout: float = 2,
) -> Fetcher:
    resolver = Resolver(server=HostPort("127.0.0.1", responder.port), source_ip=source_ip, timeout=2)
    return Fetcher(
        EdgePool(resolver),
        source_ip=source_ip,
        timeout=timeout,
        retries_per_edge=retries,
        max_failovers=failovers,
        backoff=lambda n: 0.05 * n,
        sleep=Sleeps() if sleeps is None else sleeps,
    )


def url(server: FaultyHTTPServer, name: str = "chunk-1.m4s") -> str:
    return f"http://video.cdn.test:{server.port}/videos/demo/{name}"


def test_connects_to_resolved_ip_with_original_host(edges: tuple[FaultyHTTPServer, FaultyHTTPServer]) -> None:
    a, _b = edges
    with DnsResponder({"video.cdn.test": [("A", "127.0.0.2")]}) as dns, make_fetcher(dns) as f:
        got = f.get(url(a))
    assert got.data == BODY
    assert got.edge == f"127.0.0.2:{a.port}"
    assert (got.retries, got.failovers, got.status) == (0, 0, 200)
    assert got.throughput_bps > 0
    assert got.download_seconds > 0
    assert a.requests == [("/videos/demo/chunk-1.m4s", f"video.cdn.test:{a.port}", "127.0.0.1")]


def test_source_ip_binds_dns_and_http(edges: tuple[FaultyHTTPServer, FaultyHTTPServer]) -> None:
    a, _b = edges
    with (
        DnsResponder({"video.cdn.test": [("A", "127.0.0.2")]}) as dns,
        make_fetcher(dns, source_ip="127.10.1.5") as f,
    ):
        f.get(url(a))
    assert {q.peer for q in dns.queries} == {"127.10.1.5"}
    assert [peer for _p, _h, peer in a.requests] == ["127.10.1.5"]


def test_5xx_is_retried_with_backoff(edges: tuple[FaultyHTTPServer, FaultyHTTPServer]) -> None:
    a, _b = edges
    a.faults.status_5xx["chunk-1.m4s"] = 2
    sleeps = Sleeps()
    with DnsResponder({"video.cdn.test": [("A", "127.0.0.2")]}) as dns, make_fetcher(dns, sleeps=sleeps) as f:
        got = f.get(url(a))
    assert got.data == BODY
    assert (got.retries, got.failovers) == (2, 0)
    assert sleeps == [0.05, 0.1]
    assert all("HTTP 503" in e for e in got.errors)


def test_short_body_is_refetched_never_returned(edges: tuple[FaultyHTTPServer, FaultyHTTPServer]) -> None:
    a, _b = edges
    a.faults.short["chunk-2.m4s"] = 1
    with DnsResponder({"video.cdn.test": [("A", "127.0.0.2")]}) as dns, make_fetcher(dns) as f:
        got = f.get(url(a, "chunk-2.m4s"))
    assert got.data == BODY[::-1]
    assert got.retries == 1
    assert len(a.requests) == 2


def test_a_cut_body_without_content_length_is_refetched_when_the_size_is_known(
    edges: tuple[FaultyHTTPServer, FaultyHTTPServer],
) -> None:
    a, _b = edges
    with DnsResponder({"video.cdn.test": [("A", "127.0.0.2")]}) as dns, make_fetcher(dns) as f:
        a.faults.chunked_short["chunk-1.m4s"] = 1
        assert len(f.get(url(a)).data) == len(BODY) // 2  # nothing in the answer tells it is short...
        a.faults.chunked_short["chunk-1.m4s"] = 1
        got = f.get(url(a), expected_size=f.size(url(a)))  # ...but the HEAD size does
    assert got.data == BODY
    assert got.retries == 1
    assert "51200 bytes, 102400 expected" in got.errors[0]


def test_a_range_answer_for_other_bytes_is_never_used(
    edges: tuple[FaultyHTTPServer, FaultyHTTPServer],
) -> None:
    a, _b = edges
    a.faults.range_shift = 1000  # right length, wrong bytes: only Content-Range tells
    with DnsResponder({"video.cdn.test": [("A", "127.0.0.2")]}) as dns, make_fetcher(dns, retries=2) as f:
        with pytest.raises(FetchError, match="got Content-Range 'bytes 1100-5195/102400'"):
            f.get(url(a), byte_range=(100, 4195))
        assert len(a.requests) == 2 * 3  # retried on every failover, never returned
        a.faults.range_shift = 0
        assert f.get(url(a), byte_range=(100, 4195)).data == BODY[100:4196]


def test_dead_edge_fails_over_after_reresolving(edges: tuple[FaultyHTTPServer, FaultyHTTPServer]) -> None:
    a, b = edges
    records = {"video.cdn.test": [("A", "127.0.0.2")]}
    with DnsResponder(records) as dns, make_fetcher(dns, retries=2) as f:
        assert f.get(url(a)).edge.startswith("127.0.0.2:")
        a.close()
        records["video.cdn.test"] = [("A", "127.0.0.2"), ("A", "127.0.0.3")]  # the router now offers b too
        got = f.get(url(a, "chunk-2.m4s"))
        assert got.data == BODY[::-1]
        assert got.edge == f"127.0.0.3:{b.port}"
        assert (got.retries, got.failovers) == (2, 1)
        assert len([q for q in dns.queries if q.rdtype == "A"]) == 2
        # the failed edge stays excluded for the next chunk
        assert f.get(url(a)).edge.startswith("127.0.0.3:")


def test_a_head_probe_that_finds_the_edge_dead_moves_to_another(
    edges: tuple[FaultyHTTPServer, FaultyHTTPServer],
) -> None:
    a, b = edges
    records = {"video.cdn.test": [("A", "127.0.0.2")]}
    with DnsResponder(records) as dns, make_fetcher(dns) as f:
        assert f.size(url(a)) == len(BODY)
        a.close()
        records["video.cdn.test"] = [("A", "127.0.0.3")]
        assert f.size(url(a)) is None  # no retries for a size probe...
        assert f.size(url(a)) == len(BODY)  # ...but the dead edge is left (re-resolved), not probed again
        assert b.heads == ["/videos/demo/chunk-1.m4s"]


def test_every_edge_dead_is_a_fetch_error(edges: tuple[FaultyHTTPServer, FaultyHTTPServer]) -> None:
    a, b = edges
    a.close()
    b.close()
    with (
        DnsResponder({"video.cdn.test": [("A", "127.0.0.2"), ("A", "127.0.0.3")]}) as dns,
        make_fetcher(dns, retries=1, failovers=2) as f,
        pytest.raises(FetchError, match="every edge"),
    ):
        f.get(url(a))


def test_404_is_not_retried(edges: tuple[FaultyHTTPServer, FaultyHTTPServer]) -> None:
    a, _b = edges
    with (
        DnsResponder({"video.cdn.test": [("A", "127.0.0.2")]}) as dns,
        make_fetcher(dns) as f,
        pytest.raises(FetchError) as info,
    ):
        f.get(url(a, "missing.m4s"))
    assert info.value.status == 404
    assert len(a.requests) == 1


def test_pool_reresolves_when_ttl_expires() -> None:
    now = [0.0]
    with DnsResponder({"video.cdn.test": [("A", "127.0.0.2")]}, ttl=10) as dns:
        pool = EdgePool(Resolver(server=HostPort("127.0.0.1", dns.port), timeout=2), clock=lambda: now[0])
        assert pool.pick("video.cdn.test") == "127.0.0.2"
        now[0] = 5.0
        pool.pick("video.cdn.test")
        assert len(dns.queries) == 2  # A + AAAA once
        dns.records["video.cdn.test"] = [("A", "127.0.0.4")]
        now[0] = 10.5
        assert pool.pick("video.cdn.test") == "127.0.0.4"


class CountingResolver(Resolver):
    """The real resolver, counting its resolutions."""

    calls = 0

    def resolve(self, host: str) -> Resolution:
        self.calls += 1
        return super().resolve(host)


def test_pool_keeps_the_expired_answer_while_the_dns_is_down() -> None:
    now = [0.0]
    with DnsResponder({"video.cdn.test": [("A", "127.0.0.2")]}, ttl=10) as dns:
        resolver = CountingResolver(server=HostPort("127.0.0.1", dns.port), timeout=0.3)
        pool = EdgePool(resolver, clock=lambda: now[0])
        assert pool.pick("video.cdn.test") == "127.0.0.2"
    now[0] = 11.0  # expired, and the DNS router is gone: the edge still works, keep playing from it
    assert pool.pick("video.cdn.test") == "127.0.0.2"
    now[0] = 12.0
    assert pool.pick("video.cdn.test") == "127.0.0.2"
    assert resolver.calls == 2  # not asked again at once (each try costs a timeout)
    now[0] = 11.0 + STALE_RETRY_SECONDS
    pool.fail("video.cdn.test", "127.0.0.2")
    assert pool.pick("video.cdn.test") == "127.0.0.2"
    with pytest.raises(ResolveError):  # a host never resolved has nothing stale to fall back on
        pool.pick("other.cdn.test")


def test_pool_retries_failed_edges_when_nothing_else_is_offered() -> None:
    with DnsResponder({"video.cdn.test": [("A", "127.0.0.2")]}) as dns:
        pool = EdgePool(Resolver(server=HostPort("127.0.0.1", dns.port), timeout=2))
        pool.fail("video.cdn.test", "127.0.0.2")
        assert pool.pick("video.cdn.test") == "127.0.0.2"


def test_redirect_is_followed_through_the_resolver(edges: tuple[FaultyHTTPServer, FaultyHTTPServer]) -> None:
    a, b = edges
    a.faults.redirect["chunk-1.m4s"] = f"http://127.0.0.3:{b.port}/videos/demo/chunk-1.m4s"
    with DnsResponder({"video.cdn.test": [("A", "127.0.0.2")]}) as dns, make_fetcher(dns) as f:
        got = f.get(url(a))
    assert got.data == BODY
    assert got.edge == f"127.0.0.3:{b.port}"
    assert [p for p, _h, _peer in b.requests] == ["/videos/demo/chunk-1.m4s"]


def test_a_progress_callback_abandons_the_download_without_a_retry(
    edges: tuple[FaultyHTTPServer, FaultyHTTPServer],
) -> None:
    a, _b = edges
    seen: list[tuple[int, float]] = []

    def give_up(received: int, seconds: float) -> bool:
        seen.append((received, seconds))
        return received >= 1000

    sleeps = Sleeps()
    with DnsResponder({"video.cdn.test": [("A", "127.0.0.2")]}) as dns, make_fetcher(dns, sleeps=sleeps) as f:
        with pytest.raises(Abandoned) as info:
            f.get(url(a), progress=give_up)
        assert info.value.url == url(a)
        assert 1000 <= info.value.received == seen[-1][0] < len(BODY)
        assert info.value.elapsed == seen[-1][1] > 0
        assert len(a.requests) == 1  # not retried...
        assert sleeps == []
        got = f.get(url(a))  # ...and the Fetcher (and the edge) still work: the half-read connection is gone
        assert got.data == BODY
        assert (got.retries, got.failovers) == (0, 0)
        assert f.get(url(a, "chunk-2.m4s")).edge == f"127.0.0.2:{a.port}"  # the edge was not marked failed
    assert len(dns.queries) == 2  # one resolution (A + AAAA): no failover
    assert len(a.requests) == 3


def test_a_progress_callback_sees_every_read_and_may_let_it_finish(
    edges: tuple[FaultyHTTPServer, FaultyHTTPServer],
) -> None:
    a, _b = edges
    seen: list[tuple[int, float]] = []

    def watch(received: int, seconds: float) -> bool:
        seen.append((received, seconds))
        return False

    with DnsResponder({"video.cdn.test": [("A", "127.0.0.2")]}) as dns, make_fetcher(dns) as f:
        got = f.get(url(a), progress=watch)
    assert got.data == BODY
    sizes = [n for n, _t in seen]
    assert sizes == sorted(set(sizes))  # every socket read, in order
    assert sizes[-1] == len(BODY)
    assert all(a[1] <= b[1] for a, b in zip(seen, seen[1:], strict=False))
    assert seen[-1][1] <= got.download_seconds


def test_a_silent_edge_is_left_at_the_read_timeout_and_the_whole_chunk_comes_from_another(
    edges: tuple[FaultyHTTPServer, FaultyHTTPServer],
) -> None:
    a, b = edges
    a.faults.silent["chunk-1.m4s"] = 1  # headers and half the body, then nothing (the connection stays open)
    records = {"video.cdn.test": [("A", "127.0.0.2")]}
    with DnsResponder(records) as dns, make_fetcher(dns, retries=1, timeout=10) as f:
        assert f.get(url(a, "chunk-2.m4s")).edge.startswith("127.0.0.2:")
        records["video.cdn.test"] = [("A", "127.0.0.2"), ("A", "127.0.0.3")]  # offered after a fails
        started = time.monotonic()
        got = f.get(url(a), read_timeout=0.5)
        elapsed = time.monotonic() - started
    assert elapsed < f.timeout / 2  # the request's read timeout, not the client's
    assert got.data == BODY
    assert got.edge == f"127.0.0.3:{b.port}"
    assert (got.retries, got.failovers) == (1, 1)
    assert "no bytes for 0.5 s (ReadTimeout)" in got.errors[0]
    assert [len(a.requests), len(b.requests)] == [2, 1]


@pytest.mark.parametrize(
    ("timeout", "read_timeout", "expected"),
    [
        (10.0, None, httpx.Timeout(10.0)),  # the client's
        (10.0, 2.0, httpx.Timeout(10.0, read=2.0)),  # only the read timeout is shortened
        (2.0, 30.0, httpx.Timeout(2.0)),  # never longer than the client's
    ],
)
def test_request_timeout(timeout: float, read_timeout: float | None, expected: httpx.Timeout) -> None:
    assert request_timeout(timeout, read_timeout) == expected


def test_request_timeout_rejects_a_non_positive_read_timeout() -> None:
    with pytest.raises(ValueError, match="read_timeout must be > 0 s, got 0"):
        request_timeout(10.0, 0.0)


def test_recent_rate_of_a_throttled_download_matches_the_link(tmp_path: Path) -> None:
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "big.m4s").write_bytes(b"x" * 400_000)
    with FaultyHTTPServer(tmp_path) as origin, \
            ThrottleProxy(("127.0.0.1", origin.port), rate_bps=8e6) as proxy, \
            DnsResponder({"video.cdn.test": [("A", "127.0.0.1")]}) as dns, make_fetcher(dns) as f:  # fmt: skip
        got = f.get(f"http://video.cdn.test:{proxy.port}/videos/demo/big.m4s")
    assert got.download_seconds >= 0.39  # 400 kB at 8 Mbit/s: pacing is a lower bound
    assert got.recent_bps is not None
    assert 4e6 < got.recent_bps < 12e6, got.recent_bps


def test_a_slow_download_shows_its_progress_many_times_before_64_kib(tmp_path: Path) -> None:
    """On a 0.4 Mbit/s link 40 kB take 0.8 s: progress must be seen as it trickles in, not only at the end."""
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "slow.m4s").write_bytes(b"x" * 40_000)
    seen: list[tuple[int, float]] = []

    def watch(received: int, seconds: float) -> bool:
        seen.append((received, seconds))
        return False

    with FaultyHTTPServer(tmp_path) as origin, \
            ThrottleProxy(("127.0.0.1", origin.port), rate_bps=4e5) as proxy, \
            DnsResponder({"video.cdn.test": [("A", "127.0.0.1")]}) as dns, make_fetcher(dns) as f:  # fmt: skip
        got = f.get(f"http://video.cdn.test:{proxy.port}/videos/demo/slow.m4s", progress=watch)
    assert len(got.data) == 40_000
    assert len(seen) >= 4, seen
    assert seen[0][1] < 0.5 * seen[-1][1]  # the first sight came well before the end


@pytest.mark.parametrize(
    ("marks", "window", "expected"),
    [
        ([(0.0, 0), (1.0, 1000)], 0.25, 8000.0),  # even arrival: the mean rate
        ([(0.0, 0), (1.0, 1000), (1.5, 1000), (2.0, 2000)], 0.25, 16000.0),  # the last half second only
        ([(0.0, 0), (1.0, 1000), (2.0, 2000)], 1.5, 8000.0),  # interpolated inside the first interval
        ([(0.0, 0), (0.1, 500)], 0.25, 40000.0),  # shorter than the window: the whole download
        ([(0.0, 0)], 0.25, None),  # no body
        ([(1.0, 0), (1.0, 10)], 0.25, None),  # no time
    ],
)
def test_recent_rate(marks: list[tuple[float, int]], window: float, expected: float | None) -> None:
    assert recent_rate(marks, window) == (None if expected is None else pytest.approx(expected))
