"""player.cli and player.config: argv to PlayerConfig, usage errors, the script entry point."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from pathlib import Path

import pytest

from cdn.hostport import HostPort
from player.cli import main
from player.config import DEFAULT_MAX_BUFFER, PlayerConfig

ROOT = Path(__file__).resolve().parents[2]
URL = "http://video.cdn.test:8080/videos/demo/manifest.mpd"


def test_from_args_reads_every_option(tmp_path: Path) -> None:
    cfg = PlayerConfig.from_args(
        [
            URL,
            "--dns",
            "127.0.0.1:5353",
            "--client-subnet",
            "127.10.1.7/24",
            "--output",
            str(tmp_path / "w.mp4"),
            "--report",
            "r.json",
            "--plot",
            "p.png",
            "--speed",
            "8",
            "--quiet",
            "--max-buffer",
            "12",
            "--startup",
            "3",
        ]
    )
    assert cfg.url == URL
    assert cfg.dns == HostPort("127.0.0.1", 5353)
    assert cfg.client_subnet == ipaddress.ip_network("127.10.1.0/24")
    assert cfg.source_ip is None
    assert cfg.output == tmp_path / "w.mp4"
    assert (cfg.speed, cfg.quiet, cfg.max_buffer, cfg.startup) == (8.0, True, 12.0, 3.0)


def test_defaults() -> None:
    cfg = PlayerConfig.from_args([URL])
    assert (cfg.dns, cfg.abr, cfg.speed, cfg.max_buffer, cfg.quiet) == (
        None,
        None,
        1.0,
        DEFAULT_MAX_BUFFER,
        False,
    )


@pytest.mark.parametrize(
    "argv",
    [
        [],
        [URL, "--dns", "nowhere"],
        [URL, "--client-subnet", "10.0.0.0/8", "--source-ip", "127.0.0.1"],
        [URL, "--client-subnet", "not-a-net"],
        [URL, "--source-ip", "999.1.1.1"],
        [URL, "--speed", "0"],
        [URL, "--startup", "40", "--max-buffer", "10"],
        ["ftp://x/manifest.mpd"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "usage:" in capsys.readouterr().err


def test_unknown_abr_lists_known_ones(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("player.abr")
    assert main([URL, "--abr", "nope"]) == 2
    assert "choose one of" in capsys.readouterr().err


def test_help_works_as_a_script_from_a_checkout() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "player" / "cli.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT / "player",
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "--client-subnet" in done.stdout
    assert "--output" in done.stdout


def test_simulate_help_dispatches() -> None:
    pytest.importorskip("player.simulate")
    done = subprocess.run(
        [sys.executable, str(ROOT / "player" / "cli.py"), "simulate", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "--trace" in done.stdout
