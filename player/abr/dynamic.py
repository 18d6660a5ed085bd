"""DYNAMIC (dash.js default, Spiteri et al. 2019): the throughput rule on a low buffer, BOLA above.

Goals: BOLA's stability once a buffer is built, the throughput rule's quick start. Plan: run both
every chunk (their states advance together); switch to BOLA when the buffer exceeds `threshold`
and BOLA chooses at least what the throughput rule does, and back when the buffer falls below it
and BOLA chooses less (hysteresis as in dash.js/Sabre). Caveats: inherits each rule's weaknesses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from player.abr.base import AbrContext, Decision, Observation
from player.abr.bola import Bola, BolaState
from player.abr.throughput import ThroughputRule, ThroughputState

__all__ = ["Dynamic", "DynamicState"]


@dataclass(frozen=True, slots=True)
class DynamicState:
    """Both sub-states and which rule is in charge."""

    bola: BolaState
    tput: ThroughputState
    use_bola: bool = False


@dataclass(frozen=True, slots=True)
class Dynamic:
    """dash.js DYNAMIC: BOLA when buffer ≥ `threshold` seconds, the throughput rule below."""

    threshold: float = 10.0
    bola: Bola = field(default_factory=lambda: Bola(enhanced=True))
    throughput: ThroughputRule = field(default_factory=ThroughputRule)
    name: str = "dynamic"

    def initial_state(self, ctx: AbrContext) -> DynamicState:
        """Start with the throughput rule."""
        return DynamicState(self.bola.initial_state(ctx), self.throughput.initial_state(ctx))

    def choose(self, ctx: AbrContext, state: DynamicState, obs: Observation) -> Decision[DynamicState]:
        """Ask both rules, then apply the switching hysteresis."""
        b = self.bola.choose(ctx, state.bola, obs)
        t = self.throughput.choose(ctx, state.tput, obs)
        level, use_bola = obs.buffer_level, state.use_bola
        if use_bola and level < self.threshold and b.index < t.index:
            use_bola = False
        elif not use_bola and level > self.threshold and b.index >= t.index:
            use_bola = True
        return Decision(b.index if use_bola else t.index, DynamicState(b.state, t.state, use_bola))
