"""Hand parsing and building of the few DNS wire pieces the fast path needs (RFC 1035 §4, RFC 6891, RFC 7871).

Pure functions over bytes: the header, the single question (name kept byte for byte so its 0x20
mixed case is echoed), one OPT record with its Client Subnet option, and the header/OPT bytes of
a response. Anything more complex (several additional records, compression in the question)
is left to dnspython in `answer.py`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from dnsrouter.errors import MalformedQuery

__all__ = [
    "Ecs",
    "Edns",
    "Query",
    "build_header",
    "build_opt",
    "parse_query",
]

HEADER = struct.Struct("!HHHHHH")
U16 = struct.Struct("!H")
QTAIL = struct.Struct("!HH")
OPT_FIXED = struct.Struct("!HHBBHH")  # type, payload size, ext-rcode, version, flags, rdlength
OPTION = struct.Struct("!HH")
ECS_FIXED = struct.Struct("!HBB")  # family, source prefix, scope prefix
TYPE_OPT = 41
OPTION_ECS = 8
FLAG_QR = 0x8000
FLAG_AA = 0x0400
FLAG_TC = 0x0200
FLAG_RD = 0x0100
FLAG_CD = 0x0010
OPCODE_MASK = 0x7800
ADDRESS_BYTES = {1: 4, 2: 16}
MAX_BITS = {1: 32, 2: 128}


@dataclass(frozen=True, slots=True)
class Ecs:
    """An EDNS Client Subnet option as the client sent it (RFC 7871 §6)."""

    family: int
    source_prefix: int
    address: bytes  # exactly ceil(source_prefix / 8) bytes, as on the wire

    @property
    def padded(self) -> bytes:
        """The address padded with zero bytes to 4 (IPv4) or 16 (IPv6) bytes."""
        return self.address.ljust(ADDRESS_BYTES[self.family], b"\0")


@dataclass(frozen=True, slots=True)
class Edns:
    """The query's OPT record: advertised UDP size, version, DO bit and Client Subnet option."""

    payload: int
    version: int
    do: bool
    ecs: Ecs | None


@dataclass(frozen=True, slots=True)
class Query:
    """A parsed query: header fields, the raw question (`question` includes QTYPE and QCLASS)."""

    id: int
    flags: int
    question: bytes
    qname: bytes  # the name's wire form, lower-cased (ASCII only, RFC 4343)
    qtype: int
    qclass: int
    edns: Edns | None

    @property
    def opcode(self) -> int:
        return (self.flags & OPCODE_MASK) >> 11


def parse_header(wire: bytes) -> tuple[int, int, int, int, int, int]:
    """ID, flags and the four section counts; MalformedQuery(rcode=None) for a short message or a response."""
    if len(wire) < 12:
        raise MalformedQuery(f"{len(wire)} bytes is shorter than a DNS header", rcode=None)
    fields = HEADER.unpack_from(wire)
    if fields[1] & FLAG_QR:
        raise MalformedQuery("the message is a response, not a query", rcode=None)
    return fields


def parse_name(wire: bytes, offset: int) -> int:
    """End offset of the uncompressed name starting at `offset`; raise MalformedQuery when it is bad."""
    end = len(wire)
    total = 0
    while True:
        if offset >= end:
            raise MalformedQuery("the question name runs past the end of the message")
        length = wire[offset]
        if length == 0:
            return offset + 1
        if length > 63:
            raise MalformedQuery(f"label length byte {length:#x} (compression is not allowed here)")
        total += length + 1
        if total > 254:
            raise MalformedQuery("the question name is longer than 255 bytes")
        offset += length + 1


def parse_query(wire: bytes) -> tuple[Query, int, int, int]:
    """The query with one question, and the answer/authority/additional counts.

    Raises MalformedQuery: rcode None (drop) for garbage headers, FORMERR for a bad question.
    """
    qid, flags, qdcount, ancount, nscount, arcount = parse_header(wire)
    if qdcount != 1:
        raise MalformedQuery(f"{qdcount} questions (expected 1)")
    end = parse_name(wire, 12)
    if end + 4 > len(wire):
        raise MalformedQuery("the question is cut short")
    qtype, qclass = QTAIL.unpack_from(wire, end)
    question = wire[12 : end + 4]
    query = Query(qid, flags, question, wire[12:end].lower(), qtype, qclass, None)
    return query, ancount, nscount, arcount


