"""Every package's public API (`__all__`) is complete and importable."""

from __future__ import annotations

import importlib

import pytest

PACKAGES = ["cdn", "origin", "edge", "dnsrouter", "player", "player.abr", "cdn.topology"]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_names_resolve(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported, f"{name} has no __all__"
    missing = [n for n in exported if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names what it does not define: {missing}"
    assert len(set(exported)) == len(exported), f"{name}.__all__ repeats a name"


@pytest.mark.parametrize("name", PACKAGES)
def test_public_classes_are_exported(name: str) -> None:
    module = importlib.import_module(name)
    public = {
        n
        for n, v in vars(module).items()
        if not n.startswith("_")
        and isinstance(v, type)
        and (v.__module__ == name or v.__module__.startswith(name + "."))
    }
    assert public <= set(module.__all__), (
        f"{name} imports public classes it does not export: {public - set(module.__all__)}"
    )
