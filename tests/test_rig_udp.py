"""Tests for the UDP rig transport: loopback round trips, echo confirmation, bad datagrams."""
import json
import logging
import socket

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task

from agents.rig.events import ExpMessage, ExpStatus
from agents.rig.messages import MessageError, make_message
from agents.rig.udp import UDPTransport, udp_communicator

DEADLINE = 5.0  # seconds any single wait in these tests may take before it counts as a failure


def within(d, seconds=DEADLINE):
    """Fail ``d`` with TimeoutError if it has not fired after ``seconds``."""
    return d.addTimeout(seconds, reactor)


@pytest_twisted.async_yield_fixture
async def rigs():
    """Two of our communicators on loopback with ephemeral ports, each the other's remote."""
    server = await udp_communicator(name="server")
    client = await udp_communicator(remote=server.transport.local_address, name="client")
    yield server, client
    await defer.gatherResults([defer.maybeDeferred(c.transport.close) for c in (server, client)])
    server.close()
    client.close()


@pytest_twisted.ensureDeferred
async def test_round_trip_both_ways(rigs):
    server, client = rigs
    started = server.on_event("EXPSTART")
    await within(client.start("2022-01-01_1_mouse", {"rig": "client"}))  # fires on echo
    msg = await within(started)
    assert msg.exp_ref == "2022-01-01_1_mouse" and msg.data == {"rig": "client"}
    assert msg.source == client.transport.local_address
    # the server answers whoever wrote: reply with EXPSTATUS to the client's address
    status = client.on_event(ExpMessage.EXPSTATUS | ExpMessage.EXPINFO)
    await within(server.status(ExpStatus.RUNNING, addr=msg.source))
    reply = await within(status)
    assert reply.event is ExpMessage.EXPSTATUS and reply.status is ExpStatus.RUNNING


@pytest_twisted.ensureDeferred
async def test_many_messages_in_order_and_callbacks_repeat(rigs):
    server, client = rigs
    seen = []
    server.assign_callback(ExpMessage.any(), seen.append)
    for i in range(5):  # concurrent sends to one address are queued behind each echo
        client.info("running", i)
    await within(client.stop(immediately=True))
    assert [m.data for m in seen] == [0, 1, 2, 3, 4, None]
    assert seen[-1].event is ExpMessage.EXPINTERRUPT


@pytest_twisted.ensureDeferred
async def test_no_echo_times_out():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # bound, never answers
        silent.bind(("127.0.0.1", 0))
        com = await udp_communicator(remote=silent.getsockname(), echo_timeout=0.2)
        try:
            with pytest.raises(TimeoutError, match="no echo"):
                await within(com.init())
            assert com.is_connected  # a lost echo does not close the rig
            raw, _ = silent.recvfrom(65535)
            assert json.loads(raw) == [1, None]
        finally:
            com.close()


def test_echo_timeout_with_fake_clock():
    clock = task.Clock()
    t = UDPTransport(remote=("127.0.0.1", 9), clock=clock, echo_timeout=1.0)
    written = []

    class FakeSocket:
        def write(self, data, addr):
            written.append((data, addr))

    t.transport = FakeSocket()
    t.logger = logging.getLogger("test")
    t.startProtocol()
    first = t.send(make_message("expinit", None))
    second = t.send(make_message("expend", None))
    assert len(written) == 1  # the second waits for the first's echo
    t.datagramReceived(written[0][0], ("127.0.0.1", 9))
    assert first.called and first.result is None
    assert len(written) == 2
    errors = []
    second.addErrback(errors.append)
    clock.advance(1.0)
    assert errors and errors[0].check(TimeoutError)


@pytest_twisted.ensureDeferred
async def test_bad_datagrams_are_rejected_with_one_error_each(caplog):
    com = await udp_communicator(max_size=1024, name="victim")
    seen = []
    com.assign_callback(ExpMessage.any(), seen.append)
    host, port = com.transport.local_address
    bad = {
        b"not json at all": "not JSON",
        b"\xff\xfe": "not JSON",
        b'{"event": 2}': "expected a JSON array",
        b"[]": "expected a JSON array",
        b'["EXPSTART", "2022-01-01_1_m", null]': "integer event",
        b"[256, null]": "unknown event",
        b"[3, null]": "unknown event",
        b"[1]": "not a protocol 1.0.0 message",
        b"[2, \"2022-01-01_1_m\", null, \"extra\"]": "not a protocol 1.0.0 message",
        b"[32, 15]": "bad status",
        b'[2, "yesterday_1_mouse", null]': "bad exp_ref",
        b'[2, null, null]': "bad exp_ref",
        b"[" * 5000: "exceeds",
        b"[" * 1000: "not JSON",
        b"[1, \"" + b"x" * 2000 + b"\"]": "exceeds",
        b"[0, 5]": "error report",
    }
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.bind(("127.0.0.1", 0))
        sender.settimeout(0)
        with caplog.at_level(logging.ERROR):
            for raw in bad:
                sender.sendto(raw, (host, port))
            sender.sendto(b"[1, \"ok\"]", (host, port))  # a good one after all the bad ones
            ok = com.on_event("expinit")
            msg = await within(ok)
        assert msg.data == "ok" and len(seen) == 1
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == len(bad)
        for line, reason in zip(errors, bad.values()):
            assert "rejected datagram from udp://127.0.0.1:" in line and reason in line, line
        # only the good message was echoed
        await within(task.deferLater(reactor, 0.05, lambda: None))
        echoes = []
        try:
            while True:
                echoes.append(sender.recv(65535))
        except BlockingIOError:
            pass
        assert echoes == [b'[1, "ok"]']
    assert com.is_connected
    com.close()


