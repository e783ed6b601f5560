"""Unit tests of the launcher's supervision logic (no processes, an explicit clock)."""
import time

import pytest

from ocs_core.runtime.backoff import BackoffPolicy
from ocs_core.supervisor.child import Child, ChildState, describe_exit


def test_backoff_doubles_to_the_cap():
    policy = BackoffPolicy(initial=1, factor=2, maximum=30)
    assert [policy.delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    assert policy.delay(0) == 0
    assert policy.delay(10_000) == 30  # no overflow for long failure streaks


@pytest.mark.parametrize("kwargs", [{"initial": -1}, {"factor": 0.5}, {"initial": 5, "maximum": 1},
                                    {"reset_after": -1}])
def test_backoff_rejects_bad_policies(kwargs):
    with pytest.raises(ValueError, match="invalid backoff policy"):
        BackoffPolicy(**kwargs)


def start(child, now, pid=100):
    child.want(now)
    assert child.due(now)
    return child.spawned(now, pid)


def test_normal_life_cycle_and_stop():
    child = Child("faker1")
    assert child.state is ChildState.STOPPED and not child.due(0)
    event = start(child, 0.0, pid=42)
    assert (child.state, child.pid, str(event)) == (ChildState.STARTING, 42, "faker1: started (pid 42)")
    assert str(child.ready(0.5)) == "faker1: running (pid 42)"
    assert child.ready(0.6) is None  # only once
    assert child.request_stop(1.0) is True and child.state is ChildState.STOPPING
    events = child.exited(1.2, 0)
    assert [str(e) for e in events] == ["faker1: stopped (exited with code 0)"]
    assert child.state is ChildState.STOPPED and child.pid is None and not child.due(100)
    assert child.restarts == 0


def test_unexpected_exits_back_off_and_count_restarts():
    child = Child("faker1", BackoffPolicy(initial=1, factor=2, maximum=5, reset_after=60))
    now = 0.0
    start(child, now)
    delays = []
    for i in range(5):
        now += 2.0  # dies after 2 s each time
        events = child.exited(now, -9)
        assert [e.kind for e in events] == ["exited", "restarting"]
        assert events[0].text == "exited with code -9 (SIGKILL)"
        assert child.state is ChildState.BACKOFF
        delay = child.next_start - now
        delays.append(delay)
        assert not child.due(now + delay - 0.01) and child.due(now + delay)
        now += delay
        child.spawned(now, 200 + i)
    assert delays == [1, 2, 4, 5, 5]
    assert events[1].text == "restarting in 5 s"
    assert child.restarts == 5 and child.spawns == 6


def test_long_uptime_resets_the_backoff():
    child = Child("a", BackoffPolicy(initial=1, factor=2, maximum=30, reset_after=60))
    start(child, 0)
    child.exited(1, 1)  # failure 1 -> 1 s
    child.spawned(2, 2)
    child.exited(3, 1)  # failure 2 -> 2 s
    assert child.next_start == 5
    child.spawned(5, 3)
    child.ready(6)
    child.exited(5 + 60, 1)  # stayed up 60 s: counts as the first failure again
    assert child.next_start == 66
    assert child.snapshot(65.5)["next_start_in"] == 0.5


def test_stop_while_backing_off_needs_no_signal():
    child = Child("a")
    start(child, 0)
    child.exited(1, 3)
    assert child.request_stop(1.5) is False
    assert child.state is ChildState.STOPPED and not child.due(1000)
    assert child.exited(2, 0) == []  # a late exit report changes nothing


def test_spawn_failure_retries_with_backoff():
    child = Child("a", BackoffPolicy(initial=1))
    child.want(0)
    events = child.spawn_failed(0, "no such file")
    assert [str(e) for e in events] == ["a: failed to start: no such file", "a: restarting in 1 s"]
    assert child.due(1) and child.snapshot(0.5)["last_error"] == "no such file"
    child.spawned(1, 7)
    assert child.snapshot(1)["last_error"] is None


def test_snapshot_and_misuse():
    child = Child("a")
    assert child.snapshot(0) == {"state": "stopped", "pid": None, "restarts": 0, "last_exit": None,
                                 "uptime": None, "next_start_in": None, "last_error": None}
    with pytest.raises(RuntimeError, match="spawned while stopped"):
        child.spawned(0, 1)
    start(child, 10, pid=5)
    snap = child.snapshot(12.5)
    assert (snap["state"], snap["pid"], snap["uptime"]) == ("starting", 5, 2.5)


def test_describe_exit():
    assert describe_exit(None) == "exited"
    assert describe_exit(0) == "exited with code 0"
    assert describe_exit(-15) == "exited with code -15 (SIGTERM)"
    assert describe_exit(-200) == "exited with code -200"


@pytest.mark.parametrize("code", [2, 78])
def test_a_configuration_error_at_start_is_not_retried(code):
    child = Child("typo-1")
    start(child, 0.0)
    [event] = child.exited(0.5, code)
    assert event.kind == "failed" and "not restarted" in str(event)
    assert child.state is ChildState.FAILED and not child.due(1000)
    assert child.snapshot(1.0)["last_error"] == f"configuration error (exited with code {code})"
    assert child.request_stop(2.0) is False and child.state is ChildState.FAILED
    child.want(3.0)  # asked for again (ocs-core restart): starts at once
    assert child.due(3.0) and child.failures == 0


def test_exit_code_2_after_running_is_an_ordinary_crash():
    child = Child("f1", BackoffPolicy(initial=1))
    start(child, 0.0)
    child.ready(0.5)
    events = child.exited(5.0, 2)
    assert [e.kind for e in events] == ["exited", "restarting"] and child.state is ChildState.BACKOFF


def test_control_requests_are_checked_and_answered(tmp_path):
    import json
    import threading

    from ocs_core.supervisor.control import ControlError, send_request, take_requests, write_reply

    folder = tmp_path / "requests"
    folder.mkdir()
    (folder / "bad.json").write_text(json.dumps({"action": "explode", "instances": ["a"]}))
    (folder / "worse.json").write_text("not json")
    assert take_requests(tmp_path) == []
    assert json.loads((folder / "bad.reply").read_text())["ok"] is False
    assert "bad request" in json.loads((folder / "worse.reply").read_text())["lines"][0]

    def supervisor():  # answers the first well-formed request it sees
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            for request_id, action, names in take_requests(tmp_path):
                write_reply(tmp_path, request_id, True, [f"{n}: {action}" for n in names])
                return
            time.sleep(0.01)
    thread = threading.Thread(target=supervisor)
    thread.start()
    reply = send_request(tmp_path, "restart", ["f1", "f2"], timeout=5)
    thread.join()
    assert reply == {"ok": True, "lines": ["f1: restart", "f2: restart"]}
    with pytest.raises(ControlError, match="did not answer within 0.2 s"):
        send_request(tmp_path, "up", ["f1"], timeout=0.2)
    assert not list(folder.glob("*.json"))  # a request nobody took is withdrawn
