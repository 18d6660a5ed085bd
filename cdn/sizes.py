"""Byte sizes as people write them in options and the topology: `2GiB`, `256MiB`, `500MB`, `1048576`.

One rule everywhere: `Ki`/`KiB`, `Mi`/`MiB`, ... are binary (1024), `K`/`KB`, `M`/`MB`, ... are
decimal (1000), as in IEC 80000-13. Case does not matter.
"""

from __future__ import annotations

import re

__all__ = ["format_size", "parse_size"]

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:([kmgt])(i)?b?|b)?\s*$", re.IGNORECASE)


def parse_size(text: str | int) -> int:
    """Bytes from `2GiB`, `500MB`, `64k`, `1.5 MiB`, `1048576` or an int; raise ValueError naming the value."""
    if isinstance(text, bool):
        raise ValueError(f"size {text!r} is not a byte size")
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"size {text} is negative")
        return text
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f"size {text!r} is not a byte size: expected e.g. 2GiB, 256MiB, 500MB or 1048576")
    number, prefix, binary = float(m.group(1)), (m.group(2) or "").upper(), bool(m.group(3))
    power = "KMGT".index(prefix) + 1 if prefix else 0
    return int(number * (1024 if binary else 1000) ** power)


def format_size(n: int) -> str:
    """The shortest exact binary form of `n` bytes (`1GiB`, `96MiB`, `1234`); parse_size reads it back."""
    for power, unit in ((4, "TiB"), (3, "GiB"), (2, "MiB"), (1, "KiB")):
        if n and n % (1024**power) == 0:
            return f"{n // 1024**power}{unit}"
    return str(n)
