"""Packaging progress: parse ffmpeg's `-progress pipe:1` key=value stream into progress values (pure).

ffmpeg writes blocks of `key=value` lines, each ended by `progress=continue` (or `progress=end`).
`ProgressParser.feed(line)` returns a PackagingProgress at the end of each block: the fraction of
the input's duration encoded so far and the speed as a multiple of realtime.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["PackagingProgress", "ProgressParser", "parse_speed"]

_SPEED = re.compile(r"^\s*(\d+(?:\.\d+)?(?:e[+-]?\d+)?)x\s*$")


@dataclass(frozen=True, slots=True)
class PackagingProgress:
    """How far one packaging run is: `fraction` of the input's duration (0..1) and speed (x realtime)."""

    fraction: float
    speed_x_realtime: float | None = None
    out_time: float = 0.0
    done: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.fraction <= 1.0:
            raise ValueError(f"progress fraction {self.fraction} is outside 0..1")


def parse_speed(text: str) -> float | None:
    """Parse ffmpeg's `speed=  26x` value (`N/A` gives None)."""
    m = _SPEED.match(text)
    return float(m.group(1)) if m else None


@dataclass(slots=True)
class ProgressParser:
    """Accumulates one `-progress` block at a time for an input of `duration` seconds."""

    duration: float
    _block: dict[str, str] = field(default_factory=dict)
    last_out_time: float = 0.0

    def feed(self, line: str) -> PackagingProgress | None:
        """Consume one line; return a PackagingProgress when it ends a block, else None."""
        key, sep, value = line.strip().partition("=")
        if not sep:
            return None
        if key != "progress":
            self._block[key] = value.strip()
            return None
        block, self._block = self._block, {}
        out_us = block.get("out_time_us", "")
        if out_us.lstrip("-").isdigit():
            self.last_out_time = max(self.last_out_time, int(out_us) / 1e6)
        fraction = 1.0 if self.duration <= 0 else min(1.0, self.last_out_time / self.duration)
        done = value.strip() == "end"
        return PackagingProgress(
            fraction=1.0 if done else fraction,
            speed_x_realtime=parse_speed(block.get("speed", "")),
            out_time=self.last_out_time,
            done=done,
        )
