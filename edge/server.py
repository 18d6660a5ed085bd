"""The edge server: routes requests, answers hits from memory or disk, and streams fills.

`EdgeServer` owns the store, the upstream chain, the filler and the metrics, and implements the
`Handler` the connections call. A fresh hit in the memory tier is answered synchronously
(`try_fast`): a cached head (with the stored Date), the Age line, then the body in one `transport.write`.
Everything else (disk reads, misses, revalidation, stale-on-error, admin) runs in `handle`.
Stored entries are answered by `edge.responder.EntryResponder` (bodies verified; an entry above
`--large-object` never enters memory whole: it is streamed from its file block by block).
An entry or a fill is used for a request only when it is the variant that request selects
(`edge.vary`, RFC 9111 §4.1): the store keeps up to `--max-variants` per URL, and another
variant is a miss whose fill stores a variant of its own; concurrent requests of one variant share
one fill. A HEAD with no stored variant and no fill in flight serving it is forwarded upstream as a
HEAD (X-Cache PASS; concurrent ones share one) and never fills: players probe the sizes of chunks
they may never fetch.
With `--tls-cert/--tls-key` the port speaks TLS only (`edge.tls.TlsListener`); the rest is the same.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from typing import Any

from edge import responses
from edge.admin import handle_admin, health
from edge.cachecontrol import Decision, decide, stale_if_error_ok
from edge.cachekey import cache_key
from edge.config import EdgeConfig
from edge.entry import Entry
from edge.errors import BadPathError, RequestError, UpstreamError
from edge.fill import Fill, FillOutcome
from edge.filler import Filler
from edge.http import HttpConnection, Request
from edge.metrics import CacheStatus, Metrics, RateMeter, TlsCounters, UpstreamCounters
from edge.responder import EntryResponder
from edge.spool import Spooler
from edge.store import Store
from edge.tls import TlsListener, server_tls_context
from edge.upstream import UpstreamChain, UpstreamPool, client_tls_context
from edge.vary import Forwarded, forwarded, matches

__all__ = ["EdgeServer"]

log = logging.getLogger("edge.server")

_KEY_CACHE = 4096
_COALESCE_WRITE = 64 * 1024  # bodies up to this size go out in the same write as the head
_BACKLOG = 2048


class EdgeServer:
    """One edge cache listening on `config.listen`."""

    def __init__(self, config: EdgeConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.header_timeout = config.header_timeout
        self.keepalive_timeout = config.keepalive_timeout
        self.max_header_bytes = config.max_header_bytes
        self.tls = _viewer_tls(config)  # first: a bad certificate or key stops the edge before anything else
        self.store = Store(
            config.cache_dir,
            capacity=config.cache_size,
            memory_capacity=config.memory_cache,
            max_variants=config.max_variants,
        )
        pools = [config.parent, config.origin] if config.parent else [config.origin]
        tls = _upstream_tls(config)
        self.upstream = UpstreamChain(
            [
                UpstreamPool(
                    url,
                    connect_timeout=config.upstream_connect_timeout,
                    read_timeout=config.upstream_read_timeout,
                    tls=tls,
                )
                for url in pools
                if url is not None
            ]
        )
        self.spooler = Spooler(config.large_object, self.store.body_path)
        self.filler = Filler(
            self.upstream, self.store, clock=clock, negative_ttl=config.negative_ttl, spooler=self.spooler
        )
        self.metrics = Metrics()
        self.responder = EntryResponder(self)
        self.rate = RateMeter()
        self.via = f"1.1 {config.name}"
        self.connections: set[HttpConnection] = set()
        self._server: asyncio.Server | None = None
        self._listener: TlsListener | None = None
        self._sampler: asyncio.TimerHandle | None = None
        self._keys: dict[str, str] = {}
        self._last_sample = 0.0
        # the sweeper's period: fine enough for the header deadline, at most a second
        self._tick = max(0.05, min(1.0, config.header_timeout / 4, config.keepalive_timeout / 4))

    # -- life cycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Rebuild the cache index and start listening (port 0 picks a free port)."""
        loop = asyncio.get_running_loop()
        report = await loop.run_in_executor(None, self.store.open)
        log.info(
            "cache index: %d entries, %d bytes, %d leftovers removed",
            report.entries,
            report.bytes,
            report.removed,
        )
        host, port = self.config.listen.host, self.config.listen.port
        if self.tls is None:
            self._server = await loop.create_server(
                lambda: HttpConnection(self), host, port, backlog=_BACKLOG
            )
        else:
            # the handshake is part of the request deadline: a client stalling in it is a slowloris too
            self._listener = TlsListener(
                lambda: HttpConnection(self), self.tls, handshake_timeout=self.header_timeout
            )
            await self._listener.start(host, port, backlog=_BACKLOG)
        self._sample()

    @property
    def port(self) -> int:
        """The port actually bound."""
        if self._listener is not None:
            return int(self._listener.sockets[0].getsockname()[1])
        assert self._server is not None, "call start() first"
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def tls_counters(self) -> TlsCounters | None:
        """Handshakes done and failed on the TLS port; None when the edge serves plain HTTP."""
        if self._listener is None:
            return None
        return TlsCounters(handshakes=self._listener.handshakes, failures=self._listener.failures)

    async def close(self) -> None:
        """Stop listening, drop connections, cancel fills, close upstream connections."""
        if self._sampler is not None:
            self._sampler.cancel()
        if self._server is not None:
            self._server.close()
        if self._listener is not None:
            await self._listener.close()
        for conn in list(self.connections):
            conn.abort()
        await self.filler.close()
        self.upstream.close()
        if self._server is not None:
            await self._server.wait_closed()

    def _sample(self) -> None:
        """Every tick: close timed-out connections; about once a second: sample bytes served."""
        now = time.monotonic()
        for conn in list(self.connections):
            conn.check_timeouts(now)
        if now - self._last_sample >= 1.0:
            self._last_sample = now
            self.rate.sample(now, self.metrics.bytes_served)
        self._sampler = asyncio.get_running_loop().call_later(self._tick, self._sample)

    def connection_opened(self, conn: HttpConnection) -> None:
        self.connections.add(conn)

    def connection_closed(self, conn: HttpConnection) -> None:
        self.connections.discard(conn)

    # -- fast path ---------------------------------------------------------------------------

    def _key(self, target: str) -> str:
        key = self._keys.get(target)
        if key is None:
            key = cache_key(target)
            if len(self._keys) >= _KEY_CACHE:
                self._keys.clear()
            self._keys[target] = key
        return key

    def try_fast(self, conn: HttpConnection, req: Request) -> bool:
        """Answer a fresh memory-tier hit synchronously; False to take the async path."""
        if req.method not in ("GET", "HEAD") or not req.target.startswith("/videos/"):
            return False
        try:
            key = self._key(req.target)
        except BadPathError:
            return False
        # one dict access for a response without Vary (its slot is the key); variants are looked
        # up by the request's forwarded headers, worked out only then
        entry = self.store.lookup(key) or self.store.find(key, forwarded(req.headers))
        if entry is None:
            return False
        body = self.store.memory_body(entry.slot)
        if body is None:
            return False
        now = self.clock()
        if decide(entry.freshness, now - entry.stored_at) is not Decision.FRESH:
            return False
        if req.plain and req.keep_alive and req.method == "GET":
            # the commonest case, kept to one write and no further calls
            head = entry.rendered.get("HIT") or responses.render_entry(self, entry, "HIT")
            tail = b"Age: %d\r\n\r\n" % int(now - entry.stored_at)
            if len(body) <= _COALESCE_WRITE:
                conn.write(head + tail + body)
            else:
                conn.writelines([head + tail, body])
            self.metrics.served("HIT", len(body), time.perf_counter() - req.started)
            return True
        self.responder.answer(conn, req, entry, body, "HIT", now)
        return True

    # -- async path --------------------------------------------------------------------------

    async def handle(self, conn: HttpConnection, req: Request) -> None:
        """Answer one request that the fast path did not take."""
        self.metrics.inflight += 1
        try:
            path = req.target.partition("?")[0]
            if path == "/healthz":
                self._send_json(conn, req, 200, health(self))
            elif path == "/metrics":
                self._send_metrics(conn, req)
            elif path.startswith("/admin/"):
                status, doc = handle_admin(self, req)
                self._send_json(conn, req, status, doc)
            else:
                await self._proxy(conn, req)
        except RequestError as exc:
            self._send_error(conn, req, exc.status, str(exc))
        finally:
            self.metrics.inflight -= 1

    async def _proxy(self, conn: HttpConnection, req: Request) -> None:
        if req.method not in ("GET", "HEAD"):
            raise RequestError(f"method {req.method} is not allowed; use GET or HEAD", status=405)
        key = self._key(req.target)
        # RFC 9111 §4.1: only the variant the request selects is used (HIT, revalidated, or served
        # stale); another variant of the key is a miss here, and its fill stores a variant of its own
        request = forwarded(req.headers)
        entry = self.store.find(key, request)
        if entry is not None:
            if await self._from_entry(conn, req, entry, request):
                return
            entry = self.store.find(key, request)  # a corrupt body may have removed it
        await self._from_fill(conn, req, key, entry, request)

    async def _probe(self, conn: HttpConnection, req: Request, key: str, request: Forwarded) -> None:
        """A HEAD miss: relay the upstream's HEAD (X-Cache PASS, 0 bytes); no fill, nothing stored.

        Concurrent HEADs for `key` share one upstream HEAD and get its answer (or its error), unless
        the answer varies on a header whose value differs for them: they then share another.
        """
        try:
            probe = await self.filler.probe(key, request)
        except UpstreamError as exc:
            self._send_error(conn, req, exc.status, f"upstream failed: {exc}", [("X-Cache", "PASS")])
            return
        responses.send_probe(self, conn, req, probe, "PASS")
        self.metrics.served("PASS", 0, time.perf_counter() - req.started)

    async def _from_entry(self, conn: HttpConnection, req: Request, entry: Entry, request: Forwarded) -> bool:
        """Serve a FRESH or stale-while-revalidate entry; False when it must be revalidated or refetched."""
        decision = decide(entry.freshness, entry.age(self.clock()))
        if decision is Decision.REVALIDATE:
            return False
        swr = decision is Decision.STALE_WHILE_REVALIDATE
        status: CacheStatus = "STALE" if swr else "HIT"
        if self.responder.large(entry):
            if swr:
                self.filler.revalidate(entry, request)
            return await self.responder.stream(conn, req, entry, status)
        body = await self.responder.body(entry)
        if body is None:
            return False
        if swr:
            self.filler.revalidate(entry, request)
        self.responder.answer(conn, req, entry, body, status)
        return True

    async def _from_fill(
        self, conn: HttpConnection, req: Request, key: str, stale: Entry | None, request: Forwarded
    ) -> None:
        """Answer from a fill of the request's variant: one in flight, else its own (a HEAD then probes).

        `stale` is the request's own variant, if stored. Which variant a fill in flight fetches
        is known only with its head: the request tries the fills in flight in turn
        (`Filler.candidate`), joining the first that serves it (COALESCED, or REVALIDATED from a
        304 to its own variant), and starts a fill of its own when none does (MISS).
        """
        tried: set[Fill] = set()
        while True:
            fill = self.filler.candidate(key, request, tried)
            started = fill is None
            if fill is None:
                if req.method == "HEAD" and stale is None:
                    await self._probe(conn, req, key, request)
                    return
                fill = self.filler.start(key, stale, request)
            elif not tried:
                self.metrics.coalesced_waiters += 1
            tried.add(fill)
            outcome = await asyncio.shield(fill.head)
            if outcome is FillOutcome.NOT_MODIFIED:
                if fill.stale is not None and matches(fill.stale.vary, request):
                    if await self.responder.serve(conn, req, fill.stale, "REVALIDATED"):
                        return
                    stale = None  # dropped as corrupt (or gone): fetch it whole
                elif stale is not None and not matches(stale.vary, request):
                    stale = None  # the 304 changed what our own copy varies on: no longer ours
                continue  # a revalidation of another variant
            if outcome is FillOutcome.FAILED or (fill.status >= 500 and stale is not None):
                await self._on_failure(conn, req, fill, stale)
                return
            if started or fill.serves(request):
                await responses.stream_fill(self, conn, req, fill, "MISS" if started else "COALESCED")
                return
            # private, or varies on a header whose value differs here: try the next fill

    async def _on_failure(self, conn: HttpConnection, req: Request, fill: Fill, stale: Entry | None) -> None:
        """Upstream failed before a usable head: serve stale within the window, else 502/504."""
        err = fill.error or UpstreamError(f"upstream answered {fill.status}")
        if (
            stale is not None
            and stale_if_error_ok(
                stale.freshness, stale.age(self.clock()), default_window=self.config.stale_if_error
            )
            and await self.responder.serve(conn, req, stale, "STALE")
        ):
            return
        self._send_error(conn, req, err.status, f"upstream failed: {err}", [("X-Cache", "MISS")])

    def _send_json(self, conn: HttpConnection, req: Request, status: int, doc: Any) -> None:
        responses.send_simple(self, conn, req, status, responses.json_bytes(doc), "application/json")

    def _send_metrics(self, conn: HttpConnection, req: Request) -> None:
        u = self.upstream
        counters = UpstreamCounters(
            fetches=u.requests,
            bytes_fetched=u.bytes_fetched,
            not_modified=self.filler.stats.not_modified,
            failures=self.filler.stats.failures,
            aborted=self.filler.stats.aborted,
            coalesced_probes=self.filler.stats.probe_waiters,
            fallbacks=u.fallbacks,
            spooled=self.spooler.total,
            spooling=self.spooler.active,
        )
        text = self.metrics.render(self.store.stats(), counters, self.tls_counters).encode()
        responses.send_simple(self, conn, req, 200, text, "text/plain; version=0.0.4; charset=utf-8")

    def _send_error(
        self,
        conn: HttpConnection,
        req: Request,
        status: int,
        message: str,
        extra: list[tuple[str, str]] | None = None,
    ) -> None:
        self.metrics.error(status)
        extra = [*(extra or []), *([("Allow", "GET, HEAD")] if status == 405 else [])]
        responses.send_simple(
            self, conn, req, status, (message + "\n").encode(), "text/plain; charset=utf-8", extra
        )


def _viewer_tls(config: EdgeConfig) -> ssl.SSLContext | None:
    """The TLS context of the viewer port, built once; None for plain HTTP. Raise ConfigError."""
    if config.tls_cert is None or config.tls_key is None:
        return None
    return server_tls_context(config.tls_cert, config.tls_key)


def _upstream_tls(config: EdgeConfig) -> ssl.SSLContext | None:
    """The TLS context of the https upstreams; None when there are none and no --upstream-ca to check.

    Raise ConfigError for a bad --upstream-ca (checked even when every upstream is http: fail early).
    """
    urls = (config.origin, config.parent or "")
    if config.upstream_ca is None and not any(u.startswith("https://") for u in urls):
        return None  # building a context loads the system CAs: about 15 ms spared per http-only edge
    return client_tls_context(config.upstream_ca)
