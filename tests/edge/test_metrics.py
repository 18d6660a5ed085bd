"""Metrics text and the bytes/s meter."""

from __future__ import annotations

from edge.metrics import Metrics, RateMeter, UpstreamCounters
from edge.store import StoreStats

STORE = StoreStats(
    entries=2,
    bytes=300,
    capacity=1000,
    memory_entries=1,
    memory_bytes=100,
    memory_capacity=500,
    evictions=4,
    memory_evictions=5,
    corrupt=0,
)
UP = UpstreamCounters(
    fetches=3, bytes_fetched=250, not_modified=1, failures=0, aborted=0, fallbacks=0, coalesced_probes=7
)


def test_render_counts_and_histogram() -> None:
    m = Metrics()
    m.served("HIT", 100, 0.0002)
    m.served("HIT", 100, 0.003)
    m.served("MISS", 50, 2.0)
    m.error(404)
    text = m.render(STORE, UP)
    for line in (
        'cdn_edge_requests_total{cache="HIT"} 2',
        'cdn_edge_requests_total{cache="MISS"} 1',
        'cdn_edge_requests_total{cache="STALE"} 0',
        'cdn_edge_errors_total{status="404"} 1',
        "cdn_edge_bytes_served_total 250",
        "cdn_edge_bytes_fetched_total 250",
        "cdn_edge_upstream_fetches_total 3",
        "cdn_edge_cache_bytes 300",
        "cdn_edge_cache_entries 2",
        "cdn_edge_cache_evictions_total 4",
        'cdn_edge_request_duration_seconds_bucket{le="0.0005"} 1',
        'cdn_edge_request_duration_seconds_bucket{le="0.005"} 2',
        'cdn_edge_request_duration_seconds_bucket{le="+Inf"} 3',
        "cdn_edge_request_duration_seconds_count 3",
        "# TYPE cdn_edge_request_duration_seconds histogram",
    ):
        assert line in text.splitlines(), line


def test_pass_is_counted_apart_and_left_out_of_the_hit_ratio() -> None:
    m = Metrics()
    assert m.hit_ratio() is None
    for _ in range(5):
        m.served("PASS", 0, 0.001)  # HEADs relayed upstream: neither hits nor misses
    assert m.hit_ratio() is None
    m.served("HIT", 100, 0.001)
    m.served("COALESCED", 100, 0.001)
    m.served("STALE", 100, 0.001)
    m.served("MISS", 100, 0.001)
    assert m.hit_ratio() == 0.75
    text = m.render(STORE, UP).splitlines()
    assert 'cdn_edge_requests_total{cache="PASS"} 5' in text
    assert 'cdn_edge_requests_total{cache="MISS"} 1' in text
    assert "cdn_edge_coalesced_probes_total 7" in text


def test_rate_meter() -> None:
    meter = RateMeter(window=2)
    assert meter.rate() == 0.0
    meter.sample(0.0, 0)
    meter.sample(1.0, 1000)
    meter.sample(2.0, 3000)
    assert meter.rate() == 1500.0
    meter.sample(3.0, 3000)  # the window slides: (3000 - 1000) / 2 s
    assert meter.rate() == 1000.0
