"""Our agents on a real router, called the way ocs clients call them (raw HTTP bridge requests)."""

import pytest
import pytest_twisted
from twisted.internet import threads

from wamp_helpers import Subscriber, until
from wire_agent import ENV as WIRE_ENV


@pytest.fixture(scope="module")
def faker(router):
    router.add_instance("FakeDataAgent", "wire-faker", ["--sample-rate", "20", "--buffer-time", "0"])
    agent = router.agent("wire-faker")
    agent.wait_registered(15)
    yield agent
    agent.terminate()


@pytest.fixture(scope="module")
def wire(router):
    router.add_instance("WireTestAgent", "wire-test")
    agent = router.agent("wire-test", env=WIRE_ENV)
    agent.wait_registered(15)
    yield agent
    agent.terminate()


def ops(router, instance, *args, **kwargs):
    reply = router.call(f"{router.address(instance)}.ops", *args, **kwargs)
    assert "error" not in reply, reply
    return reply["args"][0]


def test_get_api_shape(router, faker):
    api = router.call(router.address("wire-faker"), "get_api")["args"][0]
    assert set(api) == {"agent_class", "instance_hostname", "instance_pid", "feeds", "processes",
                        "tasks", "access_control"}
    assert api["agent_class"] == "FakeDataAgent" and api["instance_pid"] == faker.pid
    assert [t[0] for t in api["tasks"]] == ["delay_task", "set_heartbeat"]
    assert [p[0] for p in api["processes"]] == ["acq", "count"]
    assert [f[0] for f in api["feeds"]] == ["false_temperatures", "heartbeat"]
    name, session, info = api["tasks"][0]
    assert info == {"blocking": False, "abortable": True, "docstring": info["docstring"],
                    "op_type": "task", "min_privs": 1}
    assert info["docstring"].startswith("delay_task(delay=5, succeed=True)")
    feed_info = api["feeds"][0][1]
    assert feed_info == {"agent_address": "observatory.wire-faker", "agg_params": {"frame_length": 60},
                         "feed_name": "false_temperatures",
                         "address": "observatory.wire-faker.feeds.false_temperatures",
                         "record": True, "session_id": feed_info["session_id"],
                         "agent_class": "FakeDataAgent"}
    float(feed_info["session_id"])


def test_management_queries(router, faker):
    addr = router.address("wire-faker")
    assert router.call(addr, "get_agent_class")["args"] == ["FakeDataAgent"]
    assert router.call(addr, "something_else")["args"] == [None]
    assert [f[0] for f in router.call(addr, "get_feeds")["args"][0]] == ["false_temperatures", "heartbeat"]
    assert [t[0] for t in router.call(addr, "get_tasks")["args"][0]] == ["delay_task", "set_heartbeat"]
    missing = router.call(addr)
    assert missing["error"] == "wamp.error.runtime_error" and "get_api" in missing["args"][0]


def test_params_as_object_null_or_list(router, faker):
    assert ops(router, "wire-faker", "start", "delay_task", {"delay": 0.05})[0] == 0
    for params in ({}, None, []):
        code, msg, session = ops(router, "wire-faker", "status", "delay_task", params)
        assert code == 0 and session["op_name"] == "delay_task"
    code, msg, session = ops(router, "wire-faker", "wait", "delay_task", [], timeout=5)
    assert msg == 'Operation "delay_task" is currently not running (SUCCEEDED).'
    code, msg, _ = ops(router, "wire-faker", "start", "delay_task", None)  # null params: defaults
    assert code == 0
    assert ops(router, "wire-faker", "abort", "delay_task", [])[1] == 'Requested abort on task delay_task".'
    code, msg, session = ops(router, "wire-faker", "wait", "delay_task", timeout=5)
    assert session["success"] is False and session["messages"][-2][1].startswith("Aborted after")


def test_keyword_forms_and_wamp_errors(router, faker):
    # client_t style: positional [action, op] and keyword params/timeout
    code, msg, _ = ops(router, "wire-faker", "start", "delay_task", params={"delay": 0})
    assert code == 0
    code, msg, _ = ops(router, "wire-faker", "wait", "delay_task", params=None, timeout=5)
    assert code == 0
    bad = router.call(f"{router.address('wire-faker')}.ops", "status", "delay_task", timeoutt=1)
    assert bad["error"] == "wamp.error.runtime_error" and "timeoutt" in bad["args"][0]
    bad = router.call(f"{router.address('wire-faker')}.ops", "status")
    assert bad["error"] == "wamp.error.runtime_error" and "op_name" in bad["args"][0]


