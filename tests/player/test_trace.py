"""Trace loading (text and Sabre JSON) and the download-time integral."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from player.errors import TraceError
from player.trace import load_trace, parse_json_trace, parse_text_trace

TWO_STEP = parse_text_trace("0 1\n1 2\n", name="two-step")  # 1 Mbit/s for 1 s, 2 Mbit/s for 1 s, looping


@pytest.mark.parametrize(
    ("start", "size", "seconds"),
    [
        (0.0, 125_000, 1.0),
        (0.0, 250_000, 1.5),
        (1.5, 500_000, 2.5),
        (0.0, 375_000, 2.0),
        (2.0, 125_000, 1.0),
        (0.5, 0, 0.0),
    ],
)
def test_download_time_integral(start: float, size: int, seconds: float) -> None:
    assert TWO_STEP.download_time(start, size) == pytest.approx(seconds)


def test_latency_is_added() -> None:
    assert TWO_STEP.download_time(0.0, 125_000, latency=0.5) == pytest.approx(0.5 + 0.75)


def test_zero_bandwidth_gaps_are_waited_out() -> None:
    trace = parse_text_trace("0 1\n1 0\n2 1\n", name="gap")
    assert trace.download_time(0.5, 125_000) == pytest.approx(2.5 - 0.5 + 0.0)  # 0.5 s, 1 s of nothing, 0.5 s


def test_sabre_json() -> None:
    text = json.dumps([{"duration_ms": 1000, "bandwidth_kbps": 1000, "latency_ms": 100},
                       {"duration_ms": 1000, "bandwidth_kbps": 2000, "latency_ms": 50}])  # fmt: skip
    trace = parse_json_trace(text, name="s")
    assert trace.period == 2.0
    assert trace.latency_at(1.5) == 0.05
    assert trace.download_time(0.0, 125_000) == pytest.approx(0.1 + 1.0 - 0.1 + 0.05)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "no samples"),
        ("0 1\nabc\n", ":2: expected"),
        ("1 1\n0 1\n", "goes back"),
        ("0 0\n1 0\n", "never sends"),
    ],
)
def test_bad_text_traces(text: str, match: str) -> None:
    with pytest.raises(TraceError, match=match):
        parse_text_trace(text, name="t")


def test_bad_json_trace() -> None:
    with pytest.raises(TraceError, match="Sabre"):
        parse_json_trace('[{"x": 1}]', name="t")


def test_shared_traces_load(shared_dir: Path) -> None:
    for folder in ("norway-3g", "fcc"):
        files = sorted((shared_dir / "traces" / folder).iterdir())
        trace = load_trace(files[0])
        assert trace.period > 10
        assert trace.mean_bandwidth > 0


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="cannot read"):
        load_trace(tmp_path / "nope")
