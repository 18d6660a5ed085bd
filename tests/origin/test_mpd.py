"""MPD post-processing (origin.mpd): measured values replace ffmpeg's targets; schema validation."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from fractions import Fraction
from pathlib import Path

import pytest

from origin.errors import ManifestError
from origin.mpd import (
    RepresentationStats,
    find_schema,
    format_frame_rate,
    iso_duration,
    measure_representation,
    rewrite_mpd,
    validate_mpd,
)

NS = {"d": "urn:mpeg:dash:schema:mpd:2011"}

# What ffmpeg 9's dash muxer wrote for the 320x180 fixture clip (2 s chunks, two renditions + audio).
FFMPEG_MPD = b"""<?xml version="1.0" encoding="utf-8"?>
<MPD xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
\txmlns="urn:mpeg:dash:schema:mpd:2011"
\txmlns:xlink="http://www.w3.org/1999/xlink"
\txsi:schemaLocation="urn:mpeg:DASH:schema:MPD:2011 http://standards.iso.org/ittf/PubliclyAvailableStandards/MPEG-DASH_schema_files/DASH-MPD.xsd"
\tprofiles="urn:mpeg:dash:profile:isoff-live:2011" type="static" mediaPresentationDuration="PT5.0S"
\tmaxSegmentDuration="PT2.0S" minBufferTime="PT4.0S">
\t<ProgramInformation>
\t</ProgramInformation>
\t<ServiceDescription id="0">
\t</ServiceDescription>
\t<Period id="0" start="PT0.0S">
\t\t<AdaptationSet id="0" contentType="video" startWithSAP="1" segmentAlignment="true" bitstreamSwitching="true" frameRate="30/1" maxWidth="320" maxHeight="180" par="16:9">
\t\t\t<Representation id="0" mimeType="video/mp4" codecs="avc1.64000d" bandwidth="400000" width="320" height="180" sar="1:1">
\t\t\t\t<SegmentTemplate timescale="1000000" duration="2000000" initialization="init-$RepresentationID$.m4s" media="chunk-$RepresentationID$-$Number%05d$.m4s" startNumber="1">
\t\t\t\t</SegmentTemplate>
\t\t\t</Representation>
\t\t\t<Representation id="1" mimeType="video/mp4" codecs="avc1.64000c" bandwidth="200000" width="256" height="144" sar="1:1">
\t\t\t\t<SegmentTemplate timescale="1000000" duration="2000000" initialization="init-$RepresentationID$.m4s" media="chunk-$RepresentationID$-$Number%05d$.m4s" startNumber="1">
\t\t\t\t</SegmentTemplate>
\t\t\t</Representation>
\t\t</AdaptationSet>
\t\t<AdaptationSet id="1" contentType="audio" startWithSAP="1" segmentAlignment="true" bitstreamSwitching="true">
\t\t\t<Representation id="2" mimeType="audio/mp4" codecs="mp4a.40.2" bandwidth="128000" audioSamplingRate="48000">
\t\t\t\t<AudioChannelConfiguration schemeIdUri="urn:mpeg:dash:23003:3:audio_channel_configuration:2011" value="2" />
\t\t\t\t<SegmentTemplate timescale="1000000" duration="2000000" initialization="init-$RepresentationID$.m4s" media="chunk-$RepresentationID$-$Number%05d$.m4s" startNumber="1">
\t\t\t\t</SegmentTemplate>
\t\t\t</Representation>
\t\t</AdaptationSet>
\t</Period>
</MPD>
"""


def _stats(
    handler: str, codecs: str, timescale: int, width: int, height: int, peak: int
) -> RepresentationStats:
    return RepresentationStats(
        handler=handler,
        codecs=codecs,
        timescale=timescale,
        width=width,
        height=height,
        chunks=3,
        bytes=1,
        duration=Fraction(5),
        peak_bandwidth=peak,
        chunk_durations=(Fraction(2), Fraction(2), Fraction(1)),
    )


STATS = {
    "0": _stats("vide", "avc1.640016", 15360, 320, 180, 437_328),
    "1": _stats("vide", "avc1.64000c", 15360, 256, 144, 227_072),
    "2": _stats("soun", "mp4a.40.2", 48000, 0, 0, 129_628),
}


def _rewrite(**overrides: object) -> ET.Element:
    kwargs: dict[str, object] = {
        "stats": STATS,
        "fps": Fraction(30),
        "segment": Fraction(2),
        "duration": Fraction(5),
        "sars": {"0": Fraction(1), "1": Fraction(1)},
        "display_aspect": Fraction(16, 9),
        "title": "demo",
    }
    kwargs.update(overrides)
    return ET.fromstring(rewrite_mpd(FFMPEG_MPD, **kwargs))  # type: ignore[arg-type]


def test_measured_values_replace_ffmpeg_targets() -> None:
    root = _rewrite()
    reps = {r.get("id"): r for r in root.iterfind(".//d:Representation", NS)}
    assert reps["0"].get("bandwidth") == "437328"
    assert reps["0"].get("codecs") == "avc1.640016"
    assert reps["0"].get("frameRate") == "30"
    assert reps["2"].get("bandwidth") == "129628"
    video_template = reps["0"].find("d:SegmentTemplate", NS)
    audio_template = reps["2"].find("d:SegmentTemplate", NS)
    assert video_template is not None
    assert audio_template is not None
    assert (video_template.get("timescale"), video_template.get("duration")) == ("15360", "30720")
    assert (audio_template.get("timescale"), audio_template.get("duration")) == ("48000", "96000")


def test_top_level_and_sets() -> None:
    root = _rewrite(duration=Fraction(5), title="demo")
    assert root.get("mediaPresentationDuration") == "PT5S"
    assert root.find("d:ServiceDescription", NS) is None
    title = root.find("d:ProgramInformation/d:Title", NS)
    assert title is not None
    assert title.text == "demo"
    sets = root.findall(".//d:AdaptationSet", NS)
    assert all("bitstreamSwitching" not in s.attrib for s in sets)
    assert sets[0].get("frameRate") == "30"
    assert sets[0].get("par") == "16:9"


def test_rewritten_golden_mpd_validates() -> None:
    if find_schema() is None:
        pytest.skip("../shared/dash-schema is absent")
    assert validate_mpd(
        rewrite_mpd(
            FFMPEG_MPD,
            stats=STATS,
            fps=Fraction(30000, 1001),
            segment=Fraction(2002, 1000),
            duration=Fraction(5),
            title="t",
        )
    )


def test_ntsc_template_duration_in_track_ticks() -> None:
    stats = {**STATS, "0": _stats("vide", "avc1.640016", 30000, 320, 180, 1)}
    root = _rewrite(stats=stats, fps=Fraction(30000, 1001), segment=Fraction(2002, 1000))
    rep = root.find(".//d:Representation[@id='0']", NS)
    assert rep is not None
    assert rep.get("frameRate") == "30000/1001"
    template = rep.find("d:SegmentTemplate", NS)
    assert template is not None
    assert (template.get("timescale"), template.get("duration")) == ("30000", "60060")


def test_missing_representation_is_an_error() -> None:
    with pytest.raises(ManifestError, match="no segments on disk"):
        _rewrite(stats={"0": STATS["0"]})
    with pytest.raises(ManifestError, match="lacks Representations"):
        _rewrite(stats={**STATS, "7": STATS["0"]})
    with pytest.raises(ManifestError, match="not XML"):
        rewrite_mpd(b"<MPD", stats=STATS, fps=Fraction(30), segment=Fraction(2), duration=Fraction(5))


def test_invalid_mpd_is_reported() -> None:
    if find_schema() is None:
        pytest.skip("../shared/dash-schema is absent")
    bad = FFMPEG_MPD.replace(b'bandwidth="400000"', b'bandwidth="fast"')
    with pytest.raises(ManifestError, match="bandwidth"):
        validate_mpd(bad)


def test_absent_schema_only_warns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("origin.mpd.find_schema", lambda: None)
    assert validate_mpd(FFMPEG_MPD) is False
    assert "not validated" in caplog.text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (Fraction(5), "PT5S"),
        (Fraction(9, 2), "PT4.5S"),
        (Fraction(64), "PT1M4S"),
        (Fraction(3600), "PT1H0M0S"),
        (Fraction(1, 30), "PT0.033S"),
        (60.25, "PT1M0.25S"),
    ],
)
def test_iso_duration(seconds: Fraction | float, text: str) -> None:
    assert iso_duration(seconds) == text


def test_format_frame_rate() -> None:
    assert format_frame_rate(Fraction(25)) == "25"
    assert format_frame_rate(Fraction(24000, 1001)) == "24000/1001"


def test_measure_representation_on_real_segments(packaged_store: Path) -> None:
    folder = packaged_store / "demo"
    chunks = [p.read_bytes() for p in sorted(folder.glob("chunk-0-*.m4s"))]
    stats = measure_representation((folder / "init-0.m4s").read_bytes(), chunks)
    assert stats.chunk_durations == (Fraction(2), Fraction(2), Fraction(1))
    assert stats.duration == 5
    assert stats.peak_bandwidth == max(
        -(-len(c) * 8 // int(d)) for c, d in zip(chunks, (2, 2, 1), strict=True)
    )
    with pytest.raises(ManifestError, match="no media segments"):
        measure_representation((folder / "init-0.m4s").read_bytes(), [])
