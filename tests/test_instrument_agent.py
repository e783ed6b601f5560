"""The instrument agent on a real router, driving the simulated instrument server as a process.

Both run through ``ocs-core agent <id>`` (entry points InstrumentAgent and SimulatedInstrument).
The last test kills the server, watches the agent degrade and fail fast, restarts the server on
the same port, and watches the agent recover without being restarted.
"""
import time

import pytest
import pytest_twisted
from twisted.internet import threads

from clients.ocs_client import OCSClient
from ocs_core.testing import free_port, wait_listening
from wamp_helpers import Subscriber, until

SIM, AGENT = "ia-sim", "ia-agent"
NOISE = 0.01


@pytest.fixture(scope="module")
def site(router):
    port = free_port()
    router.add_instance("SimulatedInstrument", SIM, ["--port", port, "--seed", "1", "--noise", NOISE])
    server = router.agent(SIM)
    wait_listening(port, alive=server)
    router.add_instance("InstrumentAgent", AGENT, ["--port", port, "--poll-interval", "0.1",
                                                   "--max-backoff", "0.5", "--timeout", "5"])
    agent = router.agent(AGENT)
    try:
        agent.wait_registered(15)
        yield {"server": server, "agent": agent, "port": port}
    finally:
        agent.terminate()
        server.terminate()


@pytest.fixture(scope="module")
def client(router, site):
    c = OCSClient(AGENT, site_file=str(router.site_file))
    yield c
    c.close()


def last_message(reply) -> str:
    return reply.session["messages"][-2][1]  # the last is 'Status is now "done".'


def test_tasks_from_the_declared_commands(client):
    tasks = [t[0] for t in client.api["tasks"]]
    assert {"measure", "read", "set", "ping", "command", "get_config"} <= set(tasks)
    assert [p[0] for p in client.api["processes"]] == ["acq"]
    assert [f[0] for f in client.api["feeds"]] == ["instrument", "heartbeat"]
    assert client.api["agent_class"] == "InstrumentAgent"


def test_measure_returns_a_value_near_the_model(client):
    # the model: background 0 + amplitude 1 / (((x - 2.5) / 0.1)**2 + 1)
    for x, model in ((2.5, 1.0), (2.6, 0.5), (3.5, 1 / 101)):
        reply = client.measure(x=x)
        assert reply.session["success"] is True, reply
        data = reply.session["data"]
        assert data["x"] == x and data["command"] == "measure"
        assert isinstance(data["value"], float) and abs(data["value"] - model) < 6 * NOISE
        assert abs(data["timestamp"] - time.time()) < 10


def test_other_commands_and_generic_command(client):
    assert client.ping().session["success"] is True
    config = client.get_config().session["data"]["value"]
    assert config["seed"] == 1 and config["noise"] == NOISE
    reply = client.command(name="set", args=[2.4])
    assert reply.session["success"] and reply.session["data"]["value"] == 2.4
    assert reply.session["data"]["args"] == [2.4]


def test_server_error_ends_the_task_failed_with_its_message(client):
    reply = client.set_noise(sigma=-1)
    assert reply.session["success"] is False
    assert last_message(reply) == "set_noise: sigma must be >= 0, got -1.0"
    reply = client.command(name="nope")
    assert reply.session["success"] is False
    assert last_message(reply).startswith("unknown command 'nope'")
    reply = client.command(name="measure", args=["abc"])
    assert last_message(reply) == "measure: argument x must be a finite number, got 'abc'"
    bad = client.measure.start(x="abc")  # checked by the agent before anything is sent
    assert bad.status != 0 and "not of required type" in bad.msg


def test_task_docstrings_follow_the_server_help(client, router):
    api = OCSClient(AGENT, site_file=str(router.site_file)).api
    docs = {name: info["docstring"] for name, _, info in api["tasks"]}
    assert docs["measure"].startswith("measure(x)\n\n**Task** - Set x, wait the delay")


def _values(events):
    return [v for payload, _info in events for v in payload["instrument"]["data"]["value"]]


async def _status(client):
    return (await threads.deferToThread(client.acq.status)).session


