"""The DNS router: an authoritative, geo-aware DNS server that sends every viewer to the nearest healthy edge.

Core (pure): `wire` (hand parsing), `geo` (locating clients), `policy` (choosing edges), `zone`
(authoritative lookup), `health` (hysteresis), `answer` (bytes in, bytes out), `metrics` (counters),
`link` (frames between processes). Shell: `server` (UDP/TCP, with `udpbatch` for recvmmsg/sendmmsg),
`http` (side port), `service` (assembly), `workers` (extra processes and their link: edge states in,
counters out), `cli` (`cdn-dns`).
"""

from __future__ import annotations

from dnsrouter.answer import Responder
from dnsrouter.errors import ConfigError, DNSRouterError, GeoDatabaseError, MalformedQuery
from dnsrouter.geo import Located, LocatedBy, Locator, Via, great_circle_km
from dnsrouter.policy import Decision, EdgeState, Health, Router, choose
from dnsrouter.service import DnsRouterService, build_responder

__all__ = [
    "ConfigError",
    "DNSRouterError",
    "Decision",
    "DnsRouterService",
    "EdgeState",
    "GeoDatabaseError",
    "Health",
    "Located",
    "LocatedBy",
    "Locator",
    "MalformedQuery",
    "Responder",
    "Router",
    "Via",
    "build_responder",
    "choose",
    "great_circle_km",
]
