"""Supervision logic of the site launcher: a per-child state machine with restart backoff.

Pure: no processes, no Twisted, no clock of its own. The caller (``ocs_core.supervisor.launcher``)
passes the current time to every method, spawns and signals processes, and logs the
:class:`Event` lines the methods return. A child goes through::

    stopped --want--> backoff(due now) --spawned--> starting --ready--> running
       ^                  ^                            |                   |
       |                  +-------- exited ------------+-------------------+
       +---- exited (after stop) <-- stopping <-- stop requested (starting/running)

Every exit that was not asked for schedules a restart after a delay that doubles from
``initial`` up to ``maximum``; a child that stayed up ``reset_after`` seconds before it
died starts again from ``initial``. A child that exits while starting with a configuration or
usage error (:data:`CONFIG_ERROR_CODES`: argparse's 2, ``ocs-core agent``'s 78) cannot succeed by
retrying: it goes to ``failed`` and stays there until wanted again.
"""
from __future__ import annotations

import enum
import signal
from dataclasses import dataclass
from typing import Any

from ocs_core.runtime.backoff import BackoffPolicy

__all__ = ["ChildState", "Event", "Child", "describe_exit", "CONFIG_ERROR_CODES"]

#: Exit codes that mean "fix the configuration": argparse's usage error, sysexits' EX_CONFIG.
CONFIG_ERROR_CODES = (2, 78)


class ChildState(str, enum.Enum):
    """Where a supervised child is."""

    STOPPED = "stopped"
    BACKOFF = "backoff"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    FAILED = "failed"


@dataclass(frozen=True)
class Event:
    """One thing that happened to a child; ``str(event)`` is its log line (without a time)."""

    name: str
    kind: str  # started, running, exited, restarting, stopping, stopped, spawn-failed, failed
    text: str

    def __str__(self) -> str:
        return f"{self.name}: {self.text}"


def describe_exit(code: int | None) -> str:
    """``exited with code 3`` / ``exited with code -9 (SIGKILL)`` / ``exited``."""
    if code is None:
        return "exited"
    if code < 0:
        try:
            return f"exited with code {code} ({signal.Signals(-code).name})"
        except ValueError:
            return f"exited with code {code}"
    return f"exited with code {code}"


def _seconds(value: float) -> str:
    return f"{value:g} s"


class Child:
    """The supervision state of one child process (an agent instance or the router).

    Args:
        name: the child's name in log lines (an instance-id, ``router``).
        policy: the restart backoff.
    """

    def __init__(self, name: str, policy: BackoffPolicy | None = None):
        self.name = name
        self.policy = policy or BackoffPolicy()
        self.state = ChildState.STOPPED
        self.pid: int | None = None
        self.spawns = 0
        self.failures = 0  # failures in a row (reset after a long enough uptime)
        self.started_at: float | None = None
        self.next_start: float | None = None
        self.last_exit: int | None = None
        self.last_error: str | None = None

    # -- queries ---------------------------------------------------------------------------
    @property
    def restarts(self) -> int:
        """How many times the child was started again after its first start."""
        return max(0, self.spawns - 1)

    def due(self, now: float) -> bool:
        """Whether the caller should spawn the child now."""
        return self.state is ChildState.BACKOFF and self.next_start is not None and now >= self.next_start

    @property
    def alive(self) -> bool:
        """Whether a process of this child is believed to exist (starting, running, stopping)."""
        return self.state in (ChildState.STARTING, ChildState.RUNNING, ChildState.STOPPING)

    def snapshot(self, now: float) -> dict[str, Any]:
        """A JSON-able summary (for the supervisor's state file)."""
        up = self.alive and self.started_at is not None
        return {"state": self.state.value, "pid": self.pid if self.alive else None,
                "restarts": self.restarts, "last_exit": self.last_exit,
                "uptime": round(now - self.started_at, 3) if up else None,
                "next_start_in": round(max(0.0, self.next_start - now), 3)
                if self.state is ChildState.BACKOFF and self.next_start is not None else None,
                "last_error": self.last_error}

    # -- transitions -----------------------------------------------------------------------
    def want(self, now: float) -> None:
        """Ask for the child to run: a stopped (or failed) child becomes due at once."""
        if self.state in (ChildState.STOPPED, ChildState.FAILED):
            if self.state is ChildState.FAILED:
                self.failures = 0
            self.state, self.next_start = ChildState.BACKOFF, now

    def spawned(self, now: float, pid: int) -> Event:
        """The caller started a process for the child."""
        if self.state is not ChildState.BACKOFF:
            raise RuntimeError(f"{self.name}: spawned while {self.state.value}")
        self.state, self.pid, self.started_at, self.next_start = ChildState.STARTING, pid, now, None
        self.spawns += 1
        self.last_error = None
        return Event(self.name, "started", f"started (pid {pid})")

    def ready(self, now: float) -> Event | None:  # noqa: ARG002
        """The child answered its readiness probe (registered, router joined)."""
        if self.state is not ChildState.STARTING:
            return None
        self.state = ChildState.RUNNING
        return Event(self.name, "running", f"running (pid {self.pid})")

    def spawn_failed(self, now: float, error: str) -> list[Event]:
        """Spawning failed (no process); counts as a failure and schedules a retry."""
        if self.state is not ChildState.BACKOFF:
            raise RuntimeError(f"{self.name}: spawn failed while {self.state.value}")
        self.last_error = error
        self.failures += 1
        delay = self.policy.delay(self.failures)
        self.next_start = now + delay
        return [Event(self.name, "spawn-failed", f"failed to start: {error}"),
                Event(self.name, "restarting", f"restarting in {_seconds(delay)}")]

    def exited(self, now: float, code: int | None) -> list[Event]:
        """The child's process ended with ``code`` (negative: killed by that signal)."""
        if not self.alive:
            return []
        self.last_exit = code
        uptime = now - (self.started_at if self.started_at is not None else now)
        if self.state is ChildState.STOPPING:
            self.state, self.pid, self.next_start = ChildState.STOPPED, None, None
            return [Event(self.name, "stopped", f"stopped ({describe_exit(code)})")]
        if self.state is ChildState.STARTING and code in CONFIG_ERROR_CODES:
            self.state, self.pid, self.next_start = ChildState.FAILED, None, None
            self.last_error = f"configuration error ({describe_exit(code)})"
            return [Event(self.name, "failed", f"{describe_exit(code)}: a configuration or usage "
                                               f"error, not restarted")]
        if uptime >= self.policy.reset_after:
            self.failures = 0
        self.failures += 1
        delay = self.policy.delay(self.failures)
        self.state, self.pid, self.next_start = ChildState.BACKOFF, None, now + delay
        return [Event(self.name, "exited", describe_exit(code)),
                Event(self.name, "restarting", f"restarting in {_seconds(delay)}")]

    def request_stop(self, now: float) -> bool:  # noqa: ARG002
        """Stop for good. Returns True when a process must be signalled (it is alive)."""
        if self.alive:
            self.state = ChildState.STOPPING
            return True
        if self.state is not ChildState.FAILED:
            self.state, self.next_start = ChildState.STOPPED, None
        return False
