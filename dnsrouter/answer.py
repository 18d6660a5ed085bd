"""Bytes in, bytes out: the DNS router's responder, `Responder.handle_wire(wire, peer, transport)`.

Fast path: a response cache keyed by the query's bytes after the ID, the peer's address and the
transport (messages up to MAX_CACHED_QUERY bytes, so garbage cannot fill memory); a hit costs one dict lookup and the ID patched in. It is emptied whenever edge health
changes (the router's `generation`). Miss: the header, question and single OPT record are parsed
by hand (`wire.py`); unusual messages (several additional records, records in the answer or
authority sections) are checked with dnspython. The sections are rendered by dnspython with the
question lower-cased, then the query's own question bytes are spliced back in (same labels, same
offsets), so 0x20 mixed case is echoed byte for byte and compression pointers stay valid.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from typing import Any, Literal

import dns.exception
import dns.message
import dns.name
import dns.renderer

from dnsrouter.errors import MalformedQuery
from dnsrouter.geo import Located, Locator, Via
from dnsrouter.metrics import Metrics
from dnsrouter.policy import Decision, Router
from dnsrouter.wire import (
    FLAG_TC,
    Edns,
    Query,
    build_header,
    build_opt,
    parse_ecs,
    parse_opt,
    parse_query,
    response_flags,
)
from dnsrouter.zone import RCODE_REFUSED, ZoneData

__all__ = ["Responder", "Transport"]

log = logging.getLogger("dnsrouter")
Transport = Literal["udp", "tcp"]
FORMERR, SERVFAIL, NOTIMP, BADVERS = 1, 2, 4, 16
CLASS_IN, CLASS_ANY = 1, 255
ZONE_TRANSFERS = (251, 252)  # IXFR, AXFR: not offered (the zones are generated from the topology)
OUR_PAYLOAD = 1232  # the UDP size we advertise (DNS flag day 2020)
MAX_CACHED_QUERY = 512  # longer messages (never a normal query) are answered but not cached: bounded memory
Entry = tuple[int, int, tuple[str, str] | None, bytes]  # qtype, rcode, decision label, response[2:]


class Responder:
    """Answers DNS messages from our zones, routing `routed` names by the client's location."""

    def __init__(
        self,
        zones: ZoneData,
        locator: Locator,
        router: Router,
        metrics: Metrics,
        *,
        max_cached: int = 100_000,
    ) -> None:
        self.zones, self.locator, self.router, self.metrics = zones, locator, router, metrics
        self._cache: dict[tuple[bytes, str, str], Entry] = {}
        self._generation = router.generation
        self._max_cached = max_cached
        self.on_decision: Callable[[Decision, str], None] = _log_decision

    def handle_wire(
        self, wire: bytes, peer: tuple[str, int] | tuple[str, int, int, int], transport: Transport = "udp"
    ) -> bytes | None:
        """The response to one DNS message, or None to stay silent (garbage, or a response)."""
        if self._generation != self.router.generation:
            self._cache.clear()
            self._generation = self.router.generation
        key = (wire[2:], peer[0], transport)
        hit = self._cache.get(key)
        if hit is None:
            try:
                hit = self._answer(wire, peer[0], transport)
            except Exception:  # never let one message take the server down
                log.exception("internal error answering a query from %s", peer[0])
                return _servfail(wire)
            if hit is None:
                self.metrics.dropped += 1
                return None
            if len(wire) <= MAX_CACHED_QUERY:
                if len(self._cache) >= self._max_cached:
                    self._cache.clear()
                self._cache[key] = hit
        qtype, rcode, label, body = hit
        self.metrics.queries[qtype, rcode] += 1
        if label is not None:
            self.metrics.decisions[label] += 1
        return wire[:2] + body

    # ------------------------------------------------------------ parsing

    def _answer(self, wire: bytes, client: str, transport: Transport) -> Entry | None:
        try:
            query, ancount, nscount, arcount = parse_query(wire)
        except MalformedQuery as exc:
            if exc.rcode is None:
                return None
            opcode = (int.from_bytes(wire[2:4], "big") >> 11) & 0xF
            return _error_entry(wire, NOTIMP if opcode else exc.rcode, None)
        if query.opcode != 0:
            return _error_entry(wire, NOTIMP, query)
        try:
            edns = self._edns(wire, query, ancount, nscount, arcount)
        except MalformedQuery:
            return _error_entry(wire, FORMERR, query)
        if edns is not None and edns.version > 0:
            body = _render(query, BADVERS, 0, [], [], build_opt(OUR_PAYLOAD, ext_rcode=BADVERS >> 4))
            return (query.qtype, BADVERS, None, body)
        return self._respond(query, edns, client, transport)

    @staticmethod
    def _edns(wire: bytes, query: Query, ancount: int, nscount: int, arcount: int) -> Edns | None:
        end = 12 + len(query.question)
        if ancount == 0 and nscount == 0 and arcount <= 1:
            if arcount == 0:
                if end != len(wire):
                    raise MalformedQuery("bytes after the question")
                return None
            return parse_opt(wire, end)
        return _edns_slow(wire)

    # ------------------------------------------------------------ answering

    def _respond(self, query: Query, edns: Edns | None, client: str, transport: Transport) -> Entry:
        if query.qclass not in (CLASS_IN, CLASS_ANY) or query.qtype in ZONE_TRANSFERS:
            return (query.qtype, RCODE_REFUSED, None, _render(query, RCODE_REFUSED, 0, [], [], _opt(edns, 0)))
        decided: list[Decision] = []

        def route(family: int) -> tuple[str, ...]:
            if not decided:
                decided.append(self._decide(edns, client))
            return tuple(e.address for e in decided[0].chosen(family))

        name = dns.name.from_wire(query.qname, 0)[0]
        lookup = self.zones.lookup(name, query.qtype, route)
        located = decided[0].located if decided else None
        scope = located.scope if located is not None and located.via is Via.ECS else 0
        flags = response_flags(query.flags, authoritative=lookup.authoritative)
        opt = _opt(edns, scope)
        body = _render(query, lookup.rcode, flags, lookup.answer, lookup.authority, opt)
        limit = 65535 if transport == "tcp" else (edns.payload if edns else 512)
        if len(body) + 2 > limit:  # RFC 1035 §4.2.1, RFC 6891 §7: truncate, the client retries over TCP
            body = _render(query, lookup.rcode, flags | FLAG_TC, [], [], opt)
        label = (located.by.value, located.via.value) if located else None
        return (query.qtype, lookup.rcode, label, body)

    def _decide(self, edns: Edns | None, client: str) -> Decision:
        located = self._locate(edns, client)
        decision, fresh = self.router.decide(located)
        if fresh:
            self.metrics.decisions_computed += 1
            self.on_decision(decision, client)
        return decision

    def _locate(self, edns: Edns | None, client: str) -> Located:
        ecs = edns.ecs if edns else None
        if ecs is not None:
            family = 4 if ecs.family == 1 else 6
            address = int.from_bytes(ecs.padded, "big")
            if self.locator.ecs_usable(family, address, ecs.source_prefix):
                return self.locator.locate(family, address, Via.ECS, ecs.source_prefix)
        return self.locate_address(client)

    def locate_address(self, client: str) -> Located:
        """Locate a client by its own address (IPv4-mapped IPv6 addresses count as IPv4)."""
        ip = ipaddress.ip_address(client.split("%")[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return self.locator.locate(ip.version, int(ip), Via.SOURCE)


def _log_decision(decision: Decision, client: str) -> None:
    loc = decision.located
    chosen = ",".join(e.name for e in (*decision.chosen_v4, *decision.chosen_v6)) or "-"
    subnet = loc.network if loc.via is Via.ECS else "-"
    log.info(
        "decision client=%s resolver=%s subnet=%s located-by=%s via=%s region=%s chosen=%s",
        loc.network if loc.via is Via.ECS else client, client, subnet, loc.by.value, loc.via.value,
        loc.region or "-", chosen,
    )  # fmt: skip
    if decision.degraded == "all-down":
        log.warning("every edge is down: answering %s with the nearest anyway (%s)", loc.network, chosen)
    elif decision.degraded == "overloaded":
        log.warning("every live edge is overloaded: answering %s with %s", loc.network, chosen)


def _edns_slow(wire: bytes) -> Edns | None:
    """Validate an unusual message with dnspython and read its EDNS; MalformedQuery if it is bad."""
    try:
        msg = dns.message.from_wire(wire)
    except (dns.exception.DNSException, ValueError, IndexError) as exc:  # e.g. BadEDNS: two OPT records
        raise MalformedQuery(f"dnspython cannot parse the message: {exc}") from exc
    if msg.edns < 0:
        return None
    ecs = None
    for option in msg.options:
        if option.otype == 8:
            if ecs is not None:
                raise MalformedQuery("two Client Subnet options")
            ecs = parse_ecs(option.to_wire())
    return Edns(max(msg.payload, 512), msg.edns, bool(msg.ednsflags & 0x8000), ecs)


def _opt(edns: Edns | None, scope: int) -> bytes:
    return b"" if edns is None else build_opt(OUR_PAYLOAD, ecs=edns.ecs, scope=scope)


def _render(
    query: Query,
    rcode: int,
    flags: int,
    answer: list[dns.rrset.RRset],
    authority: list[dns.rrset.RRset],
    opt: bytes,
) -> bytes:
    """The response after its ID: header, the query's own question bytes, the sections, then our OPT."""
    r: Any = dns.renderer.Renderer(0, 0, 65535)  # type: ignore[no-untyped-call]
    r.add_question(dns.name.from_wire(query.qname, 0)[0], query.qtype, query.qclass)
    for rrset in answer:
        r.add_rrset(dns.renderer.ANSWER, rrset, want_shuffle=False)
    for rrset in authority:
        r.add_rrset(dns.renderer.AUTHORITY, rrset, want_shuffle=False)
    r.write_header()
    rendered = bytes(r.get_wire())
    end = 12 + len(query.question)
    counts = (1, len(_count(answer)), len(_count(authority)), 1 if opt else 0)
    header = build_header(0, flags | _opcode_rd(query.flags), rcode, counts)
    return header[2:] + query.question + rendered[end:] + opt


def _count(rrsets: list[dns.rrset.RRset]) -> list[object]:
    return [rd for rrset in rrsets for rd in rrset]


def _opcode_rd(flags: int) -> int:
    return response_flags(flags, authoritative=False)


def _error_entry(wire: bytes, rcode: int, query: Query | None) -> Entry:
    """FORMERR/NOTIMP: the question echoed when it parsed, no other sections."""
    if query is None:
        flags = response_flags(int.from_bytes(wire[2:4], "big"), authoritative=False)
        return (0, rcode, None, build_header(0, flags, rcode, (0, 0, 0, 0))[2:])
    return (query.qtype, rcode, None, _render(query, rcode, 0, [], [], b""))


def _servfail(wire: bytes) -> bytes | None:
    if len(wire) < 12:
        return None
    flags = response_flags(int.from_bytes(wire[2:4], "big"), authoritative=False)
    return wire[:2] + build_header(0, flags, SERVFAIL, (0, 0, 0, 0))[2:]
