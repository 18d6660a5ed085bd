"""Shared pieces of the CDN and the umbrella `cdn` command.

`cdn.ffmpeg` finds the ffmpeg binary, `cdn.hostport` parses HOST:PORT settings, `cdn.samples`
generates test videos, `cdn.topology` loads the topology file every service reads; `cdn.cli` is the
`cdn` command (up, status, loadtest, demo). This package stays light: importing it pulls in no service.
"""

from __future__ import annotations

from cdn.hostport import HostPort, parse_hostport

__all__ = ["HostPort", "parse_hostport"]
