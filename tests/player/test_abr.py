"""ABR algorithms: monotonic behaviour, BOLA's buffer rule, MPC's use of real sizes, the registry."""

from __future__ import annotations

from typing import Any

import pytest

from player.abr import (
    ALGORITHMS,
    DEFAULT_ABR,
    AbrContext,
    Bola,
    Dynamic,
    Mpc,
    Observation,
    ThroughputRule,
    ThroughputSample,
    make_abr,
)
from player.abr.mpc import predict_throughput
from player.abr.throughput import ThroughputState, ewma_estimate, update_ewma
from player.errors import AbrError

LADDER = (300e3, 750e3, 1.2e6, 1.85e6, 2.85e6, 4.3e6)
CTX = AbrContext(bitrates=LADDER, segment_duration=4.0, chunk_count=48, max_buffer=25.0)


def steady(bps: float, n: int = 6, seconds: float = 2.0) -> tuple[ThroughputSample, ...]:
    return tuple(ThroughputSample(int(bps * seconds / 8), seconds) for _ in range(n))


def choose(algo: Any, obs: Observation, ctx: AbrContext = CTX) -> int:
    return int(algo.choose(ctx, algo.initial_state(ctx), obs).index)


@pytest.mark.parametrize("rate", [0.2e6, 0.5e6, 1e6, 2e6, 3e6, 5e6, 10e6])
def test_throughput_rule_table(rate: float) -> None:
    index = choose(
        ThroughputRule(), Observation(chunk_index=6, buffer_level=10, last_index=0, samples=steady(rate))
    )
    safe = 0.9 * rate
    assert LADDER[index] <= safe or index == 0
    assert index == len(LADDER) - 1 or LADDER[index + 1] > safe


def test_throughput_rule_is_monotonic() -> None:
    rates = [0.1e6 * 1.3**k for k in range(25)]
    picks = [
        choose(ThroughputRule(), Observation(chunk_index=5, buffer_level=5, samples=steady(r))) for r in rates
    ]
    assert picks == sorted(picks)
    assert picks[0] == 0
    assert picks[-1] == len(LADDER) - 1


def test_ewma_zero_start_correction_and_min() -> None:
    state = update_ewma(ThroughputState(), ThroughputSample(250_000, 1.0))
    assert ewma_estimate(state) == pytest.approx(2e6)
    state = update_ewma(
        state, ThroughputSample(25_000, 1.0)
    )  # a drop: min(fast, slow) follows the faster one
    assert ewma_estimate(state) < 1.5e6
    assert ewma_estimate(ThroughputState()) is None


@pytest.mark.parametrize("name", sorted(set(ALGORITHMS) - {"mpc"}))
def test_first_chunk_is_lowest(name: str) -> None:
    assert choose(make_abr(name), Observation(chunk_index=0, buffer_level=0.0)) == 0


def test_bola_empty_buffer_picks_lowest_and_full_buffer_highest() -> None:
    bola = Bola()
    assert choose(bola, Observation(chunk_index=5, buffer_level=0.0, last_index=3, samples=steady(10e6))) == 0
    assert (
        choose(bola, Observation(chunk_index=5, buffer_level=20.0, last_index=3, samples=steady(0.1e6)))
        == len(LADDER) - 1
    )


def test_bola_is_monotonic_in_buffer() -> None:
    picks = [
        choose(Bola(), Observation(chunk_index=10, buffer_level=b / 2, last_index=0)) for b in range(0, 50)
    ]
    assert picks == sorted(picks)


def test_bola_e_starts_at_throughput_quality_and_limits_upswitch() -> None:
    bola_e = Bola(enhanced=True)
    start = bola_e.choose(
        CTX, bola_e.initial_state(CTX), Observation(chunk_index=1, buffer_level=4, samples=steady(2.5e6))
    )
    assert start.index == 3
    assert start.state.placeholder > 0
    later = bola_e.choose(
        CTX, start.state, Observation(chunk_index=2, buffer_level=24, last_index=3, samples=steady(2.5e6, 7))
    )
    assert later.index == 3  # a full buffer does not push it past the throughput-safe quality


def test_dynamic_switches_with_hysteresis() -> None:
    dyn = Dynamic()
    state = dyn.initial_state(CTX)
    low = dyn.choose(
        CTX, state, Observation(chunk_index=3, buffer_level=5, last_index=0, samples=steady(2e6))
    )
    assert not low.state.use_bola
    high = dyn.choose(
        CTX,
        low.state,
        Observation(chunk_index=4, buffer_level=20, last_index=low.index, samples=steady(2e6, 7)),
    )
    assert high.state.use_bola
    mid = dyn.choose(
        CTX,
        high.state,
        Observation(chunk_index=5, buffer_level=12, last_index=high.index, samples=steady(2e6, 8)),
    )
    assert mid.state.use_bola  # above the threshold it stays with BOLA


