"""InstrumentAgent's ops in-process (no router): a real loopback server, ops started through Operations.

Covers what the router tests do not reach easily: poll failures (not a number, no reply in time),
the degraded flag and its messages, feed events queued while the agent has no router, a server that
stops and a new one on the same port, and the Tasks' docstrings after a refresh.
"""
import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from agents.instrument.agent import FEED, InstrumentAgent
from agents.instrument.link import InstrumentLink
from agents.instrument.signatures import parse_command_specs
from agents.instrument.simulated import Resonance, SimulatedInstrument
from ocs_core.runtime.agent import AgentConfig, OCSAgent
from wamp_helpers import until


def make_server(port=0):
    """A server listening on ``port`` (0: any), its port, and a Deferred of its hardware connect."""
    server = SimulatedInstrument(resonance=Resonance(noise=0.0), seed=1, timeout=5)
    connected = server.connect()
    return server, server.listen(port).getHost().port, connected


@pytest.fixture
def rig():
    server, port, connected = make_server()
    pytest_twisted.blockon(connected)
    agent = OCSAgent(AgentConfig("ops-test"), reactor)
    link = InstrumentLink(reactor, "127.0.0.1", port, timeout=0.5, min_backoff=0.05, max_backoff=0.2)
    ia = InstrumentAgent(agent, link, parse_command_specs(["measure,read,set_delay,ping"]),
                         poll_interval=0.05)
    ia.register()
    link.start()
    pytest_twisted.blockon(link.when_connected(timeout=5))
    state = {"server": server, "port": port}
    yield agent, ia, state
    pytest_twisted.blockon(agent.operations.stop_all(timeout=2))
    pytest_twisted.blockon(ia.close())
    pytest_twisted.blockon(state["server"].stop())


def messages(session):
    return [m for _, m in session.messages]


@pytest_twisted.ensureDeferred
async def test_measure_task_data_and_docstring_after_refresh(rig):
    agent, ia, _ = rig
    ops = agent.operations
    await until(lambda: ia.server_commands is not None)
    assert "measure" in ia.server_commands and "get_config" in ia.server_commands
    assert ops["measure"].docstring.startswith("measure(x)\n\n**Task** - Set x, wait the delay")
    assert ops.start("measure", {"x": 2.5})[0] == 0
    reply = await defer.ensureDeferred(_wait(ops, "measure"))
    data = reply[2]["data"]
    assert data["value"] == pytest.approx(1.0) and data["x"] == 2.5 and data["reply"] == "1.0"
    assert ops.start("measure", {})[1] == "Param 'x' is required and must not be None"
    assert ops.start("ping", {"x": 1})[1].startswith("params included unexpected values")


async def _wait(ops, name):
    reply = ops.wait(name, 5)
    return (await reply) if isinstance(reply, defer.Deferred) else reply


@pytest_twisted.ensureDeferred
async def test_poll_that_is_not_a_number_degrades_acq(rig):
    agent, ia, _ = rig
    ia.poll_command = "get_config"
    agent.operations.start("acq", {})
    session = agent.operations["acq"].session
    await until(lambda: session.degraded)
    assert messages(session)[-1].startswith("poll get_config failed: reply '{")
    assert messages(session)[-1].endswith("is not a number")
    ia.poll_command = "read"
    await until(lambda: not session.degraded)
    assert messages(session)[-1] == "poll read succeeds again"
    assert messages(session).count(messages(session)[-2]) == 1  # one message per change, not per poll
    assert agent.feeds[FEED].outbox, "feed events are queued while the agent has no router"
    payload, info = agent.feeds[FEED].outbox[-1]
    assert info["feed_name"] == FEED and set(payload[FEED]["data"]) == {"value"}


@pytest_twisted.ensureDeferred
async def test_poll_without_reply_in_time_degrades_then_recovers(rig):
    agent, ia, state = rig
    agent.operations.start("acq", {})
    session = agent.operations["acq"].session
    await until(lambda: session.data)
    state["server"].resonance.delay = 1.0  # longer than the link's 0.5 s timeout
    await until(lambda: session.degraded, timeout=5)
    assert any(m.startswith("poll read failed: read: no reply within 0.5 s") for m in messages(session))
    state["server"].resonance.delay = 0.0
    await until(lambda: not session.degraded, timeout=10)


@pytest_twisted.ensureDeferred
async def test_server_gone_then_back_on_the_same_port(rig):
    agent, ia, state = rig
    ops = agent.operations
    ops.start("acq", {})
    session = ops["acq"].session
    await until(lambda: session.data)
    await state["server"].stop()
    await until(lambda: session.degraded)
    assert messages(session)[-1].startswith(f"link to 127.0.0.1:{state['port']} lost: ")
    assert ops.start("ping", {})[0] == 0
    reply = await defer.ensureDeferred(_wait(ops, "ping"))
    assert reply[2]["success"] is False
    assert reply[2]["messages"][-2][1] == (f"instrument server 127.0.0.1:{state['port']} is not reachable; "
                                           "retrying in the background")
    state["server"], _, connected = make_server(state["port"])
    await connected
    await until(lambda: not session.degraded, timeout=10)
    assert messages(session)[-1] == "link restored" and session.status == "running"
    before = session.data["timestamp"]
    await until(lambda: session.data["timestamp"] > before)
