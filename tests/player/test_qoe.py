"""QoE_lin arithmetic and the summary."""

from __future__ import annotations

import pytest
from rich.console import Console

from player.qoe import ChunkOutcome, chunk_qoe, render_table, summarize


@pytest.mark.parametrize(
    ("bitrate", "stall", "previous", "expected"),
    [
        (3e6, 0.0, None, 3.0),
        (3e6, 0.0, 1e6, 1.0),
        (1e6, 2.0, 3e6, 1 - 8.6 - 2),
        (0.3e6, 0.5, 0.3e6, 0.3 - 2.15),
    ],
)
def test_chunk_qoe(bitrate: float, stall: float, previous: float | None, expected: float) -> None:
    assert chunk_qoe(bitrate, stall, previous) == pytest.approx(expected)


def test_summary() -> None:
    outcomes = [
        ChunkOutcome(0, 0, 1e6),
        ChunkOutcome(1, 2, 3e6, 1.0),
        ChunkOutcome(2, 2, 3e6),
        ChunkOutcome(3, 1, 2e6),
    ]
    s = summarize(outcomes, startup_delay=0.5, algorithm="x")
    assert s.chunks == 4
    assert s.switches == 2
    assert s.stall_count == 1
    assert s.stall_time == 1.0
    assert s.average_bitrate == pytest.approx(2.25e6)
    assert s.qoe_total == pytest.approx(1 + (3 - 4.3 - 2) + 3 + (2 - 1))
    assert s.qoe_per_chunk == pytest.approx(s.qoe_total / 4)
    assert s.to_dict()["startup_delay"] == 0.5
    console = Console(record=True, width=80)
    console.print(render_table(s))
    text = console.export_text()
    assert "QoE_lin per chunk" in text
    assert "2.250 Mbit/s" in text


def test_empty_summary() -> None:
    s = summarize([])
    assert s.chunks == 0
    assert s.qoe_per_chunk == 0.0
