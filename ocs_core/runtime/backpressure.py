"""Back-pressure for a server connection: a client that does not read its replies is not buffered for.

Without it a client that sends but never reads makes a server keep every reply in memory
(measured: +110 MB per 200 pipelined OBE ``getpar``, +82 MB per 100,000 unread instrument
``help``). :class:`ReplyBackpressure` registers itself as the transport's streaming producer:

* past ``soft_limit`` unsent bytes the transport pauses it: the connection then stops serving
  requests and stops reading (:attr:`ReplyBackpressure.blocked` is true and ``on_change`` runs);
* when the transport has sent everything it resumes it: serving and reading go on;
* past ``hard_limit`` unsent bytes, :meth:`ReplyBackpressure.write` drops the connection.

The owning protocol writes through :meth:`ReplyBackpressure.write` and consults ``blocked``
before serving the next request. Used by every server socket of ocs-core (the OBE agent's
classic TCP port, instrument line servers).
"""
from __future__ import annotations

from typing import Any, Callable

from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from zope.interface import implementer

__all__ = ["ReplyBackpressure", "SOFT_LIMIT", "HARD_LIMIT", "unsent_bytes"]

_log = Logger(namespace="ocs_core.runtime.backpressure")

#: Unsent reply bytes past which a connection stops serving and reading.
SOFT_LIMIT = 256 * 1024
#: Unsent reply bytes past which a connection is dropped.
HARD_LIMIT = 64 * 1024 * 1024


def unsent_bytes(transport: Any) -> int | None:
    """Bytes written to ``transport`` and not yet handed to the kernel (None if unknown).

    Reads the buffer of Twisted's ``FileDescriptor`` (TCP, UNIX and process transports).
    """
    data = getattr(transport, "dataBuffer", None)
    if data is None:
        return None
    return (len(data) - getattr(transport, "offset", 0)) + getattr(transport, "_tempDataLen", 0)


@implementer(IPushProducer)
class ReplyBackpressure:
    """Registered as ``transport``'s streaming producer; see the module docstring.

    Args:
        transport: the connection's transport.
        on_change: called (no arguments) whenever :attr:`blocked` changes.
        soft_limit: unsent bytes past which the connection is blocked.
        hard_limit: unsent bytes past which :meth:`write` drops the connection.
        describe: a label for log lines (e.g. the peer address).
    """

    def __init__(self, transport: Any, on_change: Callable[[], None], *,
                 soft_limit: int = SOFT_LIMIT, hard_limit: int = HARD_LIMIT,
                 describe: Callable[[], str] = lambda: "?") -> None:
        if not 0 < soft_limit < hard_limit:
            raise ValueError(f"need 0 < soft_limit < hard_limit, got {soft_limit}, {hard_limit}")
        self.transport = transport
        self.soft_limit, self.hard_limit = soft_limit, hard_limit
        self.blocked = False
        self.dropped = False
        self.pauses = 0
        self._on_change = on_change
        self._describe = describe
        self._written_while_blocked = 0
        transport.bufferSize = soft_limit  # FileDescriptor pauses its producer past this
        transport.registerProducer(self, True)

    # -- IPushProducer, called by the transport ---------------------------------------------
    def pauseProducing(self) -> None:  # noqa: N802 (Twisted's name)
        if not self.blocked:
            self.blocked = True
            self.pauses += 1
            self._written_while_blocked = 0
            self._on_change()

    def resumeProducing(self) -> None:  # noqa: N802
        if self.blocked and not self.dropped:
            self.blocked = False
            self._on_change()

    def stopProducing(self) -> None:  # noqa: N802
        self.blocked = True

    # -- writing ----------------------------------------------------------------------------
    def unsent(self) -> int:
        """Unsent bytes on the transport (an estimate where the transport cannot say)."""
        if self.transport is None:
            return 0
        known = unsent_bytes(self.transport)
        if known is not None:
            return known
        return self.soft_limit + self._written_while_blocked if self.blocked else 0

    def write(self, data: bytes) -> bool:
        """Write ``data``; drop the connection (and return False) past the hard limit."""
        if self.dropped or self.transport is None:
            return False
        if self.blocked:
            self._written_while_blocked += len(data)
        self.transport.write(data)
        unsent = self.unsent()
        if unsent > self.hard_limit:
            self.dropped = True
            self.blocked = True
            _log.warn("dropping {peer}: {n} bytes of replies unsent (limit {limit}); it does not read",
                      peer=self._describe(), n=unsent, limit=self.hard_limit)
            self.transport.abortConnection()
            return False
        return True

    def release(self) -> None:
        """Forget the transport and the callback; call from ``connectionLost``.

        The protocol holds this object and this object holds the protocol (``on_change``) and
        the transport with its unsent replies: a reference cycle that would keep up to
        ``hard_limit`` bytes per lost connection alive until Python's cyclic collector runs.
        """
        self.blocked = True
        self._on_change = _nothing
        self._describe = str
        self.transport = None


def _nothing() -> None:
    return None
