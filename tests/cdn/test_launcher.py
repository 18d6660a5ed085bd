"""The `cdn up` plan (pure) and the process supervisor (real child processes)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from cdn.hostport import HostPort
from cdn.launcher import LaunchError, Supervisor, read_state, resolve_argv, stop_groups
from cdn.plan import Health, ServiceSpec, evaluate_health, plan_services, service_order
from cdn.topology import load_topology, parse_topology

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def topology():  # type: ignore[no-untyped-def]
    return load_topology(ROOT / "topology.yaml")


def test_plan_order_and_names(topology, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    specs = plan_services(topology, tmp_path)
    names = [s.name for s in specs]
    assert names[0] == "origin"
    assert names[-1] == "dns"
    assert set(names[1:-1]) == {e.name for e in topology.edges}
    for spec in specs:  # every service starts after what it depends on
        assert all(names.index(d) < names.index(spec.name) for d in spec.depends_on)


def test_plan_edge_argv(topology, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    specs = {s.name: s for s in plan_services(topology, tmp_path)}
    origin = f"http://{topology.origin.listen}"
    for edge in topology.edges:
        argv = list(specs[edge.name].argv)
        assert argv[:2] == ["cdn-edge", "serve"]
        assert argv[argv.index("--origin") + 1] == origin
        assert argv[argv.index("--listen") + 1] == f"{edge.address}:{edge.port}"
        assert argv[argv.index("--cache-dir") + 1] == str(tmp_path / "cache" / edge.name)
        assert argv[argv.index("--name") + 1] == edge.name
        if edge.parent:
            assert argv[argv.index("--parent") + 1] == topology.edge(edge.parent).url
        else:
            assert "--parent" not in argv
        assert specs[edge.name].health_url == f"{edge.url}/healthz"
        assert specs[edge.name].log_path == tmp_path / "logs" / f"{edge.name}.log"


def test_plan_origin_and_dns(topology, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    specs = {s.name: s for s in plan_services(topology, tmp_path, topology_path=Path("/t.yaml"))}
    assert specs["origin"].argv[:2] == ("cdn-origin", "serve")
    assert "--store" in specs["origin"].argv
    assert str(tmp_path / "store") in specs["origin"].argv
    assert specs["dns"].argv == ("cdn-dns", "serve", "--topology", "/t.yaml", "--listen",
                                 str(topology.dns.listen), "--http", str(topology.dns.http))  # fmt: skip
    assert specs["dns"].health_url == f"http://{topology.dns.http}/healthz"


def test_admin_token_goes_to_env_not_argv(topology, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    for spec in plan_services(topology, tmp_path, admin_token="s3cret"):
        assert not any("s3cret" in a for a in spec.argv)
        if spec.kind in ("origin", "edge"):
            assert spec.env["CDN_ADMIN_TOKEN"] == "s3cret"


def _mini(edges: list[dict[str, object]]) -> object:
    return parse_topology({
        "zone": {"name": "cdn.test", "routed": ["video"]},
        "regions": {"r": {"lat": 1, "lon": 1}},
        "edges": edges,
    })  # fmt: skip


def test_children_start_after_parents_even_when_listed_first() -> None:
    topo = _mini([
        {"name": "child", "region": "r", "address": "127.0.9.2", "port": 8080, "parent": "mid"},
        {"name": "mid", "region": "r", "address": "127.0.9.3", "port": 8080, "parent": "top"},
        {"name": "top", "region": "r", "address": "127.0.9.1", "port": 8080, "shield": True},
    ])  # fmt: skip
    assert [e.name for e in service_order(topo.edges)] == ["top", "mid", "child"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (200, b'{"status": "ok", "inflight": 0}', Health.UP),
        (200, b"ok", Health.UP),
        (200, b'{"status": "overloaded"}', Health.OVERLOADED),
        (200, b'{"status": "draining"}', Health.DOWN),
        (503, b'{"status": "ok"}', Health.DOWN),
        (None, b"", Health.DOWN),
    ],
)
def test_evaluate_health(status: int | None, body: bytes, expected: Health) -> None:
    assert evaluate_health(status, body) is expected


def _sleeper(tmp_path: Path, name: str, code: str = "import time; time.sleep(60)") -> ServiceSpec:
    return ServiceSpec(name=name, kind="origin", argv=(sys.executable, "-c", code),
                       listen=HostPort("127.0.0.1", 1), health_url="http://127.0.0.1:1/healthz",
                       log_path=tmp_path / "logs" / f"{name}.log")  # fmt: skip


def _alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_for_log(tmp_path: Path, name: str, text: bytes) -> None:
    """Wait (at most 10 s) until service `name` has written `text` to its log: it is running."""
    deadline = time.monotonic() + 10
    while text not in (tmp_path / "logs" / f"{name}.log").read_bytes() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_clean_shutdown_leaves_no_process(tmp_path: Path) -> None:
    # The second service forks a grandchild in its group: stopping the group must take it too.
    fork = ("import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
            "print('started', flush=True); time.sleep(60)")  # fmt: skip
    sup = Supervisor(tmp_path)
    a = sup.start(_sleeper(tmp_path, "a"))
    b = sup.start(_sleeper(tmp_path, "b", fork))
    state = read_state(tmp_path)
    assert state is not None
    assert {s["name"] for s in state["services"]} == {"a", "b"}
    _wait_for_log(tmp_path, "b", b"started")
    assert os.getpgid(a.proc.pid) == a.proc.pid  # its own process group
    sup.close()
    assert a.proc.returncode is not None
    assert b.proc.returncode is not None
    assert not _alive(a.proc.pid)
    assert not _alive(b.proc.pid)
    assert read_state(tmp_path) is None


def test_sigkill_for_stragglers(tmp_path: Path) -> None:
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('x', flush=True); time.sleep(60)"
    sup = Supervisor(tmp_path)
    run = sup.start(_sleeper(tmp_path, "stubborn", stubborn))
    _wait_for_log(tmp_path, "stubborn", b"x")
    sup.stop(grace=0.5)
    assert run.proc.returncode == -9
    assert stop_groups([run.proc.pid], grace=0.1) == []


def test_wait_healthy_reports_a_crash_with_its_log(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path)
    try:
        sup.start(_sleeper(tmp_path, "crash", "import sys; print('boom: bad option'); sys.exit(3)"))
        with pytest.raises(LaunchError, match="(?s)exited with code 3.*boom: bad option"):
            sup.wait_healthy(["crash"], timeout=10)
    finally:
        sup.close()


def test_wait_healthy_times_out(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path)
    try:
        sup.start(_sleeper(tmp_path, "silent"))
        assert sup.health("silent") is Health.DOWN
        with pytest.raises(LaunchError, match="not healthy after"):
            sup.wait_healthy(["silent"], timeout=0.3)
    finally:
        sup.close()


def test_resolve_argv_finds_our_scripts() -> None:
    argv = resolve_argv(["cdn-edge", "serve"])
    assert argv[-1] == "serve"
    assert argv[0].endswith("cdn-edge") or argv[1:3] == ["-m", "edge.cli"]


def test_start_groups_follow_dependencies(topology, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from cdn.up import _start_groups

    groups = [[s.name for s in g] for g in _start_groups(plan_services(topology, tmp_path))]
    assert groups[0] == ["origin"]
    assert groups[-1] == ["dns"]
    assert groups.index(["eu-west-1"]) > next(i for i, g in enumerate(groups) if "eu-west-shield" in g)


def test_port_conflicts_names_the_busy_address(topology, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import dataclasses
    import socket

    from cdn.up import port_conflicts

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        spec = dataclasses.replace(plan_services(topology, tmp_path)[0], listen=HostPort("127.0.0.1", port))
        assert f"127.0.0.1:{port}/tcp" in port_conflicts([spec], topology)


def test_demo_picks_two_regions_and_builds_the_readme_command(topology, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from rich.console import Console

    from cdn.demo import demo_clients, player_argv, qoe_table

    clients = demo_clients(topology)
    assert [(c.region, c.source_ip) for c in clients] == [
        ("eu-west", "127.10.1.20"),
        ("us-east", "127.10.2.20"),
    ]
    argv = player_argv(topology, clients[0], tmp_path / "r.json", speed=8)
    assert argv[1].endswith("player/cli.py")
    assert argv[2] == "http://video.example.test:8080/videos/sample/manifest.mpd"
    assert argv[argv.index("--source-ip") + 1] == "127.10.1.20"
    report = {
        "summary": {
            "average_bitrate": 784441.07,
            "stall_time": 0,
            "startup_delay": 0.6395,
            "algorithm": "mpc",
        },
        "chunks": [{"edge": "127.0.1.2:8080"}],
    }
    table = qoe_table(topology, [(clients[0], report), (clients[1], None)])
    console = Console(width=200, record=True)
    console.print(table)
    text = console.export_text()
    assert "eu-west-1 (1)" in text  # the serving edge, by name
    assert "failed" in text  # the viewer without a report
    assert "average bitrate (kbit/s)" in text
    assert "784" in text
    assert "784441" not in text
    assert "startup delay (s)" in text
    assert "0.64" in text


def test_cli_check_and_compose(tmp_path: Path) -> None:
    from cdn.cli import main
    from tests.conftest import free_port

    assert main(["check", f"http://127.0.0.1:{free_port()}/healthz", "--timeout", "0.5"]) == 1
    out = tmp_path / "dc.yml"
    assert main(["compose", "--topology", str(ROOT / "topology.yaml"), "-o", str(out)]) == 0
    assert out.read_text() == (ROOT / "docker-compose.yml").read_text()
    assert main(["down", "--state-dir", str(tmp_path)]) == 0  # nothing running there


HEALTHY_SERVER = """
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b'{"status": "ok"}' if self.path == "/healthz" else b"no"
        self.send_response(200 if self.path == "/healthz" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def test_wait_healthy_until_the_health_url_answers(tmp_path: Path) -> None:
    from tests.conftest import free_port

    port = free_port()
    spec = ServiceSpec(name="web", kind="edge", argv=(sys.executable, "-c", HEALTHY_SERVER, str(port)),
                       listen=HostPort("127.0.0.1", port), health_url=f"http://127.0.0.1:{port}/healthz",
                       log_path=tmp_path / "logs" / "web.log")  # fmt: skip
    sup = Supervisor(tmp_path)
    try:
        sup.start(spec)
        sup.wait_healthy(["web"], timeout=20)
        assert sup.health("web") is Health.UP
        sup.stop(["web"])
        assert sup.health("web") is Health.DOWN
        sup.restart("web")
        sup.wait_healthy(["web"], timeout=20)
    finally:
        sup.close()
    assert not _alive(sup.running["web"].proc.pid)


def test_status_reads_health_and_metrics_of_the_running_services(tmp_path: Path) -> None:
    import json

    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Route

    from cdn.asgiserver import serve_in_thread
    from cdn.status import collect_status, status_table
    from tests.conftest import free_port

    metrics = 'cdn_edge_requests_total{cache="HIT"} 3\ncdn_edge_requests_total{cache="MISS"} 1\n'
    app = Starlette(routes=[
        Route("/healthz", lambda r: JSONResponse({"status": "ok"})),
        Route("/metrics", lambda r: PlainTextResponse(metrics + "cdn_edge_bytes_served_total 100\n")),
    ])  # fmt: skip
    dead = f"http://127.0.0.1:{free_port()}"
    with serve_in_thread(app) as url:
        services = [
            {"name": "e1", "kind": "edge", "pid": 1, "url": url, "health_url": f"{url}/healthz"},
            {"name": "e2", "kind": "edge", "pid": 2, "url": dead, "health_url": f"{dead}/healthz"},
        ]
        (tmp_path / "cdn-state.json").write_text(json.dumps({"supervisor_pid": 1, "services": services}))
        rows = {r.name: r for r in collect_status(tmp_path, ROOT / "topology.yaml", timeout=2)}
    assert rows["e1"].health is Health.UP
    assert rows["e1"].counters is not None
    assert rows["e1"].counters.hit_ratio == 0.75
    assert rows["e2"].health is Health.DOWN
    assert rows["e2"].counters is None
    assert status_table(list(rows.values())).row_count == 2


class _Interrupted(Exception):
    """Stands for the KeyboardInterrupt a second Ctrl-C would raise."""


def test_a_second_signal_does_not_cut_the_shutdown_short(tmp_path: Path) -> None:
    import signal
    import threading

    # A service that takes a second to exit on SIGTERM, and a second service stopped after it.
    slow = ("import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: (time.sleep(1.0), sys.exit(0)));"
            "print('x', flush=True); time.sleep(60)")  # fmt: skip
    sup = Supervisor(tmp_path)
    first = sup.start(_sleeper(tmp_path, "first"))
    run = sup.start(_sleeper(tmp_path, "slow", slow))
    _wait_for_log(tmp_path, "slow", b"x")

    def interrupt(signum: int, frame: object) -> None:
        raise _Interrupted

    old = signal.signal(signal.SIGTERM, interrupt)
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM))
    try:
        timer.start()
        sup.close()  # the signal arrives while it waits for the slow service
    finally:
        timer.cancel()
        signal.signal(signal.SIGTERM, old)
    assert signal.getsignal(signal.SIGINT) is not signal.SIG_IGN  # handlers restored afterwards
    assert not _alive(run.proc.pid)
    assert not _alive(first.proc.pid)
    assert read_state(tmp_path) is None


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().decode(errors="replace").replace("\0", " ")
        except OSError:
            continue
        if text in args and int(cmdline.parent.name) != os.getpid():
            found.append(f"{cmdline.parent.name}: {args}")
    return found


