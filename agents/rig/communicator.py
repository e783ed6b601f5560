"""Transport-independent rig Communicator: callbacks, one-shot Deferreds and the Service calls.

A :class:`Communicator` holds the event callbacks and builds the messages; a *transport* moves
them. Any object with the :class:`RigTransport` shape can carry them (UDP in
:mod:`agents.rig.udp`; a WAMP feed later). The transport calls :meth:`Communicator.receive` for
every message it accepted from a remote rig.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Optional, Protocol, Union, runtime_checkable

from twisted.internet import defer

from agents.rig.events import ExpMessage, ExpStatus
from agents.rig.messages import MessageError, RemoteError, RigMessage, make_message
from ocs_core.runtime.text import brief

__all__ = ["RigTransport", "Communicator", "Callback"]

_MAX_ERROR = 1000  # characters of an error report sent back to a remote rig

#: A plain callable (fires on every matching event) or a Deferred (fires once, then is cleared).
Callback = Union[Callable[[RigMessage], Any], defer.Deferred]


@runtime_checkable
class RigTransport(Protocol):
    """What a Communicator needs from a transport.

    A transport is attached with :meth:`attach`, after which it calls
    ``communicator.receive(message)`` for each RigMessage or RemoteError it accepts.
    """

    def attach(self, communicator: "Communicator") -> None:
        """Remember the communicator to deliver received messages to."""

    def send(self, message: Union[RigMessage, RemoteError], addr: Any = None) -> defer.Deferred:
        """Send one message to ``addr`` (or the transport's default peer).

        Returns a Deferred that fires (with None) once delivery is confirmed (UDP: the echo;
        WAMP: the publish acknowledgement) and fails with TimeoutError or another exception
        if it is not. Network problems fail the Deferred; a message that cannot be encoded
        (MessageError) or a missing address (ValueError) may raise at once.
        """

    def close(self) -> None:
        """Stop sending and receiving; fail any delivery still waiting for confirmation."""

    @property
    def is_connected(self) -> bool:
        """True while messages can be sent."""


class Communicator:
    """Send rig events through a transport and dispatch received ones to callbacks.

    Args:
        transport: The transport carrying the messages (attached here).
        name: A label for logs, e.g. the remote rig's name.
        logger: Where to log; defaults to the ``agents.rig`` logger (lines carry ``[name]``).
    """

    def __init__(self, transport: RigTransport, name: str = "rig", logger: Optional[logging.Logger] = None):
        self.name = name
        self.logger = logger or logging.getLogger("agents.rig")
        self.transport = transport
        # single-bit event -> list of (callback, compound registration)
        self._callbacks: dict[ExpMessage, list[tuple[Callback, bool]]] = {e: [] for e in ExpMessage}
        transport.attach(self)

    # -- callbacks -------------------------------------------------------------------------
    def assign_callback(self, event: Union[str, int, ExpMessage], callback: Callback) -> None:
        """Call ``callback`` with the RigMessage whenever ``event`` is received.

        A plain callable fires on every matching event until cleared; a Deferred fires once
        and is then removed from every event it was assigned to. ``event`` may combine events
        with ``|`` (``'EXPEND|EXPINTERRUPT'``); the RigMessage tells which one occurred.

        Raises:
            TypeError: ``callback`` is neither callable nor a Deferred, or ``event`` has a bad type.
            ValueError: ``event`` names no event.
        """
        event = ExpMessage.validate(event)
        if not (isinstance(callback, defer.Deferred) or callable(callback)):
            raise TypeError(f"callback must be callable or a Deferred, not {type(callback).__name__}")
        compound = event.bit_count() > 1
        for bit in event:
            self._callbacks[bit].append((callback, compound))

    def clear_callbacks(
        self,
        event: Union[str, int, ExpMessage],
        callback: Optional[Callback] = None,
        cancel_futures: bool = True,
    ) -> int:
        """Remove ``callback`` (or every callback) from ``event``; return how many were removed.

        A callback assigned to a combined event counts once for each event it was removed from.
        With ``cancel_futures``, removed Deferreds that have not fired are cancelled (their
        errbacks get CancelledError).
        """
        event = ExpMessage.validate(event)
        removed: list[Callback] = []
        for bit in event:
            keep = []
            for entry in self._callbacks[bit]:
                if callback is None or _same(entry[0], callback):
                    removed.append(entry[0])
                else:
                    keep.append(entry)
            self._callbacks[bit] = keep
        if cancel_futures:
            for cb in removed:
                if isinstance(cb, defer.Deferred) and not cb.called and not self._registered(cb):
                    cb.cancel()
        if removed:
            self.logger.debug("[%s] %d callback(s) cleared for %s", self.name, len(removed), event)
        return len(removed)

    def on_event(self, event: Union[str, int, ExpMessage]) -> defer.Deferred:
        """Return a Deferred firing with the next RigMessage for ``event`` (combinable with ``|``).

        Cancelling the Deferred withdraws it.
        """
        d: defer.Deferred = defer.Deferred(lambda d: self.clear_callbacks(event, d, cancel_futures=False))
        self.assign_callback(event, d)
        return d

    def _registered(self, cb: Callback) -> bool:
        return any(_same(entry[0], cb) for entries in self._callbacks.values() for entry in entries)

    # -- receiving -------------------------------------------------------------------------
    def receive(self, message: Union[RigMessage, RemoteError]) -> None:
        """Dispatch one message accepted by the transport (called by transports only)."""
        if isinstance(message, RemoteError):
            name = ExpMessage(message.event).name if 0 < message.event <= 255 and message.event.bit_count() == 1 else message.event
            self.logger.error(
                "[%s] remote callback for %s at %s failed: %s", self.name, name, message.source, message.error
            )
            return
        self.logger.info("[%s] received %s from %s", self.name, message.event.name, message.source)
        for cb, _compound in list(self._callbacks[message.event]):
            if isinstance(cb, defer.Deferred):
                for bit in ExpMessage:  # a one-shot Deferred leaves every event it waited on
                    self._callbacks[bit] = [e for e in self._callbacks[bit] if e[0] is not cb]
                if not cb.called:
                    cb.callback(message)
                continue
            try:
                cb(message)
            except Exception as exc:  # a failing callback must not stop the others or the rig
                self.logger.error(
                    "[%s] callback %r for %s failed: %s: %s", self.name, cb, message.event.name, type(exc).__name__, exc
                )
                report = RemoteError(f"{type(exc).__name__}: {exc}"[:_MAX_ERROR], int(message.event))
                self.transport.send(report, message.source).addErrback(lambda _: None)

    # -- sending ---------------------------------------------------------------------------
    @property
    def is_connected(self) -> bool:
        """True while the transport can send."""
        return bool(self.transport.is_connected)

    def send(self, message: Union[RigMessage, list, tuple], addr: Any = None) -> defer.Deferred:
        """Send a RigMessage (or a wire array ``[event, *args]``); the Deferred fires on confirmation.

        Raises:
            MessageError: the message is not a valid protocol 1.0.0 rig message.
        """
        if not isinstance(message, RigMessage):
            if not isinstance(message, (list, tuple)) or not message:
                raise MessageError(f"expected a RigMessage or [event, ...], got {brief(message)}")
            message = make_message(message[0], *message[1:])
        return self.transport.send(message, addr)

    def close(self) -> None:
        """Remove every callback, cancel waiting Deferreds and close the transport."""
        pending = [cb for entries in self._callbacks.values() for cb, _ in entries]
        self._callbacks = {e: [] for e in ExpMessage}
        seen: set[int] = set()
        for cb in pending:
            if isinstance(cb, defer.Deferred) and id(cb) not in seen and not cb.called:
                seen.add(id(cb))
                cb.cancel()
        self.transport.close()

    # -- Service calls -----------------------------------------------------------------------
    def init(self, data: Any = None, addr: Any = None) -> defer.Deferred:
        """Send EXPINIT with optional ``data``."""
        return self.send(make_message(ExpMessage.EXPINIT, data), addr)

    def start(self, exp_ref: Any, data: Any = None, addr: Any = None) -> defer.Deferred:
        """Send EXPSTART; ``exp_ref`` must be ``yyyy-mm-dd_n_subject`` (or a date/sequence/subject mapping).

        Raises:
            MessageError: ``exp_ref`` is not of that form.
        """
        return self.send(make_message(ExpMessage.EXPSTART, exp_ref, data), addr)

    def stop(self, data: Any = None, immediately: bool = False, addr: Any = None) -> defer.Deferred:
        """Send EXPEND, or EXPINTERRUPT when ``immediately``."""
        event = ExpMessage.EXPINTERRUPT if immediately else ExpMessage.EXPEND
        return self.send(make_message(event, data), addr)

    def status(self, status: Union[ExpStatus, int, str], addr: Any = None) -> defer.Deferred:
        """Send EXPSTATUS with a checked ExpStatus."""
        return self.send(make_message(ExpMessage.EXPSTATUS, status), addr)

    def info(self, status: Union[ExpStatus, int, str], data: Any = None, addr: Any = None) -> defer.Deferred:
        """Send EXPINFO with a checked ExpStatus and optional ``data``."""
        return self.send(make_message(ExpMessage.EXPINFO, status, data), addr)

    def cleanup(self, data: Any = None, addr: Any = None) -> defer.Deferred:
        """Send EXPCLEANUP with optional ``data``."""
        return self.send(make_message(ExpMessage.EXPCLEANUP, data), addr)

    def alyx(self, base_url: Optional[str] = None, token: Optional[dict] = None, addr: Any = None) -> defer.Deferred:
        """Send ALYX with a database URL and a ``{user: token}`` mapping (both None to request one)."""
        return self.send(make_message(ExpMessage.ALYX, base_url, token), addr)


def _same(a: Callback, b: Callback) -> bool:
    """Deferreds match by identity, callables by equality (so bound methods match)."""
    if isinstance(a, defer.Deferred) or isinstance(b, defer.Deferred):
        return a is b
    return a == b
