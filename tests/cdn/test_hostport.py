from __future__ import annotations

import pytest

from cdn.hostport import HostPort, parse_hostport


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8080", HostPort("127.0.0.1", 8080)),
        ("[::1]:5353", HostPort("::1", 5353)),
        ("localhost:0", HostPort("localhost", 0)),
    ],
)
def test_parse(text: str, expected: HostPort) -> None:
    assert parse_hostport(text) == expected


@pytest.mark.parametrize("text", ["127.0.0.1", "host:port", "[::1", "h:70000", ":80"])
def test_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="port|HOST|empty|\\]"):
        parse_hostport(text)


def test_str_round_trip() -> None:
    assert str(parse_hostport("[::1]:53")) == "[::1]:53"
