"""The umbrella `cdn` command: the whole CDN from topology.yaml.

cdn up [--topology FILE] [--state-dir var] [--no-sample] [--sample-seconds 60]
cdn status | cdn down [--state-dir var]
cdn demo [--keep]                       up, then play the sample from two regions
cdn loadtest (--topology FILE [--scheme https] | --edge URL) [--ca FILE] --players N --duration S ...
cdn compose [-o docker-compose.yml]     write the compose file from the topology
cdn sample --store DIR                  package the sample video when it is missing
cdn check URL [--ca FILE]               exit 0 when URL answers 200 (container health checks)
"""

from __future__ import annotations

import argparse
import ssl
import sys
from collections.abc import Callable
from pathlib import Path

__all__ = ["build_parser", "main"]

DEFAULT_TOPOLOGY = Path("topology.yaml")
DEFAULT_STATE = Path("var")


def _up_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--topology", type=Path, default=DEFAULT_TOPOLOGY, help="topology file (default %(default)s)"
    )
    p.add_argument(
        "--state-dir", type=Path, default=DEFAULT_STATE, help="store, caches, logs (default %(default)s)"
    )
    p.add_argument("--no-sample", action="store_true", help="do not package the sample video")
    p.add_argument(
        "--sample-seconds", type=float, default=60.0, help="sample length in s (default %(default)s)"
    )
    p.add_argument(
        "--segment-seconds", type=int, default=4, help="sample chunk length in s (default %(default)s)"
    )
    p.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait for health (default %(default)s)"
    )


def _loadtest_args(p: argparse.ArgumentParser) -> None:
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--topology", type=Path, metavar="FILE", help="spread players over the regions, edges via DNS"
    )
    target.add_argument(
        "--edge", action="append", metavar="URL", help="edge base URL, http:// or https:// (repeatable)"
    )
    p.add_argument(
        "--scheme",
        choices=("http", "https"),
        help="with --topology: how to speak to the edges (default http)",
    )
    p.add_argument(
        "--ca", type=Path, metavar="FILE", help="PEM CA trusted for https edges, besides the system's"
    )
    p.add_argument("--players", type=int, default=100, help="simulated players (default %(default)s)")
    p.add_argument("--duration", type=float, default=30.0, help="seconds (default %(default)s)")
    p.add_argument("--zipf", type=float, default=1.0, help="Zipf exponent of video popularity")
    p.add_argument(
        "--videos", type=int, default=4, help="catalogue size: loadtest-1..K (default %(default)s)"
    )
    p.add_argument("--store", type=Path, help="origin store to package the loadtest videos into")
    p.add_argument(
        "--ramp", type=float, default=5.0, help="seconds to start all players (default %(default)s)"
    )
    p.add_argument("--speed", type=float, default=1.0, help="playback speed factor (default %(default)s)")
    p.add_argument("--json", type=Path, help="write the results as JSON")
    p.add_argument("--plot", type=Path, help="write a PNG plot over time")
    p.add_argument("--quiet", action="store_true", help="no live progress")


