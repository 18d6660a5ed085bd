"""End to end: `cdn demo`, the README's main command, with a short sample (slow)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cdn.launcher import read_state
from cdn.plan import plan_services
from cdn.topology import load_topology
from cdn.up import port_conflicts

pytestmark = [pytest.mark.slow, pytest.mark.network]

ROOT = Path(__file__).resolve().parents[2]


def test_demo_plays_from_two_regions_through_their_edges(tmp_path: Path) -> None:
    topology = load_topology(ROOT / "topology.yaml")
    busy = port_conflicts(plan_services(topology, tmp_path), topology)
    if busy:
        pytest.skip(f"topology.yaml's addresses are in use ({', '.join(busy)}): another CDN is running")
    out = subprocess.run(
        [sys.executable, "-m", "cdn.cli", "demo", "--state-dir", str(tmp_path), "--sample-seconds", "8",
         "--segment-seconds", "2", "--speed", "8"],
        capture_output=True, text=True, timeout=170, check=False, cwd=ROOT, env={**os.environ, "COLUMNS": "160"},
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    served = next(line for line in out.stdout.splitlines() if "served by" in line)
    assert "eu-west" in served
    assert "us-east-1" in served
    assert (tmp_path / "demo" / "player-eu-west.json").is_file()
    assert read_state(tmp_path) is None  # everything was stopped
