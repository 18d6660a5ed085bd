"""`cdn-dns` as a user runs it: check a topology, serve and answer dig, stop on SIGTERM; exports."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import dns.exception
import dns.message
import dns.query
import pytest

import dnsrouter
from dnsrouter.cli import main
from tests.conftest import free_port
from tests.dnsrouter.conftest import DEMO


def test_exports_are_complete() -> None:
    public = {
        n
        for n, v in vars(dnsrouter).items()
        if not n.startswith("_") and not isinstance(v, ModuleType) and n != "annotations"
    }
    assert public == set(dnsrouter.__all__)


def test_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--topology", str(DEMO)]) == 0
    out = capsys.readouterr().out
    assert "OK" in out
    assert "eu-west-1@127.0.1.2:8080" in out


def test_bad_topology_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "t.yaml"
    bad.write_text(
        DEMO.read_text().replace(
            "region: eu-west\n    address: 127.0.1.2", "region: eu-wset\n    address: 127.0.1.2"
        )
    )
    assert main(["serve", "--topology", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "edges[1].region: 'eu-wset' is not a region (known: eu-west, us-east, ap-south)" in err
    assert main(["check", "--topology", str(bad)]) == 2


@pytest.mark.network
def test_serve_answers_and_stops_on_sigterm() -> None:
    port, http = free_port(kind=2), free_port()
    cmd = [sys.executable, "-m", "dnsrouter.cli", "serve", "--topology", str(DEMO),
           "--listen", f"127.0.0.1:{port}", "--http", f"127.0.0.1:{http}", "--log-level", "WARNING"]  # fmt: skip
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                query = dns.message.make_query("video.cdn.test", "A")
                reply = dns.query.udp(query, "127.0.0.1", port=port, timeout=0.5, source="127.10.2.2")
                break
            except dns.exception.Timeout:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline
        assert [rd.address for rd in reply.answer[0]] == ["127.0.2.1"]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err


@pytest.mark.network
def test_port_in_use_exits_1() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        cmd = [sys.executable, "-m", "dnsrouter.cli", "serve", "--topology", str(DEMO), "--listen", f"127.0.0.1:{port}",
               "--no-http"]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
