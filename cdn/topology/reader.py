"""Reading the parsed YAML: a mapping that knows its key path, and small per-value parsers.

Every parser raises ValueError with a short phrase; `Node.get` turns it into a TopologyError that names
the key path and the bad value.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from cdn.hostport import HostPort, parse_hostport
from cdn.topology.model import Location, TopologyError

T = TypeVar("T")
LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")


class Node:
    """A mapping with its key path, so every error names where it happened."""

    def __init__(self, data: object, path: str, source: str) -> None:
        if not isinstance(data, Mapping):
            raise TopologyError(f"expected a mapping, got {show(data)}", source=source, key=path, value=data)
        self.data, self.path, self.source = data, path, source

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def fail(self, name: str, message: str, value: object = None) -> TopologyError:
        return TopologyError(message, source=self.source, key=self.key(name), value=value)

    def get(
        self, name: str, parse: Callable[[Any], T], default: T | None = None, *, required: bool = False
    ) -> T:
        if name not in self.data or self.data[name] is None:
            if required:
                raise self.fail(name, "is required")
            return default  # type: ignore[return-value]
        value = self.data[name]
        try:
            return parse(value)
        except TopologyError:
            raise
        except (ValueError, TypeError) as exc:
            raise self.fail(name, explain(value, exc), value) from exc

    def child(self, name: str, *, required: bool = False) -> Node:
        if self.data.get(name) is None:
            if required:
                raise self.fail(name, "is required")
            return Node({}, self.key(name), self.source)
        return Node(self.data[name], self.key(name), self.source)

    def items(self, name: str) -> list[tuple[str, object]]:
        value = self.data.get(name) or []
        if not isinstance(value, list):
            raise self.fail(name, f"expected a list, got {show(value)}", value)
        return [(f"{self.key(name)}[{i}]", v) for i, v in enumerate(value)]

    def only(self, *known: str) -> None:
        for k in self.data:
            if k not in known:
                raise self.fail(str(k), f"unknown key (expected one of: {', '.join(known)})", k)


def list_item(path: str, value: object, parse: Callable[[Any], T], source: str) -> T:
    """Parse one list item, naming `path` (`zone.ns[0]`) when it is bad."""
    try:
        return parse(value)
    except (ValueError, TypeError) as exc:
        raise TopologyError(explain(value, exc), source=source, key=path, value=value) from exc


def explain(value: object, exc: Exception) -> str:
    """`'eu-wset' is not a region (...)` or `70000: expected 1..65535`."""
    text = str(exc)
    return f"{show(value)} {text}" if text.startswith(("is ", "has ")) else f"{show(value)}: {text}"


def show(value: object) -> str:
    return (
        repr(value) if isinstance(value, str | int | float | bool) or value is None else type(value).__name__
    )


def int_in(lo: int, hi: int = 2**31 - 1) -> Callable[[Any], int]:
    def parse(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError("expected an integer")
        if not lo <= v <= hi:
            raise ValueError(f"expected {lo}..{hi}")
        return v

    return parse


def positive_float(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or v <= 0:
        raise ValueError("expected a positive number")
    return float(v)


def boolean(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError("expected true or false")
    return v


def nonempty(v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise ValueError("expected a non-empty string")
    return v


def hostport(v: Any) -> HostPort:
    return parse_hostport(nonempty(v))


def ip_text(v: Any) -> str:
    return str(ipaddress.ip_address(nonempty(v)))


def location(node: Node) -> Location:
    node.only("lat", "lon")
    lat = node.get("lat", number, required=True)
    lon = node.get("lon", number, required=True)
    try:
        return Location(lat, lon)
    except ValueError as exc:
        raise TopologyError(str(exc), source=node.source, key=node.path, value=(lat, lon)) from exc


def number(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ValueError("expected a number")
    return float(v)


def hostname(v: Any) -> str:
    """An absolute lower-case DNS name (`ns1.cdn.test.`); labels checked for length and characters."""
    text = nonempty(v).rstrip(".").lower()
    labels = text.split(".")
    if len(text) > 253 or not all(LABEL.match(label) for label in labels):
        raise ValueError("is not a valid DNS name")
    return text + "."
