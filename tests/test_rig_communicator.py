"""Tests for the transport-independent rig Communicator, over the in-memory loopback transport."""
import json
import logging

import pytest
from twisted.internet import defer

from agents.rig.communicator import Communicator, RigTransport
from agents.rig.events import ExpMessage, ExpStatus
from agents.rig.loopback import LoopbackTransport
from agents.rig.messages import MessageError, RemoteError, RigMessage, decode, encode, make_message

E = ExpMessage


@pytest.fixture
def pair():
    ta, tb = LoopbackTransport.pair()
    a, b = Communicator(ta, name="a"), Communicator(tb, name="b")
    yield a, b
    a.close()
    b.close()


def test_loopback_is_a_rig_transport():
    assert isinstance(LoopbackTransport(), RigTransport)


def test_plain_callback_fires_on_every_event(pair):
    a, b = pair
    seen = []
    b.assign_callback("expstart", seen.append)
    a.start("2022-01-01_1_mouse", {"k": 1})
    a.start("2022-01-01_2_mouse")
    a.init()  # another event: not delivered to this callback
    assert [m.exp_ref for m in seen] == ["2022-01-01_1_mouse", "2022-01-01_2_mouse"]
    assert seen[0].data == {"k": 1} and seen[0].event is E.EXPSTART and seen[0].source == "a"


def test_deferred_fires_once_and_is_cleared(pair):
    a, b = pair
    d = defer.Deferred()
    results = []
    d.addCallback(results.append)
    b.assign_callback(E.EXPINIT, d)
    a.init("first")
    a.init("second")
    assert [m.data for m in results] == ["first"]
    assert b.clear_callbacks(E.EXPINIT) == 0


def test_on_event_combined_events(pair):
    a, b = pair
    d = b.on_event(E.EXPEND | E.EXPINTERRUPT)
    results = []
    d.addCallback(results.append)
    a.stop("bye", immediately=True)
    assert len(results) == 1 and results[0].event is E.EXPINTERRUPT and results[0].data == "bye"
    # fired once: removed from both EXPEND and EXPINTERRUPT
    assert b.clear_callbacks(E.EXPEND | E.EXPINTERRUPT) == 0
    a.stop()
    assert len(results) == 1


def test_stop_sends_expend_unless_immediate(pair):
    a, b = pair
    got = []
    b.assign_callback(E.any(), got.append)
    a.stop()
    a.stop(immediately=True)
    assert [m.event for m in got] == [E.EXPEND, E.EXPINTERRUPT]


def test_service_calls_wire_shapes(pair):
    a, b = pair
    ta = a.transport
    a.init({"x": 1})
    a.start("2022-01-01_1_mouse", None)
    a.stop(2)
    a.stop(3, immediately=True)
    a.status(ExpStatus.RUNNING)
    a.info("stopped", {"trials": 5})
    a.cleanup()
    a.alyx("https://alyx.example", {"user": "token"})
    assert [json.loads(raw) for raw in ta.sent] == [
        [1, {"x": 1}], [2, "2022-01-01_1_mouse", None], [4, 2], [16, 3], [32, 20],
        [64, 30, {"trials": 5}], [8, None], [128, "https://alyx.example", {"user": "token"}],
    ]


def test_status_and_info_accessors(pair):
    a, b = pair
    got = []
    b.assign_callback("expstatus|expinfo", got.append)
    a.status(10)
    a.info(ExpStatus.RUNNING, "x")
    assert [m.status for m in got] == [ExpStatus.INITIALIZED, ExpStatus.RUNNING]
    assert got[1].as_dict() == {
        "event": "EXPINFO", "value": 64, "args": [20, "x"], "status": "RUNNING", "data": "x", "source": "a",
    }


@pytest.mark.parametrize("ref", ["mouse", "2022-13-01_1_mouse", None, "2022-01-01_1_a b"])
def test_start_checks_exp_ref(pair, ref):
    a, b = pair
    with pytest.raises(MessageError, match="exp_ref"):
        a.start(ref)
    assert a.transport.sent == []


def test_start_accepts_mapping(pair):
    a, b = pair
    d = b.on_event("EXPSTART")
    a.start({"date": "2022-01-01", "sequence": 3, "subject": "m"})
    assert d.result.exp_ref == "2022-01-01_3_m"


