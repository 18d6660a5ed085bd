"""The HTTP side port: `/explain`, `/metrics`, `/healthz` and the HTTP redirect mode (`/videos/...` -> 302).

`HttpApp.handle(method, target, headers, peer)` is pure request -> (status, headers, body) over the
router's state; `HttpApp.respond` first collects the other worker processes' counters when the request
is for /metrics. `serve_http` is a minimal HTTP/1.1 shell on asyncio streams (one request per
connection, `Connection: close`), so the side port shares the DNS server's event loop.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

import dns.exception
import dns.name
import dns.rcode
import dns.rdatatype

from cdn.topology import Topology
from dnsrouter.answer import Responder
from dnsrouter.geo import Located
from dnsrouter.metrics import NO_WORKERS, WorkerCounters, render
from dnsrouter.policy import Decision

__all__ = ["HttpApp", "serve_http"]

log = logging.getLogger("dnsrouter.http")
Response = tuple[int, dict[str, str], bytes]
REASONS = {200: "OK", 302: "Found", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}
MAX_HEAD = 16384


def _json(status: int, data: object) -> Response:
    return status, {"content-type": "application/json"}, json.dumps(data, indent=2).encode() + b"\n"


def _error(status: int, message: str) -> Response:
    return _json(status, {"error": message})


class HttpApp:
    """Routes side-port requests to explain, metrics, health and redirect handlers."""

    def __init__(
        self,
        topology: Topology,
        responder: Responder,
        details: Callable[[], Mapping[str, Mapping[str, float]]],
        *,
        workers: Callable[[], Awaitable[WorkerCounters]] | None = None,
    ) -> None:
        self.topology, self.responder, self.details = topology, responder, details
        self.workers = workers  # collects the extra worker processes' counters (None: no extra workers)

    async def respond(self, method: str, target: str, headers: Mapping[str, str], peer: str) -> Response:
        """`handle`, after collecting the extra workers' counters when the request is GET/HEAD /metrics."""
        others = NO_WORKERS
        if self.workers is not None and method in ("GET", "HEAD") and urlsplit(target).path == "/metrics":
            others = await self.workers()
        return self.handle(method, target, headers, peer, workers=others)

    def handle(
        self, method: str, target: str, headers: Mapping[str, str], peer: str, *,
        workers: WorkerCounters = NO_WORKERS,
    ) -> Response:  # fmt: skip
        """Answer one request; `headers` have lower-case names; `workers` are added into /metrics."""
        if method not in ("GET", "HEAD"):
            return _error(405, f"{method} is not supported here; use GET")
        url = urlsplit(target)
        if url.path == "/healthz":
            return _json(200, {"status": "ok", "generation": self.responder.router.generation})
        if url.path == "/metrics":
            own = self.responder.metrics.snapshot()
            text = render(own, self.responder.router.states, self.details(), workers)
            return 200, {"content-type": "text/plain; version=0.0.4"}, text.encode()
        if url.path == "/explain":
            return self.explain(parse_qs(url.query))
        if url.path.startswith("/videos/"):
            return self.redirect(target, headers, peer)
        return _error(404, f"no route for {url.path}; try /explain?ip=IP&name=NAME, /metrics or /videos/...")

    def explain(self, query: Mapping[str, list[str]]) -> Response:
        """The whole routing decision for `ip` (and the DNS answer for `name`) as JSON."""
        ip = (query.get("ip") or [""])[0]
        name = (query.get("name") or [self.topology.zone.routed[0] if self.topology.zone.routed else ""])[0]
        try:
            located = self.responder.locate_address(ip)
        except ValueError:
            return _error(
                400, f"ip={ip!r} is not an IP address; call /explain?ip=127.10.1.5&name=video.cdn.test"
            )
        decision, _ = self.responder.router.decide(located)
        result = _decision_json(decision, self.details())
        result["ip"], result["name"] = ip, name
        result["dns"] = self._lookup_json(name, decision)
        return _json(200, result)

    def _lookup_json(self, name: str, decision: Decision) -> dict[str, Any]:
        try:
            qname = dns.name.from_text(name)
        except dns.exception.DNSException as exc:
            return {"error": f"{name!r} is not a DNS name: {exc}"}
        out: dict[str, Any] = {}
        for rtype in ("A", "AAAA"):
            lookup = self.responder.zones.lookup(
                qname, dns.rdatatype.from_text(rtype), lambda f: tuple(e.address for e in decision.chosen(f))
            )
            out[rtype] = {
                "rcode": dns.rcode.to_text(dns.rcode.Rcode(lookup.rcode)),
                "answer": [line for rrset in lookup.answer for line in rrset.to_text().splitlines()],
            }
        return out

    def redirect(self, target: str, headers: Mapping[str, str], peer: str) -> Response:
        """302 to the chosen edge when Host is one of our routed names (HTTP redirect mode)."""
        host = headers.get("host", "").rsplit(":", 1)[0] if "]" not in headers.get("host", "") else ""
        try:
            qname = dns.name.from_text(host or ".")
        except dns.exception.DNSException:
            return _error(400, f"Host {host!r} is not a DNS name")
        client = self.client_address(headers, peer)
        decided: list[Decision] = []

        def route(family: int) -> tuple[str, ...]:
            decided.append(self.responder.router.decide(self.responder.locate_address(client))[0])
            return tuple(e.address for e in decided[-1].chosen(family))

        lookup = self.responder.zones.lookup(qname, dns.rdatatype.A, route)
        if not lookup.routed or not decided:
            return _error(404, f"Host {host!r} is not a routed name of this CDN")
        decision = decided[-1]
        edges = decision.chosen_v4 or decision.chosen_v6
        if not edges:
            return _error(404, "no edge to redirect to")
        log.info("redirect client=%s host=%s to %s", client, host, edges[0].name)
        return 302, {"location": edges[0].url + target, "cache-control": "no-store"}, b""

    def client_address(self, headers: Mapping[str, str], peer: str) -> str:
        """The peer, or the last X-Forwarded-For hop not in `dns.trusted_proxies` when the peer is trusted."""
        trusted = self.topology.dns.trusted_proxies
        hops = [h.strip() for h in headers.get("x-forwarded-for", "").split(",") if h.strip()]
        address = peer
        while hops and _in(address, trusted):
            address = hops.pop()
        return address


