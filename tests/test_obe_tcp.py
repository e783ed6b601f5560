"""Tests for the classic OBE TCP protocol: dispatcher, Twisted protocol (StringTransport), real sockets."""
import copy
import json
import logging
import random
import socket
import threading

import pytest
import pytest_twisted
from twisted.internet import defer, threads
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from agents.obe.classic.commands import BackendCall, LegacyDispatcher, OBEBackend, Reply
from agents.obe.classic.server import DEFAULT_INTERFACE, DEFAULT_PORT, LegacyOBEFactory, listen
from ocs_core.framing.length_prefixed import FrameParser, encode
from obe_malformed import malformed_cases, send_malformed
from raw_obe_client import at_eof, recv_exact, recv_frame, tcpcmd  # standard library only


class FakeBackend:
    """Deterministic pure-Python backend that records every call."""

    def __init__(self, has_run=True):
        self.lock = threading.Lock()
        self.calls = []
        self.running = has_run
        self.data = []
        self.runs = []

    def state(self):
        with self.lock:
            return copy.deepcopy((self.running, self.data, self.runs))

    def _record(self, *call):
        with self.lock:
            self.calls.append(call)

    def has_run(self):
        return self.running

    def getset(self):
        self._record("getset")
        return [[2.0, 2.25, 2.5, 2.75, 3.0]]

    def getpar(self):
        self._record("getpar")
        return [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]

    def getcon(self):
        self._record("getcon")
        return [0.5, "c"]

    def getwgt(self):
        self._record("getwgt")
        return [0.25, 0.25, 0.5]

    def getmean(self):
        self._record("getmean")
        with self.lock:
            ys = [y if isinstance(y, float) else y[0] for _, y, _ in self.data]
        return [sum(ys) / len(ys) if ys else 0.0, float(len(ys))]

    def getstd(self):
        self._record("getstd")
        return [float("nan"), 0.5]

    def getcov(self):
        self._record("getcov")
        return [[1.0, 0.0], [0.0, 2.0]]

    def optset(self):
        self._record("optset")
        return (2.0,)

    def goodset(self, pickiness):
        self._record("goodset", pickiness)
        return [2.5 if pickiness is None else float(pickiness)]

    def newdat(self, x, y, s):
        self._record("newdat", x, y, s)
        if len(x) != 1:
            raise ValueError(f"x must have 1 value (one per knob), got {len(x)}")
        if y == 666.0:
            raise RuntimeError("simulated engine bug")
        with self.lock:
            self.data.append((x, y, s))

    def newrun(self, message):
        self._record("newrun", message)
        if message.get("bad"):
            raise ValueError("bad newrun configuration")
        with self.lock:
            self.running = True
            self.runs.append(message)
            self.data.clear()


def test_fake_backend_satisfies_protocol():
    assert isinstance(FakeBackend(), OBEBackend)


# -- dispatcher (pure) -------------------------------------------------------------------------

def handle(backend, request):
    return LegacyDispatcher(backend).handle(request).value


@pytest.mark.parametrize("command, expected", [
    ("ready", "OK"), ("done", "OK"), ("getset", [[2.0, 2.25, 2.5, 2.75, 3.0]]),
    ("getpar", [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]), ("getpdf", [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]),
    ("getcon", [0.5, "c"]), ("getwgt", [0.25, 0.25, 0.5]), ("getmean", [0.0, 0.0]),
    ("getcov", [[1.0, 0.0], [0.0, 2.0]]), ("optset", (2.0,)), ("goodset", [2.5]),
])
def test_dispatch_each_command(command, expected):
    assert handle(FakeBackend(), {"command": command}) == expected


def test_done_is_flagged():
    reply = LegacyDispatcher(FakeBackend()).handle({"command": "done"})
    assert reply == Reply("OK", done=True)