@pytest_twisted.ensureDeferred
async def test_acq_publishes_then_survives_a_server_restart(router, site, client):
    feed = Subscriber(router.ws_url, f"{router.address(AGENT)}.feeds.instrument")
    await feed.start()
    server, agent = site["server"], site["agent"]
    try:
        reply = await threads.deferToThread(client.acq.start)
        assert reply.status == 0, reply
        await until(lambda: len(feed.events) >= 3, timeout=10, what="three feed events")
        payload, info = feed.events[0]
        assert info["feed_name"] == "instrument" and info["record"] is True
        assert set(payload) == {"instrument"} and set(payload["instrument"]["data"]) == {"value"}
        session = await _status(client)
        assert session["status"] == "running" and session["degraded"] is False
        assert session["data"]["command"] == "read" and isinstance(session["data"]["value"], float)

        # the server dies: acq degrades, Tasks fail at once with a clear message
        await threads.deferToThread(server.kill)
        deadline = time.monotonic() + 10
        while not (await _status(client))["degraded"]:
            assert time.monotonic() < deadline, "acq never became degraded"
            await threads.deferToThread(time.sleep, 0.05)
        session = await _status(client)
        assert session["status"] == "running"
        assert any(m.startswith(f"link to 127.0.0.1:{site['port']} lost: ") for _, m in session["messages"])
        t0 = time.monotonic()
        reply = await threads.deferToThread(client.measure, x=2.5)
        assert time.monotonic() - t0 < 3
        assert reply.session["success"] is False
        assert last_message(reply) == (f"instrument server 127.0.0.1:{site['port']} is not reachable; "
                                       "retrying in the background")

        # the server comes back on the same port: acq recovers by itself, the agent never restarted
        await threads.deferToThread(server.start)
        await threads.deferToThread(wait_listening, site["port"], alive=server)
        deadline = time.monotonic() + 15
        while (await _status(client))["degraded"]:
            assert time.monotonic() < deadline, "acq never recovered"
            await threads.deferToThread(time.sleep, 0.05)
        session = await _status(client)
        assert session["status"] == "running"
        assert session["messages"][-1][1] == "link restored"
        seen = len(feed.events)
        await until(lambda: len(feed.events) >= seen + 3, timeout=10, what="feed events after recovery")
        reply = await threads.deferToThread(client.measure, x=2.5)
        assert reply.session["success"] is True and abs(reply.session["data"]["value"] - 1.0) < 6 * NOISE
        assert agent.is_running() and "Traceback" not in agent.log_text()
    finally:
        await threads.deferToThread(client.acq.stop)
        await threads.deferToThread(client.acq.wait, 5)
        await feed.stop()
    final = await _status(client)
    assert final["status"] == "done" and final["success"] is True


def test_agent_started_before_its_server_waits_degraded_then_recovers(router, start_agent):
    port = free_port()
    start_agent("ia-early", "InstrumentAgent", ["--port", port, "--mode", "acq", "--poll-interval", "0.1",
                                                 "--max-backoff", "0.3", "--commands", "ping,measure"])
    client = OCSClient("ia-early", site_file=str(router.site_file))
    try:
        assert sorted(t[0] for t in client.api["tasks"]) == ["command", "measure", "ping"]
        deadline = time.monotonic() + 10
        while (session := client.acq.status().session).get("status") != "running":
            assert time.monotonic() < deadline, session
            time.sleep(0.05)
        assert session["degraded"] is True
        assert session["messages"][-1][1] == f"link to 127.0.0.1:{port} is down: not connected yet"
        reply = client.ping()
        assert reply.session["success"] is False and "is not reachable" in last_message(reply)

        router.add_instance("SimulatedInstrument", "ia-early-sim", ["--port", port, "--seed", "2"])
        server = router.agent("ia-early-sim")
        try:
            wait_listening(port, alive=server)
            deadline = time.monotonic() + 10
            while (session := client.acq.status().session)["degraded"] or not session["data"]:
                assert time.monotonic() < deadline, session
                time.sleep(0.05)
            assert session["messages"][-1][1] == "link restored"
            assert isinstance(session["data"]["value"], float)
            assert client.ping().session["success"] is True
        finally:
            server.terminate()
    finally:
        client.close()
