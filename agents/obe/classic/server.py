"""Twisted server for optbayesexpt's classic TCP protocol, a thin layer over the sans-IO pieces.

Bytes go through :class:`~ocs_core.framing.length_prefixed.FrameParser`; requests go through
:class:`~agents.obe.classic.commands.LegacyDispatcher`; backend calls run through ``runner``
(default: :func:`twisted.internet.threads.deferToThread`) so numpy never blocks the reactor.

Cheap commands (``ready``, ``done``, errors, and the getters a backend's optional
``inline_lock(command)`` names, e.g. ``getmean`` on a small posterior) are answered in the
reactor thread when that lock is free (a non-blocking acquire); otherwise, and for everything
else, the call goes to ``runner``.

Per connection:

* requests are served strictly in order, one backend call at a time, so replies keep the order of
  the requests; one request per connection and many requests per connection both work;
* at most ``max_queued`` parsed requests wait behind the one in progress; when the queue is full
  the transport is paused (no more reading) until it drains, so memory stays bounded;
* back-pressure on replies (:class:`~ocs_core.runtime.backpressure.ReplyBackpressure`): past
  ``soft_limit`` unsent reply bytes (a client that does not read) no further request is served
  and reading stops until the replies are sent; past ``hard_limit`` the connection is dropped;
* a bad body gets ``{"error": ...}`` and the connection stays usable; a bad length prefix or an
  oversized declared length gets ``{"error": ...}`` and then the connection is closed (the stream
  cannot be resynchronised);
* ``done`` replies ``"OK"``, then calls the optional hook ``on_done(protocol)`` (e.g. the agent's
  way to stop serving), then, if ``close_on_done`` (the default), closes that connection; requests
  pipelined after ``done`` are then dropped. The listening port keeps accepting connections unless
  the hook stops it. With ``close_on_done=False`` the connection keeps serving after ``done``.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from ocs_core.framing.length_prefixed import (
    DEFAULT_MAX_BODY, BadFrame, Event, FrameParser, Message, encode,
)
from twisted.internet import defer, protocol, threads
from twisted.python.failure import Failure
from twisted.python.threadable import isInIOThread
from twisted.internet.interfaces import IHalfCloseableProtocol, IListeningPort
from twisted.logger import Logger
from zope.interface import implementer

from agents.obe.classic.commands import BackendCall, LegacyDispatcher, OBEBackend, Reply
from ocs_core.runtime.backpressure import HARD_LIMIT, SOFT_LIMIT, ReplyBackpressure

__all__ = ["DEFAULT_PORT", "DEFAULT_INTERFACE", "LegacyOBEProtocol", "LegacyOBEFactory", "listen"]

DEFAULT_PORT = 61981
DEFAULT_INTERFACE = "127.0.0.1"

Runner = Callable[[Callable[[], Any]], defer.Deferred]

_log = Logger()


def _log_backend_error(command: str, exc: BaseException) -> None:
    """Log an unexpected backend exception once, with its traceback, on the reactor thread."""
    failure = Failure(exc, type(exc), exc.__traceback__)

    def emit() -> None:
        _log.failure("OBE backend failed on {command!r}", failure, command=command)

    if isInIOThread():
        emit()
    else:
        from twisted.internet import reactor
        reactor.callFromThread(emit)


def _encode_reply(reply: Reply) -> bytes:
    try:
        return encode(reply.value)
    except (TypeError, ValueError) as exc:
        return encode({"error": f"reply could not be encoded: {exc}"})


@implementer(IHalfCloseableProtocol)
class LegacyOBEProtocol(protocol.Protocol):
    """One client connection speaking the 10-digit length-prefixed JSON protocol.

    A client may half-close (shut down its sending side) after its requests: they are all
    answered, then the connection is closed.
    """

    log = Logger()

    def __init__(self, dispatcher: LegacyDispatcher, *, runner: Runner, max_body: int,
                 max_queued: int, on_done: Callable[["LegacyOBEProtocol"], None] | None = None,
                 close_on_done: bool = True, soft_limit: int = SOFT_LIMIT,
                 hard_limit: int = HARD_LIMIT) -> None:
        self.dispatcher = dispatcher
        self.soft_limit, self.hard_limit = soft_limit, hard_limit
        self.backpressure: ReplyBackpressure | None = None
        self.runner = runner
        self.max_queued = max_queued
        self.on_done = on_done
        self.close_on_done = close_on_done
        self.parser = FrameParser(max_body)
        self._queue: deque[Event] = deque()
        self._busy = False
        self._paused = False
        self._closing = False
        self._connected = False
        self._in_pump = False
        self._input_ended = False

    def connectionMade(self) -> None:
        self._connected = True
        self.backpressure = ReplyBackpressure(self.transport, self._pump, soft_limit=self.soft_limit,
                                              hard_limit=self.hard_limit, describe=self._peer)

    def connectionLost(self, reason: Any = None) -> None:
        self._connected = False
        self._queue.clear()
        if self.backpressure is not None:
            self.backpressure.release()

    def readConnectionLost(self) -> None:
        """The client shut down its sending side: answer what is queued, then close."""
        self._input_ended = True
        self._pump()

    def writeConnectionLost(self) -> None:
        """Nothing can be sent any more: stop serving."""
        self.close()

    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        self.parser.feed(data)
        self._pump()

    # -- the serial request loop -------------------------------------------------------------

    def _pump(self) -> None:
        """Serve queued requests in order; pull parsed events while the queue has room."""
        if self._in_pump:  # a synchronous runner finished inside _serve: the outer loop goes on
            return
        self._in_pump = True
        try:
            while self._connected and not self._closing:
                if self._write_blocked():
                    break
                if not self._busy and self._queue:
                    self._serve(self._queue.popleft())
                elif len(self._queue) < self.max_queued and (event := self.parser.next_event()):
                    self._queue.append(event)
                else:
                    break
        finally:
            self._in_pump = False
        if self._input_ended and not self._busy and not self._queue and self._connected:
            self.close()  # every complete request has been answered
            return
        self._flow_control()

    def _write_blocked(self) -> bool:
        return self.backpressure is not None and self.backpressure.blocked

    def _flow_control(self) -> None:
        transport = self.transport
        if transport is None or not self._connected:
            return
        full = len(self._queue) >= self.max_queued or self._write_blocked()
        if full and not self._paused:
            self._paused = True
            transport.pauseProducing()
        elif not full and self._paused and not self._closing:
            self._paused = False
            transport.resumeProducing()

    def _serve(self, event: Event) -> None:
        if isinstance(event, BadFrame):
            self._write(encode({"error": f"bad frame: {event.reason}"}))
            if event.fatal:
                self.log.info("closing classic OBE connection from {peer}: {reason}",
                              peer=self._peer(), reason=event.reason)
                self.close()
            return
        assert isinstance(event, Message)
        prepared = self.dispatcher.prepare(event.value)
        if isinstance(prepared, Reply):
            self._finish(prepared, _encode_reply(prepared))
            return
        call: BackendCall = prepared
        if self._answered_inline(call):
            return
        self._busy = True

        def work() -> tuple[Reply, bytes]:
            reply = call.run()
            return reply, _encode_reply(reply)

        d = defer.maybeDeferred(self.runner, work)
        d.addCallback(lambda result: self._finish(*result))
        d.addErrback(self._runner_failed, call.command)
        d.addBoth(self._idle)

    def _answered_inline(self, call: BackendCall) -> bool:
        """Answer a cheap command here, without a thread hop, if the backend's lock is free."""
        inline_lock = getattr(self.dispatcher.backend, "inline_lock", None)
        lock = inline_lock(call.command) if inline_lock is not None else None
        if lock is None or not lock.acquire(blocking=False):
            return False
        try:
            reply = call.run()
            data = _encode_reply(reply)
        finally:
            lock.release()
        self._finish(reply, data)
        return True

    def _runner_failed(self, failure: Any, command: str) -> None:
        self.log.failure("running {command!r} failed", failure, command=command)
        self._write(encode({"error": f"{command} failed: internal error (logged)"}))

    def _idle(self, _ignored: Any) -> None:
        self._busy = False
        self._pump()

    def _finish(self, reply: Reply, data: bytes) -> None:
        self._write(data)
        if reply.done and self._connected and not self._closing:
            if self.on_done is not None:
                try:
                    self.on_done(self)
                except Exception:  # noqa: BLE001 - a failing hook must not kill the connection loop
                    self.log.failure("the done hook failed")
            if self.close_on_done and self._connected:
                self.close()

    def _write(self, data: bytes) -> None:
        if self._connected and not self._closing:
            if self.backpressure is not None:
                self.backpressure.write(data)
            else:
                self.transport.write(data)

    def close(self) -> None:
        """Stop serving this connection and close it after pending writes are flushed."""
        if self._closing:
            return
        self._closing = True
        self._queue.clear()
        self.transport.loseConnection()

    def _peer(self) -> str:
        try:
            peer = self.transport.getPeer()
            return f"{peer.host}:{peer.port}"
        except Exception:  # noqa: BLE001 - peer is only for the log line
            return "?"


