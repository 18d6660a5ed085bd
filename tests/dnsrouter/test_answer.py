"""Protocol behaviour of `Responder.handle_wire`, driven in-process with dnspython messages."""

from __future__ import annotations

import os
import struct
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdn.topology import parse_topology
from dnsrouter.answer import Responder
from dnsrouter.service import build_responder
from tests.dnsrouter.conftest import DEMO

# Fuzz profiles: "fast" in CI, DNS_FUZZ=deep for a long run. Not loaded globally (other packages' tests).
FUZZ = {
    "fast": settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]),
    "deep": settings(max_examples=20000, deadline=None, suppress_health_check=[HealthCheck.too_slow]),
}[os.environ.get("DNS_FUZZ", "fast")]

EU, US, AP = "127.10.1.5", "127.10.2.5", "127.10.3.5"


def make(edit: Any = None) -> Responder:
    data = yaml.safe_load(DEMO.read_text())
    if edit is not None:
        edit(data)
    return build_responder(parse_topology(data, source="test"))


@pytest.fixture
def responder() -> Responder:
    return make()


def ask(
    responder: Responder, query: dns.message.Message | bytes, client: str = EU, transport: str = "tcp"
) -> dns.message.Message:
    wire = query if isinstance(query, bytes) else query.to_wire()
    out = responder.handle_wire(wire, (client, 5353), transport)  # type: ignore[arg-type]
    assert out is not None
    return dns.message.from_wire(out)


def addresses(msg: dns.message.Message) -> list[str]:
    return [rd.address for rrset in msg.answer if rrset.rdtype in (1, 28) for rd in rrset]


def ecs_query(name: str, subnet: str, prefix: int, rdtype: str = "A") -> dns.message.Message:
    return dns.message.make_query(name, rdtype, use_edns=0, options=[dns.edns.ECSOption(subnet, prefix)])


@pytest.mark.parametrize(("client", "edge"), [(EU, "127.0.1.2"), (US, "127.0.2.1"), (AP, "127.0.3.1")])
def test_routed_by_source_address(responder: Responder, client: str, edge: str) -> None:
    reply = ask(responder, dns.message.make_query("video.cdn.test", "A"), client)
    assert addresses(reply) == [edge]
    assert reply.answer[0].ttl == 20
    assert reply.flags & dns.flags.AA


def test_id_rd_copied_and_question_echoed_byte_for_byte(responder: Responder) -> None:
    for rd in (True, False):
        query = dns.message.make_query("ViDeO.cDn.TeSt", "A")
        query.id = 0xBEEF
        if not rd:
            query.flags &= ~dns.flags.RD
        wire = query.to_wire()
        out = responder.handle_wire(wire, (EU, 1), "udp")
        assert out is not None
        assert out[:2] == b"\xbe\xef"
        qlen = len(wire) - 12
        assert out[12 : 12 + qlen] == wire[12:]  # mixed case kept
        reply = dns.message.from_wire(out)
        assert bool(reply.flags & dns.flags.RD) == rd
        assert reply.flags & dns.flags.QR
        assert not reply.flags & dns.flags.RA


def test_cached_answer_patches_the_id(responder: Responder) -> None:
    query = dns.message.make_query("video.cdn.test", "A")
    first = ask(responder, query, US)
    query.id ^= 0x5A5A
    second = ask(responder, query, US)
    assert second.id == query.id
    assert addresses(first) == addresses(second)


