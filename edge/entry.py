"""One stored response (`Entry`), its `.meta` sidecar, and the names of its index slot and files.

An entry is a variant of a cache key: the response, plus for a response with Vary the request's
values of the headers it names (its `Selection`, RFC 9111 §4.1). Its slot in the store's index is
the key itself without Vary and the key plus the selection with it (`slot_of`); its files are named
by a hash of the slot (`file_id`), so two variants never share files. An entry keeps the name its
files got (`Entry.fid`, the meta's file name when loaded): a 304 may change what it varies on, and
entries stored when one variant per key was kept are named after the key alone (meta v2).
"""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import dataclass, field

from edge.blocks import Blocks
from edge.cachecontrol import Freshness
from edge.vary import Selection

__all__ = ["META_VERSIONS", "Entry", "checksum", "file_id", "slot_of"]

# v2 adds `vary`, v3 `blocks` (per-block CRC-32s of a large body). Each entry is written with the
# lowest version that holds its data, so code that knows only v1 keeps the plain entries after a
# rollback and drops (never misserves) the others.
META_VERSIONS = (1, 2, 3)


def slot_of(key: str, selection: Selection) -> str:
    """The index name of the variant of `key` stored for `selection`: the key itself without Vary.

    A cache key never holds a NUL (edge.cachekey refuses control characters), so a slot of a
    variant never equals a key, nor the slot of another variant.
    """
    if not selection:
        return key
    return key + "\0" + json.dumps(selection, separators=(",", ":"))


def file_id(key: str, selection: Selection = ()) -> str:
    """The hex name of the files of the variant of `key` stored for `selection`."""
    return hashlib.blake2b(slot_of(key, selection).encode(), digest_size=16).hexdigest()


def checksum(body: bytes | bytearray | memoryview) -> int:
    """CRC-32 of a body (detects truncation and bit rot; not a security check)."""
    return zlib.crc32(body)


@dataclass(slots=True, kw_only=True, eq=False)
class Entry:
    """One stored response. Mutable: a revalidation (304) refreshes its headers and dates."""

    key: str
    status: int
    headers: list[tuple[str, str]]
    size: int
    checksum: int
    stored_at: float
    freshness: Freshness
    vary: Selection = ()  # the request's values of the headers its Vary names (RFC 9111 §4.1)
    blocks: Blocks | None = None  # per-block CRC-32s: a large body, streamed from disk block by block
    fid: str = ""  # the hex name of its files; "" at construction: `file_id(key, vary)`
    meta_size: int = 0
    accounted: int = 0  # bytes this entry added to the store's total when it was admitted
    rendered: dict[str, bytes] = field(default_factory=dict)  # response heads cached by the server
    slot: str = field(init=False, default="")  # its name in the store's index: `slot_of(key, vary)`

    def __post_init__(self) -> None:
        self.slot = slot_of(self.key, self.vary)
        if not self.fid:
            self.fid = file_id(self.key, self.vary)

    @property
    def varies_on(self) -> tuple[str, ...]:
        """The names of the headers its Vary lists (its selection's names)."""
        return tuple(name for name, _ in self.vary)

    def revary(self, selection: Selection) -> None:
        """Record another selection (a 304 changed the Vary names); the files keep their name."""
        self.vary = selection
        self.slot = slot_of(self.key, selection)

    def header(self, name: str) -> str | None:
        """The first stored header called `name` (case-insensitive)."""
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)

    def age(self, now: float) -> float:
        """Current age in seconds."""
        return max(0.0, now - self.stored_at)

    def to_meta(self) -> bytes:
        """The JSON sidecar describing this entry."""
        f = self.freshness
        doc: dict[str, object] = {
            "v": 3 if self.blocks is not None else 2 if self.vary else 1,
            "key": self.key,
            "status": self.status,
            "headers": self.headers,
            "size": self.size,
            "crc32": self.checksum,
            "stored_at": self.stored_at,
            "freshness": [f.ttl, f.stale_while_revalidate, f.stale_if_error, f.must_revalidate],
        }
        if self.vary:
            doc["vary"] = self.vary
        if self.blocks is not None:
            doc["blocks"] = self.blocks.to_json()
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def from_meta(cls, data: bytes, fid: str = "") -> Entry:
        """Parse a sidecar (`fid`: the name of its files); raise ValueError/KeyError/TypeError when damaged."""
        doc = json.loads(data)
        if doc["v"] not in META_VERSIONS:
            raise ValueError(f"meta version {doc['v']} is not one of {META_VERSIONS}")
        ttl, swr, sie, mr = doc["freshness"]
        blocks = Blocks.from_json(doc["blocks"]) if "blocks" in doc else None
        if blocks is not None and not blocks.fits(int(doc["size"])):
            raise ValueError(f"{len(blocks.crc)} block checksums do not cover {doc['size']} bytes")
        return cls(
            key=str(doc["key"]),
            status=int(doc["status"]),
            headers=[(str(k), str(v)) for k, v in doc["headers"]],
            size=int(doc["size"]),
            checksum=int(doc["crc32"]),
            stored_at=float(doc["stored_at"]),
            freshness=Freshness(ttl=ttl, stale_while_revalidate=swr, stale_if_error=sie, must_revalidate=mr),
            vary=tuple((str(n), None if v is None else str(v)) for n, v in doc.get("vary", ())),
            blocks=blocks,
            fid=fid,
            meta_size=len(data),
        )