@pytest.mark.slow
def test_a_failed_start_stops_everything_already_started(tmp_path: Path) -> None:
    """One edge cannot start (its cache directory is a file): the origin and the other edge must go too."""
    import io

    import yaml
    from rich.console import Console

    from cdn.up import UpOptions, running_cdn
    from tests.conftest import free_port

    data = yaml.safe_load((ROOT / "topology.yaml").read_text())
    edge_port = free_port()
    data["origin"]["listen"] = f"127.0.0.1:{free_port()}"
    data["dns"].update(listen=f"127.0.0.1:{free_port()}", http=f"127.0.0.1:{free_port()}")
    data["edges"] = [
        {"name": "good", "region": "us-east", "address": "127.0.9.1", "port": edge_port},
        {"name": "broken", "region": "ap-south", "address": "127.0.9.2", "port": edge_port},
    ]
    topology_path = tmp_path / "topology.yaml"
    topology_path.write_text(yaml.safe_dump(data))
    state = tmp_path / "state"
    (state / "cache").mkdir(parents=True)
    (state / "cache" / "broken").write_text("a file where the edge wants its cache directory")
    options = UpOptions(topology_path=topology_path, state_dir=state, sample=False, timeout=60)
    with pytest.raises(LaunchError, match="broken"), running_cdn(options, Console(file=io.StringIO())):
        pytest.fail("the CDN came up although an edge cannot start")
    assert _processes_mentioning(str(state)) == []
    assert read_state(state) is None


