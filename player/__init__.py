"""The player: resolves the CDN host through the DNS router, reads the MPD, adapts the bitrate per chunk.

Pure core: `player.mpd` (MPD parser), `player.timeline`, `player.sidx`, `player.abr` (algorithms),
`player.playout` (buffer model), `player.qoe`, `player.simulate`. I/O shell: `player.resolve`,
`player.fetch`, `player.session`, `player.cli`.
"""

from __future__ import annotations

from player.errors import ManifestError, PlayerError
from player.mpd import Manifest, parse_mpd

__all__ = ["Manifest", "ManifestError", "PlayerError", "parse_mpd"]