def test_predict_throughput_harmonic_and_robust() -> None:
    assert predict_throughput([1e6, 4e6], []) == pytest.approx(1.6e6)
    assert predict_throughput([1e6, 4e6], [0.6, 0.1]) == pytest.approx(1e6)


def test_mpc_uses_real_chunk_sizes() -> None:
    obs = Observation(chunk_index=0 + 10, buffer_level=8.0, last_index=2, samples=steady(2e6))
    nominal = AbrContext(bitrates=LADDER, segment_duration=4.0, chunk_count=48)
    assert choose(Mpc(), obs, nominal) >= 2
    # The same ladder whose next chunks are 4x bigger than nominal: MPC must step down to avoid a stall.
    big = tuple(tuple(int(b * 4 * 4 / 8) for _ in range(48)) for b in LADDER)
    heavy = AbrContext(bitrates=LADDER, segment_duration=4.0, chunk_count=48, chunk_sizes=big)
    assert choose(Mpc(), obs, heavy) < choose(Mpc(), obs, nominal)


def test_mpc_is_monotonic_in_throughput() -> None:
    picks = [choose(Mpc(), Observation(chunk_index=10, buffer_level=8, last_index=2, samples=steady(r))) for r in
             (0.3e6, 0.8e6, 1.5e6, 3e6, 6e6)]  # fmt: skip
    assert picks == sorted(picks)
    assert picks[0] < picks[-1]


def test_observation_window_counts_absolute_samples() -> None:
    rule = ThroughputRule()
    state = rule.initial_state(CTX)
    window = steady(2e6, 20)
    state = rule.choose(
        CTX, state, Observation(chunk_index=20, buffer_level=5, samples=window, sample_count=20)
    ).state
    assert state.seen == 20
    state = rule.choose(CTX, state, Observation(chunk_index=21, buffer_level=5, samples=window[1:] + steady(0.2e6, 1),
                                                sample_count=21)).state  # fmt: skip
    assert state.seen == 21


def test_registry() -> None:
    assert DEFAULT_ABR in ALGORITHMS
    assert {"throughput", "bola", "dynamic", "mpc"} <= set(ALGORITHMS)
    with pytest.raises(AbrError, match="unknown ABR algorithm 'nope'"):
        make_abr("nope")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"bitrates": ()},
        {"bitrates": (2.0, 1.0)},
        {"bitrates": (1.0,), "segment_duration": 0},
        {"bitrates": (1.0,), "chunk_sizes": ((1,), (2,))},
    ],
)
def test_context_validation(kwargs: dict[str, Any]) -> None:
    with pytest.raises(AbrError):
        AbrContext(**{"segment_duration": 4.0, **kwargs})


def test_chunk_size_falls_back_to_nominal() -> None:
    assert CTX.chunk_size(0, 3) == 300e3 * 4 / 8
    assert AbrContext(bitrates=(1e6,), segment_duration=2, chunk_sizes=((10, 20),)).chunk_size(0, 1) == 20


def test_exported_members_are_complete() -> None:
    import player.abr as abr

    exported = set(abr.__all__)
    public = {
        n
        for n, v in vars(abr).items()
        if not n.startswith("_") and getattr(v, "__module__", "").startswith("player.abr")
    }
    assert public <= exported
    assert all(hasattr(abr, name) for name in exported)


def test_mpc_first_chunk_uses_the_initial_bitrate_prior() -> None:
    start = Observation(chunk_index=0, buffer_level=0.0)
    assert choose(make_abr("mpc"), start) == 2  # the registry's prior: the highest rung <= 1.2 Mbit/s
    assert choose(Mpc(initial_bitrate=2e6), start) == 3
    assert choose(Mpc(), start) == 0  # no prior: the lowest rung
    assert choose(Mpc(initial_bitrate=1e5), start) == 0  # below the ladder: the lowest rung
    assert choose(make_abr("mpc-classic"), start) == 0  # the paper's player starts at the bottom


def test_mpc_follows_the_last_two_samples_after_a_drop() -> None:
    """The default 2-sample mean steps down as soon as two slow downloads arrive."""
    fast = steady(4e6, 6)
    before = choose(Mpc(), Observation(chunk_index=10, buffer_level=8, last_index=4, samples=fast))
    dropped = fast + steady(0.5e6, 2)
    after = choose(Mpc(), Observation(chunk_index=12, buffer_level=8, last_index=4, samples=dropped))
    assert before >= 4
    assert after <= 1
    # the paper's 5-sample mean still counts the fast samples and stays higher
    classic = choose(
        make_abr("mpc-classic"), Observation(chunk_index=12, buffer_level=8, last_index=4, samples=dropped)
    )
    assert classic >= after
