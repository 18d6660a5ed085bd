"""The ABR interface: immutable context, observation, decision; every algorithm is a pure function.

An algorithm is an object with a `name`, `initial_state(ctx)` and `choose(ctx, state, obs)`; its
state is a frozen value, so the same code drives the real session and the trace simulator, and a
decision can be replayed in a test. Bitrates are in bit/s, sizes in bytes, times in seconds.
Representation indices refer to `AbrContext.bitrates`, which is sorted ascending.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from player.errors import AbrError

__all__ = [
    "PROGRESS_SECONDS",
    "RECENT_SECONDS",
    "AbrAlgorithm",
    "AbrContext",
    "Decision",
    "Observation",
    "Progress",
    "ThroughputSample",
    "abandon_choice",
    "highest_below",
]

S = TypeVar("S")

RECENT_SECONDS = 0.25  # a sample's `recent` rate is measured over the last this many seconds of its download
PROGRESS_SECONDS = 0.5  # how often (media s) a download under way is shown to the ABR's abandonment rule


@dataclass(frozen=True, slots=True)
class ThroughputSample:
    """One finished download: `size` bytes in `download_time` seconds (request sent → last byte).

    `recent` is the rate in bit/s over the last `RECENT_SECONDS` of the download (from its progress),
    the freshest view of the link; None when the download was not watched as it arrived.
    """

    size: int
    download_time: float
    recent: float | None = None

    def __post_init__(self) -> None:
        if self.size < 0 or not self.download_time > 0:
            raise AbrError(
                f"a throughput sample needs size >= 0 and download_time > 0, got {self.size}, {self.download_time}"
            )
        if self.recent is not None and not self.recent >= 0:
            raise AbrError(f"a sample's recent rate must be >= 0 bit/s, got {self.recent}")

    @property
    def bits_per_second(self) -> float:
        """Measured throughput in bit/s."""
        return self.size * 8 / self.download_time

    def with_overhead(self, seconds: float) -> ThroughputSample:
        """This sample when `seconds` more went to other requests on the same link for the same chunk
        (its audio, size probes): the same bytes over both times, the recent rate scaled alike, i.e.
        the rate at which video reaches the buffer, which is what the ABR plans with."""
        share = self.download_time / (self.download_time + max(seconds, 0.0))
        recent = None if self.recent is None else self.recent * share
        return ThroughputSample(self.size, self.download_time / share, recent=recent)


@dataclass(frozen=True, slots=True, kw_only=True)
class AbrContext:
    """What is known about the stream before playing: the ladder, chunk duration and sizes.

    `chunk_sizes[r][k]` is the size in bytes of chunk k of representation r (real sizes, e.g. from
    HEAD requests or the files of a store); when None, sizes are estimated as bitrate × duration.
    `max_buffer` is the playout buffer cap in seconds (BOLA sizes its target from it).
    """

    bitrates: tuple[float, ...]
    segment_duration: float
    chunk_count: int | None = None
    chunk_sizes: tuple[tuple[int, ...], ...] | None = None
    max_buffer: float = 25.0

    def __post_init__(self) -> None:
        if not self.bitrates or any(b <= 0 for b in self.bitrates):
            raise AbrError(f"an ABR context needs positive bitrates, got {self.bitrates}")
        if list(self.bitrates) != sorted(self.bitrates):
            raise AbrError(f"bitrates must be ascending (use AdaptationSet.ladder()), got {self.bitrates}")
        if not self.segment_duration > 0:
            raise AbrError(f"segment_duration must be > 0 s, got {self.segment_duration}")
        if self.chunk_sizes is not None and len(self.chunk_sizes) != len(self.bitrates):
            raise AbrError(f"chunk_sizes has {len(self.chunk_sizes)} lists for {len(self.bitrates)} bitrates")

    def chunk_size(self, index: int, chunk: int) -> float:
        """Size in bytes of `chunk` in representation `index` (real when known, else nominal)."""
        if self.chunk_sizes is not None and 0 <= chunk < len(self.chunk_sizes[index]):
            return float(self.chunk_sizes[index][chunk])
        return self.bitrates[index] * self.segment_duration / 8

    def chunk_bitrate(self, index: int, chunk: int) -> float:
        """Actual bitrate in bit/s of one chunk (size × 8 / duration)."""
        return self.chunk_size(index, chunk) * 8 / self.segment_duration

    def remaining(self, chunk: int) -> int | None:
        """Chunks left from `chunk` (inclusive) to the end, or None for a live stream."""
        return None if self.chunk_count is None else max(0, self.chunk_count - chunk)


@dataclass(frozen=True, slots=True, kw_only=True)
class Observation:
    """What the player knows when choosing chunk `chunk_index`.

    `buffer_level` is the media buffered in seconds; `last_index` the previous choice (None at the
    start); `samples` the most recent finished downloads, oldest first (the last 20 are plenty);
    `sample_count` how many downloads finished in total (None = len(samples): the whole history).
    """

    chunk_index: int
    buffer_level: float
    last_index: int | None = None
    samples: tuple[ThroughputSample, ...] = ()
    sample_count: int | None = None

    @property
    def total_samples(self) -> int:
        """Number of downloads finished so far (absolute index of the next sample)."""
        return len(self.samples) if self.sample_count is None else self.sample_count

    def new_samples(self, seen: int) -> tuple[ThroughputSample, ...]:
        """The samples after the first `seen` ones (those within the window)."""
        fresh = self.total_samples - seen
        return self.samples[len(self.samples) - fresh :] if fresh > 0 else ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Progress:
    """A chunk download under way: representation `index` of chunk `chunk_index`, `received` of `size` bytes.

    `elapsed` is the seconds since the request; `buffer_level` the media buffered now (s); `playing`
    whether playback has started (before it, a slow chunk delays the start but cannot stall);
    `last_index` the representation of the previous chunk (None for the first).
    """

    chunk_index: int
    index: int
    size: int
    received: int
    elapsed: float
    buffer_level: float
    playing: bool
    last_index: int | None = None

    @property
    def bits_per_second(self) -> float:
        """The rate of this download so far in bit/s (0 before the first byte)."""
        return self.received * 8 / self.elapsed if self.elapsed > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Decision(Generic[S]):
    """The representation index chosen for the next chunk and the algorithm's next state."""

    index: int
    state: S


