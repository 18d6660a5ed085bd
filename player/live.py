"""The live terminal view of a session (rich): one row per chunk as it arrives.

Shows chunk, chosen bitrate, measured throughput, buffer and serving edge. It is silent when stdout
is not a terminal or with `--quiet`, so scripts and tests see only the final report.
"""

from __future__ import annotations

from typing import TextIO

from rich.console import Console
from rich.live import Live
from rich.table import Table

from player.report import ChunkRecord

__all__ = ["LiveView", "chunk_row"]

VISIBLE_ROWS = 12  # the view keeps the latest rows, so it fits a terminal


def chunk_row(record: ChunkRecord, total: int) -> tuple[str, ...]:
    """The cells of one row (pure)."""
    notes = []
    if record.retries:
        notes.append(f"{record.retries} retr{'y' if record.retries == 1 else 'ies'}")
    if record.abandoned:
        notes.append(f"{record.abandoned} abandoned ({record.wasted_bytes / 1e3:.0f} kB wasted)")
    if record.stall_seconds > 0:
        notes.append(f"stall {record.stall_seconds:.2f}s")
    return (
        f"{record.index + 1}/{total}",
        f"{record.representation} {record.bitrate / 1e3:.0f}k",
        f"{record.throughput_bps / 1e6:.2f} Mbit/s",
        f"{record.buffer_seconds:.1f} s",
        record.edge + (f" {record.cache}" if record.cache else ""),
        ", ".join(notes),
    )


class LiveView:
    """A rich Live table, updated once per chunk; a no-op when disabled."""

    def __init__(self, *, total: int, title: str, quiet: bool = False, file: TextIO | None = None) -> None:
        self.console = Console(file=file)
        self.enabled = not quiet and self.console.is_terminal
        self.total = total
        self.title = title
        self.rows: list[tuple[str, ...]] = []
        self._live: Live | None = None

    def __enter__(self) -> LiveView:
        if self.enabled:
            self._live = Live(self._table(), console=self.console, refresh_per_second=8, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None

    def update(self, record: ChunkRecord) -> None:
        """Show a new chunk."""
        self.rows.append(chunk_row(record, self.total))
        if self._live is not None:
            self._live.update(self._table())

    def note(self, message: str) -> None:
        """Print a one-line event (failover, retry) above the table."""
        if self.enabled:
            self.console.print(f"[yellow]{message}[/]")

    def _table(self) -> Table:
        table = Table(title=self.title, expand=False)
        for name in ("chunk", "bitrate", "throughput", "buffer", "edge", ""):
            table.add_column(name, justify="right" if name in ("buffer", "throughput") else "left")
        for row in self.rows[-VISIBLE_ROWS:]:
            table.add_row(*row)
        return table