@pytest.mark.parametrize(
    ("subnet", "prefix", "edge", "scope"),
    [
        ("127.10.3.0", 24, "127.0.3.1", 24),  # demo client network in 127/8: used although loopback
        ("127.20.9.0", 24, "127.0.1.2", 16),  # London by coordinates -> Paris edge; scope = /16
        ("fd00:10:2::", 48, "127.0.2.1", 48),  # IPv6 ULA that matches a client network
        ("10.1.2.0", 24, "127.0.2.1", 0),  # private, matches nothing: ignored, source address used
        ("8.8.8.0", 24, "127.0.1.2", 24),  # unknown public: the fallback (Frankfurt) -> Paris
    ],
)
def test_ecs_locates_and_is_echoed_with_scope(
    responder: Responder, subnet: str, prefix: int, edge: str, scope: int
) -> None:
    reply = ask(responder, ecs_query("video.cdn.test", subnet, prefix), US)
    assert addresses(reply) == [edge]
    (opt,) = [o for o in reply.options if o.otype == dns.edns.ECS]
    assert (opt.address, opt.srclen, opt.scopelen) == (subnet, prefix, scope)


def test_ecs_scope_zero_for_static_answers(responder: Responder) -> None:
    reply = ask(responder, ecs_query("ns1.cdn.test", "127.10.3.0", 24))
    (opt,) = reply.options
    assert opt.scopelen == 0


def test_opt_only_when_the_query_had_one(responder: Responder) -> None:
    assert ask(responder, dns.message.make_query("video.cdn.test", "A")).edns < 0
    reply = ask(responder, dns.message.make_query("video.cdn.test", "A", use_edns=0))
    assert reply.edns == 0
    assert reply.payload == 1232


def test_content_zone_cname_is_chased(responder: Responder) -> None:
    reply = ask(responder, dns.message.make_query("video.example.test", "A"), AP)
    cname, a = reply.answer
    assert cname.rdtype == dns.rdatatype.CNAME
    assert str(cname[0].target) == "video.cdn.test."
    assert (str(a.name), [rd.address for rd in a]) == ("video.cdn.test.", ["127.0.3.1"])
    assert reply.flags & dns.flags.AA


@pytest.mark.parametrize(
    ("name", "rdtype", "expected"),
    [
        ("cdn.test", "SOA", "ns1.cdn.test. hostmaster.cdn.test. 2026112401 3600 600 86400 30"),
        ("cdn.test", "NS", "ns1.cdn.test."),
        ("cdn.test", "MX", "10 mail.cdn.test."),
        ("cdn.test", "TXT", '"pycdn demo zone"'),
        ("ns1.cdn.test", "A", "127.0.0.1"),
        ("www.cdn.test", "CNAME", "video.cdn.test."),
        ("example.test", "SOA", "ns1.cdn.test. hostmaster.cdn.test. 2026112401 3600 600 86400 30"),
    ],
)
def test_static_records(responder: Responder, name: str, rdtype: str, expected: str) -> None:
    reply = ask(responder, dns.message.make_query(name, rdtype))
    assert reply.rcode() == dns.rcode.NOERROR
    assert [rd.to_text() for rd in reply.answer[0]] == [expected]
    assert len(reply.answer) == 1


def test_www_cname_chases_to_routed_name(responder: Responder) -> None:
    reply = ask(responder, dns.message.make_query("www.cdn.test", "A"), US)
    assert [r.rdtype for r in reply.answer] == [dns.rdatatype.CNAME, dns.rdatatype.A]
    assert addresses(reply) == ["127.0.2.1"]


@pytest.mark.parametrize(
    ("name", "rdtype", "rcode"),
    [
        ("nope.cdn.test", "A", dns.rcode.NXDOMAIN),
        ("deep.nope.example.test", "TXT", dns.rcode.NXDOMAIN),
        ("ns1.cdn.test", "AAAA", dns.rcode.NOERROR),  # NODATA
        ("video.cdn.test", "MX", dns.rcode.NOERROR),  # NODATA at a routed name
        ("video.cdn.test", "AAAA", dns.rcode.NOERROR),  # no IPv6 edge: NODATA
    ],
)
def test_negative_answers_carry_the_soa(responder: Responder, name: str, rdtype: str, rcode: int) -> None:
    reply = ask(responder, dns.message.make_query(name, rdtype))
    assert reply.rcode() == rcode
    assert reply.answer == []
    (soa,) = reply.authority
    assert soa.rdtype == dns.rdatatype.SOA
    assert soa.ttl == 30  # min(SOA TTL, MINIMUM): RFC 2308 §5
    assert reply.flags & dns.flags.AA


