"""Settings of `cdn-dns serve`: the topology plus command-line overrides, checked at start.

Only `DnsRouterConfig.from_args` reads the outside world (argv and the topology file).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cdn.hostport import HostPort, hostport_arg
from cdn.topology import Topology, TopologyError, load_topology
from dnsrouter.errors import ConfigError
from dnsrouter.health import health_tls_context
from dnsrouter.server import DEFAULT_IDLE_TIMEOUT

__all__ = ["DEFAULT_TOPOLOGY", "DnsRouterConfig", "build_parser"]

DEFAULT_TOPOLOGY = Path("topology.yaml")


@dataclass(frozen=True, slots=True, kw_only=True)
class DnsRouterConfig:
    """Everything the DNS router needs to start."""

    topology: Topology
    listen: HostPort
    http: HostPort | None  # None: no side port
    workers: int = 1
    reuse_port: bool = False
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    log_level: str = "INFO"
    link_fd: int | None = None  # set in an extra worker: its link to the main process (see workers.py)
    health_ca: Path | None = None  # PEM CA bundle for https health URLs, besides the system CAs

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ConfigError(f"--workers {self.workers}: need at least 1 worker")
        if self.link_fd is not None and (self.link_fd < 0 or self.workers > 1):
            raise ConfigError(
                f"--link-fd {self.link_fd}: only for an extra worker (--workers 1), and a valid descriptor"
            )

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> DnsRouterConfig:
        """Load the topology and apply `--listen`, `--http`, `--workers` over its dns section.

        A `--health-ca` file is loaded once here, so that a bad one stops the router before it serves.
        """
        try:
            topology = load_topology(args.topology)
        except TopologyError as exc:
            raise ConfigError(f"{exc}; fix the topology file and start again") from exc
        if args.health_ca is not None:
            health_tls_context(args.health_ca)
        http = None if args.no_http else (args.http or topology.dns.http)
        return cls(
            topology=topology,
            listen=args.listen or topology.dns.listen,
            http=http,
            workers=args.workers,
            reuse_port=args.reuse_port or args.workers > 1,
            log_level=args.log_level,
            link_fd=args.link_fd,
            health_ca=args.health_ca,
        )


def build_parser() -> argparse.ArgumentParser:
    """The `cdn-dns` argument parser."""
    parser = argparse.ArgumentParser(
        prog="cdn-dns", description="The CDN's geo-aware authoritative DNS router."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve DNS (UDP and TCP) and the HTTP side port")
    serve.add_argument(
        "--topology", type=Path, default=DEFAULT_TOPOLOGY, help="topology file (default: %(default)s)"
    )
    serve.add_argument(
        "--listen", type=hostport_arg, help="DNS HOST:PORT (default: the topology's dns.listen)"
    )
    serve.add_argument(
        "--http", type=hostport_arg, help="side port HOST:PORT (default: the topology's dns.http)"
    )
    serve.add_argument("--no-http", action="store_true", help="do not open the HTTP side port")
    serve.add_argument(
        "--health-ca",
        type=Path,
        metavar="FILE",
        help="PEM CA bundle trusted for https health URLs, besides the system CAs (always verified)",
    )
    serve.add_argument("--workers", type=int, default=1, help="processes sharing the DNS port (SO_REUSEPORT)")
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    serve.add_argument("--link-fd", type=int, help=argparse.SUPPRESS)  # set by the main process only
    serve.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    check = sub.add_parser("check", help="validate the topology file and print a summary")
    check.add_argument("--topology", type=Path, default=DEFAULT_TOPOLOGY)
    return parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    return build_parser().parse_args(argv)
