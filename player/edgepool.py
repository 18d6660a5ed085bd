"""The resolved edges of each CDN host, minus the ones that failed recently.

The fetcher asks `EdgePool.pick(host)` for an address before each attempt and reports a failed
edge with `fail`. An answer is reused for its TTL; a failed edge is left out of the picks for
`FAILED_HOLD_SECONDS` and makes the next pick resolve again (the router may have noticed too).
When every answer failed recently the pool asks again and, if the router still names only those,
tries them anyway. When the DNS cannot answer, the expired answer is kept (RFC 8767 serve-stale)
and asked again only every `STALE_RETRY_SECONDS`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from player.resolve import Resolution, ResolveError, Resolver

__all__ = ["FAILED_HOLD_SECONDS", "STALE_RETRY_SECONDS", "EdgePool"]

FAILED_HOLD_SECONDS = 30.0  # how long a failed edge stays excluded from the answers
STALE_RETRY_SECONDS = 5.0  # how long an expired answer is reused before asking a silent DNS again


class EdgePool:
    """The resolved addresses of each host, minus the edges that failed recently."""

    def __init__(self, resolver: Resolver, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.resolver = resolver
        self.clock = clock
        self._answers: dict[str, tuple[Resolution, float]] = {}  # host -> (resolution, expires at)
        self._failed: dict[str, dict[str, float]] = {}  # host -> {ip: failed at}

    def pick(self, host: str) -> str:
        """An address for `host`: re-resolve when the TTL ran out, skip failed edges; raise ResolveError."""
        now = self.clock()
        cached = self._answers.get(host)
        if cached is None or now >= cached[1]:
            cached = self._refresh(host, now, cached)
        candidates = cached[0].without(self._recent_failures(host, now)).addresses
        if not candidates:
            # Every answer failed recently: ask again (the router may have noticed), then try them anyway.
            fresh = self._refresh(host, now, cached)[0]
            candidates = fresh.without(self._recent_failures(host, now)).addresses or fresh.addresses
        return candidates[0].ip

    def fail(self, host: str, ip: str) -> None:
        """Exclude `ip` for a while and make the next pick re-resolve `host`."""
        self._failed.setdefault(host, {})[ip] = self.clock()
        if host in self._answers:
            self._answers[host] = (self._answers[host][0], float("-inf"))

    def _recent_failures(self, host: str, now: float) -> set[str]:
        failed = self._failed.get(host, {})
        return {ip for ip, at in failed.items() if now - at < FAILED_HOLD_SECONDS}

    def _refresh(
        self, host: str, now: float, stale: tuple[Resolution, float] | None
    ) -> tuple[Resolution, float]:
        """Resolve again; when the DNS cannot answer, keep using the expired answer (RFC 8767 serve-stale)."""
        try:
            return self._resolve(host, now)
        except ResolveError:
            if stale is None:
                raise
            entry = (stale[0], now + STALE_RETRY_SECONDS)  # do not pay a DNS timeout on every request
            self._answers[host] = entry
            return entry

    def _resolve(self, host: str, now: float) -> tuple[Resolution, float]:
        resolution = self.resolver.resolve(host)
        entry = (resolution, now + resolution.ttl)
        self._answers[host] = entry
        return entry
