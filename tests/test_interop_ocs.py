"""Interop with the public ocs 0.12.1 package through one real router:

* our OCSClient drives ocs's own FakeDataAgent (run as ``python -m ocs.agents.fake_data.agent``);
* ocs's own ``ocs.ocs_client.OCSClient`` drives our FakeDataAgent (issue 2's checklist).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

import clients_agents
from clients.ocs_client import ERROR, OK, TIMEOUT, OCSClient
from helpers_clients import start_agents
from ci import need_module

pytestmark = pytest.mark.interop

OCS_FAKER, OUR_FAKER = "ocs-faker", "interop-faker"


def _wait_callable(router, instance_id, proc, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, f"ocs's agent exited with status {proc.returncode}"
        if "error" not in router.call(router.address(instance_id), "get_agent_class", timeout=2):
            return
        assert time.monotonic() < deadline, f"ocs's agent {instance_id} did not register"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def ocs_faker(router):
    """ocs 0.12.1's FakeDataAgent, as ocs itself launches it."""
    need_module("ocs")
    router.add_instance("FakeDataAgent", OCS_FAKER)
    router.log_dir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    with open(router.log_dir / f"{OCS_FAKER}.out", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ocs.agents.fake_data.agent", "--site-file", str(router.site_file),
             "--site-host", "localhost", "--instance-id", OCS_FAKER, "--crossbar-timeout", "60"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    try:
        _wait_callable(router, OCS_FAKER, proc)
        yield proc
    finally:
        proc.terminate()  # ocs's agent then sleeps 3 s before leaving; don't wait for that
        try:
            proc.wait(1)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def our_faker(router):
    started = start_agents(router, [("FakeDataAgent", OUR_FAKER)])
    yield started[0]
    for agent in started:
        agent.terminate()


def _site(router):
    return ["--site-file", str(router.site_file), "--site-host", "localhost"]


# -- our client, ocs's agent -------------------------------------------------------------------
@pytest.fixture
def client(router, ocs_faker):
    c = OCSClient(OCS_FAKER, args=_site(router))
    yield c
    c.close()


def test_our_client_sees_ocs_agent_ops(client):
    assert client.api["agent_class"] == "FakeDataAgent"
    assert {"acq", "count", "delay_task", "set_heartbeat"} <= set(client._ops)
    assert "delay" in client.delay_task.start.__doc__


def test_our_client_runs_ocs_delay_task(client):
    reply = client.delay_task(delay=0.3)
    assert reply.status == OK
    assert reply.msg == 'Operation "delay_task" is currently not running (SUCCEEDED).'
    assert reply.session["success"] is True
    assert repr(reply).startswith('OCSReply: OK : Operation "delay_task" is currently not running')
    started = client.delay_task.start(delay=5)
    assert started.status == OK and started.msg == 'Started task "delay_task".'
    assert client.delay_task.wait(timeout=0.2).status == TIMEOUT
    assert client.delay_task.abort().status == OK
    done = client.delay_task.wait(10)
    assert done.status == OK and done.session["success"] is False
    assert any(m[1].startswith("Aborted after") for m in done.session["messages"])


def test_task_call_falls_back_to_start_then_wait_for_an_ocs_agent(client):
    calls = []
    original = client._client.call
    client._client.call = lambda procedure, *a, **kw: calls.append(a[0]) or original(procedure, *a, **kw)
    reply = client.delay_task(delay=0.1)
    assert reply.status == OK and reply.session["success"] is True
    assert calls == ["ocs_core.features", "start", "wait"]
    assert client._client.features() == {}
    calls.clear()
    assert client.delay_task(delay=0).status == OK
    assert calls == ["start", "wait"]  # asked once per agent
    bad = client.delay_task(delay="soon")
    assert bad.status == ERROR and calls[-1] == "start"


def test_client_t_run_falls_back_for_an_ocs_agent(router, ocs_faker):
    driver = start_agents(router, [("DriverAgent", "interop-driver")],
                          env=clients_agents.subprocess_env())[0]
    try:
        c = OCSClient("interop-driver", args=_site(router))
        reply = c.drive(target=OCS_FAKER, delay=0.1)
        c.close()
    finally:
        driver.terminate()
    assert reply.status == OK and reply.session["success"] is True, reply
    assert reply.session["data"]["driven"]["success"] is True
    assert reply.session["data"]["features"] == {}


def test_our_client_runs_ocs_acq_and_count(client):
    started = client.acq.start()
    assert started.status == OK and started.msg == 'Started process "acq".'
    assert client.count.start().status == OK
    deadline = time.monotonic() + 10
    while not (client.acq().session.get("data") or {}).get("fields"):
        assert time.monotonic() < deadline, "acq published no data"
        time.sleep(0.1)
    while (client.count().session.get("data") or {}).get("counter", 0) < 1:
        assert time.monotonic() < deadline, "count did not count"
        time.sleep(0.1)
    for op in (client.acq, client.count):
        stopped = op.stop()
        assert stopped.status == OK and stopped.msg.startswith("Requested stop on process ")
        done = op.wait(10)
        assert done.status == OK and done.session["status"] == "done"
    assert client.acq.stop().status == ERROR


# -- ocs's client, our agent -------------------------------------------------------------------
@pytest.fixture
def ocs_client(router, our_faker):
    from ocs import ocs_client as theirs
    return theirs.OCSClient(OUR_FAKER, args=_site(router))


def test_ocs_client_get_api(ocs_client):
    api = ocs_client._client.get_api()
    assert api["agent_class"] == "FakeDataAgent"
    assert sorted(name for name, _s, _i in api["tasks"]) == ["delay_task", "set_heartbeat"]
    assert sorted(name for name, _s, _i in api["processes"]) == ["acq", "count"]
    assert ocs_client.delay_task.start.__doc__.startswith("delay_task(")


def test_ocs_client_task_start_wait_abort(ocs_client):
    import ocs

    reply = ocs_client.delay_task(delay=0.2)
    assert reply.status == ocs.OK and reply.session["success"] is True
    started = ocs_client.delay_task.start(delay=5)
    assert started.status == ocs.OK and started.msg == 'Started task "delay_task".'
    assert ocs_client.delay_task.wait(timeout=0.1).status == ocs.TIMEOUT
    aborted = ocs_client.delay_task.abort()
    assert aborted.status == ocs.OK and aborted.msg == 'Requested abort on task delay_task".'
    done = ocs_client.delay_task.wait(timeout=10)
    assert done.status == ocs.OK and done.session["success"] is False
    assert "(FAILED)" in done.msg


def test_ocs_client_process_start_status_stop(ocs_client):
    import ocs

    assert ocs_client.acq.start().status == ocs.OK
    deadline = time.monotonic() + 10
    while True:
        status = ocs_client.acq.status()
        assert status.status == ocs.OK and status.msg == "Session active."
        if (status.session.get("data") or {}).get("fields"):
            break
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert ocs_client.acq().session["session_id"] == status.session["session_id"]
    stopped = ocs_client.acq.stop()
    assert stopped.status == ocs.OK and stopped.msg == 'Requested stop on process acq".'
    done = ocs_client.acq.wait(timeout=10)
    assert done.status == ocs.OK and done.session["success"] is True


def test_ocs_client_invalid_parameter(ocs_client):
    import ocs

    reply = ocs_client.delay_task.start(delay="soon")
    assert reply.status == ocs.ERROR and "delay" in reply.msg
    assert reply.session == {}
