"""InstrumentServer: a Twisted base class for servers speaking the tab-separated line protocol.

Subclass it, mark methods with :func:`~agents.instrument.commands.command`, and override
:meth:`InstrumentServer.connect_hardware` / :meth:`InstrumentServer.disconnect_hardware`::

    class Motor(InstrumentServer):
        def connect_hardware(self):
            self.dev = open_device()

        @command("move")
        def move(self, position: float) -> float:   # blocking: runs in a worker thread
            return self.dev.move(position)

Each connection's commands run one at a time and are answered in order; hardware commands of all
connections are serialised by one lock; every command has a deadline. A client that does not read
its replies is not buffered for: past ``InstrumentServer.soft_limit`` unsent bytes its connection
stops being served and read until they are sent, past ``hard_limit`` it is dropped
(:class:`~ocs_core.runtime.backpressure.ReplyBackpressure`). The runner is in
:mod:`agents.instrument.runner`; the wire format in :mod:`ocs_core.framing.lines`.
"""
from __future__ import annotations

import inspect
import threading
from collections import deque
from typing import Any, Callable

from twisted.internet import defer, threads
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from agents.instrument.commands import CommandError, CommandSpec, collect, command, format_result, make_spec
from ocs_core.runtime.backpressure import HARD_LIMIT, SOFT_LIMIT, ReplyBackpressure
from ocs_core.runtime.text import brief
from ocs_core.framing.lines import (DEFAULT_MAX_REPLY, DEFAULT_MAX_REQUEST, FramingError, RequestParser,
                                    encode_error, encode_ok)

__all__ = ["InstrumentServer", "CommandError", "command"]


class _DaemonThreadPool(ThreadPool):
    """Worker threads that never keep the process alive (a hung device must not block exit)."""

    @staticmethod
    def threadFactory(*args: Any, **kwargs: Any) -> threading.Thread:  # type: ignore[override]
        return threading.Thread(*args, daemon=True, **kwargs)


