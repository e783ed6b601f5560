"""Two hosts on one machine, each with a HostManager, one router (real processes throughout).

host-a (127.0.0.1) runs the router and hm-a, which runs faker-a; host-b (127.0.0.2) runs hm-b,
which runs a simulated instrument server bound to 127.0.0.2 and the instrument agent that talks
to it. The tests run in file order on one site (a module fixture) and leave it as they found it.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ocs_core.site.config import load_site_config
from ocs_core.supervisor.managers import manager_view
from ocs_core.testing import free_port, http_call, project_env

ROOT = Path(__file__).resolve().parent.parent


def docs_site() -> str:
    """The two-host site file of docs/launcher.md, as written there."""
    text = (ROOT / "docs" / "launcher.md").read_text()
    block = text.split("<!-- two-hosts.yaml -->\n```yaml\n", 1)[1].split("\n```", 1)[0]
    assert "127.0.0.2" in block and "8001" in block and "50741" in block
    return block + "\n"


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


class Site:
    def __init__(self, directory: Path):
        self.dir = directory
        self.port, self.sim_port = free_port(), free_port("127.0.0.2")
        self.file = directory / "two-hosts.yaml"
        self.file.write_text(docs_site().replace("8001", str(self.port)).replace("50741", str(self.sim_port)))
        self.hub = load_site_config(self.file).hub
        self.http = f"http://127.0.0.1:{self.port}/call"
        self.hm_b: subprocess.Popen | None = None

    def wait_b(self):
        wait_for(lambda: self.child("hm-b", "instrument-b").get("next_action") == "up"
                 and self.child("hm-b", "sim-b").get("next_action") == "up", 60, "hm-b's agents up")

    def cli(self, *argv, timeout=120):
        return subprocess.run([sys.executable, "-m", "ocs_core.cli", *argv, "--site-file", str(self.file)],
                              cwd=self.dir, env=project_env(), capture_output=True, text=True,
                              timeout=timeout)

    def start_hm_b(self):
        """hm-b on its own (not under a supervisor): a kill -9 of it stays dead."""
        log = open(self.dir / "hm-b.out", "ab")
        self.hm_b = subprocess.Popen([sys.executable, "-m", "ocs_core.cli", "agent", "hm-b",
                                      "--site-file", str(self.file), "--site-host", "host-b",
                                      "--log-dir", str(self.dir / "logs-b")],
                                     cwd=self.dir, env=project_env(), stdout=log, stderr=log,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self.wait_b()

    def children(self, manager):
        return {c["instance_id"]: c for c in manager_view(self.hub, manager).child_states}

    def child(self, manager, iid):
        return self.children(manager).get(iid, {})

    def agent_class(self, iid):
        reply = http_call(self.http, f"observatory.{iid}", "get_agent_class", timeout=3)
        return None if "error" in reply else reply["args"][0]


def accepts(host, port):
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] not in "ZX"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    site = Site(tmp_path_factory.mktemp("two-hosts"))
    left = []
    try:
        yield site
    finally:
        for manager in ("hm-a", "hm-b"):
            left += [c.get("pid") for c in site.children(manager).values() if c.get("pid")]
        if site.hm_b is not None and site.hm_b.poll() is None:
            os.killpg(site.hm_b.pid, signal.SIGTERM)
            site.hm_b.wait(30)
        site.cli("down", "--site-host", "host-b", "--run-dir", "run-b", "--timeout", "20")
        site.cli("down", "--site-host", "host-a", "--timeout", "20")
        for pid in left:  # whatever a test left behind
            if pid_alive(pid):
                os.killpg(pid, signal.SIGKILL)


def test_two_hosts_up_status_restart_and_kill(site):
    up = site.cli("up", "--site-host", "host-a")
    assert up.returncode == 0, up.stdout + up.stderr
    assert "  hm-a: callable, pid" in up.stdout and "  faker-a: callable via hm-a" in up.stdout
    up_b = site.cli("up", "--site-host", "host-b", "--no-router", "--run-dir", "run-b")
    assert up_b.returncode == 0, up_b.stdout + up_b.stderr
    assert "  sim-b: callable via hm-b" in up_b.stdout and "  instrument-b: callable via hm-b" in up_b.stdout
    site.wait_b()
    # the agents' own servers bind to their host's address
    assert accepts("127.0.0.2", site.sim_port) and not accepts("127.0.0.1", site.sim_port)
    assert site.agent_class("instrument-b") == "InstrumentAgent"

    status = site.cli("status", "--site-host", "host-a", "--listen-time", "2")
    assert status.returncode == 0, status.stdout + status.stderr
    text = status.stdout
    assert "host host-a: host manager hm-a, manager Process running" in text
    assert "host host-b: host manager hm-b, manager Process running" in text
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line.strip()}
    assert rows["faker-a"][2:5] == ["yes", "up", "up"]
    assert rows["instrument-b"][2:5] == ["yes", "up", "up"] and rows["sim-b"][2:5] == ["yes", "up", "up"]

    # bad input: a clear error reply, nothing changed
    bad = http_call(site.http, "observatory.hm-a.ops", "start", "update", {"requests": [["faker-a"]]},
                    timeout=5)["args"][0]
    assert bad[0] != 0 and "requests[0]: expected [instance-id or 'all', state]" in bad[1], bad
    assert site.child("hm-a", "faker-a")["target_state"] == "up"

    # from host-a, restart an agent of host-b through its manager
    before = site.child("hm-b", "instrument-b")["pid"]
    restart = site.cli("restart", "instrument-b", "--site-host", "host-a")
    assert restart.returncode == 0, restart.stdout + restart.stderr
    assert "instrument-b: restart requested from host manager hm-b" in restart.stdout
    assert "  instrument-b: callable via hm-b, pid" in restart.stdout
    after = site.child("hm-b", "instrument-b")
    assert after["pid"] != before and after["next_action"] == "up" and not pid_alive(before)

    # kill -9 an agent: its manager starts it again
    old = site.child("hm-a", "faker-a")["pid"]
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: site.child("hm-a", "faker-a").get("pid") not in (None, old)
             and site.child("hm-a", "faker-a").get("next_action") == "up", 30, "faker-a restarted")
    assert site.child("hm-a", "faker-a")["restarts"] == 1 and site.agent_class("faker-a") == "FakeDataAgent"


def test_ocsbow_drives_our_host_manager(site):
    ocsbow = [str(Path(sys.executable).parent / "ocsbow"), "--site-file", str(site.file),
              "--site-host", "host-a"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    def run(*argv):
        return subprocess.run(ocsbow + list(argv), cwd=site.dir, env=env, capture_output=True, text=True,
                              timeout=60)
    status = run("status")
    assert status.returncode == 0, status.stdout + status.stderr
    lines = {line.split()[0]: line.split() for line in status.stdout.splitlines() if line.startswith("  ")}
    assert lines["faker-a"][1:] == ["FakeDataAgent", "up", "up"]
    assert lines["instrument-b"][1:] == ["InstrumentAgent", "up", "up"]
    assert lines["hm-a"][2] == "up" and lines["hm-b"][2] == "up"  # their manager Processes run

    down = run("down", "faker-a")
    assert down.returncode == 0, down.stdout + down.stderr
    assert "down agent faker-a via hm-a" in down.stdout
    wait_for(lambda: site.agent_class("faker-a") is None and
             site.child("hm-a", "faker-a").get("next_action") == "down", 30, "faker-a down")
    assert site.child("hm-a", "faker-a")["target_state"] == "down"
    up = run("up", "faker-a")
    assert up.returncode == 0, up.stdout + up.stderr
    wait_for(lambda: site.agent_class("faker-a") == "FakeDataAgent", 30, "faker-a up again")


def test_a_dead_host_manager_leaves_its_agents_running(site):
    down_b = site.cli("down", "--site-host", "host-b", "--run-dir", "run-b")  # hm-b alone, then:
    assert down_b.returncode == 0, down_b.stdout + down_b.stderr
    site.start_hm_b()
    pids = {iid: site.child("hm-b", iid)["pid"] for iid in ("sim-b", "instrument-b")}
    os.killpg(site.hm_b.pid, signal.SIGKILL)
    site.hm_b.wait(10)
    assert all(pid_alive(pid) for pid in pids.values())
    status = site.cli("status", "--site-host", "host-a", "--listen-time", "2")
    assert status.returncode == 1  # a host's manager does not answer
    assert "host host-b: host manager hm-b, not answering: its agents run unmanaged" in status.stdout
    rows = {line.split()[0]: line.split() for line in status.stdout.splitlines() if line.strip()}
    assert rows["instrument-b"][2] == "yes" and rows["instrument-b"][4] == "unmanaged"
    assert rows["sim-b"][2] == "yes" and rows["sim-b"][4] == "unmanaged"

    site.start_hm_b()  # a new manager takes them over: same processes, not second copies
    assert {iid: site.child("hm-b", iid)["pid"] for iid in pids} == pids


def test_stopping_the_manager_process_takes_its_agents_down(site):
    pids = [site.child("hm-b", iid)["pid"] for iid in ("sim-b", "instrument-b")]
    reply = http_call(site.http, "observatory.hm-b.ops", "stop", "manager", {}, timeout=5)
    assert reply["args"][0][0] == 0, reply
    wait_for(lambda: not any(pid_alive(pid) for pid in pids), 30, "hm-b's agents stopped")
    assert not accepts("127.0.0.2", site.sim_port) and site.agent_class("instrument-b") is None
    assert manager_view(site.hub, "hm-b").running is False
