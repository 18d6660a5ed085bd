"""The live DNS server on loopback: dnspython and `dig` as real clients over UDP and TCP."""

from __future__ import annotations

import os
import random
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from typing import Any

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest

from cdn.topology import Topology, parse_topology
from dnsrouter import udpbatch
from tests.dnsrouter.conftest import RunningRouter, recv_exactly

pytestmark = pytest.mark.network
DIG = shutil.which("dig") or "/usr/bin/dig"
needs_dig = pytest.mark.skipif(not os.path.exists(DIG), reason="dig (bind9-dnsutils) is not installed")


def dig(port: int, *args: str) -> str:
    """Run dig against the router and return its output."""
    cmd = [DIG, "@127.0.0.1", "-p", str(port), "+tries=1", "+time=3", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=False).stdout


def status(out: str) -> str:
    m = re.search(r"status: (\w+)", out)
    assert m, out
    return m.group(1)


def flags(out: str) -> set[str]:
    m = re.search(r";; flags: ([a-z ]+);", out)
    assert m, out
    return set(m.group(1).split())


def answer_lines(out: str) -> list[list[str]]:
    section = out.split(";; ANSWER SECTION:\n", 1)
    if len(section) < 2:
        return []
    return [line.split() for line in section[1].split("\n\n", 1)[0].splitlines() if line]


# ---------------------------------------------------------------- dnspython


def test_udp_and_tcp_answers(running_router: RunningRouter) -> None:
    query = dns.message.make_query("video.cdn.test", "A")
    udp = dns.query.udp(query, "127.0.0.1", port=running_router.port, timeout=3, source="127.10.2.7")
    tcp = dns.query.tcp(query, "127.0.0.1", port=running_router.port, timeout=3, source="127.10.3.7")
    assert [rd.address for rd in udp.answer[0]] == ["127.0.2.1"]
    assert [rd.address for rd in tcp.answer[0]] == ["127.0.3.1"]
    assert udp.flags & dns.flags.AA
    assert tcp.flags & dns.flags.AA


def test_several_queries_on_one_tcp_connection(running_router: RunningRouter) -> None:
    names = ["video.cdn.test", "nope.cdn.test", "example.com", "cdn.test"]
    queries = [dns.message.make_query(n, "A") for n in names]
    with socket.create_connection(("127.0.0.1", running_router.port), timeout=3) as sock:
        # all pipelined in one write, answered in order
        sock.sendall(b"".join(len(w).to_bytes(2, "big") + w for w in (q.to_wire() for q in queries)))
        replies = []
        for _ in queries:
            length = int.from_bytes(recv_exactly(sock, 2), "big")
            replies.append(dns.message.from_wire(recv_exactly(sock, length)))
    assert [r.id for r in replies] == [q.id for q in queries]
    assert [r.rcode() for r in replies] == [dns.rcode.NOERROR, dns.rcode.NXDOMAIN, dns.rcode.REFUSED, 0]


def test_tcp_idle_timeout_closes(
    demo_topology: Topology, router_factory: Callable[..., RunningRouter]
) -> None:
    running = router_factory(demo_topology, idle_timeout=0.3)
    with socket.create_connection(("127.0.0.1", running.port), timeout=3) as sock:
        start = time.monotonic()
        assert sock.recv(10) == b""
        assert time.monotonic() - start < 2.5


def _udp_with_retries(query: dns.message.Message, port: int) -> dns.message.Message:
    """Ask like a resolver does: a burst of garbage may still fill the socket buffer, so retry a few times."""
    for _ in range(4):
        try:
            return dns.query.udp(query, "127.0.0.1", port=port, timeout=1.5)
        except dns.exception.Timeout:
            continue
    raise AssertionError("the server did not answer over UDP after the garbage")


def test_garbage_does_not_break_the_server(running_router: RunningRouter) -> None:
    rng = random.Random(7)
    seed = dns.message.make_query("video.cdn.test", "A", use_edns=0).to_wire()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        for i in range(300):
            if i % 2:
                data = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 300)))
            else:
                data = bytearray(seed)
                for _ in range(3):
                    data[rng.randrange(len(data))] = rng.randrange(256)
            udp.sendto(bytes(data), ("127.0.0.1", running_router.port))
    for _ in range(20):
        with socket.create_connection(("127.0.0.1", running_router.port), timeout=3) as sock:
            sock.sendall(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))))
    with socket.create_connection(("127.0.0.1", running_router.port), timeout=3) as sock:
        sock.sendall(b"\x00\x40" + b"\x00" * 10)  # a frame announcing more bytes than ever come
    reply = dns.query.udp(
        dns.message.make_query("video.cdn.test", "A"), "127.0.0.1", port=running_router.port, timeout=3
    )
    assert reply.rcode() == dns.rcode.NOERROR
    reply = dns.query.tcp(
        dns.message.make_query("cdn.test", "SOA"), "127.0.0.1", port=running_router.port, timeout=3
    )
    assert reply.answer


