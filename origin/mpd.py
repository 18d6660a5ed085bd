"""Post-processing of the MPD ffmpeg writes: measured values in, corrected manifest out (mostly pure).

ffmpeg's dash muxer writes the encoder's *target* bitrate as @bandwidth, but real chunks exceed it,
and an ABR player that trusts it under-buffers. `measure_representation()` reads the init and media
segments (fMP4 boxes) and `rewrite_mpd()` sets, per Representation, @bandwidth to the measured peak
(bits of a chunk / its duration, maximum over all chunks), @codecs from the init segment's sample
entry, @width/@height/@sar/@frameRate, the SegmentTemplate timescale/duration in the track's own
timescale (or, for single-file packages, a SegmentBase from origin.mpd_single), and the MPD's
@mediaPresentationDuration from the media itself. `validate_mpd()` checks
the result against the ISO/IEC 23009-1 schema.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from origin.errors import ManifestError
from origin.fmp4 import FMP4Error, parse_init, parse_media
from origin.mpd_single import ONDEMAND_PROFILE, SingleFileLayout, set_segment_base

__all__ = [
    "DASH_NS",
    "RepresentationStats",
    "find_schema",
    "format_frame_rate",
    "iso_duration",
    "measure_representation",
    "rewrite_mpd",
    "validate_mpd",
]

log = logging.getLogger(__name__)

DASH_NS = "urn:mpeg:dash:schema:mpd:2011"
_NS = {"d": DASH_NS}
for _prefix, _uri in (
    ("", DASH_NS),
    ("xsi", "http://www.w3.org/2001/XMLSchema-instance"),
    ("xlink", "http://www.w3.org/1999/xlink"),
):
    ET.register_namespace(_prefix, _uri)


@dataclass(frozen=True, slots=True, kw_only=True)
class RepresentationStats:
    """What one Representation's segments really contain."""

    handler: str
    codecs: str
    timescale: int
    width: int
    height: int
    chunks: int
    bytes: int
    duration: Fraction
    peak_bandwidth: int
    chunk_durations: tuple[Fraction, ...]


def measure_representation(init: bytes, chunks: list[bytes]) -> RepresentationStats:
    """Measure a Representation from its init segment and media segments (in order).

    The peak bandwidth is the maximum over chunks of bits / duration, rounded up (bit/s).
    Raises ManifestError if a segment is malformed, empty or does not start with a sync sample.
    """
    if not chunks:
        raise ManifestError("a Representation has no media segments")
    try:
        info = parse_init(init)
        segments = [parse_media(chunk, info) for chunk in chunks]
    except FMP4Error as exc:
        raise ManifestError(f"ffmpeg wrote an unreadable segment: {exc}") from exc
    durations = tuple(Fraction(s.duration, info.timescale) for s in segments)
    if any(d <= 0 for d in durations):
        raise ManifestError("a media segment has zero duration")
    if not all(s.first_is_sync for s in segments):
        raise ManifestError("a media segment does not start with a keyframe (sync sample)")
    peak = max(math.ceil(len(chunk) * 8 / d) for chunk, d in zip(chunks, durations, strict=True))
    return RepresentationStats(
        handler=info.handler,
        codecs=info.codecs,
        timescale=info.timescale,
        width=info.width,
        height=info.height,
        chunks=len(chunks),
        bytes=len(init) + sum(map(len, chunks)),
        duration=sum(durations, Fraction(0)),
        peak_bandwidth=peak,
        chunk_durations=durations,
    )


