"""The extra processes of `cdn-dns serve --workers N`, and the private link to each of them.

The main process starts N-1 workers sharing the DNS port (SO_REUSEPORT) and gives each one end of a
socketpair (`--link-fd`). Over it the main process pushes the edges' states, the whole table when the
link opens and again after every change its health poller sees (`WorkerPool.push_states`): only the
main process polls the edges, and the workers route from what they are told (`serve_link`). At every
/metrics scrape it also asks every worker for its counters, all under one deadline
(`WorkerPool.collect`), and adds them to its own. No port is opened for this, so nothing else can
read or reach the link; a worker stops when the main process's end closes, so even a killed main
process leaves nothing listening.

Frames are in `link.py`. A reader task per link matches counters replies to waiting requests by
number, so a reply that arrives after its scrape gave up is simply dropped; a frame that is not as
expected is logged and skipped, on either side.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import subprocess
import sys
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from dnsrouter.config import DnsRouterConfig
from dnsrouter.link import HEADER, Header, Kind, decode_states, encode_states, frame
from dnsrouter.metrics import Counters, Metrics, WorkerCounters
from dnsrouter.policy import EdgeState, Router

__all__ = [
    "COLLECT_TIMEOUT",
    "Worker",
    "WorkerLink",
    "WorkerPool",
    "serve_link",
    "spawn_workers",
    "stop_workers",
    "worker_command",
]

log = logging.getLogger("dnsrouter.workers")
COLLECT_TIMEOUT = 1.0  # s: how long a scrape waits for the workers' counters
STOP_TIMEOUT = 10.0  # s: how long a worker gets to exit after SIGTERM before SIGKILL
SKIP_CHUNK = 1 << 16  # bytes: a skipped frame's body is read and dropped this much at a time


@dataclass(frozen=True, slots=True)
class Worker:
    """One extra worker process and the main process's end of its link."""

    process: subprocess.Popen[bytes]
    link: socket.socket

    @property
    def name(self) -> str:
        return f"worker pid {self.process.pid}"


def worker_command(config: DnsRouterConfig, topology: str, link_fd: int) -> list[str]:
    """The command line of one extra worker: DNS only (no side port, no health polls), linked on `link_fd`."""
    return [
        sys.executable, "-m", "dnsrouter.cli", "serve", "--topology", topology, "--listen", str(config.listen),
        "--workers", "1", "--reuse-port", "--no-http", "--log-level", config.log_level,
        "--link-fd", str(link_fd),
    ]  # fmt: skip


def spawn_workers(config: DnsRouterConfig, topology: str) -> list[Worker]:
    """Start `config.workers - 1` extra processes, each with its own link."""
    workers: list[Worker] = []
    try:
        for _ in range(config.workers - 1):
            workers.append(_spawn_one(config, topology))
    except BaseException:
        stop_workers(workers)
        raise
    return workers


def _spawn_one(config: DnsRouterConfig, topology: str) -> Worker:
    ours, theirs = socket.socketpair()  # not inheritable: only `theirs` goes to this worker, by pass_fds
    try:
        with theirs:  # the worker holds its own copy; ours would keep the link open after it exits
            cmd = worker_command(config, topology, theirs.fileno())
            process = subprocess.Popen(cmd, pass_fds=(theirs.fileno(),))
    except BaseException:
        ours.close()
        raise
    return Worker(process, ours)


def stop_workers(workers: Sequence[Worker], timeout: float = STOP_TIMEOUT) -> None:
    """Terminate every worker, wait for all of them (SIGKILL after `timeout` s) and close the links."""
    for w in workers:
        w.link.close()  # a worker also stops by itself when its link closes
        w.process.terminate()
    deadline = time.monotonic() + timeout
    for w in workers:
        try:
            w.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %g s of SIGTERM; killing it", w.name, timeout)
            w.process.kill()
            w.process.wait()


