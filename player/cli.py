"""Command line of the player: `cdn-player URL ...` plays a stream, `cdn-player simulate ...` runs a trace.

Also runnable from a checkout as `python player/cli.py ...`. Exit codes: 0 played, 1 failed (the
message says why and what to do), 2 usage error.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: sys.path[0] is player/, make it the repository root
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from player.config import PlayerConfig  # noqa: E402 - after the sys.path fix above
from player.errors import PlayerError  # noqa: E402

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def main(argv: list[str] | None = None) -> int:
    """Run the player; return the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "simulate":
        return _simulate(args[1:])
    try:
        config = PlayerConfig.from_args(args)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return _exit_code(exc)
    from player.session import run

    try:
        return run(config)
    except PlayerError as exc:
        print(f"cdn-player: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("cdn-player: interrupted", file=sys.stderr)
        return 130


def _simulate(args: list[str]) -> int:
    """`cdn-player simulate ...`: the same ABR and buffer code against a throughput trace."""
    import argparse

    from player.simulate import add_simulate_arguments, run_simulate

    parser = argparse.ArgumentParser(
        prog="cdn-player simulate",
        description="Run an ABR algorithm against a throughput trace (no network).",
    )
    add_simulate_arguments(parser)
    try:
        ns = parser.parse_args(args)
    except SystemExit as exc:
        return _exit_code(exc)
    try:
        return run_simulate(ns)
    except PlayerError as exc:
        print(f"cdn-player simulate: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _exit_code(exc: SystemExit) -> int:
    code = exc.code
    if code is None:
        return EXIT_OK
    return code if isinstance(code, int) else EXIT_USAGE


if __name__ == "__main__":
    raise SystemExit(main())
