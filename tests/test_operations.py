"""Tasks and Processes: the control rules and exact replies of ocs 0.12, run on the real reactor
without a network (op bodies in threads and in the reactor)."""
import threading

import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from ocs_core.runtime.codes import ERROR, OK, TIMEOUT
from ocs_core.runtime.operations import Operations
from ocs_core.runtime.params import param
from ocs_core.runtime.timing import dsleep


class Ops:
    def __init__(self):
        self.release = threading.Event()
        self.ops = Operations(reactor)
        self.ops.register_task("quick", self.quick)
        self.ops.register_task("slow", self.slow, self.abort_slow, blocking=False)
        self.ops.register_task("crash", self.crash)
        self.ops.register_task("bad_return", lambda s, p: None, blocking=False)
        self.ops.register_task("noabort", self.quick)
        self.ops.register_process("proc", self.proc, self.stop_proc, blocking=True)

    @param("x", default=1, type=int, max=10)
    def quick(self, session, params):
        session.data = {"x": params["x"], "thread": threading.current_thread().name}
        return True, f"x was {params['x']}"

    async def slow(self, session, params):
        while session.status == "running":
            await dsleep(0.01)
        return False, "Aborted"

    def abort_slow(self, session, params):
        session.set_status("stopping")

    def crash(self, session, params):
        raise RuntimeError("boom")

    def proc(self, session, params):
        session.data = {"started": True}
        self.release.wait(5)
        return True, "Stopped cleanly."

    def stop_proc(self, session, params):
        session.set_status("stopping")
        self.release.set()


@pytest.fixture
def o():
    return Ops()


@pytest_twisted.inlineCallbacks
def test_task_start_wait_and_status(o):
    code, msg, sess = o.ops.dispatch("start", "quick", {"x": 3})
    assert (code, msg) == (OK, 'Started task "quick".')
    assert sess["status"] == "starting" and sess["op_code"] == 2 and sess["session_id"] == 0
    code, msg, sess = yield defer.maybeDeferred(o.ops.dispatch, "wait", "quick", {}, 5)
    assert (code, msg) == (OK, 'Operation "quick" is currently not running (SUCCEEDED).')
    assert sess["data"]["x"] == 3 and sess["data"]["thread"] != threading.current_thread().name
    assert [m[1] for m in sess["messages"]] == ['Status is now "starting".', 'Status is now "running".',
                                                "x was 3", 'Status is now "done".']
    assert o.ops.dispatch("status", "quick")[:2] == [OK, "Session active."]


def test_unknown_and_idle_replies(o):
    assert o.ops.dispatch("start", "nope") == [ERROR, 'No task or process called "nope"', {}]
    assert o.ops.dispatch("status", "nope") == [ERROR, 'No task or process called "nope"', {}]
    assert o.ops.dispatch("wait", "nope") == [ERROR, 'Unknown operation "nope".', {}]
    assert o.ops.dispatch("stop", "nope") == [ERROR, 'No operation called "nope".', {}]
    assert o.ops.dispatch("status", "quick") == [OK, "No session active.", {}]
    assert o.ops.dispatch("wait", "quick") == [OK, "Idle.", {}]
    assert o.ops.dispatch("abort", "slow") == [ERROR, "No session active.", {}]
    assert o.ops.dispatch("dance", "quick") == [ERROR, 'No implementation for "quick"', {}]
    assert o.ops.dispatch("stop", "quick") == [
        ERROR, 'Cannot "stop" "quick" because it is a "task".', {}]
    assert o.ops.dispatch("abort", "proc") == [
        ERROR, 'Cannot "abort" "proc" because it is a "process".', {}]


@pytest_twisted.inlineCallbacks
def test_param_rejection_keeps_previous_session(o):
    yield defer.maybeDeferred(o.ops.dispatch, "start", "quick", {"x": 2})
    yield defer.maybeDeferred(o.ops.dispatch, "wait", "quick", None, 5)
    code, msg, sess = o.ops.dispatch("start", "quick", {"x": 11})
    assert (code, msg, sess) == (ERROR, "Param 'x'=11 is above the maximum (10)", {})
    code, msg, sess = o.ops.dispatch("start", "quick", {"y": 1})
    assert msg == "params included unexpected values: ['y']"
    status = o.ops.dispatch("status", "quick")
    assert status[2]["data"]["x"] == 2 and status[2]["status"] == "done"


@pytest_twisted.inlineCallbacks
def test_wait_timeout_then_abort(o):
    o.ops.dispatch("start", "slow", [])
    code, msg, sess = yield defer.maybeDeferred(o.ops.dispatch, "wait", "slow", None, 0.05)
    assert (code, msg) == (TIMEOUT, 'Operation "slow" still running; wait timed out.')
    assert sess["status"] == "running"
    code, msg, _ = o.ops.dispatch("wait", "slow", None, -1)
    assert code == TIMEOUT
    again = o.ops.dispatch("start", "slow")
    assert again[:2] == [ERROR, 'Operation "slow" already in progress.'] and again[2]["status"] == "running"
    code, msg, sess = o.ops.dispatch("abort", "slow", [])
    assert (code, msg) == (OK, 'Requested abort on task slow".')
    code, msg, sess = yield defer.maybeDeferred(o.ops.dispatch, "wait", "slow", None, 5)
    assert msg == 'Operation "slow" is currently not running (FAILED).' and sess["op_code"] == 6
    assert o.ops.dispatch("abort", "slow") == [ERROR, "The operation is already done", {}]


