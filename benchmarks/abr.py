"""ABR benchmark: every algorithm over ../shared/traces/norway-3g and fcc, against the offline optimum.

Same simulator, playout model and QoE_lin as `cdn-player simulate`. Videos: Pensieve's test movie
(real chunk sizes, 48 × 4 s, 6 rungs 0.3-4.3 Mbit/s), the origin's default ladder (5 rungs
0.3/0.6/1.2/3/5 Mbit/s, 48 × 4 s, sizes = bitrate × duration) and the same ladder in the origin's
default 8 s chunks (`origin-8s`, 24 × 8 s). Buffer cap 25 s, startup after 4 s.
Prints one line per figure: mean QoE_lin per chunk over the traces, and its ratio to the optimum;
how many downloads the default abandoned for a lower rung and the share of bytes they wasted;
what a viewer got from the default (average bitrate, stall time, startup delay, switches);
the default's ratio under Pensieve's own evaluation (first chunk fixed at the default's first
rung for the optimum too, and left out of the mean); then the default's ratio on the tuning half
(even-indexed traces of the sorted set, on which its settings were chosen) and on the held-out
half (odd-indexed).
With `--plot FILE`, a PNG: each algorithm's ratio to the optimum per set and video (the 0.9 target
drawn), and the spread of the default's per-trace ratios.
Usage: python benchmarks/abr.py [--sets norway-3g,fcc] [--videos pensieve,origin,origin-8s] [--limit N]
                                [--plot abr.png]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from player.abr import ALGORITHMS, DEFAULT_ABR, AbrContext, make_abr  # noqa: E402
from player.abr.optimum import optimal_qoe  # noqa: E402
from player.playout import PlayoutConfig  # noqa: E402
from player.simulate import SimulationResult, context_from_movie, simulate  # noqa: E402
from player.trace import Trace, load_trace  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"
MAX_BUFFER, STARTUP = 25.0, 4.0
ORIGIN_LADDER = (300e3, 600e3, 1.2e6, 3e6, 5e6)


def videos(names: list[str]) -> dict[str, AbrContext]:
    """The benchmark videos by name."""
    out = {}
    if "pensieve" in names:
        out["pensieve"] = context_from_movie(SHARED / "traces" / "pensieve_movie.json", max_buffer=MAX_BUFFER)
    if "origin" in names:
        out["origin"] = AbrContext(
            bitrates=ORIGIN_LADDER, segment_duration=4.0, chunk_count=48, max_buffer=MAX_BUFFER
        )
    if "origin-8s" in names:
        out["origin-8s"] = AbrContext(
            bitrates=ORIGIN_LADDER, segment_duration=8.0, chunk_count=24, max_buffer=MAX_BUFFER
        )
    return out


@dataclass(frozen=True, slots=True)
class SetResult:
    """What the plot needs of one set and video: each algorithm's ratio, the default's per-trace ratios."""

    label: str
    ratios: dict[str, float]
    per_trace: list[float]


def run_set(label: str, traces: list[Trace], video: str, ctx: AbrContext) -> SetResult:
    """Print mean QoE_lin per algorithm and the optimum for one trace set and one video."""
    config = PlayoutConfig(startup_threshold=STARTUP, max_buffer=MAX_BUFFER)
    n = ctx.chunk_count or 1
    dp = [optimal_qoe(tr, ctx, startup_threshold=STARTUP) / n for tr in traces]
    runs = {name: [simulate(tr, ctx, make_abr(name), playout=config) for tr in traces] for name in ALGORITHMS}
    scores = {name: [r.summary.qoe_per_chunk for r in results] for name, results in runs.items()}
    # The DP's plan is achievable, so the true optimum is at least the best of it and every algorithm.
    optimum = [max(d, *(s[i] for s in scores.values())) for i, d in enumerate(dp)]
    beaten = sum(1 for d, o in zip(dp, optimum, strict=True) if o > d + 1e-9)
    opt_mean = sum(optimum) / len(optimum)
    for name, values in scores.items():
        mean = sum(values) / len(values)
        tag = " (default)" if name == DEFAULT_ABR else ""
        print(
            f"abr {label} {video} {name}{tag}: {mean:.3f} (QoE_lin/chunk) ratio {mean / opt_mean:.3f} of optimum"
        )
    print(f"abr {label} {video} optimum: {opt_mean:.3f} (QoE_lin/chunk) over {len(traces)} traces "
          f"(DP plan; on {beaten} traces an algorithm did better and counts instead)")  # fmt: skip
    halves = [_half_ratio(scores[DEFAULT_ABR], optimum, parity) for parity in (0, 1)]
    records = [rec for result in runs[DEFAULT_ABR] for rec in result.records]
    wasted, fetched = sum(r.wasted for r in records), sum(r.size + r.wasted for r in records)
    print(f"abr {label} {video} {DEFAULT_ABR} (default) abandoned: {sum(r.abandoned for r in records) / len(traces):.2f} "
          f"downloads per session, {100 * wasted / max(fetched, 1):.1f} % of the bytes fetched wasted")  # fmt: skip
    summaries = [r.summary for r in runs[DEFAULT_ABR]]
    n_traces = len(summaries)
    print(f"abr {label} {video} {DEFAULT_ABR} (default) viewer: average bitrate "
          f"{sum(x.average_bitrate for x in summaries) / n_traces / 1e6:.3f} Mbit/s, stalls "
          f"{sum(x.stall_time for x in summaries) / n_traces:.2f} s per session, startup "
          f"{sum(x.startup_delay or 0.0 for x in summaries) / n_traces:.2f} s, "
          f"{sum(x.switches for x in summaries) / n_traces:.1f} switches per session")  # fmt: skip
    playable = [i for i, o in enumerate(optimum) if o > 0]
    mine = sum(scores[DEFAULT_ABR][i] for i in playable) / max(sum(optimum[i] for i in playable), 1e-12)
    print(f"abr {label} {video} {DEFAULT_ABR} (default) playable: ratio {mine:.3f} of optimum over the "
          f"{len(playable)} traces whose optimum is above 0 ({len(traces) - len(playable)} are too slow for "
          f"even the lowest rung: every plan stalls for long and one such trace can outweigh all others)")  # fmt: skip
    if len(playable) < len(traces):
        slow = [i for i in range(len(traces)) if i not in set(playable)]
        lost = sum(optimum[i] - scores[DEFAULT_ABR][i] for i in slow)
        need = 1 - (0.1 * sum(optimum) - lost) / max(sum(optimum[i] for i in playable), 1e-12)
        print(f"abr {label} {video} {DEFAULT_ABR} (default) needed: ratio {need:.3f} on the playable traces "
              f"would make the plain ratio 0.9 (the slow traces as they are: the default loses "
              f"{lost:.2f} QoE_lin/chunk there, summed over those traces)")  # fmt: skip
    pensieve = _pensieve_ratio(traces, ctx, runs[DEFAULT_ABR])
    print(f"abr {label} {video} {DEFAULT_ABR} (default) pensieve-convention: ratio {pensieve:.3f} of optimum "
          f"(first chunk fixed at the default's first rung for the optimum too, and left out)")  # fmt: skip
    print(f"abr {label} {video} {DEFAULT_ABR} (default) split: ratio {halves[0]:.3f} on the tuning half "
          f"(even-indexed traces), {halves[1]:.3f} on the held-out half (odd-indexed)")  # fmt: skip
    ratios = {name: sum(values) / len(values) / opt_mean for name, values in scores.items()}
    per_trace = [scores[DEFAULT_ABR][i] / optimum[i] for i in playable]
    return SetResult(f"{label}\n{video}", ratios, per_trace)


def write_plot(path: Path, results: list[SetResult]) -> Path:
    """Grouped bars of every algorithm's ratio to the optimum (clipped at 0 and 1.05; the 0.9 target
    dashed), and box plots of the default's per-trace ratios on the playable traces."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(ALGORITHMS)
    fig, (bars, boxes) = plt.subplots(2, 1, figsize=(max(8.0, 1.6 * len(results)), 8.5))
    width = 0.8 / len(names)
    for j, name in enumerate(names):
        xs = [i + (j - (len(names) - 1) / 2) * width for i in range(len(results))]
        values = [min(max(r.ratios[name], 0.0), 1.05) for r in results]
        tag = " (default)" if name == DEFAULT_ABR else ""
        bars.bar(xs, values, width, label=f"{name}{tag}")
        for x, r in zip(xs, results, strict=True):
            if r.ratios[name] < 0:  # below zero (long stalls): marked, not drawn
                bars.text(x, 0.01, "<0", ha="center", va="bottom", fontsize="x-small", rotation=90)
    bars.axhline(0.9, color="black", linestyle="--", linewidth=1, label="target 0.9")
    bars.set_xticks(range(len(results)), [r.label for r in results])
    bars.set_ylabel("mean QoE_lin / optimum (clipped to 0-1.05)")
    bars.set_ylim(0, 1.1)
    bars.legend(fontsize="small", ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.18))
    bars.set_title("ABR against the offline optimum")
    boxes.boxplot([r.per_trace for r in results])
    boxes.set_xticks(range(1, len(results) + 1), [r.label for r in results])
    boxes.axhline(0.9, color="black", linestyle="--", linewidth=1)
    boxes.set_ylabel(f"{DEFAULT_ABR} / optimum, per playable trace")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _pensieve_ratio(traces: list[Trace], ctx: AbrContext, results: list[SimulationResult]) -> float:
    """The ratio as Pensieve evaluates it: the offline optimum's first chunk is fixed at the quality the
    algorithm starts with, and the first chunk's QoE_lin is left out of both (so that a long startup,
    which QoE_lin does not charge, cannot buy the optimum a high first rung)."""
    mine = opt = 0.0
    for trace, result in zip(traces, results, strict=True):
        first = result.records[0].representation
        head = ctx.bitrates[first] / 1e6  # the first chunk's QoE_lin: its bitrate (no stall, no switch)
        rest = result.summary.qoe_total - head
        mine += rest
        opt += max(optimal_qoe(trace, ctx, startup_threshold=STARTUP, first=first) - head, rest)
    return mine / opt


