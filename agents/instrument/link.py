"""InstrumentLink: a self-reconnecting Twisted client of the tab-separated line protocol.

One TCP connection carries every call; requests are pipelined and replies matched in order.
When the connection drops, pending calls fail with :class:`LinkDown` and the link reconnects by
itself with exponential backoff; ``on_up`` / ``on_down`` listeners let an agent mark its sessions
degraded and recovered::

    link = InstrumentLink(reactor, "127.0.0.1", 7001, timeout=5.0)
    link.add_listener(on_up=lambda: ..., on_down=lambda reason: ...)
    link.start()
    value = float(await link.call("measure", 2.5))
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

from twisted.application.internet import ClientService
from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from ocs_core.framing.lines import DEFAULT_MAX_REPLY, Reply, ReplyParser, encode_request
from ocs_core.runtime.backoff import BackoffPolicy

__all__ = ["InstrumentLink", "InstrumentError", "LinkDown", "LinkTimeout"]


class InstrumentError(Exception):
    """The server answered ``0\\t<message>`` (or an unreadable reply) to ``command``."""

    def __init__(self, command: str, message: str) -> None:
        super().__init__(f"{command}: {message}" if not message.startswith(f"{command}:") else message)
        self.command = command
        self.message = message


class LinkDown(ConnectionError):
    """The link is not connected, or the connection was lost before the reply came."""


class LinkTimeout(TimeoutError):
    """No reply within the link's timeout (the connection is then reset to stay in step)."""


@dataclass
class _Pending:
    command: str
    deferred: defer.Deferred[Reply]
    timer: IDelayedCall | None


class _LinkProtocol(Protocol):
    def __init__(self, link: InstrumentLink) -> None:
        self.link = link
        self.parser = ReplyParser(link.max_reply)
        self.pending: deque[_Pending] = deque()

    def connectionMade(self) -> None:
        self.link._link_up(self)

    def send(self, command: str, line: bytes, timeout: float) -> defer.Deferred[Reply]:
        d: defer.Deferred[Reply] = defer.Deferred()
        entry = _Pending(command, d, None)
        entry.timer = self.link.reactor.callLater(timeout, self._timed_out, entry, timeout)
        self.pending.append(entry)
        self.transport.write(line)
        return d

    def dataReceived(self, data: bytes) -> None:
        for event in self.parser.feed(data):
            if not self.pending:
                self.link.log.warn("{link}: unexpected reply line from the server; resetting",
                                   link=self.link.label)
                self.transport.abortConnection()
                return
            entry = self.pending.popleft()
            if entry.timer is not None and entry.timer.active():
                entry.timer.cancel()
            if isinstance(event, Reply):
                entry.deferred.callback(event)
            else:
                entry.deferred.errback(InstrumentError(entry.command, f"unreadable reply: {event.message}"))

    def _timed_out(self, entry: _Pending, timeout: float) -> None:
        entry.timer = None
        self.link.log.warn("{link}: no reply to {cmd} within {t:g} s; resetting the connection",
                           link=self.link.label, cmd=entry.command, t=timeout)
        if entry in self.pending:
            self.pending.remove(entry)
        entry.deferred.errback(LinkTimeout(f"{entry.command}: no reply within {timeout:g} s "
                                           f"from {self.link.label}"))
        self.transport.abortConnection()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        pending, self.pending = self.pending, deque()
        for entry in pending:
            if entry.timer is not None and entry.timer.active():
                entry.timer.cancel()
        self.link._link_down(self, reason, pending)


class _LinkFactory(Factory):
    noisy = False

    def __init__(self, link: InstrumentLink) -> None:
        self.link = link

    def buildProtocol(self, addr: Any) -> _LinkProtocol:
        return _LinkProtocol(self.link)


