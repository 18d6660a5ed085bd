"""`--single-file` packages (the DASH on-demand profile) with real ffmpeg encodes of tiny clips.

One fMP4 per Representation (`media-N.mp4`: ftyp moov sidx (moof mdat)*), an MPD with
SegmentBase@indexRange + Initialization@range, the same aligned keyframes and chunk durations as
the segments layout, and the origin's HTTP server answering byte ranges of those files.
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import httpx
import pytest

from cdn.asgiserver import serve_in_thread
from origin.cli import build_parser, main
from origin.errors import ConfigError, ManifestError
from origin.ffmpeg_args import EncodeSettings, build_package_argv
from origin.fmp4 import parse_init, parse_media
from origin.ladder import parse_ladder, plan_renditions
from origin.mpd import validate_mpd
from origin.mpd_single import ONDEMAND_PROFILE, parse_single_file, trim_single_file
from origin.packager import package, validate_single_file_chunks
from player.sidx import parse_sidx
from tests.conftest import assert_decodes_whole_clip, decode_all

NS = {"d": "urn:mpeg:dash:schema:mpd:2011"}
SEGMENT = 2


@pytest.fixture(scope="module")
def single_store(tmp_path_factory: pytest.TempPathFactory, clip: Path) -> Path:
    store = tmp_path_factory.mktemp("single-store")
    package(clip, video_id="one", store=store, segment_seconds=SEGMENT,
            ladder=parse_ladder("180p:400k,144p:200k"), layout="single-file")  # fmt: skip
    return store


@pytest.fixture(scope="module")
def folder(single_store: Path) -> Path:
    return single_store / "one"


def _reps(folder: Path) -> dict[str, ET.Element]:
    root = ET.fromstring((folder / "manifest.mpd").read_bytes())
    return {r.get("id", ""): r for r in root.iterfind("d:Period/d:AdaptationSet/d:Representation", NS)}


def _range(text: str | None) -> tuple[int, int]:
    assert text is not None
    first, _, last = text.partition("-")
    return int(first), int(last)


def test_one_file_per_representation_and_nothing_else(folder: Path) -> None:
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["manifest.mpd", "media-0.mp4", "media-1.mp4", "media-2.mp4", "package.json"]


def test_mpd_is_on_demand_with_segment_base_and_schema_valid(folder: Path, shared_dir: Path) -> None:
    xml = (folder / "manifest.mpd").read_bytes()
    assert validate_mpd(xml, shared_dir / "dash-schema" / "DASH-MPD.xsd")
    root = ET.fromstring(xml)
    assert root.get("profiles") == ONDEMAND_PROFILE
    for aset in root.iterfind("d:Period/d:AdaptationSet", NS):
        assert aset.get("subsegmentAlignment") == "true"
        assert aset.get("subsegmentStartsWithSAP") == "1"
    for rep_id, rep in _reps(folder).items():
        assert rep.find("d:SegmentList", NS) is None
        assert rep.find("d:SegmentTemplate", NS) is None
        assert rep.findtext("d:BaseURL", namespaces=NS) == f"media-{rep_id}.mp4"
        base = rep.find("d:SegmentBase", NS)
        assert base is not None
        init = base.find("d:Initialization", NS)
        assert init is not None
        data = (folder / f"media-{rep_id}.mp4").read_bytes()
        first, last = _range(init.get("range"))
        assert first == 0
        info = parse_init(data[: last + 1])  # exactly ftyp + moov
        assert base.get("timescale") == str(info.timescale)
        start, end = _range(base.get("indexRange"))
        assert start == last + 1
        assert data[start + 4 : start + 8] == b"sidx"
        assert end - start + 1 == int.from_bytes(data[start : start + 4])


def test_chunks_keep_the_keyframe_and_duration_rules(folder: Path) -> None:
    doc = json.loads((folder / "package.json").read_text())
    chunks = math.ceil(doc["duration"] / SEGMENT)
    assert doc["chunks"] == chunks == 3
    starts: dict[str, list[int]] = {}
    for rep_id, rep in _reps(folder).items():
        data = (folder / f"media-{rep_id}.mp4").read_bytes()
        layout = parse_single_file(data)
        info = parse_init(layout.init.of(data))
        index = _range(rep.find("d:SegmentBase", NS).get("indexRange"))  # type: ignore[union-attr]
        refs = parse_sidx(data[index[0] : index[1] + 1], data_offset=index[0])
        assert [r.byte_range for r in refs] == [(c.start, c.end) for c in layout.chunks]
        assert len(refs) == chunks, rep_id
        segments = [parse_media(c.of(data), info) for c in layout.chunks]
        assert all(s.first_is_sync for s in segments)
        durations = [Fraction(s.duration, info.timescale) for s in segments]
        if info.handler == "vide":
            assert durations[:-1] == [SEGMENT] * (chunks - 1)
            starts[rep_id] = [s.first_presentation_time for s in segments]
        assert sum(durations) == pytest.approx(doc["duration"], abs=0.05)
    assert len(starts) == 2
    assert starts["0"] == starts["1"]


def test_ffmpeg_decodes_every_file(folder: Path) -> None:
    for name in ("media-0.mp4", "media-1.mp4", "media-2.mp4"):
        done = decode_all(str(folder / name))
        assert done.returncode == 0, done.stderr[-500:]


def test_trim_rewrites_the_sidx(folder: Path) -> None:
    data = (folder / "media-0.mp4").read_bytes()
    layout = parse_single_file(data)
    trimmed, new = trim_single_file(data, layout, 2)
    assert new.init == layout.init
    assert new.index.size == layout.index.size - 12
    assert [c.size for c in new.chunks] == [c.size for c in layout.chunks[:2]]
    assert [c.of(trimmed) for c in new.chunks] == [c.of(data) for c in layout.chunks[:2]]
    refs = parse_sidx(new.index.of(trimmed), data_offset=new.index.start)
    assert [r.byte_range for r in refs] == [(c.start, c.end) for c in new.chunks]
    assert trim_single_file(data, layout, 3) == (data, layout)
    with pytest.raises(ValueError, match="cannot keep 4"):
        trim_single_file(data, layout, 4)


def test_files_that_are_not_single_file_layouts_are_refused(packaged_store: Path) -> None:
    with pytest.raises(ManifestError, match="not ftyp/moov/sidx"):
        parse_single_file((packaged_store / "demo" / "init-0.m4s").read_bytes())
    with pytest.raises(ManifestError, match="unreadable"):
        parse_single_file(b"\x00\x00\x00\x30moov")


def test_argv_asks_ffmpeg_for_one_file_with_a_global_sidx(tmp_path: Path) -> None:
    (tmp_path / "in.mp4").write_bytes(b"")
    kwargs = {"ffmpeg_path": "ffmpeg", "input_path": tmp_path / "in.mp4", "output_dir": tmp_path,
              "renditions": plan_renditions(parse_ladder("144p:200k"), width=256, height=144), "source_fps": Fraction(30),
              "has_audio": True}  # fmt: skip
    single = build_package_argv(settings=EncodeSettings(segment_seconds=2, layout="single-file"), **kwargs)
    joined = " ".join(single)
    assert "-single_file 1" in joined
    assert "-global_sidx 1" in joined
    assert "media-$RepresentationID$" in joined
    assert "chunk-$RepresentationID$" not in joined
    default = " ".join(build_package_argv(settings=EncodeSettings(segment_seconds=2), **kwargs))
    assert "-single_file 0" in default
    assert "global_sidx" not in default


def test_bad_layouts_and_too_many_chunks_are_refused() -> None:
    with pytest.raises(ConfigError, match="package layout 'one-file' is not one of segments, single-file"):
        EncodeSettings(segment_seconds=2, layout="one-file")  # type: ignore[arg-type]
    validate_single_file_chunks(65535 * 2, 2)
    with pytest.raises(ConfigError, match="cannot index 65536 chunks of 2 s.*--segment-seconds"):
        validate_single_file_chunks(65535 * 2 + 0.5, 2)


def test_cli_flag_is_documented_and_packages(
    clip_noaudio: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        build_parser({}, with_serve=False).parse_args(["package", "--help"])
    assert "--single-file" in capsys.readouterr().out
    code = main(["package", str(clip_noaudio), "--id", "quiet", "--store", str(tmp_path), "--segment-seconds", "2",
                 "--ladder", "144p:200k", "--single-file", "-q"])  # fmt: skip
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "quiet").iterdir()) == [
        "manifest.mpd",
        "media-0.mp4",
        "package.json",
    ]
    assert ONDEMAND_PROFILE.encode() in (tmp_path / "quiet" / "manifest.mpd").read_bytes()


def test_cli_rejects_a_value_for_the_flag(capsys: pytest.CaptureFixture[str], clip: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["package", str(clip), "--id", "x", "--single-file=yes"])
    assert exc.value.code == 2
    assert "--single-file: ignored explicit argument 'yes'" in capsys.readouterr().err


# --- the origin's HTTP server and byte ranges ------------------------------------------------------


@pytest.fixture(scope="module")
def origin_url(single_store: Path) -> Iterator[str]:
    from origin.app import create_app
    from origin.config import ServeConfig

    with serve_in_thread(create_app(ServeConfig(store=single_store, log_level="warning"))) as url:
        yield url


def test_origin_serves_byte_ranges_of_the_single_files(origin_url: str, folder: Path) -> None:
    data = (folder / "media-0.mp4").read_bytes()
    layout = parse_single_file(data)
    url = f"{origin_url}/videos/one/media-0.mp4"
    with httpx.Client(timeout=10) as client:
        head = client.head(url)
        assert head.status_code == 200
        assert head.headers["accept-ranges"] == "bytes"
        assert int(head.headers["content-length"]) == len(data)
        etag = head.headers["etag"]
        for span in (layout.init, layout.index, *layout.chunks):
            got = client.get(url, headers={"Range": f"bytes={span}"})
            assert got.status_code == 206
            assert got.headers["content-range"] == f"bytes {span}/{len(data)}"
            assert got.content == span.of(data)
        chunk = layout.chunks[1]
        same = client.get(url, headers={"Range": f"bytes={chunk}", "If-Range": etag})
        assert same.status_code == 206
        assert same.content == chunk.of(data)
        stale = client.get(url, headers={"Range": f"bytes={chunk}", "If-Range": '"not-the-etag"'})
        assert stale.status_code == 200
        assert stale.content == data
        past = client.get(url, headers={"Range": f"bytes={len(data)}-"})
        assert past.status_code == 416
        assert past.headers["content-range"] == f"bytes */{len(data)}"


@pytest.mark.network
def test_ffmpeg_plays_the_on_demand_manifest_over_http(origin_url: str) -> None:
    assert_decodes_whole_clip(f"{origin_url}/videos/one/manifest.mpd")
