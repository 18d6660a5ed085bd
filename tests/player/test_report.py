"""player.report and player.live: the JSON document, the PNG plot, the live view rows."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path

import pytest

from player.live import LiveView, chunk_row
from player.report import ChunkRecord, report_document, write_plot, write_report


def record(i: int, *, bitrate: int = 400_000, stall: float = 0.0, retries: int = 0) -> ChunkRecord:
    return ChunkRecord(
        index=i,
        number=i + 1,
        representation=f"r{bitrate}",
        bitrate=bitrate,
        duration=2.0,
        bytes=50_000 + i,
        download_seconds=0.25,
        throughput_bps=1.6e6,
        buffer_seconds=2.0 * i,
        stall_seconds=stall,
        time=2.0 * i,
        edge="127.0.0.2:8080",
        retries=retries,
        failovers=0,
        url=f"http://video.cdn.test/videos/demo/{i}.m4s",
        sha256="ab" * 32,
        cache="HIT",
    )


def test_report_document_has_summary_and_one_record_per_chunk(tmp_path: Path) -> None:
    records = [record(0), record(1, bitrate=200_000, retries=2)]
    doc = report_document(
        url="http://x/m.mpd", abr="bola", speed=4.0, summary={"qoe_lin": 1.5}, records=records
    )
    path = write_report(tmp_path / "out" / "report.json", doc)
    back = json.loads(path.read_text())
    assert back["summary"] == {"qoe_lin": 1.5}
    assert back["abr"] == "bola"
    assert back["speed"] == 4.0
    assert [c["index"] for c in back["chunks"]] == [0, 1]
    second = back["chunks"][1]
    for key in (
        "representation",
        "bitrate",
        "bytes",
        "download_seconds",
        "throughput_bps",
        "buffer_seconds",
        "edge",
        "retries",
        "abandoned",
        "wasted_bytes",
    ):
        assert key in second
    assert (second["abandoned"], second["wasted_bytes"]) == (0, 0)
    assert (second["bitrate"], second["retries"], second["edge"]) == (200_000, 2, "127.0.0.2:8080")


def test_report_refuses_nan(tmp_path: Path) -> None:
    doc = report_document(url="u", abr="a", speed=1, summary={"x": float("nan")}, records=[])
    with pytest.raises(ValueError, match="JSON"):
        write_report(tmp_path / "r.json", doc)


def test_plot_writes_a_png(tmp_path: Path) -> None:
    records = [record(i, bitrate=400_000 if i < 3 else 200_000, stall=0.5 if i == 4 else 0) for i in range(6)]
    path = write_plot(tmp_path / "session.png", records, title="demo")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 10_000


def test_chunk_row_shows_bitrate_throughput_buffer_edge() -> None:
    row = chunk_row(record(3, retries=1, stall=0.25), total=10)
    assert row[:5] == ("4/10", "r400000 400k", "1.60 Mbit/s", "6.0 s", "127.0.0.2:8080 HIT")
    assert row[5] == "1 retry, stall 0.25s"


def test_chunk_row_notes_abandoned_downloads() -> None:
    row = chunk_row(replace(record(1), abandoned=1, wasted_bytes=65_536), total=3)
    assert row[5] == "1 abandoned (66 kB wasted)"


def test_a_record_refuses_negative_abandonment() -> None:
    with pytest.raises(ValueError, match="abandoned"):
        replace(record(0), wasted_bytes=-1)


def test_live_view_is_silent_when_not_a_terminal() -> None:
    out = io.StringIO()
    with LiveView(total=2, title="t", file=out) as view:
        view.update(record(0))
        view.note("failover")
    assert out.getvalue() == ""
    assert len(view.rows) == 1
