"""End to end on loopback: `cdn up` with the real topology.yaml, dig, players, failover, origin outage.

One `cdn up` process (a 16 s sample in 2 s chunks, a temporary state directory) serves the whole
module; the tests run in file order and the last ones break things on purpose. The fixed addresses
and ports of topology.yaml must be free: the module skips when another CDN holds them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cdn.compose import manifest_url
from cdn.launcher import Supervisor, probe, read_state
from cdn.plan import plan_services
from cdn.topology import Topology, load_topology
from cdn.up import port_conflicts

pytestmark = [pytest.mark.slow, pytest.mark.network]

ROOT = Path(__file__).resolve().parents[2]
TOPOLOGY = ROOT / "topology.yaml"
EU, US = "127.10.1.20", "127.10.2.20"


@dataclass
class CDN:
    """The running `cdn up` and what the tests need to poke at it."""

    proc: subprocess.Popen[bytes]
    state: Path
    topology: Topology
    extra: Supervisor  # services a test (re)starts itself

    def pid(self, name: str) -> int:
        doc = read_state(self.state)
        assert doc is not None
        return next(int(s["pid"]) for s in doc["services"] if s["name"] == name)  # type: ignore[union-attr]


def _wait_up(proc: subprocess.Popen[bytes], out: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while b"Ctrl-C stops everything" not in out.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"cdn up did not come up (exit {proc.returncode}):\n{out.read_text()[-3000:]}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def cdn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CDN]:
    if shutil.which("dig") is None:
        pytest.fail("dig is missing: install bind9-dnsutils (./run.sh setup does it)")
    topology = load_topology(TOPOLOGY)
    state = tmp_path_factory.mktemp("cdn-up")
    busy = port_conflicts(plan_services(topology, state), topology)
    if busy:
        pytest.skip(f"topology.yaml's addresses are in use ({', '.join(busy)}): another CDN is running")
    out = state / "cdn-up.out"
    with open(out, "wb") as log:
        proc = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "cdn.cli", "up", "--topology", str(TOPOLOGY), "--state-dir", str(state),
             "--sample-seconds", "16", "--segment-seconds", "2"],
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
        )  # fmt: skip
    cdn = CDN(proc, state, topology, Supervisor(state / "extra"))
    try:
        _wait_up(proc, out, 120)
        yield cdn
    finally:
        doc = read_state(state) or {"services": []}
        cdn.extra.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    pids = [int(s["pid"]) for s in doc["services"]]  # type: ignore[union-attr]
    assert proc.returncode == 0, out.read_text()[-2000:]
    assert read_state(state) is None  # cdn up removes its state file when it stops cleanly
    assert not [p for p in pids if _group_alive(p)], "cdn up left processes behind"


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def dig(source: str, name: str = "video.example.test") -> list[str]:
    """`dig +short` lines for `name` asked from `source` (CNAME targets, then addresses)."""
    out = subprocess.run(["dig", "@127.0.0.1", "-p", "5353", name, "-b", source, "+short", "+time=1", "+tries=1"],
                         capture_output=True, text=True, timeout=10, check=False)  # fmt: skip
    return out.stdout.split()


def edge_at(topology: Topology, address: str) -> str:
    return next(e.name for e in topology.edges if e.address == address)


def play(
    cdn: CDN, source: str, report: Path, *, speed: float = 16, extra: tuple[str, ...] = ()
) -> subprocess.Popen[bytes]:
    argv = [sys.executable, str(ROOT / "player" / "cli.py"), manifest_url(cdn.topology, "sample"),
            "--dns", str(cdn.topology.dns.listen), "--source-ip", source, "--speed", str(speed),
            "--report", str(report), "--quiet", *extra]  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT)  # noqa: S603


def finish(proc: subprocess.Popen[bytes], report: Path, timeout: float = 90) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out.decode(errors="replace")[-3000:]
    doc: dict[str, Any] = json.loads(report.read_text())
    return doc


def check_chunks(cdn: CDN, doc: dict[str, Any]) -> None:
    """Every chunk is byte-identical to the origin's file, and none is missing or repeated."""
    store = cdn.state / "store" / "sample"
    package = json.loads((store / "package.json").read_text())
    chunks = doc["chunks"]
    assert [c["index"] for c in chunks] == list(range(package["chunks"]))
    for c in chunks:
        name = c["url"].rsplit("/", 1)[-1]
        assert hashlib.sha256((store / name).read_bytes()).hexdigest() == c["sha256"], name


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
