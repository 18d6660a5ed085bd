"""Process supervisor for `cdn up`: start each planned service, wait for health, stop cleanly.

Each service runs in its own process group (so SIGTERM reaches its children too), with stdout and
stderr in its log file under STATE/logs/. The supervisor writes STATE/cdn-state.json listing the
groups so `cdn status` and `cdn down` can find them from another shell. Stopping sends SIGTERM to
every group (reverse start order), waits, then SIGKILLs stragglers.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cdn.plan import Health, ServiceSpec, evaluate_health
from cdn.tls import client_tls_context

__all__ = [
    "STATE_FILE",
    "STOP_SIGNALS",
    "LaunchError",
    "Supervisor",
    "probe",
    "probe_why",
    "read_state",
    "resolve_argv",
    "run_group",
    "signals_ignored",
    "stop_groups",
]

STATE_FILE = "cdn-state.json"


class LaunchError(RuntimeError):
    """Raised when a service cannot be started or does not become healthy in time."""


def resolve_argv(argv: Sequence[str]) -> list[str]:
    """Turn a console-script name into the script next to this interpreter (the venv's bin/).

    Falls back to PATH, then to `python -m PKG.cli` for our own scripts, so the launcher works from
    a venv that is not activated.
    """
    name, rest = argv[0], list(argv[1:])
    local = Path(sys.executable).parent / name
    if local.is_file() and os.access(local, os.X_OK):
        return [str(local), *rest]
    found = shutil.which(name)
    if found:
        return [found, *rest]
    modules = {
        "cdn": "cdn.cli",
        "cdn-origin": "origin.cli",
        "cdn-edge": "edge.cli",
        "cdn-dns": "dnsrouter.cli",
        "cdn-player": "player.cli",
    }
    if name in modules:
        return [sys.executable, "-m", modules[name], *rest]
    return [name, *rest]


@functools.cache
def _trusting(ca: Path) -> ssl.SSLContext:
    """A client context trusting `ca`, built once per file (health is polled many times while starting)."""
    return client_tls_context(ca)


def probe(
    url: str, *, timeout: float = 1.0, context: ssl.SSLContext | None = None
) -> tuple[int | None, bytes]:
    """GET `url` once; return (status, body), or (None, b"") when nothing answers.

    `context` verifies an https server (e.g. `client_tls_context(ca)`); a refused certificate is no answer.
    """
    status, body, _ = probe_why(url, timeout=timeout, context=context)
    return status, body


def probe_why(
    url: str, *, timeout: float = 1.0, context: ssl.SSLContext | None = None
) -> tuple[int | None, bytes, object]:
    """`probe`, plus why nothing answered (the error, or urllib's reason for it); None when something did."""
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as resp:  # noqa: S310 - loopback URLs from the plan
            return int(resp.status), resp.read(65536), None
    except urllib.error.HTTPError as exc:
        with contextlib.closing(exc):
            return int(exc.code), b"", None
    except urllib.error.URLError as exc:
        return None, b"", exc.reason
    except (OSError, ValueError, http.client.HTTPException) as exc:
        return None, b"", exc


@dataclass(slots=True)
class Running:
    """A started service: its spec and its process (the group id equals the pid)."""

    spec: ServiceSpec
    proc: subprocess.Popen[bytes]


class Supervisor:
    """Starts, watches and stops the processes of one plan."""

    def __init__(self, state_dir: Path, *, popen_extra_env: dict[str, str] | None = None) -> None:
        self.state_dir = state_dir
        self.running: dict[str, Running] = {}
        self._extra_env = popen_extra_env or {}

    def start(self, spec: ServiceSpec) -> Running:
        """Start one service in its own process group, logging to its log file."""
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self._extra_env, **spec.env}
        with open(spec.log_path, "ab") as log:
            try:
                proc = subprocess.Popen(  # noqa: S603 - argv comes from the plan
                    resolve_argv(spec.argv),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                )
            except OSError as exc:
                raise LaunchError(f"cannot start {spec.name} ({spec.argv[0]}): {exc}") from exc
        self.running[spec.name] = Running(spec, proc)
        self.write_state()
        return self.running[spec.name]

    def restart(self, name: str) -> Running:
        """Start a stopped (or dead) service again with the same spec."""
        spec = self.running[name].spec
        self.stop([name])
        return self.start(spec)

    def health(self, name: str, *, timeout: float = 1.0) -> Health:
        """Probe one running service; a dead process is DOWN whatever answers its port."""
        run = self.running[name]
        if run.proc.poll() is not None:
            return Health.DOWN
        context = _trusting(run.spec.ca) if run.spec.ca is not None else None
        return evaluate_health(*probe(run.spec.health_url, timeout=timeout, context=context))

    def wait_healthy(
        self,
        names: Iterable[str],
        *,
        timeout: float = 30.0,
        extra: Callable[[], bool] | None = None,
    ) -> None:
        """Block until every named service is UP (and `extra()` is true); raise LaunchError otherwise."""
        pending = list(names)
        deadline = time.monotonic() + timeout
        while pending:
            for name in list(pending):
                run = self.running[name]
                if run.proc.poll() is not None:
                    raise LaunchError(
                        f"{name} exited with code {run.proc.returncode} while starting; "
                        f"see {run.spec.log_path}:\n{tail(run.spec.log_path)}"
                    )
                if self.health(name) is Health.UP and (name != pending[-1] or extra is None or extra()):
                    pending.remove(name)
            if pending and time.monotonic() > deadline:
                logs = ", ".join(str(self.running[n].spec.log_path) for n in pending)
                raise LaunchError(f"not healthy after {timeout:.0f} s: {', '.join(pending)}; see {logs}")
            if pending:
                time.sleep(0.2)

    def stop(self, names: Sequence[str] | None = None, *, grace: float = 5.0) -> None:
        """SIGTERM the named services' groups (all, in reverse start order, by default), then SIGKILL."""
        order = list(names) if names is not None else list(reversed(self.running))
        procs = [self.running[n].proc for n in order if n in self.running]

        # The leaders may be gone while their children live on: signal every group we started.
        def reap() -> None:
            for p in procs:
                p.poll()

        stop_groups([p.pid for p in procs], grace=grace, reap=reap)
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=grace)
        self.write_state()

    def close(self) -> None:
        """Stop everything and remove the state file; a second Ctrl-C or SIGTERM cannot cut this short."""
        with signals_ignored():
            self.stop()
            (self.state_dir / STATE_FILE).unlink(missing_ok=True)

    def write_state(self) -> None:
        """Record the running groups in STATE/cdn-state.json (for `cdn status` and `cdn down`)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        doc = {
            "supervisor_pid": os.getpid(),
            "services": [
                {
                    "name": r.spec.name,
                    "kind": r.spec.kind,
                    "pid": r.proc.pid,
                    "url": r.spec.url,
                    "health_url": r.spec.health_url,
                    "ca": str(r.spec.ca) if r.spec.ca is not None else None,
                    "log": str(r.spec.log_path),
                    "alive": r.proc.poll() is None,
                }
                for r in self.running.values()
            ],
        }
        tmp = self.state_dir / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(doc, indent=2))
        tmp.replace(self.state_dir / STATE_FILE)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def signals_ignored() -> Iterator[None]:
    """Ignore SIGINT, SIGTERM and SIGHUP inside the block (main thread only; elsewhere a no-op).

    Used around stopping: an impatient second Ctrl-C would otherwise raise KeyboardInterrupt in the
    middle of it and leave the remaining services running.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, signal.SIG_IGN) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def read_state(state_dir: Path) -> dict[str, Any] | None:
    """The state file written by a running `cdn up`, or None when there is none."""
    path = state_dir / STATE_FILE
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _group_alive(pgid: int) -> bool:
    """True while any process of the group exists (a zombie leader counts until it is reaped)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_groups(
    pgids: Sequence[int],
    *,
    grace: float = 5.0,
    reap: Callable[[], None] | None = None,
) -> list[int]:
    """SIGTERM each process group, wait up to `grace` s, SIGKILL what is left; return the killed ones.

    `reap` collects exited children when the groups' leaders are our own children (else they stay
    zombies and their groups look alive until the grace time is over).
    """
    for pgid in pgids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_group_alive(g) for g in pgids):
        if reap is not None:
            reap()
        time.sleep(0.05)
    killed = [g for g in pgids if _group_alive(g)]
    for pgid in killed:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    if reap is not None:
        reap()
    return killed


def run_group(argv: Sequence[str], *, timeout: float, grace: float = 5.0) -> int:
    """Run a command in its own process group to the end; return its exit code.

    Interrupted (Ctrl-C, SIGTERM) or over `timeout` s, the whole group is stopped, the command's own
    children too (a plain `subprocess.run` kills only the command and leaves, e.g., its ffmpeg running).
    Raises LaunchError on timeout.
    """
    proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, start_new_session=True)  # noqa: S603

    def reap() -> None:
        proc.poll()

    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        stop_groups([proc.pid], grace=grace, reap=reap)
        raise LaunchError(f"{argv[0]} did not finish within {timeout:.0f} s") from exc
    except BaseException:
        stop_groups([proc.pid], grace=grace, reap=reap)
        raise


def tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log file (for error messages)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])
