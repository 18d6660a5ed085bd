"""Ladder parsing, capping at the source and frame sizes with one display aspect (origin.ladder)."""

from __future__ import annotations

from fractions import Fraction

import pytest

from origin.errors import ConfigError, LadderError
from origin.ladder import DEFAULT_LADDER, Rung, format_bitrate, parse_bitrate, parse_ladder, plan_renditions


@pytest.mark.parametrize(
    ("text", "bps"),
    [
        ("5M", 5_000_000),
        ("1200k", 1_200_000),
        ("1.2M", 1_200_000),
        ("800000", 800_000),
        ("300K", 300_000),
        ("0.6m", 600_000),
    ],
)
def test_parse_bitrate(text: str, bps: int) -> None:
    assert parse_bitrate(text) == bps


@pytest.mark.parametrize("text", ["", "fast", "5G", "-1M", "1,2M", "M"])
def test_parse_bitrate_rejects(text: str) -> None:
    with pytest.raises(LadderError, match="bitrate"):
        parse_bitrate(text)


@pytest.mark.parametrize(("bps", "text"), [(5_000_000, "5M"), (1_200_000, "1200k"), (1500, "1500")])
def test_format_bitrate(bps: int, text: str) -> None:
    assert format_bitrate(bps) == text


def test_default_ladder_is_the_issue_ladder() -> None:
    assert [(r.height, r.bitrate) for r in DEFAULT_LADDER.rungs] == [
        (1080, 5_000_000),
        (720, 3_000_000),
        (480, 1_200_000),
        (360, 600_000),
        (240, 300_000),
    ]
    assert DEFAULT_LADDER.spec() == "1080p:5M,720p:3M,480p:1200k,360p:600k,240p:300k"


def test_parse_ladder_sorts_highest_first_and_accepts_boxes() -> None:
    ladder = parse_ladder(" 480p:1200k, 1280x720:3M ,1080p:5M")
    assert ladder.rungs == (Rung(1080, 5_000_000), Rung(720, 3_000_000, max_width=1280), Rung(480, 1_200_000))
    assert parse_ladder(ladder.spec()) == ladder


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "empty"),
        (",", "empty"),
        ("720:3M", "HEIGHTp:RATE"),
        ("720p", "HEIGHTp:RATE"),
        ("720p:3M,720p:2M", "same size"),
        ("720p:1k", "out of range"),
        ("0p:1M", "out of range"),
        ("99999p:1M", "out of range"),
        ("720p:3Q", "HEIGHTp:RATE"),
    ],
)
def test_parse_ladder_rejects(text: str, match: str) -> None:
    with pytest.raises(LadderError, match=match) as info:
        parse_ladder(text)
    assert isinstance(info.value, ConfigError)
    assert isinstance(info.value, ValueError)


# (source width, height, SAR) -> expected (width, height) per rendition of the default ladder
PLANS = [
    ((1920, 1080, Fraction(1)), [(1920, 1080), (1280, 720), (854, 480), (640, 360), (426, 240)]),
    ((1280, 720, Fraction(1)), [(1280, 720), (854, 480), (640, 360), (426, 240)]),
    ((640, 480, Fraction(1)), [(640, 480), (480, 360), (320, 240)]),
    ((720, 576, Fraction(64, 45)), [(720, 480), (640, 360), (426, 240)]),
    ((1080, 1920, Fraction(1)), [(608, 1080), (404, 720), (270, 480), (202, 360), (134, 240)]),
    ((320, 180, Fraction(1)), [(320, 180)]),
    ((3840, 1600, Fraction(1)), [(2592, 1080), (1728, 720), (1152, 480), (864, 360), (576, 240)]),
]


@pytest.mark.parametrize(("source", "sizes"), PLANS)
def test_plan_caps_and_keeps_one_display_aspect(
    source: tuple[int, int, Fraction], sizes: list[tuple[int, int]]
) -> None:
    width, height, sar = source
    plans = plan_renditions(DEFAULT_LADDER, width=width, height=height, sar=sar)
    assert [(p.width, p.height) for p in plans] == sizes
    source_dar = width * sar / height
    for p in plans:
        assert p.display_aspect == source_dar  # exact: the dash muxer compares them
        assert p.width % 2 == 0
        assert p.height % 2 == 0
        assert p.height <= height
        assert p.width <= width
        assert abs(p.sar - 1) < Fraction(1, 20) or sar != 1  # square-ish pixels for square sources


def test_854x480_gets_the_sar_that_keeps_16_9() -> None:
    plans = plan_renditions(DEFAULT_LADDER, width=1920, height=1080)
    p480 = next(p for p in plans if p.height == 480)
    assert p480.sar == Fraction(1280, 1281)
    assert p480.display_aspect == Fraction(16, 9)


def test_plan_keeps_one_rung_at_source_height_with_lowest_bitrate() -> None:
    plans = plan_renditions(parse_ladder("1080p:5M,720p:3M"), width=321, height=181)
    assert [(p.width, p.height, p.bitrate) for p in plans] == [(320, 180, 3_000_000)]


def test_plan_fits_boxes_and_drops_duplicates() -> None:
    plans = plan_renditions(parse_ladder("1280x720:3M,720p:2M,640x640:1M"), width=1920, height=1080)
    assert [(p.width, p.height, p.bitrate) for p in plans] == [(1280, 720, 3_000_000), (640, 360, 1_000_000)]


def test_fixture_ladder() -> None:
    plans = plan_renditions(parse_ladder("180p:400k,144p:200k"), width=320, height=180)
    assert [(p.width, p.height, p.sar) for p in plans] == [(320, 180, Fraction(1)), (256, 144, Fraction(1))]


def test_odd_aspects_snap_to_small_terms() -> None:
    plans = plan_renditions(DEFAULT_LADDER, width=641, height=361, sar=Fraction(3301, 3297))
    dar = plans[0].display_aspect
    assert dar.denominator <= 100
    assert abs(dar - Fraction(641 * 3301, 361 * 3297)) < Fraction(1, 1000)
    assert all(p.display_aspect == dar for p in plans)
    assert all(max(p.sar.numerator, p.sar.denominator) < 65536 for p in plans)


def test_plan_rejects_bad_geometry() -> None:
    with pytest.raises(LadderError):
        plan_renditions(DEFAULT_LADDER, width=0, height=1080)