def test_refused_outside_our_zones(responder: Responder) -> None:
    reply = ask(responder, dns.message.make_query("example.com", "A"))
    assert reply.rcode() == dns.rcode.REFUSED
    assert not reply.flags & dns.flags.AA


@pytest.mark.parametrize(("rdtype", "rdclass"), [("AXFR", "IN"), ("IXFR", "IN"), ("TXT", "CH")])
def test_refused_for_transfers_and_other_classes(responder: Responder, rdtype: str, rdclass: str) -> None:
    reply = ask(responder, dns.message.make_query("cdn.test", rdtype, rdclass))
    assert reply.rcode() == dns.rcode.REFUSED


def test_notimp_for_other_opcodes(responder: Responder) -> None:
    query = dns.message.make_query("cdn.test", "SOA")
    query.set_opcode(dns.opcode.NOTIFY)
    reply = ask(responder, query)
    assert reply.rcode() == dns.rcode.NOTIMP
    assert reply.opcode() == dns.opcode.NOTIFY


def test_badvers(responder: Responder) -> None:
    reply = ask(responder, dns.message.make_query("video.cdn.test", "A", use_edns=1))
    assert reply.rcode() == dns.rcode.BADVERS
    assert reply.edns == 0
    assert reply.answer == []


def test_formerr_for_two_opt_records(responder: Responder) -> None:
    wire = bytearray(dns.message.make_query("video.cdn.test", "A", use_edns=0).to_wire())
    wire[11] = 2
    wire += b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"
    assert ask(responder, bytes(wire)).rcode() == dns.rcode.FORMERR


@pytest.mark.parametrize(
    "ecs",
    [
        b"\x00\x03\x18\x00\x7f\x0a\x01",  # family 3
        b"\x00\x01\x21\x00\x7f\x0a\x01\x00\x00",  # /33 for IPv4
        b"\x00\x01\x18\x00\x7f\x0a\x01\x00",  # 4 address bytes for a /24
        b"\x00\x01\x18\x10\x7f\x0a\x01",  # scope prefix set in a query
        b"\x00\x01\x17\x00\x7f\x0a\x01",  # bits beyond a /23
        b"\x00\x01",  # too short
    ],
)
def test_formerr_for_malformed_ecs(responder: Responder, ecs: bytes) -> None:
    query = dns.message.make_query(
        "video.cdn.test", "A", use_edns=0, options=[dns.edns.GenericOption(8, ecs)]
    )
    assert ask(responder, query).rcode() == dns.rcode.FORMERR


def test_formerr_for_trailing_bytes_and_counts(responder: Responder) -> None:
    wire = dns.message.make_query("video.cdn.test", "A").to_wire()
    assert ask(responder, wire + b"junk").rcode() == dns.rcode.FORMERR
    no_question = wire[:4] + b"\x00\x00" + wire[6:12]
    assert ask(responder, no_question).rcode() == dns.rcode.FORMERR


def test_silence_for_short_messages_and_responses(responder: Responder) -> None:
    assert responder.handle_wire(b"\x00\x01\x00", ("127.0.0.1", 1), "udp") is None
    query = dns.message.make_query("video.cdn.test", "A")
    response = dns.message.make_response(query).to_wire()
    assert responder.handle_wire(response, ("127.0.0.1", 1), "udp") is None


def _many_txt(data: dict[str, Any]) -> None:
    data["zone"]["records"] += [
        {"name": "big", "type": "TXT", "value": f"record {i:03d} " + "x" * 60} for i in range(40)
    ]


