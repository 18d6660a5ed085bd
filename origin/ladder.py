"""Bitrate ladders: parse `--ladder` specs and plan the renditions for one source (pure).

A ladder is a list of rungs, each a target height (or a WxH bounding box) and a video bitrate.
`plan_renditions` caps it at the source (never upscale) and computes even frame sizes whose display
aspect ratio is exactly the source's on every rung: ffmpeg's dash muxer refuses an AdaptationSet
whose renditions differ in display aspect, which forcing SAR 1 on an inexact size such as 854x480
would cause. So each rendition carries the sample aspect ratio that keeps width*SAR/height equal to
the source's DAR (what ffmpeg's scale filter sets by itself when it resizes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

from origin.errors import LadderError

__all__ = [
    "DEFAULT_LADDER",
    "Ladder",
    "Rendition",
    "Rung",
    "format_bitrate",
    "parse_bitrate",
    "parse_ladder",
    "plan_renditions",
]

_RUNG = re.compile(r"^\s*(?:(?P<h>\d+)p|(?P<w>\d+)x(?P<h2>\d+))\s*:\s*(?P<rate>[0-9.]+\s*[kKmM]?)\s*$")
_RATE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*([kKmM]?)$")
_UNITS = {"": 1, "k": 1_000, "m": 1_000_000}
MIN_BITRATE = 16_000
MAX_BITRATE = 200_000_000
MAX_DIMENSION = 8192
# Display aspects are snapped to ratios with terms up to this (16:9, 4:3, 239:100...), so the SARs
# stay small enough for H.264's VUI and every rendition's DAR compares equal in the dash muxer.
MAX_ASPECT_TERM = 100


@dataclass(frozen=True, slots=True)
class Rung:
    """One rung of a ladder: a target height (or WxH box when `max_width` is set) and a bitrate in bit/s."""

    height: int
    bitrate: int
    max_width: int | None = None

    def __post_init__(self) -> None:
        if not 2 <= self.height <= MAX_DIMENSION:
            raise LadderError(f"rung height {self.height} is out of range 2..{MAX_DIMENSION}")
        if self.max_width is not None and not 2 <= self.max_width <= MAX_DIMENSION:
            raise LadderError(f"rung width {self.max_width} is out of range 2..{MAX_DIMENSION}")
        if not MIN_BITRATE <= self.bitrate <= MAX_BITRATE:
            raise LadderError(
                f"rung bitrate {self.bitrate} bit/s is out of range {MIN_BITRATE}..{MAX_BITRATE}"
            )

    def label(self) -> str:
        """The rung as written in a ladder spec, e.g. `720p:3M` or `1280x720:3M`."""
        size = f"{self.height}p" if self.max_width is None else f"{self.max_width}x{self.height}"
        return f"{size}:{format_bitrate(self.bitrate)}"


@dataclass(frozen=True, slots=True)
class Ladder:
    """An ordered, non-empty list of rungs, highest first, with distinct sizes."""

    rungs: tuple[Rung, ...]

    def __post_init__(self) -> None:
        if not self.rungs:
            raise LadderError("a ladder needs at least one rung, e.g. '720p:3M'")
        keys = [(r.height, r.max_width) for r in self.rungs]
        if len(set(keys)) != len(keys):
            raise LadderError(f"ladder {self.spec()!r} lists the same size twice")

    def spec(self) -> str:
        """The ladder as a `--ladder` string."""
        return ",".join(r.label() for r in self.rungs)


@dataclass(frozen=True, slots=True, kw_only=True)
class Rendition:
    """One planned output rendition: even frame size, sample aspect ratio and video bitrate (bit/s)."""

    width: int
    height: int
    bitrate: int
    sar: Fraction

    def __post_init__(self) -> None:
        if self.width < 2 or self.height < 2 or self.width % 2 or self.height % 2:
            raise LadderError(f"rendition size {self.width}x{self.height} must be even and at least 2x2")

    @property
    def display_aspect(self) -> Fraction:
        """Width * SAR / height: identical on every rendition of one package."""
        return self.width * self.sar / self.height


def parse_bitrate(text: str) -> int:
    """Parse `5M`, `1200k`, `1.2M` or `800000` into bit/s; raise LadderError otherwise."""
    m = _RATE.match(text.strip())
    if not m:
        raise LadderError(f"bitrate {text!r} is not a number with an optional k or M suffix, e.g. 1200k")
    return round(Fraction(m.group(1)) * _UNITS[m.group(2).lower()])


def format_bitrate(bps: int) -> str:
    """Format bit/s compactly: 5000000 -> `5M`, 1200000 -> `1200k`, 1500 -> `1500`."""
    if bps % 1_000_000 == 0:
        return f"{bps // 1_000_000}M"
    if bps % 1_000 == 0:
        return f"{bps // 1_000}k"
    return str(bps)


def _parse_rung(item: str) -> Rung:
    m = _RUNG.match(item)
    if not m:
        raise LadderError(f"ladder rung {item!r} is not HEIGHTp:RATE or WxH:RATE, e.g. '720p:3M'")
    rate = parse_bitrate(m.group("rate"))
    if m.group("h"):
        return Rung(height=int(m.group("h")), bitrate=rate)
    return Rung(height=int(m.group("h2")), bitrate=rate, max_width=int(m.group("w")))


def parse_ladder(text: str) -> Ladder:
    """Parse `1080p:5M,720p:3M,480p:1200k` (or `1280x720:3M` boxes) into a Ladder, highest first."""
    items = [part for part in text.split(",") if part.strip()]
    if not items:
        raise LadderError(f"ladder {text!r} is empty: give rungs like '1080p:5M,720p:3M'")
    rungs = sorted((_parse_rung(item) for item in items), key=lambda r: (r.height, r.bitrate), reverse=True)
    return Ladder(tuple(rungs))


DEFAULT_LADDER = parse_ladder("1080p:5M,720p:3M,480p:1200k,360p:600k,240p:300k")


def _even_floor(value: int) -> int:
    return max(2, value - value % 2)


def _even_round(value: Fraction) -> int:
    """The even integer nearest to `value` (ties go down), at least 2."""
    return max(2, 2 * round(value / 2 - Fraction(1, 1_000_000)))


def _fitted_height(rung: Rung, dar: Fraction) -> int:
    """The height of a rung once its WxH box (if any) is filled at the source's display aspect."""
    if rung.max_width is None:
        return rung.height
    return min(rung.height, int(rung.max_width / dar))


