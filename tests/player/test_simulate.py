"""The trace simulator: a short synthetic trace, the CLI entry points, manifests with real chunk files."""

from __future__ import annotations

import argparse
import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cdn.ffmpeg import ffmpeg_exe
from player.abr import ALGORITHMS, AbrContext, Decision, Mpc, Observation, ThroughputSample, make_abr
from player.abr.optimum import FixedPlan, optimal_plan, optimal_qoe
from player.playout import PlayoutConfig
from player.simulate import (
    add_simulate_arguments,
    audio_from_manifest,
    context_from_manifest,
    run_simulate,
    simulate,
)
from player.trace import Trace, load_trace, parse_text_trace

LADDER = (300e3, 750e3, 1.2e6, 1.85e6, 2.85e6, 4.3e6)
CTX = AbrContext(bitrates=LADDER, segment_duration=4.0, chunk_count=12, max_buffer=25.0)
DROP = parse_text_trace("0 5\n20 5\n30 0.5\n60 0.5\n", name="drop")  # 5 Mbit/s for 30 s, then 0.5 Mbit/s


def test_steady_link_no_stalls_and_climbs() -> None:
    trace = parse_text_trace("0 3\n10 3\n", name="flat")
    result = simulate(trace, CTX, make_abr("throughput"))
    assert result.summary.stall_count == 0
    assert result.summary.chunks == 12
    assert result.records[-1].bitrate == 1.85e6  # the highest <= 0.9 x 3 Mbit/s
    assert result.summary.startup_delay == pytest.approx(result.records[0].download_time)


def test_drop_makes_the_throughput_rule_switch_down() -> None:
    result = simulate(DROP, CTX, make_abr("throughput"))
    bitrates = [r.bitrate for r in result.records]
    assert max(bitrates) >= 2.85e6
    assert bitrates[-1] == 300e3


def test_records_are_consistent() -> None:
    result = simulate(DROP, CTX, make_abr("mpc"))
    for r in result.records:
        assert r.size == int(CTX.chunk_size(r.representation, r.index))
        assert r.throughput == pytest.approx(r.size * 8 / r.download_time)
    assert sum(r.stall for r in result.records) == pytest.approx(result.summary.stall_time)


def test_buffer_cap_is_respected() -> None:
    fast = parse_text_trace("0 50\n10 50\n", name="fast")
    result = simulate(
        fast, CTX, make_abr("bola"), playout=PlayoutConfig(startup_threshold=4.0, max_buffer=12.0)
    )
    assert max(r.buffer_level for r in result.records) <= 12.0 + 1e-9
    assert any(r.wait > 0 for r in result.records)


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_optimum_is_at_least_every_algorithm(name: str) -> None:
    for trace in (DROP, parse_text_trace("0 1\n3 4\n7 0.3\n9 2\n", name="wobble")):
        best = optimal_qoe(trace, CTX, startup_threshold=4.0)
        assert simulate(trace, CTX, make_abr(name)).summary.qoe_total <= best + 1e-6


def test_mpc_beats_throughput_rule_on_the_drop() -> None:
    assert (
        simulate(DROP, CTX, Mpc()).summary.qoe_total
        > simulate(DROP, CTX, make_abr("throughput")).summary.qoe_total
    )


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_simulate_arguments(parser)
    return parser.parse_args(list(argv))


def test_run_simulate_with_movie(shared_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = sorted((shared_dir / "traces" / "norway-3g").iterdir())[0]
    code = run_simulate(_args("--trace", str(trace), "--movie", str(shared_dir / "traces" / "pensieve_movie.json"),
                              "--abr", "bola", "--json"))  # fmt: skip
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["summary"]["chunks"] == 48
    assert report["summary"]["algorithm"] == "bola"
    assert len(report["chunks"]) == 48


def test_run_simulate_prints_table_for_an_example_mpd(
    shared_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = tmp_path / "t.txt"
    trace.write_text("0 2\n1 2\n")
    code = run_simulate(_args("--trace", str(trace), "--manifest", str(shared_dir / "dash-schema/examples/example_G13-1.mpd"),
                              "--chunks", "10"))  # fmt: skip
    assert code == 0
    assert "QoE_lin per chunk" in capsys.readouterr().out


def test_run_simulate_reports_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.mpd"
    bad.write_text("<MPD")
    trace = tmp_path / "t.txt"
    trace.write_text("0 2\n")
    assert run_simulate(_args("--trace", str(trace), "--manifest", str(bad))) == 2
    assert "not well-formed" in capsys.readouterr().err


def test_chunk_sizes_from_a_store_of_real_files(tmp_path: Path, clip_noaudio: Path) -> None:
    out = tmp_path / "demo"
    out.mkdir()
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-i", str(clip_noaudio),
                    "-map", "0:v", "-map", "0:v", "-c:v", "libx264", "-preset", "ultrafast", "-b:v:0", "300k",
                    "-b:v:1", "100k", "-g", "30", "-f", "dash", "-seg_duration", "2", "-use_template", "1",
                    "-use_timeline", "0", "-adaptation_sets", "id=0,streams=v", str(out / "manifest.mpd")],
                   check=True, timeout=120)  # fmt: skip
    ctx = context_from_manifest(out / "manifest.mpd")
    assert ctx.chunk_sizes is not None
    assert ctx.chunk_count == 2
    assert ctx.bitrates == (100e3, 300e3)
    files = sorted(p.stat().st_size for p in out.glob("chunk-stream0-*"))
    assert sorted(ctx.chunk_sizes[1]) == files


@pytest.mark.slow
def test_origin_package_parses(packaged_store: Path) -> None:
    ctx = context_from_manifest(packaged_store / "demo" / "manifest.mpd")
    assert ctx.chunk_sizes is not None
    assert len(ctx.bitrates) == 2