def test_goodset_pickiness_and_newdat_newrun():
    backend = FakeBackend(has_run=False)
    assert handle(backend, {"command": "newrun", "lolim": 1, "hilim": 2}) == "OK"
    assert backend.runs == [{"command": "newrun", "lolim": 1, "hilim": 2}]
    assert handle(backend, {"command": "goodset", "pickiness": 4}) == [4.0]
    assert handle(backend, {"command": "goodset", "pickiness": None}) == [2.5]
    assert handle(backend, {"command": "newdat", "x": [2.5], "y": 1, "s": 0.5, "extra": "ignored"}) == "OK"
    assert handle(backend, {"command": "newdat", "x": 2.5, "y": [1.0, 2], "s": [0.5, 1]}) == "OK"
    assert backend.data == [([2.5], 1.0, 0.5), ([2.5], [1.0, 2.0], [0.5, 1.0])]
    assert all(isinstance(v, float) for v in backend.data[0][0] + [backend.data[0][1]])


@pytest.mark.parametrize("request_, fragment", [
    ("ready", "must be a JSON object"),
    ([{"command": "ready"}], "must be a JSON object"),
    (None, "must be a JSON object"),
    ({}, 'no "command"'),
    ({"cmd": "ready"}, 'no "command"'),
    ({"command": 5}, '"command" must be a string'),
    ({"command": "xxgetmeanxx"}, "unknown command"),
    ({"command": "optsetgetmean"}, "unknown command"),
    ({"command": "READY"}, "unknown command"),
    ({"command": ""}, "unknown command"),
    ({"command": "newdat", "x": [1.0], "y": 1.0}, "missing key(s) s"),
    ({"command": "newdat"}, "missing key(s) x, y, s"),
    ({"command": "newdat", "x": ["a"], "y": 1.0, "s": 1.0}, "x[0] must be a number"),
    ({"command": "newdat", "x": [1.0], "y": "1", "s": 1.0}, "y must be a number"),
    ({"command": "newdat", "x": [1.0], "y": True, "s": 1.0}, "y must be a number"),
    ({"command": "newdat", "x": [1.0], "y": 1.0, "s": None}, "s must be a number"),
    ({"command": "newdat", "x": [], "y": 1.0, "s": 1.0}, "x must not be an empty list"),
    ({"command": "newdat", "x": [1.0], "y": float("nan"), "s": 1.0}, "y must be finite"),
    ({"command": "newdat", "x": [float("inf")], "y": 1.0, "s": 1.0}, "x[0] must be finite"),
    ({"command": "newdat", "x": [1.0], "y": 1.0, "s": 10**400}, "s is too large"),
    ({"command": "newdat", "x": [1.0], "y": 1.0, "s": 0}, "must be > 0"),
    ({"command": "newdat", "x": [1.0], "y": [1.0], "s": [1.0, -1.0]}, "must be > 0"),
    ({"command": "newdat", "x": [1.0], "y": {"a": 1}, "s": 1.0}, "y must be a number"),
    ({"command": "newdat", "x": [1.0, 2.0], "y": 1.0, "s": 1.0}, "newdat: x must have 1 value"),
    ({"command": "newdat", "x": [1.0], "y": 666.0, "s": 1.0}, "newdat failed: internal error"),
    ({"command": "goodset", "pickiness": "high"}, "pickiness must be a number"),
    ({"command": "goodset", "pickiness": -1}, "pickiness must be >= 0"),
    ({"command": "newrun", "bad": True}, "newrun: bad newrun configuration"),
])
def test_bad_requests_get_error_and_change_nothing(request_, fragment, caplog):
    backend = FakeBackend()
    before = backend.state()
    with caplog.at_level(logging.ERROR):
        reply = handle(backend, request_)
    assert set(reply) == {"error"} and fragment in reply["error"], reply
    assert backend.state() == before


