"""`POST /videos` and `GET /jobs/{id}` in process: auth, limits, validation, and real packaging jobs."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from origin.app import create_app
from origin.config import ServeConfig
from origin.progress import PackagingProgress
from origin.upload import default_video_id

pytestmark = pytest.mark.anyio

TOKEN = "t0ken-for-tests"
AUTH = {"authorization": f"Bearer {TOKEN}"}


@contextlib.asynccontextmanager
async def _client(config: ServeConfig) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(config)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://origin.test", timeout=60
        ) as client:
            yield client


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
async def client(store: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(ServeConfig(store=store, admin_token=TOKEN, max_upload_bytes=2_000_000)) as c:
        yield c


async def _poll(
    client: httpx.AsyncClient, url: str, done: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """GET the job at `url` until `done(job)`; fail after 60 s."""
    with anyio.fail_after(60):
        while True:
            job: dict[str, Any] = (await client.get(url)).json()
            if done(job):
                return job
            await anyio.sleep(0.02)


async def _wait_job(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
    return await _poll(client, url, lambda job: job["state"] in ("succeeded", "failed"))


def _nothing_left(store: Path, video_id: str) -> None:
    assert not (store / video_id).exists()
    assert [p.name for p in store.iterdir() if p.name != ".uploads"] == []  # no .tmp-* build left behind
    assert list((store / ".uploads").iterdir()) == []  # the staged upload was deleted


async def test_uploads_are_disabled_without_a_token(store: Path) -> None:
    async with _client(ServeConfig(store=store)) as c:
        r = await c.post("/videos", files={"file": ("a.mp4", b"x")}, headers=AUTH)
        assert r.status_code == 503
        assert "--admin-token" in r.json()["detail"]


@pytest.mark.parametrize("auth", [None, "Bearer wrong", f"Basic {TOKEN}", "Bearer", f"Bearer {TOKEN}x"])
async def test_missing_or_wrong_token_is_401(
    client: httpx.AsyncClient, store: Path, auth: str | None
) -> None:
    headers = {"authorization": auth} if auth else {}
    r = await client.post("/videos", files={"file": ("a.mp4", b"x")}, headers=headers)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert TOKEN not in r.text
    assert list((store / ".uploads").iterdir()) == []


async def test_too_large_upload_is_413_and_nothing_is_kept(client: httpx.AsyncClient, store: Path) -> None:
    r = await client.post("/videos", files={"file": ("big.mp4", b"\0" * 2_000_001)}, headers=AUTH)
    assert r.status_code == 413
    assert "2000000" in r.json()["detail"]
    _nothing_left(store, "big")


async def test_declared_length_over_the_limit_is_refused_before_reading(client: httpx.AsyncClient) -> None:
    headers = {**AUTH, "content-type": "multipart/form-data; boundary=x", "content-length": "999999999"}
    r = await client.post("/videos", content=b"--x--\r\n", headers=headers)
    assert r.status_code == 413


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_chunked_body_over_the_limit_is_refused(client: httpx.AsyncClient, store: Path) -> None:
    # No Content-Length, and the file part itself is tiny: thousands of small form fields must
    # still count against the limit (2 MB file + 1 MiB of framing here).
    field = b'--xyz\r\nContent-Disposition: form-data; name="id"\r\n\r\n' + b"a" * 1000 + b"\r\n"
    tail = b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.mp4"\r\n\r\nx\r\n--xyz--\r\n'
    headers = {**AUTH, "content-type": "multipart/form-data; boundary=xyz"}
    r = await client.post("/videos", content=_chunks(*[field] * 4000, tail), headers=headers)
    assert r.status_code == 413
    assert list((store / ".uploads").iterdir()) == []


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"content": b"raw bytes", "headers": {"content-type": "video/mp4"}}, "multipart/form-data"),
        ({"data": {"id": "x"}, "files": {"other": ("a", b"x")}}, "unexpected form field"),
        ({"data": {"id": "../etc"}, "files": {"file": ("a.mp4", b"x")}}, "id '../etc' is not valid"),
        ({"data": {"segment_seconds": "12"}, "files": {"file": ("a.mp4", b"x")}}, "segment_seconds"),
        ({"data": {"segment_seconds": "two"}, "files": {"file": ("a.mp4", b"x")}}, "segment_seconds"),
        ({"data": {"ladder": "huge"}, "files": {"file": ("a.mp4", b"x")}}, "ladder"),
        ({"files": {"id": (None, "x")}}, "no 'file' part"),
        ({"data": {"id": "x"}}, "multipart/form-data"),
    ],
)
async def test_bad_requests_are_400(
    client: httpx.AsyncClient, store: Path, kwargs: dict[str, Any], needle: str
) -> None:
    headers = {**AUTH, **kwargs.pop("headers", {})}
    r = await client.post("/videos", headers=headers, **kwargs)
    assert r.status_code == 400, r.text
    assert needle in r.json()["detail"]
    assert list((store / ".uploads").iterdir()) == []


async def test_truncated_multipart_body_is_400(client: httpx.AsyncClient, store: Path) -> None:
    body = (
        b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.mp4"\r\n\r\npartial video bytes'
    )
    headers = {**AUTH, "content-type": "multipart/form-data; boundary=xyz"}
    r = await client.post("/videos", content=body, headers=headers)
    assert r.status_code == 400
    assert "truncated" in r.json()["detail"]
    assert list((store / ".uploads").iterdir()) == []


async def test_unknown_job_is_404(client: httpx.AsyncClient) -> None:
    assert (await client.get("/jobs/nope")).status_code == 404


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("My Clip.mp4", "My-Clip"),
        ("../../etc/passwd", "passwd"),
        ("...", "upload-j1"),
        (None, "upload-j1"),
        (".hidden.mov", "hidden"),
    ],
)
def test_default_video_id(filename: str | None, expected: str) -> None:
    assert default_video_id(filename, "j1") == expected


async def test_upload_is_packaged_and_served(client: httpx.AsyncClient, store: Path, clip: Path) -> None:
    with clip.open("rb") as f:
        r = await client.post(
            "/videos",
            headers=AUTH,
            data={"id": "up1", "segment_seconds": "2", "ladder": "144p:200k"},
            files={"file": ("clip.mp4", f, "video/mp4")},
        )
    assert r.status_code == 202, r.text
    accepted = r.json()
    assert accepted["state"] in ("queued", "running")
    assert accepted["video_id"] == "up1"
    assert r.headers["location"] == accepted["url"] == f"/jobs/{accepted['job']}"
    job = await _wait_job(client, accepted["url"])
    assert job["state"] == "succeeded", job
    assert job["progress"] == 1.0
    assert job["error"] is None
    assert job["manifest"] == "/videos/up1/manifest.mpd"
    mpd = await client.get("/videos/up1/manifest.mpd")
    assert mpd.status_code == 200
    assert b"<MPD" in mpd.content
    assert [v["id"] for v in (await client.get("/videos")).json()["videos"]] == ["up1"]
    assert list((store / ".uploads").iterdir()) == []
    metrics = (await client.get("/metrics")).text
    assert 'cdn_origin_jobs_finished_total{state="succeeded"} 1.0' in metrics
    assert 'cdn_origin_jobs{state="succeeded"} 1.0' in metrics


@pytest.mark.parametrize("kind", ["not-a-video", "truncated", "empty"])
async def test_bad_video_ends_as_a_failed_job_with_nothing_published(
    client: httpx.AsyncClient, store: Path, clip: Path, kind: str
) -> None:
    data = {
        "not-a-video": b"this is plain text, not a video\n" * 100,
        "truncated": (await anyio.Path(clip).read_bytes())[:20_000],
        "empty": b"",
    }[kind]
    r = await client.post(
        "/videos", headers=AUTH, data={"id": "bad", "segment_seconds": "2"}, files={"file": ("bad.mp4", data)}
    )
    assert r.status_code == 202, r.text
    job = await _wait_job(client, r.json()["url"])
    assert job["state"] == "failed", job
    assert job["error"]
    assert "internal error" not in job["error"]
    assert "bad.mp4" in job["error"]
    assert ".upload" not in job["error"]
    assert job["manifest"] is None
    _nothing_left(store, "bad")
    assert (await client.get("/videos/bad/manifest.mpd")).status_code == 404


class GatedPackager:
    """A stand-in packager for queue tests: reports half progress, then waits for the test to release it."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.running = 0
        self.max_running = 0
        self.calls: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, input_path: Path, *, video_id: str, progress: Any = None, **_: Any) -> None:
        with self.lock:
            self.running += 1
            self.max_running = max(self.max_running, self.running)
            self.calls.append(video_id)
        try:
            assert input_path.is_file()
            if progress is not None:
                progress(PackagingProgress(fraction=0.5))
            if not self.release.wait(30):
                raise TimeoutError("the test never released the packager")
            if video_id == "crash":
                raise RuntimeError("boom")
        finally:
            with self.lock:
                self.running -= 1


async def _post(client: httpx.AsyncClient, video_id: str) -> httpx.Response:
    return await client.post("/videos", headers=AUTH, data={"id": video_id}, files={"file": ("v.mp4", b"x")})


async def test_jobs_run_one_at_a_time_and_the_queue_is_bounded(store: Path) -> None:
    packager = GatedPackager()
    app = create_app(ServeConfig(store=store, admin_token=TOKEN, max_queued_jobs=1), package_fn=packager)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://origin.test") as client:
            first = (await _post(client, "crash")).json()
            job = await _poll(
                client, first["url"], lambda j: j["state"] == "running" and j["progress"] == 0.5
            )
            assert job["started"] is not None
            second = (await _post(client, "second")).json()
            assert second["state"] == "queued"
            third = await _post(client, "third")
            assert third.status_code == 503
            assert third.headers["retry-after"] == "10"
            packager.release.set()
            done = await _wait_job(client, second["url"])
            assert done["state"] == "succeeded"
            job = (await client.get(first["url"])).json()
            assert job["state"] == "failed"
            assert job["error"] == "internal error: RuntimeError: boom"
    assert packager.calls == ["crash", "second"]
    assert packager.max_running == 1
    assert list((store / ".uploads").iterdir()) == []
