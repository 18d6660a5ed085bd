"""In-process tests of the origin app's routes (httpx over ASGI): files, conditional GET, ranges,
traversal, CORS, catalogue, health and metrics; first on a hand-made store, then on a real package."""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from origin.app import create_app
from origin.config import ServeConfig

pytestmark = pytest.mark.anyio

MPD = b"""<?xml version="1.0" encoding="utf-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" profiles="urn:mpeg:dash:profile:isoff-live:2011" type="static"
     mediaPresentationDuration="PT4S" minBufferTime="PT2S"><Period><AdaptationSet contentType="video">
<Representation id="0" mimeType="video/mp4" codecs="avc1.64000d" bandwidth="400000" width="320" height="180">
<SegmentTemplate timescale="1000" duration="2000" initialization="init-$RepresentationID$.m4s"
 media="chunk-$RepresentationID$-$Number%05d$.m4s" startNumber="1"/></Representation>
</AdaptationSet></Period></MPD>
"""
SECRET = b"TOP-SECRET-OUTSIDE-THE-STORE"
BIG = 300_000  # bigger than the read size below, so it streams in several reads


def _package_json(video_id: str) -> bytes:
    return json.dumps(
        {
            "id": video_id,
            "duration": 4.0,
            "segment_seconds": 2,
            "chunks": 2,
            "audio": False,
            "renditions": [
                {
                    "id": "0",
                    "width": 320,
                    "height": 180,
                    "bandwidth": 400000,
                    "codecs": "avc1.64000d",
                    "frame_rate": 30,
                }
            ],
            "created": "2026-11-24T00:00:00Z",
        }
    ).encode()


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A hand-made store: `demo` (manifest, init, chunks), plus traps that must never be served."""
    store = tmp_path / "store"
    demo = store / "demo"
    demo.mkdir(parents=True)
    (demo / "manifest.mpd").write_bytes(MPD)
    (demo / "init-0.m4s").write_bytes(b"\x00\x00\x00\x18ftypiso6" + bytes(16))
    (demo / "chunk-0-00001.m4s").write_bytes(bytes(range(256)) * (BIG // 256) + b"tail")
    (demo / "chunk-0-00002.m4s").write_bytes(b"second chunk")
    (demo / "package.json").write_bytes(_package_json("demo"))
    outside = tmp_path / "outside"
    outside.mkdir()
    for name in ("secret.m4s", "manifest.mpd", "passwd"):
        (outside / name).write_bytes(SECRET)
    (demo / "leak.m4s").symlink_to(outside / "secret.m4s")  # a file symlink leaving the store
    (store / "evil").symlink_to(outside, target_is_directory=True)  # a video folder leaving it
    (demo / "folder.m4s").mkdir()  # not a regular file
    hidden = store / ".tmp-demo-abcd"  # a build in progress
    hidden.mkdir()
    (hidden / "manifest.mpd").write_bytes(SECRET)
    (store / "broken").mkdir()  # a folder without a valid package.json
    (store / "broken" / "manifest.mpd").write_bytes(MPD)
    (store / "broken" / "package.json").write_bytes(b"{not json")
    return store


@contextlib.asynccontextmanager
async def _client(config: ServeConfig) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(config)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://origin.test") as client:
            yield client


@pytest.fixture
async def client(store: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(ServeConfig(store=store, manifest_max_age=3, read_size=64 * 1024)) as c:
        yield c


async def test_manifest_has_dash_type_short_cache_and_validators(client: httpx.AsyncClient) -> None:
    r = await client.get("/videos/demo/manifest.mpd")
    assert r.status_code == 200
    assert r.content == MPD
    assert r.headers["content-type"] == "application/dash+xml"
    assert r.headers["cache-control"] == "public, max-age=3"
    assert re.fullmatch(r'"[0-9a-f]+"', r.headers["etag"])
    assert r.headers["last-modified"].endswith(" GMT")
    assert r.headers["accept-ranges"] == "bytes"
    assert r.headers["content-length"] == str(len(MPD))


@pytest.mark.parametrize(
    ("name", "ctype"), [("init-0.m4s", "video/mp4"), ("chunk-0-00002.m4s", "video/iso.segment")]
)
async def test_segments_are_immutable_with_their_content_type(
    client: httpx.AsyncClient, name: str, ctype: str
) -> None:
    r = await client.get(f"/videos/demo/{name}")
    assert r.status_code == 200
    assert r.headers["content-type"] == ctype
    assert r.headers["cache-control"] == "public, max-age=31536000, immutable"


async def test_large_file_streams_whole_and_exact(client: httpx.AsyncClient, store: Path) -> None:
    r = await client.get("/videos/demo/chunk-0-00001.m4s")
    expected = (store / "demo" / "chunk-0-00001.m4s").read_bytes()
    assert r.status_code == 200
    assert r.content == expected
    assert int(r.headers["content-length"]) == len(expected)


async def test_if_none_match_and_if_modified_since_give_304(client: httpx.AsyncClient) -> None:
    first = await client.get("/videos/demo/chunk-0-00002.m4s")
    etag, last_modified = first.headers["etag"], first.headers["last-modified"]
    for headers in (
        {"if-none-match": etag},
        {"if-none-match": f'"nope", W/{etag}'},
        {"if-none-match": "*"},
        {"if-modified-since": last_modified},
    ):
        r = await client.get("/videos/demo/chunk-0-00002.m4s", headers=headers)
        assert r.status_code == 304, headers
        assert r.content == b""
        assert r.headers["etag"] == etag
        assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
    r = await client.get("/videos/demo/chunk-0-00002.m4s", headers={"if-none-match": '"stale"'})
    assert r.status_code == 200
    assert r.content == b"second chunk"


async def test_etag_changes_when_the_file_is_replaced(client: httpx.AsyncClient, store: Path) -> None:
    path = store / "demo" / "manifest.mpd"
    before = (await client.get("/videos/demo/manifest.mpd")).headers["etag"]
    tmp = path.with_name("manifest.new")
    tmp.write_bytes(MPD + b"<!-- v2 -->")
    os.replace(tmp, path)
    r = await client.get("/videos/demo/manifest.mpd", headers={"if-none-match": before})
    assert r.status_code == 200
    assert r.headers["etag"] != before


async def test_single_range_gives_206(client: httpx.AsyncClient, store: Path) -> None:
    data = (store / "demo" / "chunk-0-00001.m4s").read_bytes()
    for header, (start, stop) in {
        "bytes=0-99": (0, 100),
        "bytes=-4": (len(data) - 4, len(data)),
        "bytes=1000-": (1000, len(data)),
    }.items():
        r = await client.get("/videos/demo/chunk-0-00001.m4s", headers={"range": header})
        assert r.status_code == 206, header
        assert r.content == data[start:stop]
        assert r.headers["content-range"] == f"bytes {start}-{stop - 1}/{len(data)}"
        assert r.headers["content-length"] == str(stop - start)


async def test_unsatisfiable_range_gives_416(client: httpx.AsyncClient) -> None:
    r = await client.get("/videos/demo/chunk-0-00002.m4s", headers={"range": "bytes=500-"})
    assert r.status_code == 416
    assert r.headers["content-range"] == "bytes */12"


async def test_multi_range_and_stale_if_range_give_the_whole_file(client: httpx.AsyncClient) -> None:
    r = await client.get("/videos/demo/chunk-0-00002.m4s", headers={"range": "bytes=0-1,4-5"})
    assert r.status_code == 200
    assert r.content == b"second chunk"
    r = await client.get(
        "/videos/demo/chunk-0-00002.m4s", headers={"range": "bytes=0-1", "if-range": '"old"'}
    )
    assert r.status_code == 200
    assert r.content == b"second chunk"


async def test_head_has_the_get_headers_and_no_body(client: httpx.AsyncClient) -> None:
    get = await client.get("/videos/demo/chunk-0-00001.m4s")
    head = await client.head("/videos/demo/chunk-0-00001.m4s")
    assert head.status_code == 200
    assert head.content == b""
    for name in ("content-length", "content-type", "etag", "last-modified", "cache-control", "accept-ranges"):
        assert head.headers[name] == get.headers[name]


@pytest.mark.parametrize(
    "path",
    [
        "/videos/demo/leak.m4s",  # symlink to a file outside the store
        "/videos/evil/manifest.mpd",  # symlinked video folder outside the store
        "/videos/evil/secret.m4s",
        "/videos/.tmp-demo-abcd/manifest.mpd",  # a build in progress
        "/videos/demo/package.json",  # not a media file
        "/videos/demo/folder.m4s",  # a directory
        "/videos/demo/missing.m4s",
        "/videos/nope/manifest.mpd",
        "/videos/demo/../../outside/passwd",
        "/videos/demo/%2e%2e/%2e%2e/outside/passwd",
        "/videos/%2e%2e/outside/manifest.mpd",
        "/videos/..%2Foutside/manifest.mpd",
        "/videos/demo/..%5C..%5Coutside%5Cpasswd",
        "/videos/demo/manifest.mpd%00.m4s",
        "/videos/demo/manifest.mpd/",
        "/videos//etc/passwd",
    ],
)
async def test_traversal_and_hidden_paths_are_404(client: httpx.AsyncClient, path: str) -> None:
    r = await client.get(path)
    assert r.status_code == 404, path
    assert SECRET not in r.content


async def test_cors_headers_on_every_response_and_preflight(client: httpx.AsyncClient) -> None:
    for path in ("/videos/demo/manifest.mpd", "/videos/nope/manifest.mpd", "/videos"):
        r = await client.get(path, headers={"origin": "https://player.example"})
        assert r.headers["access-control-allow-origin"] == "*"
        exposed = r.headers["access-control-expose-headers"].lower()
        assert {"content-length", "content-range", "etag"} <= {h.strip() for h in exposed.split(",")}
    r = await client.options(
        "/videos/demo/chunk-0-00001.m4s",
        headers={
            "origin": "https://player.example",
            "access-control-request-method": "GET",
            "access-control-request-headers": "range",
        },
    )
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == "*"
    assert "GET" in r.headers["access-control-allow-methods"]
    assert "range" in r.headers["access-control-allow-headers"].lower()


async def test_catalogue_lists_published_packages_only(client: httpx.AsyncClient) -> None:
    r = await client.get("/videos")
    assert r.status_code == 200
    videos = r.json()["videos"]
    assert [v["id"] for v in videos] == ["demo"]  # not .tmp-*, not the broken one, not the symlink
    demo = videos[0]
    assert demo["duration"] == 4.0
    assert demo["manifest"] == "/videos/demo/manifest.mpd"
    assert demo["renditions"][0]["width"] == 320
    assert (await client.get("/videos/demo")).json()["id"] == "demo"
    assert (await client.get("/videos/broken")).status_code == 404


async def test_healthz(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert body["role"] == "origin"
    assert body["uploads"] is False


async def test_metrics_count_routes_statuses_and_bytes(client: httpx.AsyncClient) -> None:
    ok = await client.get("/videos/demo/manifest.mpd")
    await client.get("/videos/demo/missing.m4s")
    await client.get("/no/such/route")
    text = (await client.get("/metrics")).text
    assert 'cdn_origin_requests_total{route="/videos/{video_id}/{name}",status="200"} 1.0' in text
    assert 'cdn_origin_requests_total{route="/videos/{video_id}/{name}",status="404"} 1.0' in text
    assert 'cdn_origin_requests_total{route="unmatched",status="404"} 1.0' in text
    sent = float(re.search(r"^cdn_origin_bytes_sent_total (\S+)$", text, re.M).group(1))  # type: ignore[union-attr]
    assert sent >= len(ok.content)
    assert 'cdn_origin_jobs{state="queued"} 0.0' in text


async def test_missing_store_is_unhealthy(tmp_path: Path) -> None:
    async with _client(ServeConfig(store=tmp_path / "gone")) as c:
        (tmp_path / "gone" / ".uploads").rmdir()
        (tmp_path / "gone").rmdir()
        assert (await c.get("/healthz")).status_code == 503


async def test_real_package_serves_every_file_of_its_manifest(packaged_store: Path) -> None:
    async with _client(ServeConfig(store=packaged_store)) as c:
        mpd = (await c.get("/videos/demo/manifest.mpd")).text
        entry = (await c.get("/videos/demo")).json()
        assert entry["duration"] == pytest.approx(5.0, abs=0.1)
        assert len(entry["renditions"]) == 2
        for rep in re.findall(r'<Representation id="([^"]+)"', mpd):
            init = await c.get(f"/videos/demo/init-{rep}.m4s")
            assert init.status_code == 200
            assert init.headers["content-type"] == "video/mp4"
            for number in range(1, entry["chunks"] + 1):
                chunk = await c.get(f"/videos/demo/chunk-{rep}-{number:05d}.m4s")
                assert chunk.status_code == 200
                assert chunk.content[4:8] in (b"styp", b"moof")