def test_internal_error_logged_once_with_traceback(caplog):
    with caplog.at_level(logging.ERROR):
        reply = handle(FakeBackend(), {"command": "newdat", "x": [1.0], "y": 666.0, "s": 1.0})
    assert reply == {"error": "newdat failed: internal error in the OBE backend (logged)"}
    records = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(records) == 1 and records[0].exc_info and "simulated engine bug" in caplog.text


@pytest.mark.parametrize("command", ["getset", "getpar", "getpdf", "getcon", "getwgt", "getmean",
                                     "getstd", "getcov", "optset", "goodset"])
def test_commands_before_a_run(command):
    backend = FakeBackend(has_run=False)
    assert handle(backend, {"command": command}) == {"error": f"{command}: no run exists yet; send newrun first"}
    assert handle(backend, {"command": "newdat", "x": [1.0], "y": 1.0, "s": 1.0})["error"].startswith("newdat: no run")
    assert backend.calls == []
    assert handle(backend, {"command": "ready"}) == "OK"


def test_prepare_does_not_touch_the_backend():
    backend = FakeBackend()
    prepared = LegacyDispatcher(backend).prepare({"command": "newdat", "x": [1.0], "y": 2.0, "s": 1.0})
    assert isinstance(prepared, BackendCall) and backend.calls == []
    assert prepared.run() == Reply("OK") and backend.data == [([1.0], 2.0, 1.0)]


# -- Twisted protocol over StringTransport ------------------------------------------------------

def sync_runner(work):
    return defer.maybeDeferred(work)


class ManualRunner:
    """Runs work only when the test says so, to control completion order."""

    def __init__(self):
        self.pending = []

    def __call__(self, work):
        d = defer.Deferred()
        self.pending.append((work, d))
        return d

    def finish_one(self):
        work, d = self.pending.pop(0)
        d.callback(work())


def connect(factory):
    proto = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5555))
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 5555))
    proto.makeConnection(transport)
    return proto, transport


def replies(transport):
    return [e.value for e in FrameParser(max_body=10**9).receive(transport.value())]


def test_ready_byte_for_byte_stringtransport():
    proto, tr = connect(LegacyOBEFactory(FakeBackend(), runner=sync_runner))
    proto.dataReceived(b'0000000020{"command": "ready"}')
    assert tr.value() == b'0000000004"OK"'
    assert not tr.disconnecting


def test_reply_shapes_on_the_wire():
    proto, tr = connect(LegacyOBEFactory(FakeBackend(), runner=sync_runner))
    for command in ["getmean", "getstd", "optset", "newdat", "goodset"]:
        request = {"command": command}
        if command == "newdat":
            request.update(x=[2.5], y=3.0, s=0.5)
        if command == "goodset":
            request["pickiness"] = 4
        proto.dataReceived(encode(request))
    assert tr.value() == (b"0000000010[0.0, 0.0]" + b"0000000011[null, 0.5]" + b"0000000005[2.0]"
                          + b'0000000004"OK"' + b"0000000005[4.0]")


def test_fragmented_and_pipelined_requests_keep_order():
    backend = FakeBackend()
    proto, tr = connect(LegacyOBEFactory(backend, runner=sync_runner))
    data = b"".join(encode(r) for r in [
        {"command": "newdat", "x": [1.0], "y": 4.0, "s": 1.0}, {"command": "getmean"},
        "junk", {"command": "newdat", "x": [1.0], "y": 6.0, "s": 1.0}, {"command": "getmean"},
        {"command": "ready"}])
    for i in range(len(data)):
        proto.dataReceived(data[i:i + 1])
    assert replies(tr) == ["OK", [4.0, 1.0], {"error": 'request must be a JSON object with a "command" key, got str'},
                           "OK", [5.0, 2.0], "OK"]


