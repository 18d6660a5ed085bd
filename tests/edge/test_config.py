"""EdgeConfig parsing: sizes, URLs, options and the admin token from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

import edge
from edge.config import EdgeConfig, parse_size
from edge.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("2GiB", 2 * 1024**3),
        ("256MiB", 256 * 1024**2),
        ("256mib", 256 * 1024**2),
        ("500MB", 500 * 1000**2),
        ("1024", 1024),
        ("1.5KiB", 1536),
        ("10K", 10_000),
        ("7B", 7),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "lots", "2XB", "-1GiB", "1 GiB GiB"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ConfigError, match="byte size"):
        parse_size(text)


def test_from_args() -> None:
    argv = [
        "--origin",
        "http://127.0.0.1:8000/",
        "--listen",
        "127.0.1.1:8080",
        "--cache-dir",
        "/tmp/c",
        "--cache-size",
        "1GiB",
        "--memory-cache",
        "64MiB",
        "--region",
        "eu-west",
        "--name",
        "eu-west-1",
        "--parent",
        "http://127.0.1.2:8080",
        "--stale-if-error",
        "60",
        "--negative-ttl",
        "3",
        "--max-variants",
        "3",
    ]
    cfg = EdgeConfig.from_args(argv, {"CDN_ADMIN_TOKEN": "tok"})
    assert cfg.max_variants == 3
    assert cfg.origin == "http://127.0.0.1:8000"
    assert cfg.parent == "http://127.0.1.2:8080"
    assert (cfg.listen.host, cfg.listen.port) == ("127.0.1.1", 8080)
    assert cfg.cache_dir == Path("/tmp/c")
    assert cfg.cache_size == 1024**3
    assert cfg.memory_cache == 64 * 1024**2
    assert (cfg.region, cfg.name, cfg.stale_if_error, cfg.negative_ttl) == ("eu-west", "eu-west-1", 60, 3)
    assert cfg.admin_token == "tok"
    assert "tok" not in repr(cfg)
    explicit = EdgeConfig.from_args([*argv, "--admin-token", "cli"], {"CDN_ADMIN_TOKEN": "tok"})
    assert explicit.admin_token == "cli"


@pytest.mark.parametrize(
    ("option", "value", "match"),
    [
        ("--origin", "ftp://x", "https://"),
        ("--origin", "http://x/path", "path"),
        ("--listen", "nope", "--listen"),
        ("--cache-size", "0", "positive"),
        ("--name", "a b", "--name"),
        ("--max-variants", "0", "--max-variants 0 must be >= 1"),
    ],
)
def test_from_args_rejects(option: str, value: str, match: str) -> None:
    base = {"--origin": "http://127.0.0.1:1", "--cache-dir": "/tmp/c", "--listen": "127.0.0.1:0"}
    base[option] = value
    argv = [x for kv in base.items() for x in kv]
    with pytest.raises(ConfigError, match=match):
        EdgeConfig.from_args(argv, {})


def test_max_variants_defaults_to_8() -> None:
    argv = ["--origin", "http://127.0.0.1:1", "--cache-dir", "/tmp/c"]
    assert EdgeConfig.from_args(argv, {}).max_variants == 8
    with pytest.raises(ConfigError, match="--max-variants -1"):
        EdgeConfig(origin="http://127.0.0.1:1", cache_dir=Path("/tmp/c"), cache_size=1, max_variants=-1)


def test_exported_members() -> None:
    for name in edge.__all__:
        assert hasattr(edge, name), name
    assert {"EdgeConfig", "EdgeError", "EdgeServer", "parse_size"} <= set(edge.__all__)
