"""Cache keys: normalisation, traversal rejection, fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.cachekey import cache_key
from edge.errors import BadPathError


@pytest.mark.parametrize(
    ("target", "key"),
    [
        ("/videos/demo/manifest.mpd", "/videos/demo/manifest.mpd"),
        ("/videos//demo///1.m4s", "/videos/demo/1.m4s"),
        ("/videos/demo/%31.m4s", "/videos/demo/1.m4s"),
        ("/videos/demo/a b.m4s", "/videos/demo/a%20b.m4s"),
        ("/videos/demo/1.m4s?x=1", "/videos/demo/1.m4s?x=1"),
        ("/videos/demo/", "/videos/demo/"),
        ("/videos", "/videos"),
        ("/videos/", "/videos"),
    ],
)
def test_cache_key(target: str, key: str) -> None:
    assert cache_key(target) == key


@pytest.mark.parametrize(
    ("target", "status"),
    [
        ("/videos/../x", 400),
        ("/videos/./x", 400),
        ("/videos/%2E%2E/x", 400),
        ("/videos/a%2Fb", 400),
        ("/videos/a\\b", 400),
        ("/videos/%ff", 400),
        ("/videos/a\x01", 400),
        ("videos/x", 400),
        ("/other/x", 404),
        ("/videosx/y", 404),
        ("/" + "a" * 5000, 414),
    ],
)
def test_bad_targets(target: str, status: int) -> None:
    with pytest.raises(BadPathError) as info:
        cache_key(target)
    assert info.value.status == status


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=100))
def test_fuzz_cache_key(suffix: str) -> None:
    try:
        key = cache_key("/videos/" + suffix)
    except BadPathError:
        return
    path = key.partition("?")[0]
    assert path.startswith("/videos")
    assert "/../" not in path + "/"
    assert "\\" not in path