@pytest.mark.parametrize("batched", [True, False], ids=["recvmmsg", "asyncio"])
def test_udp_engines(
    demo_topology: Topology, router_factory: Callable[..., RunningRouter], batched: bool
) -> None:
    running = router_factory(demo_topology, batched_udp=batched)
    assert isinstance(running.service._closers[0], udpbatch.BatchedUdp) is (batched and udpbatch.available())
    queries = [
        dns.message.make_query(f"n{i}.cdn.test" if i % 3 else "video.cdn.test", "A") for i in range(40)
    ]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.10.3.1", 0))
        sock.settimeout(10)  # generous: the machine may be busy; a lost reply still fails
        for q in queries:  # a burst, so several arrive in one batch
            sock.sendto(q.to_wire(), ("127.0.0.1", running.port))
        sock.sendto(b"garbage", ("127.0.0.1", running.port))
        replies = {}
        while len(replies) < len(queries):
            reply = dns.message.from_wire(sock.recv(4096))
            replies[reply.id] = reply
    for q in queries:
        r = replies[q.id]
        assert r.question == q.question
        expected = dns.rcode.NOERROR if str(q.question[0].name) == "video.cdn.test." else dns.rcode.NXDOMAIN
        assert r.rcode() == expected
    assert [rd.address for rd in replies[queries[0].id].answer[0]] == ["127.0.3.1"]


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback here")
@pytest.mark.parametrize("batched", [True, False], ids=["recvmmsg", "asyncio"])
def test_ipv6_listener(
    demo_topology: Topology, router_factory: Callable[..., RunningRouter], batched: bool
) -> None:
    running = router_factory(demo_topology, batched_udp=batched, host="::1")
    query = dns.message.make_query(
        "video.cdn.test", "A", use_edns=0, options=[dns.edns.ECSOption("fd00:10:2::", 48)]
    )
    udp = dns.query.udp(query, "::1", port=running.port, timeout=3)
    tcp = dns.query.tcp(query, "::1", port=running.port, timeout=3)
    assert [rd.address for rd in udp.answer[0]] == [rd.address for rd in tcp.answer[0]] == ["127.0.2.1"]


def _big_txt(data: dict[str, Any]) -> Topology:
    data["zone"]["records"] += [
        {"name": "big", "type": "TXT", "value": f"record {i:03d} " + "x" * 60} for i in range(40)
    ]
    return parse_topology(data)


def test_truncated_over_udp_full_over_tcp_dnspython(
    demo_data: dict[str, Any], router_factory: Callable[..., RunningRouter]
) -> None:
    running = router_factory(_big_txt(demo_data))
    query = dns.message.make_query("big.cdn.test", "TXT")
    udp = dns.query.udp(query, "127.0.0.1", port=running.port, timeout=3, ignore_trailing=True)
    assert udp.flags & dns.flags.TC
    tcp = dns.query.tcp(query, "127.0.0.1", port=running.port, timeout=3)
    assert len(tcp.answer[0]) == 40


# ---------------------------------------------------------------- dig


@needs_dig
def test_dig_routes_by_ecs_and_echoes_scope(running_router: RunningRouter) -> None:
    out = dig(running_router.port, "ViDeO.cDn.TeSt", "A", "+subnet=127.10.3.0/24", "-b", "127.10.1.9")
    assert status(out) == "NOERROR"
    assert {"qr", "aa", "rd"} <= flags(out)
    assert re.search(r"^;ViDeO\.cDn\.TeSt\.\s+IN\s+A$", out, re.M), out  # the question echoed with its case
    assert answer_lines(out)[0][-1] == "127.0.3.1"
    assert "CLIENT-SUBNET: 127.10.3.0/24/24" in out


@needs_dig
def test_dig_norecurse_and_tcp(running_router: RunningRouter) -> None:
    out = dig(running_router.port, "+tcp", "+norecurse", "video.example.test", "A", "-b", "127.10.2.3")
    assert "rd" not in flags(out)
    assert "(TCP)" in out
    lines = answer_lines(out)
    assert [line[3] for line in lines] == ["CNAME", "A"]
    assert lines[1][-1] == "127.0.2.1"


@needs_dig
@pytest.mark.parametrize(
    ("args", "expected_status", "expected_answer"),
    [
        (["cdn.test", "SOA"], "NOERROR", "2026112401"),
        (["cdn.test", "NS"], "NOERROR", "ns1.cdn.test."),
        (["cdn.test", "MX"], "NOERROR", "mail.cdn.test."),
        (["cdn.test", "TXT"], "NOERROR", '"pycdn demo zone"'),
        (["www.cdn.test", "CNAME"], "NOERROR", "video.cdn.test."),
        (["nope.cdn.test", "A"], "NXDOMAIN", None),
        (["ns1.cdn.test", "AAAA"], "NOERROR", None),
        (["example.com", "A"], "REFUSED", None),
    ],
)
def test_dig_record_types_and_negative_answers(
    running_router: RunningRouter, args: list[str], expected_status: str, expected_answer: str | None
) -> None:
    out = dig(running_router.port, *args)
    assert status(out) == expected_status
    if expected_answer is not None:
        assert expected_answer in " ".join(answer_lines(out)[0][4:])
    elif expected_status != "REFUSED":
        assert re.search(r"AUTHORITY SECTION:\n\S+\s+30\s+IN\s+SOA\s+ns1\.cdn\.test\.", out), out
    assert ("aa" in flags(out)) == (expected_status != "REFUSED")


