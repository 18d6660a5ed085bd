"""Retry back-off maths for the network side: capped exponential delay with jitter (pure).

The caller owns the clock and the random source: `backoff_delay(attempt, rand=random.random())`.
Full-range jitter spreads retries of many players hitting one failed edge (AWS "Exponential
Backoff And Jitter"); `jitter_fraction` keeps part of the delay deterministic.
"""

from __future__ import annotations

__all__ = ["backoff_delay"]


def backoff_delay(
    attempt: int, *, base: float = 0.25, cap: float = 8.0, jitter_fraction: float = 0.5, rand: float = 0.5
) -> float:
    """Seconds to wait before retry number `attempt` (1 = first retry).

    The nominal delay is min(cap, base × 2^(attempt−1)); a `jitter_fraction` of it is scaled by
    `rand` in [0, 1): delay = nominal × (1 − jitter_fraction + jitter_fraction × rand).
    Raises ValueError for attempt < 1, negative base/cap, or fractions outside [0, 1].
    """
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    if base < 0 or cap < 0:
        raise ValueError(f"base and cap must be >= 0 s, got base={base} cap={cap}")
    if not 0 <= jitter_fraction <= 1 or not 0 <= rand <= 1:
        raise ValueError(f"jitter_fraction and rand must be in [0, 1], got {jitter_fraction}, {rand}")
    nominal = min(cap, base * 2.0 ** min(attempt - 1, 62))
    return nominal * (1 - jitter_fraction + jitter_fraction * rand)
