"""A `--single-file` package played end to end: real origin → real edge (EdgeServer) → player session.

The player reads each Representation's sidx (SegmentBase@indexRange) and fetches every chunk as a
byte range of the one file. Every chunk must equal those bytes of the origin's file, and the edge
must answer the ranges 206, from its cache (X-Cache HIT) once the first session has filled it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cdn.asgiserver import serve_in_thread
from cdn.hostport import HostPort
from edge.config import EdgeConfig
from origin.mpd_single import SingleFileLayout, parse_single_file
from player.config import PlayerConfig
from player.edgepool import EdgePool
from player.fetch import ChunkFetch, Fetcher, ProgressCallback
from player.resolve import Resolver
from player.session import SessionResult, play
from tests.edge.conftest import Clock, EdgeThread
from tests.player.netfixtures import DnsResponder

HOST = "video.cdn.test"


@dataclass(frozen=True, slots=True)
class Got:
    """One GET the player made: what it asked for and what the edge said."""

    name: str
    byte_range: tuple[int, int] | None
    status: int
    cache: str | None
    data: bytes


class RecordingFetcher(Fetcher):
    """A real Fetcher that also keeps every GET's range, status and X-Cache (no behaviour changed)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.got: list[Got] = []

    def get(
        self,
        url: str,
        *,
        byte_range: tuple[int, int] | None = None,
        expected_size: int | None = None,
        progress: ProgressCallback | None = None,
        read_timeout: float | None = None,
    ) -> ChunkFetch:
        fetched = super().get(
            url,
            byte_range=byte_range,
            expected_size=expected_size,
            progress=progress,
            read_timeout=read_timeout,
        )
        self.got.append(Got(url.rsplit("/", 1)[1], byte_range, fetched.status, fetched.cache, fetched.data))
        return fetched


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, clip: Path) -> Path:
    from origin.ladder import parse_ladder
    from origin.packager import package

    store = tmp_path_factory.mktemp("single-play")
    package(clip, video_id="demo", store=store, segment_seconds=2,
            ladder=parse_ladder("180p:400k,144p:200k"), layout="single-file")  # fmt: skip
    return store


@pytest.fixture(params=[8 * 1024**2, 64 * 1024], ids=["whole-in-memory", "large-object-streaming"])
def edge(store: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[EdgeThread]:
    """An edge in front of the origin; at 64 KiB `--large-object`, every media file takes the
    block-by-block path (the origin's single files are 75 to 245 KB here)."""
    from origin.app import create_app
    from origin.config import ServeConfig

    with serve_in_thread(create_app(ServeConfig(store=store, log_level="warning"))) as origin_url:
        config = EdgeConfig(origin=origin_url, listen=HostPort("127.0.0.1", 0), cache_dir=tmp_path / "cache",
                            cache_size=64 * 1024**2, memory_cache=16 * 1024**2,
                            large_object=request.param)  # fmt: skip
        edge = EdgeThread(config, Clock())
        try:
            yield edge
        finally:
            edge.stop()


def _play(edge: EdgeThread) -> tuple[SessionResult, RecordingFetcher]:
    with DnsResponder({HOST: [("A", "127.0.0.1")]}) as dns:
        config = PlayerConfig(url=f"http://{HOST}:{edge.server.port}/videos/demo/manifest.mpd",
                              dns=HostPort("127.0.0.1", dns.port), speed=50, quiet=True, max_buffer=8, startup=2)  # fmt: skip
        with RecordingFetcher(EdgePool(Resolver(server=config.dns)), timeout=5) as fetcher:
            return play(config, fetcher), fetcher


def _layouts(store: Path) -> dict[str, tuple[bytes, SingleFileLayout]]:
    out = {}
    for path in sorted((store / "demo").glob("media-*.mp4")):
        data = path.read_bytes()
        out[path.name] = (data, parse_single_file(data))
    return out


def _check_session(result: SessionResult, fetcher: RecordingFetcher, store: Path) -> None:
    files = _layouts(store)
    assert len(files) == 3  # two renditions and the audio
    chunks = len(next(iter(files.values()))[1].chunks)
    assert [r.index for r in result.records] == list(range(chunks))
    assert [r.number for r in result.records] == list(range(1, chunks + 1))
    assert result.summary.chunks == chunks
    for r in result.records:  # each chunk the player used is that byte range of the origin's file
        data, layout = files[r.url.rsplit("/", 1)[1]]
        expected = layout.chunks[r.number - 1].of(data)
        assert r.sha256 == hashlib.sha256(expected).hexdigest(), (r.url, r.number)
        assert r.bytes == len(expected)
    ranged = [g for g in fetcher.got if g.name.startswith("media-")]
    assert {g.name for g in ranged} == set(files)  # the audio file was played too
    for g in ranged:
        data, layout = files[g.name]
        assert g.byte_range is not None, f"{g.name} fetched whole"
        assert g.status == 206
        assert g.data == data[g.byte_range[0] : g.byte_range[1] + 1]
        assert g.byte_range in {(s.start, s.end) for s in (layout.init, layout.index, *layout.chunks)}
    # the audio played every chunk too: index, init and each of its chunks once
    audio_data, audio = files["media-2.mp4"]
    audio_ranges = [g.byte_range for g in ranged if g.name == "media-2.mp4"]
    assert sorted(audio_ranges) == sorted((s.start, s.end) for s in (audio.init, audio.index, *audio.chunks))


def test_plays_a_single_file_package_through_the_edge_with_ranges_then_from_its_cache(
    store: Path, edge: EdgeThread
) -> None:
    first, fetcher1 = _play(edge)
    _check_session(first, fetcher1, store)
    for name in ("media-0.mp4", "media-1.mp4", "media-2.mp4"):  # the first range fills the whole file,
        caches = [g.cache for g in fetcher1.got if g.name == name]  # later ranges come from the cache
        assert caches[0] in ("MISS", "COALESCED"), (name, caches)
        assert set(caches[1:]) <= {"HIT"}, (name, caches)
    second, fetcher2 = _play(edge)
    _check_session(second, fetcher2, store)
    ranged = [g for g in fetcher2.got if g.name.startswith("media-")]
    assert ranged
    assert all(g.cache == "HIT" for g in ranged), [(g.name, g.byte_range, g.cache) for g in ranged]
    assert all(r.cache == "HIT" for r in second.records)
