"""Recent rates and download abandonment in the pure core: sample, predictor, MPC rule, simulator."""

from __future__ import annotations

from dataclasses import replace

import pytest

from player.abr import AbrContext, Bola, Mpc, Observation, ThroughputSample, make_abr
from player.abr.base import Progress, abandon_choice
from player.abr.mpc import predict_throughput
from player.errors import AbrError
from player.playout import PlayoutConfig
from player.simulate import simulate
from player.trace import Trace

LADDER = (300e3, 750e3, 1.2e6, 1.85e6, 2.85e6, 4.3e6)
CTX = AbrContext(bitrates=LADDER, segment_duration=4.0, chunk_count=30, max_buffer=25.0)


def progress(**changes: object) -> Progress:
    """A 4.3 Mbit/s chunk (2.15 MB) 1 s in, 50 kB received (0.4 Mbit/s), 6 s buffered, playing."""
    base = Progress(chunk_index=10, index=5, size=2_150_000, received=50_000, elapsed=1.0,
                    buffer_level=6.0, playing=True, last_index=5)  # fmt: skip
    return replace(base, **changes)  # type: ignore[arg-type]


def test_sample_recent_rate_is_validated() -> None:
    assert ThroughputSample(1000, 1.0, recent=2e6).recent == 2e6
    with pytest.raises(AbrError):
        ThroughputSample(1000, 1.0, recent=-1.0)


def test_predictor_blends_the_recent_rate() -> None:
    samples = [2e6, 2e6]
    assert predict_throughput(samples, [], window=2, robust=False) == pytest.approx(2e6)
    blended = predict_throughput(samples, [], window=2, robust=False, recent=1e6, recent_weight=0.6)
    assert blended == pytest.approx(0.4 * 2e6 + 0.6 * 1e6)
    assert predict_throughput(samples, [], window=2, robust=False, recent=1e6) == pytest.approx(2e6)
    robust = predict_throughput(samples, [0.5], window=2, error_weight=0.3, recent=1e6, recent_weight=0.6)
    assert robust == pytest.approx(1.4e6 / 1.15)


def test_mpc_leans_on_the_recent_rate() -> None:
    """Two 4 Mbit/s chunks, but the last one ended at 0.3 Mbit/s: the default MPC goes lower than without it."""
    fast = (ThroughputSample(1_000_000, 2.0), ThroughputSample(1_000_000, 2.0))
    faded = (fast[0], ThroughputSample(1_000_000, 2.0, recent=0.3e6))
    algo = make_abr("mpc")
    pick = [algo.choose(CTX, algo.initial_state(CTX), Observation(chunk_index=5, buffer_level=8.0,
                                                                    last_index=4, samples=s)).index
            for s in (fast, faded)]  # fmt: skip
    assert pick[1] < pick[0]


def test_mpc_abandons_a_chunk_that_would_stall() -> None:
    algo = make_abr("mpc")
    state = algo.initial_state(CTX)
    lower = abandon_choice(algo, CTX, state, progress())
    assert lower is not None
    assert lower < 5
    # the lower chunk from scratch at 0.4 Mbit/s arrives before the rest of this one would
    assert CTX.chunk_size(lower, 10) * 8 / 0.4e6 < (2_150_000 - 50_000) * 8 / 0.4e6


@pytest.mark.parametrize(
    "changes",
    [
        {"elapsed": 0.25, "received": 12_500},  # too early to judge
        {"playing": False},  # before playback a slow chunk cannot stall
        {"received": 2_000_000},  # almost done: the rest fits in the buffer
        {"buffer_level": 24.0, "received": 1_000_000, "elapsed": 2.0},  # 4 Mbit/s: no stall coming
        {"index": 0, "last_index": 0},  # nothing lower
    ],
)
def test_mpc_goes_on_when_abandoning_would_not_help(changes: dict[str, object]) -> None:
    algo = make_abr("mpc")
    assert abandon_choice(algo, CTX, algo.initial_state(CTX), progress(**changes)) is None


def test_algorithms_without_the_rule_never_abandon() -> None:
    assert abandon_choice(Bola(), CTX, Bola().initial_state(CTX), progress()) is None
    off = Mpc()  # abandon_after=None
    assert abandon_choice(off, CTX, off.initial_state(CTX), progress()) is None


def test_trace_bits_sent_integrates_and_loops() -> None:
    trace = Trace.build("t", [1.0, 2.0], [8e6, 1e6])  # 10 Mbit per 3 s loop
    assert trace.bits_sent(0.0, 1.0) == pytest.approx(8e6)
    assert trace.bits_sent(0.5, 2.0) == pytest.approx(4e6 + 1e6)
    assert trace.bits_sent(2.5, 4.0) == pytest.approx(0.5e6 + 8e6)
    assert trace.bits_sent(0.0, 30.0) == pytest.approx(100e6)


def cliff() -> Trace:
    """6 Mbit/s for 10 s, then 0.5 Mbit/s for 60 s (mid-download of a 4.3 Mbit/s chunk), then 6 again."""
    return Trace.build("cliff", [10.0, 60.0, 100.0], [6e6, 0.5e6, 6e6])


def test_simulator_abandons_into_the_cliff_and_stalls_less() -> None:
    config = PlayoutConfig(startup_threshold=4.0, max_buffer=25.0)
    on = simulate(cliff(), CTX, make_abr("mpc"), playout=config)
    off = simulate(cliff(), CTX, replace(make_abr("mpc"), abandon_after=None), playout=config)  # type: ignore[type-var]
    cut = [r for r in on.records if r.abandoned]
    assert cut
    assert all(r.wasted > 0 for r in cut)
    assert all(r.abandoned == 0 and r.wasted == 0 for r in off.records)
    assert on.summary.stall_time < off.summary.stall_time
    assert on.summary.qoe_total > off.summary.qoe_total
    # the recent rate reached the ABR: every record's chunk was whole and the sizes add up
    assert all(r.size == int(CTX.chunk_size(r.representation, r.index)) for r in on.records)


def test_simulation_with_abandonment_is_deterministic() -> None:
    a = simulate(cliff(), CTX, make_abr("mpc"))
    b = simulate(cliff(), CTX, make_abr("mpc"))
    assert a == b
