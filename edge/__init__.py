"""The edge service: a pull-through cache for DASH chunks in front of the origin (or a parent edge).

`EdgeServer(EdgeConfig(...))` is the server; `cdn-edge serve` (edge.cli) runs one.
"""

from __future__ import annotations

from edge.config import EdgeConfig, parse_size
from edge.errors import EdgeError
from edge.server import EdgeServer

__all__ = ["EdgeConfig", "EdgeError", "EdgeServer", "parse_size"]
