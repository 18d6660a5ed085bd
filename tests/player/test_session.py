"""player.session: the play loop against real HTTP servers serving a packaged store, with faults."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cdn.hostport import HostPort
from player.abr import AbrContext, Decision, Observation, ThroughputSample
from player.abr.base import Progress
from player.cli import main
from player.config import READ_TIMEOUT_FLOOR, PlayerConfig
from player.edgepool import EdgePool
from player.fetch import Fetcher
from player.output import verify_decodes
from player.report import report_document, write_report
from player.resolve import Resolver
from player.session import SessionResult, chunk_read_timeout, play
from tests.player.netfixtures import DnsResponder, Faults, FaultyHTTPServer
from tests.player.throttle import ThrottleProxy

HOST = "video.cdn.test"


@pytest.fixture
def store(packaged_store: Path) -> Path:
    return packaged_store


@pytest.fixture
def dns() -> Iterator[DnsResponder]:
    with DnsResponder({HOST: [("A", "127.0.0.2")]}, ttl=20) as responder:
        yield responder


@pytest.fixture
def edge(store: Path) -> Iterator[FaultyHTTPServer]:
    with FaultyHTTPServer(store, host="127.0.0.2") as server:
        yield server


def manifest_url(server: FaultyHTTPServer) -> str:
    return f"http://{HOST}:{server.port}/videos/demo/manifest.mpd"


def run_play(server: FaultyHTTPServer, dns: DnsResponder) -> SessionResult:
    config = PlayerConfig(
        url=manifest_url(server),
        dns=HostPort("127.0.0.1", dns.port),
        speed=50,
        quiet=True,
        max_buffer=8,
        startup=2,
    )
    resolver = Resolver(server=config.dns, timeout=2)
    with Fetcher(
        EdgePool(resolver), timeout=2, retries_per_edge=2, max_failovers=2, backoff=lambda n: 0.01 * n
    ) as fetcher:
        return play(config, fetcher)


def same_as_store(result: SessionResult, store: Path) -> None:
    """Every chunk the player used is byte-identical to the store's file."""
    for r in result.records:
        name = r.url.rsplit("/", 1)[1]
        assert r.sha256 == hashlib.sha256((store / "demo" / name).read_bytes()).hexdigest(), name
        assert r.bytes == (store / "demo" / name).stat().st_size


def test_plays_every_chunk_through_the_resolved_edge(
    store: Path, edge: FaultyHTTPServer, dns: DnsResponder
) -> None:
    result = run_play(edge, dns)
    chunks = json.loads((store / "demo" / "package.json").read_text())["chunks"]
    assert [r.index for r in result.records] == list(range(chunks))
    assert [r.number for r in result.records] == list(range(1, chunks + 1))
    assert {r.edge for r in result.records} == {f"127.0.0.2:{edge.port}"}
    assert result.summary.chunks == chunks
    assert result.audio is not None
    same_as_store(result, store)
    assert {host for _p, host, _peer in edge.requests} == {f"{HOST}:{edge.port}"}
    assert any(h.endswith("-00002.m4s") for h in edge.heads)  # real chunk sizes asked ahead
    paths = [p for p, _h, _peer in edge.requests]
    assert paths[0].endswith("manifest.mpd")
    assert any(f"chunk-{result.audio}-" in p for p in paths)  # audio follows the video


def test_5xx_then_recovery_is_retried(store: Path, edge: FaultyHTTPServer, dns: DnsResponder) -> None:
    edge.faults.status_5xx["-00002.m4s"] = 1  # whichever rendition is chosen for chunk 2
    result = run_play(edge, dns)
    assert result.records[1].retries == 1
    assert result.records[1].failovers == 0
    assert [r.retries for r in result.records if r.index != 1] == [0] * (len(result.records) - 1)
    same_as_store(result, store)


def test_short_chunk_is_refetched_never_used(store: Path, edge: FaultyHTTPServer, dns: DnsResponder) -> None:
    edge.faults.short["-00002.m4s"] = 1
    result = run_play(edge, dns)
    assert result.records[1].retries == 1
    same_as_store(result, store)


def test_short_chunk_without_content_length_is_refetched_never_used(
    store: Path, edge: FaultyHTTPServer, dns: DnsResponder
) -> None:
    edge.faults.chunked_short["-00002.m4s"] = 1  # cut in half, chunked and cleanly terminated
    result = run_play(edge, dns)
    assert result.records[1].retries == 1  # the HEAD size gave it away
    same_as_store(result, store)


