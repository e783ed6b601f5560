"""WAMP rig transport: rig events published on an agent feed and heard from other rigs' feeds.

A rig publishes each event on its feed ``rig_events`` (topic ``<root>.<instance-id>.feeds.rig_events``,
payload format in :mod:`agents.rig.feed_format`) and subscribes to the feeds of the rigs it
listens to (one instance-id each, or the wildcard ``<root>..feeds.rig_events`` for every rig).
``send`` fires when the router acknowledged the publish. A rig never hears its own events:
the router does not send a publisher its own events, and events naming this rig as publisher
are dropped as well.

Two ends carry it: :class:`SessionEndpoint` for a plain autobahn session (a control script,
see :func:`wamp_communicator`) and :class:`AgentEndpoint` inside an :class:`~ocs_core.runtime.agent.OCSAgent`
(see :func:`agent_communicator`).
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Iterable, Optional, Protocol, Union

from autobahn.twisted.wamp import ApplicationSession
from autobahn.twisted.websocket import WampWebSocketClientFactory
from autobahn.wamp.types import ComponentConfig, PublishOptions, SubscribeOptions
from twisted.internet import defer
from twisted.internet.endpoints import clientFromString

from agents.rig.communicator import Communicator
from agents.rig.feed_format import (FEED_NAME, addressed_to, decode_event, encode_payload,
                                    publisher_of, rig_topic, rig_topics)
from agents.rig.messages import MAX_DATAGRAM, MessageError, RemoteError, RigMessage, encode
from ocs_core.runtime.feeds import Feed

__all__ = ["FeedEndpoint", "SessionEndpoint", "AgentEndpoint", "WampTransport",
           "wamp_communicator", "agent_communicator", "join_router"]

Handler = Callable[[Any], None]


class FeedEndpoint(Protocol):
    """Where a WampTransport publishes and subscribes (a plain session or an agent)."""

    address: str  #: the rig's agent address, e.g. ``observatory.rig-1``

    def publish(self, payload: dict) -> defer.Deferred:
        """Publish ``payload`` on the rig's feed; fire when the router acknowledged it."""

    def subscribe(self, handler: Handler, topic: str, match: str) -> Optional[defer.Deferred]:
        """Call ``handler(event)`` for every event on ``topic``."""

    def unsubscribe_all(self) -> None:
        """Drop the subscriptions made here (where possible)."""

    @property
    def is_connected(self) -> bool:
        """True while publishing is possible."""


class SessionEndpoint:
    """A rig feed published from a plain autobahn session (no agent behind it).

    Events carry the same ``[payload, feed_info]`` shape and numbering as an agent's feed.

    Args:
        session: A joined ApplicationSession.
        address: The rig's address, e.g. ``observatory.rig-script``; its feed is
            ``<address>.feeds.<feed>``.
        feed: The feed name.
        agent_class: Shown in ``feed_info``.
    """

    def __init__(self, session: ApplicationSession, address: str, feed: str = FEED_NAME,
                 agent_class: str = "RigScript"):
        root, _, instance = address.rpartition(".")
        rig_topic(root, instance, feed)  # checks the parts
        self.session = session
        self.address = address
        self.feed = Feed(address, feed, agent_class=agent_class, outbox_size=0)
        self._subscriptions: list[Any] = []

    def publish(self, payload: dict) -> defer.Deferred:
        if not self.is_connected:
            return defer.fail(ConnectionError(f"{self.address}: the session is not joined; "
                                              f"not published on {self.feed.address}"))
        d = self.session.publish(self.feed.address, self.feed.make_event(payload),
                                 options=PublishOptions(acknowledge=True))
        return d.addCallback(lambda _: None)

    def subscribe(self, handler: Handler, topic: str, match: str) -> defer.Deferred:
        d = self.session.subscribe(handler, topic, options=SubscribeOptions(match=match))
        return d.addCallback(self._subscriptions.append)

    def unsubscribe_all(self) -> None:
        subs, self._subscriptions = self._subscriptions, []
        if self.is_connected:
            for sub in subs:
                if sub.active:
                    sub.unsubscribe().addErrback(lambda _: None)

    @property
    def is_connected(self) -> bool:
        return bool(self.session.is_attached())