def _half_ratio(values: list[float], optimum: list[float], parity: int) -> float:
    """Mean of `values` over the traces of index parity `parity`, divided by the optimum's mean there."""
    picked = range(parity, len(values), 2)
    return sum(values[i] for i in picked) / max(sum(optimum[i] for i in picked), 1e-12)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sets", default="norway-3g,fcc")
    parser.add_argument("--videos", default="pensieve,origin,origin-8s")
    parser.add_argument("--limit", type=int, default=None, help="at most N traces per set (quick runs)")
    parser.add_argument("--plot", type=Path, default=None, help="write a PNG of the ratios here")
    args = parser.parse_args(argv)
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"buffer cap {MAX_BUFFER:g} s, startup {STARTUP:g} s, no added latency")  # fmt: skip
    began = time.monotonic()
    contexts = videos(args.videos.split(","))
    results: list[SetResult] = []
    for label in args.sets.split(","):
        files = sorted(p for p in (SHARED / "traces" / label).iterdir() if p.is_file())[: args.limit]
        traces = [load_trace(p) for p in files]
        results += [run_set(label, traces, video, ctx) for video, ctx in contexts.items()]
    print(f"abr runtime: {time.monotonic() - began:.1f} (s)")
    if args.plot is not None:
        print(f"abr plot: {write_plot(args.plot, results)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
