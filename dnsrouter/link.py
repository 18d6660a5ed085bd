"""The frames of the private link between the main process of `--workers N` and each extra worker.

Pure: bytes in, values out; `workers.py` moves them. Every frame is a header, version (u8), kind
(u8), sequence number (u32) and body length (u32), then the body:

- COUNTERS_REQUEST, main to worker, empty: "send your counters"; seq numbers the request.
- COUNTERS, worker to main: the counters as JSON (`Counters.to_json`), with the request's seq.
- EDGE_STATES, main to worker: every edge's state as JSON (`encode_states`); seq is the main
  process's router generation. Always the whole table, so each message is enough on its own.

A reader skips a frame of another version or of a kind it does not expect by its length, and a body
that does not parse raises ValueError; either way the link stays in step for the next frame.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import IntEnum

from dnsrouter.policy import EdgeState, Health

__all__ = ["HEADER", "MAX_BODY", "VERSION", "Header", "Kind", "decode_states", "encode_states", "frame"]

VERSION = 1
HEADER = struct.Struct("!BBII")
MAX_BODY = 64 << 20  # a sanity bound: even every qtype x rcode pair is a few MB of JSON


class Kind(IntEnum):
    """What a frame carries."""

    COUNTERS_REQUEST = 1
    COUNTERS = 2
    EDGE_STATES = 3


@dataclass(frozen=True, slots=True)
class Header:
    """A frame's header, as read: the version and kind may be ones this program does not know."""

    version: int
    kind: int
    seq: int
    size: int

    @classmethod
    def unpack(cls, data: bytes) -> Header:
        """The header in the first `HEADER.size` bytes of `data`."""
        return cls(*HEADER.unpack(data[: HEADER.size]))

    def problem(self, expected: Collection[Kind]) -> str | None:
        """Why a frame with this header is to be skipped by a reader expecting `expected`, or None."""
        if self.version != VERSION:
            return f"a frame of version {self.version} (this program speaks version {VERSION})"
        if self.kind not in expected:
            return f"a frame of kind {self.kind} (expected {', '.join(k.name for k in expected)})"
        if self.size > MAX_BODY:
            return f"a frame of {self.size} bytes, over the {MAX_BODY} limit"
        return None


def frame(kind: Kind, seq: int, body: bytes = b"") -> bytes:
    """One frame of the current version (seq is taken modulo 2**32)."""
    return HEADER.pack(VERSION, kind, seq & 0xFFFFFFFF, len(body)) + body


def encode_states(states: Mapping[str, EdgeState]) -> bytes:
    """Edge states as compact JSON: `{"eu-west-1": ["up", false], ...}` (health, overloaded)."""
    data = {name: [s.health.value, s.overloaded] for name, s in states.items()}
    return json.dumps(data, separators=(",", ":")).encode()


def decode_states(body: bytes, edges: Collection[str]) -> dict[str, EdgeState]:
    """Edge states from `encode_states` output; raise ValueError naming the part that is wrong.

    Every name must be one of `edges` (the worker's topology): a table for other edges is refused
    whole rather than applied in part.
    """
    try:
        data = json.loads(body)
    except RecursionError:  # json's own exception for deep nesting is not a ValueError
        raise ValueError("edge states: JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise ValueError(f"edge states: expected a JSON object, got {type(data).__name__}")
    return {name: _state(name, value, edges) for name, value in data.items()}


def _state(name: str, value: object, edges: Collection[str]) -> EdgeState:
    if name not in edges:
        raise ValueError(f"edge states: {name!r} is not an edge of this topology")
    if not (isinstance(value, list) and len(value) == 2 and isinstance(value[1], bool)):
        raise ValueError(f"edge states: {name!r}: expected [health, overloaded], got {value!r}")
    try:
        health = Health(value[0])
    except ValueError:
        raise ValueError(f"edge states: {name!r}: {value[0]!r} is not a health state") from None
    return EdgeState(health, value[1])