@pytest_twisted.ensureDeferred
async def test_remote_error_report_is_logged_not_echoed(rigs, caplog):
    server, client = rigs

    def boom(msg):
        raise ValueError("bad subject")

    server.assign_callback("expstart", boom)
    with caplog.at_level(logging.ERROR):
        await within(client.start("2022-01-01_1_mouse"))
        await within(_poll(lambda: any("remote callback for EXPSTART" in r.getMessage() for r in caplog.records)))
    lines = [r.getMessage() for r in caplog.records if "remote callback" in r.getMessage()]
    assert len(lines) == 1 and "ValueError: bad subject" in lines[0]


def _poll(condition, interval=0.01):
    d = defer.Deferred()

    def check():
        if condition():
            loop.stop()
            d.callback(None)

    loop = task.LoopingCall(check)
    loop.start(interval)
    return d


@pytest_twisted.ensureDeferred
async def test_oversized_send_refused(rigs):
    server, client = rigs
    with pytest.raises(MessageError, match="exceeds"):
        client.init("x" * 70000)


@pytest_twisted.ensureDeferred
async def test_only_remote_host_filter(caplog):
    com = await udp_communicator(remote="udp://127.0.0.2:9", only_remote_host=True)
    seen = []
    com.assign_callback(ExpMessage.any(), seen.append)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.bind(("127.0.0.1", 0))
        with caplog.at_level(logging.WARNING):
            sender.sendto(b"[1, null]", com.transport.local_address)
            await within(_poll(lambda: any("unexpected host" in r.getMessage() for r in caplog.records)))
    assert seen == []
    com.close()


@pytest_twisted.ensureDeferred
async def test_remote_resolution_and_errors():
    com = await udp_communicator(remote="localhost:4000")
    assert com.transport.remote == ("127.0.0.1", 4000)
    assert com.name == "udp://127.0.0.1:4000"
    com.close()
    with pytest.raises(ValueError, match="scheme"):
        await udp_communicator(remote="tcp://127.0.0.1:4000")
    with pytest.raises(ValueError, match="interface"):
        await udp_communicator(interface="localhost")
    with pytest.raises(ValueError, match="port"):
        await udp_communicator(port=70000)


@pytest_twisted.ensureDeferred
async def test_send_without_address_needs_remote():
    com = await udp_communicator()
    with pytest.raises(ValueError, match="addr"):
        com.init()
    com.close()
    with pytest.raises(ConnectionError):
        await com.init(addr=("127.0.0.1", 9))


def test_new_message_while_waiting_for_echo_is_handled_not_taken_as_echo():
    clock = task.Clock()
    t = UDPTransport(remote=("127.0.0.1", 9), clock=clock)
    from agents.rig.communicator import Communicator
    com = Communicator(t, name="fake")
    written = []

    class FakeSocket:
        def write(self, data, addr):
            written.append((data, addr))

    t.transport = FakeSocket()
    t.startProtocol()
    confirmed = []
    t.send(make_message("expinit", None)).addCallback(confirmed.append)
    got = []
    com.assign_callback("expstatus", got.append)
    t.datagramReceived(b"[32, 20]", ("127.0.0.1", 9))  # the peer's own message, not our echo
    assert [m.status for m in got] == [ExpStatus.RUNNING]
    assert written[-1] == (b"[32, 20]", ("127.0.0.1", 9))  # echoed back
    assert confirmed == []  # still waiting for our echo
    t.datagramReceived(written[0][0], ("127.0.0.1", 9))
    assert confirmed == [None]
    com.close()


@pytest_twisted.ensureDeferred
async def test_per_address_send_state_is_released(rigs):
    server, client = rigs
    await within(client.init())
    await within(client.cleanup())
    assert client.transport._locks == {} and client.transport._pending == {}


@pytest_twisted.ensureDeferred
async def test_nan_and_infinity_are_stored_as_null_with_one_log_line(caplog):
    """iblutil writes NaN/Infinity (not JSON): kept as null, said once, echoed byte for byte."""
    com = await udp_communicator(name="nan-victim")
    host, port = com.transport.local_address
    raw = b'[64, 30, {"t": NaN, "v": [Infinity, -Infinity, 1e999, 2.5]}]'
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.bind(("127.0.0.1", 0))
        sender.settimeout(DEADLINE)
        got = com.on_event("EXPINFO")
        with caplog.at_level(logging.WARNING):
            sender.sendto(raw, (host, port))
            msg = await within(got)
            echo = await within(defer.maybeDeferred(lambda: sender.recv(65535)))
        assert msg.data == {"t": None, "v": [None, None, None, 2.5]}
        assert echo == raw  # iblutil confirms by comparing its own bytes
        lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(lines) == 1 and "4 non-finite number(s)" in lines[0] and "stored as null" in lines[0]
        assert json.dumps(msg.as_dict(), allow_nan=False)  # what the agent keeps and publishes is JSON
    com.close()
