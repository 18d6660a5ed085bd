"""Quality of experience: QoE_lin per chunk as in Pensieve (Mao et al. 2017) and the session summary.

QoE_lin of chunk k = R_k − 4.3 × T_k − |R_k − R_{k−1}|, with R the representation's bitrate in
Mbit/s and T the stall (rebuffering) seconds that happened while chunk k was awaited. The startup
delay is reported separately and not counted as a stall (as in Sabre). Pure; `render_table`
builds a rich Table for the CLI and `QoeSummary.to_dict()` is the JSON form of `--report`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.table import Table

__all__ = ["REBUFFER_PENALTY", "ChunkOutcome", "QoeSummary", "chunk_qoe", "render_table", "summarize"]

REBUFFER_PENALTY = 4.3  # Pensieve's QoE_lin weight: the top bitrate of its ladder in Mbit/s


def chunk_qoe(
    bitrate: float, stall: float, previous_bitrate: float | None, *, penalty: float = REBUFFER_PENALTY
) -> float:
    """QoE_lin of one chunk; bitrates in bit/s, stall in seconds; no switch cost for the first chunk."""
    mbps = bitrate / 1e6
    switch = 0.0 if previous_bitrate is None else abs(mbps - previous_bitrate / 1e6)
    return mbps - penalty * stall - switch


@dataclass(frozen=True, slots=True)
class ChunkOutcome:
    """What QoE needs of one played chunk: its representation index, nominal bitrate (bit/s), stall (s)."""

    index: int
    representation: int
    bitrate: float
    stall: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class QoeSummary:
    """Session QoE. Bitrates in bit/s, times in seconds; `qoe_per_chunk` is QoE_lin total / chunks."""

    chunks: int
    average_bitrate: float
    switches: int
    stall_count: int
    stall_time: float
    startup_delay: float | None
    qoe_total: float
    qoe_per_chunk: float
    algorithm: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the `summary` object of a `--report` file)."""
        return asdict(self)


def summarize(
    outcomes: Sequence[ChunkOutcome], *, stall_durations: Sequence[float] | None = None,
    startup_delay: float | None = None, algorithm: str | None = None,
) -> QoeSummary:  # fmt: skip
    """Summarise a session. `stall_durations` lists every stall event (default: one per stalled chunk)."""
    total, previous = 0.0, None
    for outcome in outcomes:
        total += chunk_qoe(outcome.bitrate, outcome.stall, previous)
        previous = outcome.bitrate
    stalls = (
        list(stall_durations) if stall_durations is not None else [o.stall for o in outcomes if o.stall > 0]
    )
    n = len(outcomes)
    return QoeSummary(
        chunks=n, average_bitrate=sum(o.bitrate for o in outcomes) / n if n else 0.0,
        switches=sum(1 for a, b in zip(outcomes, outcomes[1:], strict=False) if a.representation != b.representation),
        stall_count=len(stalls), stall_time=sum(stalls), startup_delay=startup_delay,
        qoe_total=total, qoe_per_chunk=total / n if n else 0.0, algorithm=algorithm,
    )  # fmt: skip


def render_table(summary: QoeSummary, *, title: str = "QoE report") -> Table:
    """A two-column rich Table of the summary, for the terminal."""
    from rich.table import Table

    table = Table(title=title if summary.algorithm is None else f"{title} ({summary.algorithm})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    startup = "-" if summary.startup_delay is None else f"{summary.startup_delay:.2f} s"
    for name, value in (
        ("chunks", str(summary.chunks)),
        ("average bitrate", f"{summary.average_bitrate / 1e6:.3f} Mbit/s"),
        ("switches", str(summary.switches)),
        ("stalls", f"{summary.stall_count} ({summary.stall_time:.2f} s)"),
        ("startup delay", startup),
        ("QoE_lin total", f"{summary.qoe_total:.3f}"),
        ("QoE_lin per chunk", f"{summary.qoe_per_chunk:.3f}"),
    ):
        table.add_row(name, value)
    return table