def test_invalid_param_rejected_and_previous_session_kept(router, faker):
    ops(router, "wire-faker", "start", "delay_task", {"delay": 0})
    ops(router, "wire-faker", "wait", "delay_task", timeout=5)
    before = ops(router, "wire-faker", "status", "delay_task")[2]
    assert ops(router, "wire-faker", "start", "delay_task", {"delay": -2}) == [
        -1, "Param 'delay'=-2.0 is below the minimum (0.0)", {}]
    assert ops(router, "wire-faker", "start", "delay_task", {"dealy": 1}) == [
        -1, "params included unexpected values: ['dealy']", {}]
    assert ops(router, "wire-faker", "status", "delay_task")[2] == before


def test_crash_inf_and_bad_return_leave_agent_up(router, wire):
    for op in ("crash", "inf_data", "bad_return"):
        assert ops(router, "wire-test", "start", op)[0] == 0
        code, msg, session = ops(router, "wire-test", "wait", op, timeout=5)
        assert session["status"] == "done"
    crash = ops(router, "wire-test", "status", "crash")[2]
    assert crash["success"] is False and crash["messages"][-2][1] == "CRASH: RuntimeError: boom on purpose"
    data = ops(router, "wire-test", "status", "inf_data")[2]["data"]
    assert data == {"inf": None, "nan": None, "ok": 1.5}
    api = router.call(router.address("wire-test"), "get_api")
    assert "error" not in api  # inf in a session never breaks get_api (it does in ocs)
    assert ops(router, "wire-test", "status", "bad_return")[2]["success"] is False
    assert ops(router, "wire-test", "start", "needs_n", {"n": 9})[1] == "Param 'n'=9 is above the maximum (5)"
    assert ops(router, "wire-test", "start", "needs_n", {})[1] == "Param 'n' is required and must not be None"
    assert wire.is_running()
    assert "Traceback" in (wire.log_path.parent / "observatory.wire-test.log").read_text()  # in the file only


@pytest_twisted.ensureDeferred
async def test_heartbeat_and_recorded_feed_with_sequence_numbers(router, faker):
    beats = Subscriber(router.ws_url, "observatory..feeds.heartbeat", options={"match": "wildcard"})
    temps = Subscriber(router.ws_url, "observatory.wire-faker.feeds.false_temperatures")
    await beats.start()
    await temps.start()
    try:
        await until(lambda: any(e[1]["agent_address"] == "observatory.wire-faker" for e in beats.events),
                    timeout=5, what="a heartbeat")
        payload, info = next(e for e in beats.events if e[1]["agent_address"] == "observatory.wire-faker")
        assert list(payload) == ["acq", "count", "set_heartbeat", "delay_task"]
        assert info["feed_name"] == "heartbeat" and info["record"] is False
        reply = await threads.deferToThread(ops, router, "wire-faker", "start", "acq", {})
        assert reply[0] == 0
        await until(lambda: len(temps.events) >= 10, timeout=10, what="10 feed events")
        await threads.deferToThread(ops, router, "wire-faker", "stop", "acq")
        await threads.deferToThread(ops, router, "wire-faker", "wait", "acq", timeout=5)
        seqs = [e[1]["seq"] for e in temps.events]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        block = temps.events[0][0]["temps"]
        assert set(block) == {"block_name", "data", "timestamps", "influxdb_tags"}
        assert set(block["data"]) == {"channel_00", "channel_01"}
        await until(lambda: any(e[0]["acq"] == 5 for e in beats.events
                                if e[1]["agent_address"] == "observatory.wire-faker"),
                    timeout=5, what="a heartbeat with acq succeeded")
    finally:
        await beats.stop()
        await temps.stop()


def test_hostile_ops_calls_get_errors_and_are_not_logged_one_warning_each(router, start_agent):
    """Each refused call was a WARN line (a TypeError for too many arguments an ERROR with a
    traceback): a flood of bad calls flooded the agent's log."""
    from ocs_core.testing import http_call

    agent = start_agent("quiet-faker")
    ops = "observatory.quiet-faker.ops"
    before = len(agent.log_text().splitlines())
    for args in (["status", "acq", None, None, None, 6, 7], [5, None], ["status"]):
        reply = http_call(router.http_url, ops, *args)
        assert reply["error"] == "wamp.error.runtime_error", reply
    assert "ops calls take at most 5 arguments" in str(http_call(router.http_url, ops, *range(7)))
    assert "error" in http_call(router.http_url, ops, "status", "acq", bogus=1)
    log = agent.log_text()
    assert len(log.splitlines()) - before <= 1, log[-2000:]
    assert "Traceback" not in log
