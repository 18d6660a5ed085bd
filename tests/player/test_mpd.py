"""MPD parser: golden parsing of the standard's examples, targeted tables, error messages, fuzzing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from player.errors import IndexRequired, ManifestError, PlayerError
from player.mpd import (
    Manifest,
    Period,
    Representation,
    SegmentBase,
    SegmentList,
    SegmentTemplate,
    UtcTiming,
    parse_mpd,
)
from player.mpd_xml import parse_duration, parse_frame_rate
from player.timeline import Segment, init_segment, segments
from tests.conftest import SHARED

RESOURCES = Path(__file__).parent / "resources"
EXAMPLES = sorted((SHARED / "dash-schema" / "examples").glob("*.mpd"))
NOW = 1_700_000_000.0  # a fixed instant for live examples
# Fuzzing profiles: fast by default, PLAYER_FUZZ=deep for a long run (thousands of documents).
FUZZ_EXAMPLES = 5000 if os.environ.get("PLAYER_FUZZ") == "deep" else 250
# Examples whose video templates are written as `$Bandwidth%/...` in the standard (an unterminated identifier).
BROKEN_TEMPLATES = {"example_G2.mpd", "example_G9.mpd"}


def mpd(body: str, **attrs: str) -> bytes:
    head = " ".join(
        f'{k}="{v}"' for k, v in {"type": "static", "mediaPresentationDuration": "PT10S", **attrs}.items()
    )
    return f'<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" minBufferTime="PT2S" {head}>{body}</MPD>'.encode()


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_standard_example_parses(path: Path) -> None:
    manifest = parse_mpd(path.read_bytes(), base_url="http://example.test/dash/manifest.mpd")
    assert manifest.periods, "every example has at least one period"
    for period in manifest.periods:
        for aset in period.adaptation_sets:
            for rep in aset.representations:
                assert rep.bandwidth >= 0
                assert rep.base_url.startswith(("http://", "https://"))
                segs = _segments_or_error(manifest, period, rep)
                if isinstance(segs, IndexRequired):
                    assert isinstance(rep.segment_info, SegmentBase)
                    continue
                if isinstance(segs, ManifestError):
                    assert path.name in BROKEN_TEMPLATES
                    assert segs.element == "SegmentTemplate"
                    continue
                assert all(s.duration >= 0 for s in segs)
                assert [s.start for s in segs] == sorted(s.start for s in segs)


def _segments_or_error(
    manifest: Manifest, period: Period, rep: Representation
) -> list[Segment] | PlayerError:
    try:
        return segments(manifest, period, rep, now=NOW)
    except (IndexRequired, ManifestError) as exc:
        return exc


def test_examples_are_all_there() -> None:
    assert len(EXAMPLES) >= 30


@pytest.mark.parametrize(
    ("name", "bandwidths"),
    [
        ("ffmpeg_number.mpd", [200000]),
        ("ffmpeg_timeline.mpd", [100000, 200000]),
    ],  # one AdaptationSet per stream vs one
)
def test_ffmpeg_dash_output_golden(name: str, bandwidths: list[int]) -> None:
    manifest = parse_mpd((RESOURCES / name).read_bytes(), base_url="http://cdn.test/videos/demo/manifest.mpd")
    ladder = manifest.video_ladder()
    assert [r.bandwidth for r in ladder] == bandwidths
    assert manifest.media_presentation_duration == 6.0
    segs = segments(manifest, manifest.periods[0], ladder[0])
    assert len(segs) == 3
    assert sum(s.duration for s in segs) == pytest.approx(6.0, abs=0.1)
    assert segs[0].url.startswith("http://cdn.test/videos/demo/")


def test_general_example_fields() -> None:
    manifest = parse_mpd((EXAMPLES[0].parent / "example_G11.mpd").read_bytes(), base_url="http://h/a/m.mpd")
    assert manifest.type == "static"
    assert manifest.media_presentation_duration == 704
    assert manifest.min_buffer_time == 1.5
    assert manifest.remote_periods == 1
    first, second = manifest.periods
    assert (first.start, first.duration, second.start, second.duration) == (0, 250, 250, 344)
    video = first.adaptation_set("video")
    assert video is not None
    assert video.representations[0].frame_rate == 24
    info = video.representations[0].segment_info
    assert isinstance(info, SegmentTemplate)
    assert info.timescale == 12288
    assert info.presentation_time_offset == 1024


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        ('contentType="audio"', "audio"),
        ('mimeType="video/mp4"', "video"),
        ('mimeType="application/ttml+xml"', "text"),
        ('codecs="mp4a.40.2"', "audio"),
        ('codecs="hev1.1.6.L93"', "video"),
        ('codecs="stpp"', "text"),
        ("", "other"),
    ],
)
def test_content_type_inference(attrs: str, expected: str) -> None:
    xml = mpd(
        f'<Period><AdaptationSet {attrs}><Representation id="r" bandwidth="1"/></AdaptationSet></Period>'
    )
    assert parse_mpd(xml, base_url="http://h/").periods[0].adaptation_sets[0].content_type == expected


def test_base_url_resolved_at_every_level() -> None:
    xml = mpd(
        "<BaseURL>http://cdn.test/root/</BaseURL><Period><BaseURL>p/</BaseURL>"
        "<AdaptationSet><BaseURL>a/</BaseURL><Representation id='r' bandwidth='1'><BaseURL>r.mp4</BaseURL>"
        "</Representation></AdaptationSet></Period>"
    )
    rep = (
        parse_mpd(xml, base_url="http://origin.test/x/m.mpd").periods[0].adaptation_sets[0].representations[0]
    )
    assert rep.base_url == "http://cdn.test/root/p/a/r.mp4"


def test_relative_base_urls_join_the_document_url() -> None:
    xml = mpd(
        "<Period><AdaptationSet><BaseURL>../v/</BaseURL><Representation id='r' bandwidth='1'/></AdaptationSet></Period>"
    )
    rep = parse_mpd(xml, base_url="http://h/a/b/m.mpd").periods[0].adaptation_sets[0].representations[0]
    assert rep.base_url == "http://h/a/v/"


def test_segment_template_inheritance() -> None:
    xml = mpd(
        "<Period><SegmentTemplate media='$RepresentationID$/$Number$.m4s' timescale='10'/>"
        "<AdaptationSet><SegmentTemplate duration='20' startNumber='5'/>"
        "<Representation id='v1' bandwidth='1'><SegmentTemplate initialization='v1/init.mp4'/></Representation>"
        "</AdaptationSet></Period>"
    )
    info = parse_mpd(xml, base_url="http://h/").periods[0].adaptation_sets[0].representations[0].segment_info
    assert info == SegmentTemplate(media="$RepresentationID$/$Number$.m4s", initialization="v1/init.mp4",
                                   timescale=10, duration=20, start_number=5)  # fmt: skip


def test_segment_list_inherits_initialization_from_period() -> None:
    manifest = parse_mpd((EXAMPLES[0].parent / "example_G4.mpd").read_bytes(), base_url="http://h/")
    info = manifest.periods[0].adaptation_sets[0].representations[0].segment_info
    assert isinstance(info, SegmentList)
    assert len(info.urls) == 3
    assert info.duration == 10
    assert info.initialization is not None
    assert info.initialization.source_url == "seg-m-init.mp4"


@pytest.mark.parametrize(
    ("fragment", "element", "attribute"),
    [
        ("<SegmentTemplate media='x' duration='abc'/>", "SegmentTemplate", "duration"),
        ("<SegmentTemplate media='x' timescale='0'/>", "SegmentTemplate", "timescale"),
        ("<SegmentBase indexRange='9-2'/>", "SegmentBase", "indexRange"),
        (
            "<SegmentTemplate media='x'><SegmentTimeline><S t='0'/></SegmentTimeline></SegmentTemplate>",
            "S",
            "d",
        ),
        (
            "<SegmentTemplate media='x'><SegmentTimeline><S d='1' r='x'/></SegmentTimeline></SegmentTemplate>",
            "S",
            "r",
        ),
    ],
)
def test_errors_name_element_and_attribute(fragment: str, element: str, attribute: str) -> None:
    xml = mpd(
        f"<Period><AdaptationSet><Representation id='r' bandwidth='1'>{fragment}</Representation></AdaptationSet></Period>"
    )
    with pytest.raises(ManifestError) as info:
        parse_mpd(xml, base_url="http://h/")
    assert (info.value.element, info.value.attribute) == (element, attribute)
    assert str(info.value).startswith(f"{element}@{attribute}: ")


def test_duration_error_message() -> None:
    xml = mpd("<Period><AdaptationSet><Representation id='r' bandwidth='1'><SegmentTemplate media='x' duration='abc'/>"
              "</Representation></AdaptationSet></Period>")  # fmt: skip
    with pytest.raises(ManifestError, match=r"SegmentTemplate@duration: 'abc' is not a non-negative integer"):
        parse_mpd(xml, base_url="http://h/")


def test_utc_timing_in_document_order() -> None:
    xml = mpd(
        "<Period/><UTCTiming schemeIdUri='urn:mpeg:dash:utc:http-head:2014' value='https://a/t https://b/t'/>"
        "<UTCTiming schemeIdUri='urn:mpeg:dash:utc:direct:2014' value='2024-01-31T12:00:00Z'/>"
        "<UTCTiming schemeIdUri='urn:mpeg:dash:utc:ntp:2014' value='pool.ntp.org'/>"
    )
    assert parse_mpd(xml, base_url="http://h/").utc_timing == (
        UtcTiming("urn:mpeg:dash:utc:http-head:2014", "https://a/t https://b/t"),
        UtcTiming("urn:mpeg:dash:utc:direct:2014", "2024-01-31T12:00:00Z"),
        UtcTiming(
            "urn:mpeg:dash:utc:ntp:2014", "pool.ntp.org"
        ),  # kept: the clock sync skips what it cannot ask
    )
    assert parse_mpd(mpd("<Period/>"), base_url="http://h/").utc_timing == ()


def test_utc_timing_of_the_standard_examples() -> None:
    g20 = parse_mpd((EXAMPLES[0].parent / "example_G20.mpd").read_bytes(), base_url="http://h/")
    # only the MPD's own children: the one inside ProducerReferenceTime is not a time source of the MPD
    assert g20.utc_timing == (UtcTiming("urn:mpeg:dash:utc:http-xsdate:2014", "http://time.akamai.com"),)
    g14 = parse_mpd((EXAMPLES[0].parent / "example_G14.mpd").read_bytes(), base_url="http://h/")
    assert g14.utc_timing == (UtcTiming("urn:mpeg:dash:utc:http-xsdate:2014", "https://example.com/iso"),)


@pytest.mark.parametrize(
    ("element", "attribute"),
    [("<UTCTiming value='http://t/'/>", "schemeIdUri"), ("<UTCTiming schemeIdUri='urn:x'/>", "value")],
)
def test_utc_timing_attributes_are_required(element: str, attribute: str) -> None:
    with pytest.raises(ManifestError, match=rf"^UTCTiming@{attribute}: is required") as info:
        parse_mpd(mpd(f"<Period/>{element}"), base_url="http://h/")
    assert (info.value.element, info.value.attribute) == ("UTCTiming", attribute)


@pytest.mark.parametrize(
    ("xml", "match"),
    [
        (b"<MPD", "not well-formed"),
        (b"<html/>", "root element is 'html'"),
        (b'<!DOCTYPE MPD [<!ENTITY a "b">]><MPD/>', "DOCTYPE"),
        (b'<MPD type="live"/>', "MPD@type"),
        (
            b'<MPD><Period><AdaptationSet><Representation id="r"/></AdaptationSet></Period></MPD>',
            "Representation@bandwidth",
        ),
        (b'<MPD mediaPresentationDuration="10s"/>', "MPD@mediaPresentationDuration"),
    ],
)
def test_bad_documents(xml: bytes, match: str) -> None:
    with pytest.raises(ManifestError, match=match):
        parse_mpd(xml, base_url="http://h/")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("PT2S", 2),
        ("PT1H2M3.5S", 3723.5),
        ("P1DT1S", 86401),
        ("PT0.5S", 0.5),
        ("PT384015H43M16.234S", 1382456596.234),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["2S", "PT", "P", "PTS", "PT1.S2"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="xs:duration"):
        parse_duration(text)


def test_frame_rates() -> None:
    assert parse_frame_rate("30000/1001") == pytest.approx(29.97, abs=0.01)
    assert parse_frame_rate("25") == 25


def test_multi_period_starts_chain() -> None:
    xml = mpd(
        "<Period duration='PT4S'/><Period duration='PT6S'/><Period/>", mediaPresentationDuration="PT12S"
    )
    manifest = parse_mpd(xml, base_url="http://h/")
    assert [(p.start, p.duration) for p in manifest.periods] == [(0, 4), (4, 6), (10, 2)]


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_fuzz_bytes_raise_only_manifest_error(data: bytes) -> None:
    try:
        parse_mpd(data, base_url="http://h/")
    except ManifestError:
        pass


_TAGS = st.sampled_from(["Period", "AdaptationSet", "Representation", "SegmentTemplate", "SegmentTimeline", "S",
                         "SegmentList", "SegmentURL", "SegmentBase", "BaseURL", "Initialization",
                         "UTCTiming"])  # fmt: skip
_ATTRS = st.dictionaries(
    st.sampled_from(
        [
            "id",
            "bandwidth",
            "duration",
            "timescale",
            "media",
            "t",
            "d",
            "r",
            "start",
            "startNumber",
            "indexRange",
            "mediaRange",
            "presentationTimeOffset",
            "initialization",
            "frameRate",
            "schemeIdUri",
            "value",
        ]
    ),  # fmt: skip
    st.sampled_from(
        ["0", "1", "-1", "abc", "PT2S", "10-2", "2-10", "$Number%05d$", "$Time$", "$$", "$Bad", "30/0", ""]
    ),
    max_size=4,
)


@st.composite
def _tree(draw: st.DrawFn, depth: int = 0) -> str:
    tag, attrs = draw(_TAGS), draw(_ATTRS)
    children = "".join(draw(_tree(depth + 1)) for _ in range(draw(st.integers(0, 3 if depth < 4 else 0))))
    attr_text = " ".join(f'{k}="{v}"' for k, v in attrs.items())
    return f"<{tag} {attr_text}>{children}</{tag}>"


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_tree())
def test_fuzz_structured_mpds_raise_only_player_errors(body: str) -> None:
    try:
        manifest = parse_mpd(mpd(body), base_url="http://h/")
    except ManifestError:
        return
    _expand_all(manifest)


def _expand_all(manifest: Manifest) -> None:
    for period in manifest.periods:
        for aset in period.adaptation_sets:
            for rep in aset.representations:
                try:
                    segments(manifest, period, rep, now=NOW)
                except (ManifestError, IndexRequired):
                    pass


def test_origin_output_golden() -> None:
    manifest = parse_mpd(
        (RESOURCES / "origin_demo.mpd").read_bytes(),
        base_url="http://video.cdn.test:8080/videos/demo/manifest.mpd",
    )
    period = manifest.periods[0]
    video, audio = period.adaptation_set("video"), period.adaptation_set("audio")
    assert video is not None
    assert audio is not None
    assert [(r.id, r.bandwidth, r.height) for r in video.ladder()] == [("1", 226344, 144), ("0", 437424, 180)]
    rep = video.ladder()[0]
    listed = segments(manifest, period, rep)
    assert [(s.number, s.start, s.duration) for s in listed] == [(1, 0.0, 2.0), (2, 2.0, 2.0), (3, 4.0, 1.0)]
    assert listed[0].url == "http://video.cdn.test:8080/videos/demo/chunk-1-00001.m4s"
    init = init_segment(period, rep)
    assert init is not None
    assert init.url == "http://video.cdn.test:8080/videos/demo/init-1.m4s"
    assert len(segments(manifest, period, audio.representations[0])) == 3
