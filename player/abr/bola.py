"""BOLA (Spiteri, Urgaonkar, Sitaraman, INFOCOM 2016) and a BOLA-E-like variant (Spiteri et al. 2019).

Goals: choose by buffer level alone (Lyapunov drift-plus-penalty), stable and near-optimal in
utility. Plan: utility u_m = ln(S_m / S_0); pick m maximising (V·(u_m + γp) − Q) / S_m with Q the
buffer level (s) and V = (Q_max − L) / (u_max + γp). BOLA-E adds (as in dash.js and Sabre's
BolaEnh): a dynamic Q_max for short remaining videos, a *placeholder* buffer that lets playback
start at the throughput-sustainable quality instead of the lowest and is given back when the
buffer is full, and oscillation protection (never switch up past the throughput-safe quality).
Caveats: basic BOLA starts at the lowest bitrate and climbs only as the buffer fills.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from player.abr.base import AbrContext, Decision, Observation, highest_below
from player.abr.throughput import ThroughputState, ewma_estimate, fold_samples

__all__ = ["Bola", "BolaState"]


@dataclass(frozen=True, slots=True)
class BolaState:
    """Throughput averages (for BOLA-E's checks) and the placeholder buffer in seconds."""

    tput: ThroughputState = ThroughputState()
    placeholder: float = 0.0
    started: bool = False


@dataclass(frozen=True, slots=True)
class Bola:
    """BOLA-BASIC (`enhanced=False`) or BOLA-E-like (`enhanced=True`); `gp` is γp in Spiteri's notation."""

    enhanced: bool = False
    gp: float = 5.0
    safety: float = 0.9
    name: str = "bola"

    def initial_state(self, ctx: AbrContext) -> BolaState:
        """Empty placeholder, no samples."""
        return BolaState()

    def choose(self, ctx: AbrContext, state: BolaState, obs: Observation) -> Decision[BolaState]:
        """Maximise BOLA's score for the (virtual) buffer level."""
        state = replace(state, tput=fold_samples(state.tput, obs))
        utilities = [math.log(b / ctx.bitrates[0]) for b in ctx.bitrates]
        vp = self._vp(ctx, obs, utilities)
        if not self.enhanced:
            return Decision(self._argmax(ctx, utilities, vp, obs.buffer_level), state)
        return self._choose_enhanced(ctx, state, obs, utilities, vp)

    def _vp(self, ctx: AbrContext, obs: Observation, utilities: list[float]) -> float:
        buffer_size = ctx.max_buffer
        remaining = ctx.remaining(obs.chunk_index)
        if self.enhanced and remaining is not None:
            # Sabre/BOLA-E: near the start and the end, aim for a smaller buffer (t/2, at least 3 chunks).
            horizon = max(min(obs.chunk_index, remaining) / 2, 3) * ctx.segment_duration
            buffer_size = min(buffer_size, horizon)
        return max(buffer_size - ctx.segment_duration, 1e-3) / (utilities[-1] + self.gp)

    def _argmax(self, ctx: AbrContext, utilities: list[float], vp: float, level: float) -> int:
        scores = [(vp * (u + self.gp) - level) / b for u, b in zip(utilities, ctx.bitrates, strict=True)]
        return max(range(len(scores)), key=lambda i: (scores[i], -i))

    def _min_level(self, ctx: AbrContext, utilities: list[float], vp: float, q: int) -> float:
        """The lowest buffer level at which BOLA prefers q to q-1 (0 for the lowest)."""
        if q == 0:
            return 0.0
        s0, s1 = ctx.bitrates[q - 1], ctx.bitrates[q]
        return max(0.0, vp * (s1 * (utilities[q - 1] + self.gp) - s0 * (utilities[q] + self.gp)) / (s1 - s0))

    def _choose_enhanced(self, ctx: AbrContext, state: BolaState, obs: Observation, utilities: list[float],
                         vp: float) -> Decision[BolaState]:  # fmt: skip
        estimate = ewma_estimate(state.tput)
        if estimate is None:
            return Decision(0, state)  # nothing measured yet: the lowest, startup continues
        q_tput = highest_below(ctx.bitrates, self.safety * estimate)
        if not state.started:
            # Startup: play at the throughput-safe quality; pretend the buffer BOLA would need is there.
            placeholder = max(0.0, self._min_level(ctx, utilities, vp, q_tput) - obs.buffer_level)
            return Decision(q_tput, replace(state, placeholder=placeholder, started=True))
        placeholder = state.placeholder if obs.buffer_level > 0 else 0.0  # a stall voids the virtual buffer
        q = self._argmax(ctx, utilities, vp, obs.buffer_level + placeholder)
        last = q_tput if obs.last_index is None else obs.last_index
        if q > last and q > q_tput:
            q = max(q_tput, last)  # oscillation protection (BOLA-O)
        # Give back placeholder above what the chosen quality needs (dash.js: before pausing downloads).
        excess = obs.buffer_level + placeholder - vp * (utilities[q] + self.gp)
        if excess > 0:
            placeholder = max(0.0, placeholder - excess)
        return Decision(q, replace(state, placeholder=placeholder))
