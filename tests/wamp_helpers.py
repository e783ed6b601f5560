"""WAMP sessions for tests: a joined session, a reconnecting subscriber, and a cuttable TCP proxy."""
from __future__ import annotations

from typing import Any, Callable

from ocs_core import _quiet_imports  # noqa: F401
from autobahn.twisted.wamp import ApplicationSession
from autobahn.twisted.websocket import WampWebSocketClientFactory
from autobahn.wamp.types import ComponentConfig, SubscribeOptions
from twisted.application.internet import ClientService
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, clientFromString
from twisted.protocols import portforward

from ocs_core.runtime.timing import dsleep


class _Session(ApplicationSession):
    def __init__(self, config, joined: Callable, on_disconnect: Callable | None = None):
        super().__init__(config)
        self._joined_cb = joined
        self._on_disconnect = on_disconnect

    def onJoin(self, details):  # noqa: N802
        return self._joined_cb(self)

    def onDisconnect(self):  # noqa: N802
        if self._on_disconnect:
            self._on_disconnect(self)


def _factory(ws_url: str, realm: str, joined: Callable, on_disconnect=None):
    factory = WampWebSocketClientFactory(
        lambda: _Session(ComponentConfig(realm=realm), joined, on_disconnect), url=ws_url)
    return factory


def connect(ws_url: str, realm: str = "test_realm") -> defer.Deferred:
    """Fires with a joined session."""
    result: defer.Deferred = defer.Deferred()

    def joined(session):
        if not result.called:
            result.callback(session)

    factory = _factory(ws_url, realm, joined)
    endpoint = clientFromString(reactor, f"tcp:host={factory.host}:port={factory.port}:timeout=5")
    endpoint.connect(factory).addErrback(lambda f: result.called or result.errback(f))
    return result


class Subscriber:
    """Subscribes to ``topic`` and keeps every event; reconnects quickly after an outage."""

    def __init__(self, ws_url: str, topic: str, realm: str = "test_realm",
                 options: dict | None = None) -> None:
        self.events: list[Any] = []
        self.joins = 0
        self._topic, self._options = topic, options
        self._ready: defer.Deferred = defer.Deferred()
        factory = _factory(ws_url, realm, self._joined)
        endpoint = TCP4ClientEndpoint(reactor, factory.host, factory.port, timeout=2)
        self._service = ClientService(endpoint, factory, retryPolicy=lambda attempt: 0.1)
        self.session = None

    async def _joined(self, session) -> None:
        opts = SubscribeOptions(**self._options) if self._options else None
        await session.subscribe(lambda event, *a, **k: self.events.append(event), self._topic,
                                options=opts)
        self.session = session
        self.joins += 1
        if not self._ready.called:
            self._ready.callback(self)

    def start(self) -> defer.Deferred:
        self._service.startService()
        return self._ready

    def stop(self) -> defer.Deferred:
        return self._service.stopService()


class CuttableProxy:
    """A loopback TCP forwarder whose connections can be cut (and refused) on demand."""

    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.target_port, self.host = target_port, host
        self.port: int | None = None
        self._listening = None
        self._factory = portforward.ProxyFactory(host, target_port)
        self._protocols: list = []
        self.silenced: list = []
        self._factory.protocol = self._tracking_protocol()

    def _tracking_protocol(self):
        owner = self

        class Tracked(portforward.ProxyServer):
            def connectionMade(self):  # noqa: N802
                owner._protocols.append(self)
                super().connectionMade()

        return Tracked

    def listen(self, port: int = 0) -> int:
        self._listening = reactor.listenTCP(port, self._factory, interface=self.host)
        self.port = self._listening.getHost().port
        return self.port

    def cut(self) -> defer.Deferred:
        """Drop every connection and stop accepting new ones."""
        for proto in self._protocols:
            proto.transport.abortConnection()
            if proto.peer is not None and proto.peer.transport is not None:
                proto.peer.transport.abortConnection()
        self._protocols.clear()
        return defer.maybeDeferred(self._listening.stopListening)

    def nat_cut(self) -> defer.Deferred:
        """A NAT-style cut: reset the client side of every connection, stop accepting new ones,
        and leave each router side open and silent (it swallows what the router sends and
        answers nothing), as when a NAT box forgets the flow: the router keeps the session
        until its auto-ping times out. :meth:`release_silenced` closes those router sides.
        """
        for proto in self._protocols:
            upstream = proto.peer
            if upstream is not None and upstream.transport is not None:
                upstream.transport.unregisterProducer()
                proto.transport.unregisterProducer()
                upstream.peer = None  # nothing is forwarded downstream, nor closed with it
                upstream.dataReceived = lambda data: None
                self.silenced.append(upstream)
            proto.peer = None
            proto.transport.abortConnection()
        self._protocols.clear()
        return defer.maybeDeferred(self._listening.stopListening)

    def release_silenced(self) -> None:
        """Close the router sides left open by :meth:`nat_cut`."""
        for upstream in self.silenced:
            if upstream.transport is not None:
                upstream.transport.abortConnection()
        self.silenced.clear()

    def restore(self) -> None:
        self.listen(self.port)


async def until(predicate: Callable[[], bool], timeout: float = 10.0, step: float = 0.05,
                what: str = "condition") -> None:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass (then AssertionError)."""
    deadline = reactor.seconds() + timeout
    while not predicate():
        if reactor.seconds() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        await dsleep(step)
