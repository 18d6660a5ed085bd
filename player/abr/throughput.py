"""The throughput rule (dash.js ThroughputRule): the highest bitrate under a smoothed throughput.

Goals: react to throughput, ignore single outliers. Plan: two EWMAs of the measured throughput
weighted by download time (half-lives 3 s and 8 s, as dash.js ThroughputHistory), corrected for
their zero start, the estimate is the smaller of the two, and the choice is the highest bitrate at
most `safety` × estimate. Caveats: it ignores the buffer, so it stalls when throughput collapses
faster than the averages follow, and it never uses a full buffer to reach a higher bitrate.
"""

from __future__ import annotations

from dataclasses import dataclass

from player.abr.base import AbrContext, Decision, Observation, ThroughputSample, highest_below

__all__ = ["ThroughputRule", "ThroughputState", "ewma_estimate", "update_ewma"]


@dataclass(frozen=True, slots=True)
class ThroughputState:
    """Fast and slow EWMA sums (bit/s), their total weight (s) and how many samples were folded in."""

    fast: float = 0.0
    slow: float = 0.0
    weight: float = 0.0
    seen: int = 0


def update_ewma(state: ThroughputState, sample: ThroughputSample, *, fast_half_life: float = 3.0,
                slow_half_life: float = 8.0) -> ThroughputState:  # fmt: skip
    """Fold one sample in, weighted by its download time (dash.js `updateEwmaEstimate`)."""
    value, weight = sample.bits_per_second, sample.download_time
    a_fast, a_slow = 0.5 ** (weight / fast_half_life), 0.5 ** (weight / slow_half_life)
    return ThroughputState(
        fast=(1 - a_fast) * value + a_fast * state.fast, slow=(1 - a_slow) * value + a_slow * state.slow,
        weight=state.weight + weight, seen=state.seen + 1,
    )  # fmt: skip


def ewma_estimate(
    state: ThroughputState, *, fast_half_life: float = 3.0, slow_half_life: float = 8.0
) -> float | None:
    """min(fast, slow) after zero-start correction in bit/s, or None before any sample."""
    if state.weight <= 0:
        return None
    fast = state.fast / (1 - 0.5 ** (state.weight / fast_half_life))
    slow = state.slow / (1 - 0.5 ** (state.weight / slow_half_life))
    return float(min(fast, slow))


def fold_samples(state: ThroughputState, obs: Observation) -> ThroughputState:
    """Fold in the samples of `obs` not seen yet (the observation carries the whole history)."""
    for sample in obs.new_samples(state.seen):
        state = update_ewma(state, sample)
    return ThroughputState(state.fast, state.slow, state.weight, obs.total_samples)


@dataclass(frozen=True, slots=True)
class ThroughputRule:
    """dash.js-like throughput rule: highest bitrate <= `safety` × min(fast, slow EWMA)."""

    safety: float = 0.9
    name: str = "throughput"

    def initial_state(self, ctx: AbrContext) -> ThroughputState:
        """No samples yet."""
        return ThroughputState()

    def choose(self, ctx: AbrContext, state: ThroughputState, obs: Observation) -> Decision[ThroughputState]:
        """Lowest bitrate before the first sample, then the highest under the safe estimate."""
        state = fold_samples(state, obs)
        estimate = ewma_estimate(state)
        if estimate is None:
            return Decision(0, state)
        return Decision(highest_below(ctx.bitrates, self.safety * estimate), state)
