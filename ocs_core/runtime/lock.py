"""TimeoutLock: a fair lock with timeouts and a job name, for ops that share one piece of hardware.

Blocking ops run in worker threads; when two of them talk to the same device they take this lock::

    lock = TimeoutLock()

    def acq(session, params):
        with lock.acquire_timeout(timeout=3, job="acq") as acquired:
            if not acquired:
                return False, f"could not get the device: {lock.job} holds it"
            ...

Waiters are served in arrival order, so a loop that releases and re-takes the lock
(:meth:`release_and_acquire`) lets a waiting task in instead of starving it.
"""
from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from typing import Iterator


class TimeoutLock:
    """A first-come-first-served lock whose ``acquire`` can time out; ``job`` names the holder."""

    def __init__(self, default_timeout: float | None = None) -> None:
        self.default_timeout = default_timeout
        self._cond = threading.Condition()
        self._queue: deque[object] = deque()
        self._held = False
        self.job: str | None = None

    def acquire(self, timeout: float | None = None, job: str | None = None) -> bool:
        """Take the lock; wait at most ``timeout`` seconds (None: the default; negative: forever).

        Returns:
            True when taken, False when the wait timed out.
        """
        if timeout is None:
            timeout = self.default_timeout
        deadline = None if timeout is None or timeout < 0 else time.monotonic() + timeout
        ticket = object()
        with self._cond:
            self._queue.append(ticket)
            try:
                while self._held or self._queue[0] is not ticket:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._cond.wait(remaining)
                self._held = True
                self.job = job
                return True
            finally:
                self._queue.remove(ticket)
                self._cond.notify_all()

    def release(self) -> None:
        """Release the lock (raises RuntimeError if it is not held)."""
        with self._cond:
            if not self._held:
                raise RuntimeError("release of an unheld TimeoutLock")
            self._held = False
            self.job = None
            self._cond.notify_all()

    def release_and_acquire(self, timeout: float | None = None) -> bool:
        """Let any waiter take the lock first, then take it back (keeping the job name)."""
        job = self.job
        with self._cond:
            waiting = bool(self._queue)
        self.release()
        if waiting:
            with self._cond:  # give the first waiter its turn before queueing again
                self._cond.wait_for(lambda: self._held or not self._queue, timeout=1.0)
        return self.acquire(timeout, job)

    @property
    def locked(self) -> bool:
        return self._held

    @contextlib.contextmanager
    def acquire_timeout(self, timeout: float | None = None, job: str | None = None) -> Iterator[bool]:
        """``with lock.acquire_timeout(3, job='acq') as acquired:`` — releases on exit if acquired."""
        acquired = self.acquire(timeout, job)
        try:
            yield acquired
        finally:
            if acquired:
                self.release()
