"""End to end on loopback: `cdn up` with the real topology.yaml, dig, players, failover, origin outage.

One `cdn up` process (a 16 s sample in 2 s chunks, a temporary state directory) serves the whole
module; the tests run in file order and the last ones break things on purpose. The fixed addresses
and ports of topology.yaml must be free: the module skips when another CDN holds them.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cdn.launcher import probe
from cdn.plan import plan_services
from cdn.topology import load_topology
from tests.e2e.cdnup import CDN, check_chunks, edge_at, finish, play, running_cdn_up, skip_when_busy

pytestmark = [pytest.mark.slow, pytest.mark.network]

ROOT = Path(__file__).resolve().parents[2]
TOPOLOGY = ROOT / "topology.yaml"
EU, US = "127.10.1.20", "127.10.2.20"


@pytest.fixture(scope="module")
def cdn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CDN]:
    if shutil.which("dig") is None:
        pytest.fail("dig is missing: install bind9-dnsutils (./run.sh setup does it)")
    state = tmp_path_factory.mktemp("cdn-up")
    skip_when_busy(load_topology(TOPOLOGY), state, "topology.yaml")
    with running_cdn_up(TOPOLOGY, state) as running:
        yield running


def dig(source: str, name: str = "video.example.test") -> list[str]:
    """`dig +short` lines for `name` asked from `source` (CNAME targets, then addresses)."""
    out = subprocess.run(["dig", "@127.0.0.1", "-p", "5353", name, "-b", source, "+short", "+time=1", "+tries=1"],
                         capture_output=True, text=True, timeout=10, check=False)  # fmt: skip
    return out.stdout.split()


def test_dig_sends_each_region_to_its_nearest_edge(cdn: CDN) -> None:
    eu, us = dig(EU), dig(US)
    assert eu[0] == us[0] == "video.cdn.test."  # the content name is a CNAME to the CDN's routed name
    assert cdn.topology.edge(edge_at(cdn.topology, eu[-1])).region == "eu-west"
    assert edge_at(cdn.topology, us[-1]) == "us-east-1"


def test_play_whole_sample_from_two_regions(cdn: CDN, tmp_path: Path) -> None:
    eu = play(cdn, EU, tmp_path / "eu.json")
    us = play(cdn, US, tmp_path / "us.json")
    eu_doc, us_doc = finish(eu, tmp_path / "eu.json"), finish(us, tmp_path / "us.json")
    check_chunks(cdn, eu_doc)
    check_chunks(cdn, us_doc)
    assert {edge_at(cdn.topology, c["edge"].rsplit(":", 1)[0]) for c in us_doc["chunks"]} == {"us-east-1"}
    assert {cdn.topology.edge(edge_at(cdn.topology, c["edge"].rsplit(":", 1)[0])).region
            for c in eu_doc["chunks"]} == {"eu-west"}  # fmt: skip


def test_readme_flow_miss_hit_and_304(cdn: CDN) -> None:
    import httpx

    edge = cdn.topology.edge("ap-south-1")  # no player went there: its cache is cold
    url = f"{edge.url}/videos/sample/chunk-2-00003.m4s"
    origin_bytes = (cdn.state / "store" / "sample" / "chunk-2-00003.m4s").read_bytes()
    with httpx.Client(timeout=10) as client:
        first, second = client.get(url), client.get(url)
        revalidated = client.get(url, headers={"If-None-Match": second.headers["etag"]})
    assert (first.status_code, first.headers["x-cache"]) == (200, "MISS")
    assert (second.status_code, second.headers["x-cache"]) == (200, "HIT")
    assert first.content == second.content == origin_bytes
    assert revalidated.status_code == 304
    assert revalidated.content == b""


def test_status_shows_health_and_hit_ratios(cdn: CDN) -> None:
    out = subprocess.run([sys.executable, "-m", "cdn.cli", "status", "--state-dir", str(cdn.state)],
                         capture_output=True, text=True, timeout=60, check=False, cwd=ROOT,
                         env={**os.environ, "COLUMNS": "200"})  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    us_row = next(line for line in out.stdout.splitlines() if "us-east-1" in line)
    assert "up" in us_row
    assert "%" in us_row  # us-east-1 served the sample above: it has a hit ratio


def _wait_dig(source: str, predicate: Any, timeout: float) -> tuple[float, list[str]]:
    start = time.monotonic()
    answer = dig(source)
    while not predicate(answer):
        if time.monotonic() - start > timeout:
            break
        time.sleep(0.1)
        answer = dig(source)
    return time.monotonic() - start, answer


def test_edge_killed_mid_play_fails_over_and_comes_back(cdn: CDN, tmp_path: Path) -> None:
    victim_addr = dig(EU)[-1]
    victim = edge_at(cdn.topology, victim_addr)
    # A small buffer keeps the player at playback pace: 16 s of media take about 16 s.
    player = play(cdn, EU, tmp_path / "eu.json", speed=1, extra=("--max-buffer", "4"))
    time.sleep(4)
    os.killpg(cdn.pid(victim), signal.SIGKILL)
    took, answer = _wait_dig(EU, lambda a: a and a[-1] != victim_addr, 3.0)
    assert (answer or [victim_addr])[-1] != victim_addr, (
        f"the router still answers {victim} after {took:.1f} s"
    )
    assert took <= 3.0
    doc = finish(player, tmp_path / "eu.json")
    check_chunks(cdn, doc)  # finished, every chunk in order: it did not lose its place
    served = {edge_at(cdn.topology, c["edge"].rsplit(":", 1)[0]) for c in doc["chunks"]}
    assert len(served - {victim}) >= 1
    spec = next(s for s in plan_services(cdn.topology, cdn.state) if s.name == victim)
    cdn.extra.start(spec)
    cdn.extra.wait_healthy([victim], timeout=20)
    took, answer = _wait_dig(EU, lambda a: a and a[-1] == victim_addr, 10.0)
    assert answer[-1:] == [victim_addr], f"{victim} did not come back within {took:.1f} s"


def test_origin_down_cached_chunks_still_play(cdn: CDN, tmp_path: Path) -> None:
    os.killpg(cdn.pid("origin"), signal.SIGTERM)
    deadline = time.monotonic() + 10
    while (
        probe(f"http://{cdn.topology.origin.listen}/healthz")[0] is not None and time.monotonic() < deadline
    ):
        time.sleep(0.1)
    assert probe(f"http://{cdn.topology.origin.listen}/healthz")[0] is None
    time.sleep(2.5)  # let the manifest's max-age (2 s) run out: the edge must serve it stale
    doc = finish(play(cdn, US, tmp_path / "us.json"), tmp_path / "us.json")
    check_chunks(cdn, doc)  # us-east-1 cached the whole sample in the test above
