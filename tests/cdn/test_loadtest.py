"""The load tester: pure model, the lean HTTP client and a short real run against a local server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from cdn.asgiserver import serve_in_thread
from cdn.loadclient import Connection, HTTPClientError
from cdn.loadmodel import (
    PlayerState,
    after_fetch,
    choose_rendition,
    percentile,
    pick,
    video_plan,
    wait_time,
    zipf_cdf,
)
from cdn.loadreport import results_table, write_plot
from cdn.loadtest import LoadConfig, run_load, source_address

MPD = """<?xml version="1.0"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT10S"
     minBufferTime="PT2S" profiles="urn:mpeg:dash:profile:isoff-live:2011">
  <Period id="0" start="PT0S">
    <AdaptationSet contentType="video" mimeType="video/mp4" segmentAlignment="true">
      <SegmentTemplate timescale="1000" duration="2000" startNumber="1"
          initialization="init-$RepresentationID$.m4s" media="chunk-$RepresentationID$-$Number%05d$.m4s"/>
      <Representation id="v0" bandwidth="200000" width="256" height="144" codecs="avc1.42c01e"/>
      <Representation id="v1" bandwidth="600000" width="640" height="360" codecs="avc1.42c01e"/>
    </AdaptationSet>
  </Period>
</MPD>
"""


def test_zipf_is_skewed_and_complete() -> None:
    cdf = zipf_cdf(4, 1.0)
    assert cdf[-1] == 1.0
    assert all(a < b for a, b in zip(cdf, cdf[1:], strict=False))
    assert cdf[0] == pytest.approx(1 / (1 + 1 / 2 + 1 / 3 + 1 / 4))
    assert zipf_cdf(4, 0.0)[0] == pytest.approx(0.25)
    assert [pick(cdf, u) for u in (0.0, 0.47, 0.49, 0.999999)] == [0, 0, 1, 3]
    with pytest.raises(ValueError, match="at least one video"):
        zipf_cdf(0, 1.0)


def test_throughput_rule() -> None:
    assert choose_rendition([200_000, 600_000], None) == 0
    assert choose_rendition([200_000, 600_000], 1_000_000) == 1
    assert choose_rendition([200_000, 600_000], 650_000) == 0  # 0.9 x 650k < 600k
    assert choose_rendition([200_000, 600_000], 10_000) == 0


def test_buffer_model_drains_at_playback_pace() -> None:
    s = after_fetch(PlayerState(), rendition=0, seconds=0.5, size=50_000, segment_seconds=2, speed=1)
    assert s.buffer == 2
    assert s.stalled == 0
    assert s.throughput == pytest.approx(800_000)
    s = after_fetch(s, rendition=1, seconds=3.0, size=50_000, segment_seconds=2, speed=1)
    assert s.buffer == 2
    assert s.stalled == pytest.approx(1.0)
    assert s.switches == 1
    s = after_fetch(s, rendition=1, seconds=0.1, size=50_000, segment_seconds=2, speed=1)
    assert wait_time(s, target=2.0, speed=1) == pytest.approx(1.9)
    assert wait_time(s, target=2.0, speed=4) == pytest.approx(1.9 / 4)


def test_percentile_nearest_rank() -> None:
    values = [float(i) for i in range(1, 101)]
    assert (percentile(values, 0.5), percentile(values, 0.95), percentile(values, 0.99)) == (50, 95, 99)
    assert percentile([], 0.5) is None


def test_video_plan_from_the_player_parser() -> None:
    from player.mpd import parse_mpd

    plan = video_plan(parse_mpd(MPD.encode(), base_url="http://e:8080/videos/x/manifest.mpd"), "x")
    assert plan.chunks == 5
    assert plan.segment_seconds == 2
    assert [r.bandwidth for r in plan.renditions] == [200_000, 600_000]
    assert plan.renditions[1].init == "/videos/x/init-v1.m4s"
    assert plan.renditions[0].media[-1] == "/videos/x/chunk-v0-00005.m4s"


def test_source_addresses_spread_over_regions() -> None:
    nets = ("127.10.1.0/24", "127.10.2.0/24")
    assert [source_address(nets, i) for i in range(4)] == [
        "127.10.1.10",
        "127.10.2.10",
        "127.10.1.11",
        "127.10.2.11",
    ]
    assert source_address((), 3) is None


class Counting:
    """A stand-in edge: static files under /videos plus Prometheus counters of what it served."""

    def __init__(self, root: Path) -> None:
        self.hits = 0
        self.served = 0
        files = StaticFiles(directory=root)

        async def count(scope, receive, send):  # type: ignore[no-untyped-def]
            async def counting_send(message):  # type: ignore[no-untyped-def]
                if message["type"] == "http.response.body":
                    self.served += len(message.get("body", b""))
                await send(message)

            self.hits += 1
            await files(scope, receive, counting_send)

        async def metrics(request: Request) -> Response:
            return PlainTextResponse(
                f'cdn_edge_requests_total{{cache="HIT"}} {self.hits}\n'
                f'cdn_edge_requests_total{{cache="MISS"}} 1\n'
                f"cdn_edge_bytes_served_total {self.served}\ncdn_edge_bytes_fetched_total 1000\n"
            )

        async def chunked(request: Request) -> Response:
            async def parts():  # type: ignore[no-untyped-def]
                for p in (b"abc", b"", b"defgh"):
                    if p:
                        yield p

            return StreamingResponse(parts())

        self.app = Starlette(routes=[Route("/metrics", metrics), Route("/chunked", chunked),
                                     Mount("/videos", app=count)])  # fmt: skip


@pytest.fixture(scope="module")
def fake_edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Counting]]:
    root = tmp_path_factory.mktemp("edge")
    for vid in ("loadtest-1", "loadtest-2"):
        d = root / vid
        d.mkdir()
        (d / "manifest.mpd").write_text(MPD)
        for rep, size in (("v0", 5_000), ("v1", 15_000)):
            (d / f"init-{rep}.m4s").write_bytes(b"i" * 700)
            for n in range(1, 6):
                (d / f"chunk-{rep}-{n:05d}.m4s").write_bytes(bytes([n]) * size)
    counting = Counting(root)
    with serve_in_thread(counting.app) as url:
        yield url, counting


def test_client_keeps_the_connection_and_reads_both_framings(fake_edge: tuple[str, Counting]) -> None:
    url, _ = fake_edge
    host, port = url.removeprefix("http://").split(":")

    async def go() -> None:
        conn = Connection(host, int(port))
        try:
            r1 = await conn.get("/videos/loadtest-1/chunk-v0-00002.m4s", time_limit=5, keep_body=True)
            writer = conn._writer
            r2 = await conn.get("/chunked", time_limit=5, keep_body=True)
            assert conn._writer is writer  # same socket: keep-alive
            r3 = await conn.get("/videos/nope", time_limit=5)
        finally:
            await conn.close()
        assert (r1.status, r1.size, r1.body) == (200, 5000, b"\x02" * 5000)
        assert (r2.status, r2.size, r2.body) == (200, 8, b"abcdefgh")
        assert r3.status == 404

    asyncio.run(go())


def test_client_error_on_refused_connection() -> None:
    from tests.conftest import free_port

    async def go() -> None:
        conn = Connection("127.0.0.1", free_port())
        with pytest.raises(HTTPClientError, match="GET http://127.0.0.1"):
            await conn.get("/", time_limit=2)

    asyncio.run(go())


def test_short_run_reports_figures(fake_edge: tuple[str, Counting], tmp_path: Path) -> None:
    url, counting = fake_edge
    cfg = LoadConfig(edges=(url,), players=20, duration=3.0, videos=("loadtest-1", "loadtest-2"),
                     ramp=0.5, speed=8.0, target_buffer=4.0)  # fmt: skip
    before_hits = counting.hits
    doc = asyncio.run(run_load(cfg))
    assert doc["requests"] > 20 * 3  # manifest, init and chunks for each player
    assert doc["errors"] == 0
    assert doc["statuses"] == {"200": doc["requests"]}
    assert doc["latency_ms"]["p50"] <= doc["latency_ms"]["p95"] <= doc["latency_ms"]["p99"]
    edge = doc["edges"][url]
    assert 0 < edge["requests"] <= counting.hits - before_hits  # a delta over the run, not the total
    # The edge also counts the requests still in flight at the deadline (at most one per player).
    assert doc["requests"] <= edge["requests"] <= doc["requests"] + cfg.players
    assert edge["hit_ratio"] == pytest.approx(1.0)
    assert doc["bytes"] > 0
    assert len(doc["timeline"]) >= 3
    json.dumps(doc)
    write_plot(doc, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    run, edges = results_table(doc)
    assert run.row_count >= 7
    assert edges.row_count == 1


def test_errors_are_counted_not_raised(tmp_path: Path) -> None:
    from tests.conftest import free_port

    cfg = LoadConfig(
        edges=(f"http://127.0.0.1:{free_port()}",), players=3, duration=1.0, videos=("v",), ramp=0.1
    )
    doc = asyncio.run(run_load(cfg))
    assert doc["requests"] == 0
    assert doc["statuses"].get("error", 0) >= 3
    assert doc["edges"][cfg.edges[0]] == {"reachable": False}


def test_cli_runs_and_writes_json(fake_edge: tuple[str, Counting], tmp_path: Path) -> None:
    from cdn.cli import main

    url, _ = fake_edge
    out = tmp_path / "lt.json"
    argv = ["loadtest", "--edge", url, "--players", "5", "--duration", "1", "--videos", "2", "--ramp", "0.1"]
    assert main([*argv, "--json", str(out), "--quiet"]) == 0
    doc = json.loads(out.read_text())
    assert doc["players"] == 5
    assert doc["videos"] == ["loadtest-1", "loadtest-2"]
    assert doc["requests"] > 0


def test_cli_refuses_a_missing_catalogue(
    fake_edge: tuple[str, Counting], capsys: pytest.CaptureFixture[str]
) -> None:
    from cdn.cli import main

    url, _ = fake_edge
    assert (
        main(["loadtest", "--edge", url, "--players", "1", "--duration", "1", "--videos", "3", "--quiet"])
        == 1
    )
    assert "loadtest-3/manifest.mpd answered HTTP 404" in capsys.readouterr().err.replace("\n", "")
