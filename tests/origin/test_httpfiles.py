"""Tables for the pure HTTP semantics of serving a file: validators, preconditions, ranges, plans."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from origin.httpfiles import (
    ByteRange,
    Conditions,
    EntityTag,
    FileKind,
    FileStat,
    Precondition,
    cache_control,
    content_type,
    evaluate_preconditions,
    file_kind,
    http_date,
    if_range_allows,
    is_valid_file_name,
    is_valid_video_id,
    make_etag,
    parse_etags,
    parse_http_date,
    parse_range,
    plan_file_response,
)

ETAG = '"abc123"'
LM = 784111777  # Sun, 06 Nov 1994 08:49:37 GMT
LM_TEXT = "Sun, 06 Nov 1994 08:49:37 GMT"
BEFORE = "Sun, 06 Nov 1994 08:49:36 GMT"
AFTER = "Sun, 06 Nov 1994 08:49:38 GMT"
STAT = FileStat(size=1000, mtime_ns=LM * 1_000_000_000 + 123, inode=42)


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 100, "full"),
        ("bytes=0-9", 100, ByteRange(0, 10, 100)),
        ("bytes=10-", 100, ByteRange(10, 100, 100)),
        ("bytes=-10", 100, ByteRange(90, 100, 100)),
        ("bytes=-1000", 100, ByteRange(0, 100, 100)),  # suffix longer than the file: all of it
        ("bytes=90-1000", 100, ByteRange(90, 100, 100)),  # last-pos past the end is clamped
        ("bytes=99-99", 100, ByteRange(99, 100, 100)),
        ("BYTES = 5 - 6", 100, ByteRange(5, 7, 100)),  # unit is case-insensitive, spaces tolerated
        ("bytes=100-", 100, "unsatisfiable"),
        ("bytes=100-200", 100, "unsatisfiable"),
        ("bytes=-0", 100, "unsatisfiable"),
        ("bytes=0-", 0, "unsatisfiable"),  # nothing is satisfiable in an empty file
        ("bytes=-5", 0, "unsatisfiable"),
        ("bytes=0-1,5-6", 100, "full"),  # several ranges: we send the whole file
        ("bytes=0-1,500-600", 100, "full"),  # one of them satisfiable: whole file
        ("bytes=200-300,400-", 100, "unsatisfiable"),  # none satisfiable: 416
        ("bytes=9-5", 100, "full"),  # invalid spec: the header is ignored
        ("bytes=abc", 100, "full"),
        ("bytes=", 100, "full"),
        ("bytes=-", 100, "full"),
        ("items=0-5", 100, "full"),  # unknown unit
        ("0-5", 100, "full"),
        ("bytes=0-5,x", 100, "full"),
        ("bytes=99999999999999999999-", 100, "full"),  # absurdly long number: invalid
    ],
)
def test_parse_range(header: str | None, size: int, expected: object) -> None:
    assert parse_range(header, size) == expected


@pytest.mark.parametrize(
    ("cond", "method", "expected"),
    [
        (Conditions(), "GET", Precondition.PROCEED),
        (Conditions(if_none_match=ETAG), "GET", Precondition.NOT_MODIFIED),
        (Conditions(if_none_match=ETAG), "HEAD", Precondition.NOT_MODIFIED),
        (Conditions(if_none_match=f"W/{ETAG}"), "GET", Precondition.NOT_MODIFIED),  # weak comparison
        (Conditions(if_none_match=f'"x", {ETAG}'), "GET", Precondition.NOT_MODIFIED),  # in a list
        (Conditions(if_none_match='"x","y"'), "GET", Precondition.PROCEED),
        (Conditions(if_none_match="*"), "GET", Precondition.NOT_MODIFIED),
        (Conditions(if_none_match="abc123"), "GET", Precondition.PROCEED),  # unquoted: malformed, no match
        (Conditions(if_none_match=ETAG), "POST", Precondition.FAILED),
        (Conditions(if_modified_since=LM_TEXT), "GET", Precondition.NOT_MODIFIED),
        (Conditions(if_modified_since=AFTER), "GET", Precondition.NOT_MODIFIED),
        (Conditions(if_modified_since=BEFORE), "GET", Precondition.PROCEED),
        (Conditions(if_modified_since="not a date"), "GET", Precondition.PROCEED),
        # If-None-Match present: If-Modified-Since is ignored (RFC 9110 §13.1.3)
        (Conditions(if_none_match='"other"', if_modified_since=AFTER), "GET", Precondition.PROCEED),
        (Conditions(if_match=ETAG), "GET", Precondition.PROCEED),
        (Conditions(if_match=f"W/{ETAG}"), "GET", Precondition.FAILED),  # If-Match compares strongly
        (Conditions(if_match='"other"'), "GET", Precondition.FAILED),
        (Conditions(if_match="*"), "GET", Precondition.PROCEED),
        (Conditions(if_unmodified_since=BEFORE), "GET", Precondition.FAILED),
        (Conditions(if_unmodified_since=LM_TEXT), "GET", Precondition.PROCEED),
        (Conditions(if_match=ETAG, if_unmodified_since=BEFORE), "GET", Precondition.PROCEED),  # IUS ignored
        (Conditions(if_match='"other"', if_none_match=ETAG), "GET", Precondition.FAILED),  # If-Match first
    ],
)
def test_evaluate_preconditions(cond: Conditions, method: str, expected: Precondition) -> None:
    assert evaluate_preconditions(method, cond, etag=ETAG, last_modified=LM) is expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('"a"', [EntityTag("a")]),
        ('W/"a", "b"', [EntityTag("a", weak=True), EntityTag("b")]),
        ('"a,b"', [EntityTag("a,b")]),  # a comma is a legal etagc
        ('"", "x"', [EntityTag(""), EntityTag("x")]),
        ("  *  ", "*"),
        ('bogus, "ok"', [EntityTag("ok")]),
        ("", []),
    ],
)
def test_parse_etags(header: str, expected: object) -> None:
    assert parse_etags(header) == expected


@pytest.mark.parametrize(
    ("if_range", "expected"),
    [
        (None, True),
        (ETAG, True),
        ('"other"', False),
        (f"W/{ETAG}", False),  # a weak validator never satisfies If-Range
        (LM_TEXT, True),
        (AFTER, False),
        ("garbage", False),
    ],
)
def test_if_range_allows(if_range: str | None, expected: bool) -> None:
    assert if_range_allows(if_range, etag=ETAG, last_modified=LM) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (LM_TEXT, LM),
        ("Sunday, 06-Nov-94 08:49:37 GMT", LM),  # RFC 850
        ("Sun Nov  6 08:49:37 1994", LM),  # asctime
        ("", None),
        ("yesterday", None),
    ],
)
def test_parse_http_date(text: str, expected: int | None) -> None:
    assert parse_http_date(text) == expected


def test_http_date_round_trips() -> None:
    assert http_date(LM) == LM_TEXT
    assert parse_http_date(http_date(1_700_000_000)) == 1_700_000_000


@pytest.mark.parametrize(
    ("name", "kind", "ctype"),
    [
        ("manifest.mpd", FileKind.MANIFEST, "application/dash+xml"),
        ("init-stream0.m4s", FileKind.INIT, "video/mp4"),
        ("init-0.mp4", FileKind.INIT, "video/mp4"),
        ("chunk-stream0-00001.m4s", FileKind.MEDIA, "video/iso.segment"),
        ("seg-1.m4a", FileKind.MEDIA, "video/iso.segment"),
    ],
)
def test_kinds_and_content_types(name: str, kind: FileKind, ctype: str) -> None:
    assert file_kind(name) is kind
    assert content_type(kind) == ctype


@pytest.mark.parametrize("name", ["package.json", "notes.txt", "manifest", "x.mpd.bak", "run.sh"])
def test_unknown_extensions_are_not_served(name: str) -> None:
    assert file_kind(name) is None
    assert not is_valid_file_name(name)


@pytest.mark.parametrize(
    "text",
    [
        "..",
        ".",
        "",
        ".tmp-abc",
        ".uploads",
        "../etc",
        "a/b",
        "a\\b",
        "a\x00b",
        "%2e%2e",
        "a b",
        "/etc",
        "x" * 65,
        "é",
    ],
)
def test_unsafe_video_ids_are_rejected(text: str) -> None:
    assert not is_valid_video_id(text)


@pytest.mark.parametrize(
    "name",
    [
        "../manifest.mpd",
        "..%2fmanifest.mpd",
        ".hidden.m4s",
        "a/b.m4s",
        "a\\b.m4s",
        "a\x00.m4s",
        "/etc.mpd",
        "%2e%2e.mpd",
        ".mpd",
        "x.m4s/",
    ],
)
def test_unsafe_file_names_are_rejected(name: str) -> None:
    assert not is_valid_file_name(name)


@pytest.mark.parametrize("text", ["demo", "Big_Buck.Bunny-2", "a", "_x", "x" * 64])
def test_safe_video_ids_are_accepted(text: str) -> None:
    assert is_valid_video_id(text)


def test_cache_control_policy() -> None:
    assert cache_control(FileKind.MANIFEST, manifest_max_age=2, chunk_max_age=9) == "public, max-age=2"
    assert (
        cache_control(FileKind.MEDIA, manifest_max_age=2, chunk_max_age=9) == "public, max-age=9, immutable"
    )
    assert cache_control(FileKind.INIT, manifest_max_age=2, chunk_max_age=9) == "public, max-age=9, immutable"


def test_etag_is_strong_and_changes_with_each_component() -> None:
    base = make_etag(STAT)
    assert base.startswith('"')
    assert base.endswith('"')
    assert not base.startswith("W/")
    assert make_etag(FileStat(1001, STAT.mtime_ns, 42)) != base
    assert make_etag(FileStat(1000, STAT.mtime_ns + 1, 42)) != base  # ns resolution
    assert make_etag(FileStat(1000, STAT.mtime_ns, 43)) != base  # a republished file has a new inode
    assert make_etag(FileStat(1000, STAT.mtime_ns, 42)) == base


def _plan(method: str = "GET", kind: FileKind = FileKind.MEDIA, stat: FileStat = STAT, **cond: str):  # type: ignore[no-untyped-def]
    return plan_file_response(
        method, Conditions(**cond), stat, kind, manifest_max_age=2, chunk_max_age=31536000
    )


def test_plan_full_get() -> None:
    plan = _plan()
    headers = dict(plan.headers)
    assert plan.status == 200
    assert plan.body == ByteRange(0, 1000, 1000)
    assert headers["content-length"] == "1000"
    assert headers["content-type"] == "video/iso.segment"
    assert headers["accept-ranges"] == "bytes"
    assert headers["etag"] == make_etag(STAT)
    assert headers["last-modified"] == LM_TEXT
    assert headers["cache-control"] == "public, max-age=31536000, immutable"


def test_plan_head_has_the_same_headers_and_no_body() -> None:
    get, head = _plan("GET"), _plan("HEAD")
    assert head.status == 200
    assert head.body is None
    assert head.headers == get.headers


def test_plan_not_modified_repeats_validators_without_entity_headers() -> None:
    plan = _plan(if_none_match=make_etag(STAT))
    headers = dict(plan.headers)
    assert plan.status == 304
    assert plan.body is None
    assert plan.text == b""
    assert headers["etag"] == make_etag(STAT)
    assert headers["cache-control"] == "public, max-age=31536000, immutable"
    assert "content-length" not in headers
    assert "content-type" not in headers


def test_plan_single_range() -> None:
    plan = _plan(range="bytes=100-199")
    headers = dict(plan.headers)
    assert plan.status == 206
    assert plan.body == ByteRange(100, 200, 1000)
    assert headers["content-range"] == "bytes 100-199/1000"
    assert headers["content-length"] == "100"


def test_plan_unsatisfiable_range() -> None:
    plan = _plan(range="bytes=1000-")
    headers = dict(plan.headers)
    assert plan.status == 416
    assert plan.body is None
    assert plan.text
    assert headers["content-range"] == "bytes */1000"
    assert headers["content-length"] == str(len(plan.text))


def test_plan_head_ignores_range() -> None:
    assert _plan("HEAD", range="bytes=0-9").status == 200


def test_plan_if_range_mismatch_sends_the_whole_file() -> None:
    assert _plan(range="bytes=0-9", if_range='"stale"').status == 200
    assert _plan(range="bytes=0-9", if_range=make_etag(STAT)).status == 206
    assert _plan(range="bytes=0-9", if_range=LM_TEXT).status == 206


def test_plan_precondition_failed() -> None:
    plan = _plan(if_match='"stale"')
    assert plan.status == 412
    assert plan.body is None
    assert dict(plan.headers)["cache-control"] == "no-store"


def test_plan_manifest_gets_short_max_age_and_dash_type() -> None:
    headers = dict(_plan(kind=FileKind.MANIFEST).headers)
    assert headers["cache-control"] == "public, max-age=2"
    assert headers["content-type"] == "application/dash+xml"


def test_plan_empty_file() -> None:
    empty = FileStat(0, STAT.mtime_ns, 1)
    plan = _plan(stat=empty)
    assert plan.status == 200
    assert plan.body is None
    assert dict(plan.headers)["content-length"] == "0"
    assert _plan(stat=empty, range="bytes=0-").status == 416


@settings(max_examples=300, deadline=None)
@given(header=st.text(max_size=60), size=st.integers(min_value=0, max_value=10**12))
def test_parse_range_fuzz_never_raises_and_stays_in_bounds(header: str, size: int) -> None:
    result = parse_range(header, size)
    if isinstance(result, ByteRange):
        assert 0 <= result.start < result.stop <= size


@settings(max_examples=200, deadline=None)
@given(header=st.from_regex(r"bytes=[0-9, -]{0,20}", fullmatch=True), size=st.integers(0, 5000))
def test_parse_range_fuzz_range_like_headers(header: str, size: int) -> None:
    result = parse_range(header, size)
    assert result in ("full", "unsatisfiable") or isinstance(result, ByteRange)


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=80))
def test_header_parsers_fuzz_never_raise(text: str) -> None:
    parse_etags(text)
    parse_http_date(text)
    if_range_allows(text, etag=ETAG, last_modified=LM)
    evaluate_preconditions(
        "GET",
        Conditions(if_none_match=text, if_match=text, if_modified_since=text),
        etag=ETAG,
        last_modified=LM,
    )
