"""`cdn-dns serve` settings: topology defaults, command-line overrides, errors that say what to fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdn.hostport import HostPort
from dnsrouter.config import DnsRouterConfig, parse_args
from dnsrouter.errors import ConfigError
from tests.dnsrouter.conftest import DEMO


def test_defaults_come_from_the_topology() -> None:
    config = DnsRouterConfig.from_args(parse_args(["serve", "--topology", str(DEMO)]))
    assert config.listen == HostPort("127.0.0.1", 5353)
    assert config.http == HostPort("127.0.0.1", 8053)
    assert (config.workers, config.reuse_port) == (1, False)


def test_command_line_overrides() -> None:
    argv = [
        "serve",
        "--topology",
        str(DEMO),
        "--listen",
        "[::1]:1053",
        "--http",
        "127.0.0.2:9000",
        "--workers",
        "3",
    ]
    config = DnsRouterConfig.from_args(parse_args(argv))
    assert config.listen == HostPort("::1", 1053)
    assert config.http == HostPort("127.0.0.2", 9000)
    assert (config.workers, config.reuse_port) == (3, True)
    no_http = DnsRouterConfig.from_args(parse_args(["serve", "--topology", str(DEMO), "--no-http"]))
    assert no_http.http is None


def test_bad_values(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        DnsRouterConfig.from_args(parse_args(["serve", "--topology", str(tmp_path / "none.yaml")]))
    with pytest.raises(ConfigError, match="--workers 0"):
        DnsRouterConfig.from_args(parse_args(["serve", "--topology", str(DEMO), "--workers", "0"]))
    with pytest.raises(SystemExit):
        parse_args(["serve", "--listen", "nowhere"])


def test_link_fd_is_for_extra_workers_only() -> None:
    argv = ["serve", "--topology", str(DEMO), "--reuse-port", "--no-http", "--link-fd", "5"]
    config = DnsRouterConfig.from_args(parse_args(argv))
    assert (config.link_fd, config.workers, config.http) == (5, 1, None)
    assert DnsRouterConfig.from_args(parse_args(["serve", "--topology", str(DEMO)])).link_fd is None
    with pytest.raises(ConfigError, match="--link-fd 5: only for an extra worker"):
        DnsRouterConfig.from_args(parse_args([*argv, "--workers", "2"]))
    with pytest.raises(ConfigError, match="--link-fd -1"):
        DnsRouterConfig.from_args(parse_args(["serve", "--topology", str(DEMO), "--link-fd", "-1"]))
