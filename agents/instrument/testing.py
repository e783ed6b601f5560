"""Test helpers: run an instrument server process and wait for its ready line, without blocking.

``ServerProcess`` starts ``python -m <module> ...`` with ``reactor.spawnProcess``; ``start()``
fires with the port from its ``listening on HOST:PORT`` line (or fails after a deadline), and
``stop()`` / ``kill()`` fire with the exit status once it is gone.
"""
from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path
from typing import Any, Sequence

from twisted.internet import defer
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

_READY = re.compile(rb"^listening on (\S+):(\d+)\s*$", re.M)
_ROOT = str(Path(__file__).resolve().parents[2])


class _Watcher(ProcessProtocol):
    def __init__(self) -> None:
        self.ready: defer.Deferred[int] = defer.Deferred()
        self.ended: defer.Deferred[int | None] = defer.Deferred()
        self.stdout = b""
        self.stderr = b""

    def outReceived(self, data: bytes) -> None:
        self.stdout += data
        m = _READY.search(self.stdout)
        if m and not self.ready.called:
            self.ready.callback(int(m.group(2)))

    def errReceived(self, data: bytes) -> None:
        self.stderr = (self.stderr + data)[-20000:]

    def processEnded(self, reason: Failure) -> None:
        code = getattr(reason.value, "exitCode", None)
        if not self.ready.called:
            self.ready.errback(RuntimeError(f"server exited (status {code}) before its ready line; "
                                            f"stderr: {self.stderr.decode(errors='replace')[-2000:]}"))
        self.ended.callback(code)


class ServerProcess:
    """An instrument server running as a child process.

    Args:
        reactor: the Twisted reactor.
        args: arguments after ``python -m module`` (e.g. ``["--port", "0", "--seed", "1"]``).
        module: the server module (default: the simulated instrument).
    """

    def __init__(self, reactor: Any, args: Sequence[str] = (),
                 module: str = "agents.instrument.simulated") -> None:
        self.reactor = reactor
        self.args = list(args)
        self.module = module
        self.port: int | None = None
        self._watcher: _Watcher | None = None
        self._transport: Any = None

    @property
    def running(self) -> bool:
        """True from :meth:`start` until the process has ended."""
        return self._watcher is not None and not self._watcher.ended.called

    @property
    def stderr(self) -> str:
        """The tail of the process's stderr (its log)."""
        return self._watcher.stderr.decode(errors="replace") if self._watcher else ""

    def start(self, timeout: float = 15.0) -> defer.Deferred[int]:
        """Spawn the process; fire with its port once it prints its ready line."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, env.get("PYTHONPATH", "")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        self._watcher = _Watcher()
        argv = [sys.executable, "-m", self.module, *self.args]
        self._transport = self.reactor.spawnProcess(self._watcher, sys.executable, argv, env=env, path=_ROOT)
        d = self._watcher.ready

        def got(port: int) -> int:
            self.port = port
            return port

        def failed(f: Failure) -> Failure:
            if f.check(defer.TimeoutError):
                self.kill()
                raise TimeoutError(f"{self.module} printed no ready line within {timeout:g} s")
            return f
        return d.addTimeout(timeout, self.reactor).addCallbacks(got, failed)

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the process if it is still running."""
        if self.running:
            try:
                self._transport.signalProcess(sig)
            except ProcessLookupError:
                pass

    def wait(self, timeout: float = 10.0) -> defer.Deferred[int | None]:
        """Fire with the exit status once the process has ended (errback on the deadline)."""
        assert self._watcher is not None, "not started"
        d: defer.Deferred[int | None] = defer.Deferred()
        self._watcher.ended.addBoth(lambda r: (d.callback(r) if not d.called else None, r)[1])
        return d.addTimeout(timeout, self.reactor)

    def stop(self, timeout: float = 10.0) -> defer.Deferred[int | None]:
        """SIGTERM, then wait for the exit (SIGKILL if it overruns ``timeout``)."""
        self.signal(signal.SIGTERM)

        def overran(f: Failure) -> Any:
            f.trap(defer.TimeoutError)
            self.kill()
            return self.wait(timeout)
        return self.wait(timeout).addErrback(overran)

    def kill(self) -> defer.Deferred[int | None]:
        """SIGKILL and wait for the exit."""
        self.signal(signal.SIGKILL)
        return self.wait()
