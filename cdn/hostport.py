"""Parse `HOST:PORT` settings (`127.0.0.1:8080`, `[::1]:5353`, `localhost:80`)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

__all__ = ["HostPort", "parse_hostport"]


@dataclass(frozen=True, slots=True)
class HostPort:
    host: str
    port: int

    def __post_init__(self) -> None:
        if not self.host:
            raise ValueError("host is empty")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port {self.port} is outside 0..65535")

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def url_host(self) -> str:
        """The host as it appears in a URL (IPv6 in brackets)."""
        return f"[{self.host}]" if ":" in self.host else self.host


def parse_hostport(text: str, *, default_port: int | None = None) -> HostPort:
    """Parse HOST:PORT; raise ValueError naming the bad value."""
    text = text.strip()
    host, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"{text!r}: missing ']' after an IPv6 address")
        host, rest = text[1:end], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError(f"{text!r}: expected ':PORT' after ']'")
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    if not port_text:
        if default_port is None:
            raise ValueError(f"{text!r}: expected HOST:PORT")
        return HostPort(host, default_port)
    if not port_text.isdigit():
        raise ValueError(f"{text!r}: port {port_text!r} is not a number")
    return HostPort(host, int(port_text))


def hostport_arg(text: str) -> HostPort:
    """argparse `type=` adapter for HOST:PORT options."""
    try:
        return parse_hostport(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