def test_dead_edge_reresolves_and_continues_at_the_same_chunk(store: Path, dns: DnsResponder) -> None:
    def die() -> None:
        dns.records[HOST] = [("A", "127.0.0.2"), ("A", "127.0.0.3")]

    video = "|".join(r["id"] for r in json.loads((store / "demo" / "package.json").read_text())["renditions"])
    faults = Faults(die_during=rf"chunk-({video})-00002\.m4s$", on_die=die)  # dies sending video chunk 2
    with FaultyHTTPServer(store, host="127.0.0.2", faults=faults) as a:
        try:
            b = FaultyHTTPServer(store, host="127.0.0.3", port=a.port)
        except OSError:
            pytest.skip("the port is taken on 127.0.0.3")
        with b:
            result = run_play(a, dns)
    edges = [r.edge.split(":")[0] for r in result.records]
    assert edges[0] == "127.0.0.2"
    assert edges[-1] == "127.0.0.3"
    assert edges.index("127.0.0.3") == 1  # chunk 2 (index 1) itself came from the other edge
    assert result.records[1].failovers == 1
    assert result.records[1].retries == 2  # the cut-off answer, then a refused connection
    assert [r.number for r in result.records] == list(range(1, len(result.records) + 1))  # no gap, no repeat
    same_as_store(result, store)


@pytest.mark.parametrize(
    ("buffer", "speed", "playing", "ceiling", "expected"),
    [
        (0.0, 1.0, False, 10.0, READ_TIMEOUT_FLOOR),  # startup: every silent second delays the first frame
        (3.9, 1.0, False, 10.0, READ_TIMEOUT_FLOOR),  # still startup, whatever is buffered
        (0.0, 1.0, True, 10.0, READ_TIMEOUT_FLOOR),  # stalled
        (3.0, 1.0, True, 10.0, READ_TIMEOUT_FLOOR),  # 1.5 s affordable: a slow link still gets the floor
        (12.0, 1.0, True, 10.0, 6.0),  # half of the 12 wall seconds the buffer lasts
        (30.0, 1.0, True, 10.0, 10.0),  # never longer than --timeout
        (30.0, 10.0, True, 10.0, READ_TIMEOUT_FLOOR),  # --speed 10: the buffer lasts 3 wall seconds
        (40.0, 2.0, True, 10.0, 10.0),
        (0.0, 1.0, False, 1.0, 1.0),  # a --timeout under the floor wins
        (30.0, 1.0, True, 1.0, 1.0),
    ],
)
def test_chunk_read_timeout(
    buffer: float, speed: float, playing: bool, ceiling: float, expected: float
) -> None:
    assert chunk_read_timeout(buffer, speed=speed, playing=playing, ceiling=ceiling) == pytest.approx(
        expected
    )


def test_a_silent_edge_is_left_long_before_the_timeout_when_the_buffer_is_low(
    store: Path, edge: FaultyHTTPServer, dns: DnsResponder
) -> None:
    edge.faults.silent["-00002.m4s"] = 1  # chunk 2 stops half-way, the connection left open
    config = PlayerConfig(url=manifest_url(edge), dns=HostPort("127.0.0.1", dns.port), speed=50, quiet=True,
                          max_buffer=8, startup=2, timeout=10)  # fmt: skip
    resolver = Resolver(server=config.dns, timeout=2)
    with Fetcher(EdgePool(resolver), timeout=config.timeout, backoff=lambda n: 0.01 * n) as fetcher:
        started = time.monotonic()
        result = play(config, fetcher)
        elapsed = time.monotonic() - started
    # at 50x a 2 s buffer lasts 0.04 wall seconds: the floor (~2 s) fires, not the 10 s timeout
    assert READ_TIMEOUT_FLOOR <= elapsed < config.timeout / 2
    assert result.records[1].retries == 1  # retried at the same edge, which now answers in full
    assert result.records[1].failovers == 0
    assert [r.retries for r in result.records if r.index != 1] == [0] * (len(result.records) - 1)
    video = f"/videos/demo/chunk-{result.records[1].representation}-00002.m4s"
    assert [p for p, _h, _peer in edge.requests].count(video) == 2
    same_as_store(result, store)  # the chunk used is the whole one, never the silent half


