"""Settings of one player session, read from the command line.

`PlayerConfig.from_args(argv)` is the only place that reads argv; everything else receives the
frozen `PlayerConfig`. `build_parser()` is shared with `player.cli` (for `--help`).
"""

from __future__ import annotations

import argparse
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cdn.hostport import HostPort, hostport_arg

__all__ = [
    "DEFAULT_MAX_BUFFER",
    "DEFAULT_RETRIES_PER_EDGE",
    "DEFAULT_STARTUP",
    "DEFAULT_TIMEOUT",
    "PlayerConfig",
    "READ_TIMEOUT_FLOOR",
    "build_parser",
]

DEFAULT_MAX_BUFFER = 30.0  # seconds of media held before the player waits
DEFAULT_STARTUP = 4.0  # seconds of media buffered before playback starts
DEFAULT_TIMEOUT = 10.0  # connect/read timeout of one HTTP request, seconds (video chunks: the longest)
# The shortest read timeout of a video chunk, in wall-clock seconds: an alive link sends some bytes within it
# even when slow, so a link silent that long is taken for dead when the buffer runs low (player.session).
READ_TIMEOUT_FLOOR = 2.0
DEFAULT_RETRIES_PER_EDGE = 3  # attempts at one edge before failing over to another
DEFAULT_MAX_FAILOVERS = 4  # re-resolutions for one chunk before giving up

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
ChunkSizes = Literal["head", "nominal"]  # where the ABR's chunk sizes come from


@dataclass(frozen=True, slots=True, kw_only=True)
class PlayerConfig:
    """Everything one `cdn-player URL ...` run needs (see docs/player.md)."""

    url: str
    dns: HostPort | None = None
    abr: str | None = None  # None: player.abr.DEFAULT_ABR
    client_subnet: IPNetwork | None = None
    source_ip: str | None = None
    output: Path | None = None
    report: Path | None = None
    plot: Path | None = None
    speed: float = 1.0
    quiet: bool = False
    max_buffer: float = DEFAULT_MAX_BUFFER
    startup: float = DEFAULT_STARTUP
    timeout: float = DEFAULT_TIMEOUT
    retries_per_edge: int = DEFAULT_RETRIES_PER_EDGE
    max_failovers: int = DEFAULT_MAX_FAILOVERS
    chunk_sizes: ChunkSizes = "head"
    duration: float | None = None  # stop after this many media seconds (None: to the end; live: Ctrl-C)
    ca: Path | None = None  # PEM CA bundle trusted for https edges, besides the system CAs

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"URL {self.url!r} must start with http:// or https://")
        if self.speed <= 0:
            raise ValueError(f"--speed {self.speed} must be > 0 (1 = real time, 10 = ten times faster)")
        if self.max_buffer <= 0 or self.startup < 0:
            raise ValueError(f"--max-buffer {self.max_buffer} must be > 0 and --startup {self.startup} >= 0")
        if self.startup > self.max_buffer:
            raise ValueError(f"--startup {self.startup} s is larger than --max-buffer {self.max_buffer} s")
        if self.client_subnet is not None and self.source_ip is not None:
            raise ValueError("use either --client-subnet or --source-ip, not both")
        if self.timeout <= 0 or self.retries_per_edge < 1 or self.max_failovers < 0:
            raise ValueError("timeout must be > 0, retries per edge >= 1 and max failovers >= 0")
        if self.duration is not None and self.duration <= 0:
            raise ValueError(f"--duration {self.duration} must be > 0 seconds of media")

    @classmethod
    def from_args(cls, argv: list[str]) -> PlayerConfig:
        """Parse argv (without the program name); argparse exits with status 2 on a usage error."""
        parser = build_parser()
        ns = parser.parse_args(argv)
        _check_abr(parser, ns.abr)
        try:
            return cls(
                url=ns.url,
                dns=ns.dns,
                abr=ns.abr,
                client_subnet=ns.client_subnet,
                source_ip=ns.source_ip,
                output=ns.output,
                report=ns.report,
                plot=ns.plot,
                speed=ns.speed,
                quiet=ns.quiet,
                max_buffer=ns.max_buffer,
                startup=ns.startup,
                timeout=ns.timeout,
                retries_per_edge=ns.retries,
                max_failovers=ns.max_failovers,
                chunk_sizes=ns.chunk_sizes,
                duration=ns.duration,
                ca=ns.ca,
            )
        except ValueError as exc:
            parser.error(str(exc))


