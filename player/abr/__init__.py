"""ABR algorithms behind one pure interface (see `player.abr.base`), and the registry by name.

`ALGORITHMS[name]()` builds an algorithm; `DEFAULT_ABR` is the one that won `benchmarks/abr.py`
(see docs/player-abr.md for the figures). Usage, for the network side and the simulator::

    algo = make_abr("mpc"); state = algo.initial_state(ctx)
    decision = algo.choose(ctx, state, Observation(chunk_index=k, buffer_level=b, last_index=i, samples=s))
    state = decision.state  # fetch representation ctx.bitrates[decision.index] for chunk k
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from player.abr.base import AbrAlgorithm, AbrContext, Decision, Observation, ThroughputSample, highest_below
from player.abr.bola import Bola, BolaState
from player.abr.dynamic import Dynamic, DynamicState
from player.abr.mpc import DEFAULT_INITIAL_BITRATE, Mpc, MpcState
from player.abr.throughput import ThroughputRule, ThroughputState
from player.errors import AbrError

__all__ = [
    "ALGORITHMS",
    "DEFAULT_ABR",
    "AbrAlgorithm",
    "AbrContext",
    "Bola",
    "BolaState",
    "Decision",
    "Dynamic",
    "DynamicState",
    "Mpc",
    "MpcState",
    "Observation",
    "ThroughputRule",
    "ThroughputSample",
    "ThroughputState",
    "highest_below",
    "make_abr",
]

ALGORITHMS: dict[str, Callable[[], AbrAlgorithm[Any]]] = {
    "throughput": ThroughputRule,
    "bola": Bola,
    "bola-e": lambda: Bola(enhanced=True, name="bola-e"),
    "dynamic": Dynamic,
    "mpc": lambda: Mpc(
        error_weight=0.3,
        switch_weight=2.5,
        buffer_target=12.0,
        recent_weight=0.6,
        abandon_after=0.5,
        initial_bitrate=DEFAULT_INITIAL_BITRATE,
    ),
    "mpc-classic": lambda: Mpc(
        window=5,
        error_weight=1.0,
        switch_weight=1.0,
        target_weight=0.0,
        name="mpc-classic",
    ),
}
DEFAULT_ABR = "mpc"


def make_abr(name: str) -> AbrAlgorithm[Any]:
    """Build the algorithm registered as `name`; AbrError lists the known names otherwise."""
    try:
        factory = ALGORITHMS[name]
    except KeyError:
        raise AbrError(
            f"unknown ABR algorithm {name!r}; choose one of {', '.join(sorted(ALGORITHMS))}"
        ) from None
    return factory()
