"""Fixtures shared by every package's tests: tiny generated clips, a packaged store, free ports."""

from __future__ import annotations

import os
import re
import socket
import subprocess
from pathlib import Path

import pytest
import trustme

from cdn.ffmpeg import ffmpeg_exe
from cdn.samples import generate_clip

REPO = Path(__file__).resolve().parents[1]


def find_shared() -> Path:
    """The read-only `shared` folder (schemas, traces): $CDN_SHARED, else `../shared` beside this
    checkout, else beside the local repository it was cloned from (a clone in a temporary folder)."""
    if os.environ.get("CDN_SHARED"):
        return Path(os.environ["CDN_SHARED"])
    candidates = [REPO.parent / "shared"]
    origin = subprocess.run(["git", "-C", str(REPO), "config", "--get", "remote.origin.url"],
                            capture_output=True, text=True, check=False).stdout.strip()  # fmt: skip
    if origin and "://" not in origin and Path(origin).is_dir():  # a local path, not a URL
        candidates.append(Path(origin).resolve().parent / "shared")
    return next((c for c in candidates if c.is_dir()), candidates[0])


SHARED = find_shared()
if (SHARED / "dash-schema" / "DASH-MPD.xsd").is_file():  # the packager validates its MPDs with it
    os.environ.setdefault("CDN_DASH_SCHEMA", str(SHARED / "dash-schema" / "DASH-MPD.xsd"))


def free_port(host: str = "127.0.0.1", kind: int = socket.SOCK_STREAM) -> int:
    """A port that was free on `host` a moment ago (prefer binding port 0 where the server allows it)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def decode_all(source: str, *options: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ffmpeg as a real DASH client: open `source` (a path or URL) and decode every stream to null."""
    args = [ffmpeg_exe(), "-hide_banner", "-nostdin", *options, "-i", source, "-map", "0", "-f", "null", "-"]
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


def assert_decodes_whole_clip(url: str) -> None:
    """ffmpeg, as a DASH client, decodes every representation of the 5 s test clip at `url` without errors.

    Its closing report has one line per input stream (= per representation) with its decode counts:
    two video representations and one audio, each with every frame (150 at 30 fps; 230 audio frames).
    """
    result = decode_all(url, "-v", "verbose")
    assert result.returncode == 0, result.stderr[-3000:]
    decoded = re.findall(
        r"Input stream #0:\d+ \((video|audio)\): \d+ packets read \(\d+ bytes\); "
        r"(\d+) frames decoded; (\d+) decode errors",
        result.stderr,
    )
    assert sorted(kind for kind, _, _ in decoded) == ["audio", "video", "video"], result.stderr[-3000:]
    for kind, frames, errors in decoded:
        assert int(errors) == 0
        assert int(frames) >= (149 if kind == "video" else 230)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The read-only ../shared folder (DASH schema, compose schema, traces)."""
    if not SHARED.is_dir():
        pytest.fail(
            f"{SHARED} is missing: the tests read the DASH schema and traces from it (set CDN_SHARED)"
        )
    return SHARED


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def clip(media_dir: Path) -> Path:
    """A 5 s 320x180 30 fps H.264/AAC test clip."""
    return generate_clip(media_dir / "clip.mp4", seconds=5, width=320, height=180)


@pytest.fixture(scope="session")
def clip_noaudio(media_dir: Path) -> Path:
    """A 4 s 256x144 clip without an audio track."""
    return generate_clip(media_dir / "clip-noaudio.mp4", seconds=4, width=256, height=144, audio=False)


@pytest.fixture(scope="session")
def packaged_store(tmp_path_factory: pytest.TempPathFactory, clip: Path) -> Path:
    """A store holding the clip packaged as id `demo` (2 s chunks, two small renditions)."""
    from origin.ladder import parse_ladder
    from origin.packager import package

    store = tmp_path_factory.mktemp("store")
    package(clip, video_id="demo", store=store, segment_seconds=2, ladder=parse_ladder("180p:400k,144p:200k"))
    return store


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    """A test certificate authority (trustme) for the TLS tests of every part."""
    return trustme.CA()


@pytest.fixture(scope="session")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test CA's certificate as a PEM file (for --ca, --upstream-ca, --health-ca)."""
    path = tmp_path_factory.mktemp("pki") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path
