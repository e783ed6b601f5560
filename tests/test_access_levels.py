"""Access levels on a real router: ``override:`` agents, ours and ocs 0.12.1's, driven by both
OCSClients with clear passwords and password-file levels; the replies must be the same.

Also: ``access_control`` in get_api, ``cred_level`` of startup ops, SIGTERM under a policy that
refuses level 1, and ``ocs-core call --privs``.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import pytest_twisted
import yaml

from clients.ocs_client import OCSClient
from ocs_core.testing import project_env
from ci import need_module

pytestmark = pytest.mark.interop

POLICY = "override:pw2,pw3"
OURS, THEIRS = "ac-ours", "ac-ocs"
REFUSED_1 = (-1, "The action requires credential level 2-ADVANCED but the client has only "
                 "level 1-BASIC", None)


def _site(router):
    return ["--site-file", str(router.site_file), "--site-host", "localhost"]


@pytest.fixture(scope="module")
def agents(router):
    """Our FakeDataAgent and ocs's, both under ``override:pw2,pw3``."""
    need_module("ocs")
    router.add_instance("FakeDataAgent", OURS, ["--access-policy", POLICY])
    ours = router.agent(OURS)
    router.add_instance("FakeDataAgent", THEIRS)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    router.log_dir.mkdir(parents=True, exist_ok=True)
    with open(router.log_dir / f"{THEIRS}.out", "ab") as log:
        theirs = subprocess.Popen(
            [sys.executable, "-m", "ocs.agents.fake_data.agent", *_site(router),
             "--instance-id", THEIRS, "--access-policy", POLICY, "--crossbar-timeout", "60"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    try:
        ours.wait_registered(15)
        deadline = time.monotonic() + 20
        while "error" in router.call(router.address(THEIRS), "get_agent_class", timeout=2):
            assert theirs.poll() is None and time.monotonic() < deadline, "ocs's agent did not start"
            time.sleep(0.1)
        yield
    finally:
        ours.terminate()
        theirs.kill()
        theirs.wait()


@pytest.fixture
def password_file(tmp_path, monkeypatch):
    path = tmp_path / "ocs-passwords.yaml"
    path.write_text(yaml.safe_dump([
        {"default": True, "password_3": "wrong-for-everyone"},
        {"agent_class": "FakeDataAgent", "password_3": "pw3"},
        {"instance_id": "ac-*", "password_2": "pw2"},
    ]))
    monkeypatch.setenv("OCS_PASSWORDS_FILE", str(path))
    return path


def _wait_done(op):
    reply = op.wait(timeout=10)
    return (reply.status, reply.msg, reply.session.get("success"))


def scenario(make_client) -> list[tuple]:
    """Start delay_task at each privilege; ocs's 3.33 s rule at level 2; a level-1 abort."""
    seen = []
    for privs in (None, 1, "pw2", 2, "pw3", 3, "nonsense"):
        client = make_client(privs)
        r = client.delay_task.start(delay=0.1)
        seen.append((privs, r.status, r.msg, r.session.get("cred_level")))
        if r.status == 0:
            seen.append(_wait_done(client.delay_task))
        r = client.delay_task.start(delay=3.33)
        seen.append((privs, r.status, r.msg, r.session.get("cred_level")))
        if r.status == 0 and r.session["cred_level"] == 3:
            a = make_client(1).delay_task.abort()
            seen.append(("abort at 1", a.status, a.msg, a.session.get("cred_level")))
            a = client.delay_task.abort()
            seen.append(("abort at 3", a.status, a.msg, a.session.get("cred_level")))
        if r.status == 0:
            seen.append(_wait_done(client.delay_task))
            last = client.delay_task.status().session["messages"][-2][1]
            seen.append(last.split(" after ")[0])  # "Aborted after 0.x seconds": timing varies
    return seen


EXPECTED_START = {None: REFUSED_1, 1: REFUSED_1, "nonsense": REFUSED_1}


@pytest.mark.parametrize("client_kind", ["ocs", "ours"])
def test_same_replies_from_our_agent_and_ocs_agent(router, agents, password_file, client_kind):
    if client_kind == "ocs":
        from ocs.ocs_client import OCSClient as Client
    else:
        Client = OCSClient
    runs = {iid: scenario(lambda privs, iid=iid: Client(iid, privs=privs, args=_site(router)))
            for iid in (OURS, THEIRS)}
    assert runs[OURS] == runs[THEIRS]
    seen = runs[OURS]
    for privs, expected in EXPECTED_START.items():
        assert (privs, *expected) in seen
    assert ("pw2", 0, 'Started task "delay_task".', 2) in seen
    assert (3, 0, 'Started task "delay_task".', 3) in seen
    assert "Actually you need access level 3+ to delay for 3.33 seconds." in seen
    assert ("abort at 1", *REFUSED_1) in seen
    assert ("abort at 3", 0, 'Requested abort on task delay_task".', 3) in seen


def test_get_api_reports_policy_and_min_privs(router, agents):
    for iid in (OURS, THEIRS):
        api = OCSClient(iid, args=_site(router)).api
        ac = api["access_control"]
        assert (ac["version"], ac["policy"], ac["update_count"], ac["step"]) == (1, "override", 0, 0)
        privs = {name: info["min_privs"] for name, _s, info in api["tasks"] + api["processes"]}
        assert privs == {"delay_task": 2, "set_heartbeat": 1, "acq": 1, "count": 1}


def test_startup_ops_run_at_level_4_and_sigterm_stops_ops_whatever_the_rules(router, start_agent):
    agent = start_agent("ac-startup", arguments=["--mode", "acq", "--access-policy", POLICY])
    client = OCSClient("ac-startup", privs="pw2", args=_site(router))
    deadline = time.monotonic() + 10
    while client.acq.status().session.get("status") != "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert client.acq.status().session["cred_level"] == 4
    assert client.delay_task.start(delay=30).status == 0
    # the rules refuse level 1 (no password) to abort delay_task; shutdown acts at level 4
    os.kill(agent.pid, signal.SIGTERM)
    agent.proc.wait(10)
    log = agent.log_text()
    assert "Aborted after" in log and "Acquisition exited cleanly." in log


def test_startup_ops_record_level_1_under_no_policy(router, start_agent):
    start_agent("ac-nopolicy", arguments=["--mode", "acq"])
    client = OCSClient("ac-nopolicy", args=_site(router))
    deadline = time.monotonic() + 10
    while client.acq.status().session.get("status") is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert client.acq.status().session["cred_level"] == 1
    assert client.acq.stop().status == 0


def test_bad_policy_is_one_line_and_exit_1(router):
    router.add_instance("FakeDataAgent", "ac-bad", ["--access-policy", "override:just-one"])
    agent = router.agent("ac-bad")
    assert agent.proc.wait(30) == 1
    errors = [line for line in agent.log_text().splitlines() if "override takes two" in line]
    assert len(errors) == 1 and "Traceback" not in agent.log_text()


def test_cli_call_with_privs(router, agents, password_file):
    def cli(*argv):
        return subprocess.run([sys.executable, "-m", "ocs_core.cli", *argv, *_site(router)],
                              capture_output=True, text=True, timeout=60,
                              env=project_env({"OCS_PASSWORDS_FILE": str(password_file)}))
    refused = cli("call", OURS, "delay_task", "delay=0.1")
    assert refused.returncode == 1
    assert refused.stderr.strip().endswith("but the client has only level 1-BASIC")
    assert cli("call", OURS, "delay_task", "delay=0.1", "--privs", "2").returncode == 0
    assert cli("call", OURS, "delay_task", "delay=0.1", "--privs", "pw3").returncode == 0
    password_file.unlink()
    missing = cli("call", OURS, "delay_task", "--privs", "3")
    assert missing.returncode == 1
    assert missing.stderr.strip() == (f"ocs-core: error: privs=3: no password file at "
                                      f"{password_file} (set OCS_PASSWORDS_FILE or create "
                                      "~/.ocs-passwords.yaml)")


@pytest.mark.parametrize("password", [12345, ["pw2"], {"pw": "pw2"}, "x" * 500_000, True])
def test_odd_passwords_get_level_1_and_the_agent_stays_up(router, agents, password):
    reply = router.call(router.address(OURS) + ".ops", "start", "delay_task", {"delay": 0.05},
                        password=password)
    assert reply["args"][0][:2] == list(REFUSED_1[:2])
    assert router.call(router.address(OURS), "get_agent_class")["args"] == ["FakeDataAgent"]


@pytest_twisted.ensureDeferred
async def test_control_program_clients_send_privs(router, agents, password_file):
    from clients.client_t import TaskClient
    from wamp_helpers import connect

    session = await connect(router.ws_url)
    try:
        address = router.address(OURS)
        refused = await TaskClient(session, address, "delay_task").start(delay=0.05)
        assert refused[:2] == list(REFUSED_1[:2])
        for privs, level in (("pw2", 2), (3, 3)):  # a password, and a level from the password file
            task = TaskClient(session, address, "delay_task", privs=privs)
            started = await task.start(delay=0.05)
            assert started[0] == 0 and started[2]["cred_level"] == level
            assert (await task.wait(timeout=5))[0] == 0
    finally:
        session.leave()