class AgentEndpoint:
    """A rig feed of an OCSAgent (registered here unless it exists), and its subscriptions.

    Publishing uses :meth:`OCSAgent.publish_to_feed_acked`; subscriptions use
    :meth:`OCSAgent.subscribe`, so they are renewed on every rejoin.
    """

    def __init__(self, agent: Any, feed: str = FEED_NAME):
        if feed not in agent.feeds:
            agent.register_feed(feed, record=False)
        self.agent = agent
        self.address = agent.agent_address
        self.feed = feed

    def publish(self, payload: dict) -> defer.Deferred:
        return self.agent.publish_to_feed_acked(self.feed, payload)

    def subscribe(self, handler: Handler, topic: str, match: str) -> None:
        self.agent.subscribe(handler, topic, {"match": match} if match != "exact" else None)

    def unsubscribe_all(self) -> None:
        """Agent subscriptions last as long as the agent; the transport ignores them once closed."""

    @property
    def is_connected(self) -> bool:
        return self.agent.session is not None


class WampTransport:
    """A rig transport publishing on a feed and listening to topics (see :mod:`agents.rig.feed_format`).

    Args:
        endpoint: Where to publish and subscribe.
        topics: ``(topic, match)`` pairs to listen to (see :func:`~agents.rig.feed_format.rig_topics`).
        max_size: Largest message (its UDP wire form, in bytes) sent; the same bound as UDP so
            an event can always be relayed to UDP rigs.
        logger: Where to log; the communicator's logger when attached, if not given.
    """

    def __init__(self, endpoint: FeedEndpoint, topics: Iterable[tuple[str, str]] = (),
                 max_size: int = MAX_DATAGRAM, logger: Optional[logging.Logger] = None):
        self.endpoint = endpoint
        self.topics = list(topics)
        self.max_size = max_size
        self.logger = logger
        self.communicator: Optional[Communicator] = None
        self._open = True

    def attach(self, communicator: Communicator) -> None:
        """Deliver accepted events to ``communicator``."""
        self.communicator = communicator
        if self.logger is None:
            self.logger = communicator.logger

    def listen(self) -> defer.Deferred:
        """Subscribe to every topic; fires once the router confirmed them (at once in an agent)."""
        pending = []
        for topic, match in self.topics:
            d = self.endpoint.subscribe(self._on_event, topic, match)
            if d is not None:
                pending.append(d)
        d = defer.gatherResults(pending, consumeErrors=True)
        return d.addCallbacks(lambda _: None, lambda f: f.value.subFailure if f.check(defer.FirstError) else f)

    @property
    def is_connected(self) -> bool:
        """True while open and the router is reachable."""
        return self._open and bool(self.endpoint.is_connected)

    def send(self, message: Union[RigMessage, RemoteError], addr: Any = None) -> defer.Deferred:
        """Publish ``message`` on the feed; fires when the router acknowledged it.

        Events are broadcast to every listener, so ``addr`` must be None for events; for an
        error report it names the rig it answers.

        Raises:
            MessageError: the message does not encode within ``max_size``.
            ValueError: ``addr`` given for an event.
        """
        if isinstance(message, RigMessage) and addr is not None:
            raise ValueError("WAMP rig events are broadcast on the feed; send them without addr")
        encode(message, self.max_size)  # JSON-serialisable and within the size bound
        if not self._open:
            return defer.fail(ConnectionError(f"WAMP rig transport of {self.endpoint.address} is closed"))
        to = addr if isinstance(message, RemoteError) else None
        return self.endpoint.publish(encode_payload(message, self.endpoint.address, to=to))

    def close(self) -> None:
        """Stop listening and sending."""
        self._open = False
        self.endpoint.unsubscribe_all()

    def _on_event(self, event: Any = None, *args: Any, **kwargs: Any) -> None:
        if not self._open or self.communicator is None:
            return
        publisher = publisher_of(event)
        if publisher == self.endpoint.address:
            return  # our own event
        try:
            message = decode_event(event)
        except MessageError as exc:
            self.logger.error("rejected rig event from %s: %s", publisher or "an unknown publisher", exc)
            return
        if isinstance(message, RemoteError) and addressed_to(event) not in (None, self.endpoint.address):
            return  # an error report for another rig
        self.communicator.receive(message)