def test_run_group_stops_the_commands_children_when_interrupted(tmp_path: Path) -> None:
    import signal
    import threading

    from cdn.launcher import run_group

    # Like the packager: a command whose own child (ffmpeg) does the long work.
    pid_file = tmp_path / "child.pid"
    code = ("import subprocess, sys, time; c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
            f"open({str(pid_file)!r}, 'w').write(str(c.pid)); time.sleep(60)")  # fmt: skip

    def interrupt(signum: int, frame: object) -> None:
        raise _Interrupted

    def kill_when_started() -> None:
        deadline = time.monotonic() + 10
        while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    old = signal.signal(signal.SIGTERM, interrupt)
    killer = threading.Thread(target=kill_when_started)
    try:
        killer.start()
        with pytest.raises(_Interrupted):
            run_group([sys.executable, "-c", code], timeout=30, grace=2)
    finally:
        killer.join(15)
        signal.signal(signal.SIGTERM, old)
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while _running(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(child), "the command's child outlived the interrupted run"
    assert run_group([sys.executable, "-c", "raise SystemExit(3)"], timeout=30) == 3


def _running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie waiting for whoever adopted it to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_down_with_a_stale_state_file_signals_nobody_and_removes_it(tmp_path: Path) -> None:
    import json
    import subprocess

    from cdn.status import run_down

    # The supervisor and a service died long ago; their pids now belong to a process whose command
    # line merely mentions "cdn" (like `pytest tests/cdn`): it must not be signalled.
    bystander = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)", "tests/cdn", "cdn-edge.log"]
    )
    try:
        doc = {"supervisor_pid": bystander.pid,
               "services": [{"name": "edge", "kind": "edge", "pid": bystander.pid, "url": "http://127.0.0.1:1",
                             "health_url": "http://127.0.0.1:1/healthz"}]}  # fmt: skip
        (tmp_path / "cdn-state.json").write_text(json.dumps(doc))
        assert run_down(tmp_path, grace=0.5) == []
        time.sleep(0.2)
        assert bystander.poll() is None
        assert read_state(tmp_path) is None  # `cdn status` goes back to the topology
    finally:
        bystander.kill()
        bystander.wait()


def test_up_refuses_a_state_dir_another_running_up_owns(tmp_path: Path) -> None:
    import io
    import json
    import subprocess

    from rich.console import Console

    from cdn.up import UpOptions, running_cdn

    fake_up = tmp_path / "cdn"  # a process that looks like `cdn up` to `ps`
    fake_up.write_text("import time\ntime.sleep(30)\n")
    other = subprocess.Popen([sys.executable, str(fake_up), "up"])
    try:
        (tmp_path / "cdn-state.json").write_text(json.dumps({"supervisor_pid": other.pid, "services": []}))
        options = UpOptions(topology_path=ROOT / "topology.yaml", state_dir=tmp_path, sample=False)
        with pytest.raises(LaunchError, match=f"another `cdn up` \\(pid {other.pid}\\)"):
            with running_cdn(options, Console(file=io.StringIO())):
                pytest.fail("started a second CDN over a running one's state")
        assert read_state(tmp_path) == {"supervisor_pid": other.pid, "services": []}  # left alone
    finally:
        other.kill()
        other.wait()
