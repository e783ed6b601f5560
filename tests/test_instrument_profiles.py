"""Server profiles and what the links do with them: no-reply commands, shutdown by close,
connections given up when idle, replies byte-for-byte, and our server's port reuse."""
from __future__ import annotations

import socket

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, threads
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from agents.instrument.commands import command
from agents.instrument.link import InstrumentLink, LinkDown, make_link
from agents.instrument.link_on_demand import OnDemandLink
from agents.instrument.link_protocol import LinkBase, LinkProtocol
from agents.instrument.profiles import PROFILES, profile_named
from agents.instrument.server import InstrumentServer
from ocs_core.framing.lines import Reply
from test_instrument_link import poll


def test_profiles_say_what_answers_each_command():
    smb, generic = PROFILES["sm-bluesky"], PROFILES["generic"]
    assert smb.expects("connect_hardware") == "none" and smb.expects("shutdown") == "close"
    assert smb.expects("measure") == "reply" and smb.help_command is None and smb.idle_release == 0.0
    assert generic.expects("connect_hardware") == "reply" and generic.expects("shutdown") == "reply"
    assert generic.idle_release is None and generic.help_command == "help" and not generic.unescape
    custom = smb.with_options(idle_release=0.5, unescape=True, no_reply=("arm",))
    assert custom.idle_release == 0.5 and custom.unescape and custom.expects("arm") == "none"
    assert smb.with_options() is smb
    with pytest.raises(ValueError, match="unknown server profile 'x' \\(known: generic, sm-bluesky\\)"):
        profile_named("x")


class _Link(LinkBase):
    """A LinkBase whose protocol runs over a StringTransport (pure protocol logic)."""

    def __init__(self):
        super().__init__(Clock(), "127.0.0.1", 1, 5.0, None)
        self.idle = 0
        self.lost = []

    def _link_up(self, protocol):
        pass

    def _idle(self, protocol):
        self.idle += 1

    def _link_down(self, protocol, reason, pending):
        self._fail_pending(reason, pending)
        self.reactor.advance(0)


def _protocol():
    link = _Link()
    proto = LinkProtocol(link)
    proto.makeConnection(StringTransport())
    return link, proto


def test_a_silent_command_is_fenced_by_a_ping():
    link, proto = _protocol()
    done = proto.send("connect_hardware", b"connect_hardware\n", 5.0, expect="none")
    assert proto.transport.value() == b"connect_hardware\nping\n"
    proto.dataReceived(b"1\t\n")  # the ping's reply: the command finished
    assert done.result == Reply(True, ()) and link.idle == 1
    failing = proto.send("connect_hardware", b"connect_hardware\n", 5.0, expect="none")
    after = proto.send("path", b"path\n", 5.0)
    proto.dataReceived(b"0\tError handling command 'connect_hardware': no device\n")
    assert failing.result == Reply(False, ("Error handling command 'connect_hardware': no device",))
    proto.dataReceived(b"1\t\n1\tC:\\temp\\new\n")  # the fence's reply is dropped; then path's
    assert after.result == Reply(True, ("C:\\temp\\new",))


def test_shutdown_by_close_succeeds_and_other_calls_fail():
    link, proto = _protocol()
    bye = proto.send("shutdown", b"shutdown\n", 5.0, expect="close")
    proto.connectionLost(None)
    assert bye.result == Reply(True, ())
    _link, proto = _protocol()
    lost = proto.send("measure", b"measure\t1\n", 5.0)
    proto.connectionLost(None)
    _link.reactor.advance(0)
    assert isinstance(lost.result.value, LinkDown)
    lost.addErrback(lambda f: None)


class Counting(InstrumentServer):
    """Counts connections; answers ``path`` with a backslashed path."""

    @command("path", hardware=False)
    def path(self) -> str:
        """A Windows path."""
        return "C:\\temp\\new"

    @command("lines", hardware=False)
    def lines(self) -> str:
        """Two lines: refused, a reply is one line."""
        return "one\ntwo"


@pytest.fixture
def counting():
    server = Counting(timeout=5)
    pytest_twisted.blockon(server.connect())
    port = server.listen(0).getHost().port
    opened = []
    factory = server._ports[0].factory
    build = factory.buildProtocol
    factory.buildProtocol = lambda addr: (opened.append(addr), build(addr))[1]
    yield server, port, opened
    pytest_twisted.blockon(server.stop())


@pytest_twisted.inlineCallbacks
def test_on_demand_link_connects_per_burst_and_releases(counting):
    server, port, opened = counting
    link = make_link(reactor, "127.0.0.1", port, PROFILES["sm-bluesky"], timeout=5)
    assert isinstance(link, OnDemandLink)
    ups = []
    link.add_listener(on_up=lambda: ups.append(1))
    link.start()
    try:
        yield link.when_connected(timeout=5)
        yield poll(lambda: not server._connections)  # the probe's connection is given up at once
        assert ups == [1]
        replies = yield defer.gatherResults([link.call("path"), link.call("ping"), link.call("path")])
        assert replies == ["C:\\temp\\new", "", "C:\\temp\\new"]  # byte-for-byte
        yield poll(lambda: not server._connections)
        n = len(opened)
        assert n <= 3  # the probe, maybe the first call, and the burst on one connection
        yield link.call("ping")
        yield poll(lambda: not server._connections)
        assert len(opened) == n + 1
    finally:
        yield link.stop()


@pytest_twisted.inlineCallbacks
def test_on_demand_link_notices_an_absent_server_and_recovers():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    link = OnDemandLink(reactor, "127.0.0.1", port, timeout=2, idle_release=0.3, min_backoff=0.05,
                        max_backoff=0.2)
    downs = []
    link.add_listener(on_down=downs.append)
    link.start()
    server = Counting(timeout=5)
    try:
        with pytest.raises(LinkDown, match="cannot connect"):
            yield link.call("ping")
        assert not link.connected
        yield server.connect()
        server.listen(port)
        yield link.when_connected(timeout=10)  # the background retries find it
        assert (yield link.call("path")) == "C:\\temp\\new"
        assert server._connections  # held for idle_release (0.3 s) after the reply ...
        yield poll(lambda: not server._connections)  # ... then given up
    finally:
        yield link.stop()
        yield server.stop()


@pytest_twisted.inlineCallbacks
def test_held_link_passes_replies_as_they_are_unless_asked(counting):
    _server, port, _opened = counting
    for unescape, expected in ((False, "C:\\temp\\new"), (True, "C:\temp\new")):
        link = InstrumentLink(reactor, "127.0.0.1", port, timeout=5, unescape=unescape)
        link.start()
        try:
            yield link.when_connected(timeout=5)
            assert (yield link.call("path")) == expected
            reply = yield link.call_reply("lines")
            assert not reply.ok and "holds a line break" in reply.data
        finally:
            yield link.stop()


@pytest_twisted.inlineCallbacks
def test_our_server_restarts_on_the_same_port_at_once():
    server = Counting(timeout=5)
    yield server.connect()
    listening = server.listen(0)
    port = listening.getHost().port
    assert listening.socket.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 1
    client = socket.create_connection(("127.0.0.1", port), timeout=5)
    client.sendall(b"path\n")
    assert (yield threads.deferToThread(client.recv, 100)) == b"1\tC:\\temp\\new\n"
    yield server.stop()  # the server closes the client's connection first: its side is in TIME_WAIT
    client.close()
    again = Counting(timeout=5)
    yield again.connect()
    try:
        assert again.listen(port).getHost().port == port
    finally:
        yield again.stop()
