"""Admin purge, /admin/stats, /healthz and /metrics over real sockets."""

from __future__ import annotations

import httpx
import pytest

from edge.admin import Purge, authorized, parse_purge
from edge.errors import RequestError
from tests.edge.conftest import EdgeFactory, EdgeThread, wait_stored
from tests.edge.upstream_server import Origin, Resource

AUTH = {"Authorization": "Bearer s3cret"}
PATHS = ["/videos/a/1.m4s", "/videos/a/2.m4s", "/videos/b/1.m4s"]


def _fill(origin: Origin, edge: EdgeThread, client: httpx.Client) -> None:
    for p in PATHS:
        origin.resources[p] = Resource(body=p.encode())
        client.get(p)
        wait_stored(edge, p)


@pytest.mark.parametrize(
    ("doc", "left"),
    [
        ({"path": "/videos/a/1.m4s"}, PATHS[1:]),
        ({"prefix": "/videos/a/"}, PATHS[2:]),
        ({"all": True}, []),
    ],
)
@pytest.mark.network
def test_purge(origin: Origin, edge: EdgeThread, doc: dict[str, object], left: list[str]) -> None:
    with httpx.Client(base_url=edge.url) as client:
        _fill(origin, edge, client)
        resp = client.post("/admin/purge", json=doc, headers=AUTH)
        assert resp.status_code == 200
        assert resp.json()["purged"] == 3 - len(left)
        for p in PATHS:
            assert client.get(p).headers["x-cache"] == ("HIT" if p in left else "MISS")


@pytest.mark.network
def test_admin_needs_the_token(origin: Origin, edge: EdgeThread, caplog: pytest.LogCaptureFixture) -> None:
    with httpx.Client(base_url=edge.url) as client:
        _fill(origin, edge, client)
        assert client.post("/admin/purge", json={"all": True}).status_code == 401
        bad = {"Authorization": "Bearer wrong"}
        assert client.post("/admin/purge", json={"all": True}, headers=bad).status_code == 401
        assert client.get("/admin/stats").status_code == 401
        assert client.get(PATHS[0]).headers["x-cache"] == "HIT"
        stats = client.get("/admin/stats", headers=AUTH).json()
        assert stats["entries"] == 3
        assert stats["requests"]["HIT"] >= 1
        assert client.post("/admin/purge", content=b"{nope", headers=AUTH).status_code == 400
    assert "s3cret" not in caplog.text


@pytest.mark.network
def test_admin_disabled_without_a_token(make_edge: EdgeFactory) -> None:
    edge = make_edge(admin_token=None)
    with httpx.Client(base_url=edge.url) as client:
        assert client.post("/admin/purge", json={"all": True}, headers=AUTH).status_code == 403


@pytest.mark.network
def test_healthz_and_metrics(origin: Origin, edge: EdgeThread) -> None:
    with httpx.Client(base_url=edge.url) as client:
        _fill(origin, edge, client)
        client.get(PATHS[0])
        health = client.get("/healthz")
        metrics = client.get("/metrics").text
    assert health.status_code == 200
    doc = health.json()
    assert set(doc) == {
        "status",
        "name",
        "region",
        "inflight",
        "bytes_per_second",
        "cache_bytes",
        "cache_capacity_bytes",
        "cache_fill",
    }
    assert doc["status"] == "ok"
    assert doc["name"] == "edge0"
    assert doc["region"] == "test"
    assert doc["inflight"] == 0
    assert doc["cache_bytes"] > 0
    assert 0 < doc["cache_fill"] < 1
    for line in (
        'cdn_edge_requests_total{cache="HIT"} 1',
        'cdn_edge_requests_total{cache="MISS"} 3',
        'cdn_edge_requests_total{cache="COALESCED"} 0',
        "cdn_edge_upstream_fetches_total 3",
        "cdn_edge_cache_entries 3",
        "cdn_edge_cache_evictions_total 0",
        "cdn_edge_coalesced_waiters_total 0",
        'cdn_edge_request_duration_seconds_bucket{le="+Inf"} 4',
    ):
        assert line in metrics
    served = sum(len(p) for p in PATHS) + len(PATHS[0])
    assert f"cdn_edge_bytes_served_total {served}" in metrics
    assert f"cdn_edge_bytes_fetched_total {sum(len(p) for p in PATHS)}" in metrics


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        ("Bearer s3cret", True),
        ("bearer s3cret", True),
        ("Bearer s3cre", False),
        ("Basic s3cret", False),
        (None, False),
    ],
)
def test_authorized(header: str | None, ok: bool) -> None:
    assert authorized(header, "s3cret") is ok
    assert authorized(header, None) is False


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"all": true}', Purge()),
        (b'{"path": "/videos/x/1.m4s"}', Purge(key="/videos/x/1.m4s")),
        (b'{"prefix": "/videos/x/"}', Purge(prefix="/videos/x/")),
    ],
)
def test_parse_purge(body: bytes, expected: Purge) -> None:
    assert parse_purge(body) == expected


@pytest.mark.parametrize(
    "body", [b"", b"[]", b'{"all": false}', b'{"path": "/etc/passwd"}', b'{"path": 1}', b'{"a":1,"b":2}']
)
def test_parse_purge_rejects(body: bytes) -> None:
    with pytest.raises(RequestError):
        parse_purge(body)