class InstrumentLink:
    """A persistent, self-reconnecting connection to an instrument server.

    Args:
        reactor: the Twisted reactor.
        host: server host name or address.
        port: server TCP port.
        timeout: seconds to wait for a reply (default for :meth:`call`); also the connect timeout.
        max_reply: longest reply line accepted, bytes.
        min_backoff: first reconnect delay, seconds (doubles up to ``max_backoff``, with jitter).
        max_backoff: longest reconnect delay, seconds.
        name: label for log lines (default ``host:port``).
    """

    def __init__(self, reactor: Any, host: str, port: int, timeout: float = 10.0, *,
                 max_reply: int = DEFAULT_MAX_REPLY, min_backoff: float = 0.1, max_backoff: float = 5.0,
                 name: str | None = None) -> None:
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        self.reactor = reactor
        self.host, self.port = host, int(port)
        self.timeout = float(timeout)
        self.max_reply = max_reply
        self.label = name or f"{host}:{port}"
        self.log = Logger(namespace="instrument.link")
        self._protocol: _LinkProtocol | None = None
        self._up: list[Callable[[], Any]] = []
        self._down: list[Callable[[str], Any]] = []
        self._waiters: list[defer.Deferred[None]] = []
        self._was_up = False
        self._notices: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        endpoint = HostnameEndpoint(reactor, host, self.port, timeout=max(1, int(round(timeout))))
        policy = BackoffPolicy(initial=min_backoff, factor=2.0, maximum=max_backoff, jitter=min_backoff)
        self._service = ClientService(endpoint, _LinkFactory(self), retryPolicy=policy.retry_policy(),
                                      clock=reactor)

    @property
    def connected(self) -> bool:
        """True while the TCP connection to the server is up."""
        return self._protocol is not None

    def add_listener(self, on_up: Callable[[], Any] | None = None,
                     on_down: Callable[[str], Any] | None = None) -> None:
        """Call ``on_up()`` whenever the link comes up and ``on_down(reason)`` when it goes down."""
        if on_up is not None:
            self._up.append(on_up)
        if on_down is not None:
            self._down.append(on_down)

    def start(self) -> None:
        """Start connecting (and reconnecting whenever the connection drops)."""
        if not self._service.running:
            self.log.info("{link}: connecting", link=self.label)
            self._service.startService()

    def stop(self) -> defer.Deferred[None]:
        """Close the connection and stop reconnecting; fires when closed."""
        if not self._service.running:
            return defer.succeed(None)
        return defer.maybeDeferred(self._service.stopService).addCallback(lambda _: None)

    def when_connected(self, timeout: float | None = None) -> defer.Deferred[None]:
        """Fire when the link is up (at once if it is); errback with :class:`LinkTimeout` after ``timeout``."""
        if self.connected:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._waiters.append(d)
        if timeout is not None:
            def expired(f: Failure) -> Failure:
                if d in self._waiters:
                    self._waiters.remove(d)
                if f.check(defer.TimeoutError):
                    raise LinkTimeout(f"{self.label}: not connected within {timeout:g} s")
                return f
            d.addTimeout(timeout, self.reactor).addErrback(expired)
        return d

    def call_reply(self, command: str, *args: object, timeout: float | None = None) -> defer.Deferred[Reply]:
        """Send one request; fire with the parsed :class:`~ocs_core.framing.lines.Reply` (ok or not)."""
        try:
            line = encode_request(command, *args)
        except ValueError as exc:
            return defer.fail(exc)
        if self._protocol is None:
            state = "connecting" if self._service.running else "not started"
            return defer.fail(LinkDown(f"{command}: link to {self.label} is down ({state})"))
        return self._protocol.send(command, line, timeout or self.timeout)

    def call(self, command: str, *args: object, timeout: float | None = None) -> defer.Deferred[str]:
        """Send ``command`` with ``args``; fire with the reply data string.

        Errbacks with :class:`InstrumentError` on a ``0`` reply, :class:`LinkDown` when the link is
        down or drops, :class:`LinkTimeout` when no reply comes in time, ``ValueError`` for an
        argument holding a tab or line break.
        """
        def check(reply: Reply) -> str:
            if not reply.ok:
                raise InstrumentError(command, reply.data)
            return reply.data
        return self.call_reply(command, *args, timeout=timeout).addCallback(check)

    # ---- protocol callbacks ----
    # Listeners, waiters and failed calls are notified on a later reactor turn, in order, so that
    # user code (which may stop or restart the link) never runs inside ClientService's transitions.
    def _link_up(self, protocol: _LinkProtocol) -> None:
        self._protocol = protocol
        self.log.info("{link}: link {what}", link=self.label, what="restored" if self._was_up else "up")
        self._was_up = True
        self._notify(self._announce_up)

    def _announce_up(self) -> None:
        for hook in list(self._up):
            self._safely(hook)
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            if not d.called:
                d.callback(None)

    def _link_down(self, protocol: _LinkProtocol, reason: Failure | None, pending: deque[_Pending]) -> None:
        why = reason.getErrorMessage() if reason is not None else "closed"
        if self._protocol is protocol:
            self._protocol = None
            self.log.info("{link}: link down ({why})", link=self.label, why=why)
            for hook in list(self._down):
                self._notify(self._safely, hook, why)
        for entry in pending:
            self._notify(entry.deferred.errback,
                         LinkDown(f"{entry.command}: connection to {self.label} lost before the reply"))

    def _notify(self, func: Callable[..., Any], *args: Any) -> None:
        self._notices.append((func, args))
        if len(self._notices) == 1:
            self.reactor.callLater(0, self._drain)

    def _drain(self) -> None:
        while self._notices:
            func, args = self._notices[0]
            try:
                func(*args)
            except Exception:
                self.log.failure("{link}: notifying {func!r} failed", link=self.label, func=func)
            self._notices.popleft()

    def _safely(self, hook: Callable[..., Any], *args: Any) -> None:
        try:
            hook(*args)
        except Exception:
            self.log.failure("{link}: link listener {hook!r} raised", link=self.label, hook=hook)
