"""A real `cdn up` for the end-to-end modules: start it, wait until it is up, play through it, stop it.

`running_cdn_up(topology_path, state)` starts `cdn up` as a subprocess (a 16 s sample in 2 s chunks),
yields a `CDN` once it prints that it is up, and on leaving stops it with `stop_signal` (SIGKILL after
30 s), then checks it exited cleanly, removed its state file and left no process group behind. The
player helpers run `player/cli.py` as a real subprocess and read its JSON report.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
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
from cdn.launcher import Supervisor, read_state
from cdn.plan import plan_services
from cdn.topology import Topology, load_topology
from cdn.up import port_conflicts

ROOT = Path(__file__).resolve().parents[2]
UP_MARK = b"Ctrl-C stops everything"


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
        return next(int(s["pid"]) for s in doc["services"] if s["name"] == name)


def skip_when_busy(topology: Topology, state: Path, what: str) -> None:
    """Skip the calling module when another process holds an address of the topology's plan."""
    busy = port_conflicts(plan_services(topology, state), topology)
    if busy:
        pytest.skip(f"{what}'s addresses are in use ({', '.join(busy)}): another CDN is running")


def wait_up(proc: subprocess.Popen[bytes], out: Path, timeout: float) -> None:
    """Block until `cdn up` prints that it is up; fail with the end of its output when it exits or times out."""
    deadline = time.monotonic() + timeout
    while UP_MARK not in out.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"cdn up did not come up (exit {proc.returncode}):\n{out.read_text()[-3000:]}")
        time.sleep(0.2)


@contextlib.contextmanager
def running_cdn_up(
    topology_path: Path, state: Path, *, stop_signal: int = signal.SIGTERM, timeout: float = 120
) -> Iterator[CDN]:
    """`cdn up --topology TOPOLOGY_PATH --state-dir STATE` with a 16 s sample in 2 s chunks, up; stopped after."""
    out = state / "cdn-up.out"
    with open(out, "wb") as log:
        proc = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "cdn.cli", "up", "--topology", str(topology_path), "--state-dir", str(state),
             "--sample-seconds", "16", "--segment-seconds", "2"],
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
        )  # fmt: skip
    cdn = CDN(proc, state, load_topology(topology_path), Supervisor(state / "extra"))
    try:
        wait_up(proc, out, timeout)
        yield cdn
    finally:
        doc = read_state(state) or {"services": []}
        cdn.extra.close()
        proc.send_signal(stop_signal)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        pids = [int(s["pid"]) for s in doc["services"]]
        left = [p for p in pids if group_alive(p)]
        for pgid in left:  # never leave them running, even when the checks below fail
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
    assert proc.returncode == 0, out.read_text()[-2000:]
    assert read_state(state) is None  # cdn up removes its state file when it stops cleanly
    assert not left, f"cdn up left process groups behind: {left}"


def group_alive(pgid: int) -> bool:
    """True while any process of the group `pgid` exists."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def edge_at(topology: Topology, address: str) -> str:
    """The name of the edge listening on `address`."""
    return next(e.name for e in topology.edges if e.address == address)


def served_by(topology: Topology, doc: dict[str, Any]) -> set[str]:
    """The names of the edges that served the chunks of a player report."""
    return {edge_at(topology, c["edge"].rsplit(":", 1)[0]) for c in doc["chunks"]}


def play(
    cdn: CDN, source: str, report: Path, *, speed: float = 16, extra: tuple[str, ...] = ()
) -> subprocess.Popen[bytes]:
    """Start `player/cli.py` on the sample's manifest URL, resolving through the router from `source`."""
    argv = [sys.executable, str(ROOT / "player" / "cli.py"), manifest_url(cdn.topology, "sample"),
            "--dns", str(cdn.topology.dns.listen), "--source-ip", source, "--speed", str(speed),
            "--report", str(report), "--quiet", *extra]  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT)  # noqa: S603


def finish(proc: subprocess.Popen[bytes], report: Path, timeout: float = 90) -> dict[str, Any]:
    """Wait for a player to exit 0 and return its JSON report."""
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
