"""dsleep: a Deferred that fires after a delay, for agents and control programs (never blocks the reactor)."""
from __future__ import annotations

from typing import Any

from twisted.internet import defer, task


def dsleep(seconds: float, reactor: Any = None) -> defer.Deferred:
    """A Deferred that fires after ``seconds`` without blocking the reactor (``yield`` or ``await`` it)."""
    if reactor is None:
        from twisted.internet import reactor
    return task.deferLater(reactor, max(0.0, float(seconds)), lambda: None)
