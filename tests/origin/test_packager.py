"""End-to-end packaging with real ffmpeg encodes of tiny clips (origin.packager).

Checks what the issue asks of a package: schema-valid MPD, aligned keyframes at every chunk start,
exact chunk durations, measured @bandwidth, audio present/absent, decodable by ffmpeg, atomic
publish and replace, and bad inputs leaving nothing behind.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import threading
import xml.etree.ElementTree as ET
from fractions import Fraction
from pathlib import Path

import pytest
import xmlschema

from cdn.ffmpeg import ffmpeg_exe
from origin.errors import (
    ConfigError,
    EncodeError,
    InputError,
    InvalidVideoId,
    ManifestError,
    PackagingError,
    PublishError,
)
from origin.fmp4 import InitInfo, iter_boxes, parse_init, parse_media
from origin.ladder import parse_ladder
from origin.packager import package
from origin.probe import last_out_time
from origin.progress import PackagingProgress
from origin.publish import publish_dir
from tests.conftest import decode_all

NS = {"d": "urn:mpeg:dash:schema:mpd:2011"}
TINY = parse_ladder("144p:200k,72p:100k")


def _mpd(folder: Path) -> ET.Element:
    return ET.fromstring((folder / "manifest.mpd").read_bytes())


def _representations(folder: Path) -> dict[str, tuple[str, ET.Element]]:
    reps = {}
    for aset in _mpd(folder).iterfind("d:Period/d:AdaptationSet", NS):
        for rep in aset.iterfind("d:Representation", NS):
            reps[rep.get("id", "")] = (aset.get("contentType", ""), rep)
    return reps


def _chunks(folder: Path, rep: str) -> list[Path]:
    return sorted(folder.glob(f"chunk-{rep}-*.m4s"))


def _init(folder: Path, rep: str) -> InitInfo:
    return parse_init((folder / f"init-{rep}.m4s").read_bytes())


def _first_sample_is_idr(chunk: bytes, size: int) -> bool:
    """True if the first sample in the chunk's mdat holds an H.264 IDR NAL unit (type 5)."""
    mdat = next(box.payload for box in iter_boxes(chunk) if box.type == b"mdat")
    sample, pos, types = bytes(mdat[:size]), 0, []
    while pos + 4 <= len(sample):
        (length,) = struct.unpack_from(">I", sample, pos)
        types.append(sample[pos + 4] & 0x1F)
        pos += 4 + length
    return 5 in types


@pytest.fixture(scope="module")
def noaudio_store(tmp_path_factory: pytest.TempPathFactory, clip_noaudio: Path) -> Path:
    store = tmp_path_factory.mktemp("noaudio-store")
    package(clip_noaudio, video_id="quiet", store=store, segment_seconds=2, ladder=TINY)
    return store


def test_mpd_validates_against_the_dash_schema(
    packaged_store: Path, noaudio_store: Path, shared_dir: Path
) -> None:
    schema = xmlschema.XMLSchema(str(shared_dir / "dash-schema" / "DASH-MPD.xsd"))
    for folder in (packaged_store / "demo", noaudio_store / "quiet"):
        schema.validate(str(folder / "manifest.mpd"))


def test_every_chunk_starts_with_an_aligned_keyframe(packaged_store: Path) -> None:
    folder = packaged_store / "demo"
    video = [rid for rid, (kind, _) in _representations(folder).items() if kind == "video"]
    assert len(video) == 2
    starts: dict[str, list[Fraction]] = {}
    for rid in video:
        init = _init(folder, rid)
        starts[rid] = []
        for chunk in _chunks(folder, rid):
            data = chunk.read_bytes()
            seg = parse_media(data, init)
            assert seg.first_is_sync, chunk.name
            assert _first_sample_is_idr(data, seg.first_sample_size), chunk.name
            starts[rid].append(Fraction(seg.first_presentation_time, init.timescale))
    first, *others = starts.values()
    assert len(first) == 3
    assert all(other == first for other in others)
    assert [b - a for a, b in zip(first, first[1:], strict=False)] == [2, 2]