def test_a_redirected_manifest_resolves_chunks_against_the_final_url(
    store: Path, edge: FaultyHTTPServer, dns: DnsResponder
) -> None:
    edge.faults.redirect["/videos/old/manifest.mpd"] = manifest_url(edge)
    config = PlayerConfig(url=manifest_url(edge).replace("/demo/", "/old/"), dns=HostPort("127.0.0.1", dns.port),
                          speed=50, quiet=True, max_buffer=8, startup=2)  # fmt: skip
    with Fetcher(EdgePool(Resolver(server=config.dns, timeout=2)), timeout=2) as fetcher:
        result = play(config, fetcher)
    assert all("/videos/demo/" in r.url for r in result.records)  # not /videos/old/ (404)
    same_as_store(result, store)


def test_unparseable_manifest_exits_1_with_a_clear_message(
    store: Path, dns: DnsResponder, capsys: pytest.CaptureFixture[str]
) -> None:
    with FaultyHTTPServer(
        store, host="127.0.0.2", faults=Faults(replace={"manifest.mpd": b"<MPD><Period"})
    ) as s:
        code = main([manifest_url(s), "--dns", f"127.0.0.1:{dns.port}", "--quiet"])
    assert code == 1
    err = capsys.readouterr().err
    assert "manifest" in err
    assert "cannot be parsed" in err


def test_missing_manifest_exits_1(
    edge: FaultyHTTPServer, dns: DnsResponder, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main([manifest_url(edge).replace("demo", "nothere"), "--dns", f"127.0.0.1:{dns.port}", "--quiet"])
    assert code == 1
    assert "HTTP 404" in capsys.readouterr().err


def test_cli_writes_report_plot_and_output(
    store: Path, edge: FaultyHTTPServer, dns: DnsResponder, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            manifest_url(edge),
            "--dns",
            f"127.0.0.1:{dns.port}",
            "--quiet",
            "--speed",
            "50",
            "--source-ip",
            "127.10.1.5",
            "--report",
            str(tmp_path / "r.json"),
            "--plot",
            str(tmp_path / "p.png"),
            "--output",
            str(tmp_path / "watched.mp4"),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "QoE_lin" in out
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["summary"]["chunks"] == len(report["chunks"]) > 0
    assert {c["edge"] for c in report["chunks"]} == {f"127.0.0.2:{edge.port}"}
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    verify_decodes(tmp_path / "watched.mp4")
    assert "watched video" in out
    assert {peer for _p, _h, peer in edge.requests} == {"127.10.1.5"}
    assert {q.peer for q in dns.queries} == {"127.10.1.5"}


@pytest.fixture(scope="module")
def single_file_store(tmp_path_factory: pytest.TempPathFactory, clip: Path) -> Path:
    """ffmpeg's single-file DASH (SegmentList with mediaRange), plus a SegmentBase (sidx) variant of it."""
    import subprocess

    from cdn.ffmpeg import ffmpeg_exe
    from player.sidx import find_box

    store = tmp_path_factory.mktemp("single")
    demo = store / "demo"
    demo.mkdir()
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-i", str(clip),
                    "-map", "0:v", "-map", "0:v", "-c:v", "libx264", "-preset", "ultrafast", "-b:v:0", "300k",
                    "-b:v:1", "100k", "-s:v:1", "160x90", "-g", "30", "-keyint_min", "30", "-f", "dash",
                    "-seg_duration", "1", "-single_file", "1", "-global_sidx", "1",
                    "-adaptation_sets", "id=0,streams=v", str(demo / "list.mpd")],
                   check=True, capture_output=True, timeout=120)  # fmt: skip
    reps = []
    for i, (bandwidth, size) in enumerate([(300000, '320" height="180'), (100000, '160" height="90')]):
        data = (demo / f"list-stream{i}.mp4").read_bytes()
        found = find_box(data, b"sidx")
        assert found is not None
        start, length = found
        reps.append(f'<Representation id="{i}" mimeType="video/mp4" codecs="avc1.42c00d" bandwidth="{bandwidth}" '
                     f'width="{size}"><BaseURL>list-stream{i}.mp4</BaseURL>'
                     f'<SegmentBase indexRange="{start}-{start + length - 1}">'
                     f'<Initialization range="0-{start - 1}"/></SegmentBase></Representation>')  # fmt: skip
    (demo / "base.mpd").write_text(
        '<?xml version="1.0"?><MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" '
        'mediaPresentationDuration="PT5S" minBufferTime="PT2S" profiles="urn:mpeg:dash:profile:isoff-on-demand:2011">'
        f'<Period id="0"><AdaptationSet contentType="video" mimeType="video/mp4">{"".join(reps)}'
        "</AdaptationSet></Period></MPD>"
    )
    return store


