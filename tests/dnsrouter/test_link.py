"""The link's frames: header checks, the edge-state table's round trip, and its decoder under garbage."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dnsrouter.link import HEADER, MAX_BODY, VERSION, Header, Kind, decode_states, encode_states, frame
from dnsrouter.policy import EdgeState, Health

EDGES = ("eu-west-1", "us-east-1")


def test_frame_round_trip() -> None:
    data = frame(Kind.EDGE_STATES, 2**32 + 5, b"{}")
    assert Header.unpack(data) == Header(VERSION, Kind.EDGE_STATES, 5, 2)
    assert data[HEADER.size :] == b"{}"
    assert frame(Kind.COUNTERS_REQUEST, 1).hex() == "01010000000100000000"  # version, kind, seq, size


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        (Header(VERSION, Kind.COUNTERS, 1, 10), None),
        (Header(VERSION + 1, Kind.COUNTERS, 1, 10), "a frame of version 2 (this program speaks version 1)"),
        (Header(VERSION, Kind.EDGE_STATES, 1, 10), "a frame of kind 3 (expected COUNTERS)"),
        (Header(VERSION, 0, 1, 0), "a frame of kind 0 (expected COUNTERS)"),
        (Header(VERSION, Kind.COUNTERS, 1, MAX_BODY + 1), f"a frame of {MAX_BODY + 1} bytes, over the"),
    ],
)
def test_header_problem(header: Header, problem: str | None) -> None:
    found = header.problem((Kind.COUNTERS,))
    assert found == problem if problem is None else (found or "").startswith(problem)


def test_states_round_trip() -> None:
    states = {"eu-west-1": EdgeState(Health.DOWN), "us-east-1": EdgeState(Health.UP, overloaded=True)}
    body = encode_states(states)
    assert body == b'{"eu-west-1":["down",false],"us-east-1":["up",true]}'
    assert decode_states(body, EDGES) == states
    assert decode_states(b"{}", EDGES) == {}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "Expecting value"),
        (b"\xff", "codec can't decode"),
        (b"[]", "expected a JSON object, got list"),
        (b"[" * 100_000, "nested too deeply"),
        (b'{"nowhere-1": ["up", false]}', "'nowhere-1' is not an edge of this topology"),
        (b'{"eu-west-1": "up"}', "'eu-west-1': expected [health, overloaded], got 'up'"),
        (b'{"eu-west-1": ["up", 0]}', "expected [health, overloaded]"),
        (b'{"eu-west-1": ["up", false, 1]}', "expected [health, overloaded]"),
        (b'{"eu-west-1": ["sideways", false]}', "'sideways' is not a health state"),
        (b'{"eu-west-1": [["up"], false]}', "is not a health state"),
    ],
)
def test_decode_states_names_what_is_wrong(body: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        decode_states(body, EDGES)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | st.from_regex(rb'\{"(eu-west-1|us-east-1)": ?\[.{0,12}\]\}', fullmatch=True))
def test_decode_states_fails_only_with_value_error(body: bytes) -> None:
    try:
        states = decode_states(body, EDGES)
    except ValueError:
        return
    assert set(states) <= set(EDGES)
    assert all(isinstance(s, EdgeState) for s in states.values())
