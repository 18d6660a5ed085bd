"""player.resolve: queries with ECS and source address against a real DNS responder on loopback."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

import dns.edns
import dns.message
import dns.rrset
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdn.hostport import HostPort
from player.resolve import Address, Resolution, ResolveError, Resolver, addresses_from_response, build_query
from tests.player.netfixtures import DnsResponder

RECORDS = {
    "video.cdn.test": [("A", "127.0.0.2"), ("A", "127.0.0.3")],
    "www.cdn.test": [("CNAME", "video.cdn.test")],
    "video.example.test": [("CNAME", "www.cdn.test")],
    "loop.cdn.test": [("CNAME", "loop.cdn.test")],
    "v6.cdn.test": [("AAAA", "::1")],
}


@pytest.fixture
def responder() -> Iterator[DnsResponder]:
    with DnsResponder({k: list(v) for k, v in RECORDS.items()}, ttl=17) as r:
        yield r


def resolver(r: DnsResponder, **kw: object) -> Resolver:
    return Resolver(server=HostPort("127.0.0.1", r.port), timeout=2.0, **kw)  # type: ignore[arg-type]


def test_build_query_adds_ecs_option() -> None:
    q = build_query("video.cdn.test", "A", client_subnet=ipaddress.ip_network("127.10.1.0/24"))
    (ecs,) = [o for o in q.options if isinstance(o, dns.edns.ECSOption)]
    assert (ecs.address, ecs.srclen) == ("127.10.1.0", 24)
    assert build_query("video.cdn.test", "A", client_subnet=None).options == ()


def test_addresses_follow_cname_chain_in_answer() -> None:
    q = dns.message.make_query("a.test", "A")
    r = dns.message.make_response(q)
    r.answer.append(dns.rrset.from_text("a.test.", 50, "IN", "CNAME", "b.test."))
    r.answer.append(dns.rrset.from_text("b.test.", 40, "IN", "CNAME", "c.test."))
    r.answer.append(dns.rrset.from_text_list("c.test.", 9, "IN", "A", ["10.0.0.1", "10.0.0.2"]))
    chain, addrs = addresses_from_response(r, "a.test", "A")
    assert chain == ("a.test", "b.test", "c.test")
    assert sorted(addrs, key=lambda a: a.ip) == [Address("10.0.0.1", 9), Address("10.0.0.2", 9)]


def test_addresses_ignore_unrelated_records() -> None:
    q = dns.message.make_query("a.test", "A")
    r = dns.message.make_response(q)
    r.answer.append(dns.rrset.from_text("other.test.", 50, "IN", "A", "10.9.9.9"))
    assert addresses_from_response(r, "a.test", "A") == ((), [])


def test_nxdomain_is_a_resolve_error() -> None:
    r = dns.message.make_response(dns.message.make_query("a.test", "A"))
    r.set_rcode(dns.rcode.NXDOMAIN)
    with pytest.raises(ResolveError, match="NXDOMAIN"):
        addresses_from_response(r, "a.test", "A")


def test_resolution_without_and_ttl() -> None:
    res = Resolution("h", (Address("127.0.0.2", 20), Address("127.0.0.3", 5)))
    assert res.ttl == 5
    assert res.without({"127.0.0.2"}).addresses == (Address("127.0.0.3", 5),)


def test_resolve_all_answers_with_ttl(responder: DnsResponder) -> None:
    res = resolver(responder).resolve("video.cdn.test")
    assert sorted(res.addresses, key=lambda a: a.ip) == [Address("127.0.0.2", 17), Address("127.0.0.3", 17)]
    assert [q.rdtype for q in responder.queries] == ["A", "AAAA"]


def test_resolve_follows_cname_chain(responder: DnsResponder) -> None:
    res = resolver(responder).resolve("video.example.test")
    assert res.chain == ("video.example.test", "www.cdn.test", "video.cdn.test")
    assert sorted(a.ip for a in res.addresses) == ["127.0.0.2", "127.0.0.3"]


def test_resolve_aaaa(responder: DnsResponder) -> None:
    assert resolver(responder).resolve("v6.cdn.test").addresses == (Address("::1", 17),)


def test_client_subnet_is_sent(responder: DnsResponder) -> None:
    resolver(responder, client_subnet=ipaddress.ip_network("127.20.3.7/24", strict=False)).resolve(
        "video.cdn.test"
    )
    assert {q.ecs for q in responder.queries} == {"127.20.3.0/24"}


def test_source_ip_is_bound(responder: DnsResponder) -> None:
    resolver(responder, source_ip="127.10.1.5").resolve("video.cdn.test")
    assert {q.peer for q in responder.queries} == {"127.10.1.5"}
    assert {q.ecs for q in responder.queries} == {None}


def test_source_ip_asks_only_for_its_address_family(responder: DnsResponder) -> None:
    res = resolver(responder, source_ip="127.10.1.5").resolve("video.cdn.test")
    assert {q.rdtype for q in responder.queries} == {"A"}  # an IPv4 socket cannot reach an AAAA answer
    assert {a.ip for a in res.addresses} == {"127.0.0.2", "127.0.0.3"}


def test_aaaa_failure_does_not_lose_the_a_answers() -> None:
    with DnsResponder({"video.cdn.test": [("A", "127.0.0.2")]}, servfail=frozenset({"AAAA"})) as r:
        assert [a.ip for a in resolver(r).resolve("video.cdn.test").addresses] == ["127.0.0.2"]
    with DnsResponder({"video.cdn.test": [("A", "127.0.0.2")]}, servfail=frozenset({"A", "AAAA"})) as r:
        with pytest.raises(ResolveError, match="SERVFAIL"):
            resolver(r).resolve("video.cdn.test")


def test_ttl_is_the_shortest_of_the_cname_chain() -> None:
    response = dns.message.make_response(dns.message.make_query("www.cdn.test", "A"))
    response.answer.append(dns.rrset.from_text("www.cdn.test.", 5, "IN", "CNAME", "video.cdn.test."))
    response.answer.append(dns.rrset.from_text("video.cdn.test.", 300, "IN", "A", "127.0.0.2"))
    _chain, addrs = addresses_from_response(response, "www.cdn.test", "A")
    assert addrs == [Address("127.0.0.2", 5)]  # re-resolve when the CNAME (the routing) expires


def test_truncated_udp_answer_retries_over_tcp() -> None:
    with DnsResponder({"video.cdn.test": [("A", "127.0.0.2")]}, truncate_udp=True) as r:
        res = resolver(r).resolve("video.cdn.test")
        assert [a.ip for a in res.addresses] == ["127.0.0.2"]
        assert any(q.tcp for q in r.queries)


def test_unknown_name_names_the_host(responder: DnsResponder) -> None:
    with pytest.raises(ResolveError, match="nothere.cdn.test"):
        resolver(responder).resolve("nothere.cdn.test")


def test_cname_loop_is_an_error(responder: DnsResponder) -> None:
    with pytest.raises(ResolveError):
        resolver(responder).resolve("loop.cdn.test")


def test_dead_server_is_a_resolve_error(responder: DnsResponder) -> None:
    port = responder.port
    responder.close()
    with pytest.raises(ResolveError, match="DNS router"):
        Resolver(server=HostPort("127.0.0.1", port), timeout=0.3).resolve("video.cdn.test")


def test_ip_literal_and_system_resolver() -> None:
    assert Resolver(server=None).resolve("127.0.0.9").addresses == (Address("127.0.0.9", 0),)
    res = Resolver(server=None).resolve("localhost")
    assert any(ipaddress.ip_address(a.ip).is_loopback for a in res.addresses)


NAMES = [f"n{i}.test" for i in range(6)]


@given(
    links=st.dictionaries(st.sampled_from(NAMES), st.sampled_from(NAMES), max_size=6),
    addressed=st.sets(st.sampled_from(NAMES), max_size=6),
    start=st.sampled_from(NAMES),
)
@settings(max_examples=150, deadline=None)
def test_cname_following_matches_a_reference_walk(
    links: dict[str, str], addressed: set[str], start: str
) -> None:
    """Random CNAME graphs (with loops): the chain is followed exactly, loops end in ResolveError."""
    response = dns.message.make_response(dns.message.make_query(start, "A"))
    for name, target in links.items():
        response.answer.append(dns.rrset.from_text(name + ".", 30, "IN", "CNAME", target + "."))
    for name in addressed:
        response.answer.append(dns.rrset.from_text(name + ".", 30, "IN", "A", "10.0.0.1"))
    name, seen = start, [start]
    while name not in addressed and name in links and len(seen) <= 16:
        name = links[name]
        seen.append(name)
    if name not in addressed and name in links:
        with pytest.raises(ResolveError, match="CNAME chain"):
            addresses_from_response(response, start, "A")
        return
    chain, addrs = addresses_from_response(response, start, "A")
    assert chain == (tuple(seen) if len(seen) > 1 else ())
    assert addrs == ([Address("10.0.0.1", 30)] if name in addressed else [])