def _in(address: str, networks: tuple[Any, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in n for n in networks)


def _located_json(loc: Located) -> dict[str, Any]:
    where = {"lat": loc.location.lat, "lon": loc.location.lon} if loc.location else None
    return {"by": loc.by.value, "via": loc.via.value, "network": loc.network, "scope": loc.scope,
            "region": loc.region, "location": where}  # fmt: skip


def _decision_json(decision: Decision, details: Mapping[str, Mapping[str, float]]) -> dict[str, Any]:
    candidates = [
        {
            "edge": c.edge.name,
            "region": c.edge.region,
            "address": c.edge.address,
            "port": c.edge.port,
            "distance_km": round(c.distance_km, 1),
            "health": c.state.health.value,
            "overloaded": c.state.overloaded,
            "load": dict(details.get(c.edge.name, {})),
        }  # fmt: skip
        for c in decision.candidates
    ]
    chosen = [e.name for e in (*decision.chosen_v4, *decision.chosen_v6)]
    return {"located": _located_json(decision.located), "candidates": candidates, "chosen": chosen,
            "degraded": decision.degraded}  # fmt: skip


async def _read_head(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str]] | None:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
    if len(head) > MAX_HEAD:
        return None
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return None
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return parts[0], parts[1], headers


def _encode(status: int, headers: dict[str, str], body: bytes, *, head_only: bool) -> bytes:
    lines = [
        f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}",
        f"content-length: {len(body)}",
        "connection: close",
    ]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if head_only else body)


async def serve_http(app: HttpApp, host: str, port: int) -> asyncio.Server:
    """Start the side-port server; one request per connection."""

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = (writer.get_extra_info("peername") or ("", 0))[0]
        try:
            request = await _read_head(reader)
            if request is None:
                writer.write(_encode(*_error(400, "malformed HTTP request"), head_only=False))
            else:
                method, target, headers = request
                status, out_headers, body = await app.respond(method, target, headers, peer)
                writer.write(_encode(status, out_headers, body, head_only=method == "HEAD"))
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        except Exception:
            log.exception("internal error on the HTTP side port")
        finally:
            writer.close()

    return await asyncio.start_server(on_connection, host, port, limit=MAX_HEAD)
