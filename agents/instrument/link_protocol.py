"""What both instrument links share: the client protocol, its errors, listeners and notices.

One :class:`LinkProtocol` is one TCP connection to a server. Requests are pipelined and replies
matched in order; each request says what answers it (``expect``):

* ``"reply"``: one reply line;
* ``"none"``: nothing on success (sm-bluesky's ``connect_hardware``). The link sends the profile's
  fence (``ping``) right after; the fence's reply means the command finished, and a ``0`` reply
  before it is the command's error (the fence's reply then follows and is dropped);
* ``"close"``: the server closes the connection (sm-bluesky's ``shutdown``); the close is the
  success, a reply is taken as it comes.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from ocs_core.framing.lines import DEFAULT_MAX_REPLY, Reply, ReplyParser, encode_request

__all__ = ["InstrumentError", "LinkDown", "LinkTimeout", "LinkBase", "LinkProtocol", "EXPECTS"]

EXPECTS = ("reply", "none", "close")


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
    deferred: defer.Deferred[Reply] | None  # None: a fence's reply, dropped
    timer: IDelayedCall | None
    expect: str = "reply"


class LinkProtocol(Protocol):
    """One connection of a link: pipelined requests, replies matched in order."""

    def __init__(self, link: LinkBase) -> None:
        self.link = link
        self.parser = ReplyParser(link.max_reply, unescape=link.unescape)
        self.pending: deque[_Pending] = deque()

    def connectionMade(self) -> None:
        self.link._link_up(self)

    def send(self, command: str, line: bytes, timeout: float, expect: str = "reply") -> defer.Deferred[Reply]:
        d: defer.Deferred[Reply] = defer.Deferred()
        entry = _Pending(command, d, None, expect)
        entry.timer = self.link.reactor.callLater(timeout, self._timed_out, entry, timeout)
        self.pending.append(entry)
        if expect == "none":
            line += encode_request(self.link.fence)
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
            if entry.deferred is None:  # the fence after a no-reply command that failed
                continue
            if entry.timer is not None and entry.timer.active():
                entry.timer.cancel()
            if not isinstance(event, Reply):
                entry.deferred.errback(InstrumentError(entry.command, f"unreadable reply: {event.message}"))
            elif entry.expect == "none" and event.ok:
                entry.deferred.callback(Reply(True, ()))  # the fence's reply: the command is done
            else:
                if entry.expect == "none":  # the command's error; its fence's reply comes next
                    self.pending.appendleft(_Pending(self.link.fence, None, None))
                entry.deferred.callback(event)
        if not self.pending:
            self.link._idle(self)

    def _timed_out(self, entry: _Pending, timeout: float) -> None:
        entry.timer = None
        self.link.log.warn("{link}: no reply to {cmd} within {t:g} s; resetting the connection",
                           link=self.link.label, cmd=entry.command, t=timeout)
        if entry in self.pending:
            self.pending.remove(entry)
        assert entry.deferred is not None
        entry.deferred.errback(LinkTimeout(f"{entry.command}: no reply within {timeout:g} s "
                                           f"from {self.link.label}"))
        self.transport.abortConnection()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        pending, self.pending = self.pending, deque()
        for entry in pending:
            if entry.timer is not None and entry.timer.active():
                entry.timer.cancel()
        self.link._link_down(self, reason, [e for e in pending if e.deferred is not None])


class LinkFactory(Factory):
    noisy = False

    def __init__(self, link: LinkBase) -> None:
        self.link = link

    def buildProtocol(self, addr: Any) -> LinkProtocol:
        return LinkProtocol(self.link)


class LinkBase:
    """Listeners, in-order notices and the call API shared by the held and the on-demand link."""

    max_reply: int = DEFAULT_MAX_REPLY
    unescape: bool = False
    fence: str = "ping"

    def __init__(self, reactor: Any, host: str, port: int, timeout: float, name: str | None) -> None:
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        self.reactor = reactor
        self.host, self.port = host, int(port)
        self.timeout = float(timeout)
        self.label = name or f"{host}:{port}"
        self.log = Logger(namespace="instrument.link")
        self._up: list[Callable[[], Any]] = []
        self._down: list[Callable[[str], Any]] = []
        self._waiters: list[defer.Deferred[None]] = []
        self._notices: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()

    @property
    def connected(self) -> bool:
        """True while the server is reachable (held link: while its connection is up)."""
        raise NotImplementedError

    def add_listener(self, on_up: Callable[[], Any] | None = None,
                     on_down: Callable[[str], Any] | None = None) -> None:
        """Call ``on_up()`` whenever the link comes up and ``on_down(reason)`` when it goes down."""
        if on_up is not None:
            self._up.append(on_up)
        if on_down is not None:
            self._down.append(on_down)

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

    def call_reply(self, command: str, *args: object, timeout: float | None = None,
                   expect: str = "reply") -> defer.Deferred[Reply]:
        """Send one request; fire with the parsed :class:`~ocs_core.framing.lines.Reply` (ok or not).

        ``expect`` says what answers it (see the module docstring); a ``"none"`` command that
        succeeds fires with an empty ``Reply(True, ())``.
        """
        if expect not in EXPECTS:
            return defer.fail(ValueError(f"expect must be one of {EXPECTS}, got {expect!r}"))
        try:
            line = encode_request(command, *args)
        except ValueError as exc:
            return defer.fail(exc)
        return self._send(command, line, timeout or self.timeout, expect)

    def call(self, command: str, *args: object, timeout: float | None = None,
             expect: str = "reply") -> defer.Deferred[str]:
        """Send ``command`` with ``args``; fire with the reply data string.

        Errbacks with :class:`InstrumentError` on a ``0`` reply, :class:`LinkDown` when the link is
        down or drops, :class:`LinkTimeout` when no reply comes in time, ``ValueError`` for an
        argument holding a tab or line break.
        """
        def check(reply: Reply) -> str:
            if not reply.ok:
                raise InstrumentError(command, reply.data)
            return reply.data
        return self.call_reply(command, *args, timeout=timeout, expect=expect).addCallback(check)

    # ---- for subclasses ----
    def _send(self, command: str, line: bytes, timeout: float, expect: str) -> defer.Deferred[Reply]:
        raise NotImplementedError

    def _link_up(self, protocol: LinkProtocol) -> None:
        raise NotImplementedError

    def _link_down(self, protocol: LinkProtocol, reason: Failure | None, pending: list[_Pending]) -> None:
        raise NotImplementedError

    def _idle(self, protocol: LinkProtocol) -> None:
        """The connection has no request waiting for a reply (the on-demand link closes it)."""

    def _fail_pending(self, reason: Failure | None, pending: list[_Pending]) -> None:
        """Settle the calls a lost connection leaves: ``close`` ones succeed, the rest fail."""
        for entry in pending:
            assert entry.deferred is not None
            if entry.expect == "close":
                self._notify(entry.deferred.callback, Reply(True, ()))
            else:
                self._notify(entry.deferred.errback,
                             LinkDown(f"{entry.command}: connection to {self.label} lost before the reply"))

    # Listeners, waiters and failed calls are notified on a later reactor turn, in order, so that
    # user code (which may stop or restart the link) never runs inside connection transitions.
    def _announce_up(self) -> None:
        for hook in list(self._up):
            self._safely(hook)
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            if not d.called:
                d.callback(None)

    def _announce_down(self, why: str) -> None:
        for hook in list(self._down):
            self._notify(self._safely, hook, why)

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
                self.log.failure("{link}: notifying {func} failed", link=self.label,
                                 func=getattr(func, "__qualname__", "a listener"))
            self._notices.popleft()

    def _safely(self, hook: Callable[..., Any], *args: Any) -> None:
        try:
            hook(*args)
        except Exception:
            self.log.failure("{link}: link listener {hook} raised", link=self.label,
                             hook=getattr(hook, "__qualname__", "?"))