def _check_abr(parser: argparse.ArgumentParser, name: str | None) -> None:
    """Reject an unknown --abr name, listing the known ones."""
    if name is None:
        return
    from player.abr import ALGORITHMS

    if name not in ALGORITHMS:
        parser.error(f"--abr {name!r} is unknown; choose one of: {', '.join(sorted(ALGORITHMS))}")


def _ca_arg(text: str) -> Path:
    """A `--ca` file that holds at least one PEM CA certificate (checked now: a usage error, not a failure)."""
    from player.fetch import CaFileError, client_tls_context

    try:
        client_tls_context(Path(text))
    except CaFileError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--ca ")) from None
    return Path(text)


def _subnet_arg(text: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a CIDR subnet such as 127.10.1.0/24") from exc


def _ip_arg(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IP address such as 127.10.1.5") from exc


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from exc
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
    return value


def build_parser(prog: str = "cdn-player") -> argparse.ArgumentParser:
    """The argparse parser of `cdn-player URL ...` (play a DASH stream through the CDN)."""
    p = argparse.ArgumentParser(
        prog=prog,
        description="Play a DASH stream through the CDN, adapting the bitrate chunk by chunk. "
        "`cdn-player simulate --help` runs the ABR against a throughput trace instead.",
    )
    p.add_argument(
        "url", metavar="URL", help="manifest URL, e.g. http://video.cdn.test:8080/videos/demo/manifest.mpd"
    )
    p.add_argument(
        "--dns",
        type=hostport_arg,
        metavar="HOST:PORT",
        help="DNS server that resolves the URL's host (default: the system resolver)",
    )
    p.add_argument(
        "--ca",
        type=_ca_arg,
        metavar="FILE",
        help="PEM CA bundle trusted for https edges besides the system CAs (certificates are always "
        "verified, against the URL's host)",
    )
    p.add_argument("--abr", metavar="NAME", help="ABR algorithm (default: the best one of the evaluation)")
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--client-subnet",
        type=_subnet_arg,
        metavar="CIDR",
        help="send this EDNS Client Subnet in DNS queries (stand in that region)",
    )
    where.add_argument(
        "--source-ip",
        type=_ip_arg,
        metavar="IP",
        help="bind DNS queries and HTTP connections to this local address",
    )
    p.add_argument("--output", type=Path, metavar="FILE.mp4", help="write a playable MP4 of what was watched")
    p.add_argument(
        "--report", type=Path, metavar="FILE.json", help="write the QoE summary and per-chunk records"
    )
    p.add_argument(
        "--plot", type=Path, metavar="FILE.png", help="plot bitrate, throughput and buffer over time"
    )
    p.add_argument(
        "--speed",
        type=_positive,
        default=1.0,
        metavar="N",
        help="play N times faster than real time (default 1)",
    )
    p.add_argument(
        "--duration",
        type=_positive,
        default=None,
        metavar="S",
        help="stop after S seconds of media (default: play to the end; a live stream plays until its MPD "
        "turns static or ends, or Ctrl-C, which still writes the report)",
    )
    p.add_argument("--quiet", action="store_true", help="no live view, only the final report")
    p.add_argument(
        "--max-buffer",
        type=_positive,
        default=DEFAULT_MAX_BUFFER,
        metavar="S",
        help=f"seconds of media to hold at most (default {DEFAULT_MAX_BUFFER:g})",
    )
    p.add_argument(
        "--startup",
        type=float,
        default=DEFAULT_STARTUP,
        metavar="S",
        help=f"seconds buffered before playback starts (default {DEFAULT_STARTUP:g})",
    )
    p.add_argument(
        "--timeout",
        type=_positive,
        default=DEFAULT_TIMEOUT,
        metavar="S",
        help=f"HTTP connect/read timeout in seconds (default {DEFAULT_TIMEOUT:g}); a video chunk's read "
        f"timeout is shorter when the buffer is low (down to {READ_TIMEOUT_FLOOR:g} s)",
    )
    p.add_argument(
        "--retries",
        type=int,
        default=DEFAULT_RETRIES_PER_EDGE,
        metavar="N",
        help=f"attempts at one edge before failing over (default {DEFAULT_RETRIES_PER_EDGE})",
    )
    p.add_argument(
        "--max-failovers",
        type=int,
        default=DEFAULT_MAX_FAILOVERS,
        metavar="N",
        help=f"re-resolutions for one chunk before giving up (default {DEFAULT_MAX_FAILOVERS})",
    )
    p.add_argument(
        "--chunk-sizes",
        choices=("head", "nominal"),
        default="head",
        help="real chunk sizes for the ABR from HEAD requests a few chunks ahead (default; note that an "
        "edge may fill its cache on a HEAD miss), or nominal sizes from @bandwidth",
    )
    return p
