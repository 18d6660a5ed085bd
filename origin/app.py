"""The origin's HTTP API (FastAPI): packaged videos, the catalogue, uploads, jobs, health and metrics.

`create_app(config)` builds an app that serves `STORE/ID/<file>` under `/videos/ID/<file>` with the
HTTP semantics decided in `origin.httpfiles`. The file lookup (resolve, open, fstat, plan, and for
small files the read) is one thread hop; bigger bodies stream in `config.read_size` reads. Any name
outside the safe alphabet, any path resolving outside the store, any non-regular file gives 404.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect

from origin.catalog import read_catalog, read_entry
from origin.config import ServeConfig
from origin.httpfiles import (
    CORS_HEADERS,
    Conditions,
    FileStat,
    ResponsePlan,
    file_kind,
    is_valid_file_name,
    is_valid_video_id,
    plan_file_response,
)
from origin.jobs import JobManager, PackageFn, QueueFull
from origin.metrics import CONTENT_TYPE_LATEST, MetricsMiddleware, OriginMetrics
from origin.upload import Unauthorized, UploadError, check_authorization, parse_upload_options, receive_upload

__all__ = ["create_app"]

_NO_STORE = {"cache-control": "no-store"}
_PREFLIGHT_ROUTE = SimpleNamespace(path="(preflight)")
_ALLOWED_HEADERS = "Authorization, Content-Type, Range, If-Match, If-None-Match, If-Modified-Since, If-Range"


@dataclass(frozen=True, slots=True)
class Opened:
    """Result of the lookup hop: the plan, and either prefetched bytes or an open fd to stream from."""

    plan: ResponsePlan
    fd: int | None = None
    data: bytes = b""


def lookup_file(
    store_real: str, video_id: str, name: str, method: str, cond: Conditions, config: ServeConfig
) -> Opened | None:
    """Resolve, open and plan one stored file (blocking: run in a thread); None means 404."""
    real = os.path.realpath(os.path.join(store_real, video_id, name))
    if not real.startswith(store_real + os.sep):
        return None  # a symlink (of the folder or the file) that leaves the store
    try:
        fd = os.open(real, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        kind = file_kind(name)
        if not stat.S_ISREG(st.st_mode) or kind is None:
            os.close(fd)
            return None
        plan = plan_file_response(
            method,
            cond,
            FileStat(st.st_size, st.st_mtime_ns, st.st_ino),
            kind,
            manifest_max_age=config.manifest_max_age,
            chunk_max_age=config.chunk_max_age,
        )
        if plan.body is None or plan.body.length <= config.read_size:
            data = os.pread(fd, plan.body.length, plan.body.start) if plan.body else plan.text
            os.close(fd)
            return Opened(plan, None, data)
        return Opened(plan, fd)
    except BaseException:
        os.close(fd)
        raise


class FileBodyResponse(Response):
    """Carries out a ResponsePlan: headers, then the prefetched bytes or the file range in reads."""

    def __init__(self, opened: Opened, read_size: int) -> None:
        self.opened = opened
        self.read_size = read_size
        self.status_code = opened.plan.status
        self.background = None
        self.raw_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in opened.plan.headers]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        fd = self.opened.fd
        if fd is None:
            await send({"type": "http.response.body", "body": self.opened.data, "more_body": False})
            return
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._cancel_on_disconnect, receive, tg.cancel_scope)
                await self._stream(fd, send)
                tg.cancel_scope.cancel()
        finally:
            os.close(fd)

    @staticmethod
    async def _cancel_on_disconnect(receive: Any, scope: anyio.CancelScope) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        scope.cancel()  # the client went away: stop reading the file

    async def _stream(self, fd: int, send: Any) -> None:
        body = self.opened.plan.body
        assert body is not None
        pos = body.start
        while pos < body.stop:
            chunk = await anyio.to_thread.run_sync(os.pread, fd, min(self.read_size, body.stop - pos), pos)
            if not chunk:
                raise RuntimeError(f"file shrank while being sent: got {pos} of {body.stop} bytes")
            pos += len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": pos < body.stop})


class CORSMiddleware:
    """Adds `Access-Control-Allow-Origin: *` (and exposed headers) to every response; answers OPTIONS.

    Always sending the headers (not only when the request has an Origin) keeps one cacheable
    response per URL at the edges, with no Vary: Origin.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.cors = [(k.encode(), v.encode()) for k, v in CORS_HEADERS]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS":
            scope["route"] = _PREFLIGHT_ROUTE
            await self._preflight(send)
            return

        async def send_with_cors(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self.cors]}
            await send(message)

        await self.app(scope, receive, send_with_cors)

    async def _preflight(self, send: Any) -> None:
        headers = [
            *self.cors,
            (b"access-control-allow-methods", b"GET, HEAD, POST, OPTIONS"),
            (b"access-control-allow-headers", _ALLOWED_HEADERS.encode()),
            (b"access-control-max-age", b"86400"),
            (b"allow", b"GET, HEAD, POST, OPTIONS"),
            (b"content-length", b"0"),
        ]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})


def _conditions(headers: Headers) -> Conditions:
    def joined(name: str) -> str | None:
        values = headers.getlist(name)
        return ", ".join(values) if values else None

    return Conditions(
        if_match=joined("if-match"),
        if_none_match=joined("if-none-match"),
        if_modified_since=headers.get("if-modified-since"),
        if_unmodified_since=headers.get("if-unmodified-since"),
        if_range=headers.get("if-range"),
        range=joined("range"),
    )