def test_slow_backend_calls_keep_reply_order_and_pause_when_queue_full():
    runner = ManualRunner()
    proto, tr = connect(LegacyOBEFactory(FakeBackend(), runner=runner, max_queued=4))
    proto.dataReceived(encode({"command": "optset"}) + encode({"command": "ready"})
                       + encode({"command": "getmean"}) + encode("bad"))
    assert tr.value() == b"" and len(runner.pending) == 1
    assert tr.producerState == "producing"         # 1 in flight, 3 queued
    proto.dataReceived(encode({"command": "ready"}) + encode({"command": "getcov"}))
    assert tr.producerState == "paused"            # 1 in flight, 4 queued, getcov still buffered
    assert proto.parser.buffered == len(encode({"command": "getcov"}))
    runner.finish_one()                            # optset done; ready served; getmean starts
    assert replies(tr) == [[2.0], "OK"]
    assert len(runner.pending) == 1
    assert tr.producerState == "producing"
    runner.finish_one()                            # getmean; "bad"; ready; getcov starts
    runner.finish_one()
    assert replies(tr) == [[2.0], "OK", [0.0, 0.0],
                           {"error": 'request must be a JSON object with a "command" key, got str'},
                           "OK", [[1.0, 0.0], [0.0, 2.0]]]
    assert runner.pending == []


def test_bad_body_keeps_connection_bad_prefix_closes_it():
    proto, tr = connect(LegacyOBEFactory(FakeBackend(), runner=sync_runner))
    proto.dataReceived(b"0000000003NaN")
    assert replies(tr) == [{"error": "bad frame: invalid JSON: non-finite number NaN is not allowed"}]
    assert not tr.disconnecting
    tr.clear()
    proto.dataReceived(b'{"command": "ready"}' + encode({"command": "ready"}))
    [reply] = replies(tr)
    assert reply["error"].startswith("bad frame: bad length prefix")
    assert tr.disconnecting


def test_oversized_prefix_refused_and_closed():
    proto, tr = connect(LegacyOBEFactory(FakeBackend(), runner=sync_runner, max_body=64))
    proto.dataReceived(b"0000000065")
    assert replies(tr) == [{"error": "bad frame: declared length 65 exceeds the limit of 64 bytes"}]
    assert tr.disconnecting


def test_done_closes_connection_by_default():
    proto, tr = connect(LegacyOBEFactory(FakeBackend(), runner=sync_runner))
    proto.dataReceived(encode({"command": "done"}) + encode({"command": "ready"}))
    assert tr.value() == b'0000000004"OK"'
    assert tr.disconnecting


def test_done_hook_and_keep_open():
    seen = []
    proto, tr = connect(LegacyOBEFactory(FakeBackend(), runner=sync_runner, on_done=seen.append,
                                         close_on_done=False))
    proto.dataReceived(encode({"command": "done"}) + encode({"command": "ready"}))
    assert seen == [proto]
    assert replies(tr) == ["OK", "OK"] and not tr.disconnecting


def test_connection_lost_while_backend_busy():
    runner = ManualRunner()
    backend = FakeBackend()
    proto, tr = connect(LegacyOBEFactory(backend, runner=runner))
    proto.dataReceived(encode({"command": "newdat", "x": [1.0], "y": 1.0, "s": 1.0}) + encode({"command": "ready"}))
    proto.connectionLost(None)
    runner.finish_one()
    assert tr.value() == b"" and runner.pending == []
    assert backend.data == [([1.0], 1.0, 1.0)]   # the accepted measurement was applied


def test_runner_failure_reported():
    def broken_runner(work):
        raise RuntimeError("thread pool gone")
    proto, tr = connect(LegacyOBEFactory(FakeBackend(), runner=broken_runner))
    proto.dataReceived(encode({"command": "getmean"}) + encode({"command": "ready"}))
    assert replies(tr) == [{"error": "getmean failed: internal error (logged)"}, "OK"]


def test_unencodable_backend_reply():
    backend = FakeBackend()
    backend.getcon = lambda: [object()]
    proto, tr = connect(LegacyOBEFactory(backend, runner=sync_runner))
    proto.dataReceived(encode({"command": "getcon"}))
    [reply] = replies(tr)
    assert reply["error"].startswith("reply could not be encoded")