def test_truncation_over_udp_and_full_answer_over_tcp() -> None:
    responder = make(_many_txt)
    query = dns.message.make_query("big.cdn.test", "TXT")
    udp = ask(responder, query, transport="udp")
    assert udp.flags & dns.flags.TC
    assert udp.answer == []
    tcp = ask(responder, query, transport="tcp")
    assert not tcp.flags & dns.flags.TC
    assert len(tcp.answer[0]) == 40
    small = ask(
        responder, dns.message.make_query("big.cdn.test", "TXT", use_edns=0, payload=1232), transport="udp"
    )
    assert small.flags & dns.flags.TC


def test_answer_count_returns_several_edges() -> None:
    responder = make(lambda d: d["dns"].update(answer_count=3))
    reply = ask(responder, dns.message.make_query("video.cdn.test", "A"), EU)
    assert addresses(reply) == ["127.0.1.2", "127.0.1.1", "127.0.2.1"]  # nearest first


def test_ipv6_edges_answer_aaaa() -> None:
    def edit(d: dict[str, Any]) -> None:
        d["edges"].append({"name": "v6", "region": "us-east", "address": "fd00::2:1", "port": 8080})

    responder = make(edit)
    reply = ask(responder, dns.message.make_query("video.cdn.test", "AAAA"), US)
    assert addresses(reply) == ["fd00::2:1"]
    both = ask(responder, dns.message.make_query("video.cdn.test", "ANY"), US)
    assert sorted(addresses(both)) == ["127.0.2.1", "fd00::2:1"]


def test_metrics_count_queries_and_decisions(responder: Responder) -> None:
    ask(responder, dns.message.make_query("video.cdn.test", "A"), US)
    ask(responder, dns.message.make_query("video.cdn.test", "A"), US)
    ask(responder, dns.message.make_query("nope.cdn.test", "A"), US)
    assert responder.metrics.queries[(1, 0)] == 2
    assert responder.metrics.queries[(1, 3)] == 1
    assert responder.metrics.decisions[("client-network", "source-address")] == 2
    assert responder.metrics.decisions_computed == 1


# ---------------------------------------------------------------- fuzzing

FUZZ_RESPONDER = make()
SEED = dns.message.make_query(
    "video.cdn.test", "A", use_edns=0, options=[dns.edns.ECSOption("127.10.1.0", 24)]
)
SEED_WIRE = SEED.to_wire()


def _check(out: bytes | None) -> None:
    if out is None:
        return
    assert len(out) >= 12
    flags = struct.unpack_from("!H", out, 2)[0]
    assert flags & 0x8000  # a response
    if (
        flags >> 11
    ) & 0xF == 0:  # dnspython reads other opcodes' sections differently (UPDATE wants a SOA zone)
        dns.message.from_wire(out)  # and a well-formed one


@FUZZ
@given(st.binary(max_size=600))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    _check(FUZZ_RESPONDER.handle_wire(data, ("127.10.1.1", 53), "udp"))


@FUZZ
@given(
    st.lists(st.tuples(st.integers(0, len(SEED_WIRE) - 1), st.integers(0, 255)), max_size=6),
    st.integers(0, 8),
)
def test_fuzz_mutated_queries(edits: list[tuple[int, int]], cut: int) -> None:
    wire = bytearray(SEED_WIRE)
    for pos, value in edits:
        wire[pos] = value
    _check(FUZZ_RESPONDER.handle_wire(bytes(wire[: len(wire) - cut]), ("127.10.2.1", 53), "tcp"))


def test_long_messages_are_answered_but_not_cached(responder: Responder) -> None:
    # Distinct 4 KB garbage-tailed queries (over UDP up to 4 KB, over TCP up to 64 KB) must not
    # each keep a cache entry: 100 000 of them would hold gigabytes.
    base = dns.message.make_query("video.cdn.test", "A").to_wire()
    for i in range(50):
        wire = base + i.to_bytes(2, "big") * 2048
        assert ask(responder, wire, transport="tcp").rcode() == dns.rcode.FORMERR
    assert len(responder._cache) == 0  # the cache's size is the behaviour under test
    ask(responder, base)
    assert len(responder._cache) == 1