def parse_opt(wire: bytes, offset: int) -> Edns:
    """Parse the single OPT record at `offset`, which must end the message (RFC 6891 §6.1)."""
    if offset + 11 > len(wire) or wire[offset] != 0:
        raise MalformedQuery("the additional record is not an OPT with the root name")
    rtype, payload, _ext_rcode, version, eflags, rdlength = OPT_FIXED.unpack_from(wire, offset + 1)
    if rtype != TYPE_OPT:
        raise MalformedQuery(f"additional record of type {rtype} (only OPT is read on the fast path)")
    start = offset + 11
    if start + rdlength != len(wire):
        raise MalformedQuery("the OPT record's length does not match the end of the message")
    return Edns(
        max(payload, 512), version, bool(eflags & 0x8000), _parse_options(wire, start, start + rdlength)
    )


def _parse_options(wire: bytes, offset: int, end: int) -> Ecs | None:
    ecs = None
    while offset < end:
        if offset + 4 > end:
            raise MalformedQuery("an EDNS option header is cut short")
        code, length = OPTION.unpack_from(wire, offset)
        offset += 4
        if offset + length > end:
            raise MalformedQuery(f"EDNS option {code} runs past the OPT record")
        if code == OPTION_ECS:
            if ecs is not None:
                raise MalformedQuery("two Client Subnet options")
            ecs = parse_ecs(wire[offset : offset + length])
        offset += length
    return ecs


def parse_ecs(data: bytes) -> Ecs:
    """Validate a Client Subnet option's data (RFC 7871 §6, §7.1.1); MalformedQuery (FORMERR) if bad."""
    if len(data) < 4:
        raise MalformedQuery("the Client Subnet option is shorter than 4 bytes")
    family, source, scope = ECS_FIXED.unpack_from(data)
    if family not in ADDRESS_BYTES:
        raise MalformedQuery(f"Client Subnet family {family} (expected 1 or 2)")
    if source > MAX_BITS[family] or scope != 0:
        raise MalformedQuery(f"Client Subnet prefixes {source}/{scope} are invalid for family {family}")
    address = data[4:]
    if len(address) != (source + 7) // 8:
        raise MalformedQuery(f"Client Subnet address has {len(address)} bytes for a /{source} prefix")
    if source % 8 and address[-1] & (0xFF >> (source % 8)):
        raise MalformedQuery("Client Subnet address has bits set beyond its source prefix")
    return Ecs(family, source, bytes(address))


def build_header(qid: int, flags: int, rcode: int, counts: tuple[int, int, int, int]) -> bytes:
    """A response header: QR set, the query's opcode, RD and CD copied, AA/TC from `flags`."""
    return HEADER.pack(qid, flags | FLAG_QR | (rcode & 0xF), *counts)


def build_opt(payload: int, *, ext_rcode: int = 0, ecs: Ecs | None = None, scope: int = 0) -> bytes:
    """Our OPT record, echoing the Client Subnet option with `scope` as the scope prefix."""
    options = b""
    if ecs is not None:
        data = ECS_FIXED.pack(ecs.family, ecs.source_prefix, scope) + ecs.address
        options = OPTION.pack(OPTION_ECS, len(data)) + data
    return b"\0" + OPT_FIXED.pack(TYPE_OPT, payload, ext_rcode, 0, 0, len(options)) + options


def response_flags(query_flags: int, *, authoritative: bool) -> int:
    """Flags copied from the query (opcode, RD, CD) plus AA for our zones."""
    flags = query_flags & (OPCODE_MASK | FLAG_RD | FLAG_CD)
    return flags | FLAG_AA if authoritative else flags
