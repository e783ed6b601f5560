"""OnDemandLink: connect for a burst of commands, give the connection up when idle.

For servers that serve one client at a time (sm-bluesky's ``AbstractInstrumentServer``): a held
connection would lock every other client out, so this link connects when a call comes, sends
every call that arrives meanwhile on that connection, and closes it ``idle_release`` seconds
after the last reply (0: at once). Between bursts other clients get their turn.

The link is *up* while the server is reachable: after :meth:`start` a first connection proves
it, and a connection that cannot be made (or drops before its replies) marks it down; then it
retries in the background with exponential backoff until a connection succeeds again, and its
listeners hear ``on_down(reason)`` and ``on_up()`` as with the held link.
"""
from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure

from agents.instrument.link_protocol import LinkBase, LinkDown, LinkFactory, LinkProtocol, _Pending
from ocs_core.framing.lines import DEFAULT_MAX_REPLY, Reply
from ocs_core.runtime.backoff import BackoffPolicy

__all__ = ["OnDemandLink"]


class OnDemandLink(LinkBase):
    """A link that holds a connection only while it has calls to make (see the module docstring).

    Args:
        reactor, host, port, timeout, max_reply, name, unescape, fence: as for
            :class:`~agents.instrument.link.InstrumentLink`.
        idle_release: seconds to keep the connection after its last reply (0: close at once).
        min_backoff, max_backoff: retry delays while the server is unreachable, seconds.
    """

    def __init__(self, reactor: Any, host: str, port: int, timeout: float = 10.0, *,
                 idle_release: float = 0.0, max_reply: int = DEFAULT_MAX_REPLY, min_backoff: float = 0.1,
                 max_backoff: float = 5.0, name: str | None = None, unescape: bool = False,
                 fence: str = "ping") -> None:
        super().__init__(reactor, host, port, timeout, name)
        if idle_release < 0:
            raise ValueError(f"idle_release must be >= 0, got {idle_release!r}")
        self.idle_release = float(idle_release)
        self.max_reply = max_reply
        self.unescape = unescape
        self.fence = fence
        self._endpoint = HostnameEndpoint(reactor, host, self.port, timeout=max(1, int(round(timeout))))
        self._policy = BackoffPolicy(initial=min_backoff, factor=2.0, maximum=max_backoff, jitter=min_backoff)
        self._running = False
        self._reachable = False
        self._was_up = False
        self._failures = 0
        self._protocol: LinkProtocol | None = None
        self._connecting: defer.Deferred[Any] | None = None
        self._queued: list[tuple[str, bytes, float, str, defer.Deferred[Reply]]] = []
        self._idle_timer: IDelayedCall | None = None
        self._retry: IDelayedCall | None = None
        self._closed: list[defer.Deferred[None]] = []

    @property
    def connected(self) -> bool:
        """True while the server is reachable (the last connection attempt succeeded)."""
        return self._reachable

    def start(self) -> None:
        """Check that the server is reachable (and keep checking while it is not)."""
        if not self._running:
            self._running = True
            self.log.info("{link}: connecting on demand (released after {s:g} s idle)",
                          link=self.label, s=self.idle_release)
            self._connect()

    def stop(self) -> defer.Deferred[None]:
        """Stop retrying and close the connection if one is open; fires when closed."""
        self._running = False
        for timer in (self._retry, self._idle_timer):
            if timer is not None and timer.active():
                timer.cancel()
        if self._connecting is not None:
            self._connecting.cancel()
        if self._protocol is None:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._closed.append(d)
        self._protocol.transport.loseConnection()
        return d

    # ---- sending ----
    def _send(self, command: str, line: bytes, timeout: float, expect: str) -> defer.Deferred[Reply]:
        if not self._running:
            return defer.fail(LinkDown(f"{command}: link to {self.label} is not started"))
        if self._idle_timer is not None and self._idle_timer.active():
            self._idle_timer.cancel()
        if self._protocol is not None:
            return self._protocol.send(command, line, timeout, expect)
        d: defer.Deferred[Reply] = defer.Deferred()
        self._queued.append((command, line, timeout, expect, d))
        if self._connecting is None:
            self._connect()
        return d

    def _connect(self) -> None:
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._connecting = self._endpoint.connect(LinkFactory(self))
        self._connecting.addErrback(self._connect_failed)

    def _connect_failed(self, failure: Failure) -> None:
        self._connecting = None
        queued, self._queued = self._queued, []
        why = failure.getErrorMessage() if not failure.check(defer.CancelledError) else "stopped"
        for command, _line, _t, _e, d in queued:
            self._notify(d.errback, LinkDown(f"{command}: cannot connect to {self.label} ({why})"))
        if self._running:
            self._unreachable(why)

    # ---- protocol callbacks ----
    def _link_up(self, protocol: LinkProtocol) -> None:
        self._connecting = None
        self._protocol = protocol
        self._failures = 0
        if not self._reachable:
            self._reachable = True
            self.log.info("{link}: server {what}", link=self.label,
                          what="reachable again" if self._was_up else "reachable")
            self._was_up = True
            self._notify(self._announce_up)
        queued, self._queued = self._queued, []
        for command, line, timeout, expect, d in queued:
            protocol.send(command, line, timeout, expect).chainDeferred(d)
        if not protocol.pending:
            self._idle(protocol)

    def _idle(self, protocol: LinkProtocol) -> None:
        if protocol is not self._protocol:
            return
        if self._idle_timer is not None and self._idle_timer.active():
            self._idle_timer.cancel()
        self._idle_timer = self.reactor.callLater(self.idle_release, self._release, protocol)

    def _release(self, protocol: LinkProtocol) -> None:
        if protocol is self._protocol and not protocol.pending:
            self._protocol = None  # calls from now on wait for a new connection
            protocol.transport.loseConnection()

    def _link_down(self, protocol: LinkProtocol, reason: Failure | None, pending: list[_Pending]) -> None:
        if self._protocol is protocol:
            self._protocol = None
        if self._idle_timer is not None and self._idle_timer.active():
            self._idle_timer.cancel()
        closes = [e for e in pending if e.expect == "close"]
        lost = [e for e in pending if e.expect != "close"]
        self._fail_pending(reason, pending)
        closed, self._closed = self._closed, []
        for d in closed:
            d.callback(None)
        if closes and self._running:  # the server closed on a shutdown: it is going away
            self._unreachable("the server shut down on request")
        elif lost and self._running:
            self._unreachable(reason.getErrorMessage() if reason is not None else "closed")
        elif self._queued and self._running and self._connecting is None:
            self._connect()  # calls that came while the connection was closing

    def _unreachable(self, why: str) -> None:
        if self._reachable:
            self._reachable = False
            self.log.info("{link}: server unreachable ({why}); retrying in the background",
                          link=self.label, why=why)
            self._announce_down(why)
        self._failures += 1
        delay = self._policy.delay(self._failures)
        self._retry = self.reactor.callLater(delay, self._connect)
