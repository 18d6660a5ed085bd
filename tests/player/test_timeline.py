"""Segment lists from templates, timelines, lists and sidx: tables of URLs, numbers and times."""

from __future__ import annotations

from dataclasses import replace

import pytest

from player.errors import IndexRequired, ManifestError
from player.mpd import Manifest, parse_mpd
from player.sidx import SidxReference
from player.timeline import expand_template, index_segment, init_segment, segments


def manifest(rep_body: str, *, period: str = "", **attrs: str) -> Manifest:
    head = " ".join(
        f'{k}="{v}"' for k, v in {"type": "static", "mediaPresentationDuration": "PT10S", **attrs}.items()
    )
    xml = (f'<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" {head}><Period {period}><AdaptationSet mimeType="video/mp4">'
           f'<Representation id="v1" bandwidth="500000">{rep_body}</Representation></AdaptationSet></Period></MPD>')  # fmt: skip
    return parse_mpd(xml.encode(), base_url="http://cdn.test/videos/demo/manifest.mpd")


def segs(m: Manifest, **kw: object) -> list[tuple[int, float, float, str]]:
    period = m.periods[0]
    rep = period.adaptation_sets[0].representations[0]
    return [(s.number, s.start, s.duration, s.url.rsplit("/", 1)[-1]) for s in segments(m, period, rep, **kw)]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("$Number$.m4s", "7.m4s"),
        ("$Number%05d$.m4s", "00007.m4s"),
        ("seg-$Number%3d$", "seg-007"),
        ("$RepresentationID$/$Bandwidth$/$Time$", "v1/500000/1400"),
        ("a$$b$$$Number$", "a$b$7"),
        ("plain.mp4", "plain.mp4"),
    ],
)
def test_expand_template(template: str, expected: str) -> None:
    assert (
        expand_template(template, representation_id="v1", bandwidth=500000, number=7, time=1400) == expected
    )


@pytest.mark.parametrize("template", ["$Number", "$Bandwidth%/x", "$Foo$", "$Number%0xd$"])
def test_expand_template_errors(template: str) -> None:
    with pytest.raises(ManifestError, match="SegmentTemplate@media"):
        expand_template(template, representation_id="v1", bandwidth=1, number=1, time=0)


def test_number_template_with_duration() -> None:
    m = manifest(
        '<SegmentTemplate media="chunk-$Number%05d$.m4s" initialization="init.mp4" duration="4" startNumber="3"/>'
    )
    assert segs(m) == [
        (3, 0.0, 4.0, "chunk-00003.m4s"),
        (4, 4.0, 4.0, "chunk-00004.m4s"),
        (5, 8.0, 2.0, "chunk-00005.m4s"),
    ]
    period = m.periods[0]
    init = init_segment(period, period.adaptation_sets[0].representations[0])
    assert init is not None
    assert init.url == "http://cdn.test/videos/demo/init.mp4"


def test_time_template_with_timeline_repeat_to_period_end() -> None:
    m = manifest('<SegmentTemplate media="t$Time$.m4s" timescale="1000"><SegmentTimeline>'
                 '<S t="0" d="2000" r="1"/><S d="3000" r="-1"/></SegmentTimeline></SegmentTemplate>')  # fmt: skip
    assert segs(m) == [(1, 0.0, 2.0, "t0.m4s"), (2, 2.0, 2.0, "t2000.m4s"), (3, 4.0, 3.0, "t4000.m4s"),
                       (4, 7.0, 3.0, "t7000.m4s")]  # fmt: skip


def test_timeline_r_minus_one_stops_at_next_t_and_pto() -> None:
    m = manifest('<SegmentTemplate media="$Number$-$Time$" timescale="10" presentationTimeOffset="100" startNumber="0">'
                 '<SegmentTimeline><S t="100" d="20" r="-1"/><S t="160" d="40"/></SegmentTimeline></SegmentTemplate>')  # fmt: skip
    assert segs(m) == [
        (0, 0.0, 2.0, "0-100"),
        (1, 2.0, 2.0, "1-120"),
        (2, 4.0, 2.0, "2-140"),
        (3, 6.0, 4.0, "3-160"),
    ]


