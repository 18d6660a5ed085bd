"""The Prometheus text parser and the edge figures (hit ratio, origin offload) built on it."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdn.promtext import EdgeCounters, PromTextError, Sample, edge_counters, parse_prometheus_text

EDGE_METRICS = """\
# HELP cdn_edge_requests_total Requests by cache outcome.
# TYPE cdn_edge_requests_total counter
cdn_edge_requests_total{cache="HIT"} 70.0
cdn_edge_requests_total{cache="MISS"} 20.0
cdn_edge_requests_total{cache="COALESCED"} 6.0
cdn_edge_requests_total{cache="STALE"} 2.0
cdn_edge_requests_total{cache="REVALIDATED"} 2.0
cdn_edge_requests_created{cache="HIT"} 1.7e+09
cdn_edge_upstream_fetches_total 20.0
cdn_edge_bytes_served_total 1.0e+06
cdn_edge_bytes_fetched_total 250000
"""


def test_parse_samples_with_labels_and_comments() -> None:
    samples = parse_prometheus_text(EDGE_METRICS)
    assert samples[0] == Sample("cdn_edge_requests_total", (("cache", "HIT"),), 70.0)
    assert len(samples) == 9


@pytest.mark.parametrize(
    ("line", "sample"),
    [
        ('m{a="x",b="y"} 1', Sample("m", (("a", "x"), ("b", "y")), 1.0)),
        ('m{b="y", a="x",} 2 1700000000000', Sample("m", (("a", "x"), ("b", "y")), 2.0)),
        (r'm{path="a\"b\\c\nd"} 3', Sample("m", (("path", 'a"b\\c\nd'),), 3.0)),
        ("m +Inf", Sample("m", (), math.inf)),
        ("m_sum 0.5", Sample("m_sum", (), 0.5)),
    ],
)
def test_parse_line(line: str, sample: Sample) -> None:
    assert parse_prometheus_text(line) == [sample]


@pytest.mark.parametrize("line", ["m{a=x} 1", "m notanumber", '{a="b"} 1', 'm{a="b" 1'])
def test_bad_lines_name_the_line(line: str) -> None:
    with pytest.raises(PromTextError, match="metrics"):
        parse_prometheus_text(line)


def test_edge_figures() -> None:
    c = edge_counters(parse_prometheus_text(EDGE_METRICS))
    assert c.total_requests == 100
    assert c.hit_ratio == pytest.approx(0.8)
    assert c.origin_offload == pytest.approx(0.75)
    assert c.upstream_fetches == 20


def test_forwarded_heads_are_not_cache_lookups() -> None:
    c = EdgeCounters(requests={"HIT": 6, "MISS": 2, "PASS": 12})
    assert c.total_requests == 20
    assert c.hit_ratio == pytest.approx(0.75)
    assert EdgeCounters(requests={"PASS": 3}).hit_ratio is None


def test_empty_edge_has_no_ratios() -> None:
    c = edge_counters([])
    assert c.hit_ratio is None
    assert c.origin_offload is None


def test_deltas_over_a_run_and_restart() -> None:
    before = EdgeCounters(requests={"HIT": 10, "MISS": 10}, bytes_served=1000, bytes_fetched=1000)
    after = EdgeCounters(requests={"HIT": 40, "MISS": 20}, bytes_served=5000, bytes_fetched=2000)
    d = after.minus(before)
    assert d.requests == {"HIT": 30, "MISS": 10}
    assert d.hit_ratio == pytest.approx(0.75)
    assert d.origin_offload == pytest.approx(0.75)
    restarted = EdgeCounters(requests={"HIT": 3}, bytes_served=10, bytes_fetched=0)
    assert restarted.minus(after).requests["HIT"] == 3  # a reset counter counts from zero


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_fuzz_only_our_error(text: str) -> None:
    try:
        parse_prometheus_text(text)
    except PromTextError:
        pass