def build_parser() -> argparse.ArgumentParser:
    """The `cdn` argument parser (used by the compose test to check options exist)."""
    parser = argparse.ArgumentParser(prog="cdn", description="The whole CDN from topology.yaml.")
    sub = parser.add_subparsers(dest="command", required=True)
    _up_args(sub.add_parser("up", help="start the whole CDN and wait for Ctrl-C"))
    for name, text in (("status", "health and hit ratios"), ("down", "stop a CDN started by `cdn up`")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--topology", type=Path, default=DEFAULT_TOPOLOGY)
        p.add_argument("--state-dir", type=Path, default=DEFAULT_STATE)
    demo = sub.add_parser("demo", help="start the CDN and play the sample from two regions")
    _up_args(demo)
    demo.add_argument("--keep", action="store_true", help="keep the CDN running after the demo")
    demo.add_argument("--speed", type=float, default=8.0, help="player speed factor (default %(default)s)")
    _loadtest_args(sub.add_parser("loadtest", help="simulate many players against the edges"))
    comp = sub.add_parser("compose", help="write docker-compose.yml from the topology")
    comp.add_argument("--topology", type=Path, default=DEFAULT_TOPOLOGY)
    comp.add_argument("-o", "--output", type=Path, help="file to write (default: stdout)")
    sample = sub.add_parser("sample", help="package the sample video when missing")
    sample.add_argument("--store", type=Path, required=True)
    sample.add_argument("--seconds", type=float, default=60.0)
    sample.add_argument("--segment-seconds", type=int, default=4)
    check = sub.add_parser("check", help="exit 0 when URL answers HTTP 200")
    check.add_argument("url", help="e.g. https://eu-west-1:8080/healthz")
    check.add_argument("--timeout", type=float, default=2.0, help="seconds (default %(default)s)")
    check.add_argument(
        "--ca", type=Path, metavar="FILE", help="PEM CA trusted for an https URL, besides the system's"
    )
    return parser


def _cmd_up(args: argparse.Namespace) -> int:
    from cdn.up import run_up

    return run_up(_up_options(args))  # type: ignore[arg-type]


def _up_options(args: argparse.Namespace) -> object:
    from cdn.up import UpOptions

    return UpOptions(topology_path=args.topology, state_dir=args.state_dir, sample=not args.no_sample,
                     sample_seconds=args.sample_seconds, segment_seconds=args.segment_seconds,
                     timeout=args.timeout)  # fmt: skip


def _cmd_status(args: argparse.Namespace) -> int:
    from cdn.console import make_console
    from cdn.plan import Health
    from cdn.status import collect_status, status_table

    rows = collect_status(args.state_dir, args.topology)
    make_console().print(status_table(rows))
    return 0 if all(r.health is not Health.DOWN for r in rows) else 1


def _cmd_down(args: argparse.Namespace) -> int:
    from cdn.status import run_down

    stopped = run_down(args.state_dir)
    print(f"stopped: {', '.join(stopped)}" if stopped else f"nothing running from {args.state_dir}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from cdn.demo import run_demo

    return run_demo(_up_options(args), keep=args.keep, speed=args.speed)  # type: ignore[arg-type]


def _cmd_loadtest(args: argparse.Namespace) -> int:
    from cdn.loadtest import run_loadtest_cli

    return run_loadtest_cli(args)


def _cmd_compose(args: argparse.Namespace) -> int:
    import yaml

    from cdn.compose import render_compose_text
    from cdn.topology import load_topology

    text = render_compose_text(load_topology(args.topology), yaml.safe_load(args.topology.read_text()))
    if args.output:
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def _cmd_sample(args: argparse.Namespace) -> int:
    from cdn.console import make_console
    from cdn.up import ensure_sample

    args.store.mkdir(parents=True, exist_ok=True)
    made = ensure_sample(args.store, args.store.parent, seconds=args.seconds,
                         segment_seconds=args.segment_seconds, console=make_console())  # fmt: skip
    print("packaged the sample" if made else "the sample is already packaged")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    """Exit 0 on HTTP 200; 1 with the reason (status, refused certificate, no answer); 2 for a bad --ca."""
    from cdn.tls import TlsFileError, client_tls_context

    https = args.url.lower().startswith("https://")
    if args.ca is not None and not https:
        print(f"cdn check: --ca {args.ca} goes with an https:// URL, not {args.url}", file=sys.stderr)
        return 2
    try:
        context = client_tls_context(args.ca) if https else None
    except TlsFileError as exc:
        print(f"cdn check: {exc}", file=sys.stderr)
        return 2
    problem = _check_problem(args.url, timeout=args.timeout, context=context)
    if problem is None:
        return 0
    print(f"cdn check: {args.url}: {problem}", file=sys.stderr)
    return 1


def _check_problem(url: str, *, timeout: float, context: ssl.SSLContext | None) -> str | None:
    """GET `url` once; None when it answers 200, else why not, in words (never a traceback)."""
    from cdn.launcher import probe_why

    status, _, reason = probe_why(url, timeout=timeout, context=context)
    if status is None:
        return _failure(reason, url, timeout)
    return None if status == 200 else f"HTTP {status}"


def _failure(reason: object, url: str, timeout: float) -> str:
    """A failed request in words: OpenSSL's reason for TLS (with the --ca hint), else the error."""
    from urllib.parse import urlsplit

    from cdn.tls import verify_failure

    if isinstance(reason, ssl.SSLCertVerificationError):
        return f"TLS for {urlsplit(url).hostname}: {verify_failure(reason, ca_option='--ca')}"
    if isinstance(reason, ssl.SSLError):
        return f"TLS: handshake failed: {(reason.reason or str(reason)).lower().replace('_', ' ')}"
    if isinstance(reason, TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(reason, OSError):
        return f"cannot connect: {reason.strerror or reason}"
    return reason if isinstance(reason, str) else f"{type(reason).__name__}: {reason}"


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "up": _cmd_up, "status": _cmd_status, "down": _cmd_down, "demo": _cmd_demo, "loadtest": _cmd_loadtest,
    "compose": _cmd_compose, "sample": _cmd_sample, "check": _cmd_check,
}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Run the `cdn` command; return its exit code."""
    args = build_parser().parse_args(argv)
    from cdn.launcher import LaunchError
    from cdn.topology import TopologyError

    try:
        return COMMANDS[args.command](args)
    except (TopologyError, LaunchError) as exc:
        print(f"cdn {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