def test_chunk_durations_equal_segment_seconds_except_the_last(packaged_store: Path) -> None:
    folder = packaged_store / "demo"
    for rid, (kind, _) in _representations(folder).items():
        init = _init(folder, rid)
        durations = [
            Fraction(parse_media(c.read_bytes(), init).duration, init.timescale) for c in _chunks(folder, rid)
        ]
        assert len(durations) == 3
        if kind == "video":
            assert durations == [2, 2, 1]
        else:  # audio frames are 1024 samples: boundaries land within a frame or two of the video's
            assert all(abs(d - 2) <= Fraction(2048, 48000) for d in durations[:-1])
            assert durations[-1] <= 2


def test_bandwidth_is_at_least_the_measured_peak(packaged_store: Path) -> None:
    folder = packaged_store / "demo"
    for rid, (_, rep) in _representations(folder).items():
        init = _init(folder, rid)
        peak = max(
            c.stat().st_size * 8 / (parse_media(c.read_bytes(), init).duration / init.timescale)
            for c in _chunks(folder, rid)
        )
        bandwidth = int(rep.get("bandwidth", "0"))
        assert peak <= bandwidth < peak + 1


def test_representation_attributes_are_right(packaged_store: Path) -> None:
    folder = packaged_store / "demo"
    root = _mpd(folder)
    assert root.get("mediaPresentationDuration") == "PT5S"
    assert root.get("type") == "static"
    reps = _representations(folder)
    sizes = []
    for rid, (kind, rep) in reps.items():
        init = _init(folder, rid)
        assert rep.get("codecs") == init.codecs
        template = rep.find("d:SegmentTemplate", NS)
        assert template is not None
        assert "$Number" in template.get("media", "")
        assert int(template.get("duration", "0")) == 2 * int(template.get("timescale", "0"))
        if kind == "video":
            assert init.codecs.startswith("avc1.64")
            assert rep.get("frameRate") == "30"
            sizes.append((int(rep.get("width", "0")), int(rep.get("height", "0"))))
            assert sizes[-1] == (init.width, init.height)
        else:
            assert rep.get("codecs") == "mp4a.40.2"
    assert sizes == [(320, 180), (256, 144)]


def test_audio_adaptation_set_present_or_absent(packaged_store: Path, noaudio_store: Path) -> None:
    def kinds(folder: Path) -> list[str]:
        return [a.get("contentType", "") for a in _mpd(folder).iterfind("d:Period/d:AdaptationSet", NS)]

    assert kinds(packaged_store / "demo") == ["video", "audio"]
    assert kinds(noaudio_store / "quiet") == ["video"]
    assert json.loads((noaudio_store / "quiet" / "package.json").read_text())["audio"] is False


def test_package_json_follows_the_contract(packaged_store: Path) -> None:
    doc = json.loads((packaged_store / "demo" / "package.json").read_text())
    assert set(doc) == {"id", "duration", "segment_seconds", "chunks", "audio", "renditions", "created"}
    assert (doc["id"], doc["duration"], doc["segment_seconds"], doc["chunks"], doc["audio"]) == (
        "demo",
        5.0,
        2,
        3,
        True,
    )
    assert [(r["width"], r["height"]) for r in doc["renditions"]] == [(320, 180), (256, 144)]
    assert set(doc["renditions"][0]) == {"id", "width", "height", "bandwidth", "codecs", "frame_rate"}
    assert doc["created"].endswith("Z")