def test_many_pipelined_requests_with_sync_runner_do_not_recurse():
    backend = FakeBackend()
    proto, tr = connect(LegacyOBEFactory(backend, runner=sync_runner))
    proto.dataReceived(b"".join(encode({"command": "newdat", "x": [1.0], "y": float(i % 500), "s": 1.0})
                                for i in range(3000)))
    assert replies(tr) == ["OK"] * 3000 and len(backend.data) == 3000


def test_defaults():
    assert (DEFAULT_PORT, DEFAULT_INTERFACE) == (61981, "127.0.0.1")


# -- real sockets on loopback, client uses only the standard library ---------------------------

@pytest.fixture
def served():
    backend = FakeBackend()
    port = listen(backend, port=0)
    yield backend, port.getHost().port
    port.stopListening()


@pytest_twisted.inlineCallbacks
def test_socket_ready_byte_for_byte(served):
    _, port = served

    def client():
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b'0000000020{"command": "ready"}')
            return recv_exact(sock, 14)

    assert (yield threads.deferToThread(client)) == b'0000000004"OK"'


@pytest_twisted.inlineCallbacks
def test_socket_one_request_per_connection(served):
    backend, port = served

    def client():
        out = []
        for y in (1.0, 3.0):
            out.append(tcpcmd(port, {"command": "goodset", "pickiness": 6}))
            out.append(tcpcmd(port, {"command": "newdat", "x": [2.0], "y": y, "s": 0.005}))
            out.append(tcpcmd(port, {"command": "getmean"}))
        out.append(tcpcmd(port, {"command": "optset"}))
        return out

    assert (yield threads.deferToThread(client)) == [[6.0], "OK", [1.0, 1.0], [6.0], "OK", [2.0, 2.0], [2.0]]
    assert len(backend.data) == 2


@pytest_twisted.inlineCallbacks
def test_socket_many_requests_per_connection_pipelined(served):
    backend, port = served

    def client():
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            payload = b""
            for i in range(200):
                for obj in ({"command": "newdat", "x": [1.0], "y": float(i), "s": 1.0}, {"command": "getmean"}):
                    body = json.dumps(obj).encode()
                    payload += b"%010d" % len(body) + body
            sock.sendall(payload)
            return [json.loads(recv_frame(sock)[10:]) for _ in range(400)]

    out = yield threads.deferToThread(client)
    assert out[0::2] == ["OK"] * 200
    assert out[1::2] == [[sum(range(i + 1)) / (i + 1), float(i + 1)] for i in range(200)]


@pytest_twisted.inlineCallbacks
def test_socket_big_replies_partly_queued_keep_their_order():
    class BigBackend(FakeBackend):
        def getpar(self):  # ~4 MB: more than the socket takes at once, the rest is queued
            return [[float(i) for i in range(400_000)]]

    port = listen(BigBackend(), port=0)
    number = port.getHost().port

    def client():
        with socket.create_connection(("127.0.0.1", number), timeout=10) as sock:
            frames = b"".join(b"%010d" % len(body) + body for body in (
                b'{"command": "getpar"}', b'{"command": "ready"}', b'{"command": "getpar"}',
                b'{"command": "getcon"}'))
            sock.sendall(frames)
            return [json.loads(recv_frame(sock)[10:]) for _ in range(4)]

    try:
        big, ready, big2, con = yield threads.deferToThread(client)
    finally:
        yield port.stopListening()
    assert big == big2 == [[float(i) for i in range(400_000)]] and ready == "OK" and con == [0.5, "c"]


@pytest_twisted.inlineCallbacks
def test_socket_done_replies_then_closes(served):
    _, port = served

    def client():
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b'0000000019{"command": "done"}')
            return recv_exact(sock, 14), at_eof(sock), tcpcmd(port, {"command": "ready"})

    assert (yield threads.deferToThread(client)) == (b'0000000004"OK"', True, "OK")


