"""Health: the hysteresis tracker as a table, then the poller against real HTTP health endpoints."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import dns.message
import dns.query
import pytest

from cdn.topology import Capacity, HealthSettings, Topology, parse_topology
from dnsrouter.health import HealthPoller, Probe, Tracker, is_overloaded, observe, parse_probe
from dnsrouter.policy import Health, Router
from tests.dnsrouter.conftest import HealthServer, RunningRouter

SETTINGS = HealthSettings(interval=1.0, timeout=0.5, fall=2, rise=3)
CAP = Capacity(inflight=10, mbps=100.0)
OK, FAIL = Probe(True, inflight=1, mbps=1.0), Probe(False, error="refused")


def run(probes: list[Probe], start: Tracker | None = None) -> list[Health]:
    tracker = start or Tracker()
    seen = []
    for p in probes:
        tracker = observe(tracker, p, SETTINGS, CAP)
        seen.append(tracker.health)
    return seen


def test_first_result_decides() -> None:
    assert run([OK]) == [Health.UP]
    assert run([FAIL]) == [Health.DOWN]


def test_fall_and_rise_hysteresis() -> None:
    up, down = Health.UP, Health.DOWN
    assert run([OK, FAIL, OK, FAIL, FAIL]) == [up, up, up, up, down]  # 2 in a row to go down
    assert run([FAIL, OK, OK, FAIL, OK, OK, OK]) == [down, down, down, down, down, down, up]  # 3 to come up


@pytest.mark.parametrize(
    ("probe", "overloaded"),
    [
        (Probe(True, inflight=11, mbps=1.0), True),
        (Probe(True, inflight=10, mbps=100.0), False),
        (Probe(True, inflight=0, mbps=100.1), True),
        (Probe(True), False),
    ],
)
def test_overload(probe: Probe, overloaded: bool) -> None:
    assert is_overloaded(probe, CAP) is overloaded
    tracker = observe(Tracker(), probe, SETTINGS, CAP)
    assert tracker.health is Health.UP
    assert tracker.state.overloaded is overloaded


def test_no_capacity_means_never_overloaded() -> None:
    assert not is_overloaded(Probe(True, inflight=10**9, mbps=1e9), Capacity())


@pytest.mark.parametrize(
    ("status", "body", "ok", "inflight", "mbps"),
    [
        (200, b'{"status": "ok", "inflight": 3, "bytes_per_second": 1250000}', True, 3, 10.0),
        (200, b'{"status": "draining"}', False, None, None),
        (503, b'{"status": "ok"}', False, None, None),
        (200, b"not json", False, None, None),
        (200, b'{"status": "ok", "inflight": "x"}', True, None, None),
    ],
)
def test_parse_probe(status: int, body: bytes, ok: bool, inflight: int | None, mbps: float | None) -> None:
    probe = parse_probe(status, body)
    assert (probe.ok, probe.inflight, probe.mbps) == (ok, inflight, mbps)


# ---------------------------------------------------------------- live


def test_poller_reports_each_change_once(demo_topology: Topology) -> None:
    router = Router(demo_topology.edges, answer_count=1)
    changes: list[dict[str, Health]] = []
    poller = HealthPoller(
        demo_topology.edges, SETTINGS, router,
        on_change=lambda: changes.append({n: s.health for n, s in router.states.items()}),
    )  # fmt: skip
    edge = demo_topology.edges[0]
    for probe in (OK, OK, FAIL, FAIL, FAIL):  # up at once, then down after `fall` = 2 failures
        poller.apply(edge, probe)
    assert [c[edge.name] for c in changes] == [Health.UP, Health.DOWN]  # the router already has it


def _topology(data: dict[str, Any], servers: list[HealthServer]) -> Topology:
    """The demo topology with its edges' ports pointed at the health servers, polled every 0.2 s."""
    for edge, server in zip(data["edges"], servers, strict=True):
        assert edge["address"] == server.host
        edge["port"] = server.port
        edge["capacity"] = {"inflight": 100, "mbps": 1000}
    data["dns"]["health"] = {"interval": 0.2, "timeout": 0.5, "fall": 2, "rise": 2}
    return parse_topology(data)


def _answer(port: int, client: str) -> list[str]:
    reply = dns.query.tcp(
        dns.message.make_query("video.cdn.test", "A"), "127.0.0.1", port=port, timeout=3, source=client
    )
    return [rd.address for rrset in reply.answer for rd in rrset]


def _wait_for(port: int, client: str, expected: list[str], within: float) -> float:
    start = time.monotonic()
    while True:
        got = _answer(port, client)
        if got == expected:
            return time.monotonic() - start
        if time.monotonic() - start > within:
            raise AssertionError(f"still answering {got}, not {expected}, after {within} s")
        time.sleep(0.05)


@pytest.mark.network
def test_killed_edge_leaves_and_returns(
    demo_data: dict[str, Any],
    health_servers: Callable[[str], HealthServer],
    router_factory: Callable[..., RunningRouter],
) -> None:
    servers = [health_servers(e["address"]) for e in demo_data["edges"]]
    running = router_factory(_topology(demo_data, servers), poll_health=True)
    us = "127.10.2.9"
    _wait_for(running.port, us, ["127.0.2.1"], 3)
    us_server = servers[2]
    port = us_server.port
    us_server.stop()  # killed
    elapsed = _wait_for(running.port, us, ["127.0.1.2"], 3.0)  # Ashburn -> next nearest: Paris
    assert elapsed < 3.0
    us_server.start(port)  # recovered
    _wait_for(running.port, us, ["127.0.2.1"], 3.0)


