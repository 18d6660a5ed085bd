"""Command line of the origin: `cdn-origin package ...` and `cdn-origin serve ...`.

`package` packages one video into the store with a progress bar and prints a summary table;
`serve` is delegated to origin.serve (imported only when used). Exit codes: 0 success, 1 the
input or the packaging failed (one-line reason on stderr), 2 bad usage, 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from cdn.console import make_console
from origin.errors import ConfigError, OriginError
from origin.ffmpeg_args import DEFAULT_PRESET, PRESETS
from origin.ladder import DEFAULT_LADDER, Ladder, parse_ladder
from origin.packager import PackageSummary, package, validate_segment_seconds, validate_video_id
from origin.progress import PackagingProgress

__all__ = ["DEFAULT_STORE", "build_parser", "main", "store_default"]

DEFAULT_STORE = "var/store"
PROG = "cdn-origin"


def store_default(environ: Mapping[str, str]) -> Path:
    """The store folder when `--store` is not given: $CDN_STORE, else ./var/store."""
    return Path(environ.get("CDN_STORE") or DEFAULT_STORE)


def _argtype(parse: Callable[[str], object]) -> Callable[[str], object]:
    """Wrap a validator so argparse reports its ConfigError message as a usage error (exit 2)."""

    def convert(text: str) -> object:
        try:
            return parse(text)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


def _segment_seconds(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"segment duration {text!r} is not a whole number of seconds (2 to 10)") from None
    return validate_segment_seconds(value)


def _add_package_arguments(parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> None:
    parser.add_argument("input", metavar="INPUT", help="the video file to package (a local file path)")
    parser.add_argument(
        "--id",
        dest="video_id",
        required=True,
        type=_argtype(validate_video_id),
        help="the video id: 1-64 characters from A-Z a-z 0-9 . _ - (no leading dot)",
    )
    parser.add_argument(
        "--store",
        type=Path,
        default=store_default(environ),
        help="the store folder (default: $CDN_STORE or ./var/store)",
    )
    parser.add_argument(
        "--segment-seconds",
        type=_argtype(_segment_seconds),
        default=8,
        metavar="N",
        help="chunk duration in whole seconds, 2 to 10 (default: 8)",
    )
    parser.add_argument(
        "--ladder",
        type=_argtype(parse_ladder),
        default=DEFAULT_LADDER,
        metavar="SPEC",
        help=f"renditions as HEIGHTp:RATE or WxH:RATE, comma separated "
        f"(default: {DEFAULT_LADDER.spec()}); capped at the source resolution",
    )
    parser.add_argument(
        "--preset", choices=PRESETS, default=DEFAULT_PRESET, help=f"x264 preset (default: {DEFAULT_PRESET})"
    )
    parser.add_argument(
        "--single-file",
        dest="layout",
        action="store_const",
        const="single-file",
        default="segments",
        help="write each rendition (and the audio) as one fMP4 with a segment index (sidx), addressed "
        "by byte ranges (SegmentBase, DASH on-demand profile) instead of one file per chunk",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no summary table")


def _serve_module_missing(exc: ImportError) -> bool:
    return isinstance(exc, ModuleNotFoundError) and exc.name == "origin.serve"


def _add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    try:
        from origin.serve import add_serve_arguments
    except ImportError as exc:
        if not _serve_module_missing(exc):
            raise
        parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    else:
        add_serve_arguments(parser)


def build_parser(
    environ: Mapping[str, str] | None = None, *, with_serve: bool = True
) -> argparse.ArgumentParser:
    """The `cdn-origin` parser with its `package` and `serve` subcommands.

    `with_serve=False` skips importing origin.serve (FastAPI, uvicorn) when packaging.
    """
    environ = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(
        prog=PROG, description="The origin: package videos into DASH and serve them."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    pkg = sub.add_parser(
        "package",
        help="package a video into an adaptive DASH ladder in the store",
        description="Package a video into an adaptive DASH ladder (H.264 + AAC, fMP4).",
    )
    _add_package_arguments(pkg, environ)
    serve = sub.add_parser("serve", help="serve the store over HTTP (GET /videos/ID/manifest.mpd, ...)")
    if with_serve:
        _add_serve_arguments(serve)
    else:
        serve.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


class _LazyBar:
    """A rich progress bar (percent of the input's duration, speed x realtime), shown on first update.

    It appears only once ffmpeg reports progress, so a file rejected while probing prints just the
    error line.
    """

    def __init__(self, console: Console, label: str) -> None:
        self._console = console
        self._label = label
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def __call__(self, update: PackagingProgress) -> None:
        if self._bar is None:
            columns = (
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                TextColumn("{task.fields[speed]}"),
                TimeElapsedColumn(),
            )
            self._bar = Progress(*columns, console=self._console)
            self._bar.start()
            self._task = self._bar.add_task(self._label, total=100.0, speed="")
        assert self._task is not None
        speed = f"{update.speed_x_realtime:.2f}x realtime" if update.speed_x_realtime is not None else ""
        self._bar.update(self._task, completed=100.0 * update.fraction, speed=speed)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


@contextmanager
def _progress_bar(
    console: Console, label: str, enabled: bool
) -> Iterator[Callable[[PackagingProgress], None]]:
    """A progress callback for package(): a lazily shown rich bar, or a no-op when disabled."""
    if not enabled:
        yield lambda _update: None
        return
    bar = _LazyBar(console, label)
    try:
        yield bar
    finally:
        bar.close()


def _human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


def summary_table(summary: PackageSummary) -> Table:
    """The end-of-run table: one row per Representation, totals in the caption."""
    table = Table(title=f"packaged {summary.video_id} -> {summary.path}")
    for column in ("rep", "kind", "size", "bandwidth (peak)", "codecs", "chunks", "bytes"):
        table.add_column(column, justify="right" if column in ("chunks", "bytes") else "left")
    for r in summary.renditions:
        size = f"{r.width}x{r.height}" if r.kind == "video" else "-"
        table.add_row(
            r.id,
            r.kind,
            size,
            f"{r.bandwidth / 1000:.0f} kbit/s",
            r.codecs,
            str(r.chunks),
            _human_bytes(r.bytes),
        )
    table.caption = (
        f"{summary.duration:.2f} s of video, {summary.chunks} chunk{'s' if summary.chunks != 1 else ''} "
        f"of {summary.segment_seconds} s per rendition, {_human_bytes(summary.total_bytes)} in all, {summary.wall_seconds:.1f} s wall time "
        f"({summary.speed_x_realtime:.2f}x realtime)"
    )
    return table


def _run_package(args: argparse.Namespace) -> int:
    err = make_console(stderr=True)
    ladder: Ladder = args.ladder
    with _progress_bar(err, f"packaging {args.video_id}", not args.quiet) as on_progress:
        summary = package(
            Path(args.input),
            video_id=args.video_id,
            store=args.store,
            segment_seconds=args.segment_seconds,
            ladder=ladder,
            progress=on_progress,
            preset=args.preset,
            layout=args.layout,
        )
    if not args.quiet:
        make_console().print(summary_table(summary))
    return 0


def _run_serve(args: argparse.Namespace) -> int:
    try:
        from origin.serve import run_serve
    except ImportError as exc:
        if not _serve_module_missing(exc):
            raise
        print(f"{PROG}: error: the HTTP server is not available in this build ({exc})", file=sys.stderr)
        return 1
    return run_serve(args)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `cdn-origin`; returns the process exit code."""
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(with_serve=argv[:1] == ["serve"]).parse_args(argv)
    try:
        if args.command == "package":
            return _run_package(args)
        return _run_serve(args)
    except ConfigError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except OriginError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