@pytest.mark.parametrize(
    ("mpd", "ignore_range"), [("list.mpd", False), ("list.mpd", True), ("base.mpd", False)]
)
def test_byte_range_segments(single_file_store: Path, dns: DnsResponder, tmp_path: Path, mpd: str,
                             ignore_range: bool) -> None:  # fmt: skip
    faults = Faults(ignore_range=ignore_range)
    with FaultyHTTPServer(single_file_store, host="127.0.0.2", faults=faults) as server:
        config = PlayerConfig(url=manifest_url(server).replace("manifest.mpd", mpd),
                              dns=HostPort("127.0.0.1", dns.port), speed=50, quiet=True, max_buffer=8, startup=2,
                              output=tmp_path / "w.mp4")  # fmt: skip
        from player.output import OutputRecorder

        with Fetcher(EdgePool(Resolver(server=config.dns, timeout=2)), timeout=2) as fetcher, \
                OutputRecorder(tmp_path) as recorder:  # fmt: skip
            result = play(config, fetcher, recorder=recorder)
            recorder.finish(tmp_path / "w.mp4")  # decodes, or raises
    assert len(result.records) == 5
    for r in result.records:
        data = (single_file_store / "demo" / r.url.rsplit("/", 1)[1]).read_bytes()
        digests = {hashlib.sha256(data[a : b + 1]).hexdigest() for a, b in _ranges(data)}
        assert r.sha256 in digests


def _ranges(data: bytes) -> list[tuple[int, int]]:
    from player.sidx import find_box, parse_sidx

    found = find_box(data, b"sidx")
    assert found is not None
    return [ref.byte_range for ref in parse_sidx(data[found[0] :], data_offset=found[0])]


def test_runs_as_a_script_from_a_checkout(edge: FaultyHTTPServer, dns: DnsResponder) -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, str(root / "player" / "cli.py"), manifest_url(edge), "--dns", f"127.0.0.1:{dns.port}",
         "--speed", "50", "--abr", "bola"],
        capture_output=True, text=True, timeout=120, cwd=root / "player", check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "QoE_lin" in done.stdout
    assert "bola" in done.stdout


