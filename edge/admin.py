"""The admin plane and the health document, answered by the edge server itself.

Routes (all need `Authorization: Bearer TOKEN`; 401 without it, 403 when the edge has no token):
  POST /admin/purge  JSON `{"path": "/videos/ID/x.m4s"}` | `{"prefix": "/videos/ID/"}` | `{"all": true}`
  GET  /admin/stats  cache statistics JSON
`GET /healthz` (no token) is the contract the DNS router polls. The token is compared in constant
time and never logged.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from edge.cachekey import cache_key
from edge.errors import BadPathError, RequestError

if TYPE_CHECKING:
    from edge.http import Request
    from edge.server import EdgeServer

__all__ = ["Purge", "authorized", "handle_admin", "health", "parse_purge"]


@dataclass(frozen=True, slots=True)
class Purge:
    """What to purge: one key, every key under a prefix, or (both None) everything."""

    key: str | None = None
    prefix: str | None = None

    def matches(self, key: str) -> bool:
        """Does this purge cover `key`?"""
        if self.key is not None:
            return key == self.key
        return self.prefix is None or key.startswith(self.prefix)


def authorized(header: str | None, token: str | None) -> bool:
    """Is `Authorization: Bearer TOKEN` present and right (constant-time comparison)?"""
    if not token or not header:
        return False
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def parse_purge(body: bytes) -> Purge:
    """Parse a purge request body; raise RequestError (400) naming what was wrong."""
    try:
        doc = json.loads(body or b"null")
    except ValueError as exc:
        raise RequestError(f'purge body is not JSON: {exc}; send {{"path": ...}}') from exc
    if not isinstance(doc, dict) or len(doc) != 1:
        raise RequestError('purge body must be one of {"path": P}, {"prefix": P}, {"all": true}')
    if doc.get("all") is True:
        return Purge()
    if isinstance(doc.get("path"), str):
        return Purge(key=_normal(doc["path"]))
    if isinstance(doc.get("prefix"), str):
        prefix = doc["prefix"]
        normal = _normal(prefix)
        return Purge(prefix=normal + "/" if prefix.endswith("/") and not normal.endswith("/") else normal)
    raise RequestError('purge body must be one of {"path": P}, {"prefix": P}, {"all": true}')


def _normal(path: str) -> str:
    try:
        return cache_key(path)
    except BadPathError as exc:
        raise RequestError(f"purge target {path[:80]!r}: {exc}") from exc


def handle_admin(server: EdgeServer, req: Request) -> tuple[int, Any]:
    """Answer an /admin/... request: (status, JSON document)."""
    if not server.config.admin_token:
        return 403, {"error": "admin is disabled: start the edge with --admin-token or CDN_ADMIN_TOKEN"}
    if not authorized(req.headers.get("authorization"), server.config.admin_token):
        return 401, {"error": "missing or wrong bearer token"}
    path = req.target.partition("?")[0]
    if path == "/admin/purge":
        if req.method != "POST":
            return 405, {"error": "use POST /admin/purge"}
        purge = parse_purge(req.body)
        server.filler.purge(purge.matches)
        removed = server.store.purge(key=purge.key, prefix=purge.prefix)
        return 200, {"purged": removed}
    if path == "/admin/stats":
        return 200, stats(server)
    return 404, {"error": f"no admin route {path}; try POST /admin/purge or GET /admin/stats"}


def stats(server: EdgeServer) -> dict[str, Any]:
    """Cache statistics for GET /admin/stats."""
    doc = asdict(server.store.stats())
    doc["requests"] = dict(server.metrics.requests)
    doc["hit_ratio"] = server.metrics.hit_ratio()
    doc["upstream_fetches"] = server.upstream.requests
    doc["inflight_fills"] = server.filler.inflight
    doc["tls"] = server.config.tls
    return doc


def health(server: EdgeServer) -> dict[str, Any]:
    """The /healthz document (contract in docs/architecture.md)."""
    st = server.store.stats()
    return {
        "status": "ok",
        "name": server.config.name,
        "region": server.config.region,
        "inflight": max(0, server.metrics.inflight - 1),  # minus this /healthz request
        "bytes_per_second": round(server.rate.rate(), 1),
        "cache_bytes": st.bytes,
        "cache_capacity_bytes": st.capacity,
        "cache_fill": round(st.bytes / st.capacity, 6) if st.capacity else 0.0,
    }