def _clean_staging(staging: Path) -> None:
    """Create the staging folder and delete uploads a previous run left behind."""
    staging.mkdir(parents=True, exist_ok=True)
    for leftover in staging.glob("*.upload"):
        leftover.unlink(missing_ok=True)


def create_app(config: ServeConfig, *, package_fn: PackageFn | None = None) -> FastAPI:
    """Build the origin app for `config` (`package_fn` defaults to origin.packager.package)."""
    metrics = OriginMetrics()
    jobs = JobManager(
        config.store,
        package_fn=package_fn,
        max_queued=config.max_queued_jobs,
        on_finished=metrics.job_finished,
    )
    metrics.watch_jobs(jobs.counts)
    store_real = os.path.realpath(config.store)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(_clean_staging, config.staging_dir)
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(jobs.close)

    app = FastAPI(
        title="pycdn origin",
        lifespan=lifespan,
        redirect_slashes=False,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.config, app.state.jobs, app.state.metrics = config, jobs, metrics
    not_found = {"cache-control": f"public, max-age={config.manifest_max_age}"}

    @app.api_route("/videos/{video_id}/{name}", methods=["GET", "HEAD"])
    async def video_file(request: Request, video_id: str, name: str) -> Response:
        if not (is_valid_video_id(video_id) and is_valid_file_name(name)):
            return JSONResponse({"detail": "not found"}, status_code=404, headers=not_found)
        opened = await anyio.to_thread.run_sync(
            lookup_file, store_real, video_id, name, request.method, _conditions(request.headers), config
        )
        if opened is None:
            return JSONResponse({"detail": "not found"}, status_code=404, headers=not_found)
        return FileBodyResponse(opened, config.read_size)

    @app.get("/videos")
    async def catalogue() -> Response:
        entries = await anyio.to_thread.run_sync(read_catalog, config.store)
        return JSONResponse(
            {"videos": [e.to_json() for e in entries]},
            headers={"cache-control": f"public, max-age={config.manifest_max_age}"},
        )

    @app.get("/videos/{video_id}")
    async def catalogue_entry(video_id: str) -> Response:
        entry = await anyio.to_thread.run_sync(read_entry, config.store, video_id)
        if entry is None:
            return JSONResponse({"detail": f"no video {video_id!r}"}, status_code=404, headers=not_found)
        return JSONResponse(
            entry.to_json(), headers={"cache-control": f"public, max-age={config.manifest_max_age}"}
        )

    @app.post("/videos")
    async def upload(request: Request) -> Response:
        return await _upload(request, config, jobs)

    @app.get("/jobs/{job_id}")
    async def job_status(job_id: str) -> Response:
        job = jobs.get(job_id)
        if job is None:
            return JSONResponse({"detail": f"no job {job_id!r}"}, status_code=404, headers=_NO_STORE)
        return JSONResponse(job.to_json(), headers=_NO_STORE)

    @app.get("/healthz")
    async def healthz() -> Response:
        store_ok = await anyio.to_thread.run_sync(os.path.isdir, store_real)
        body = {
            "status": "ok" if store_ok else "store-missing",
            "role": "origin",
            "uploads": config.uploads_enabled,
            "jobs": dict(jobs.counts()),
        }
        return JSONResponse(body, status_code=200 if store_ok else 503, headers=_NO_STORE)

    @app.get("/metrics")
    async def metrics_text() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST, headers=_NO_STORE)

    app.add_middleware(CORSMiddleware)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


async def _upload(request: Request, config: ServeConfig, jobs: JobManager) -> Response:
    """POST /videos: authorise, stream the multipart body to staging, queue the packaging job."""
    job_id = secrets.token_hex(8)
    staged = config.staging_dir / f"{job_id}.upload"
    try:
        check_authorization(request.headers.get("authorization"), config.admin_token)
        if not jobs.has_room():
            raise QueueFull("too many uploads are waiting to be packaged; retry later")
        await anyio.to_thread.run_sync(lambda: config.staging_dir.mkdir(parents=True, exist_ok=True))
        sink = await receive_upload(
            request.stream(),
            content_type=request.headers.get("content-type"),
            content_length=request.headers.get("content-length"),
            dest=staged,
            max_file_bytes=config.max_upload_bytes,
        )
        try:
            options = parse_upload_options(sink.fields, sink.filename, job_id)
            job = jobs.submit(
                job_id=job_id,
                video_id=options.video_id,
                staged=staged,
                segment_seconds=options.segment_seconds,
                ladder=options.ladder,
                source_name=sink.filename,
            )
        except BaseException:
            staged.unlink(missing_ok=True)
            raise
    except UploadError as exc:
        headers = {**_NO_STORE, "connection": "close"}
        if isinstance(exc, Unauthorized):
            headers["www-authenticate"] = 'Bearer realm="cdn-origin"'
        return JSONResponse({"detail": str(exc)}, status_code=exc.status, headers=headers)
    except QueueFull as exc:
        return JSONResponse(
            {"detail": str(exc)},
            status_code=503,
            headers={**_NO_STORE, "retry-after": "10", "connection": "close"},
        )
    except ClientDisconnect:
        return JSONResponse(
            {"detail": "the client disconnected during the upload"},
            status_code=400,
            headers={**_NO_STORE, "connection": "close"},
        )
    return JSONResponse(
        {**job.to_json()}, status_code=202, headers={**_NO_STORE, "location": f"/jobs/{job.id}"}
    )
