"""The dashboard's WAMP session: a controller that subscribes and calls, never registers.

One WebSocket session to the site's router, re-made with backoff for as long as the dashboard
runs; every feed event of the site (``<root>..feeds.``, wildcard) goes to ``on_event`` and each
join or loss of the router to ``on_state``.
"""
from __future__ import annotations

from typing import Any, Callable

from ocs_core import _quiet_imports  # noqa: F401  (before autobahn)
from autobahn.twisted.wamp import ApplicationSession
from autobahn.twisted.websocket import WampWebSocketClientFactory
from autobahn.wamp.types import ComponentConfig, SubscribeOptions
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet import defer
from twisted.internet.endpoints import clientFromString
from twisted.logger import Logger

__all__ = ["SiteLink", "MAX_MESSAGE_BYTES"]

log = Logger(namespace="clients.dashboard.link")

#: Largest WAMP message accepted from the router (a get_api with big session data fits).
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


class _Session(ApplicationSession):
    def __init__(self, config: ComponentConfig, link: "SiteLink") -> None:
        super().__init__(config)
        self._link = link

    def onJoin(self, details):  # noqa: N802 (autobahn's name)
        return self._link._joined(self)

    def onLeave(self, details):  # noqa: N802
        self.disconnect()

    def onDisconnect(self):  # noqa: N802
        self._link._gone(self)


class SiteLink:
    """The router connection of the dashboard.

    Args:
        hub: the site's hub (``wamp_server``, ``wamp_realm``, ``address_root``).
        reactor: the Twisted reactor.
        on_event: ``on_event(args, topic)`` for every feed event.
        on_state: ``on_state(connected)`` when the session joins or is lost.
    """

    def __init__(self, hub: Any, reactor: Any, on_event: Callable[[tuple, str], None],
                 on_state: Callable[[bool], None]) -> None:
        self.hub = hub
        self.reactor = reactor
        self.on_event = on_event
        self.on_state = on_state
        self.session: _Session | None = None
        self._service: ClientService | None = None

    @property
    def connected(self) -> bool:
        return self.session is not None

    def start(self) -> None:
        """Connect now and again whenever the router is lost."""
        factory = WampWebSocketClientFactory(
            lambda: _Session(ComponentConfig(realm=self.hub.wamp_realm), self), url=self.hub.wamp_server)
        factory.setProtocolOptions(autoPingInterval=5, autoPingTimeout=5,
                                   maxMessagePayloadSize=MAX_MESSAGE_BYTES,
                                   maxFramePayloadSize=MAX_MESSAGE_BYTES)
        endpoint = clientFromString(self.reactor, f"tcp:host={factory.host}:port={factory.port}:timeout=5")
        self._service = ClientService(endpoint, factory, clock=self.reactor,
                                      retryPolicy=backoffPolicy(initialDelay=0.25, factor=1.5, maxDelay=2.0))
        self._service.startService()

    def stop(self) -> defer.Deferred:
        """Leave and stop reconnecting."""
        service, self._service = self._service, None
        return service.stopService() if service is not None else defer.succeed(None)

    async def _joined_async(self, session: _Session) -> None:
        topic = f"{self.hub.address_root}..feeds."
        await session.subscribe(self._event, topic,
                                options=SubscribeOptions(match="wildcard", details_arg="details"))
        self.session = session
        log.info("joined realm {realm} at {url}", realm=self.hub.wamp_realm, url=self.hub.wamp_server)
        self.on_state(True)

    def _joined(self, session: _Session) -> defer.Deferred:
        d = defer.ensureDeferred(self._joined_async(session))
        d.addErrback(lambda f: (log.error("subscribing to the site's feeds failed: {why}",
                                          why=f.getErrorMessage()), session.leave()))
        return d

    def _gone(self, session: _Session) -> None:
        if self.session is session:
            self.session = None
            if self._service is not None:  # not stopping
                log.info("lost the router at {url}; reconnecting", url=self.hub.wamp_server)
            self.on_state(False)

    def _event(self, *args: Any, details: Any = None, **kwargs: Any) -> None:
        self.on_event(args, getattr(details, "topic", "") or "")

    def call(self, procedure: str, *args: Any, **kwargs: Any) -> defer.Deferred:
        """Call ``procedure``; fails with ConnectionError while the router is away."""
        session = self.session
        if session is None or not session.is_attached():
            return defer.fail(ConnectionError(f"not connected to the router at {self.hub.wamp_server}"))
        return session.call(procedure, *args, **kwargs)