class InstrumentServer:
    """Base class of instrument servers.

    Args:
        reactor: the Twisted reactor (default: the global one).
        timeout: default deadline of a command in seconds.
        max_line: longest request line in bytes.
        name: name used in log lines (default: the class name).

    Subclasses add commands with ``@command`` or :meth:`add_command`. Built-in commands:
    ``ping``, ``connect_hardware``, ``disconnect_hardware``, ``shutdown``, ``command_list``, ``help``.
    """

    default_timeout: float = 10.0
    max_pending: int = 32
    """Queued commands per connection before reading from it pauses (TCP back-pressure)."""
    max_reply: int = DEFAULT_MAX_REPLY
    soft_limit: int = SOFT_LIMIT
    """Unsent reply bytes per connection past which it stops being served and read."""
    hard_limit: int = HARD_LIMIT
    """Unsent reply bytes per connection past which it is dropped."""
    stop_grace: float = 1.0
    """Seconds :meth:`stop` waits for a running hardware call before giving up on disconnecting."""

    def __init__(self, reactor: Any = None, *, timeout: float | None = None,
                 max_line: int = DEFAULT_MAX_REQUEST, name: str | None = None) -> None:
        if reactor is None:
            from twisted.internet import reactor as global_reactor
            reactor = global_reactor
        self.reactor = reactor
        self.timeout = float(timeout if timeout is not None else self.default_timeout)
        if not self.timeout > 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        self.max_line = max_line
        self.name = name or type(self).__name__
        self.log = Logger(namespace=f"instrument.{self.name}")
        self.hardware_connected = False
        self._commands: dict[str, CommandSpec] = collect(self)
        self._lock = defer.DeferredLock()
        self._pool = _DaemonThreadPool(minthreads=0, maxthreads=4, name=f"{self.name}-hw")
        self._in_thread = 0
        self._ports: list[IListeningPort] = []
        self._connections: set[_LineProtocol] = set()
        self._stopped: defer.Deferred[None] | None = None
        self._shutdown_hooks: list[Callable[[], Any]] = []

    # ---- hardware hooks: override these (they run in a worker thread, holding the lock) ----
    def connect_hardware(self) -> Any:
        """Open the device. Blocking is fine. A return value becomes the reply data."""
        return None

    def disconnect_hardware(self) -> Any:
        """Close the device safely. Blocking is fine."""
        return None

    # ---- registry ----
    def add_command(self, name: str, func: Callable[..., Any], *, hardware: bool = True,
                    timeout: float | None = None, help: str | None = None) -> None:
        """Register ``func`` as command ``name`` (the table API; see :func:`command`)."""
        self._commands[name] = make_spec(func, name, hardware=hardware, timeout=timeout, help=help)

    @property
    def commands(self) -> dict[str, CommandSpec]:
        """The registered commands by name (a copy)."""
        return dict(self._commands)

    # ---- life cycle ----
    def listen(self, port: int = 0, interface: str = "127.0.0.1") -> IListeningPort:
        """Listen on TCP ``interface:port`` (0: an ephemeral port) and return the listening port."""
        if self._stopped is not None:
            raise RuntimeError(f"{self.name} was stopped; make a new server")
        listening = self.reactor.listenTCP(port, _LineFactory(self), interface=interface)
        self._ports.append(listening)
        host = listening.getHost()
        self.log.info("{name} listening on {host}:{port}", name=self.name, host=host.host, port=host.port)
        return listening

    def connect(self) -> defer.Deferred[Any]:
        """Run :meth:`connect_hardware` in a worker thread (under the lock, with the deadline)."""
        d = self._call_hardware(self.connect_hardware).addTimeout(self.timeout, self.reactor)

        def done(result: Any) -> Any:
            self.hardware_connected = True
            self.log.info("{name}: hardware connected", name=self.name)
            return result
        return d.addCallback(done)

    def disconnect(self, timeout: float | None = None) -> defer.Deferred[Any]:
        """Run :meth:`disconnect_hardware` in a worker thread; the hardware counts as disconnected."""
        self.hardware_connected = False
        d = self._call_hardware(self.disconnect_hardware)
        d.addTimeout(timeout or self.timeout, self.reactor)

        def done(result: Any) -> Any:
            self.log.info("{name}: hardware disconnected", name=self.name)
            return result
        return d.addCallback(done)

    def on_shutdown(self, hook: Callable[[], Any]) -> None:
        """Call ``hook()`` after the ``shutdown`` command has stopped the server."""
        self._shutdown_hooks.append(hook)

    def stop(self) -> defer.Deferred[None]:
        """Stop listening, close connections, disconnect the hardware; fires when done (idempotent)."""
        if self._stopped is None:
            self._stopped = defer.ensureDeferred(self._stop())
        d: defer.Deferred[None] = defer.Deferred()
        self._stopped.addBoth(lambda r: (d.callback(None), r)[1])
        return d

    async def _stop(self) -> None:
        self.log.info("{name} stopping", name=self.name)
        await defer.gatherResults([defer.maybeDeferred(p.stopListening) for p in self._ports])
        closing = [c.closed for c in self._connections]
        for conn in list(self._connections):
            conn.transport.loseConnection()
        try:
            await defer.DeferredList(closing).addTimeout(2.0, self.reactor)
        except defer.TimeoutError:
            for conn in list(self._connections):
                conn.transport.abortConnection()
        if self.hardware_connected:
            # a call still holding the lock may be hung: wait for it only briefly
            grace = min(self.timeout, self.stop_grace) if self._lock.locked else self.timeout
            try:
                await self.disconnect(grace)
            except Exception as exc:
                self.log.warn("{name}: disconnect_hardware failed while stopping: {exc!r}", name=self.name, exc=exc)
        if self._in_thread:
            self.log.warn("{name}: {n} hardware call(s) still running past their deadline; not waiting",
                          name=self.name, n=self._in_thread)
        elif self._pool.started:
            self._pool.stop()
        self.log.info("{name} stopped", name=self.name)

    # ---- dispatch ----
    def execute(self, event: Any, peer: str = "-") -> defer.Deferred[bytes]:
        """Run one parsed request (or framing error) and fire with its reply line; never errbacks."""
        started = self.reactor.seconds()
        if isinstance(event, FramingError):
            self.log.warn("{peer}: bad request: {msg}", peer=peer, msg=event.message)
            return defer.succeed(encode_error(event.message))
        name = event.command
        spec = self._commands.get(name)
        if spec is None:
            self.log.warn("{peer}: unknown command {cmd}", peer=peer, cmd=brief(name))
            return defer.succeed(encode_error(f"unknown command {brief(name)}; send command_list for the known ones"))
        try:
            args = spec.bind(event.args)
        except CommandError as exc:
            self.log.warn("{peer}: {cmd}: {exc}", peer=peer, cmd=name, exc=exc)
            return defer.succeed(encode_error(f"{name}: {exc}"))
        timeout = spec.timeout or self.timeout
        if spec.hardware:
            if not self.hardware_connected:
                return defer.succeed(encode_error(f"{name}: hardware not connected (send connect_hardware)"))
            d = self._call_hardware(spec.func, *args)
        else:
            d = defer.maybeDeferred(spec.func, *args)
            d.addCallback(lambda r: defer.Deferred.fromCoroutine(r) if inspect.iscoroutine(r) else r)
        d.addTimeout(timeout, self.reactor)
        d.addCallbacks(lambda value: self._ok_line(name, value), lambda f: self._error_line(name, f, timeout))

        def log(reply: bytes) -> bytes:
            ms = (self.reactor.seconds() - started) * 1e3
            if reply.startswith(b"1"):
                self.log.debug("{peer}: {cmd} ok ({ms:.1f} ms)", peer=peer, cmd=name, ms=ms)
            else:
                self.log.warn("{peer}: {cmd} failed ({ms:.1f} ms): {err}", peer=peer, cmd=name, ms=ms,
                              err=reply[2:].decode("utf-8", "replace").rstrip("\n"))
            return reply
        return d.addCallback(log)

    def _ok_line(self, name: str, value: Any) -> bytes:
        line = encode_ok(*format_result(value))
        if len(line) > self.max_reply:
            return encode_error(f"{name}: reply of {len(line)} bytes exceeds the limit of {self.max_reply}")
        return line

    def _error_line(self, name: str, failure: Failure, timeout: float) -> bytes:
        if failure.check(defer.TimeoutError, defer.CancelledError):
            return encode_error(f"{name}: timed out after {timeout:g} s")
        if failure.check(CommandError):
            return encode_error(f"{name}: {failure.value}")
        exc = failure.value
        self.log.debug("{name} raised:\n{tb}", name=name, tb=failure.getTraceback())
        return encode_error(f"{name}: {type(exc).__name__}: {brief(str(exc), 300, quote=False)}")

    def _call_hardware(self, func: Callable[..., Any], *args: Any) -> defer.Deferred[Any]:
        """Run ``func`` in a worker thread once the hardware lock is ours.

        Cancelling the result (a deadline) while waiting for the lock leaves the queue; once the
        call runs, cancelling only stops waiting for it: the lock stays held until the thread
        really returns, so a hung device never sees two calls at once.
        """
        acquiring = self._lock.acquire()
        result: defer.Deferred[Any] = defer.Deferred(lambda _d: acquiring.cancel())

        def run(_lock: object) -> None:
            if not self._pool.started:
                self._pool.start()
            self._in_thread += 1
            worker = threads.deferToThreadPool(self.reactor, self._pool, func, *args)

            def finished(outcome: Any) -> None:
                self._in_thread -= 1
                self._lock.release()
                if not result.called:
                    if isinstance(outcome, Failure):
                        result.errback(outcome)
                    else:
                        result.callback(outcome)
                elif self._stopped is not None and not self._in_thread and self._pool.started:
                    self._pool.stop()
            worker.addBoth(finished)
        acquiring.addCallbacks(run, lambda f: None if f.check(defer.CancelledError) else f)
        return result

    # ---- built-in commands ----
    @command("ping", hardware=False)
    def _cmd_ping(self) -> None:
        """Reply 1 with no data: the server is alive."""

    @command("connect_hardware", hardware=False)
    def _cmd_connect(self) -> defer.Deferred[Any]:
        """(Re)connect to the hardware."""
        return self.connect()

    @command("disconnect_hardware", hardware=False)
    def _cmd_disconnect(self) -> defer.Deferred[Any]:
        """Disconnect from the hardware safely."""
        return self.disconnect()

    @command("shutdown", hardware=False)
    def _cmd_shutdown(self) -> str:
        """Disconnect the hardware and stop the server."""
        self.log.info("{name}: shutdown requested", name=self.name)
        self.reactor.callLater(0, self._shutdown)
        return "shutting down"

    def _shutdown(self) -> None:
        def hooks(_: object) -> None:
            for hook in self._shutdown_hooks:
                hook()
        self.stop().addCallback(hooks)

    @command("command_list", hardware=False)
    def _cmd_command_list(self) -> list[str]:
        """The command names, one per field."""
        return sorted(self._commands)

    @command("help", hardware=False)
    def _cmd_help(self, name: str = "") -> list[str]:
        """Usage and description of one command, or of all (one per field)."""
        if name and name not in self._commands:
            raise CommandError(f"unknown command {brief(name)}")
        names = [name] if name else sorted(self._commands)
        specs = [self._commands[n] for n in names]
        return [f"{spec.usage()}: {spec.help}" if spec.help else spec.usage() for spec in specs]