@needs_dig
def test_dig_opt_only_when_asked(running_router: RunningRouter) -> None:
    assert "OPT PSEUDOSECTION" not in dig(running_router.port, "+noedns", "video.cdn.test")
    assert "OPT PSEUDOSECTION" in dig(running_router.port, "+edns=0", "video.cdn.test")


@needs_dig
def test_dig_badvers_notimp_formerr(running_router: RunningRouter) -> None:
    assert status(dig(running_router.port, "+edns=1", "+noednsnegotiation", "video.cdn.test")) == "BADVERS"
    assert status(dig(running_router.port, "+opcode=status", "cdn.test")) == "NOTIMP"
    assert status(dig(running_router.port, "+ednsopt=8:00030000", "video.cdn.test")) == "FORMERR"


@needs_dig
def test_dig_truncation_then_tcp(
    demo_data: dict[str, Any], router_factory: Callable[..., RunningRouter]
) -> None:
    running = router_factory(_big_txt(demo_data))
    out = dig(running.port, "+noedns", "+ignore", "big.cdn.test", "TXT")
    assert "tc" in flags(out)
    retried = dig(running.port, "+noedns", "big.cdn.test", "TXT")  # dig retries over TCP on TC=1
    assert "Truncated, retrying in TCP mode" in retried
    assert len(answer_lines(retried)) == 40


@pytest.mark.parametrize("batched", [True, False], ids=["recvmmsg", "asyncio"])
def test_large_udp_answer_when_the_client_allows_it(
    demo_data: dict[str, Any], router_factory: Callable[..., RunningRouter], batched: bool
) -> None:
    demo_data["zone"]["records"] += [
        {"name": "huge", "type": "TXT", "value": f"r{i:03d} " + "y" * 80} for i in range(80)
    ]
    running = router_factory(parse_topology(demo_data), batched_udp=batched)
    query = dns.message.make_query("huge.cdn.test", "TXT", use_edns=0, payload=65000)
    reply = dns.query.udp(query, "127.0.0.1", port=running.port, timeout=3)
    assert not reply.flags & dns.flags.TC
    assert len(reply.answer[0]) == 80  # about 7 KB in one datagram


def test_tcp_frames_split_across_reads(running_router: RunningRouter) -> None:
    # Two pipelined queries sent a byte at a time: the length prefix itself arrives in two reads.
    queries = [dns.message.make_query(n, "A") for n in ("video.cdn.test", "ns1.cdn.test")]
    stream = b"".join(len(w).to_bytes(2, "big") + w for w in (q.to_wire() for q in queries))
    with socket.create_connection(("127.0.0.1", running_router.port), timeout=3) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(stream)):
            sock.sendall(stream[i : i + 1])
            if i % 8 == 0:
                time.sleep(0.002)
        replies = []
        for _ in queries:
            length = int.from_bytes(recv_exactly(sock, 2), "big")
            replies.append(dns.message.from_wire(recv_exactly(sock, length)))
    assert [r.id for r in replies] == [q.id for q in queries]
    assert all(r.answer for r in replies)


def test_tcp_client_that_never_reads_is_paused(demo_topology: Topology) -> None:
    """A client pipelining queries without reading answers must not grow the server's write buffer."""
    import asyncio

    from dnsrouter.server import TcpProtocol
    from dnsrouter.service import build_responder

    frame = dns.message.make_query("ns1.cdn.test", "TXT").to_wire()
    frame = len(frame).to_bytes(2, "big") + frame

    async def scenario() -> tuple[bool, int]:
        loop = asyncio.get_running_loop()
        proto = TcpProtocol(build_responder(demo_topology))
        with socket.create_server(("127.0.0.1", 0)) as listener:
            client = socket.create_connection(listener.getsockname(), timeout=3)
            server_side, _ = listener.accept()
        transport, _ = await loop.connect_accepted_socket(lambda: proto, server_side)
        client.setblocking(False)
        burst = frame * 200
        deadline = time.monotonic() + 10
        try:
            while transport.is_reading() and time.monotonic() < deadline:
                try:
                    client.send(burst)
                except BlockingIOError:
                    pass
                await asyncio.sleep(0.005)
            return transport.is_reading(), transport.get_write_buffer_size()
        finally:
            transport.close()
            client.close()
            await asyncio.sleep(0)

    still_reading, buffered = asyncio.run(scenario())
    assert not still_reading
    assert buffered < 1 << 20