def test_several_periods_play_in_order(store: Path, dns: DnsResponder, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    mpd = (copy / "demo" / "manifest.mpd").read_text()
    start, end = mpd.index("<Period"), mpd.index("</Period>") + len("</Period>")
    period = re.sub(
        r"<Period [^>]*>", '<Period id="{id}" start="{start}" duration="PT4S">', mpd[start:end], count=1
    )
    periods = period.replace("{id}", "a").replace("{start}", "PT0S") + period.replace("{id}", "b").replace(
        "{start}", "PT4S"
    )
    (copy / "demo" / "two.mpd").write_text(mpd[:start] + periods + mpd[end:])
    with FaultyHTTPServer(copy, host="127.0.0.2") as server:
        config = PlayerConfig(url=manifest_url(server).replace("manifest.mpd", "two.mpd"),
                              dns=HostPort("127.0.0.1", dns.port), speed=50, quiet=True, max_buffer=8, startup=2)  # fmt: skip
        with Fetcher(EdgePool(Resolver(server=config.dns, timeout=2)), timeout=2) as fetcher:
            result = play(config, fetcher)
    assert [r.number for r in result.records] == [1, 2, 1, 2]
    assert [r.index for r in result.records] == [0, 1, 2, 3]
    same_as_store(result, copy)


def test_nominal_chunk_sizes_send_no_head_requests(edge: FaultyHTTPServer, dns: DnsResponder) -> None:
    code = main([manifest_url(edge), "--dns", f"127.0.0.1:{dns.port}", "--quiet", "--speed", "50",
                 "--chunk-sizes", "nominal"])  # fmt: skip
    assert code == 0
    assert edge.heads == []


@dataclass(frozen=True, slots=True)
class TopButAbandonChunk2:
    """A real (if single-minded) ABR: always the top rendition, but chunk 2's download is given up
    for the lowest as soon as the ABR is shown its progress."""

    name: str = "top-but-abandon"

    def initial_state(self, ctx: AbrContext) -> None:
        return None

    def choose(self, ctx: AbrContext, state: None, obs: Observation) -> Decision[None]:
        return Decision(len(ctx.bitrates) - 1, state)

    def abandon(self, ctx: AbrContext, state: None, progress: Progress) -> int | None:
        return 0 if progress.chunk_index == 1 else None


def test_an_abandoned_download_is_refetched_lower_and_only_the_whole_chunk_is_used(
    store: Path, edge: FaultyHTTPServer, dns: DnsResponder, tmp_path: Path
) -> None:
    top, low = "0", "1"  # rendition ids: 400k, 200k
    # 4 Mbit/s at 10x speed: the first 64 KiB read of chunk 2 takes ~1.3 media s, past PROGRESS_SECONDS
    with ThrottleProxy((edge.host, edge.port), rate_bps=4e6) as proxy:
        config = PlayerConfig(url=f"http://{HOST}:{proxy.port}/videos/demo/manifest.mpd",
                              dns=HostPort("127.0.0.1", dns.port), speed=10, quiet=True, max_buffer=8, startup=2)  # fmt: skip
        dns.records[HOST] = [("A", "127.0.0.1")]
        with Fetcher(EdgePool(Resolver(server=config.dns, timeout=2)), timeout=5) as fetcher:
            result = play(config, fetcher, algorithm=TopButAbandonChunk2())
    records = result.records
    assert [r.representation for r in records] == [top, low, top]
    assert [r.abandoned for r in records] == [0, 1, 0]
    top_chunk_2 = (store / "demo" / f"chunk-{top}-00002.m4s").stat().st_size
    assert 0 < records[1].wasted_bytes < top_chunk_2  # dropped part-way
    assert [r.wasted_bytes for r in records[::2]] == [0, 0]
    assert records[1].retries == 0
    same_as_store(result, store)  # the chunk used is the whole lower one
    assert result.summary.chunks == 3
    paths = [p for p, _h, _peer in edge.requests]
    assert paths.count(f"/videos/demo/chunk-{top}-00002.m4s") == 1  # abandoned, not retried
    assert f"/videos/demo/init-{low}.m4s" in paths  # the lower rendition's init came with it
    doc = report_document(
        url="u", abr=result.abr, speed=10, summary=result.summary.to_dict(), records=records
    )
    back = json.loads(write_report(tmp_path / "r.json", doc).read_text())
    assert [(c["abandoned"], c["wasted_bytes"] > 0) for c in back["chunks"]] == [
        (0, False),
        (1, True),
        (0, False),
    ]
    assert back["abr"] == "top-but-abandon"


@dataclass
class RecordingLowest:
    """A real (if timid) ABR: always the lowest rendition; keeps every sample it was shown."""

    seen: dict[int, ThroughputSample]
    name: str = "recording-lowest"

    def initial_state(self, ctx: AbrContext) -> None:
        return None

    def choose(self, ctx: AbrContext, state: None, obs: Observation) -> Decision[None]:
        for i, sample in enumerate(obs.samples):
            self.seen[obs.total_samples - len(obs.samples) + i] = sample
        return Decision(0, state)


def test_the_abr_sees_the_rate_video_reaches_the_buffer_with_its_audio_sharing_the_link(
    store: Path, edge: FaultyHTTPServer, dns: DnsResponder
) -> None:
    """Audio segments come down the same link right after each chunk: the ABR's sample of a chunk
    counts their seconds (and the size probes'), or it overrates the link by the audio's share and
    plans chunks that stall. The record keeps the chunk's own throughput."""
    rate, speed = 2e6, 4.0
    audio = sorted((store / "demo").glob("chunk-2-*.m4s"))  # the audio representation's segments
    assert audio, "the test store has no audio"
    with ThrottleProxy((edge.host, edge.port), rate_bps=rate) as proxy:
        config = PlayerConfig(url=f"http://{HOST}:{proxy.port}/videos/demo/manifest.mpd",
                              dns=HostPort("127.0.0.1", dns.port), speed=speed, quiet=True, max_buffer=8, startup=2)  # fmt: skip
        dns.records[HOST] = [("A", "127.0.0.1")]
        abr = RecordingLowest(seen={})
        with Fetcher(EdgePool(Resolver(server=config.dns, timeout=2)), timeout=5) as fetcher:
            result = play(config, fetcher, algorithm=abr)
    records = result.records
    assert len(records) >= 2
    assert len(abr.seen) == len(records) - 1  # the last sample is never shown
    for k, record in enumerate(records[:-1]):
        sample = abr.seen[k]
        assert sample.size == record.bytes
        audio_bytes = (store / "demo" / f"chunk-2-{record.number:05d}.m4s").stat().st_size
        # the link paces at `rate`: the audio alone takes audio_bytes * 8 / rate wall seconds at least
        wall = sample.download_time / speed
        assert wall >= record.download_seconds + 0.9 * audio_bytes * 8 / rate, k
        assert sample.bits_per_second * speed < record.throughput_bps, k