def _listen_topics(address: str, listen: Union[str, Iterable[str], None],
                   listen_feeds: Iterable[str]) -> list[tuple[str, str]]:
    if listen is None:
        return []
    root = address.rpartition(".")[0]
    rigs = [listen] if isinstance(listen, str) else list(listen)
    return rig_topics(root, rigs, listen_feeds) if rigs else []


@defer.inlineCallbacks
def wamp_communicator(session: ApplicationSession, address: str,
                      listen: Union[str, Iterable[str], None] = "*", feed: str = FEED_NAME,
                      listen_feeds: Iterable[str] = (FEED_NAME,), name: Optional[str] = None,
                      logger: Optional[logging.Logger] = None):
    """A Communicator over a plain autobahn session (a control script); fires once subscribed.

    Args:
        session: A joined ApplicationSession.
        address: This rig's address (``<root>.<name>``); it publishes on ``<address>.feeds.<feed>``.
        listen: Instance-ids of the rigs to hear, ``'*'`` for every rig, None for none.
        feed: The feed this rig publishes on.
        listen_feeds: The feeds heard of each rig (add ``'rig_events_remote'`` for events rig
            agents relay from UDP rigs).
        name: Label for logs (default: ``address``).
        logger: Where to log.
    """
    transport = WampTransport(SessionEndpoint(session, address, feed),
                              _listen_topics(address, listen, listen_feeds), logger=logger)
    communicator = Communicator(transport, name=name or address, logger=logger)
    yield transport.listen()
    return communicator


def agent_communicator(agent: Any, listen: Union[str, Iterable[str], None] = None,
                       feed: str = FEED_NAME, listen_feeds: Iterable[str] = (FEED_NAME,),
                       name: Optional[str] = None,
                       logger: Optional[logging.Logger] = None) -> Communicator:
    """A Communicator publishing on ``agent``'s feed ``feed`` (registered if needed).

    Subscriptions to ``listen`` (instance-ids or ``'*'``) are made on every (re)join of the agent.
    """
    transport = WampTransport(AgentEndpoint(agent, feed),
                              _listen_topics(agent.agent_address, listen, listen_feeds), logger=logger)
    communicator = Communicator(transport, name=name or agent.agent_address, logger=logger)
    transport.listen()
    return communicator


class _JoinSession(ApplicationSession):
    def __init__(self, config: ComponentConfig, joined: defer.Deferred):
        super().__init__(config)
        self._joined = joined

    def onJoin(self, details):  # noqa: N802 (autobahn's name)
        if not self._joined.called:
            self._joined.callback(self)

    def onLeave(self, details):  # noqa: N802
        if not self._joined.called:
            self._joined.errback(ConnectionError(f"the router refused the session: {details.reason}"))
        self.disconnect()


def join_router(url: str, realm: str, reactor: Any = None, timeout: float = 5.0) -> defer.Deferred:
    """Join ``realm`` at ``url`` (``ws://127.0.0.1:8001/ws``); fires with the session.

    For scripts and tests that run their own reactor; leave with ``session.leave()``.

    Raises (through the Deferred):
        ConnectionError: the router is unreachable or refused the realm.
    """
    if reactor is None:
        from twisted.internet import reactor
    joined: defer.Deferred = defer.Deferred()
    factory = WampWebSocketClientFactory(lambda: _JoinSession(ComponentConfig(realm=realm), joined), url=url)
    endpoint = clientFromString(reactor, f"tcp:host={factory.host}:port={factory.port}:timeout={timeout:g}")

    def unreachable(failure):
        if not joined.called:
            joined.errback(ConnectionError(f"cannot reach the router at {url}: {failure.getErrorMessage()}"))

    endpoint.connect(factory).addErrback(unreachable)
    return joined
