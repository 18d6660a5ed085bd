"""The playout buffer as a pure state machine; the caller's clock drives it (simulator or session).

Goals: one model of startup, draining, stalls and the buffer cap for both the simulator and the
real player. Plan: `Playout` is a frozen value; `advance(now)` drains the buffer in real time
(the caller scales its clock for `--speed N`), `add_chunk(now, seconds)` appends media, ends a
stall and starts playback once `startup_threshold` seconds are buffered, `wait_before_request()`
says how long to wait so the next chunk fits under `max_buffer`. A stall starts the instant the
buffer empties after playback started and ends when the next chunk arrives. Caveats: the startup
delay is not a stall; after `end_of_stream` an empty buffer means the end, not a stall.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

__all__ = ["Playout", "PlayoutConfig", "Stall"]


@dataclass(frozen=True, slots=True, kw_only=True)
class PlayoutConfig:
    """Seconds of media needed to start playing, and the buffer cap in seconds."""

    startup_threshold: float = 4.0
    max_buffer: float = 25.0

    def __post_init__(self) -> None:
        if self.startup_threshold < 0 or self.max_buffer <= 0:
            raise ValueError(
                f"startup_threshold must be >= 0 s and max_buffer > 0 s, got {self.startup_threshold}, {self.max_buffer}"
            )


@dataclass(frozen=True, slots=True)
class Stall:
    """A rebuffering event: when it began (caller's clock, s), how long it lasted, the chunk that ended it."""

    start: float
    duration: float
    chunk_index: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Playout:
    """Buffer state at instant `clock` (seconds on the caller's clock)."""

    config: PlayoutConfig
    clock: float
    session_start: float
    buffer: float = 0.0
    played: float = 0.0
    started_at: float | None = None
    stall_since: float | None = None
    stalls: tuple[Stall, ...] = ()
    chunks: int = 0
    ended: bool = False

    @classmethod
    def start(cls, config: PlayoutConfig, now: float) -> Playout:
        """An empty buffer at the start of a session."""
        return cls(config=config, clock=now, session_start=now)

    @property
    def playing(self) -> bool:
        """Playback has started and is not stalled."""
        return self.started_at is not None and self.stall_since is None and self.buffer > 0

    @property
    def startup_delay(self) -> float | None:
        """Seconds from the session start to the first frame, or None before playback started."""
        return None if self.started_at is None else self.started_at - self.session_start

    @property
    def stall_time(self) -> float:
        """Total seconds of finished stalls."""
        return sum(s.duration for s in self.stalls)

    def advance(self, now: float) -> Playout:
        """Drain the buffer up to `now`; record the instant it ran dry. Time never goes back."""
        if now < self.clock:
            raise ValueError(f"the clock went back from {self.clock} to {now}")
        if self.started_at is None or self.stall_since is not None or self.buffer <= 0:
            return replace(self, clock=now)
        drained = min(self.buffer, now - self.clock)
        buffer = self.buffer - drained
        stall_since = self.clock + drained if buffer <= 1e-12 and not self.ended else None
        return replace(
            self, clock=now, buffer=max(buffer, 0.0), played=self.played + drained, stall_since=stall_since
        )

    def add_chunk(self, now: float, seconds: float) -> Playout:
        """A chunk of `seconds` of media finished downloading at `now`."""
        state = self.advance(now)
        stalls = state.stalls
        if state.stall_since is not None:
            stalls = (*stalls, Stall(state.stall_since, now - state.stall_since, state.chunks))
        state = replace(
            state, buffer=state.buffer + seconds, chunks=state.chunks + 1, stall_since=None, stalls=stalls
        )
        if state.started_at is None and state.buffer >= self.config.startup_threshold - 1e-9:
            state = replace(state, started_at=now)
        return state

    def end_of_stream(self, now: float) -> Playout:
        """No more chunks will come: start playing what is buffered; an empty buffer is now the end."""
        state = replace(self.advance(now), ended=True)
        if state.started_at is None and state.buffer > 0:
            state = replace(state, started_at=now)
        return state

    def wait_before_request(self, chunk_seconds: float) -> float:
        """Seconds to wait so that a chunk of `chunk_seconds` fits under `max_buffer` (0 when it fits)."""
        if self.started_at is None or self.stall_since is not None:
            return 0.0
        return max(0.0, self.buffer + chunk_seconds - self.config.max_buffer)

    def stall_for_chunk(self, index: int) -> float:
        """Seconds of stall ended by chunk `index` (what QoE_lin charges to that chunk)."""
        return sum(s.duration for s in self.stalls if s.chunk_index == index)

    def drained_at(self) -> float | None:
        """The instant the buffer will run dry if nothing arrives (None when not draining)."""
        return self.clock + self.buffer if self.playing else None
