"""`cdn-edge serve` as a real process: it serves, reports health, and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from edge.cli import main
from tests.conftest import free_port
from tests.edge.upstream_server import Origin, Resource


def test_help_and_bad_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert main([]) == 2
    assert main(["frobnicate"]) == 2
    assert "unknown command" in capsys.readouterr().err


def test_bad_option_fails_loudly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["serve", "--origin", "ftp://x", "--cache-dir", str(tmp_path), "--listen", "127.0.0.1:0"]
    assert main(argv) == 2
    assert "--origin" in capsys.readouterr().err


@pytest.mark.network
def test_serve_process(origin: Origin, tmp_path: Path) -> None:
    origin.resources["/videos/v/1.m4s"] = Resource(body=b"chunk")
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "edge.cli",
        "serve",
        "--origin",
        origin.url,
        "--listen",
        f"127.0.0.1:{port}",
        "--cache-dir",
        str(tmp_path / "c"),
        "--cache-size",
        "10MiB",
        "--region",
        "eu-west",
        "--name",
        "e1",
    ]
    env = {**os.environ, "CDN_ADMIN_TOKEN": "tok-from-env"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            while True:
                try:
                    health = client.get("/healthz").json()
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "edge did not start"
                    time.sleep(0.1)
            assert (health["name"], health["region"]) == ("e1", "eu-west")
            assert client.get("/videos/v/1.m4s").content == b"chunk"
            auth = {"Authorization": "Bearer tok-from-env"}
            assert client.get("/admin/stats", headers=auth).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0
    assert b"tok-from-env" not in out
