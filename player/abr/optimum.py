"""The offline optimum: dynamic programming over a whole trace known in advance (for benchmarks).

Goals: an upper reference for the online algorithms under exactly the simulator's model (same
startup rule: playback starts once `startup_threshold` s are buffered; same buffer cap: wait until
the next chunk fits; same QoE_lin; download times from the trace integral). Plan: after each chunk
the state is (last representation, buffer level, clock); states falling in the same
(representation, buffer bin of `buffer_step` s[, clock bin of `clock_step` s]) keep only the one
with the best QoE so far. Every kept state is the exact state of a real representation sequence,
so the result is achievable; merging can only miss better sequences. Caveats: it is therefore a
lower bound of the true optimum (tight for small bins); `benchmarks/abr.py` prints how many traces
an online algorithm beat it on (0 so far), which would reveal a too coarse grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from player.abr.base import AbrContext, Decision, Observation
from player.qoe import REBUFFER_PENALTY
from player.trace import Trace

__all__ = ["FixedPlan", "OptimalPlan", "finish_times", "optimal_plan", "optimal_qoe"]

F = npt.NDArray[np.float64]


def finish_times(trace: Trace, start: F, size_bytes: F, latency: float = 0.0) -> F:
    """Vectorised `Trace.finish_time` (latency fixed): when downloads started at `start` end."""
    starts, cum, rates = np.array(trace.starts), np.array(trace.cumulative), np.array(trace.bandwidths)
    period, total = trace.period, cum[-1]
    begin = start + latency
    loops, local = np.divmod(begin, period)
    i = np.clip(np.searchsorted(starts, local, side="right") - 1, 0, len(starts) - 1)
    target = cum[i] + rates[i] * (local - starts[i]) + size_bytes * 8
    extra, rest = np.divmod(target, total)
    wrap = (rest == 0) & (extra > 0)
    extra, rest = np.where(wrap, extra - 1, extra), np.where(wrap, total, rest)
    # first sample whose cumulative end exceeds `rest` (skips zero-rate samples)
    j = np.clip(np.searchsorted(cum[1:], rest, side="left"), 0, len(starts) - 1)
    safe = np.where(rates[j] > 0, rates[j], 1.0)
    result: F = (loops + extra) * period + starts[j] + (rest - cum[j]) / safe
    return result


@dataclass(frozen=True, slots=True)
class OptimalPlan:
    """The DP's best total QoE_lin and the representation index it plays for each chunk."""

    value: float
    indices: tuple[int, ...]


def optimal_qoe(trace: Trace, ctx: AbrContext, **kwargs: Any) -> float:
    """Best total QoE_lin found by `optimal_plan` (same keyword arguments)."""
    return optimal_plan(trace, ctx, **kwargs).value


def optimal_plan(
    trace: Trace, ctx: AbrContext, *, startup_threshold: float = 4.0, latency: float = 0.0,
    buffer_step: float = 0.05, clock_step: float | None = None, chunks: int | None = None,
    first: int | None = None,
) -> OptimalPlan:  # fmt: skip
    """Best representation sequence over a trace known in advance (see the module docstring).

    `first` fixes the first chunk's representation (as Pensieve's offline optimum fixes it at its
    default quality), so that a long startup cannot buy a high first rung.
    """
    n = chunks if chunks is not None else ctx.chunk_count
    if n is None or n <= 0:
        raise ValueError("optimal_plan needs a positive chunk count")
    if first is not None and not 0 <= first < len(ctx.bitrates):
        raise ValueError(f"first={first} is not a representation index (0..{len(ctx.bitrates) - 1})")
    levels, seg = len(ctx.bitrates), ctx.segment_duration
    mbps = np.array(ctx.bitrates) / 1e6
    # state arrays: last representation, clock, buffer, value; `playing` depends only on the chunk index
    q, t, b, v = np.zeros(1, np.int64), np.zeros(1), np.zeros(1), np.zeros(1)
    parents: list[npt.NDArray[np.int64]] = []
    actions: list[npt.NDArray[np.int64]] = []
    for k in range(n):
        playing = k * seg >= startup_threshold - 1e-9  # buffered media before chunk k = k × seg
        choices = np.arange(levels) if k or first is None else np.array([first])
        nq = np.repeat(choices, len(q))
        c = len(choices)
        pq, pt, pb, pv = np.tile(q, c), np.tile(t, c), np.tile(b, c), np.tile(v, c)
        wait = np.maximum(pb + seg - ctx.max_buffer, 0.0) if playing else np.zeros_like(pb)
        start = pt + wait
        sizes = np.array([ctx.chunk_size(i, k) for i in range(levels)])[nq]
        end = finish_times(trace, start, sizes, latency)
        elapsed = end - start
        if playing:
            level = pb - wait
            stall = np.maximum(elapsed - level, 0.0)
            nb = np.maximum(level - elapsed, 0.0) + seg
        else:
            stall, nb = np.zeros_like(pb), pb + seg
        nv = pv + mbps[nq] - REBUFFER_PENALTY * stall - (np.abs(mbps[nq] - mbps[pq]) if k else 0.0)
        keep = _merge(nq, end, nb, nv, buffer_step, clock_step)
        parents.append(keep % len(q))
        actions.append(nq[keep])
        q, t, b, v = nq[keep], end[keep], nb[keep], nv[keep]
    best = int(np.argmax(v))
    value, plan = float(v[best]), []
    for step in range(n - 1, -1, -1):
        plan.append(int(actions[step][best]))
        best = int(parents[step][best])
    return OptimalPlan(value, tuple(reversed(plan)))


def _merge(
    q: npt.NDArray[np.int64], t: F, b: F, v: F, step: float, clock_step: float | None
) -> npt.NDArray[np.int64]:
    """Indices of the states kept: per (representation, buffer bin[, clock bin]), the best value so far."""
    key = q * 10_000_000 + np.floor(b / step).astype(np.int64)
    if clock_step is not None:
        key = key * 100_000 + np.floor(t / clock_step).astype(np.int64)
    order = np.lexsort((t, -v, key))  # by bin, best value first, earliest clock among equals
    key_sorted = key[order]
    best: npt.NDArray[np.int64] = order[np.flatnonzero(np.r_[True, key_sorted[1:] != key_sorted[:-1]])]
    return best


@dataclass(frozen=True, slots=True)
class FixedPlan:
    """An "algorithm" that replays a plan (e.g. the optimum's) through the simulator; stateless."""

    indices: tuple[int, ...]
    name: str = "plan"

    def initial_state(self, ctx: AbrContext) -> None:
        """No state."""
        return None

    def choose(self, ctx: AbrContext, state: None, obs: Observation) -> Decision[None]:
        """The planned index of this chunk (the last one past the plan's end)."""
        return Decision(self.indices[min(obs.chunk_index, len(self.indices) - 1)], None)