def test_segment_list_with_ranges() -> None:
    m = manifest('<BaseURL>media.mp4</BaseURL><SegmentList duration="5"><Initialization range="0-99"/>'
                 '<SegmentURL mediaRange="100-199"/><SegmentURL media="b.mp4" mediaRange="0-9"/></SegmentList>')  # fmt: skip
    period = m.periods[0]
    rep = period.adaptation_sets[0].representations[0]
    listed = segments(m, period, rep)
    assert [(s.number, s.start, s.url.rsplit("/", 1)[-1], s.byte_range) for s in listed] == [
        (1, 0.0, "media.mp4", (100, 199)), (2, 5.0, "b.mp4", (0, 9))]  # fmt: skip
    init = init_segment(period, rep)
    assert init is not None
    assert init.byte_range == (0, 99)
    assert init.url.endswith("/media.mp4")


def test_segment_base_needs_sidx_then_uses_it() -> None:
    m = manifest('<BaseURL>v.mp4</BaseURL><SegmentBase indexRange="800-899" timescale="1000" presentationTimeOffset="0">'
                 '<Initialization range="0-799"/></SegmentBase>')  # fmt: skip
    period = m.periods[0]
    rep = period.adaptation_sets[0].representations[0]
    with pytest.raises(IndexRequired):
        segments(m, period, rep)
    index = index_segment(period, rep)
    assert index is not None
    assert index.byte_range == (800, 899)
    assert index.url.endswith("/v.mp4")
    refs = [SidxReference((900, 1999), 0.0, 2.0), SidxReference((2000, 2999), 2.0, 2.0)]
    listed = segments(m, period, rep, sidx=refs)
    assert [(s.number, s.start, s.byte_range) for s in listed] == [
        (1, 0.0, (900, 1999)),
        (2, 2.0, (2000, 2999)),
    ]


def test_multi_period_numbers_and_starts() -> None:
    xml = ('<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT8S">'
           '<Period duration="PT4S"><BaseURL>p1/</BaseURL><AdaptationSet><SegmentTemplate media="$Number$.m4s" duration="2"/>'
           '<Representation id="a" bandwidth="1"/></AdaptationSet></Period>'
           '<Period><BaseURL>p2/</BaseURL><AdaptationSet><SegmentTemplate media="$Number$.m4s" duration="2" startNumber="3"/>'
           '<Representation id="a" bandwidth="1"/></AdaptationSet></Period></MPD>')  # fmt: skip
    m = parse_mpd(xml.encode(), base_url="http://h/x/m.mpd")
    out = [
        (s.number, s.start, s.url)
        for p in m.periods
        for s in segments(m, p, p.adaptation_sets[0].representations[0])
    ]
    assert out == [(1, 0.0, "http://h/x/p1/1.m4s"), (2, 2.0, "http://h/x/p1/2.m4s"),
                   (3, 4.0, "http://h/x/p2/3.m4s"), (4, 6.0, "http://h/x/p2/4.m4s")]  # fmt: skip


def test_live_template_lists_available_segments() -> None:
    m = manifest('<SegmentTemplate media="$Number$.m4s" duration="2" startNumber="1"/>', type="dynamic",
                 availabilityStartTime="2024-01-01T00:00:00Z", timeShiftBufferDepth="PT10S", mediaPresentationDuration="PT1000S")  # fmt: skip
    m = replace(m, periods=(replace(m.periods[0], duration=None),))  # an open-ended live period
    ast = m.availability_start_time
    assert ast is not None
    listed = segs(m, now=ast + 61.0)  # live edge 61 s: segments ending by 61 s and after 61 - 10 s
    assert [n for n, *_ in listed] == [26, 27, 28, 29, 30]
    with pytest.raises(ManifestError, match="now="):
        segs(m)


def test_too_many_segments_is_refused() -> None:
    m = manifest('<SegmentTemplate media="$Number$" timescale="1"><SegmentTimeline><S t="0" d="1" r="999999999"/>'
                 "</SegmentTimeline></SegmentTemplate>")  # fmt: skip
    with pytest.raises(ManifestError, match="more than"):
        segs(m)
