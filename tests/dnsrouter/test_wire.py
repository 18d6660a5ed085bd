"""The hand parser and builders, on hex vectors checked against dnspython."""

from __future__ import annotations

import dns.edns
import dns.message
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dnsrouter.errors import MalformedQuery
from dnsrouter.wire import Ecs, build_header, build_opt, parse_ecs, parse_opt, parse_query, response_flags

# dig-style query for "ViDeo.cdn.test A", id 0x1234, RD, EDNS 1232 with ECS 127.10.1.0/24
VECTOR = bytes.fromhex(
    "123401000001000000000001"  # header
    "05566944656f0363646e04746573740000010001"  # ViDeo.cdn.test. A IN
    "00"
    "0029"
    "04d0"
    "00"
    "00"
    "0000"
    "000b"  # OPT: root, type 41, size 1232, rcode, version, flags, rdlength
    "0008"
    "0007"
    "0001"
    "18"
    "00"
    "7f0a01"  # ECS: code 8, length 7, family 1, /24, scope 0, 127.10.1
)


def test_parse_vector() -> None:
    query, an, ns, ar = parse_query(VECTOR)
    assert (query.id, query.opcode, query.qtype, query.qclass, an, ns, ar) == (0x1234, 0, 1, 1, 0, 0, 1)
    assert query.question == VECTOR[12:32]
    assert query.qname == b"\x05video\x03cdn\x04test\x00"
    edns = parse_opt(VECTOR, 32)
    assert (edns.payload, edns.version, edns.do) == (1232, 0, False)
    assert edns.ecs == Ecs(1, 24, b"\x7f\x0a\x01")
    assert edns.ecs.padded == b"\x7f\x0a\x01\x00"
    ref = dns.message.from_wire(VECTOR)  # the vector is what dnspython reads too
    assert ref.options[0] == dns.edns.ECSOption("127.10.1.0", 24)


def test_build_opt_round_trip() -> None:
    ecs = Ecs(2, 48, bytes.fromhex("fd0000100003"))
    opt = build_opt(1232, ecs=ecs, scope=48)
    header = build_header(7, response_flags(0x0100, authoritative=True), 0, (0, 0, 0, 1))
    msg = dns.message.from_wire(header + opt)
    assert msg.id == 7
    assert msg.payload == 1232
    (option,) = msg.options
    assert (option.address, option.srclen, option.scopelen) == ("fd00:10:3::", 48, 48)
    assert msg.flags == 0x8500  # QR, AA, RD


@pytest.mark.parametrize(
    ("wire", "rcode"),
    [
        (b"\x00" * 11, None),  # too short: silence
        (VECTOR[:2] + b"\x81\x00" + VECTOR[4:], None),  # a response: silence
        (VECTOR[:5] + b"\x02" + VECTOR[6:], 1),  # two questions
        (VECTOR[:12] + b"\xc0\x0c\x00\x01\x00\x01", 1),  # compression pointer in the question
        (VECTOR[:12] + b"\x05vid", 1),  # name cut short
        (VECTOR[:12] + b"\x40" + b"a" * 64 + b"\x00\x00\x01\x00\x01", 1),  # 64-byte label
        (VECTOR[:12] + (b"\x3f" + b"a" * 63) * 4 + b"\x00\x00\x01\x00\x01", 1),  # name over 255 bytes
        (VECTOR[:30], 1),  # question without its class
    ],
)
def test_parse_errors(wire: bytes, rcode: int | None) -> None:
    with pytest.raises(MalformedQuery) as info:
        parse_query(wire)
    assert info.value.rcode == rcode


@pytest.mark.parametrize(
    "opt",
    [
        b"\x01\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00",  # not the root name
        b"\x00\x00\x01\x04\xd0\x00\x00\x00\x00\x00\x00",  # not type OPT
        b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x05",  # rdlength past the end
        b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x03\x00\x08\x00",  # option header cut short
        b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x04\x00\x0a\x00\x09",  # option data past the end
    ],
)
def test_opt_errors(opt: bytes) -> None:
    wire = VECTOR[:32] + opt
    with pytest.raises(MalformedQuery):
        parse_opt(wire, 32)


def test_two_ecs_options() -> None:
    ecs = b"\x00\x08\x00\x07\x00\x01\x18\x00\x7f\x0a\x01"
    opt = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00" + len(ecs * 2).to_bytes(2, "big") + ecs * 2
    with pytest.raises(MalformedQuery, match="two Client Subnet"):
        parse_opt(VECTOR[:32] + opt, 32)


def test_ecs_zero_prefix_has_no_address() -> None:
    assert parse_ecs(b"\x00\x01\x00\x00") == Ecs(1, 0, b"")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_parsers_raise_only_our_error(data: bytes) -> None:
    try:
        query, _, _, arcount = parse_query(data)
        if arcount:
            parse_opt(data, 12 + len(query.question))
    except MalformedQuery:
        pass
    try:
        ecs = parse_ecs(data[:20])
    except MalformedQuery:
        return
    assert len(ecs.padded) in (4, 16)