@pytest.mark.parametrize("store_name", ["packaged", "noaudio"])
def test_ffmpeg_decodes_every_representation(
    store_name: str, packaged_store: Path, noaudio_store: Path
) -> None:
    folder = packaged_store / "demo" if store_name == "packaged" else noaudio_store / "quiet"
    streams = len(_representations(folder))
    done = decode_all(
        str(folder / "manifest.mpd"), "-v", "info", "-nostats", "-progress", "pipe:1", timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.count("Stream #0:") >= 2 * streams  # every input stream is mapped and decoded
    assert last_out_time(done.stdout) >= 3.9


def test_progress_reports_fraction_and_speed(tmp_path: Path, clip_noaudio: Path) -> None:
    seen: list[PackagingProgress] = []
    summary = package(
        clip_noaudio, video_id="p", store=tmp_path, segment_seconds=2, ladder=TINY, progress=seen.append
    )
    assert seen
    assert seen[-1].done
    assert seen[-1].fraction == 1.0
    assert all(0 <= p.fraction <= 1 for p in seen)
    assert [p.fraction for p in seen] == sorted(p.fraction for p in seen)
    assert summary.duration == 4.0
    assert summary.chunks == 2
    assert not summary.audio
    assert summary.path == tmp_path / "p"
    assert sorted(os.listdir(tmp_path)) == ["p"]


def test_replacing_an_id_swaps_the_whole_package(tmp_path: Path, clip_noaudio: Path) -> None:
    package(clip_noaudio, video_id="v", store=tmp_path, segment_seconds=2, ladder=TINY)
    assert len(list((tmp_path / "v").glob("init-*.m4s"))) == 2
    package(clip_noaudio, video_id="v", store=tmp_path, segment_seconds=4, ladder=parse_ladder("144p:150k"))
    folder = tmp_path / "v"
    assert len(list(folder.glob("init-*.m4s"))) == 1
    assert not list(folder.glob("chunk-1-*"))
    assert json.loads((folder / "package.json").read_text())["segment_seconds"] == 4
    assert sorted(os.listdir(tmp_path)) == ["v"]  # no .tmp-* or .old-* left


def test_publish_never_shows_a_missing_or_partial_package(tmp_path: Path) -> None:
    final = tmp_path / "live"
    final.mkdir()
    (final / "manifest.mpd").write_text("0")
    stop, misses = threading.Event(), []

    def reader() -> None:
        while not stop.is_set():
            try:
                (final / "manifest.mpd").read_text()
            except OSError as exc:
                misses.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for n in range(1, 60):
            staged = tmp_path / f".tmp-live-{n}"
            staged.mkdir()
            (staged / "manifest.mpd").write_text(str(n))
            publish_dir(staged, final)
    finally:
        stop.set()
        thread.join()
    assert not misses
    assert (final / "manifest.mpd").read_text() == "59"
    assert sorted(os.listdir(tmp_path)) == ["live"]


def _leftovers(store: Path) -> list[str]:
    return sorted(os.listdir(store)) if store.exists() else []


def _write_bad_inputs(folder: Path, clip: Path) -> dict[str, Path]:
    folder.mkdir()
    text = folder / "notes.mp4"
    text.write_text("this is not a video\n")
    empty = folder / "empty.mp4"
    empty.touch()
    audio = folder / "audio.m4a"
    subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "sine=duration=1", "-c:a", "aac", f"file:{audio}"],
        check=True,
    )
    cut = folder / "cut.mp4"
    cut.write_bytes(clip.read_bytes()[: clip.stat().st_size * 2 // 3])
    m3u8 = folder / "evil.m3u8"
    m3u8.write_text(
        "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n/etc/passwd\n#EXTINF:10,\n"
        "http://127.0.0.1:9/x.ts\n#EXT-X-ENDLIST\n"
    )
    ffconcat = folder / "evil.ffconcat"
    ffconcat.write_text(f"ffconcat version 1.0\nfile {clip}\nfile /etc/passwd\n")
    disguised = folder / "disguised.mp4"
    disguised.write_text(m3u8.read_text())
    dangling = folder / "dangling.mp4"
    dangling.symlink_to(folder / "nowhere.mp4")
    return {
        "text": text,
        "empty": empty,
        "audio": audio,
        "cut": cut,
        "m3u8": m3u8,
        "ffconcat": ffconcat,
        "disguised": disguised,
        "dangling": dangling,
    }


BAD = {
    "text": "not a video file",
    "empty": "zero length",
    "audio": "no video stream",
    "cut": "truncated",
    "m3u8": "container format is not one we accept",
    "ffconcat": "container format is not one we accept",
    "disguised": "not a video file",
    "dangling": "No such file",
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_inputs_fail_clearly_and_leave_nothing(kind: str, tmp_path: Path, clip: Path) -> None:
    inputs = _write_bad_inputs(tmp_path / "in", clip)
    store = tmp_path / "store"
    with pytest.raises(InputError, match=BAD[kind]):
        package(inputs[kind], video_id="bad", store=store, segment_seconds=2, ladder=TINY)
    assert _leftovers(store) == []


@pytest.mark.parametrize(
    "name",
    [
        "concat:/etc/passwd",
        "http://127.0.0.1:9/v.mp4",
        "subfile,,start,0,end,100,,:/etc/passwd",
        "file:/etc/passwd",
    ],
)
def test_protocol_names_are_refused(name: str, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="URL or an ffmpeg protocol"):
        package(name, video_id="x", store=tmp_path, segment_seconds=2)  # type: ignore[arg-type]  # the CLI passes str
    assert _leftovers(tmp_path) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read any file")
def test_unreadable_input(tmp_path: Path, clip: Path) -> None:
    locked = tmp_path / "locked.mp4"
    shutil.copy(clip, locked)
    locked.chmod(0)
    with pytest.raises(InputError, match="not readable"):
        package(locked, video_id="x", store=tmp_path / "store")


def test_failure_after_encoding_removes_the_build_and_keeps_the_old_package(
    tmp_path: Path, clip_noaudio: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package(clip_noaudio, video_id="keep", store=tmp_path, segment_seconds=2, ladder=TINY)
    before = (tmp_path / "keep" / "manifest.mpd").read_bytes()
    strict = tmp_path / "strict.xsd"  # a schema no MPD satisfies: validation fails after the encode
    strict.write_text(
        '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:x">'
        '<xs:element name="Nothing"/></xs:schema>'
    )
    monkeypatch.setenv("CDN_DASH_SCHEMA", str(strict))
    with pytest.raises(ManifestError, match="does not validate"):
        package(clip_noaudio, video_id="keep", store=tmp_path, segment_seconds=4, ladder=TINY)
    assert sorted(os.listdir(tmp_path)) == ["keep", "strict.xsd"]
    assert (tmp_path / "keep" / "manifest.mpd").read_bytes() == before


@pytest.mark.parametrize("video_id", ["", ".hidden", "a/b", "..", "x" * 65, "a b", "é"])
def test_bad_ids_are_refused(video_id: str, tmp_path: Path, clip: Path) -> None:
    with pytest.raises(InvalidVideoId):
        package(clip, video_id=video_id, store=tmp_path / "s")
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("seconds", [0, 1, 11, 60])
def test_segment_seconds_outside_2_to_10_are_refused(seconds: int, tmp_path: Path, clip: Path) -> None:
    with pytest.raises(ConfigError, match="2 to 10"):
        package(clip, video_id="x", store=tmp_path, segment_seconds=seconds)


def test_packaging_errors_share_one_root() -> None:
    assert issubclass(InputError, PackagingError)
    assert issubclass(ManifestError, PackagingError)


@pytest.mark.slow
def test_ntsc_anamorphic_source(tmp_path: Path) -> None:
    src = tmp_path / "ana.mkv"
    subprocess.run(
        [
            ffmpeg_exe(),
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=720x576:rate=30000/1001:duration=5",
            "-vf",
            "setsar=64/45",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            f"file:{src}",
        ],
        check=True,
    )
    summary = package(
        src,
        video_id="ana",
        store=tmp_path / "s",
        segment_seconds=2,
        ladder=parse_ladder("576p:800k,480p:600k,240p:200k"),
        preset="ultrafast",
    )
    assert [(r.width, r.height) for r in summary.renditions if r.kind == "video"] == [
        (720, 576),
        (720, 480),
        (426, 240),
    ]
    root = _mpd(summary.path)
    assert root.find("d:Period/d:AdaptationSet", NS).get("par") == "16:9"  # type: ignore[union-attr]
    assert root.find("d:Period/d:AdaptationSet", NS).get("frameRate") == "30000/1001"  # type: ignore[union-attr]


def test_package_api_is_exported() -> None:
    import origin
    import origin.errors
    import origin.packager

    assert set(origin.errors.__all__) <= set(origin.__all__)
    assert {"package", "PackageSummary", "parse_ladder", "DEFAULT_LADDER", "PackagingProgress"} <= set(
        origin.__all__
    )
    for name in origin.__all__:
        assert getattr(origin, name) is not None
    assert origin.package is origin.packager.package


def test_ffmpeg_failure_and_timeout_raise_encode_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from origin import packager

    with pytest.raises(EncodeError, match="ffmpeg failed") as info:
        packager._run_ffmpeg(
            [ffmpeg_exe(), "-v", "error", "-i", "file:/nonexistent.mp4", "-f", "null", "-"], 1.0, None
        )
    assert info.value.returncode != 0
    assert "nonexistent" in info.value.stderr_tail
    monkeypatch.setattr(packager, "encode_timeout", lambda duration: 0.3)
    endless = [
        ffmpeg_exe(),
        "-v",
        "error",
        "-re",
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=64x64",
        "-f",
        "null",
        "-",
    ]
    with pytest.raises(EncodeError, match="longer than"):
        packager._run_ffmpeg(endless, 10.0, None)


def test_publish_falls_back_to_two_renames_without_renameat2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from origin import publish

    monkeypatch.setattr(publish, "_renameat2", lambda: None)
    final = tmp_path / "v"
    for n in range(3):
        staged = tmp_path / f".tmp-v-{n}"
        staged.mkdir()
        (staged / "manifest.mpd").write_text(str(n))
        publish_dir(staged, final)
    assert (final / "manifest.mpd").read_text() == "2"
    assert sorted(os.listdir(tmp_path)) == ["v"]


def test_store_that_cannot_be_created_is_a_publish_error(tmp_path: Path, clip_noaudio: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(PublishError, match="cannot write to the store"):
        package(clip_noaudio, video_id="x", store=blocker / "store", segment_seconds=2, ladder=TINY)


def test_inexact_sizes_keep_one_display_aspect(tmp_path: Path, clip_noaudio: Path) -> None:
    """The known pitfall: 16:9 at 120 lines is 213.3 wide; SAR 1 on 214x120 would break the muxer."""
    summary = package(
        clip_noaudio,
        video_id="ar",
        store=tmp_path,
        segment_seconds=2,
        ladder=parse_ladder("144p:200k,120p:150k"),
    )
    reps = {rid: rep for rid, (_, rep) in _representations(summary.path).items()}
    assert (reps["1"].get("width"), reps["1"].get("height"), reps["1"].get("sar")) == (
        "214",
        "120",
        "320:321",
    )
    described = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-i", str(summary.path / "manifest.mpd")],
        capture_output=True,
        text=True,
        timeout=60,
    ).stderr
    assert described.count("DAR 16:9]") == 2


def _av_clip(path: Path, video_seconds: int, audio_seconds: int) -> Path:
    subprocess.run(
        [
            ffmpeg_exe(),
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=size=160x90:rate=30:duration={video_seconds}",
            "-f",
            "lavfi",
            "-i",
            f"sine=duration={audio_seconds}",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-c:a",
            "aac",
            f"file:{path}",
        ],
        check=True,
    )
    return path


@pytest.mark.parametrize(("video", "audio"), [(4, 6), (4, 2), (4, 4)])
def test_every_representation_ends_with_the_video(video: int, audio: int, tmp_path: Path) -> None:
    """Audio is padded or cut to the video; no unreferenced sliver of audio inflates @bandwidth."""
    src = _av_clip(tmp_path / "av.mp4", video, audio)
    summary = package(
        src, video_id="av", store=tmp_path / "s", segment_seconds=2, ladder=parse_ladder("90p:150k")
    )
    assert summary.duration == video
    assert _mpd(summary.path).get("mediaPresentationDuration") == f"PT{video}S"
    for rid in _representations(summary.path):
        assert len(_chunks(summary.path, rid)) == video // 2
    audio_rep = next(r for r in summary.renditions if r.kind == "audio")
    assert audio_rep.bandwidth < 200_000  # AAC at 128 kbit/s, no tiny last chunk