def _rendition(height: int, bitrate: int, dar: Fraction, src_width: int) -> Rendition:
    """Even size for `height` at display aspect `dar`, never wider than the source's stored width."""
    width = min(_even_round(height * dar), _even_floor(src_width))
    return Rendition(width=width, height=height, bitrate=bitrate, sar=dar * height / width)


def plan_renditions(
    ladder: Ladder, *, width: int, height: int, sar: Fraction = Fraction(1)
) -> tuple[Rendition, ...]:
    """Cap `ladder` at a `width`x`height` source with sample aspect `sar`; return its renditions.

    Rungs taller than the source are dropped (never upscale); if every rung is, one rendition at
    the source height remains, with the lowest rung's bitrate. Sizes are even, the display aspect
    ratio of every rendition equals the source's (snapped to a ratio of small terms), and no two
    renditions share a height.
    """
    if width < 2 or height < 2 or sar <= 0:
        raise LadderError(f"source geometry {width}x{height} SAR {sar} cannot be scaled")
    dar = (Fraction(width) * sar / height).limit_denominator(MAX_ASPECT_TERM)
    plans: list[Rendition] = []
    for rung in ladder.rungs:
        target = _fitted_height(rung, dar)
        if target > height:
            continue
        target = _even_floor(target)
        if all(p.height != target for p in plans):
            plans.append(_rendition(target, rung.bitrate, dar, width))
    if not plans:
        plans.append(_rendition(_even_floor(height), ladder.rungs[-1].bitrate, dar, width))
    return tuple(plans)