class WorkerLink:
    """The main process's side of one worker's link: send it frames, ask for counters, keep the last ones."""

    def __init__(self, sock: socket.socket, name: str) -> None:
        self.sock, self.name = sock, name
        self.last = Counters()  # the last counters received (zero until the first reply)
        self.answering: bool | None = None  # None: not yet heard from (for logging changes only)
        self._seq = 0
        self._pending: dict[int, asyncio.Future[bytes]] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None

    @property
    def closed(self) -> bool:
        return self._reader_task is None or self._reader_task.done()

    async def open(self) -> None:
        """Attach the link to the running event loop and start reading replies."""
        reader, self._writer = await asyncio.open_connection(sock=self.sock)
        self._reader_task = asyncio.create_task(self._read_replies(reader), name=f"link-{self.name}")

    async def close(self) -> None:
        """Stop reading and close the link (the worker then stops by itself)."""
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader_task
        if self._writer is not None:
            self._writer.close()

    def send(self, data: bytes) -> None:
        """Queue `data` (whole frames) on the link, unless it is closed (the worker has exited)."""
        if not self.closed and self._writer is not None:
            self._writer.write(data)

    async def fetch(self, deadline: float) -> bool:
        """Ask for the worker's counters and wait until `deadline` (loop time); True when they came."""
        if self.closed or self._writer is None:
            return False
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        seq, waiter = self._seq, asyncio.get_running_loop().create_future()
        self._pending[seq] = waiter
        try:
            self._writer.write(frame(Kind.COUNTERS_REQUEST, seq))
            async with asyncio.timeout_at(deadline):
                body = await waiter
            self.last = Counters.from_json(body)
        except (TimeoutError, ConnectionError, ValueError) as exc:
            self._note(False, _why(exc))
            return False
        finally:
            self._pending.pop(seq, None)
        self._note(True, "")
        return True

    async def _read_replies(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                got = await _read_frame(reader, (Kind.COUNTERS,), self.name)
                if got is not None:
                    self._resolve(got[0].seq, got[1])
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            error = ConnectionError(f"the link closed ({exc}); has the worker exited?")
            for waiter in self._pending.values():
                if not waiter.done():
                    waiter.set_exception(error)

    def _resolve(self, seq: int, body: bytes) -> None:
        waiter = self._pending.get(seq)
        if waiter is not None and not waiter.done():  # else its scrape gave up: the reply is dropped
            waiter.set_result(body)

    def _note(self, answering: bool, why: str) -> None:
        before, self.answering = self.answering, answering
        if answering and before is False:
            log.info("%s answers again; its counters are fresh in /metrics", self.name)
        elif not answering and before is None:  # usually a scrape while it is still starting
            log.info("%s has not reported its counters yet (%s)", self.name, why)
        elif not answering and before:
            log.warning("%s did not report its counters (%s); /metrics keeps its last ones", self.name, why)


def _why(exc: Exception) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer before the scrape's deadline"
    return str(exc) or type(exc).__name__


class WorkerPool:
    """Every extra worker's link: for pushing edge states to them all and summing their counters."""

    def __init__(self, links: Sequence[WorkerLink], *, timeout: float = COLLECT_TIMEOUT) -> None:
        self.links, self.timeout = list(links), timeout

    @classmethod
    def of(cls, workers: Sequence[Worker], *, timeout: float = COLLECT_TIMEOUT) -> WorkerPool:
        """The pool over these workers' links."""
        return cls([WorkerLink(w.link, w.name) for w in workers], timeout=timeout)

    async def start(self) -> None:
        """Open every link on the running loop."""
        for link in self.links:
            await link.open()

    async def close(self) -> None:
        """Close every link."""
        for link in self.links:
            await link.close()

    def push_states(self, states: Mapping[str, EdgeState], generation: int) -> None:
        """Send every worker the whole edge table (`generation`: the router's); queued, not waited for."""
        data = frame(Kind.EDGE_STATES, generation, encode_states(states))
        for link in self.links:
            link.send(data)

    async def collect(self) -> WorkerCounters:
        """Every worker's counters now, asked concurrently and waited for at most `timeout` s in all."""
        deadline = asyncio.get_running_loop().time() + self.timeout
        fresh = await asyncio.gather(*(link.fetch(deadline) for link in self.links))
        total = sum((link.last for link in self.links), Counters())
        return WorkerCounters(total, len(self.links), sum(fresh))


async def _read_frame(
    reader: asyncio.StreamReader, expected: Collection[Kind], peer: str
) -> tuple[Header, bytes] | None:
    """The next frame of a kind in `expected`, or None for one that was logged and skipped by its length.

    Raises asyncio.IncompleteReadError or ConnectionError when the link closes.
    """
    header = Header.unpack(await reader.readexactly(HEADER.size))
    problem = header.problem(expected)
    if problem is None:
        return header, await reader.readexactly(header.size)
    log.warning("%s sent %s; skipped", peer, problem)
    left = header.size
    while left:  # in chunks: the length is all we trust, and it may be large
        left -= len(await reader.readexactly(min(left, SKIP_CHUNK)))
    return None


async def serve_link(
    sock: socket.socket, metrics: Metrics, router: Router, told: asyncio.Event | None = None
) -> None:
    """In a worker: answer the main process's requests for `metrics` and apply the edge states it pushes
    to `router`, setting `told` once the first table is in; return when the link closes."""
    reader, writer = await asyncio.open_connection(sock=sock)
    try:
        while True:
            try:
                got = await _read_frame(reader, (Kind.COUNTERS_REQUEST, Kind.EDGE_STATES), "the main process")
                if got is None:
                    continue
                header, body = got
                if header.kind == Kind.COUNTERS_REQUEST:
                    writer.write(frame(Kind.COUNTERS, header.seq, metrics.snapshot().to_json()))
                    await writer.drain()
                elif _apply_states(router, header.seq, body) and told is not None:
                    told.set()
            except (asyncio.IncompleteReadError, ConnectionError):
                log.info("the main process closed the link; stopping")
                return
    finally:
        writer.close()


def _apply_states(router: Router, generation: int, body: bytes) -> bool:
    """Apply the main process's edge table to `router`; False (logged, nothing applied) when it is malformed."""
    try:
        states = decode_states(body, router.states)
    except ValueError as exc:
        log.warning("the main process sent edge states that are not valid (%s); ignored", exc)
        return False
    for name, state in states.items():
        if router.set_state(name, state):
            log.debug("edge %s is now %s (main process generation %d)", name, state, generation)
    return True