@pytest_twisted.inlineCallbacks
def test_socket_1000_malformed_frames_leave_server_serving_and_state_unchanged(served):
    backend, port = served
    assert (yield threads.deferToThread(tcpcmd, port, {"command": "newdat", "x": [1.0], "y": 5.0, "s": 1.0})) == "OK"
    before, mean_before = backend.state(), (yield threads.deferToThread(tcpcmd, port, {"command": "getmean"}))
    cases = malformed_cases(random.Random(5))
    assert len(cases) >= 1000

    def client():
        counts = send_malformed(port, cases)
        return counts, tcpcmd(port, {"command": "ready"}), tcpcmd(port, {"command": "getmean"})

    counts, ready, mean_after = yield threads.deferToThread(client)
    assert counts["error"] >= 600 and counts["fatal"] == 200 and counts["none"] == 250
    assert ready == "OK"
    assert mean_after == mean_before == [5.0, 1.0]
    assert backend.state() == before


@pytest_twisted.inlineCallbacks
def test_socket_half_close_still_gets_every_reply(served):
    backend, port = served

    def client():
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b'0000000020{"command": "ready"}0000000021{"command": "optset"}00000000')
            sock.shutdown(socket.SHUT_WR)
            return recv_frame(sock), recv_frame(sock), at_eof(sock)

    assert (yield threads.deferToThread(client)) == (b'0000000004"OK"', b"0000000005[2.0]", True)


def test_half_close_with_stringtransport_waits_for_busy_call():
    runner = ManualRunner()
    proto, tr = connect(LegacyOBEFactory(FakeBackend(), runner=runner))
    proto.dataReceived(encode({"command": "getmean"}) + encode({"command": "ready"}))
    proto.readConnectionLost()
    assert not tr.disconnecting
    runner.finish_one()
    assert replies(tr) == [[0.0, 0.0], "OK"] and tr.disconnecting


@pytest_twisted.inlineCallbacks
def test_socket_concurrent_clients_each_keep_their_order(served):
    backend, port = served
    reactor_thread = threading.current_thread()
    seen_threads = set()
    original = backend.goodset

    def goodset(pickiness):
        seen_threads.add(threading.current_thread())
        return original(pickiness)

    backend.goodset = goodset

    def client(k):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            payload = b""
            for i in range(100):
                body = json.dumps({"command": "goodset", "pickiness": k * 1000 + i}).encode()
                payload += b"%010d" % len(body) + body
            sock.sendall(payload)
            return [json.loads(recv_frame(sock)[10:])[0] for _ in range(100)]

    results = yield defer.gatherResults([threads.deferToThread(client, k) for k in range(4)])
    for k, result in enumerate(results):
        assert result == [float(k * 1000 + i) for i in range(100)]
    assert seen_threads and reactor_thread not in seen_threads


def test_tcp_layer_logs_backend_failure_once_through_twisted_logger():
    from twisted.logger import globalLogPublisher
    from twisted.python.threadable import isInIOThread

    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        proto, tr = connect(LegacyOBEFactory(FakeBackend(), runner=sync_runner))
        proto.dataReceived(encode({"command": "newdat", "x": [1.0], "y": 666.0, "s": 1.0}))
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert replies(tr) == [{"error": "newdat failed: internal error in the OBE backend (logged)"}]
    assert isInIOThread()  # pytest-twisted runs tests in the reactor thread
    failures = [e for e in events if "log_failure" in e]
    assert len(failures) == 1 and failures[0]["command"] == "newdat"
    assert "simulated engine bug" in failures[0]["log_failure"].getTraceback()


# -- cheap commands without a thread hop -------------------------------------------------------

class RecordingRunner:
    def __init__(self):
        self.commands = []

    def __call__(self, work):
        self.commands.append(work)
        return defer.maybeDeferred(work)