@pytest.mark.parametrize(
    "trace", [DROP, parse_text_trace("0 1\n3 4\n7 0.3\n9 2\n", name="wobble")], ids=["drop", "wobble"]
)
def test_optimal_plan_replays_exactly_in_the_simulator(trace: Trace) -> None:
    plan = optimal_plan(trace, CTX, startup_threshold=4.0)
    assert len(plan.indices) == CTX.chunk_count
    replay = simulate(
        trace, CTX, FixedPlan(plan.indices), playout=PlayoutConfig(startup_threshold=4.0, max_buffer=25.0)
    )
    assert replay.summary.qoe_total == pytest.approx(plan.value, abs=1e-6)


def test_optimal_plan_on_a_real_trace_with_real_sizes(shared_dir: Path) -> None:
    from player.simulate import context_from_movie

    ctx = context_from_movie(shared_dir / "traces" / "pensieve_movie.json")
    trace = load_trace(sorted((shared_dir / "traces" / "norway-3g").iterdir())[0])
    plan = optimal_plan(trace, ctx)
    assert simulate(trace, ctx, FixedPlan(plan.indices)).summary.qoe_total == pytest.approx(
        plan.value, abs=1e-6
    )
    assert plan.value >= simulate(trace, ctx, make_abr("mpc")).summary.qoe_total


def test_optimal_plan_with_a_fixed_first_chunk_cannot_buy_it_with_startup_delay() -> None:
    """Free startup lets the optimum fetch a top first chunk on a slow start; `first=` fixes it (Pensieve)."""
    slow_start = parse_text_trace("0 1\n20 5\n60 5\n", name="slow-start")
    free = optimal_plan(slow_start, CTX, startup_threshold=4.0)
    fixed = optimal_plan(slow_start, CTX, startup_threshold=4.0, first=1)
    assert free.indices[0] == len(LADDER) - 1  # 17 s of startup, not a stall in QoE_lin
    assert fixed.indices[0] == 1
    assert fixed.value < free.value
    replay = simulate(slow_start, CTX, FixedPlan(fixed.indices), playout=PlayoutConfig(startup_threshold=4.0))
    assert replay.summary.qoe_total == pytest.approx(fixed.value, abs=1e-6)
    with pytest.raises(ValueError, match="first=6"):
        optimal_plan(slow_start, CTX, first=6)


# --- audio on the same link ---------------------------------------------------------------------


def test_a_sample_with_overhead_is_the_rate_video_reaches_the_buffer() -> None:
    video = ThroughputSample(1_000_000, 1.0, recent=10e6)
    both = video.with_overhead(0.25)
    assert (both.size, both.download_time) == (1_000_000, pytest.approx(1.25))
    assert both.bits_per_second == pytest.approx(6.4e6)
    assert both.recent == pytest.approx(8e6)
    assert video.with_overhead(0.0) == video
    assert ThroughputSample(1000, 1.0).with_overhead(1.0).recent is None


@dataclass
class Recording:
    """A real (if timid) ABR: always the lowest rung; keeps every sample it is shown, by index."""

    seen: dict[int, ThroughputSample] = field(default_factory=dict)
    name: str = "recording"

    def initial_state(self, ctx: AbrContext) -> None:
        return None

    def choose(self, ctx: AbrContext, state: None, obs: Observation) -> Decision[None]:
        first = obs.total_samples - len(obs.samples)
        self.seen.update({first + i: s for i, s in enumerate(obs.samples)})
        return Decision(0, state)


AUDIO_CTX = AbrContext(bitrates=(200e3, 900e3), segment_duration=4.0, chunk_count=30, max_buffer=25.0)
FLAT_1M = parse_text_trace("0 1\n10 1\n", name="flat-1M")  # 1 Mbit/s: 900k video fits alone, not with audio
AUDIO = (125_000,) * 30  # 250 kbit/s of audio per 4 s chunk: 1 s of the link


def test_audio_comes_down_the_same_link_and_counts_in_the_abr_samples() -> None:
    abr = Recording()
    result = simulate(FLAT_1M, AUDIO_CTX, abr, audio=AUDIO)
    for k, record in enumerate(result.records[:-1]):
        sample = abr.seen[k]
        assert sample.size == record.size
        assert sample.download_time == pytest.approx(record.download_time + 1.0)  # + the audio's second
    silent = simulate(FLAT_1M, AUDIO_CTX, Recording())
    assert result.summary.startup_delay == pytest.approx(silent.summary.startup_delay + 1.0)


def test_mpc_does_not_take_a_rung_that_only_fits_without_the_audio() -> None:
    """900k video takes 3.6 s of a 4 s chunk; with its audio 4.6 s: every top chunk drains 0.6 s."""
    result = simulate(FLAT_1M, AUDIO_CTX, make_abr("mpc"), audio=AUDIO)
    top = sum(1 for r in result.records if r.representation == 1)
    assert result.summary.stall_time < 1.0, result.summary
    assert top < len(result.records) // 2, [r.representation for r in result.records]


def test_audio_sizes_from_a_store(packaged_store: Path) -> None:
    manifest = packaged_store / "demo" / "manifest.mpd"
    ctx = context_from_manifest(manifest)
    audio = audio_from_manifest(manifest, ctx.chunk_count or 0)
    files = sorted((packaged_store / "demo").glob("chunk-2-*.m4s"))  # the audio representation's chunks
    assert len(audio) == ctx.chunk_count
    assert sum(audio) == sum(f.stat().st_size for f in files)
    assert audio[0] == files[0].stat().st_size
