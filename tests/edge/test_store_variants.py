"""The store's rules for several Vary variants per key (RFC 9111 §4.1): slots, files, replacement, LRU."""

from __future__ import annotations

from pathlib import Path

from edge.entry import Entry, file_id
from edge.store import Store
from edge.vary import Forwarded, Selection
from tests.edge.test_store import make_entry

PATH = "/videos/v1/manifest.mpd"
OTHER_PATH = "/videos/v1/other.mpd"
AE = "accept-encoding"


def _put(store: Store, entry: Entry, body: bytes) -> Entry:
    store.write_files(entry, body)
    store.admit(entry, body)
    return entry


def _ae(value: str | None) -> Selection:
    return ((AE, value),)


def _req(value: str) -> Forwarded:
    return ((AE, value),)


def _store(tmp_path: Path, max_variants: int = 8) -> Store:
    store = Store(tmp_path, capacity=1_000_000, memory_capacity=100_000, max_variants=max_variants)
    store.open()
    return store


def _metas(root: Path) -> list[Path]:
    return sorted((root / "objects").glob("*/*.meta"))


def test_several_variants_each_with_its_own_files_and_memory_slot(tmp_path: Path) -> None:
    store = _store(tmp_path)
    gzip = _put(store, make_entry(PATH, b"g" * 10, _ae("gzip")), b"g" * 10)
    identity = _put(store, make_entry(PATH, b"i" * 20, _ae("identity")), b"i" * 20)
    absent = _put(store, make_entry(PATH, b"a" * 30, _ae(None)), b"a" * 30)
    assert store.lookup(PATH) is None  # no entry without Vary
    assert store.find(PATH, _req("gzip")) is gzip
    assert store.find(PATH, _req("identity")) is identity
    assert store.find(PATH, ()) is absent
    assert store.find(PATH, _req("br")) is None
    assert len({gzip.fid, identity.fid, absent.fid, file_id(PATH)}) == 4
    assert [store.memory_body(e.slot) for e in (gzip, identity, absent)] == [b"g" * 10, b"i" * 20, b"a" * 30]
    stats = store.stats()
    assert (stats.entries, stats.varied_entries, stats.extra_variants, stats.memory_entries) == (3, 3, 2, 3)
    assert len(_metas(tmp_path)) == 3


def test_a_full_key_evicts_its_least_recently_used_variant_only(tmp_path: Path) -> None:
    store = _store(tmp_path, max_variants=2)
    other = [_put(store, make_entry(OTHER_PATH, b"o", _ae(v)), b"o") for v in ("gzip", "identity")]
    gzip = _put(store, make_entry(PATH, b"g", _ae("gzip")), b"g")
    identity = _put(store, make_entry(PATH, b"i", _ae("identity")), b"i")
    store.find(PATH, _req("gzip"))  # gzip is now the most recently used variant of PATH
    br = _put(store, make_entry(PATH, b"b", _ae("br")), b"b")
    assert store.variants(PATH) == [gzip, br]
    assert not store.holds(identity)
    assert not store.paths(identity)[0].exists()
    assert store.variants(OTHER_PATH) == other  # another key's variants are not touched
    assert (store.stats().variant_evictions, store.stats().evictions) == (1, 0)


def test_an_entry_without_vary_replaces_every_variant(tmp_path: Path) -> None:
    store = _store(tmp_path)
    variants = [_put(store, make_entry(PATH, b"v", _ae(v)), b"v") for v in ("gzip", "identity")]
    plain = _put(store, make_entry(PATH, b"plain"), b"plain")
    assert store.variants(PATH) == [plain]
    assert store.find(PATH, _req("gzip")) is plain
    assert not any(store.holds(v) or store.paths(v)[0].exists() for v in variants)
    varied = _put(store, make_entry(PATH, b"v", _ae("gzip")), b"v")  # and a varying one replaces it
    assert store.variants(PATH) == [varied]
    assert store.lookup(PATH) is None
    assert [p.stem for p in _metas(tmp_path)] == [varied.fid]