class StepClock:
    """A fake clock: every reading is ``step`` seconds after the previous one."""

    def __init__(self, step):
        self.step, self.now = step, 0.0

    def __call__(self):
        self.now += self.step
        return self.now


def test_cheap_commands_answered_inline_when_the_lock_is_free(tmp_path):
    from agents.obe.inline_budget import InlineBudget
    from agents.obe.run_store import RunStore
    from agents.obe.service import RESAMPLING_NEWDAT, OBEService

    clock = StepClock(0.0001)  # every engine call measures 0.1 ms: under the 0.5 ms budget
    service = OBEService(RunStore(tmp_path / "runs.sqlite3"), inline_budget=InlineBudget(0.0005, clock=clock),
                         snapshot_every=1000)
    runner = RecordingRunner()
    proto, tr = connect(LegacyOBEFactory(service, runner=runner))
    proto.dataReceived(encode({"command": "getmean"}))  # no run yet: the error, inline
    assert "no run exists yet" in replies(tr)[0]["error"] and runner.commands == []
    service.start_run({"model": "lorentzian", "settings": {"start": 1.5, "stop": 4.5, "num": 50},
                       "n_particles": 500, "noise_std": 100.0, "seed": 1})
    tr.clear()
    # the first call of an engine command is measured in the thread; small lists are inline
    for command in ("getmean", "getstd", "getcov", "getcon", "getset"):
        proto.dataReceived(encode({"command": command}))
    assert len(runner.commands) == 3
    for command in ("getmean", "getstd", "getcov"):  # measured cheap now: inline
        proto.dataReceived(encode({"command": command}))
    assert len(runner.commands) == 3
    got = replies(tr)
    assert got[5] == got[0] == service.getmean() and got[7] == service.getcov() and len(got[4][0]) == 50
    # big replies go to the thread; the setting choice once, then inline; a measurement stays in
    # the thread until a measurement that resampled was measured cheap too (one may resample)
    tr.clear()
    newdat = {"command": "newdat", "x": [2.0], "y": 50000.0, "s": 100.0}
    for request in ({"command": "getpar"}, {"command": "optset"}, newdat, {"command": "optset"}, newdat):
        proto.dataReceived(encode(request))
    assert len(runner.commands) == 7 and len(replies(tr)) == 5
    service.budget.record(RESAMPLING_NEWDAT, 0.0001)  # as a resampling one measured in a thread
    proto.dataReceived(encode(newdat))
    assert len(runner.commands) == 7 and len(replies(tr)) == 6
    assert service.engine.n_measurements == 3 and service.store.count_measurements(service.run_id) == 3
    # a held lock (a worker thread busy with the posterior): the cheap command waits in the thread
    held, release = threading.Event(), threading.Event()

    def hold():
        with service._lock:
            held.set()
            release.wait(10)
    worker = threading.Thread(target=hold)
    worker.start()
    held.wait(10)
    tr.clear()
    pending = []
    proto.runner = lambda work: pending.append(work) or defer.Deferred()  # a thread not run yet
    proto.dataReceived(encode({"command": "getmean"}))
    assert len(pending) == 1 and replies(tr) == []  # the reactor did not wait for the lock
    release.set()
    worker.join(10)
    reply, data = pending[0]()
    assert reply.value == service.getmean()
    service.store.close()


