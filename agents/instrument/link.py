"""InstrumentLink: a held, self-reconnecting Twisted client of the tab-separated line protocol.

One TCP connection carries every call; requests are pipelined and replies matched in order.
When the connection drops, pending calls fail with :class:`LinkDown` and the link reconnects by
itself with exponential backoff; ``on_up`` / ``on_down`` listeners let an agent mark its sessions
degraded and recovered::

    link = InstrumentLink(reactor, "127.0.0.1", 7001, timeout=5.0)
    link.add_listener(on_up=lambda: ..., on_down=lambda reason: ...)
    link.start()
    value = float(await link.call("measure", 2.5))

For servers that serve one client at a time, :class:`~agents.instrument.link_on_demand.OnDemandLink`
connects per burst of commands instead; :func:`make_link` picks one from a server profile.
"""
from __future__ import annotations

from typing import Any

from twisted.application.internet import ClientService
from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint
from twisted.python.failure import Failure

from agents.instrument.link_protocol import (InstrumentError, LinkBase, LinkDown, LinkFactory, LinkProtocol,
                                             LinkTimeout, _Pending)
from agents.instrument.profiles import ServerProfile
from ocs_core.framing.lines import DEFAULT_MAX_REPLY, Reply
from ocs_core.runtime.backoff import BackoffPolicy

__all__ = ["InstrumentLink", "InstrumentError", "LinkDown", "LinkTimeout", "make_link"]


class InstrumentLink(LinkBase):
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
        unescape: undo escapes in reply fields (off: replies are passed on as they are).
        fence: the command sent after a no-reply command (``expect="none"``).
    """

    def __init__(self, reactor: Any, host: str, port: int, timeout: float = 10.0, *,
                 max_reply: int = DEFAULT_MAX_REPLY, min_backoff: float = 0.1, max_backoff: float = 5.0,
                 name: str | None = None, unescape: bool = False, fence: str = "ping") -> None:
        super().__init__(reactor, host, port, timeout, name)
        self.max_reply = max_reply
        self.unescape = unescape
        self.fence = fence
        self._protocol: LinkProtocol | None = None
        self._was_up = False
        endpoint = HostnameEndpoint(reactor, host, self.port, timeout=max(1, int(round(timeout))))
        policy = BackoffPolicy(initial=min_backoff, factor=2.0, maximum=max_backoff, jitter=min_backoff)
        self._service = ClientService(endpoint, LinkFactory(self), retryPolicy=policy.retry_policy(),
                                      clock=reactor)

    @property
    def connected(self) -> bool:
        """True while the TCP connection to the server is up."""
        return self._protocol is not None

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

    def _send(self, command: str, line: bytes, timeout: float, expect: str) -> defer.Deferred[Reply]:
        if self._protocol is None:
            state = "connecting" if self._service.running else "not started"
            return defer.fail(LinkDown(f"{command}: link to {self.label} is down ({state})"))
        return self._protocol.send(command, line, timeout, expect)

    def _link_up(self, protocol: LinkProtocol) -> None:
        self._protocol = protocol
        self.log.info("{link}: link {what}", link=self.label, what="restored" if self._was_up else "up")
        self._was_up = True
        self._notify(self._announce_up)

    def _link_down(self, protocol: LinkProtocol, reason: Failure | None, pending: list[_Pending]) -> None:
        why = reason.getErrorMessage() if reason is not None else "closed"
        if self._protocol is protocol:
            self._protocol = None
            self.log.info("{link}: link down ({why})", link=self.label, why=why)
            self._announce_down(why)
        self._fail_pending(reason, pending)


def make_link(reactor: Any, host: str, port: int, profile: ServerProfile, *, timeout: float = 10.0,
              max_backoff: float = 5.0, name: str | None = None) -> LinkBase:
    """The link a server ``profile`` asks for: held (``idle_release`` None) or on demand."""
    if profile.idle_release is None:
        return InstrumentLink(reactor, host, port, timeout, max_backoff=max_backoff, name=name,
                              unescape=profile.unescape, fence=profile.fence)
    from agents.instrument.link_on_demand import OnDemandLink
    return OnDemandLink(reactor, host, port, timeout, idle_release=profile.idle_release,
                        max_backoff=max_backoff, name=name, unescape=profile.unescape, fence=profile.fence)
