"""Rich consoles for the command-line tools: as wide as the terminal, or wide enough when piped.

Rich draws at 80 columns when its output is not a terminal (a log file, `| grep`, CI), and a table
wider than that truncates its cells with "…": `cdn up`'s log paths and `cdn status`'s URLs became
unreadable exactly where people look for them. Piped, a console is given `PIPED_WIDTH` columns
instead (tables still take only the room they need); `COLUMNS` in the environment wins, as in Rich.
"""

from __future__ import annotations

import os
import sys
from typing import IO

from rich.console import Console

__all__ = ["PIPED_WIDTH", "make_console"]

PIPED_WIDTH = 200


def make_console(*, stderr: bool = False, file: IO[str] | None = None) -> Console:
    """A Console on stdout (stderr, or `file`): the terminal's width, or PIPED_WIDTH when not a terminal."""
    stream = file if file is not None else (sys.stderr if stderr else sys.stdout)
    piped = not (hasattr(stream, "isatty") and stream.isatty())
    width = PIPED_WIDTH if piped and "COLUMNS" not in os.environ else None
    return Console(file=file, stderr=stderr, width=width)