def test_commands_over_the_budget_and_durable_commits_go_to_the_thread(tmp_path):
    from agents.obe.inline_budget import InlineBudget
    from agents.obe.run_store import RunStore
    from agents.obe.service import OBEService

    config = {"model": "lorentzian", "settings": {"start": 1.5, "stop": 4.5, "num": 50},
              "n_particles": 500, "noise_std": 100.0, "seed": 1}
    newdat = {"command": "newdat", "x": [2.0], "y": 50000.0, "s": 100.0}
    for budget, clock, durable in ((0.0005, StepClock(0.001), False), (0.0, StepClock(0.0), False),
                                   (0.0005, StepClock(0.0001), True)):
        service = OBEService(RunStore(tmp_path / f"runs-{budget}-{durable}.sqlite3", durable=durable),
                             inline_budget=InlineBudget(budget, clock=clock), snapshot_every=1000)
        service.start_run(config)
        runner = RecordingRunner()
        proto, tr = connect(LegacyOBEFactory(service, runner=runner))
        for _ in range(3):
            proto.dataReceived(encode(newdat))
        assert len(runner.commands) == 3 and replies(tr) == ["OK"] * 3
        if not durable:  # 1 ms measured, or budget 0: nothing of the engine runs inline
            proto.dataReceived(encode({"command": "getmean"}))
            proto.dataReceived(encode({"command": "getmean"}))
            assert len(runner.commands) == 5
        service.store.close()


def test_a_measurement_due_a_snapshot_goes_to_the_thread(tmp_path):
    from agents.obe.inline_budget import InlineBudget
    from agents.obe.run_store import RunStore
    from agents.obe.service import RESAMPLING_NEWDAT, OBEService

    service = OBEService(RunStore(tmp_path / "runs.sqlite3"), snapshot_every=3,
                         inline_budget=InlineBudget(0.0005, clock=StepClock(0.0001)))
    service.start_run({"model": "lorentzian", "settings": {"start": 1.5, "stop": 4.5, "num": 50},
                       "n_particles": 500, "noise_std": 100.0, "seed": 1})
    for kind in ("newdat", RESAMPLING_NEWDAT):  # both kinds of measurement measured cheap
        service.budget.record(kind, 0.0001)
    runner = RecordingRunner()
    proto, tr = connect(LegacyOBEFactory(service, runner=runner))
    for _ in range(6):
        proto.dataReceived(encode({"command": "newdat", "x": [2.0], "y": 50000.0, "s": 100.0}))
    # 1, 2 inline; 3 (snapshot) thread; 4, 5 inline; 6 (snapshot) thread
    assert len(runner.commands) == 2 and replies(tr) == ["OK"] * 6
    assert service.store.latest_snapshot(service.run_id).n_measurements == 6
    service.store.close()


def test_a_measurement_waits_in_the_thread_while_the_store_is_busy(tmp_path):
    from agents.obe.inline_budget import InlineBudget
    from agents.obe.run_store import RunStore
    from agents.obe.service import OBEService

    service = OBEService(RunStore(tmp_path / "runs.sqlite3"), snapshot_every=1000,
                         inline_budget=InlineBudget(0.0005, clock=StepClock(0.0001)))
    service.start_run({"model": "lorentzian", "settings": {"start": 1.5, "stop": 4.5, "num": 50},
                       "n_particles": 500, "noise_std": 100.0, "seed": 1})
    pending = []

    def later(work):  # a worker thread that has not run yet
        d = defer.Deferred()
        pending.append((work, d))
        return d
    runner = RecordingRunner()
    proto, tr = connect(LegacyOBEFactory(service, runner=runner))
    newdat = encode({"command": "newdat", "x": [2.0], "y": 50000.0, "s": 100.0})
    proto.dataReceived(newdat)  # measured in the thread
    proto.runner = later
    held, release = threading.Event(), threading.Event()

    def hold():  # e.g. the measurements Task reading the store in a worker thread
        with service.store.lock:
            held.set()
            release.wait(10)
    worker = threading.Thread(target=hold)
    worker.start()
    held.wait(10)
    proto.dataReceived(newdat)  # not inline: the store's lock is taken
    assert len(pending) == 1 and not service._lock._is_owned()
    release.set()
    worker.join(10)
    work, d = pending.pop()
    d.callback(work())
    proto.dataReceived(newdat)  # free again: inline
    assert len(runner.commands) == 1 and not pending and replies(tr) == ["OK"] * 3
    assert service.store.count_measurements(service.run_id) == 3
    service.store.close()