@pytest.mark.network
def test_overloaded_edge_gets_no_new_clients_but_is_not_down(
    demo_data: dict[str, Any],
    health_servers: Callable[[str], HealthServer],
    router_factory: Callable[..., RunningRouter],
) -> None:
    servers = [health_servers(e["address"]) for e in demo_data["edges"]]
    running = router_factory(_topology(demo_data, servers), poll_health=True)
    ap = "127.10.3.9"
    _wait_for(running.port, ap, ["127.0.3.1"], 3)
    servers[3].report["inflight"] = 500  # above capacity.inflight = 100
    _wait_for(running.port, ap, ["127.0.1.2"], 3)
    state = running.call(lambda: running.service.responder.router.states["ap-south-1"])
    assert state.health is Health.UP
    assert state.overloaded
    servers[3].report["inflight"] = 5
    _wait_for(running.port, ap, ["127.0.3.1"], 3)


@pytest.mark.network
def test_all_down_answers_nearest_anyway(
    demo_data: dict[str, Any], health_servers: Callable[[str], HealthServer], router_factory: Callable[..., RunningRouter],
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    servers = [health_servers(e["address"]) for e in demo_data["edges"]]
    running = router_factory(_topology(demo_data, servers), poll_health=True)
    _wait_for(running.port, "127.10.3.9", ["127.0.3.1"], 3)
    for s in servers:
        s.status = 503
    deadline = time.monotonic() + 3
    while running.call(lambda: any(s.usable for s in running.service.responder.router.states.values())):
        assert time.monotonic() < deadline, "edges not marked down"
        time.sleep(0.05)
    with caplog.at_level("WARNING", logger="dnsrouter"):
        assert _answer(running.port, "127.10.3.9") == ["127.0.3.1"]
    assert "every edge is down" in caplog.text


def test_demo_settings_drop_a_dead_edge_within_3_s(demo_topology: Topology) -> None:
    # Worst case: the edge dies just after answering a poll; the next `fall` polls fail, the last one
    # only after `timeout` (an edge that accepts but never answers). Each probe is bounded in total.
    h = demo_topology.dns.health
    assert h.fall * h.interval + h.timeout < 3.0
    assert h.timeout < h.interval  # a round ends before the next one is due


def _trickling_server(listener: socket.socket, stop: threading.Event) -> None:
    """Answer one health request with a header every 0.15 s: every read is quick, the whole is slow."""
    conn, _ = listener.accept()
    with conn:
        conn.recv(4096)
        try:
            conn.sendall(b"HTTP/1.1 200 OK\r\n")
            for _ in range(12):
                if stop.wait(0.15):
                    return
                conn.sendall(b"X-Pad: 1\r\n")
            conn.sendall(b'Content-Length: 16\r\n\r\n{"status": "ok"}')
        except OSError:  # the poller gave up and closed the connection
            return


@pytest.mark.network
def test_probe_is_bounded_in_total_not_per_read(demo_data: dict[str, Any]) -> None:
    import asyncio

    import httpx

    from dnsrouter.health import HealthPoller
    from dnsrouter.policy import Router

    stop = threading.Event()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        edge = {**demo_data["edges"][2], "health_url": f"http://127.0.0.1:{port}/healthz"}
        demo_data["edges"] = [edge]
        topology = parse_topology(demo_data)
        settings = HealthSettings(interval=1.0, timeout=0.5, fall=2, rise=2)
        poller = HealthPoller(topology.edges, settings, Router(topology.edges, answer_count=1))
        server = threading.Thread(target=_trickling_server, args=(listener, stop), daemon=True)
        server.start()

        async def poll() -> None:
            async with httpx.AsyncClient(timeout=httpx.Timeout(settings.timeout), trust_env=False) as client:
                await poller.poll_once(client)

        try:
            asyncio.run(poll())
        finally:
            stop.set()
            server.join(5)
    last = poller.trackers[edge["name"]].last
    assert last is not None
    assert not last.ok
    assert "no answer within 0.5 s" in (last.error or "")


@pytest.mark.network
def test_a_dead_edge_is_not_held_back_by_a_slow_one(demo_data: dict[str, Any]) -> None:
    import asyncio

    import httpx

    from dnsrouter.health import HealthPoller
    from dnsrouter.policy import EdgeState, Router

    class Watched(Router):
        """The real router, noting when the dead edge goes down."""

        down = asyncio.Event()

        def set_state(self, name: str, state: EdgeState) -> bool:
            if name == dead["name"] and state.health is Health.DOWN:
                self.down.set()
            return super().set_state(name, state)

    with socket.create_server(("127.0.0.1", 0)) as silent, socket.create_server(("127.0.0.1", 0)) as gone:
        dead_port = gone.getsockname()[1]
        gone.close()  # nothing listens there any more: connections are refused at once
        hung = {**demo_data["edges"][2], "health_url": f"http://127.0.0.1:{silent.getsockname()[1]}/healthz"}
        dead = {**demo_data["edges"][3], "health_url": f"http://127.0.0.1:{dead_port}/healthz"}
        demo_data["edges"] = [hung, dead]
        topology = parse_topology(demo_data)
        router = Watched(topology.edges, answer_count=1)
        poller = HealthPoller(
            topology.edges, HealthSettings(interval=1.0, timeout=0.8, fall=1, rise=1), router
        )

        async def poll() -> bool:
            async with httpx.AsyncClient(trust_env=False) as client:
                task = asyncio.create_task(poller.poll_once(client))
                await asyncio.wait(
                    {task, asyncio.create_task(router.down.wait())}, return_when="FIRST_COMPLETED"
                )
                round_over = task.done()
                await task
                return round_over

        round_over = asyncio.run(poll())
    assert router.down.is_set()
    assert not round_over  # applied while the silent edge's probe was still waiting
    assert router.states[hung["name"]].health is Health.DOWN