class _LineProtocol(Protocol):
    """One client connection: parse lines, run its commands one at a time, reply in order."""

    def __init__(self, server: InstrumentServer) -> None:
        self.server = server
        self.parser = RequestParser(server.max_line)
        self.queue: deque[Any] = deque()
        self.busy = False
        self.paused = False
        self.pumping = False
        self.open = False
        self.peer = "?"
        self.closed: defer.Deferred[None] = defer.Deferred()
        self.backpressure: ReplyBackpressure | None = None

    def connectionMade(self) -> None:
        peer = self.transport.getPeer()
        self.peer = f"{getattr(peer, 'host', '?')}:{getattr(peer, 'port', '?')}"
        self.open = True
        self.backpressure = ReplyBackpressure(self.transport, self._pump, soft_limit=self.server.soft_limit,
                                              hard_limit=self.server.hard_limit, describe=lambda: self.peer)
        self.server._connections.add(self)
        self.server.log.info("{name}: connection from {peer}", name=self.server.name, peer=self.peer)

    def dataReceived(self, data: bytes) -> None:
        self.queue.extend(self.parser.feed(data))
        self._pump()

    def _blocked(self) -> bool:
        return self.backpressure is not None and self.backpressure.blocked

    def _pump(self) -> None:
        if self.pumping:
            return
        self.pumping = True
        try:
            while self.open and not self.busy and self.queue and not self._blocked():
                self.busy = True
                self.server.execute(self.queue.popleft(), self.peer).addCallback(self._reply)
        finally:
            self.pumping = False
        self._flow_control()

    def _flow_control(self) -> None:
        """Read while the queue has room and the replies are being read."""
        if not self.open:
            return
        if not self.paused and (len(self.queue) >= self.server.max_pending or self._blocked()):
            self.paused = True
            self.transport.pauseProducing()
        elif self.paused and len(self.queue) < self.server.max_pending // 2 and not self._blocked():
            self.paused = False
            self.transport.resumeProducing()

    def _reply(self, line: bytes) -> None:
        self.busy = False
        if not self.open:
            return
        if self.backpressure is not None:
            self.backpressure.write(line)
        else:
            self.transport.write(line)
        self._pump()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.open = False
        dropped = len(self.queue)
        self.queue.clear()
        if self.backpressure is not None:
            self.backpressure.release()
        self.server._connections.discard(self)
        self.server.log.info("{name}: {peer} disconnected{extra}", name=self.server.name, peer=self.peer,
                             extra=f" ({dropped} queued command(s) dropped)" if dropped else "")
        self.closed.callback(None)


class _LineFactory(Factory):
    noisy = False

    def __init__(self, server: InstrumentServer) -> None:
        self.server = server

    def buildProtocol(self, addr: Any) -> _LineProtocol:
        return _LineProtocol(self.server)
