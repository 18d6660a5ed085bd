"""Measure a freshly encoded package: per-Representation stats from the files ffmpeg wrote.

Two layouts: `measure_segments` reads `init-N.m4s` + `chunk-N-NNNNN.m4s` (the live profile);
`measure_single_files` reads one `media-N.mp4` per Representation and finds its chunks through
its sidx (the on-demand profile). Both trim the chunks past the presentation's end (a sliver of
audio beyond the last video frame) so they neither sit unreferenced nor inflate the bandwidth.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from pathlib import Path

from origin.errors import ManifestError
from origin.mpd import RepresentationStats, measure_representation
from origin.mpd_single import SingleFileLayout, parse_single_file, trim_single_file

__all__ = ["measure_segments", "measure_single_files"]

_CHUNK = re.compile(r"^chunk-(?P<rep>\d+)-(?P<num>\d+)\.m4s$")
_SINGLE = re.compile(r"^media-(?P<rep>\d+)\.mp4$")


def _representation_files(folder: Path) -> dict[str, list[Path]]:
    chunks: dict[str, list[tuple[int, Path]]] = {}
    for path in folder.iterdir():
        m = _CHUNK.match(path.name)
        if m:
            chunks.setdefault(m.group("rep"), []).append((int(m.group("num")), path))
    return {rep: [p for _, p in sorted(items)] for rep, items in chunks.items()}


def _measure_files(folder: Path, rep: str, chunks: list[Path]) -> RepresentationStats:
    init = folder / f"init-{rep}.m4s"
    if not init.is_file():
        raise ManifestError(f"Representation {rep} has media segments but no init segment")
    return measure_representation(init.read_bytes(), [c.read_bytes() for c in chunks])


def measure_segments(folder: Path, segment: Fraction) -> tuple[dict[str, RepresentationStats], Fraction]:
    """Measure every Representation; return the stats and the presentation (video) duration.

    A player requests ceil(duration / segment) chunks of each Representation: fewer is an error,
    and chunks past that (a sliver of audio beyond the last video frame) are deleted, so they
    neither sit unreferenced in the store nor inflate the measured bandwidth.
    """
    files = _representation_files(folder)
    if not files:
        raise ManifestError("ffmpeg wrote no media segments")
    stats = {rep: _measure_files(folder, rep, chunks) for rep, chunks in files.items()}
    needed, duration = _needed_chunks(stats, segment)
    for rep, chunks in files.items():
        if len(chunks) < needed:
            raise ManifestError(f"Representation {rep} has {len(chunks)} chunks where the MPD needs {needed}")
        if len(chunks) > needed:
            for extra in chunks[needed:]:
                extra.unlink()
            stats[rep] = _measure_files(folder, rep, chunks[:needed])
    return stats, duration


def _needed_chunks(stats: dict[str, RepresentationStats], segment: Fraction) -> tuple[int, Fraction]:
    """(chunks a player requests per Representation, presentation duration): from the video."""
    videos = [s.duration for s in stats.values() if s.handler == "vide"]
    if not videos:
        raise ManifestError("ffmpeg wrote no video Representation")
    return math.ceil(max(videos) / segment), max(videos)


def measure_single_files(
    folder: Path, segment: Fraction
) -> tuple[dict[str, RepresentationStats], Fraction, dict[str, SingleFileLayout]]:
    """`measure_segments` for single-file packages: one `media-N.mp4` per Representation, chunks from its sidx.

    Chunks past the presentation's end are cut off the file (and its sidx), as `measure_segments` deletes them.
    """
    files = {m.group("rep"): p for p in folder.iterdir() if (m := _SINGLE.match(p.name))}
    if not files:
        raise ManifestError("ffmpeg wrote no single-file Representation (media-N.mp4)")
    datas = {rep: path.read_bytes() for rep, path in files.items()}
    layouts = {rep: parse_single_file(data) for rep, data in datas.items()}

    def measure(rep: str) -> RepresentationStats:
        data, layout = datas[rep], layouts[rep]
        return measure_representation(layout.init.of(data), [c.of(data) for c in layout.chunks])

    stats = {rep: measure(rep) for rep in files}
    needed, duration = _needed_chunks(stats, segment)
    for rep, layout in layouts.items():
        if len(layout.chunks) < needed:
            raise ManifestError(
                f"Representation {rep} has {len(layout.chunks)} chunks where the MPD needs {needed}"
            )
        if len(layout.chunks) > needed:
            datas[rep], layouts[rep] = trim_single_file(datas[rep], layout, needed)
            files[rep].write_bytes(datas[rep])
            stats[rep] = measure(rep)
    return stats, duration, layouts
