"""Integration tests of ``ocs-core up`` / ``down`` / ``status``: a real router and real agents.

Only the first test starts a router of its own (that is the launcher's job); the foreground
test runs agents against the session's router.
"""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from ocs_core.supervisor.process_group import group_alive
from ocs_core.testing import free_port, http_call, project_env, write_site_config

FAKE = [{"agent-class": "FakeDataAgent", "instance-id": "fa"},
        {"agent-class": "FakeDataAgent", "instance-id": "fb"},
        {"agent-class": "FakeDataAgent", "instance-id": "off", "manage": "ignore"}]


@pytest.fixture
def site(tmp_path):
    port = free_port()
    path = write_site_config(tmp_path, port, FAKE, log_dir="logs")
    yield tmp_path, f"http://127.0.0.1:{port}/call"
    # never leave anything behind, whatever happened in the test
    cli(tmp_path, "down", "--timeout", "10")


def cli(cwd, *argv, timeout=90):
    return subprocess.run([sys.executable, "-m", "ocs_core.cli", *argv], cwd=cwd, env=project_env(),
                          capture_output=True, text=True, timeout=timeout)


def state(cwd):
    return json.loads((cwd / "run" / "site-state.json").read_text())


def callable_(http, instance):
    reply = http_call(http, f"observatory.{instance}", "get_agent_class", timeout=3)
    return reply == {"args": ["FakeDataAgent"]}


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def all_pids(doc):
    groups = {doc["router"]["pgid"]} | {a["pgid"] for a in doc["agents"].values() if a["pgid"]}
    pids = {doc["supervisor"]["pid"], doc["router"]["pid"]}
    pids |= {a["pid"] for a in doc["agents"].values() if a["pid"]}
    return pids, groups


def assert_gone(pids, groups):
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                assert f.read().split(") ")[1][0] in "ZX", f"pid {pid} still alive"
        except FileNotFoundError:
            pass
    for pgid in groups:
        assert not group_alive(pgid), f"process group {pgid} still has members"


def test_up_restart_status_down(site):
    cwd, http = site
    up = cli(cwd, "up", "--backoff", "0.2", "2", "60")
    assert up.returncode == 0, up.stderr + up.stdout
    assert "site up:" in up.stdout and "fa (pid" in up.stdout and "off" not in up.stdout
    progress = [line.strip() for line in up.stdout.splitlines() if line.startswith("  ")]
    assert progress[0].startswith("router: ready at ws://127.0.0.1:") and progress[0].endswith(" s)")
    assert {line.split(":")[0] for line in progress[1:]} == {"fa", "fb"}
    assert all(": callable, pid " in line for line in progress[1:])
    assert callable_(http, "fa") and callable_(http, "fb")
    first = state(cwd)
    pids, groups = all_pids(first)
    assert set(first["agents"]) == {"fa", "fb"}

    again = cli(cwd, "up")
    assert again.returncode == 1 and "already up" in again.stderr
    assert "`ocs-core up INSTANCE` starts one more" in again.stderr

    old = first["agents"]["fa"]["pid"]
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: state(cwd)["agents"]["fa"]["restarts"] == 1
             and state(cwd)["agents"]["fa"]["state"] == "running", 20, "fa restarted")
    new = state(cwd)["agents"]["fa"]["pid"]
    assert new != old and callable_(http, "fa")
    pids.add(new)
    groups.add(new)
    log = (cwd / "logs" / "supervisor.log").read_text()
    assert "fa: exited with code -9 (SIGKILL)" in log and "fa: restarting in 0.2 s" in log
    assert (cwd / "logs" / "fa.out").exists() and (cwd / "logs" / "observatory.fa.log").exists()

    status = cli(cwd, "status", "--listen-time", "1.5")
    assert status.returncode == 0, status.stderr + status.stdout
    lines = {line.split()[0]: line.split() for line in status.stdout.splitlines() if line.strip()}
    assert lines["router"][1] == "up" and lines["supervisor"][1] == "up"
    assert lines["fa"][2:6] == ["yes", "running", str(new), "1"]
    assert lines["fb"][2] == "yes" and lines["fb"][5] == "0"
    assert lines["off"][2:4] == ["no", "-"]

    # one instance at a time on the running site
    restart = cli(cwd, "restart", "fb")
    assert restart.returncode == 0, restart.stderr + restart.stdout
    assert restart.stdout.splitlines()[0] == "fb: restarting" and "fb: callable, pid" in restart.stdout
    assert "exited with code" not in restart.stderr  # an exit asked for is not reported
    fb = state(cwd)["agents"]["fb"]
    assert fb["state"] == "running" and fb["pid"] != first["agents"]["fb"]["pid"] and callable_(http, "fb")
    pids.add(fb["pid"])
    groups.add(fb["pid"])
    stop = cli(cwd, "down", "fb")
    assert stop.returncode == 0 and stop.stdout.splitlines() == ["fb: stopping", "stopped: fb"]
    assert state(cwd)["agents"]["fb"]["state"] == "stopped" and not callable_(http, "fb")
    added = cli(cwd, "up", "off")  # manage: ignore, so not started by `up`; asked for by name
    assert added.returncode == 0, added.stderr + added.stdout
    assert "off: starting" in added.stdout and callable_(http, "off")
    off = state(cwd)["agents"]["off"]
    pids.add(off["pid"])
    groups.add(off["pid"])
    unknown = cli(cwd, "restart", "nope")
    assert unknown.returncode == 1 and "unknown instance-id 'nope'" in unknown.stderr

    down = cli(cwd, "down")
    assert down.returncode == 0, down.stderr
    assert "supervisor" in down.stdout and "stopped" in down.stdout and "left over" not in down.stdout
    assert_gone(pids, groups)
    assert not (cwd / "run" / "supervisor.pid").exists()
    assert cli(cwd, "down").stdout.startswith("site down: nothing was running")
    after = cli(cwd, "status", "--listen-time", "0.2")
    assert after.returncode == 1 and "router      down" in after.stdout