class LegacyOBEFactory(protocol.ServerFactory):
    """Builds a :class:`LegacyOBEProtocol` per connection, all sharing one backend.

    Args:
        backend: the engine holder (see :class:`~agents.obe.classic.commands.OBEBackend`).
        runner: runs a zero-argument callable and returns a Deferred of its result
            (default :func:`~twisted.internet.threads.deferToThread`; tests may pass a synchronous one).
        max_body: largest request body accepted, in bytes.
        max_queued: parsed requests that may wait per connection before reading pauses.
        on_done: optional hook called with the protocol after the "OK" of ``done`` is written.
        close_on_done: close the connection after ``done`` (default True).
        soft_limit, hard_limit: unsent reply bytes past which a connection stops being served
            (and read), and is dropped.
    """

    noisy = False  # no "Starting factory <... object at 0x...>" lines: the agent logs its own

    def __init__(self, backend: OBEBackend, *, runner: Runner | None = None,
                 max_body: int = DEFAULT_MAX_BODY, max_queued: int = 16,
                 on_done: Callable[[LegacyOBEProtocol], None] | None = None,
                 close_on_done: bool = True, soft_limit: int = SOFT_LIMIT,
                 hard_limit: int = HARD_LIMIT) -> None:
        if max_queued < 1:
            raise ValueError(f"max_queued must be >= 1, got {max_queued}")
        self.dispatcher = LegacyDispatcher(backend, log_error=_log_backend_error)
        self.runner: Runner = runner if runner is not None else threads.deferToThread
        self.max_body = max_body
        self.max_queued = max_queued
        self.on_done = on_done
        self.close_on_done = close_on_done
        self.soft_limit, self.hard_limit = soft_limit, hard_limit

    def buildProtocol(self, addr: Any) -> LegacyOBEProtocol:
        proto = LegacyOBEProtocol(self.dispatcher, runner=self.runner, max_body=self.max_body,
                                  max_queued=self.max_queued, on_done=self.on_done,
                                  close_on_done=self.close_on_done, soft_limit=self.soft_limit,
                                  hard_limit=self.hard_limit)
        proto.factory = self
        return proto


def listen(backend: OBEBackend, port: int = DEFAULT_PORT, interface: str = DEFAULT_INTERFACE, *,
           reactor: Any = None, **factory_options: Any) -> IListeningPort:
    """Serve the classic protocol for ``backend`` on ``interface:port`` (port 0: any free port).

    ``factory_options`` go to :class:`LegacyOBEFactory` (runner, max_body, max_queued, on_done,
    close_on_done, soft_limit, hard_limit).
    Returns the listening port; ``stopListening()`` stops accepting new connections.
    """
    if reactor is None:
        from twisted.internet import reactor as default_reactor
        reactor = default_reactor
    return reactor.listenTCP(port, LegacyOBEFactory(backend, **factory_options), interface=interface)
