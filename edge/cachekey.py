"""Pure request-target checks and cache keys: only /videos/... is proxied, never a traversal.

`cache_key(target)` decodes the request target once, rejects traversal (`..`, `.`, encoded
slashes or backslashes, NUL and control characters), collapses repeated slashes, and returns
the normalised path (plus `?query` when present): that string is both the cache key and the
path requested upstream.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote

from edge.errors import BadPathError

__all__ = ["PROXIED_PREFIX", "cache_key"]

PROXIED_PREFIX = "/videos/"
_MAX_TARGET = 4096
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f\\]")
_SAFE = "/-._~!$&'()*+,;=:@"


def cache_key(target: str) -> str:
    """Normalise a request target to its cache key; raise BadPathError (400 or 404)."""
    if len(target) > _MAX_TARGET:
        raise BadPathError(f"request target of {len(target)} characters is too long", status=414)
    raw_path, _, query = target.partition("?")
    if not raw_path.startswith("/"):
        raise BadPathError(f"request target {target[:80]!r} is not an absolute path", status=400)
    if "%2f" in raw_path.lower() or "%5c" in raw_path.lower():
        raise BadPathError(f"encoded slash in {target[:80]!r}", status=400)
    try:
        path = unquote(raw_path, errors="strict") if "%" in raw_path else raw_path
    except UnicodeDecodeError as exc:
        raise BadPathError(f"request target {target[:80]!r} is not UTF-8 once decoded", status=400) from exc
    if _CONTROL_RE.search(path) or _CONTROL_RE.search(query):
        raise BadPathError(f"control character or backslash in {target[:80]!r}", status=400)
    segments = [s for s in path.split("/") if s]
    if any(s in (".", "..") for s in segments):
        raise BadPathError(f"path traversal in {target[:80]!r}", status=400)
    normal = "/" + "/".join(quote(s, safe=_SAFE) for s in segments)
    if path.endswith("/") and segments:
        normal += "/"
    if normal in ("/videos", PROXIED_PREFIX):
        normal = "/videos"  # the catalogue
    elif not normal.startswith(PROXIED_PREFIX):
        raise BadPathError(f"{normal[:80]!r} is not under {PROXIED_PREFIX}", status=404)
    return f"{normal}?{query}" if query else normal
