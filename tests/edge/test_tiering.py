"""Tiering: an edge pulling through a parent edge (shield), and falling back to the origin."""

from __future__ import annotations

import os
import time

import httpx
import pytest

from tests.edge.conftest import EdgeFactory
from tests.edge.upstream_server import Origin, Resource

pytestmark = pytest.mark.network

PATH = "/videos/v9/video/3.m4s"


def test_child_and_parent_cause_one_origin_fetch(origin: Origin, make_edge: EdgeFactory) -> None:
    body = os.urandom(150_000)
    origin.resources[PATH] = Resource(body=body, headers=[("Cache-Control", "max-age=100")])
    shield = make_edge(name="shield")
    child = make_edge(name="child", parent=shield.url)
    other = make_edge(name="other", parent=shield.url)
    with httpx.Client(timeout=10) as client:
        responses = [client.get(url + PATH) for url in (child.url, other.url, shield.url, child.url)]
    assert all(r.content == body for r in responses)
    assert origin.count(PATH) == 1
    assert [r.headers["x-cache"] for r in responses] == ["MISS", "MISS", "HIT", "HIT"]
    assert responses[0].headers["via"] == "1.1 child"


def test_parent_age_counts_towards_freshness(origin: Origin, make_edge: EdgeFactory, clock: object) -> None:
    origin.resources[PATH] = Resource(body=b"x", headers=[("Cache-Control", "max-age=100")])
    shield = make_edge(name="shield")
    child = make_edge(name="child", parent=shield.url)
    with httpx.Client(timeout=10) as client:
        client.get(shield.url + PATH)
        clock.advance(60)  # type: ignore[attr-defined]
        assert int(client.get(child.url + PATH).headers["age"]) >= 60
        clock.advance(50)  # type: ignore[attr-defined]
        # 110 s old for the child as well: it revalidates through the shield rather than serving it
        assert client.get(child.url + PATH).headers["x-cache"] != "HIT"


def test_parent_down_falls_back_to_origin(origin: Origin, make_edge: EdgeFactory) -> None:
    origin.resources[PATH] = Resource(body=b"direct")
    shield = make_edge(name="shield")
    child = make_edge(name="child", parent=shield.url)
    shield.stop()
    with httpx.Client(timeout=10) as client:
        resp = client.get(child.url + PATH)
        metrics = client.get(child.url + "/metrics").text
    assert resp.status_code == 200
    assert resp.content == b"direct"
    assert origin.count(PATH) == 1
    assert "cdn_edge_parent_fallbacks_total 1" in metrics


def _http_date(offset: float) -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + offset))


def test_expires_lifetime_survives_the_shield(origin: Origin, make_edge: EdgeFactory, clock: object) -> None:
    # The origin's response was generated 30 s ago and expires in 30 s: a 60 s lifetime (Expires −
    # Date). The shield must pass the origin's Date on with its Age, not a Date of its own, or the
    # child would compute a 30 s lifetime and count the shield's age against it as well.
    date, expires = _http_date(-30), _http_date(30)
    headers = [("Date", date), ("Expires", expires)]
    origin.resources[PATH] = Resource(body=b"x", headers=headers, send_date=False)
    shield = make_edge(name="shield")
    child = make_edge(name="child", parent=shield.url)
    with httpx.Client(timeout=10) as client:
        first = client.get(child.url + PATH)
        assert first.headers["date"] == date
        clock.advance(45)  # type: ignore[attr-defined]
        again = client.get(child.url + PATH)
    assert again.headers["x-cache"] == "HIT"  # 45 s < 60 s for the child too
    assert again.headers["date"] == date
    assert origin.count(PATH) == 1
