"""The HTTP side port, live: /explain, /metrics, /healthz and the HTTP redirect mode."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dns.message
import dns.query
import httpx
import pytest

from cdn.topology import parse_topology
from tests.dnsrouter.conftest import RunningRouter

pytestmark = pytest.mark.network


def client(running: RunningRouter) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{running.http_port}", trust_env=False, timeout=5)


def test_explain(running_router: RunningRouter) -> None:
    with client(running_router) as http:
        data = http.get("/explain", params={"ip": "127.10.3.4", "name": "video.example.test"}).json()
    assert data["located"] == {
        "by": "client-network", "via": "source-address", "network": "127.10.3.0/24", "scope": 24,
        "region": "ap-south", "location": {"lat": 19.08, "lon": 72.88},
    }  # fmt: skip
    assert data["chosen"] == ["ap-south-1"]
    assert data["candidates"][0]["edge"] == "ap-south-1"
    assert data["candidates"][0]["distance_km"] == 0.0
    assert {"health", "overloaded", "load", "address"} <= set(data["candidates"][0])
    assert [c["distance_km"] for c in data["candidates"]] == sorted(
        c["distance_km"] for c in data["candidates"]
    )
    assert data["dns"]["A"]["answer"][-1].endswith("IN A 127.0.3.1")


def test_explain_rejects_bad_ip(running_router: RunningRouter) -> None:
    with client(running_router) as http:
        response = http.get("/explain", params={"ip": "not-an-ip"})
    assert response.status_code == 400
    assert "not-an-ip" in response.json()["error"]


def test_metrics(running_router: RunningRouter) -> None:
    port = running_router.port
    dns.query.udp(
        dns.message.make_query("video.cdn.test", "A"), "127.0.0.1", port=port, timeout=3, source="127.10.1.3"
    )
    dns.query.udp(dns.message.make_query("nope.cdn.test", "AAAA"), "127.0.0.1", port=port, timeout=3)
    with client(running_router) as http:
        text = http.get("/metrics").text
    assert 'cdn_dns_queries_total{qtype="A",rcode="NOERROR"} 1' in text
    assert 'cdn_dns_queries_total{qtype="AAAA",rcode="NXDOMAIN"} 1' in text
    assert 'cdn_dns_decisions_total{located_by="client-network",via="source-address"} 1' in text
    assert 'cdn_dns_edge_up{edge="eu-west-1"} 1' in text
    assert "# TYPE cdn_dns_queries_total counter" in text


def test_healthz_and_404(running_router: RunningRouter) -> None:
    with client(running_router) as http:
        assert http.get("/healthz").json()["status"] == "ok"
        assert http.get("/nothing").status_code == 404
        assert http.post("/explain").status_code == 405


def test_redirect_mode(running_router: RunningRouter) -> None:
    with httpx.Client(trust_env=False, timeout=5) as http:
        base = f"http://127.0.0.1:{running_router.http_port}"
        # the client's own address decides: 127.0.0.1 is not a client network -> fallback (Frankfurt) -> Paris
        r = http.get(f"{base}/videos/demo/manifest.mpd?x=1", headers={"host": "video.cdn.test"})
        assert r.status_code == 302
        assert r.headers["location"] == "http://127.0.1.2:8080/videos/demo/manifest.mpd?x=1"
        # a content name that is a CNAME to the routed name works too
        assert http.get(f"{base}/videos/a", headers={"host": "video.example.test:80"}).status_code == 302
        assert http.get(f"{base}/videos/a", headers={"host": "ns1.cdn.test"}).status_code == 404
        # X-Forwarded-For is not trusted by default
        r = http.get(f"{base}/videos/a", headers={"host": "video.cdn.test", "x-forwarded-for": "127.10.3.3"})
        assert r.headers["location"].startswith("http://127.0.1.2:8080/")


def test_redirect_trusts_forwarded_for_from_configured_proxies(
    demo_data: dict[str, Any], router_factory: Callable[..., RunningRouter]
) -> None:
    demo_data["dns"]["trusted_proxies"] = ["127.0.0.1/32"]
    running = router_factory(parse_topology(demo_data))
    with httpx.Client(trust_env=False, timeout=5) as http:
        r = http.get(
            f"http://127.0.0.1:{running.http_port}/videos/a",
            headers={"host": "video.cdn.test", "x-forwarded-for": "127.10.2.3"},
        )
    assert r.headers["location"] == "http://127.0.2.1:8080/videos/a"


def test_redirect_mode_sends_https_for_a_tls_topology(
    demo_data: dict[str, Any], router_factory: Callable[..., RunningRouter]
) -> None:
    demo_data["tls"] = {"cert": "/pki/cert.pem", "key": "/pki/key.pem", "ca": "/pki/ca.pem"}
    running = router_factory(parse_topology(demo_data, source="demo"))
    with client(running) as http:
        r = http.get("/videos/demo/manifest.mpd?x=1", headers={"host": "video.cdn.test"})
    assert r.status_code == 302
    assert r.headers["location"] == "https://127.0.1.2:8080/videos/demo/manifest.mpd?x=1"