@pytest_twisted.inlineCallbacks
def test_process_stop_and_shared_session_counter(o):
    o.ops.dispatch("start", "quick")
    code, msg, sess = o.ops.dispatch("start", "proc", None)
    assert msg == 'Started process "proc".' and sess["session_id"] == 1
    yield _until(lambda: o.ops["proc"].session.status == "running")
    code, msg, sess = o.ops.dispatch("stop", "proc", {})
    assert (code, msg) == (OK, 'Requested stop on process proc".')
    code, msg, sess = yield defer.maybeDeferred(o.ops.dispatch, "wait", "proc", None, 5)
    assert sess["success"] is True and sess["messages"][-2][1] == "Stopped cleanly."
    assert o.ops.op_codes() == {"quick": 5, "slow": 1, "crash": 1, "bad_return": 1,
                                "noabort": 1, "proc": 5}


@pytest_twisted.inlineCallbacks
def test_crash_and_bad_return_end_failed(o):
    o.ops.dispatch("start", "crash")
    _, _, sess = yield defer.maybeDeferred(o.ops.dispatch, "wait", "crash", None, 5)
    assert sess["success"] is False and sess["messages"][-2][1] == "CRASH: RuntimeError: boom"
    o.ops.dispatch("start", "bad_return")
    _, _, sess = yield defer.maybeDeferred(o.ops.dispatch, "wait", "bad_return", None, 5)
    assert sess["success"] is False and "not an (ok, message) pair" in sess["messages"][-2][1]


@pytest_twisted.inlineCallbacks
def test_abort_without_aborter_is_an_error(o):
    gate = defer.Deferred()

    def body(session, params):
        return gate.addCallback(lambda _: (True, "released"))
    o.ops.register_task("gated", body, blocking=False)
    o.ops.dispatch("start", "gated")
    yield _until(lambda: o.ops["gated"].session.status == "running")
    code, msg, _ = o.ops.dispatch("abort", "gated")
    assert (code, msg) == (ERROR, 'Task "gated" cannot be aborted: it was registered without an aborter.')
    gate.callback(None)
    _, _, sess = yield defer.maybeDeferred(o.ops.dispatch, "wait", "gated", None, 5)
    assert sess["success"] is True


def test_op_info(o):
    assert o.ops["slow"].op_info() == {"blocking": False, "abortable": True, "docstring": None,
                                      "op_type": "task", "min_privs": 1}
    assert o.ops["proc"].op_info()["op_type"] == "process"
    assert [op.name for op in o.ops.tasks()] == ["bad_return", "crash", "noabort", "quick", "slow"]


@defer.inlineCallbacks
def _until(predicate, timeout=5.0):
    deadline = reactor.seconds() + timeout
    while not predicate():
        if reactor.seconds() > deadline:
            raise AssertionError("condition not met in time")
        yield dsleep(0.01)


@pytest.mark.parametrize("params", [{"x": float("nan")}, {"x": [1.0, float("inf")]},
                                    {"nested": {"deep": [{"v": -float("inf")}]}}])
def test_non_finite_params_are_refused_before_the_op_starts(params):
    from twisted.internet.task import Clock

    clock = Clock()
    ops = Operations(clock)
    started = []

    @param("x", default=None)
    @param("nested", default=None)
    def declared(session, p):
        started.append(p)
        return True, "ran"

    ops.register_task("declared", declared, blocking=False)
    ops.register_task("free", lambda session, p: (started.append(p), (True, "ran"))[1], blocking=False)
    for name in ("declared", "free"):
        code, message, _ = ops.start(name, params)
        assert code != 0 and "is not a finite number" in message and "params[" in message, message
    clock.advance(1)
    assert started == []
    assert ops.start("free", {"x": 1.5})[0] == 0
    clock.advance(1)
    assert started == [{"x": 1.5}]


@pytest.mark.parametrize("timeout", [float("nan"), float("inf"), -float("inf"), 10**400])
def test_wait_refuses_a_non_finite_timeout(timeout):
    """A NaN deadline handed to callLater would break the order of the reactor's timers."""
    from twisted.internet.task import Clock

    clock = Clock()
    ops = Operations(clock)

    async def forever(session, params):
        await defer.Deferred()

    ops.register_process("p", forever, lambda session, params: None, blocking=False)
    ops.start("p", {})
    clock.advance(1)
    code, message, _ = ops.wait("p", timeout)
    assert code != 0 and "wait timeout must be" in message
    assert clock.getDelayedCalls() == []
