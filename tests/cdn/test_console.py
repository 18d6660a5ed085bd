"""cdn.console: piped output is not cut to 80 columns (log paths and URLs stay whole)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cdn.console import PIPED_WIDTH, make_console

ROOT = Path(__file__).resolve().parents[2]


def test_a_piped_console_is_wide_and_columns_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    assert make_console(file=io.StringIO()).width == PIPED_WIDTH
    monkeypatch.setenv("COLUMNS", "100")
    assert make_console(file=io.StringIO()).width == 100


def test_cdn_status_piped_prints_whole_urls(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    cdn = Path(sys.executable).parent / "cdn"
    out = subprocess.run(
        [str(cdn), "status", "--state-dir", str(tmp_path), "--topology", str(ROOT / "topology.yaml")],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip
    assert "…" not in out.stdout, out.stdout
    for url in ("http://127.0.0.1:8000", "http://127.0.1.1:8080", "http://127.0.3.1:8080"):
        assert url in out.stdout
    assert "eu-west-shield" in out.stdout