def test_status_checked(pair):
    a, _ = pair
    with pytest.raises(MessageError, match="status"):
        a.status(15)


def test_clear_callbacks_counts(pair):
    a, b = pair

    def f(m):
        pass

    def g(m):
        pass

    b.assign_callback("expinit", f)
    b.assign_callback("expinit", f)
    b.assign_callback("expinit", g)
    b.assign_callback(E.EXPEND | E.EXPINTERRUPT, g)
    assert b.clear_callbacks("expinit", f) == 2
    assert b.clear_callbacks("expinit", f) == 0
    assert b.clear_callbacks(E.EXPEND | E.EXPINTERRUPT, g) == 2
    assert b.clear_callbacks("expinit") == 1
    assert b.clear_callbacks(E.any()) == 0


def test_clear_callbacks_cancels_deferreds(pair):
    a, b = pair
    d = b.on_event("expinit")
    errors = []
    d.addErrback(errors.append)
    assert b.clear_callbacks("expinit", d) == 1
    assert errors and errors[0].check(defer.CancelledError)
    d2 = b.on_event("expinit")
    assert b.clear_callbacks("expinit", d2, cancel_futures=False) == 1
    assert not d2.called
    a.init()
    assert not d2.called  # cleared: no longer fires


def test_clear_one_bit_of_a_compound_deferred_keeps_it_alive(pair):
    a, b = pair
    d = b.on_event(E.EXPEND | E.EXPINTERRUPT)
    assert b.clear_callbacks(E.EXPEND) == 1
    assert not d.called  # still waiting on EXPINTERRUPT, so not cancelled
    a.stop(immediately=True)
    assert d.result.event is E.EXPINTERRUPT


def test_cancelling_on_event_withdraws_it(pair):
    a, b = pair
    d = b.on_event("expinit")
    d.addErrback(lambda f: f.trap(defer.CancelledError))
    d.cancel()
    assert b.clear_callbacks("expinit") == 0


def test_assign_callback_rejects_bad_arguments(pair):
    _, b = pair
    with pytest.raises(TypeError, match="callable or a Deferred"):
        b.assign_callback("expinit", "not callable")
    with pytest.raises(ValueError):
        b.assign_callback("expbogus", print)
    with pytest.raises(TypeError):
        b.assign_callback(1.5, print)


def test_failing_callback_reports_error_and_others_still_run(pair, caplog):
    a, b = pair
    seen = []

    def boom(m):
        raise RuntimeError("kaput")

    b.assign_callback("expinit", boom)
    b.assign_callback("expinit", seen.append)
    with caplog.at_level(logging.ERROR):
        a.init()
    assert len(seen) == 1
    assert json.loads(b.transport.sent[-1]) == [0, "RuntimeError: kaput", 1]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("callback" in m and "kaput" in m and "[b]" in m for m in errors)
    assert any("remote callback for EXPINIT" in m and "[a]" in m for m in errors)


def test_send_accepts_wire_arrays_and_checks_them(pair):
    a, b = pair
    d = b.on_event("expcleanup")
    a.send([8, "done"])
    assert d.result.data == "done"
    with pytest.raises(MessageError, match="takes 1 element"):
        a.send([8])
    with pytest.raises(MessageError, match="unknown event"):
        a.send([3, None])
    with pytest.raises(MessageError):
        a.send("EXPINIT")


def test_close_cancels_and_disconnects(pair):
    a, b = pair
    assert a.is_connected and b.is_connected
    d = b.on_event(E.any())
    errors = []
    d.addErrback(errors.append)
    b.close()
    assert errors and errors[0].check(defer.CancelledError)
    assert not b.is_connected and not a.is_connected
    assert b.clear_callbacks(E.any()) == 0


def test_framing_round_trip_and_limits():
    msg = make_message("expinfo", 20, {"a": [1, 2]})
    assert decode(encode(msg)) == msg
    assert decode(b'[0, "ValueError: x", 2]') == RemoteError("ValueError: x", 2)
    with pytest.raises(MessageError, match="exceeds"):
        encode(make_message("expinit", "x" * 100), max_size=50)
    with pytest.raises(MessageError, match="JSON-serialisable"):
        encode(make_message("expinit", object()))
    assert isinstance(msg, RigMessage)
