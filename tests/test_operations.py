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


@pytest_twisted.inlineCallbacks
def test_start_and_wait_is_start_then_wait_in_one_request(o):
    code, msg, sess = yield defer.maybeDeferred(o.ops.dispatch, "start_and_wait", "quick", {"x": 4}, 5)
    assert (code, msg) == (OK, 'Operation "quick" is currently not running (SUCCEEDED).')
    assert sess["data"]["x"] == 4 and sess["status"] == "done"
    # a refused start is start's own reply, and nothing runs
    assert o.ops.dispatch("start_and_wait", "quick", {"x": 11}) == [
        ERROR, "Param 'x'=11 is above the maximum (10)", {}]
    assert o.ops.dispatch("start_and_wait", "nope") == [ERROR, 'No task or process called "nope"', {}]
    assert o.ops["quick"].session.session_id == sess["session_id"]
    # a bad timeout is refused before the op starts
    code, msg, _ = o.ops.dispatch("start_and_wait", "slow", [], "soon")
    assert code == ERROR and "wait timeout must be a number" in msg and o.ops["slow"].session is None
    code, msg, sess = yield defer.maybeDeferred(o.ops.dispatch, "start_and_wait", "slow", [], 0.05)
    assert (code, msg) == (TIMEOUT, 'Operation "slow" still running; wait timed out.')
    again = o.ops.dispatch("start_and_wait", "slow", [], 1)
    assert again[:2] == [ERROR, 'Operation "slow" already in progress.']
    o.ops.dispatch("abort", "slow")
    _, _, sess = yield defer.maybeDeferred(o.ops.dispatch, "wait", "slow", None, 5)
    assert sess["success"] is False
    # a non-blocking op that ends at once: the reply is the finished session, no reactor turn
    code, msg, sess = o.ops.dispatch("start_and_wait", "bad_return", None, 5)
    assert (code, msg) == (OK, 'Operation "bad_return" is currently not running (FAILED).')
    assert sess["status"] == "done" and "not an (ok, message) pair" in sess["messages"][-2][1]


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


# -- access levels (the one privilege check every start/stop/abort path calls) ----------------
def _guarded_ops(policy="override:two,three"):
    from ocs_core.runtime.access import AccessControl

    o = Ops()
    o.ops.access = AccessControl(policy, "x")
    o.ops.register_task("guarded", o.slow, o.abort_slow, blocking=False, min_privs=2)
    return o


@pytest_twisted.inlineCallbacks
def test_privileges_are_checked_after_in_progress_and_before_params():
    o = _guarded_ops()
    assert o.ops.dispatch("start", "guarded", {}, password="nope") == [
        ERROR, "The action requires credential level 2-ADVANCED but the client has only level 1-BASIC", {}]
    code, msg, sess = o.ops.dispatch("start", "guarded", {}, password="two")
    assert code == OK and sess["cred_level"] == 2
    code, msg, _ = o.ops.dispatch("start", "guarded", {}, password="nope")
    assert msg == 'Operation "guarded" already in progress.'  # before the access check, as in ocs
    assert o.ops.dispatch("abort", "guarded", password="nope")[1].startswith("The action requires")
    assert o.ops.dispatch("stop", "guarded", password="nope")[1].startswith('Cannot "stop"')
    yield o.ops.stop_all(timeout=2)  # shutdown acts at level 4 whatever the rules say
    assert o.ops["guarded"].session.done


def test_min_privs_must_be_a_level():
    o = Ops()
    with pytest.raises(ValueError, match="min_privs must be a credential level 0..4, got 7"):
        o.ops.register_task("bad", o.quick, min_privs=7)
    assert o.ops.register_task("zero", o.quick, min_privs=0).op_info()["min_privs"] == 1


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


@pytest_twisted.inlineCallbacks
def test_a_blocking_task_runs_in_the_reactor_when_its_chooser_names_a_free_lock():
    lock, chosen = threading.RLock(), []

    def choose(params):
        chosen.append(params)
        return lock if params["x"] < 5 else None  # "cheap" calls: x < 5

    @param("x", type=int)
    def body(session, params):
        session.data = {"thread": threading.current_thread().name, "held": lock._is_owned()}
        return True, "done"

    ops = Operations(reactor)
    ops.register_task("choosy", body, inline=choose)
    here = threading.current_thread().name
    # start then wait (ocs's clients): the start reply still says "starting", then the body runs inline
    code, _, sess = ops.dispatch("start", "choosy", {"x": 1})
    assert code == OK and sess["status"] == "starting"
    _, _, sess = yield defer.maybeDeferred(ops.dispatch, "wait", "choosy", 5)
    assert sess["success"] and sess["data"] == {"thread": here, "held": True}
    assert [m[1] for m in sess["messages"]][:2] == ['Status is now "starting".', 'Status is now "running".']
    _, _, sess = yield defer.maybeDeferred(ops.dispatch, "start_and_wait", "choosy", {"x": 2}, 5)
    assert sess["data"] == {"thread": here, "held": True}
    _, _, sess = yield defer.maybeDeferred(ops.dispatch, "start_and_wait", "choosy", {"x": 7}, 5)
    assert sess["data"]["thread"] != here  # not cheap: a worker thread
    # the lock held elsewhere: the thread, without waiting in the reactor
    held, release = threading.Event(), threading.Event()

    def hold():
        with lock:
            held.set()
            release.wait(10)
    worker = threading.Thread(target=hold)
    worker.start()
    held.wait(10)
    d = defer.maybeDeferred(ops.dispatch, "start_and_wait", "choosy", {"x": 3}, 5)
    release.set()
    _, _, sess = yield d
    worker.join(10)
    assert sess["data"]["thread"] != here and not lock._is_owned()
    assert [p["x"] for p in chosen] == [1, 2, 7, 3]
    assert ops["choosy"].op_info()["blocking"] is True  # get_api still says blocking


def test_inline_is_for_blocking_tasks_only():
    with pytest.raises(ValueError, match="blocking tasks only"):
        Operations(reactor).register_task("t", lambda s, p: (True, ""), blocking=False, inline=lambda p: None)