def test_foreground_up_stops_on_ctrl_c(router, tmp_path):
    """Against the session's router (--no-router): the router's own stop is covered above."""
    router.add_instance("FakeDataAgent", "launcher-fg")
    proc = subprocess.Popen([sys.executable, "-m", "ocs_core.cli", "up", "--foreground", "--no-router",
                             "--site-file", str(router.site_file), "launcher-fg"], cwd=tmp_path,
                            env=project_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    state_file = tmp_path / "run" / "site-state.json"
    try:
        wait_for(lambda: proc.poll() is not None or (
            state_file.exists() and state(tmp_path)["agents"]["launcher-fg"]["state"] == "running"),
            30, "the agent running")
        assert proc.poll() is None
        assert callable_(router.http_url, "launcher-fg")
        doc = state(tmp_path)
        pids = {doc["supervisor"]["pid"], doc["agents"]["launcher-fg"]["pid"]}
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    assert "SIGINT received, stopping" in out and "launcher-fg: stopped (exited with code 0)" in out
    assert "everything stopped" in out and "Traceback" not in out
    assert_gone(pids, {doc["agents"]["launcher-fg"]["pgid"]})
    assert not (tmp_path / "run" / "supervisor.pid").exists()
    assert router.is_running()  # not ours: left alone


def test_user_errors_need_no_router(site):
    cwd, _ = site
    bad = cli(cwd, "up", "nope")
    assert bad.returncode == 1
    assert bad.stderr.strip().startswith("ocs-core: error:") and "unknown instance-id 'nope'" in bad.stderr
    assert "known: fa, fb, off" in bad.stderr
    bad = cli(cwd, "up", "--backoff", "5", "1", "60")
    assert bad.returncode == 1 and "--backoff" in bad.stderr


FAILS_LATE = """\
import os, sys
def main(args):
    if os.environ.get("OCS_CORE_CHECK_ARGUMENTS"):
        raise SystemExit(0)  # its arguments are fine: the trouble comes later, at start
    print("connecting to the probe at /dev/ttyUSB9", flush=True)
    print("error: no such device: /dev/ttyUSB9", file=sys.stderr, flush=True)
    sys.exit(78)
"""


def test_up_checks_every_instance_first_and_lists_all_problems(tmp_path):
    write_site_config(tmp_path, free_port(), [
        {"agent-class": "FakeDataAgent", "instance-id": "good"},
        {"agent-class": "Heeter", "instance-id": "typo-1"},
        {"agent-class": "FakeDataAgent", "instance-id": "bad-mode", "arguments": ["--mode", "sideways"]},
        {"agent-class": "FakeDataAgent", "instance-id": "docked", "manage": "docker"},
    ], log_dir="logs")
    result = cli(tmp_path, "up", timeout=60)
    assert result.returncode == 1
    assert "skipped: docked (manage: docker/up): docker-managed" in result.stdout
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("ocs-core: error: 2 problems in ") and "nothing was started" in lines[0]
    assert lines[1].startswith("  typo-1: unknown agent-class 'Heeter' (ocs-core's: ")
    assert lines[2] == "  bad-mode: argument --mode: invalid choice: 'sideways' (choose from 'idle', 'acq')"
    assert not (tmp_path / "run").exists() and not (tmp_path / "logs").exists()


def test_a_configuration_error_at_start_is_shown_and_not_retried(tmp_path):
    (tmp_path / "late.py").write_text(FAILS_LATE)
    write_site_config(tmp_path, free_port(), [
        {"agent-class": "late.py:main", "instance-id": "late"}], log_dir="logs")
    try:
        result = cli(tmp_path, "up", "--timeout", "60", timeout=90)
        assert result.returncode == 1, result.stdout
        assert "late: FAILED, not restarted: configuration error (exited with code 78)" in result.stderr
        assert "    | error: no such device: /dev/ttyUSB9" in result.stderr  # the child's own lines
        assert "failed with a configuration error (not restarted): late" in result.stderr
        doc = state(tmp_path)
        assert doc["agents"]["late"]["state"] == "failed" and doc["agents"]["late"]["restarts"] == 0
    finally:
        assert cli(tmp_path, "down").returncode == 0


def test_up_fails_at_once_when_the_router_port_is_taken(tmp_path):
    import socket
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        write_site_config(tmp_path, port, FAKE, log_dir="logs")
        result = cli(tmp_path, "up", "--timeout", "60", timeout=40)
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("ocs-core: error: the router did not start:") and "already in use" in line
    assert not (tmp_path / "run" / "supervisor.pid").exists()
    assert all(not group_alive(pgid) for pgid in _recorded_groups(tmp_path))


def _recorded_groups(cwd):
    try:
        doc = state(cwd)
    except (OSError, ValueError):
        return []
    infos = [doc.get("router") or {}] + list(doc.get("agents", {}).values())
    return [i["pgid"] for i in infos if i.get("pgid")]


def test_killed_supervisor_takes_its_agents_along(site):
    """No router needed: agents keep trying to reach it; SIGKILL the supervisor, they go too."""
    cwd, _ = site
    proc = subprocess.Popen([sys.executable, "-m", "ocs_core.cli", "up", "--foreground", "--no-router"],
                            cwd=cwd, env=project_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: (cwd / "run" / "site-state.json").exists()
                 and all(a["pid"] for a in state(cwd)["agents"].values()), 20, "agents spawned")
        doc = state(cwd)
        assert doc["router"] is None and set(doc["agents"]) == {"fa", "fb"}
        agents = {a["pid"] for a in doc["agents"].values()}
        proc.kill()
        proc.wait(10)
        wait_for(lambda: not any(group_alive(pid) for pid in agents), 10, "agents gone")
    finally:
        if proc.poll() is None:
            proc.kill()
    down = cli(cwd, "down")
    assert down.returncode == 0 and "nothing was running" in down.stdout
    assert not (cwd / "run" / "supervisor.pid").exists()


def test_leftover_groups_trusts_only_recorded_processes(tmp_path):
    from ocs_core.cli.site import _leftover_groups
    from ocs_core.supervisor.process_group import start_time

    sleeper = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        pid = sleeper.pid
        doc = {"router": None, "agents": {"a": {"pgid": pid, "proc_start": start_time(pid)},
                                          "b": {"pgid": None}}}
        assert _leftover_groups(doc, trusted=False) == [("a", pid)]
        doc["agents"]["a"]["proc_start"] = "1"  # another process that once had this pid
        assert _leftover_groups(doc, trusted=False) == []
        assert _leftover_groups(doc, trusted=True) == [("a", pid)]
    finally:
        sleeper.kill()
        sleeper.wait()
    assert _leftover_groups(doc, trusted=True) == []


SCRIPTS = {
    "crash": "import sys; sys.exit(3)",
    "steady": "import time; time.sleep(60)",
    "stubborn": "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)",
}


def test_supervisor_process_layer_without_router(tmp_path):
    """Scripted children instead of agents: backoff restarts, SIGTERM, SIGKILL after the timeout."""
    from ocs_core.supervisor.launcher import Supervisor, plan_site
    from ocs_core.runtime.backoff import BackoffPolicy

    class Scripted(Supervisor):
        def agent_command(self, name):
            return [sys.executable, "-c", SCRIPTS[name]]

    site = write_site_config(tmp_path, free_port(), [{"agent-class": "X", "instance-id": n} for n in SCRIPTS],
                             log_dir=str(tmp_path / "logs"))
    plan = plan_site(site, run_dir=tmp_path / "run", with_router=False)
    lines = []
    sup = Scripted(plan, BackoffPolicy(initial=0.1, factor=2, maximum=0.4), stop_timeout=0.5,
                   out=lines.append)
    for child in sup.children.values():
        child.want(0.0)
    deadline = time.monotonic() + 20
    while sup.children["crash"].restarts < 3:
        assert time.monotonic() < deadline, lines
        if sup._tick():
            sup.write_state()
        time.sleep(0.02)
    doc = state(tmp_path)
    assert doc["agents"]["crash"]["restarts"] == 3 and doc["agents"]["crash"]["last_exit"] == 3
    assert doc["agents"]["steady"]["state"] == "starting"  # nobody answers get_agent_class
    pids = {doc["agents"][n]["pid"] for n in ("steady", "stubborn")}
    text = "\n".join(lines)
    for delay in ("0.1", "0.2", "0.4"):
        assert f"crash: restarting in {delay} s" in text
    assert "crash: exited with code 3" in text
    sup.shutdown()
    text = "\n".join(lines)
    assert "steady: stopped (exited with code -15 (SIGTERM))" in text
    assert "stubborn: still running after 0.5 s, SIGKILL" in text
    assert "stubborn: stopped (exited with code -9 (SIGKILL))" in text
    assert all(s == "stopped" for s in (a["state"] for a in state(tmp_path)["agents"].values()))
    assert_gone(pids, pids)