def iso_duration(seconds: Fraction | float) -> str:
    """An xs:duration for `seconds`, e.g. `PT8S`, `PT1M4.5S`, `PT1H0M0.033S` (millisecond precision)."""
    millis = round(Fraction(seconds) * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs = f"{rest // 1000}.{rest % 1000:03d}".rstrip("0").rstrip(".")
    if hours:
        return f"PT{hours}H{minutes}M{secs}S"
    if minutes:
        return f"PT{minutes}M{secs}S"
    return f"PT{secs}S"


def format_frame_rate(fps: Fraction) -> str:
    """A DASH FrameRateType: `30` or `30000/1001`."""
    return str(fps.numerator) if fps.denominator == 1 else f"{fps.numerator}/{fps.denominator}"


def _ratio(value: Fraction) -> str:
    return f"{value.numerator}:{value.denominator}"


def _set(elem: ET.Element, **attrs: Any) -> None:
    for key, value in attrs.items():
        elem.set(key, str(value))


def _fix_template(rep: ET.Element, stats: RepresentationStats, segment: Fraction) -> None:
    template = rep.find("d:SegmentTemplate", _NS)
    if template is None:
        raise ManifestError(f"Representation {rep.get('id')} has no SegmentTemplate")
    duration = segment * stats.timescale
    if duration.denominator != 1:  # not a whole number of ticks: fall back to microseconds
        _set(template, timescale=1_000_000, duration=round(segment * 1_000_000))
    else:
        _set(template, timescale=stats.timescale, duration=duration.numerator)


def _fix_representation(
    rep: ET.Element,
    stats: RepresentationStats,
    segment: Fraction,
    fps: Fraction,
    sar: Fraction | None,
    layout: SingleFileLayout | None,
) -> None:
    _set(rep, codecs=stats.codecs, bandwidth=stats.peak_bandwidth)
    if stats.handler == "vide":
        _set(rep, width=stats.width, height=stats.height, frameRate=format_frame_rate(fps))
        if sar is not None:
            _set(rep, sar=_ratio(sar))
    if layout is None:
        _fix_template(rep, stats, segment)
    else:
        set_segment_base(rep, layout, stats.timescale)


def _make_ondemand(root: ET.Element) -> None:
    """The on-demand profile (ISO/IEC 23009-1 §8.3): aligned subsegments starting with a SAP of type 1."""
    root.set("profiles", ONDEMAND_PROFILE)
    for aset in root.iterfind("d:Period/d:AdaptationSet", _NS):
        _set(aset, subsegmentAlignment="true", subsegmentStartsWithSAP=1)


def _fix_video_set(
    aset: ET.Element, stats: list[RepresentationStats], fps: Fraction, dar: Fraction | None
) -> None:
    _set(
        aset,
        frameRate=format_frame_rate(fps),
        maxWidth=max(s.width for s in stats),
        maxHeight=max(s.height for s in stats),
    )
    if dar is not None:
        _set(aset, par=_ratio(dar))


def _fix_top(root: ET.Element, duration: Fraction, segment: Fraction, title: str) -> None:
    _set(root, mediaPresentationDuration=iso_duration(duration), maxSegmentDuration=iso_duration(segment))
    for empty in root.findall("d:ServiceDescription", _NS):
        if not len(empty):
            root.remove(empty)
    info = root.find("d:ProgramInformation", _NS)
    if info is not None and info.find("d:Title", _NS) is None:
        ET.SubElement(info, f"{{{DASH_NS}}}Title").text = title
    for period in root.findall("d:Period", _NS):
        period.set("duration", iso_duration(duration))


def rewrite_mpd(
    xml: bytes,
    *,
    stats: dict[str, RepresentationStats],
    fps: Fraction,
    segment: Fraction,
    duration: Fraction,
    sars: dict[str, Fraction] | None = None,
    display_aspect: Fraction | None = None,
    title: str = "",
    single_files: dict[str, SingleFileLayout] | None = None,
) -> bytes:
    """Return `xml` with measured values; raise ManifestError if it lacks a measured Representation.

    With `single_files` (the layout of each Representation's one file, `--single-file`) every
    Representation gets a SegmentBase and the MPD the on-demand profile.
    """
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise ManifestError(f"ffmpeg wrote an MPD that is not XML: {exc}") from exc
    seen: set[str] = set()
    for aset in root.iterfind("d:Period/d:AdaptationSet", _NS):
        aset.attrib.pop("bitstreamSwitching", None)  # each Representation has its own init segment
        members = []
        for rep in aset.findall("d:Representation", _NS):
            rep_id = rep.get("id", "")
            if rep_id not in stats:
                raise ManifestError(f"Representation {rep_id!r} in the MPD has no segments on disk")
            layout = None if single_files is None else single_files.get(rep_id)
            if single_files is not None and layout is None:
                raise ManifestError(f"Representation {rep_id!r} in the MPD has no single file on disk")
            _fix_representation(rep, stats[rep_id], segment, fps, (sars or {}).get(rep_id), layout)
            members.append(stats[rep_id])
            seen.add(rep_id)
        if aset.get("contentType") == "video" and members:
            _fix_video_set(aset, members, fps, display_aspect)
    if seen != set(stats):
        raise ManifestError(f"the MPD lacks Representations {sorted(set(stats) - seen)}")
    _fix_top(root, duration, segment, title)
    if single_files is not None:
        _make_ondemand(root)
    for elem in root.iter():
        if elem.text is not None and not elem.text.strip():
            elem.text = None
    ET.indent(root, space="  ")
    body: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=False)
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + body + b"\n"


def find_schema() -> Path | None:
    """The DASH-MPD.xsd in ../shared/dash-schema next to the repository (or $CDN_DASH_SCHEMA), if present."""
    override = os.environ.get("CDN_DASH_SCHEMA")
    candidates = [Path(override)] if override else []
    candidates.append(Path(__file__).resolve().parents[2] / "shared" / "dash-schema" / "DASH-MPD.xsd")
    return next((p for p in candidates if p.is_file()), None)


@functools.cache
def _schema(path: Path) -> Any:
    import xmlschema  # heavy: only when validating

    return xmlschema.XMLSchema(str(path))


def validate_mpd(xml: bytes, schema: Path | None = None) -> bool:
    """Validate `xml` against the DASH schema; False (with a warning) if the schema is absent.

    Raises ManifestError listing the first violations when the MPD is invalid.
    """
    schema = schema or find_schema()
    if schema is None:
        log.warning("DASH schema not found (../shared/dash-schema/DASH-MPD.xsd): MPD not validated")
        return False
    errors = list(_schema(schema).iter_errors(xml.decode("utf-8")))
    if errors:
        details = "; ".join(f"{e.path}: {e.reason}" for e in errors[:3])
        raise ManifestError(f"the MPD does not validate against {schema.name}: {details}")
    return True