class AbrAlgorithm(Protocol[S]):
    """An ABR algorithm: pure functions over an immutable state `S`."""

    @property
    def name(self) -> str:
        """The registry name, shown in reports."""
        ...

    def initial_state(self, ctx: AbrContext) -> S:
        """The state before the first chunk."""
        ...

    def choose(self, ctx: AbrContext, state: S, obs: Observation) -> Decision[S]:
        """Choose the representation of chunk `obs.chunk_index`; never raises for valid inputs."""
        ...


def abandon_choice(algorithm: AbrAlgorithm[S], ctx: AbrContext, state: S, progress: Progress) -> int | None:
    """A lower representation to fetch chunk `progress.chunk_index` from instead, or None to go on.

    Algorithms may define `abandon(ctx, state, progress) -> int | None` (like dash.js's
    AbandonRequestsRule); for those that do not, a download is never abandoned. A choice that is not
    lower than the one under way is ignored.
    """
    rule = getattr(algorithm, "abandon", None)
    if rule is None:
        return None
    choice: int | None = rule(ctx, state, progress)
    return choice if choice is not None and 0 <= choice < progress.index else None


def highest_below(bitrates: Sequence[float], limit: float) -> int:
    """Index of the highest bitrate <= `limit` (0 when even the lowest is above it)."""
    best = 0
    for i, rate in enumerate(bitrates):
        if rate <= limit:
            best = i
    return best