def test_other_vary_names_replace_the_variants(tmp_path: Path) -> None:
    store = _store(tmp_path)
    for value in ("gzip", "identity"):
        _put(store, make_entry(PATH, b"v", _ae(value)), b"v")
    french = _put(store, make_entry(PATH, b"fr", (("accept-language", "fr"),)), b"fr")
    assert store.variants(PATH) == [french]
    same = _put(store, make_entry(PATH, b"fr2", (("accept-language", "fr"),)), b"fr2")  # same selection
    assert store.variants(PATH) == [same]
    assert same.fid == french.fid
    assert store.read_verified(same) == b"fr2"  # its files were rewritten


def test_purge_removes_every_variant(tmp_path: Path) -> None:
    store = _store(tmp_path)
    for value in ("gzip", "identity", None):
        _put(store, make_entry(PATH, b"v", _ae(value)), b"v")
    _put(store, make_entry(OTHER_PATH, b"o"), b"o")
    assert store.purge(key=PATH) == 3
    assert store.variants(PATH) == []
    assert store.purge(prefix="/videos/v1/") == 1
    assert (store.stats().bytes, _metas(tmp_path)) == (0, [])


def test_a_rebuild_regroups_the_variants_by_key(tmp_path: Path) -> None:
    store = _store(tmp_path)
    for n, value in enumerate(("gzip", "identity", "br")):
        _put(store, make_entry(PATH, value.encode(), _ae(value), stored_at=1000.0 + n), value.encode())
    _put(store, make_entry(OTHER_PATH, b"o"), b"o")
    reopened = _store(tmp_path)
    assert reopened.stats().entries == 4
    for value in ("gzip", "identity", "br"):
        found = reopened.find(PATH, _req(value))
        assert found is not None
        assert reopened.read_verified(found) == value.encode()
    trimmed = _store(tmp_path, max_variants=2)  # fewer allowed now: the oldest variant goes
    assert [e.vary for e in trimmed.variants(PATH)] == [_ae("identity"), _ae("br")]
    assert len(_metas(tmp_path)) == 3


def test_an_entry_stored_before_variants_loads_and_is_replaced_cleanly(tmp_path: Path) -> None:
    """A meta v2 entry written when one variant per URL was kept: its files are named by its key."""
    store = _store(tmp_path)
    legacy = make_entry(PATH, b"legacy", _ae("gzip"))
    legacy.fid = file_id(PATH)
    store.write_files(legacy, b"legacy")
    reopened = _store(tmp_path)
    loaded = reopened.find(PATH, _req("gzip"))
    assert loaded is not None
    assert loaded.fid == file_id(PATH)
    assert reopened.read_verified(loaded) == b"legacy"
    identity = _put(reopened, make_entry(PATH, b"i", _ae("identity")), b"i")
    assert reopened.variants(PATH) == [loaded, identity]
    plain = _put(reopened, make_entry(PATH, b"plain"), b"plain")  # the same file name as the legacy entry
    assert reopened.variants(PATH) == [plain]
    assert [p.stem for p in _metas(tmp_path)] == [file_id(PATH)]
    assert reopened.read_verified(plain) == b"plain"


def test_revary_files_an_entry_under_its_new_selection(tmp_path: Path) -> None:
    store = _store(tmp_path)
    gzip = _put(store, make_entry(PATH, b"g", _ae("gzip")), b"g")
    identity = _put(store, make_entry(PATH, b"i", _ae("identity")), b"i")
    store.revary(gzip, (("accept-language", None),))  # a 304 said `Vary: Accept-Language`
    assert store.variants(PATH) == [gzip]  # identity varies on another header: replaced
    assert not store.holds(identity)
    assert store.find(PATH, _req("br")) is gzip
    assert store.memory_body(gzip.slot) == b"g"
    assert store.read_verified(gzip) == b"g"  # the files kept their name
