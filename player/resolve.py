"""Resolve the CDN host name to edge addresses through our DNS router.

Pure part: `build_query` (a dnspython query with an optional EDNS Client Subnet, RFC 7871) and
`addresses_from_response` (follow the CNAME chain inside the answer section, collect A/AAAA with
their TTL). Shell part: `Resolver.resolve`, which sends the query over UDP (TCP when truncated) from
an optional source address, or asks the system resolver when no DNS server is configured.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver

from cdn.hostport import HostPort
from player.errors import PlayerError

__all__ = ["Address", "Resolution", "ResolveError", "Resolver", "addresses_from_response", "build_query"]

MAX_CNAME_CHAIN = 16  # longer chains are loops or misconfiguration
EDNS_PAYLOAD = 1232  # the DNS flag day 2020 recommendation


class ResolveError(PlayerError):
    """Raised when the host name cannot be resolved to any usable address."""


@dataclass(frozen=True, slots=True)
class Address:
    """One A/AAAA answer: an edge address and how long (seconds) it may be used."""

    ip: str
    ttl: int

    def __post_init__(self) -> None:
        ipaddress.ip_address(self.ip)
        if self.ttl < 0:
            raise ValueError(f"TTL {self.ttl} is negative")


@dataclass(frozen=True, slots=True)
class Resolution:
    """The addresses of `host` (CNAME chain followed) in answer order."""

    host: str
    addresses: tuple[Address, ...]
    chain: tuple[str, ...] = ()  # the names followed, host first, when CNAMEs were involved

    @property
    def ttl(self) -> int:
        """The smallest TTL of the answer (0 when unknown)."""
        return min((a.ttl for a in self.addresses), default=0)

    def without(self, excluded: Iterable[str]) -> Resolution:
        """The same resolution without the addresses in `excluded`."""
        skip = set(excluded)
        return Resolution(self.host, tuple(a for a in self.addresses if a.ip not in skip), self.chain)


def build_query(
    host: str, rdtype: str, *, client_subnet: ipaddress.IPv4Network | ipaddress.IPv6Network | None
) -> dns.message.Message:
    """A recursive query for (host, rdtype), with EDNS and an ECS option when `client_subnet` is given."""
    options: list[dns.edns.Option] = []
    if client_subnet is not None:
        options.append(dns.edns.ECSOption(str(client_subnet.network_address), client_subnet.prefixlen))
    return dns.message.make_query(host, rdtype, use_edns=0, payload=EDNS_PAYLOAD, options=options)


def addresses_from_response(
    response: dns.message.Message, host: str, rdtype: str
) -> tuple[tuple[str, ...], list[Address]]:
    """Follow the CNAME chain from `host` in the answer section; return (chain, A/AAAA addresses).

    Raises ResolveError for an error rcode or a CNAME loop.
    """
    rcode = response.rcode()
    if rcode != dns.rcode.NOERROR:
        raise ResolveError(
            f"DNS answered {dns.rcode.to_text(rcode)} for {host} {rdtype}; check the name and --dns"
        )
    want = dns.rdatatype.from_text(rdtype)
    name = dns.name.from_text(host)
    chain = [name.to_text(omit_final_dot=True)]
    cname_ttl: int | None = None  # the answer is only as fresh as the shortest-lived link of the chain
    for _ in range(MAX_CNAME_CHAIN):
        found = _find(response, name, want)
        if found:
            if cname_ttl is not None:
                found = [Address(a.ip, min(a.ttl, cname_ttl)) for a in found]
            return tuple(chain) if len(chain) > 1 else (), found
        link = _cname(response, name)
        if link is None:
            return tuple(chain) if len(chain) > 1 else (), []
        name, ttl = link
        cname_ttl = ttl if cname_ttl is None else min(cname_ttl, ttl)
        chain.append(name.to_text(omit_final_dot=True))
    raise ResolveError(f"CNAME chain from {host} is longer than {MAX_CNAME_CHAIN}: {' -> '.join(chain)}")


def _find(
    response: dns.message.Message, name: dns.name.Name, rdtype: dns.rdatatype.RdataType
) -> list[Address]:
    for rrset in response.answer:
        if rrset.name == name and rrset.rdtype == rdtype:
            return [Address(rd.address, int(rrset.ttl)) for rd in rrset]
    return []


def _cname(response: dns.message.Message, name: dns.name.Name) -> tuple[dns.name.Name, int] | None:
    """The CNAME target of `name` in the answer section and its TTL, or None."""
    for rrset in response.answer:
        if rrset.name == name and rrset.rdtype == dns.rdatatype.CNAME:
            return next(iter(rrset)).target, int(rrset.ttl)
    return None


def _why(exc: BaseException) -> str:
    """A short reason for a message: the exception text without its final period, or its type."""
    return str(exc).rstrip(".") or type(exc).__name__


def _ip_literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


class Resolver:
    """Resolve host names via one DNS server (`server`) or the system resolver (`server=None`)."""

    def __init__(
        self,
        *,
        server: HostPort | None,
        client_subnet: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None,
        source_ip: str | None = None,
        timeout: float = 3.0,
    ) -> None:
        self.server = server
        self.client_subnet = client_subnet
        self.source_ip = source_ip
        self.timeout = timeout

    def resolve(self, host: str) -> Resolution:
        """All A then AAAA answers for `host` (an IP literal resolves to itself); raise ResolveError."""
        literal = _ip_literal(host)
        if literal is not None:
            return Resolution(host, (Address(literal, 0),))
        if self.server is None and self.client_subnet is None:
            return self._system(host)
        chain: tuple[str, ...] = ()
        addresses: list[Address] = []
        failures: list[ResolveError] = []
        for rdtype in self._rdtypes():
            try:
                got_chain, got = self._query(host, rdtype)
            except ResolveError as exc:  # e.g. a server that answers SERVFAIL/NOTIMP to AAAA only
                failures.append(exc)
                continue
            chain = chain or got_chain
            addresses += got
        if not addresses:
            if failures:
                raise failures[0]
            raise ResolveError(f"{host} has no A/AAAA records at {self._where()}; is the name right?")
        return Resolution(host, tuple(addresses), chain)

    def _rdtypes(self) -> tuple[str, ...]:
        """A and AAAA, or only the family a `source_ip` can connect to."""
        if self.source_ip is None:
            return ("A", "AAAA")
        return ("A",) if ipaddress.ip_address(self.source_ip).version == 4 else ("AAAA",)

    def _where(self) -> str:
        return str(self.server) if self.server is not None else "the system resolver"

    def _query(self, host: str, rdtype: str) -> tuple[tuple[str, ...], list[Address]]:
        query = build_query(host, rdtype, client_subnet=self.client_subnet)
        if self.server is None:
            return self._stub(host, rdtype, query)
        try:
            response, _tcp = dns.query.udp_with_fallback(
                query, self.server.host, timeout=self.timeout, port=self.server.port, source=self.source_ip
            )
        except (dns.exception.DNSException, OSError) as exc:
            raise ResolveError(
                f"DNS query {host} {rdtype} to {self.server} failed: {_why(exc)}; is the DNS router running?"
            ) from exc
        return addresses_from_response(response, host, rdtype)

    def _stub(
        self, host: str, rdtype: str, query: dns.message.Message
    ) -> tuple[tuple[str, ...], list[Address]]:
        """Send the ECS query to the first nameserver of /etc/resolv.conf."""
        try:
            nameserver = dns.resolver.Resolver().nameservers[0]
            response, _tcp = dns.query.udp_with_fallback(
                query, str(nameserver), timeout=self.timeout, source=self.source_ip
            )
        except (dns.exception.DNSException, OSError, IndexError) as exc:
            raise ResolveError(
                f"system DNS query {host} {rdtype} failed: {_why(exc)}; give --dns HOST:PORT"
            ) from exc
        return addresses_from_response(response, host, rdtype)

    def _system(self, host: str) -> Resolution:
        """getaddrinfo (honours /etc/hosts); the system gives no TTL, so it is 0."""
        try:
            infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
        except OSError as exc:
            raise ResolveError(
                f"the system resolver cannot resolve {host}: {exc}; give --dns HOST:PORT"
            ) from exc
        seen: dict[str, Address] = {}
        for _family, _type, _proto, _canon, sockaddr in infos:
            ip = str(sockaddr[0])
            seen.setdefault(ip, Address(ip, 0))
        if self.source_ip is not None:
            family = ipaddress.ip_address(self.source_ip).version
            seen = {ip: a for ip, a in seen.items() if ipaddress.ip_address(ip).version == family}
        if not seen:
            raise ResolveError(f"the system resolver returned no usable address for {host}")
        return Resolution(host, tuple(seen.values()))
