"""Tests of InstrumentLink: pipelined calls, errors, timeouts and reconnecting after a server restart."""
import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.internet.protocol import Factory, Protocol

from agents.instrument.link import InstrumentError, InstrumentLink, LinkDown, LinkTimeout
from agents.instrument.simulated import Resonance, SimulatedInstrument
from agents.instrument.testing import ServerProcess


def poll(condition, timeout=10.0, interval=0.02):
    """Fire when condition() is true; fail after timeout (a polled condition with a deadline)."""
    d = defer.Deferred()
    deadline = reactor.seconds() + timeout

    def check():
        if condition():
            d.callback(None)
        elif reactor.seconds() > deadline:
            d.errback(TimeoutError(f"condition not met within {timeout} s"))
        else:
            reactor.callLater(interval, check)
    check()
    return d


@pytest.fixture
def simulated():
    server = SimulatedInstrument(resonance=Resonance(noise=0.0, center=2.0, width=0.5), seed=1, timeout=5)
    pytest_twisted.blockon(server.connect())
    port = server.listen(0).getHost().port
    yield server, port
    pytest_twisted.blockon(server.stop())


@pytest_twisted.inlineCallbacks
def test_calls_pipeline_in_order_and_report_errors(simulated):
    _, port = simulated
    link = InstrumentLink(reactor, "127.0.0.1", port, timeout=5)
    ups = []
    link.add_listener(on_up=lambda: ups.append(1))
    with pytest.raises(LinkDown, match="not started"):
        yield link.call("ping")
    link.start()
    try:
        yield link.when_connected(timeout=5)
        assert link.connected and ups == [1]
        xs = [1.0 + 0.1 * i for i in range(20)]
        values = yield defer.gatherResults([link.call("measure", x) for x in xs])
        expected = [Resonance(noise=0.0, center=2.0, width=0.5).model(x) for x in xs]
        assert [float(v) for v in values] == pytest.approx(expected)
        assert (yield link.call("ping")) == ""
        with pytest.raises(InstrumentError, match="measure: argument x must be a finite number") as err:
            yield link.call("measure", "abc")
        assert err.value.command == "measure"
        with pytest.raises(InstrumentError, match="unknown command 'nope'"):
            yield link.call("nope")
        with pytest.raises(ValueError, match="contains"):
            yield link.call("measure", "1\t2")
        fields = (yield link.call_reply("command_list")).fields
        assert "measure" in fields and "read" in fields
    finally:
        yield link.stop()
    assert not link.connected


class Silent(Protocol):
    """A server that never answers."""

    def dataReceived(self, data):
        pass


@pytest_twisted.inlineCallbacks
def test_no_reply_times_out_and_link_resets():
    factory = Factory.forProtocol(Silent)
    factory.noisy = False
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    link = InstrumentLink(reactor, "127.0.0.1", port.getHost().port, timeout=0.3, min_backoff=0.05)
    downs = []
    link.add_listener(on_down=downs.append)
    link.start()
    try:
        yield link.when_connected(timeout=5)
        first = link.call("ping")
        second = link.call("ping", timeout=10)
        with pytest.raises(LinkTimeout, match="no reply within 0.3 s"):
            yield first
        with pytest.raises(LinkDown, match="lost before the reply"):
            yield second
        assert len(downs) == 1
        yield poll(lambda: link.connected)  # reconnects by itself
    finally:
        yield link.stop()
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_overlong_reply_is_an_error_and_link_stays_in_step(simulated):
    server, port = simulated
    server.add_command("big", lambda: "x" * 5000, hardware=False)
    link = InstrumentLink(reactor, "127.0.0.1", port, timeout=5, max_reply=1000)
    link.start()
    try:
        yield link.when_connected(timeout=5)
        big, ping = link.call("big"), link.call("ping")
        with pytest.raises(InstrumentError, match="longer than 1000 bytes"):
            yield big
        assert (yield ping) == ""
    finally:
        yield link.stop()


@pytest_twisted.inlineCallbacks
def test_link_reconnects_after_server_process_restarts_on_same_port():
    proc = ServerProcess(reactor, ["--port", "0", "--seed", "5", "--noise", "0"])
    port = yield proc.start()
    link = InstrumentLink(reactor, "127.0.0.1", port, timeout=5, min_backoff=0.05, max_backoff=0.5)
    events = []
    link.add_listener(on_up=lambda: events.append("up"), on_down=lambda why: events.append("down"))
    link.start()
    try:
        yield link.when_connected(timeout=5)
        assert float((yield link.call("measure", 2.5))) == pytest.approx(1.0)
        yield proc.kill()
        yield poll(lambda: events == ["up", "down"])  # listeners run on the reactor turn after
        assert not link.connected
        with pytest.raises(LinkDown, match="is down"):
            yield link.call("ping")
        proc = ServerProcess(reactor, ["--port", str(port), "--seed", "5", "--noise", "0"])
        assert (yield proc.start()) == port
        yield link.when_connected(timeout=10)
        assert events == ["up", "down", "up"]
        assert float((yield link.call("measure", 2.5))) == pytest.approx(1.0)
    finally:
        yield link.stop()
        if proc.running:
            yield proc.stop()


@pytest_twisted.inlineCallbacks
def test_stopping_from_callbacks_leaves_no_unhandled_errors(simulated):
    from twisted.logger import globalLogPublisher
    _, port = simulated
    errors = []

    def observer(event):
        if event.get("log_failure") is not None or event.get("isError"):
            errors.append(event)
    globalLogPublisher.addObserver(observer)
    link = InstrumentLink(reactor, "127.0.0.1", port, timeout=5, min_backoff=0.05)
    try:
        for _ in range(3):  # start, stop as soon as connected, start again
            link.start()
            yield link.when_connected(timeout=5)
            yield link.stop()
            assert not link.connected
        link.start()
        yield link.when_connected(timeout=5)
        pending = link.call("measure", 2.0)
        stopped = link.stop()
        with pytest.raises(LinkDown):
            yield pending
        yield stopped
        yield poll(lambda: True)  # one more reactor turn for late notices
    finally:
        globalLogPublisher.removeObserver(observer)
        yield link.stop()
    assert errors == []
