"""`cdn demo`: start the whole CDN, play the sample from two client regions, compare what they got.

Runs `cdn up` in-process (`cdn.up.running_cdn`), then two `player/cli.py` processes at once, each
with a source address in a different region's client network, `--speed` to keep it short and a
`--report` file. It shows which edge the DNS router sent each to and their QoE summaries side by
side, then stops everything (or keeps the CDN running with `--keep` until Ctrl-C).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from rich.table import Table

from cdn.compose import manifest_url
from cdn.console import make_console
from cdn.launcher import LaunchError
from cdn.topology import Topology
from cdn.up import (
    SAMPLE_ID,
    DemoClient,
    UpOptions,
    demo_clients,
    running_cdn,
    sigterm_as_interrupt,
    summary_table,
    try_commands,
    wait_for_signal,
)

__all__ = ["DemoClient", "demo_clients", "player_argv", "qoe_table", "run_demo"]

ROOT = Path(__file__).resolve().parent.parent


def player_argv(topology: Topology, client: DemoClient, report: Path, *, speed: float) -> list[str]:
    """The player command of one demo viewer (the same as the README's)."""
    return [sys.executable, str(ROOT / "player" / "cli.py"), manifest_url(topology, SAMPLE_ID),
            "--dns", str(topology.dns.listen), "--source-ip", client.source_ip, "--speed", str(speed),
            "--report", str(report), "--quiet"]  # fmt: skip


def _edge_names(topology: Topology, chunks: list[dict[str, Any]]) -> str:
    """The edges that served the chunks, by name, most used first."""
    by_addr = {f"{e.address}:{e.port}": e.name for e in topology.edges}
    counts = Counter(by_addr.get(str(c.get("edge")), str(c.get("edge"))) for c in chunks)
    return ", ".join(f"{name} ({n})" for name, n in counts.most_common()) or "-"


# The QoE summary's fields as a viewer reads them: (key in the player's report, label, format).
QOE_ROWS: tuple[tuple[str, str, str], ...] = (
    ("chunks", "chunks played", "{:.0f}"),
    ("average_bitrate", "average bitrate (kbit/s)", "{:,.0f}"),
    ("switches", "bitrate switches", "{:.0f}"),
    ("stall_count", "stalls", "{:.0f}"),
    ("stall_time", "stall time (s)", "{:.2f}"),
    ("startup_delay", "startup delay (s)", "{:.2f}"),
    ("qoe_per_chunk", "QoE_lin per chunk", "{:.3f}"),
    ("qoe_total", "QoE_lin total", "{:.2f}"),
    ("algorithm", "ABR algorithm", "{}"),
)


def _cell(summary: dict[str, Any] | None, key: str, fmt: str) -> str:
    value = (summary or {}).get(key)
    if value is None:
        return "-"
    if key == "average_bitrate":
        value = value / 1000
    return fmt.format(value)


def qoe_table(topology: Topology, results: list[tuple[DemoClient, dict[str, Any] | None]]) -> Table:
    """The viewers side by side: the edges that served them and their QoE summaries."""
    table = Table(title="the sample played from two regions")
    table.add_column("")
    for client, _ in results:
        table.add_column(f"{client.region} ({client.source_ip})", justify="right")
    table.add_row(
        "served by", *[_edge_names(topology, r.get("chunks", [])) if r else "failed" for _, r in results]
    )
    for key, label, fmt in QOE_ROWS:
        table.add_row(label, *[_cell((r or {}).get("summary"), key, fmt) for _, r in results])
    return table


def play_all(topology: Topology, clients: list[DemoClient], out_dir: Path, *, speed: float,
             timeout: float) -> list[tuple[DemoClient, dict[str, Any] | None]]:  # fmt: skip
    """Run the viewers' players at once; return each one's report (None when it failed)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    procs = []
    for c in clients:
        report = out_dir / f"player-{c.region}.json"
        report.unlink(missing_ok=True)
        log = open(out_dir / f"player-{c.region}.log", "wb")  # noqa: SIM115 - closed below
        procs.append((c, report, log, subprocess.Popen(player_argv(topology, c, report, speed=speed),  # noqa: S603
                                                       stdout=log, stderr=subprocess.STDOUT)))  # fmt: skip
    results = []
    try:
        for c, report, _log, proc in procs:
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            doc = json.loads(report.read_text()) if proc.returncode == 0 and report.is_file() else None
            results.append((c, doc))
    finally:  # interrupted: no player outlives the demo
        for _, _, log, proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
    return results


def run_demo(options: UpOptions, *, keep: bool = False, speed: float = 8.0) -> int:
    """`cdn demo`: up, play from two regions, show the comparison, stop (or keep running)."""
    console = make_console()
    sigterm_as_interrupt()
    try:
        with running_cdn(options, console) as (sup, topology):
            console.print(summary_table(sup, topology))
            clients = demo_clients(topology)
            console.print("playing the sample from " + " and ".join(f"{c.region} ({c.source_ip})" for c in clients)
                          + f" at {speed:g}x ...")  # fmt: skip
            out = options.state_dir / "demo"
            with console.status("playing"):
                results = play_all(
                    topology, clients, out, speed=speed, timeout=max(60.0, 3 * options.sample_seconds)
                )
            console.print(qoe_table(topology, results))
            for c, r in results:
                if r is None:
                    console.print(
                        f"[red]the {c.region} player failed[/]; see {out / f'player-{c.region}.log'}"
                    )
            console.print(f"reports: {out}/player-*.json")
            if keep:
                console.print("the CDN keeps running; try:")
                for line in try_commands(topology, options.state_dir):
                    console.print(f"  {line}", highlight=False, soft_wrap=True)
                console.print("Ctrl-C stops everything.")
                wait_for_signal()
            return 0 if all(r is not None for _, r in results) else 1
    except LaunchError as exc:
        console.print(f"[red]cdn demo failed[/]: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130
